//! `load`: simulates many nodes (nodemgr) and devices (cmdrelay) and measures honestly.

mod cmdrelay;
mod ecapture;
mod echo;
mod logrtc;
mod logrtc_webrtc;
mod nodemgr;
mod sfu;
mod stats;
mod udp_relay;
mod ws;

use anyhow::Context;
use clap::{Parser, Subcommand};
use cmdrelay::RelayLoop;
use reference_server::protocol::nodemgr::SessionConfig;
use reference_server::server::{
    start_cmdrelay, start_nodemgr, CmdrelaySetup, RunningCmdrelay, RunningNodemgr,
};
use reference_server::store::{SqliteSync, StoreConfig};
use std::time::{Duration, Instant};

/// Upper bounds: every load loop here is bounded in count and time.
const MAX_NODES: usize = 50_000;
const MAX_DURATION: Duration = Duration::from_secs(3600);

#[derive(Debug, Parser)]
#[command(
    version,
    about = "Load generator for the protocols (loopback targets only)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// N nodes heartbeating on an interval; ack latency percentiles, errors by code.
    Nodemgr(NodemgrArgs),
    /// Closed-loop heartbeat round trips vs a bare tokio-tungstenite echo server, same run.
    NodemgrVsEcho {
        /// Closed loops, or a comma-separated list of counts measured one after the other
        /// (the ratio depends on it: few loops wait on each commit, docs/performance.md).
        #[arg(long, value_delimiter = ',', default_value = "64")]
        connections: Vec<usize>,
        #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
        duration: Duration,
        /// Echo and heartbeat rounds, alternated; the median ratio is reported.
        #[arg(long, default_value_t = 3)]
        rounds: usize,
        /// The reference server's SQLite `synchronous` setting: full (fsync per commit, its
        /// default) or normal (see `reference-server --help`).
        #[arg(long, default_value = "full")]
        sqlite_sync: SqliteSync,
        /// Where the two servers run: `in-process`, on this process's runtime beside the
        /// loops; or `processes`, the release `reference-server` next to this binary and
        /// `load echo-server`, each a process of its own, as they are deployed; then each
        /// round also prints each server's CPU time per round trip.
        #[arg(long, value_enum, default_value = "in-process")]
        servers: Servers,
        /// Another nodemgr server to measure instead of the reference (its per-connection
        /// rate limit must allow a closed loop, e.g. `reference-server --rate-limit 1e9`);
        /// the bare echo then runs as a process of its own.
        #[arg(long, conflicts_with_all = ["servers", "sqlite_sync"])]
        target: Option<String>,
        /// The token each loop's node registers with at `--target` (a reference server this
        /// command starts takes the default).
        #[arg(long, default_value = "default-token", requires = "target")]
        token: String,
        /// The `--target` server's process id on this machine: each round then also prints
        /// its CPU time per round trip beside the echo's.
        #[arg(long, requires = "target")]
        server_pid: Option<u32>,
        /// Exit with status 1 when the ratio the run ends with is below this: the peak-rate
        /// ratio with several `--connections`, else the median ratio (a gate for CI).
        #[arg(long, value_parser = positive_ratio)]
        min_ratio: Option<f64>,
        /// Also write the figures to this file as JSON (each count of loops' median rates
        /// and ratio, the peak rates, the ratio judged), before `--min-ratio` is applied.
        #[arg(long, value_name = "PATH")]
        json: Option<std::path::PathBuf>,
    },
    /// A bare tokio-tungstenite echo server, the baseline of the `*-vs-echo` commands, for a
    /// process of its own: prints `ready echo ws://ADDR/` once it listens and runs until it
    /// is killed.
    EchoServer {
        /// A loopback address; port 0 picks a free one.
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: std::net::SocketAddr,
    },
    /// Rooms of clients: one relays execute on an interval, the others measure latency.
    Cmdrelay(CmdrelayArgs),
    /// Collectors reading an event stream: delivered events per second and delivery latency.
    Ecapture(EcaptureArgs),
    /// logrtc signaling: producer/consumer pairs; registration, watch and relay latency.
    Logrtc(LogrtcArgs),
    /// SFU rooms over real WebRTC (Opus, VP8): forwarded packets, loss, jitter, join→first
    /// RTP, CPU per forwarded packet against a bare UDP relay in the same run.
    Sfu(SfuArgs),
    /// Closed-loop relays between pairs vs a bare tokio-tungstenite echo server, same run:
    /// one-way relays (A sends, B receives) and execute/execute_result exchanges.
    CmdrelayVsEcho {
        #[arg(long, default_value_t = 64)]
        pairs: usize,
        #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
        duration: Duration,
        /// Rounds of echo, one-way relays and exchanges; the median ratio of each is
        /// reported.
        #[arg(long, default_value_t = 3)]
        rounds: usize,
    },
}

#[derive(Debug, clap::Args)]
struct EcaptureArgs {
    /// ws://127.0.0.1:28257/. Default: an in-process reference server making synthetic events.
    #[arg(long)]
    target: Option<String>,
    /// Collectors that read and decode everything.
    #[arg(long, default_value_t = 1)]
    clients: usize,
    /// In-process server: events per second it makes.
    #[arg(long, default_value_t = 100_000.0)]
    rate: f64,
    /// In-process server: payload bytes per event.
    #[arg(long, default_value_t = 200)]
    payload: usize,
    /// In-process server: frames a client may fall behind before it is dropped.
    #[arg(long, default_value_t = 256)]
    queue_depth: usize,
    /// Clients that connect and never read; the server should drop them.
    #[arg(long, default_value_t = 0)]
    slow_clients: usize,
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    duration: Duration,
}

#[derive(Debug, clap::Args)]
struct LogrtcArgs {
    /// ws://127.0.0.1:8080/signaling. Default: an in-process reference server.
    #[arg(long)]
    target: Option<String>,
    /// Producer/consumer pairs: twice as many registered clients.
    #[arg(long, default_value_t = 500)]
    pairs: usize,
    /// Real WebRTC: this many reference producers (instead of --pairs' signaling-only load).
    #[arg(long)]
    producers: Option<usize>,
    /// With --producers: consumers in all, spread over the producers (default: one each).
    #[arg(long)]
    consumers: Option<usize>,
    /// With --producers: log lines per second written by each producer.
    #[arg(long, default_value_t = 1000)]
    rate: u64,
    /// With --producers: bytes per log line, JSON included (about).
    #[arg(long, default_value_t = 200)]
    line_bytes: usize,
    #[command(flatten)]
    run: RunShape,
}

#[derive(Debug, clap::Args)]
struct CmdrelayArgs {
    /// ws://127.0.0.1:8765/websocket. Default: an in-process reference server.
    #[arg(long)]
    target: Option<String>,
    /// With --target: the token API that mints one token per room (default: same host, /api/v1).
    #[arg(long)]
    admin_api: Option<String>,
    #[arg(long, default_value = "default-token")]
    admin_token: String,
    #[arg(long, default_value_t = 100)]
    rooms: usize,
    #[arg(long, default_value_t = 2)]
    clients_per_room: usize,
    #[command(flatten)]
    run: RunShape,
}

/// Duration, pace and measurement options shared by the scenarios.
#[derive(Debug, clap::Args)]
struct RunShape {
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// How often each simulated node heartbeats, or each room's sender relays an execute.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    interval: Duration,
    #[arg(long, default_value_t = 256)]
    connect_concurrency: usize,
    /// Connect every client, then stay idle and report the server's memory per connection
    /// (needs --server-pid for an external target).
    #[arg(long)]
    idle: bool,
    /// The server's process id, to read its memory from /proc.
    #[arg(long)]
    server_pid: Option<u32>,
}

#[derive(Debug, clap::Args)]
struct NodemgrArgs {
    /// ws://127.0.0.1:9999/api/v1/ws. Default: an in-process reference server (SQLite in a temp dir).
    #[arg(long)]
    target: Option<String>,
    #[arg(long, default_value = "default-token")]
    token: String,
    #[arg(long, default_value_t = 100)]
    nodes: usize,
    #[command(flatten)]
    run: RunShape,
    /// After the run, check through the operator API that this many nodes have every acked sample stored.
    #[arg(long, default_value_t = 20)]
    verify_stored: usize,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    match Cli::parse().command {
        Command::Nodemgr(args) => run_nodemgr(args).await,
        Command::NodemgrVsEcho {
            connections,
            duration,
            rounds,
            sqlite_sync,
            servers,
            target,
            token,
            server_pid,
            min_ratio,
            json,
        } => {
            let rounds = rounds.clamp(1, 20);
            let connections: Vec<usize> = connections.iter().map(|c| (*c).min(MAX_NODES)).collect();
            let placement = match (target, servers) {
                (Some(url), _) => Placement::Target(url, server_pid),
                (None, Servers::InProcess) => Placement::InProcess(sqlite_sync),
                (None, Servers::Processes) => Placement::Spawned(sqlite_sync),
            };
            let report = vs_echo(
                &connections,
                duration.min(MAX_DURATION),
                rounds,
                placement,
                &token,
            )
            .await?;
            if let Some(path) = json {
                write_json(&path, &report)?;
            }
            meets_min_ratio(report.ratio, min_ratio)
        }
        Command::EchoServer { listen } => run_echo_server(listen).await,
        Command::Cmdrelay(args) => run_cmdrelay(args).await,
        Command::Ecapture(args) => run_ecapture(args).await,
        Command::Logrtc(args) => run_logrtc(args).await,
        Command::Sfu(args) => run_sfu(args).await,
        Command::CmdrelayVsEcho {
            pairs,
            duration,
            rounds,
        } => {
            let rounds = rounds.clamp(1, 20);
            cmdrelay_vs_echo(pairs.min(MAX_NODES / 2), duration.min(MAX_DURATION), rounds).await
        }
    }
}

