//! Ship a Rust program's logs to logrtc consumers (seed 000) over WebRTC data channels.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! // One line: a producer named `checkout-api` on the default signaling server, with a
//! // `tracing` subscriber that prints to stderr and ships every INFO-or-worse event.
//! let _producer = logrtc_producer::init("ws://127.0.0.1:8080/signaling", "checkout-api")?;
//! tracing::info!(user_id = 12345, "order placed");
//! # Ok(()) }
//! ```
//!
//! The producer registers with the signaling server, answers every consumer that watches it
//! with its own peer connection, and writes entries in the document's standard format on an
//! ordered data channel labelled `logs`. While no channel is open it keeps the newest 10,000
//! entries and counts what it drops. See `fixtures/logrtc/CLARIFICATIONS.md` (L8, L10).

pub mod dispatch;
pub mod entry;
pub mod layer;
pub mod metrics;
pub mod peer;
pub mod signaling;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::Layer as _;

pub use dispatch::PRODUCER_TARGET;
pub use entry::{Level, LogEntry, SpanRef};
pub use layer::LogrtcLayer;
pub use metrics::MetricsSnapshot;

use dispatch::SharedDispatch;
use metrics::Metrics;
use peer::{PeerContext, PeerSettings};

/// The document's default signaling address (000 §3).
pub const DEFAULT_SIGNALING_URL: &str = "ws://127.0.0.1:8080/signaling";
/// Entries kept while no consumer's channel is open (L10).
pub const DEFAULT_BUFFER_CAPACITY: usize = 10_000;

/// How a producer connects and what it ships.
#[derive(Clone, Debug)]
pub struct ProducerConfig {
    pub signaling_url: String,
    /// The producer's `client_id`: non-empty, at most 128 characters (L1).
    pub client_id: String,
    /// Shown to consumers in the producer listing; a JSON object of at most 4 KiB (L1).
    pub metadata: Value,
    /// The least severe level shipped: `Info` ships ERROR, WARN and INFO.
    pub max_level: Level,
    /// Entries kept per queue: the backlog, and each consumer's queue.
    pub buffer_capacity: usize,
    pub reconnect_min: Duration,
    pub reconnect_max: Duration,
    /// Local UDP addresses for ICE. `127.0.0.1:0` (the default) stays on loopback; use
    /// `0.0.0.0:0` to reach consumers on other hosts.
    pub udp_addrs: Vec<String>,
    /// STUN/TURN server URLs.
    pub ice_servers: Vec<String>,
}

impl ProducerConfig {
    pub fn new(signaling_url: impl Into<String>, client_id: impl Into<String>) -> Self {
        ProducerConfig {
            signaling_url: signaling_url.into(),
            client_id: client_id.into(),
            metadata: Value::Object(Default::default()),
            max_level: Level::Info,
            buffer_capacity: DEFAULT_BUFFER_CAPACITY,
            reconnect_min: Duration::from_millis(500),
            reconnect_max: Duration::from_secs(30),
            udp_addrs: vec!["127.0.0.1:0".to_owned()],
            ice_servers: Vec::new(),
        }
    }
}

/// Hands entries to a running producer. Cheap to clone; never blocks.
#[derive(Clone, Debug)]
pub struct ProducerHandle {
    dispatch: SharedDispatch,
    metrics: Arc<Metrics>,
    max_level: Level,
}

impl ProducerHandle {
    pub fn accepts(&self, level: Level) -> bool {
        let accepted = level.passes(self.max_level);
        if !accepted {
            self.metrics.filtered.fetch_add(1, Ordering::Relaxed);
        }
        accepted
    }

    /// Queues an entry for every open `logs` channel, or for the backlog.
    pub fn log(&self, entry: LogEntry) {
        if self.accepts(entry.level) {
            self.dispatch.lock().push(Arc::from(entry.to_json()));
        }
    }

    pub fn metrics(&self) -> MetricsSnapshot {
        self.metrics.snapshot()
    }

    /// Entries waiting: in the backlog and in the open channels' queues.
    pub fn pending(&self) -> usize {
        let dispatch = self.dispatch.lock();
        dispatch.backlog_len() + dispatch.queued()
    }
}

/// A running producer. Dropping it leaves the tasks running; call [`Producer::shutdown`].
#[derive(Debug)]
pub struct Producer {
    handle: ProducerHandle,
    shutdown: watch::Sender<bool>,
    signaling: JoinHandle<()>,
}

impl Producer {
    /// Starts the signaling task. Must be called inside a Tokio runtime.
    pub fn start(config: ProducerConfig) -> Producer {
        let metrics = Arc::new(Metrics::default());
        let dispatch = SharedDispatch::new(config.buffer_capacity, Arc::clone(&metrics));
        let handle = ProducerHandle {
            dispatch: dispatch.clone(),
            metrics: Arc::clone(&metrics),
            max_level: config.max_level,
        };
        let (outbound_tx, outbound) = mpsc::channel(signaling::OUTBOUND_DEPTH);
        let context = PeerContext {
            settings: Arc::new(PeerSettings {
                udp_addrs: config.udp_addrs.clone(),
                ice_servers: config.ice_servers.clone(),
            }),
            dispatch,
            metrics: Arc::clone(&metrics),
            outbound: outbound_tx,
        };
        let (shutdown, shutdown_rx) = watch::channel(false);
        tokio::spawn(measure_send_rate(metrics, shutdown_rx.clone()));
        let signaling = tokio::spawn(signaling::run(
            Arc::new(config),
            context,
            outbound,
            shutdown_rx,
        ));
        Producer {
            handle,
            shutdown,
            signaling,
        }
    }

    pub fn handle(&self) -> ProducerHandle {
        self.handle.clone()
    }

    /// A `tracing` layer feeding this producer.
    pub fn layer(&self) -> LogrtcLayer {
        LogrtcLayer::new(self.handle())
    }

    /// Waits until every open channel's queue is empty, or `within` passes. Returns whether
    /// the queues emptied. Entries in the backlog wait for a consumer and are not counted.
    pub async fn flush(&self, within: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + within;
        while self.handle.dispatch.lock().queued() > 0 {
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        true
    }

    /// Closes the signaling connection and stops reconnecting.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        let _ = self.signaling.await;
    }
}

async fn measure_send_rate(metrics: Arc<Metrics>, mut shutdown: watch::Receiver<bool>) {
    let mut ticker = tokio::time::interval(Duration::from_secs(1));
    let mut last = 0;
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = shutdown.changed() => return,
        }
        let sent = metrics.sent_entries.load(Ordering::Relaxed);
        metrics
            .sent_entries_per_second
            .store(sent - last, Ordering::Relaxed);
        last = sent;
    }
}

/// The one-line setup: starts a producer and installs a global `tracing` subscriber that
/// prints to stderr (filtered by `RUST_LOG`, default `info`) and ships INFO and above.
pub fn init(signaling_url: &str, client_id: &str) -> anyhow::Result<Producer> {
    let producer = Producer::start(ProducerConfig::new(signaling_url, client_id));
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::registry()
        .with(producer.layer())
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_filter(filter),
        )
        .try_init()?;
    Ok(producer)
}
