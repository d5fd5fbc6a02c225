//! Shared state of the ecapture service: the hub that fans frames out to every client, the
//! start-up log, and the task that paces events from the source into the hub.

use super::read_clock;
use crate::faults::{Fault, Faults};
use crate::protocol::ecapture::pb::Event;
use crate::protocol::ecapture::source::{EventSource, Pacer, SourceConfig};
use crate::protocol::ecapture::{entries, Encoder, Frame, SessionConfig, StartupLog};
use crate::protocol::Now;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;
use tokio::sync::broadcast;

/// Settings of an ecapture service.
#[derive(Debug, Clone)]
pub struct EcaptureConfig {
    pub session: SessionConfig,
    /// Frames a client may fall behind before it is disconnected (rounded up to a power of two).
    pub queue_depth: usize,
    pub startup_log_limit: usize,
    pub source: SourceConfig,
}

impl Default for EcaptureConfig {
    fn default() -> Self {
        use crate::protocol::ecapture::{records, QUEUE_DEPTH, STARTUP_LOG_LIMIT};
        Self {
            session: SessionConfig::default(),
            queue_depth: QUEUE_DEPTH,
            startup_log_limit: STARTUP_LOG_LIMIT,
            source: SourceConfig::Replay {
                events: records::parse_lines(records::SAMPLE).unwrap_or_default(),
                rate: 2.0,
                repeat: true,
            },
        }
    }
}

/// A frame on its way to every client.
#[derive(Debug, Clone)]
pub struct Published {
    pub seq: u64,
    pub is_event: bool,
    pub frame: Frame,
}

/// Counters of the service, for logs and the load generator.
#[derive(Debug, Default)]
pub struct EcaptureStats {
    pub events: AtomicU64,
    pub clients: AtomicUsize,
    pub dropped_slow: AtomicU64,
}

#[derive(Debug)]
pub struct EcaptureApp {
    pub session: SessionConfig,
    pub stats: EcaptureStats,
    encoder: Encoder,
    startup: Mutex<StartupLog>,
    hub: broadcast::Sender<Published>,
    seq: AtomicU64,
    next_connection: AtomicU64,
    /// Under `ecapture/shared-heartbeat-count`: the server-wide count.
    shared_heartbeats: AtomicI64,
    /// Under `ecapture/stall-after-reset`: set once a client drops without a close.
    stalled: AtomicBool,
}

impl EcaptureApp {
    pub fn new(config: &EcaptureConfig) -> Arc<Self> {
        let (hub, _) = broadcast::channel(config.queue_depth.max(1));
        Arc::new(Self {
            encoder: Encoder::new(config.session.faults.clone()),
            session: config.session.clone(),
            stats: EcaptureStats::default(),
            startup: Mutex::new(StartupLog::new(config.startup_log_limit)),
            hub,
            seq: AtomicU64::new(0),
            next_connection: AtomicU64::new(1),
            shared_heartbeats: AtomicI64::new(0),
            stalled: AtomicBool::new(false),
        })
    }

    pub fn faults(&self) -> &Faults {
        &self.session.faults
    }

    pub fn encoder(&self) -> &Encoder {
        &self.encoder
    }

    pub(super) fn connection_number(&self) -> u64 {
        self.next_connection.fetch_add(1, Ordering::Relaxed)
    }

    pub fn publish_event(&self, event: Event) {
        if self.stalled.load(Ordering::Relaxed) {
            return;
        }
        self.stats.events.fetch_add(1, Ordering::Relaxed);
        self.send(true, self.encoder.encode(entries::event(event)));
    }

    fn send(&self, is_event: bool, frame: Frame) {
        let seq = self.seq.fetch_add(1, Ordering::Relaxed);
        // An error means no client is connected: the frame has no one to go to.
        let _ = self.hub.send(Published {
            seq,
            is_event,
            frame,
        });
    }

    /// A process log line: kept for new clients during start-up while there is room, and
    /// broadcast. Both under one lock, so that a client gets each line once, from the replay
    /// or live.
    pub fn publish_log(&self, now: Now, level: &str, message: &str, fields: serde_json::Value) {
        let line = self.log_line(now, level, message, fields);
        let mut startup = self.startup.lock().unwrap_or_else(PoisonError::into_inner);
        startup.offer(&line);
        self.send(false, self.encoder.encode(entries::run_log(&line)));
    }

    fn log_line(&self, now: Now, level: &str, message: &str, fields: serde_json::Value) -> String {
        if self.faults().has(Fault::EcapturePlainTextLogs) {
            return format!("{} {level} {message} {fields}", now.wall.to_rfc3339());
        }
        let mut line = serde_json::json!({
            "level": level,
            "time": now.wall.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            "message": message,
        });
        if let (Some(line), serde_json::Value::Object(fields)) = (line.as_object_mut(), fields) {
            line.extend(fields);
        }
        line.to_string()
    }

    /// Ends start-up: later process logs are broadcast live only.
    pub fn seal_startup_log(&self) {
        self.startup
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .seal();
    }

    /// A new client's live feed and the start-up lines it gets first.
    pub(super) fn subscribe(&self) -> (broadcast::Receiver<Published>, Vec<Frame>) {
        let startup = self.startup.lock().unwrap_or_else(PoisonError::into_inner);
        let live = self.hub.subscribe();
        if self.faults().has(Fault::EcaptureNoStartupReplay) {
            return (live, Vec::new());
        }
        let replay = startup
            .lines()
            .iter()
            .map(|line| self.encoder.encode(entries::run_log(line)))
            .collect();
        (live, replay)
    }

    pub(super) fn next_shared_heartbeat(&self) -> i64 {
        self.shared_heartbeats.fetch_add(1, Ordering::Relaxed)
    }

    pub(super) fn note_abrupt_drop(&self) {
        if self.faults().has(Fault::EcaptureStallAfterReset) {
            self.stalled.store(true, Ordering::Relaxed);
        }
    }
}

/// The longest a pacing tick sleeps: at high rates events go out in batches of 1 ms.
const TICK: Duration = Duration::from_millis(1);

/// Paces events from `source` into the hub until the service is dropped or the source ends.
pub fn spawn_source(app: &Arc<EcaptureApp>, source: SourceConfig) {
    if matches!(source, SourceConfig::None) || source.rate() <= 0.0 {
        return;
    }
    let app = Arc::downgrade(app);
    tokio::spawn(pace(app, source));
}

async fn pace(app: Weak<EcaptureApp>, config: SourceConfig) {
    let rate = config.rate();
    // At most 50 ms of events at once, so a stall does not turn into a flood.
    let burst = (rate * 0.05).ceil().max(1.0) as u64;
    let mut source = EventSource::new(config);
    let mut pacer = Pacer::new(read_clock().mono, rate, burst);
    loop {
        tokio::time::sleep(pacer.next_in(TICK)).await;
        let Some(app) = app.upgrade() else { return };
        let now = read_clock();
        let nanos = now.wall.timestamp_nanos_opt().unwrap_or_default();
        for _ in 0..pacer.due(now.mono) {
            let Some(event) = source.next_event(nanos) else {
                return;
            };
            app.publish_event(event);
        }
    }
}