/// Upper bound of collectors and of events per second asked of the in-process server.
const MAX_COLLECTORS: usize = 1000;
const MAX_RATE: f64 = 5_000_000.0;

async fn run_ecapture(args: EcaptureArgs) -> anyhow::Result<()> {
    use reference_server::protocol::ecapture::source::SourceConfig;
    use reference_server::transport::ecapture::EcaptureConfig;
    let local = match &args.target {
        Some(_) => None,
        None => {
            let config = EcaptureConfig {
                queue_depth: args.queue_depth,
                source: SourceConfig::Synthetic {
                    rate: args.rate.min(MAX_RATE),
                    payload_size: args.payload,
                },
                ..EcaptureConfig::default()
            };
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
            Some(reference_server::server::start_ecapture(listener, config).await?)
        }
    };
    let url = args
        .target
        .clone()
        .or_else(|| local.as_ref().map(|s| s.ws_url()))
        .context("no target")?;
    ensure_loopback(&url)?;
    let duration = args.duration.min(MAX_DURATION);
    let clients = args.clients.clamp(1, MAX_COLLECTORS);
    eprintln!(
        "load: {clients} collectors and {} slow clients on {url} for {duration:?}",
        args.slow_clients
    );
    let mut sockets = Vec::new();
    for _ in 0..clients {
        sockets.push(ecapture::connect(&url).await?);
    }
    let mut stalled = Vec::new();
    for _ in 0..args.slow_clients.min(MAX_COLLECTORS) {
        stalled.push(ecapture::connect(&url).await?);
    }
    let made_before = local.as_ref().map(|s| {
        s.app
            .stats
            .events
            .load(std::sync::atomic::Ordering::Relaxed)
    });
    let until = tokio::time::Instant::now() + duration;
    let readers: Vec<_> = sockets
        .into_iter()
        .map(|s| tokio::spawn(ecapture::collect(s, until)))
        .collect();
    let stallers: Vec<_> = stalled
        .into_iter()
        .map(|s| tokio::spawn(ecapture::stall(s, until)))
        .collect();
    let mut collected = Vec::new();
    for reader in readers {
        collected.push(reader.await?);
    }
    let rss = stats::rss_kib(std::process::id());
    let mut dropped = 0;
    for staller in stallers {
        dropped += usize::from(staller.await?);
    }
    let made = local.as_ref().zip(made_before).map(|(s, before)| {
        s.app
            .stats
            .events
            .load(std::sync::atomic::Ordering::Relaxed)
            - before
    });
    report_ecapture(&collected, duration, made, dropped, args.slow_clients, rss);
    Ok(())
}

fn report_ecapture(
    collected: &[ecapture::Collected],
    duration: Duration,
    made: Option<u64>,
    dropped: usize,
    slow: usize,
    rss_kib: Option<u64>,
) {
    let seconds = duration.as_secs_f64();
    let total: u64 = collected.iter().map(|c| c.events).sum();
    let mut latency =
        hdrhistogram::Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("valid bounds");
    for c in collected {
        let _ = latency.add(&c.latency_us);
    }
    let per_client: Vec<String> = collected
        .iter()
        .map(|c| format!("{:.0}", c.events as f64 / seconds))
        .collect();
    println!(
        "events delivered per second, per collector: {}",
        per_client.join(" ")
    );
    println!(
        "events delivered per second, total: {:.0}",
        total as f64 / seconds
    );
    if let Some(made) = made {
        println!(
            "events made by the server per second: {:.0}",
            made as f64 / seconds
        );
    }
    let ms = |q: f64| latency.value_at_quantile(q) as f64 / 1000.0;
    println!(
        "delivery latency ms: p50 {:.2} p99 {:.2} p99.9 {:.2} max {:.2}",
        ms(0.5),
        ms(0.99),
        ms(0.999),
        latency.max() as f64 / 1000.0
    );
    let ended: Vec<&str> = collected
        .iter()
        .filter_map(|c| c.ended.as_deref())
        .collect();
    println!(
        "collectors whose stream ended early: {} {:?}",
        ended.len(),
        ended
    );
    if slow > 0 {
        println!("slow clients dropped by the server: {dropped} of {slow}");
    }
    if let Some(rss) = rss_kib {
        println!(
            "memory of this process (server and collectors) at the end: {} MiB",
            rss / 1024
        );
    }
}

async fn in_process_server(
    sqlite_sync: SqliteSync,
    session: SessionConfig,
) -> anyhow::Result<(RunningNodemgr, tempfile::TempDir)> {
    let dir = tempfile::tempdir()?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let store = StoreConfig {
        sqlite_sync,
        ..StoreConfig::sqlite_in(dir.path())?
    };
    let server = start_nodemgr(listener, session, &store).await?;
    Ok((server, dir))
}

fn ensure_loopback(url: &str) -> anyhow::Result<()> {
    let host = url
        .trim_start_matches("ws://")
        .split(['/', ':'])
        .next()
        .unwrap_or_default();
    anyhow::ensure!(
        host == "localhost" || host.starts_with("127.") || host == "[::1]",
        "load targets loopback only, not {host}"
    );
    Ok(())
}

async fn run_nodemgr(args: NodemgrArgs) -> anyhow::Result<()> {
    let local = if args.target.is_none() {
        // One node per connection at its interval: the rate limit stays at its default.
        Some(in_process_server(SqliteSync::Full, SessionConfig::default()).await?)
    } else {
        None
    };
    let url = args
        .target
        .clone()
        .or_else(|| local.as_ref().map(|(s, _)| s.ws_url()))
        .context("no target")?;
    ensure_loopback(&url)?;
    let pid = args
        .run
        .server_pid
        .or_else(|| local.as_ref().map(|_| std::process::id()));
    let scenario = nodemgr::Scenario {
        ws_url: url.clone(),
        token: args.token.clone(),
        nodes: args.nodes.min(MAX_NODES),
        interval: args.run.interval,
        duration: if args.run.idle {
            Duration::ZERO
        } else {
            args.run.duration.min(MAX_DURATION)
        },
        connect_concurrency: args.run.connect_concurrency,
        run_id: uuid::Uuid::new_v4().to_string()[..8].to_owned(),
    };
    eprintln!(
        "load: {} nodes against {url}, heartbeat every {:?} for {:?}",
        scenario.nodes, scenario.interval, scenario.duration
    );
    let stats = stats::Stats::new();
    let rss_before = pid.and_then(stats::rss_kib);
    let started = Instant::now();
    let (nodes, idle_sockets) = nodemgr::run(&scenario, stats.clone()).await;
    if args.run.idle {
        return report_idle(
            &stats,
            nodes.len(),
            pid,
            rss_before,
            idle_sockets.len(),
            &NODEMGR_WORDS,
        );
    }
    let counted = report_run(&stats, nodes.len(), started.elapsed(), &NODEMGR_WORDS);
    let stored = verify_stored(&url, &args.token, &nodes, args.verify_stored).await;
    counted.and(stored)
}

/// Prints the idle run's memory figure; `Err` when connecting counted any error.
fn report_idle(
    stats: &stats::Stats,
    connected: usize,
    pid: Option<u32>,
    before: Option<u64>,
    held: usize,
    words: &Words,
) -> anyhow::Result<()> {
    let after = pid.and_then(stats::rss_kib);
    println!(
        "idle: {} {connected}, {held} sockets held open",
        words.joined
    );
    match (before, after) {
        (Some(b), Some(a)) if connected > 0 => println!(
            "server RSS {b} KiB -> {a} KiB: {:.1} KiB per idle connection{}",
            (a.saturating_sub(b)) as f64 / connected as f64,
            if pid == Some(std::process::id()) {
                " (in-process: includes the clients' side)"
            } else {
                ""
            }
        ),
        _ => println!("server memory not measured: pass --server-pid"),
    }
    let errors = stats.errors();
    println!("errors by code: {errors:?}");
    fail_on_errors("connecting", [&errors])
}

