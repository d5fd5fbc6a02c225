//! A demo producer: a pretend web service that logs requests, queries and the occasional
//! failure through `tracing`, shipped to logrtc consumers by the `logrtc-producer` layer.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Parser;
use logrtc_producer::{Level, Producer, ProducerConfig, DEFAULT_SIGNALING_URL};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::Layer as _;

/// Emit realistic logs to a logrtc signaling server until stopped.
#[derive(Debug, Parser)]
#[command(name = "logrtc-demo-producer", version)]
struct Args {
    /// Signaling server.
    #[arg(long, default_value = DEFAULT_SIGNALING_URL)]
    url: String,
    /// The producer's client_id.
    #[arg(long, default_value = "demo-service")]
    client_id: String,
    /// Log entries per second (0: as fast as possible).
    #[arg(long, default_value_t = 5)]
    rate: u64,
    /// Stop after this many entries (0: never).
    #[arg(long, default_value_t = 0)]
    count: u64,
    /// Least severe level shipped: error, warn, info or debug.
    #[arg(long, default_value = "debug")]
    level: Level,
    /// Add a `seq` field (1, 2, 3, ...) to every entry, so a consumer can check order and loss.
    #[arg(long)]
    seq: bool,
    /// Print the producer's metrics as JSON on stdout every this often (0: never).
    #[arg(long, default_value = "0s", value_parser = humantime::parse_duration)]
    metrics_every: Duration,
}

const ROUTES: &[(&str, &str)] = &[
    ("GET", "/api/orders"),
    ("POST", "/api/orders"),
    ("GET", "/api/users/me"),
    ("GET", "/healthz"),
    ("PUT", "/api/cart"),
];

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let mut config = ProducerConfig::new(&args.url, &args.client_id);
    config.max_level = args.level;
    config.metadata = serde_json::json!({"service": "demo", "version": env!("CARGO_PKG_VERSION"), "pid": std::process::id()});
    let producer = Producer::start(config);
    tracing_subscriber::registry()
        .with(producer.layer())
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_filter(tracing_subscriber::EnvFilter::new("warn")),
        )
        .try_init()
        .context("installing the tracing subscriber")?;
    println!("ready producer {} {}", args.client_id, args.url);

    let started = Instant::now();
    let mut last_metrics = Instant::now();
    let mut seq: u64 = 0;
    let interval = (args.rate > 0).then(|| Duration::from_secs_f64(1.0 / args.rate as f64));
    loop {
        if args.count > 0 && seq >= args.count {
            break;
        }
        seq += 1;
        emit(seq, args.seq);
        if !args.metrics_every.is_zero() && last_metrics.elapsed() >= args.metrics_every {
            println!("{}", serde_json::to_string(&producer.handle().metrics())?);
            last_metrics = Instant::now();
        }
        match interval {
            Some(period) => {
                let due = started + period.mul_f64(seq as f64);
                tokio::time::sleep_until(due.into()).await;
            }
            None if seq % 256 == 0 => tokio::task::yield_now().await,
            None => {}
        }
    }
    producer.flush(Duration::from_secs(10)).await;
    println!("{}", serde_json::to_string(&producer.handle().metrics())?);
    producer.shutdown().await;
    Ok(())
}

/// One request's worth of logging, chosen by the sequence number so runs are repeatable.
fn emit(seq: u64, with_seq: bool) {
    let (method, path) = ROUTES[(seq % ROUTES.len() as u64) as usize];
    let latency_ms = 3 + (seq * 7919) % 180;
    let seq_field = with_seq.then_some(seq);
    let span = tracing::info_span!("request", method, path, request_id = %format!("req_{seq:06x}"));
    let _entered = span.enter();
    match seq % 20 {
        0 => {
            tracing::error!(target: "demo::orders", seq = seq_field, order_id = seq, "payment provider timed out after 5000 ms")
        }
        7 => {
            tracing::warn!(target: "demo::db", seq = seq_field, latency_ms, "slow query on orders table")
        }
        3 | 11 => {
            tracing::debug!(target: "demo::cache", seq = seq_field, key = %format!("user:{}", seq % 97), hit = seq % 3 != 0, "cache lookup")
        }
        _ => {
            tracing::info!(target: "demo::http", seq = seq_field, status = 200, latency_ms, user_id = seq % 1000, "{method} {path} completed")
        }
    }
}