/// How a scenario names its counts in the summary.
struct Words {
    joined: &'static str,
    sent: &'static str,
    received: &'static str,
    latency: &'static str,
}

const NODEMGR_WORDS: Words = Words {
    joined: "nodes connected and registered",
    sent: "heartbeats sent",
    received: "acked",
    latency: "ack latency ms",
};

const CMDRELAY_WORDS: Words = Words {
    joined: "clients joined",
    sent: "executes sent",
    received: "relayed copies received",
    latency: "relay latency ms (sender to receiver)",
};

/// Prints a run's summary; `Err` when it counted any error, so that CI can go by the exit
/// code.
fn report_run(
    stats: &stats::Stats,
    joined: usize,
    took: Duration,
    words: &Words,
) -> anyhow::Result<()> {
    use std::sync::atomic::Ordering::Relaxed;
    let [p50, p99, p999, max] = stats.percentiles_ms();
    let received = stats.acked.load(Relaxed);
    println!("{}: {joined}", words.joined);
    println!(
        "{}: {}, {}: {received} ({:.0}/s over {:.1} s)",
        words.sent,
        stats.sent.load(Relaxed),
        words.received,
        received as f64 / took.as_secs_f64(),
        took.as_secs_f64()
    );
    println!(
        "{}: p50 {p50:.2}, p99 {p99:.2}, p99.9 {p999:.2}, max {max:.2}",
        words.latency
    );
    let errors = stats.errors();
    println!("errors by code: {errors:?}");
    fail_on_errors("the run", [&errors])
}

type ErrorCounts = std::collections::BTreeMap<String, u64>;

/// `Err` naming how many errors `what` counted, over all its counts, when it counted any.
fn fail_on_errors<'a>(
    what: &str,
    counts: impl IntoIterator<Item = &'a ErrorCounts>,
) -> anyhow::Result<()> {
    let counts: Vec<&ErrorCounts> = counts.into_iter().collect();
    let total: u64 = counts.iter().flat_map(|errors| errors.values()).sum();
    anyhow::ensure!(
        total == 0,
        "{what} counted {total} errors ({counts:?}); see the summary above"
    );
    Ok(())
}

/// Every acked heartbeat of a sample of nodes must be in the stored history.
async fn verify_stored(
    ws_url: &str,
    token: &str,
    nodes: &[(String, u64)],
    sample: usize,
) -> anyhow::Result<()> {
    let base = ws_url
        .replacen("ws://", "http://", 1)
        .replace("/api/v1/ws", "/api/v1");
    let client = reqwest::Client::new();
    let mut complete = 0;
    let checked = nodes.iter().take(sample);
    for (node_id, acked) in checked.clone() {
        let url = format!("{base}/nodes/{node_id}/metrics?limit=10000");
        let body: serde_json::Value = client
            .get(url)
            .bearer_auth(token)
            .send()
            .await?
            .json()
            .await?;
        let stored = body["metrics"].as_array().map_or(0, Vec::len) as u64;
        complete += usize::from(stored >= *acked);
    }
    let sampled = checked.count();
    println!("stored check: {complete}/{sampled} sampled nodes have every acked heartbeat stored");
    anyhow::ensure!(
        complete == sampled,
        "{} of {sampled} sampled nodes lack acked heartbeats in the stored history",
        sampled - complete
    );
    Ok(())
}

/// Where the servers of a `nodemgr-vs-echo` run are.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum Servers {
    InProcess,
    Processes,
}

/// The nodemgr server a `nodemgr-vs-echo` run measures, and where.
enum Placement {
    /// The reference, on this process's runtime, with the bare echo beside it.
    InProcess(SqliteSync),
    /// The release reference-server beside this binary, spawned.
    Spawned(SqliteSync),
    /// Another implementation, already running, and its process when it was given.
    Target(String, Option<u32>),
}

/// Per-connection message rate given to a spawned reference server: a closed loop sends far
/// faster than the default limit allows.
const CLOSED_LOOP_RATE: &str = "1000000000";

/// The two servers of a run, kept alive as long as this is.
struct ComparedServers {
    echo_url: String,
    nodemgr_url: String,
    /// The processes whose CPU time is read: the two servers, when each runs alone in one.
    echo_pid: Option<u32>,
    nodemgr_pid: Option<u32>,
    _in_process: Option<(RunningNodemgr, tempfile::TempDir)>,
    _spawned: Vec<SpawnedServer>,
}

async fn compared_servers(placement: Placement) -> anyhow::Result<ComparedServers> {
    match placement {
        Placement::InProcess(sqlite_sync) => {
            // The per-node rate limit is lifted here only, or most answers would be
            // RATE_LIMITED errors instead of stored heartbeats.
            let unlimited = SessionConfig {
                rate_per_sec: f64::MAX,
                rate_burst: f64::MAX,
                ..SessionConfig::default()
            };
            let (server, dir) = in_process_server(sqlite_sync, unlimited).await?;
            Ok(ComparedServers {
                echo_url: echo::start_echo_server(loopback_any_port()).await?,
                nodemgr_url: server.ws_url(),
                echo_pid: None,
                nodemgr_pid: None,
                _in_process: Some((server, dir)),
                _spawned: Vec::new(),
            })
        }
        Placement::Spawned(sqlite_sync) => {
            let args = [
                "--rate-limit",
                CLOSED_LOOP_RATE,
                "--sqlite-sync",
                sqlite_sync.name(),
            ];
            let server = spawn_reference_server(&args, "ready nodemgr ")
                .await?
                .context("no reference-server next to this binary: cargo build --release -p reference-server")?;
            with_spawned_echo(server.ws_url.clone(), Some(server)).await
        }
        Placement::Target(url, pid) => {
            ensure_loopback(&url)?;
            let mut servers = with_spawned_echo(url, None).await?;
            servers.nodemgr_pid = pid;
            Ok(servers)
        }
    }
}

/// The nodemgr server at `nodemgr_url` (`spawned`, if it was) and a bare echo in a process of
/// its own.
async fn with_spawned_echo(
    nodemgr_url: String,
    spawned: Option<SpawnedServer>,
) -> anyhow::Result<ComparedServers> {
    let echo = spawn_echo_server().await?;
    Ok(ComparedServers {
        echo_url: echo.ws_url.clone(),
        nodemgr_url,
        echo_pid: echo.child.id(),
        nodemgr_pid: spawned.as_ref().and_then(|server| server.child.id()),
        _in_process: None,
        _spawned: spawned.into_iter().chain([echo]).collect(),
    })
}

fn loopback_any_port() -> std::net::SocketAddr {
    (std::net::Ipv4Addr::LOCALHOST, 0).into()
}

async fn vs_echo(
    levels: &[usize],
    duration: Duration,
    rounds: usize,
    placement: Placement,
    token: &str,
) -> anyhow::Result<VsEchoReport> {
    anyhow::ensure!(
        !levels.is_empty() && levels.len() <= 16 && !levels.contains(&0),
        "--connections takes 1 to 16 counts, none of them 0"
    );
    let servers = compared_servers(placement).await?;
    let (echo_url, server_url) = (&servers.echo_url, &servers.nodemgr_url);
    let (echo_pid, nodemgr_pid) = (servers.echo_pid, servers.nodemgr_pid);
    eprintln!("bare echo at {echo_url}, nodemgr at {server_url}");
    let mut by_level = Vec::with_capacity(levels.len());
    for &connections in levels {
        eprintln!("closed loop, {connections} connections, {rounds} rounds of {duration:?} echo then {duration:?} heartbeats");
        let medians = alternate_with_echo(rounds, || async move {
            let echo = echo::measure(echo_url, connections, duration, None, echo_pid).await;
            let heartbeats =
                echo::measure(server_url, connections, duration, Some(token), nodemgr_pid).await;
            print_server_cpu(connections, &echo, &heartbeats);
            (
                (echo.rate, echo.stats),
                vec![("heartbeats", heartbeats.rate, heartbeats.stats)],
            )
        })
        .await;
        by_level.push((connections, medians));
    }
    let report = summarize(&by_level);
    if let Some(peak) = &report.peak {
        print_by_level(&report.levels, peak);
    }
    Ok(report)
}

/// The run's figures: each count of loops' medians and, with several counts, each server's
/// peak (at the count where its median rate is highest, which need not be the same count).
fn summarize(by_level: &[(usize, Medians)]) -> VsEchoReport {
    let levels: Vec<LevelReport> = by_level
        .iter()
        .map(|(connections, medians)| LevelReport {
            connections: *connections,
            echo_rate: medians.echo_rate,
            heartbeat_rate: medians.rate(0),
            median_ratio: medians.ratio(0),
        })
        .collect();
    let peak = (levels.len() > 1).then(|| {
        let highest = |rate: fn(&LevelReport) -> f64| {
            levels
                .iter()
                .map(|level| (level.connections, rate(level)))
                .max_by(|a, b| a.1.total_cmp(&b.1))
                .unwrap_or_default()
        };
        let (echo_connections, echo_rate) = highest(|level| level.echo_rate);
        let (heartbeat_connections, heartbeat_rate) = highest(|level| level.heartbeat_rate);
        PeakReport {
            heartbeat_rate,
            heartbeat_connections,
            echo_rate,
            echo_connections,
            ratio: heartbeat_rate / echo_rate.max(1.0),
        }
    });
    let ratio = match (&peak, levels.first()) {
        (Some(peak), _) => peak.ratio,
        (None, Some(level)) => level.median_ratio,
        (None, None) => 0.0,
    };
    VsEchoReport {
        levels,
        peak,
        ratio,
    }
}

/// What `nodemgr-vs-echo --json` writes.
#[derive(Debug, serde::Serialize)]
struct VsEchoReport {
    levels: Vec<LevelReport>,
    /// With several counts of loops.
    peak: Option<PeakReport>,
    /// The ratio `--min-ratio` judges: the peak rates' with several counts, else the median.
    ratio: f64,
}

/// The medians of the rounds at one count of closed loops.
#[derive(Debug, serde::Serialize)]
struct LevelReport {
    connections: usize,
    echo_rate: f64,
    heartbeat_rate: f64,
    median_ratio: f64,
}

/// Each server's highest median rate, the loops it had then, and their ratio.
#[derive(Debug, serde::Serialize)]
struct PeakReport {
    heartbeat_rate: f64,
    heartbeat_connections: usize,
    echo_rate: f64,
    echo_connections: usize,
    ratio: f64,
}

fn write_json(path: &std::path::Path, report: &impl serde::Serialize) -> anyhow::Result<()> {
    let text = serde_json::to_string_pretty(report)?;
    std::fs::write(path, text + "\n")
        .with_context(|| format!("cannot write the JSON report to {}", path.display()))
}

/// `--min-ratio`: `Err`, which exits with status 1, when the run's ratio is below it.
fn meets_min_ratio(ratio: f64, min_ratio: Option<f64>) -> anyhow::Result<()> {
    match min_ratio {
        Some(min) if ratio < min => {
            anyhow::bail!("the ratio {ratio:.2}x is below --min-ratio {min}")
        }
        _ => Ok(()),
    }
}

fn positive_ratio(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(ratio) if ratio.is_finite() && ratio > 0.0 => Ok(ratio),
        _ => Err(format!("{text:?} is not a positive number such as 0.7")),
    }
}

/// Each server's CPU time per round trip in this round, when both processes were read: a
/// steadier comparison than the rates, which move with the load generator's share of the
/// machine (docs/performance.md).
fn print_server_cpu(connections: usize, echo: &echo::Measured, heartbeats: &echo::Measured) {
    if let (Some(echo), Some(heartbeat)) = (echo.server_cpu_us, heartbeats.server_cpu_us) {
        println!(
            "{connections} loops, server CPU per round trip: bare echo {echo:.2} µs, nodemgr server {heartbeat:.2} µs ({:.2}x the echo's)",
            heartbeat / echo.max(f64::MIN_POSITIVE)
        );
    }
}

/// The median ratio at each count of loops, then the two servers' peak rates and their ratio.
fn print_by_level(levels: &[LevelReport], peak: &PeakReport) {
    println!("median ratio of heartbeats to the bare echo rate, by closed loops:");
    for level in levels {
        println!(
            "  {:>6} loops: {:.2}x (echo {:.0}/s, heartbeats {:.0}/s)",
            level.connections, level.median_ratio, level.echo_rate, level.heartbeat_rate
        );
    }
    println!(
        "peak rates (medians): heartbeats {:.0}/s with {} loops, bare echo {:.0}/s with {} loops: {:.2}x",
        peak.heartbeat_rate,
        peak.heartbeat_connections,
        peak.echo_rate,
        peak.echo_connections,
        peak.ratio
    );
}

/// `load echo-server`: the bare echo until this process is killed.
async fn run_echo_server(listen: std::net::SocketAddr) -> anyhow::Result<()> {
    anyhow::ensure!(
        listen.ip().is_loopback(),
        "the echo server listens on loopback only, not {}",
        listen.ip()
    );
    let url = echo::start_echo_server(listen).await?;
    println!("{ECHO_READY}{url}");
    std::future::pending().await
}

/// One round's measurements: the bare echo's, then each of the reference server's with its
/// label. Each is a rate per second and the latency of each step.
type Round = (
    (f64, std::sync::Arc<stats::Stats>),
    Vec<(&'static str, f64, std::sync::Arc<stats::Stats>)>,
);

/// The medians of a run's rounds: the bare echo's rate, and each measurement's label, rate and
/// ratio to the echo (the median of the rounds' ratios, not the ratio of the medians).
struct Medians {
    echo_rate: f64,
    measured: Vec<(&'static str, f64, f64)>,
}

impl Medians {
    fn rate(&self, index: usize) -> f64 {
        self.measured.get(index).map_or(0.0, |m| m.1)
    }

    fn ratio(&self, index: usize) -> f64 {
        self.measured.get(index).map_or(0.0, |m| m.2)
    }
}

/// Runs `round` (a bare echo measurement, then the reference server's) `rounds` times, prints
/// each round's rates and ratios, then the median ratio of each measurement (and returns the
/// medians): the machine is shared and noisy, so one round proves little.
async fn alternate_with_echo<F, Fut>(rounds: usize, mut round: F) -> Medians
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Round>,
{
    let mut echo_rates = Vec::with_capacity(rounds);
    let mut measured: Vec<(&'static str, Vec<f64>, Vec<f64>)> = Vec::new();
    for n in 1..=rounds {
        let ((echo_rate, echo_stats), this_round) = round().await;
        let [e50, e99, ..] = echo_stats.percentiles_ms();
        println!(
            "round {n}: bare echo {echo_rate:.0} round trips/s (p50 {e50:.2} ms, p99 {e99:.2} ms)"
        );
        print_uncounted(n, "echo", &echo_stats);
        echo_rates.push(echo_rate);
        for (index, (what, rate, stats)) in this_round.into_iter().enumerate() {
            let [r50, r99, ..] = stats.percentiles_ms();
            let ratio = rate / echo_rate.max(1.0);
            println!(
                "round {n}: reference {what} {rate:.0}/s (p50 {r50:.2} ms, p99 {r99:.2} ms); ratio {ratio:.2}x"
            );
            print_uncounted(n, what, &stats);
            if measured.len() <= index {
                measured.push((what, Vec::with_capacity(rounds), Vec::with_capacity(rounds)));
            }
            measured[index].1.push(rate);
            measured[index].2.push(ratio);
        }
    }
    let medians = Medians {
        echo_rate: median(echo_rates),
        measured: measured
            .into_iter()
            .map(|(what, rates, ratios)| (what, median(rates), median(ratios)))
            .collect(),
    };
    for (what, _, ratio) in &medians.measured {
        println!("median ratio, {what}: {ratio:.2}x of the bare echo rate");
    }
    medians
}

/// The middle value, or the mean of the two middle ones when there is an even number (with
/// two rounds, the upper one alone would report the better round); 0 for none.
fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let middle = values.len() / 2;
    match values.len() {
        0 => 0.0,
        n if n % 2 == 1 => values[middle],
        _ => (values[middle - 1] + values[middle]) / 2.0,
    }
}

fn print_uncounted(round: usize, side: &str, stats: &stats::Stats) {
    let errors = stats.errors();
    if !errors.is_empty() {
        println!("round {round}: {side} answers not counted, by code: {errors:?}");
    }
}

/// An in-process cmdrelay server that knows `tokens`, on a temporary database.
/// `unlimited`: no per-client rate limit, for the closed loop that measures raw throughput.
async fn in_process_cmdrelay(
    tokens: Vec<String>,
    unlimited: bool,
) -> anyhow::Result<(RunningCmdrelay, tempfile::TempDir)> {
    let dir = tempfile::tempdir()?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let mut setup = CmdrelaySetup {
        tokens,
        ..CmdrelaySetup::default()
    };
    if unlimited {
        setup.session.rate_per_sec = f64::MAX;
        setup.session.rate_burst = f64::MAX;
    }
    let server = start_cmdrelay(listener, setup, &StoreConfig::sqlite_in(dir.path())?).await?;
    Ok((server, dir))
}

/// One token per room from the target's token API.
async fn mint_tokens(base: &str, admin_token: &str, rooms: usize) -> anyhow::Result<Vec<String>> {
    let client = reqwest::Client::new();
    let mut tokens = Vec::with_capacity(rooms);
    for _ in 0..rooms {
        let body: serde_json::Value = client
            .post(format!("{}/tokens", base.trim_end_matches('/')))
            .bearer_auth(admin_token)
            .json(&serde_json::json!({ "label": "load" }))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        tokens.push(
            body["token"]
                .as_str()
                .context("the token API answered no token")?
                .to_owned(),
        );
    }
    Ok(tokens)
}

async fn run_cmdrelay(args: CmdrelayArgs) -> anyhow::Result<()> {
    let rooms = args.rooms.min(MAX_NODES / args.clients_per_room.max(1));
    let (url, tokens, local) = match &args.target {
        Some(url) => {
            ensure_loopback(url)?;
            let base = args.admin_api.clone().unwrap_or_else(|| {
                url.replacen("ws://", "http://", 1)
                    .replace("/websocket", "/api/v1")
            });
            (
                url.clone(),
                mint_tokens(&base, &args.admin_token, rooms).await?,
                None,
            )
        }
        None => {
            let run = uuid::Uuid::new_v4().simple().to_string();
            let tokens: Vec<String> = (0..rooms)
                .map(|i| format!("load-{}-{i}", &run[..8]))
                .collect();
            let (server, dir) = in_process_cmdrelay(tokens.clone(), false).await?;
            (server.ws_url(), tokens, Some((server, dir)))
        }
    };
    let pid = args
        .run
        .server_pid
        .or_else(|| local.as_ref().map(|_| std::process::id()));
    let scenario = cmdrelay::Scenario {
        ws_url: url.clone(),
        tokens,
        clients_per_room: args.clients_per_room,
        interval: args.run.interval,
        duration: args.run.duration.min(MAX_DURATION),
        connect_concurrency: args.run.connect_concurrency,
    };
    eprintln!(
        "load: {rooms} rooms of {} clients against {url}, one execute per room every {:?} for {:?}",
        args.clients_per_room, scenario.interval, scenario.duration
    );
    let stats = stats::Stats::new();
    let rss_before = pid.and_then(stats::rss_kib);
    let started = Instant::now();
    if args.run.idle {
        let clients = cmdrelay::join_all(&scenario, &stats).await;
        let readers: Vec<_> = clients
            .into_iter()
            .flatten()
            .map(cmdrelay::keep_reading)
            .collect();
        eprintln!(
            "joined {} clients in {:.1} s",
            readers.len(),
            started.elapsed().as_secs_f64()
        );
        return report_idle(
            &stats,
            readers.len(),
            pid,
            rss_before,
            readers.len(),
            &CMDRELAY_WORDS,
        );
    }
    let joined = cmdrelay::run(&scenario, stats.clone()).await;
    eprintln!(
        "all rooms done after {:.1} s (joining included)",
        started.elapsed().as_secs_f64()
    );
    report_run(&stats, joined, scenario.duration, &CMDRELAY_WORDS)
}

const LOGRTC_WORDS: Words = Words {
    joined: "pairs registered and watching",
    sent: "candidates sent",
    received: "relayed candidates received",
    latency: "relay latency ms (producer to consumer)",
};

async fn run_logrtc(args: LogrtcArgs) -> anyhow::Result<()> {
    let pairs = args.pairs.min(MAX_NODES / 2);
    let (url, _local) = match &args.target {
        Some(url) => {
            ensure_loopback(url)?;
            (url.clone(), None)
        }
        None => {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
            let config = reference_server::protocol::logrtc::SessionConfig::default();
            let server = reference_server::server::start_logrtc(listener, config).await?;
            (server.ws_url(), Some(server))
        }
    };
    if let Some(producers) = args.producers {
        return run_logrtc_webrtc(&args, url, producers).await;
    }
    let scenario = logrtc::Scenario {
        ws_url: url.clone(),
        pairs,
        interval: args.run.interval,
        duration: args.run.duration.min(MAX_DURATION),
        connect_concurrency: args.run.connect_concurrency,
    };
    eprintln!(
        "load: {pairs} producer/consumer pairs ({} clients) against {url}, one candidate per pair every {:?} for {:?}",
        pairs * 2,
        scenario.interval,
        scenario.duration
    );
    let setup = std::sync::Arc::new(logrtc::SetUp {
        register: stats::Stats::new(),
        watch: stats::Stats::new(),
    });
    let relays = stats::Stats::new();
    let started = Instant::now();
    let joined = logrtc::run(&scenario, setup.clone(), relays.clone()).await;
    eprintln!(
        "done after {:.1} s (registration included)",
        started.elapsed().as_secs_f64()
    );
    let [p50, p99, p999, max] = setup.register.percentiles_ms();
    println!("register → registered ms: p50 {p50:.2}, p99 {p99:.2}, p99.9 {p999:.2}, max {max:.2}");
    let [p50, p99, p999, max] = setup.watch.percentiles_ms();
    println!(
        "watch → consumer_connected ms: p50 {p50:.2}, p99 {p99:.2}, p99.9 {p999:.2}, max {max:.2}"
    );
    let setup_errors = [setup.register.errors(), setup.watch.errors()];
    println!("set-up errors: {setup_errors:?}");
    let counted = report_run(&relays, joined, scenario.duration, &LOGRTC_WORDS);
    fail_on_errors("the set-up", &setup_errors)?;
    counted
}

/// Peer connections at once, at most: each holds a UDP socket and an SCTP association.
const MAX_PEERS: usize = 1_000;

async fn run_logrtc_webrtc(args: &LogrtcArgs, url: String, producers: usize) -> anyhow::Result<()> {
    let producers = producers.clamp(1, MAX_PEERS);
    let scenario = logrtc_webrtc::Scenario {
        ws_url: url.clone(),
        producers,
        consumers: args.consumers.unwrap_or(producers).clamp(1, MAX_PEERS),
        rate: args.rate.min(1_000_000),
        line_bytes: args.line_bytes.clamp(150, 16 * 1024),
        duration: args.run.duration.min(MAX_DURATION),
    };
    eprintln!(
        "load: {} producers and {} consumers over WebRTC against {url}, {} lines/s of ~{} bytes per producer for {:?}",
        scenario.producers, scenario.consumers, scenario.rate, scenario.line_bytes, scenario.duration
    );
    let measured = logrtc_webrtc::Measured::new();
    let progress = tokio::spawn(measured.lines.clone().show_progress(
        "lines read",
        Instant::now() + scenario.duration + STEP_LIMIT,
    ));
    let opened = logrtc_webrtc::run(&scenario, measured.clone()).await;
    progress.abort();
    let show = |label: &str, stats: &stats::Stats| {
        let [p50, p99, p999, max] = stats.percentiles_ms();
        println!(
            "{label} ms: p50 {p50:.2}, p99 {p99:.2}, p99.9 {p999:.2}, max {max:.2} (n {})",
            stats.acked.load(std::sync::atomic::Ordering::Relaxed)
        );
    };
    show("register → registered", &measured.register);
    show("watch → watching", &measured.watch);
    show("watch → logs channel open", &measured.open);
    show("line latency (written → read)", &measured.lines);
    let read = measured
        .lines
        .acked
        .load(std::sync::atomic::Ordering::Relaxed);
    let written = measured.written.load(std::sync::atomic::Ordering::Relaxed);
    println!(
        "channels open {opened}/{}; lines written {written}, read {read} ({:.0} lines/s read over {:?}); gaps {}; producer drops {}",
        scenario.consumers,
        read as f64 / scenario.duration.as_secs_f64(),
        scenario.duration,
        measured.gaps.load(std::sync::atomic::Ordering::Relaxed),
        measured.producer_drops.load(std::sync::atomic::Ordering::Relaxed),
    );
    let errors = [
        measured.register.errors(),
        measured.watch.errors(),
        measured.open.errors(),
    ];
    println!("set-up errors: {errors:?}");
    fail_on_errors("the set-up", &errors)
}

/// How long the progress line outlives the window: set-up and grace.
const STEP_LIMIT: Duration = Duration::from_secs(40);

fn relay_frame() -> tokio_tungstenite::tungstenite::Message {
    tokio_tungstenite::tungstenite::Message::text(
        r#"{"cmd":"execute","extra":{"command":"load","sent_ns":0,"seq":0}}"#,
    )
}

/// Alternates echo and relay rounds so that both see the same machine noise, and reports the
/// median of the per-round ratios, for the one-way loop and the execute/execute_result
/// exchange (see [`cmdrelay::RelayLoop`]).
async fn cmdrelay_vs_echo(pairs: usize, duration: Duration, rounds: usize) -> anyhow::Result<()> {
    let echo_url = echo::start_echo_server(loopback_any_port()).await?;
    // Rooms of their own for each loop, so that no socket of the other lingers in them.
    let tokens_for = |loop_name: &str| -> Vec<String> {
        (0..pairs).map(|i| format!("{loop_name}-{i}")).collect()
    };
    let (one_way_tokens, exchange_tokens) = (tokens_for("one-way"), tokens_for("exchange"));
    let all_tokens = [one_way_tokens.clone(), exchange_tokens.clone()].concat();
    let (server, _dir) = in_process_cmdrelay(all_tokens, true).await?;
    eprintln!(
        "closed loop, {pairs} pairs, {rounds} rounds of {duration:?} echo, {duration:?} one-way \
relays and {duration:?} execute/execute_result exchanges"
    );
    let server_url = &server.ws_url();
    let (echo_url, one_way_tokens, exchange_tokens) =
        (&echo_url, &one_way_tokens, &exchange_tokens);
    alternate_with_echo(rounds, || async move {
        let echo = echo::echo_rate(echo_url, pairs, duration, relay_frame).await;
        let pairs_in = |tokens| cmdrelay::join_pairs(server_url, tokens);
        let (one_way, one_way_stats) =
            cmdrelay::relay_rate(pairs_in(one_way_tokens).await, duration, RelayLoop::OneWay).await;
        let (exchange, exchange_stats) = cmdrelay::relay_rate(
            pairs_in(exchange_tokens).await,
            duration,
            RelayLoop::Exchange,
        )
        .await;
        (
            echo,
            vec![
                ("relays, one way", one_way, one_way_stats),
                ("relays in exchanges", exchange, exchange_stats),
            ],
        )
    })
    .await;
    Ok(())
}

#[derive(Debug, clap::Args)]
struct SfuArgs {
    /// ws://127.0.0.1:8443/ws. Default: the release reference-server next to this binary,
    /// spawned on free ports (so that its CPU is measured apart), else one in this process.
    #[arg(long)]
    target: Option<String>,
    /// The target's process id, to measure its CPU per forwarded packet.
    #[arg(long)]
    server_pid: Option<u32>,
    #[arg(long, default_value_t = 1)]
    rooms: usize,
    /// Publishers per room.
    #[arg(long, default_value_t = 1)]
    publishers: usize,
    /// Subscribers per room; each subscribes to every publisher of its room.
    #[arg(long, default_value_t = 10)]
    subscribers: usize,
    /// What each publisher sends: audio (Opus, 50 packets/s), video (VP8, 30 frames/s) or av.
    #[arg(long, default_value = "audio")]
    tracks: String,
    /// The VP8 clip a publisher loops: `small` (about 32 packets/s of 380 bytes) or `hd`
    /// (1280x720 at about 2.6 Mbit/s: about 300 packets/s, so that 1 publisher × 500
    /// subscribers forwards 150,000 packets/s).
    #[arg(long, value_enum, default_value = "small")]
    video_clip: conformance::client::media::VideoClip,
    /// Subscriber joins per second while the rooms fill.
    #[arg(long, default_value_t = 20.0)]
    joins_per_sec: f64,
    /// The measured window, after every subscriber receives.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// How long the rooms run before the measured window opens (after the 2 s settle): for a
    /// soak, so that the memory figure starts once str0m's per-stream buffers have filled.
    #[arg(long, default_value = "0s", value_parser = humantime::parse_duration)]
    warmup: Duration,
    /// Skip the bare UDP relay baseline.
    #[arg(long)]
    no_baseline: bool,
    /// How the baseline relay's receivers read, to match the subscribers: `waiting` sleeps
    /// until a datagram arrives, as a decoding subscriber's task does; `polling` reads without
    /// ever waiting in the kernel, as the counting pool of `--light` does, so no sender pays to
    /// wake it. Default: `polling` with `--light`, else `waiting`.
    #[arg(long, value_enum)]
    baseline_receivers: Option<udp_relay::Receivers>,
    /// Nine subscribers in ten count RTP datagrams instead of decrypting them, and once
    /// connected one thread reads all their sockets (napping 1 ms between reads), so that the
    /// load generator is not the bottleneck; every tenth still decodes (loss is checked for all).
    #[arg(long)]
    light: bool,
}

/// Peer connections one `load sfu` run may open: each is a UDP socket and a task here.
const MAX_SFU_PEERS: usize = 5_000;

/// A spawned reference server; killed on drop.
struct SpawnedServer {
    child: tokio::process::Child,
    ws_url: String,
    /// The server's data directory, removed on drop.
    _data: Option<tempfile::TempDir>,
}

/// Starts `reference-server` from this binary's directory with its SFU on free ports, if it
/// is there.
async fn spawn_reference_sfu() -> anyhow::Result<Option<SpawnedServer>> {
    spawn_reference_server(&["--ecapture-rate", "0"], "ready sfu ").await
}

/// Starts `reference-server` from this binary's directory, every protocol on a free port and
/// its data in a directory of its own, with `extra` arguments; its URL is what follows
/// `ready` on its ready line. `None` when there is no such program.
async fn spawn_reference_server(
    extra: &[&str],
    ready: &str,
) -> anyhow::Result<Option<SpawnedServer>> {
    let Some(program) = std::env::current_exe()?
        .parent()
        .map(|d| d.join("reference-server"))
    else {
        return Ok(None);
    };
    if !program.is_file() {
        return Ok(None);
    }
    let data = tempfile::Builder::new().prefix("load-server-").tempdir()?;
    let ports = [
        "--nodemgr-port",
        "--cmdrelay-port",
        "--ecapture-port",
        "--logrtc-port",
        "--sfu-port",
        "--sfu-media-port",
    ];
    let mut command = tokio::process::Command::new(&program);
    for port in ports {
        command.args([port, "0"]);
    }
    command.arg("--data-dir").arg(data.path()).args(extra);
    spawn_until_ready(command, ready, Some(data))
        .await
        .map(Some)
}

/// Starts `load echo-server` (this binary) on a free loopback port: the bare echo in a process
/// of its own, as a spawned reference server is.
async fn spawn_echo_server() -> anyhow::Result<SpawnedServer> {
    let mut command = tokio::process::Command::new(std::env::current_exe()?);
    command.args(["echo-server", "--listen", "127.0.0.1:0"]);
    spawn_until_ready(command, ECHO_READY, None).await
}

/// What `load echo-server` prints before its URL once it listens.
const ECHO_READY: &str = "ready echo ";

/// Lines of a spawned server's stderr kept to say why it did not start.
const STDERR_TAIL: usize = 20;

/// Spawns `command` (killed on drop) and waits up to 30 s for the stdout line that begins
/// with `ready`; what follows it, up to any `?` or space, is the server's URL. `data`, its
/// data directory, lives as long as it does. A server that never gets ready is killed, and
/// the error ends with the last lines it wrote to stderr.
async fn spawn_until_ready(
    mut command: tokio::process::Command,
    ready: &str,
    data: Option<tempfile::TempDir>,
) -> anyhow::Result<SpawnedServer> {
    use tokio::io::AsyncBufReadExt;
    let program = command
        .as_std()
        .get_program()
        .to_string_lossy()
        .into_owned();
    let mut child = command
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("cannot start {program}"))?;
    let (Some(stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
        anyhow::bail!("{program} started without its stdout and stderr piped");
    };
    // Read all along, not only on failure: a full pipe would stall the server's logging.
    let stderr_tail = tokio::spawn(last_lines(stderr, STDERR_TAIL));
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let ws_url = tokio::time::timeout(Duration::from_secs(30), async {
        while let Ok(Some(line)) = lines.next_line().await {
            if let Some(url) = line
                .strip_prefix(ready)
                .and_then(|rest| rest.split(['?', ' ']).next())
            {
                return Some(url.to_owned());
            }
        }
        None
    })
    .await
    .ok()
    .flatten();
    let Some(ws_url) = ws_url else {
        let _ = child.kill().await;
        let tail = tokio::time::timeout(Duration::from_secs(2), stderr_tail)
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or_default();
        anyhow::bail!(
            "{program} printed no `{}` line; the end of its stderr:\n{}",
            ready.trim_end(),
            Vec::from(tail).join("\n")
        );
    };
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Ok(SpawnedServer {
        child,
        ws_url,
        _data: data,
    })
}

/// Reads `stream` to its end; its last `keep` lines.
async fn last_lines(
    stream: impl tokio::io::AsyncRead + Unpin,
    keep: usize,
) -> std::collections::VecDeque<String> {
    use tokio::io::AsyncBufReadExt;
    let mut tail = std::collections::VecDeque::with_capacity(keep);
    let mut lines = tokio::io::BufReader::new(stream).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        if tail.len() == keep {
            tail.pop_front();
        }
        tail.push_back(line);
    }
    tail
}

fn sfu_tracks(name: &str) -> anyhow::Result<conformance::client::media::Tracks> {
    use conformance::client::media::Tracks;
    match name {
        "audio" => Ok(Tracks::AUDIO),
        "video" => Ok(Tracks::VIDEO),
        "av" => Ok(Tracks::AUDIO_VIDEO),
        other => anyhow::bail!("--tracks {other}: use audio, video or av"),
    }
}

async fn run_sfu(args: SfuArgs) -> anyhow::Result<()> {
    let peers = args.rooms * args.publishers * (1 + args.subscribers);
    anyhow::ensure!(
        peers <= MAX_SFU_PEERS,
        "{peers} peer connections asked; at most {MAX_SFU_PEERS}"
    );
    anyhow::ensure!(
        args.rooms > 0 && args.publishers > 0,
        "--rooms and --publishers must be at least 1"
    );
    let mut _in_process = None;
    let mut _spawned = None;
    let (url, server_pid) = match &args.target {
        Some(url) => {
            ensure_loopback(url)?;
            (
                url.split('?').next().unwrap_or(url).to_owned(),
                args.server_pid,
            )
        }
        None => match spawn_reference_sfu().await? {
            Some(server) => {
                let pid = server.child.id();
                let url = server.ws_url.clone();
                _spawned = Some(server);
                (url, pid)
            }
            None => {
                eprintln!("load: no reference-server next to this binary; the SFU runs in this process and its CPU cannot be told apart (cargo build --release -p reference-server)");
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
                let setup = reference_server::server::SfuSetup {
                    media_bind: "127.0.0.1:0".parse()?,
                    ..reference_server::server::SfuSetup::default()
                };
                let server = reference_server::server::start_sfu(listener, setup).await?;
                let url = server.ws_url();
                _in_process = Some(server);
                (url, None)
            }
        },
    };
    let scenario = sfu::Scenario {
        ws_url: url.clone(),
        rooms: args.rooms,
        publishers: args.publishers,
        subscribers: args.subscribers,
        tracks: sfu_tracks(&args.tracks)?.with_clip(args.video_clip),
        duration: args.duration.min(MAX_DURATION),
        joins_per_sec: args.joins_per_sec,
        light: args.light,
    };
    eprintln!(
        "load: {} rooms × ({} publishers of {} + {} subscribers of each) against {url}; {} subscriptions",
        args.rooms, args.publishers, args.tracks, args.subscribers, args.rooms * args.publishers * args.subscribers
    );
    let set_up_started = Instant::now();
    let running = sfu::set_up(&scenario).await?;
    eprintln!(
        "set up in {:.1} s; settling 2 s",
        set_up_started.elapsed().as_secs_f64()
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    let warmup = args.warmup.min(MAX_DURATION);
    if !warmup.is_zero() {
        eprintln!("warming up for {warmup:?} before the measured window");
        tokio::time::sleep(warmup).await;
    }
    let figures = measure_sfu(&running, scenario.duration, server_pid).await;
    let [p50, p99, p999, max] = running.join_to_first_rtp.percentiles_ms();
    println!("join → first RTP ms: p50 {p50:.1}, p99 {p99:.1}, p99.9 {p999:.1}, max {max:.1} (n {}, errors {:?})", running.join_to_first_rtp.acked.load(std::sync::atomic::Ordering::Relaxed), running.join_to_first_rtp.errors());
    figures.print();
    if !args.no_baseline {
        let receivers = args.baseline_receivers.unwrap_or(if args.light {
            udp_relay::Receivers::Polling
        } else {
            udp_relay::Receivers::Waiting
        });
        let load = figures.relay_load(&scenario, receivers);
        eprintln!("baseline: a bare UDP relay, {} streams × {} {:?} receivers, {:.0} packets/s per stream of {} bytes, {:?}", load.streams, load.fanout, load.receivers, load.packets_per_sec, load.packet_bytes, load.duration);
        drop(running);
        let runtime = tokio::runtime::Handle::current();
        let relay = tokio::task::spawn_blocking(move || udp_relay::run(load, &runtime)).await??;
        let relay_us = relay.cpu_per_packet_us();
        println!("baseline UDP relay: {} forwarded ({:.0}/s), {} received; relay CPU {:.2} s = {relay_us:.2} µs per forwarded packet", relay.forwarded, relay.forwarded as f64 / load.duration.as_secs_f64(), relay.received, relay.relay_cpu);
        if relay.relay_cpu < 0.1 {
            println!("the relay used under 0.1 CPU seconds: too little to compare; raise the load or --duration");
        } else if let Some(sfu_us) = figures.sfu_cpu_per_packet_us() {
            println!(
                "SFU CPU per forwarded RTP packet / bare relay's: {:.2}×",
                sfu_us / relay_us.max(f64::MIN_POSITIVE)
            );
        }
    }
    Ok(())
}

/// Thread names shown in the SFU's CPU breakdown: its media loop and fanout threads, and
/// signaling's workers, come first on any load that matters.
const SFU_THREADS_SHOWN: usize = 6;

/// What one measured window showed.
struct SfuFigures {
    window: Duration,
    delta: sfu::Tally,
    end: sfu::Tally,
    /// From the window's start to when nothing more arrived after the publishers stopped.
    drained: Drained,
    streams: usize,
    fanout: usize,
    own_cpu: f64,
    server_cpu: Option<f64>,
    /// The SFU's CPU seconds in the window by thread name, the busiest first.
    server_threads: Vec<(String, f64)>,
    /// The SFU's resident memory at the start and end of the window, in KiB.
    server_rss: Option<(u64, u64)>,
    /// Datagrams dropped by full UDP receive buffers in the window, every socket of this
    /// network namespace: the SFU's, the subscribers', anyone's.
    udp_drops: Option<u64>,
}

impl SfuFigures {
    fn sfu_cpu_per_packet_us(&self) -> Option<f64> {
        self.server_cpu
            .map(|cpu| cpu * 1e6 / self.delta.rtp_packets.max(1) as f64)
    }

    fn relay_load(
        &self,
        scenario: &sfu::Scenario,
        receivers: udp_relay::Receivers,
    ) -> udp_relay::RelayLoad {
        let pairs = (self.streams * self.fanout).max(1) as f64;
        udp_relay::RelayLoad {
            streams: self.streams,
            fanout: self.fanout,
            packets_per_sec: self.delta.rtp_packets as f64 / self.window.as_secs_f64() / pairs,
            packet_bytes: (self.delta.rtp_bytes / self.delta.rtp_packets.max(1)).clamp(20, 1400)
                as usize,
            duration: scenario.duration,
            receivers,
        }
    }

    fn print(&self) {
        let secs = self.window.as_secs_f64();
        let d = &self.delta;
        let loss = 1.0 - d.received as f64 / d.expected.max(1) as f64;
        println!(
            "forwarded samples received: {} ({:.0}/s), expected {} → loss {:.3} %",
            d.received,
            d.received as f64 / secs,
            d.expected,
            loss.max(0.0) * 100.0
        );
        println!(
            "RTP packets received by subscribers: {} ({:.0}/s), {:.2} Mbit/s",
            d.rtp_packets,
            d.rtp_packets as f64 / secs,
            d.rtp_bytes as f64 * 8.0 / secs / 1e6
        );
        let drained = &self.drained.delta;
        let late = drained.received.saturating_sub(d.received);
        let loss_drained = 1.0 - drained.received as f64 / drained.expected.max(1) as f64;
        println!(
            "after the window the publishers stopped; in the next {} ms {late} more samples arrived → loss once drained {:.3} %",
            self.drained.waited.as_millis(),
            loss_drained.max(0.0) * 100.0
        );
        println!("NACKs sent by subscribers {}, PLIs {} (whole run); jitter max audio {:.2} ms, video {:.2} ms", self.end.nacks_sent, self.end.plis_sent, self.end.jitter_audio_ms, self.end.jitter_video_ms);
        println!("load generator CPU: {:.2} cores", self.own_cpu / secs);
        match (self.server_cpu, self.sfu_cpu_per_packet_us()) {
            (Some(cpu), Some(us)) => println!(
                "SFU CPU: {:.2} cores; {us:.2} µs per forwarded RTP packet",
                cpu / secs
            ),
            _ => {
                println!("SFU CPU: not measured (no --server-pid, or the SFU runs in this process)")
            }
        }
        if !self.server_threads.is_empty() {
            let threads: Vec<String> = self
                .server_threads
                .iter()
                .take(SFU_THREADS_SHOWN)
                .filter(|(_, cpu)| cpu / secs >= 0.005)
                .map(|(name, cpu)| format!("{name} {:.2}", cpu / secs))
                .collect();
            println!("SFU cores by thread: {}", threads.join(", "));
        }
        if let Some((start, end)) = self.server_rss {
            let change = (end as f64 - start as f64) / start.max(1) as f64 * 100.0;
            println!("SFU memory: {start} KiB → {end} KiB over the window ({change:+.2} %)");
        }
        if let Some(drops) = self.udp_drops {
            println!("UDP datagrams dropped by full receive buffers in the window (every socket on this machine's network namespace): {drops}");
        }
        if self.own_cpu / secs > 0.9 {
            println!(
                "warning: the load generator used {:.2} cores of 2: it may be the bottleneck",
                self.own_cpu / secs
            );
        }
    }
}

fn minus(end: sfu::Tally, start: sfu::Tally) -> sfu::Tally {
    sfu::Tally {
        received: end.received - start.received.min(end.received),
        bytes: end.bytes.saturating_sub(start.bytes),
        expected: end.expected.saturating_sub(start.expected),
        rtp_packets: end.rtp_packets.saturating_sub(start.rtp_packets),
        rtp_bytes: end.rtp_bytes.saturating_sub(start.rtp_bytes),
        nacks_sent: end.nacks_sent.saturating_sub(start.nacks_sent),
        plis_sent: end.plis_sent.saturating_sub(start.plis_sent),
        jitter_audio_ms: end.jitter_audio_ms,
        jitter_video_ms: end.jitter_video_ms,
    }
}

/// The longest `load sfu` waits, once its publishers stop, for what they sent to arrive.
const DRAIN_AT_MOST: Duration = Duration::from_secs(3);
/// Arrivals are settled when none came in this long.
const DRAIN_QUIET: Duration = Duration::from_millis(300);

/// What arrived once the publishers stopped, counted from the window's start.
struct Drained {
    delta: sfu::Tally,
    waited: Duration,
}

/// Stops every publisher, then waits until nothing more arrives (or [`DRAIN_AT_MOST`]): a
/// packet still queued when the window closed is late, not lost.
async fn drain(running: &sfu::Running, start: sfu::Tally) -> Drained {
    for publisher in &running.publishers {
        publisher.stop_sending().await;
    }
    let stopped = Instant::now();
    let mut last = sfu::tally(running);
    let mut quiet_since = Instant::now();
    while stopped.elapsed() < DRAIN_AT_MOST && quiet_since.elapsed() < DRAIN_QUIET {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let now = sfu::tally(running);
        if now.received != last.received {
            quiet_since = Instant::now();
        }
        last = now;
    }
    Drained {
        delta: minus(last, start),
        waited: stopped.elapsed(),
    }
}

async fn measure_sfu(
    running: &sfu::Running,
    window: Duration,
    server_pid: Option<u32>,
) -> SfuFigures {
    let server_stat = server_pid.map(|pid| format!("/proc/{pid}/stat"));
    let server_cpu = || server_stat.as_deref().and_then(sfu::cpu_seconds);
    let own = || sfu::cpu_seconds("/proc/self/stat").unwrap_or(0.0);
    let threads = || server_pid.map(sfu::thread_cpu_seconds).unwrap_or_default();
    let (start, own_start, server_start) = (sfu::tally(running), own(), server_cpu());
    let threads_start = threads();
    let rss_start = server_pid.and_then(stats::rss_kib);
    let drops_start = stats::udp_receive_buffer_errors();
    let started = Instant::now();
    let mut last = start;
    while started.elapsed() < window {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let now = sfu::tally(running);
        let rss = server_pid
            .and_then(stats::rss_kib)
            .map_or_else(String::new, |kib| format!(", SFU memory {kib} KiB"));
        eprintln!(
            "[{:>4}s] samples received {}/s, RTP packets {}/s{rss}",
            started.elapsed().as_secs(),
            now.received - last.received.min(now.received),
            now.rtp_packets.saturating_sub(last.rtp_packets)
        );
        last = now;
    }
    let end = sfu::tally(running);
    let elapsed = started.elapsed();
    // Read before the drain, whose waiting would count as idle time.
    let own_cpu = own() - own_start;
    let server_cpu = server_cpu()
        .zip(server_start)
        .map(|(end, start)| end - start);
    let server_threads = sfu::cpu_by_thread_name(&threads_start, &threads());
    let server_rss = rss_start.zip(server_pid.and_then(stats::rss_kib));
    let udp_drops = stats::udp_receive_buffer_errors()
        .zip(drops_start)
        .map(|(end, start)| end.saturating_sub(start));
    let drained = drain(running, start).await;
    let streams = running.publishers.len();
    SfuFigures {
        window: elapsed,
        delta: minus(end, start),
        end,
        streams,
        fanout: running.subscriptions.len() / streams.max(1),
        drained,
        own_cpu,
        server_cpu,
        server_threads,
        server_rss,
        udp_drops,
    }
}

#[cfg(test)]
mod tests {
    use super::{
        fail_on_errors, median, meets_min_ratio, positive_ratio, spawn_until_ready, summarize,
        ErrorCounts, Medians, ECHO_READY,
    };

    #[test]
    fn an_even_count_takes_the_mean_of_the_two_middle_values() {
        assert_eq!(median(vec![0.76, 0.49]), 0.625);
        assert_eq!(median(vec![0.6, 0.57, 0.72]), 0.6);
        assert_eq!(median(Vec::new()), 0.0);
    }

    /// Each server's peak is taken at its own best count of loops; one count is judged by its
    /// median ratio.
    #[test]
    fn the_peak_ratio_compares_each_servers_best_count() {
        let medians = |echo_rate, heartbeats, ratio| Medians {
            echo_rate,
            measured: vec![("heartbeats", heartbeats, ratio)],
        };
        let report = summarize(&[
            (64, medians(120_000.0, 50_000.0, 0.42)),
            (1024, medians(100_000.0, 80_000.0, 0.8)),
        ]);
        let peak = report.peak.as_ref().expect("a peak with two counts");
        assert_eq!(
            (peak.echo_connections, peak.heartbeat_connections),
            (64, 1024)
        );
        assert_eq!(peak.ratio, 80_000.0 / 120_000.0);
        assert_eq!(report.ratio, peak.ratio);
        assert_eq!(report.levels[1].median_ratio, 0.8);
        let single = summarize(&[(64, medians(120_000.0, 50_000.0, 0.42))]);
        assert!(single.peak.is_none());
        assert_eq!(single.ratio, 0.42);
    }

    #[test]
    fn a_ratio_below_min_ratio_fails_the_run() {
        assert!(meets_min_ratio(0.69, Some(0.7)).is_err());
        assert!(meets_min_ratio(0.7, Some(0.7)).is_ok());
        assert!(meets_min_ratio(0.1, None).is_ok());
        assert!(positive_ratio("0.7").is_ok());
        for refused in ["0", "-1", "NaN", "inf", "x"] {
            assert!(positive_ratio(refused).is_err(), "{refused}");
        }
    }

    #[test]
    fn a_run_that_counted_an_error_fails() {
        let mut errors = std::collections::BTreeMap::new();
        assert!(fail_on_errors("the run", [&errors]).is_ok());
        errors.insert("connect".to_owned(), 2);
        errors.insert("RATE_LIMITED".to_owned(), 1);
        let failed = fail_on_errors("the run", [&errors]).expect_err("three errors counted");
        assert!(failed.to_string().contains("counted 3 errors"), "{failed}");
        // Over several counts (a set-up's stages), the errors of each are added up.
        let failed = fail_on_errors("the set-up", [&ErrorCounts::new(), &errors, &errors])
            .expect_err("six errors counted");
        assert!(failed.to_string().contains("counted 6 errors"), "{failed}");
    }

    #[tokio::test]
    async fn a_server_that_never_gets_ready_is_reported_with_the_end_of_its_stderr() {
        let mut command = tokio::process::Command::new("sh");
        command.args(["-c", "echo 'cannot bind 127.0.0.1:9999' >&2; exit 3"]);
        let error = spawn_until_ready(command, "ready nodemgr ", None)
            .await
            .err()
            .expect("no ready line");
        let message = error.to_string();
        assert!(
            message.contains("printed no `ready nodemgr` line"),
            "{message}"
        );
        assert!(message.contains("cannot bind 127.0.0.1:9999"), "{message}");
    }

    #[tokio::test]
    async fn a_ready_line_gives_the_url_before_its_query() {
        let mut command = tokio::process::Command::new("sh");
        command.args([
            "-c",
            "echo starting; echo 'ready echo ws://127.0.0.1:1/?x=1'; sleep 5",
        ]);
        let server = spawn_until_ready(command, ECHO_READY, None)
            .await
            .expect("ready");
        assert_eq!(server.ws_url, "ws://127.0.0.1:1/");
    }
}
