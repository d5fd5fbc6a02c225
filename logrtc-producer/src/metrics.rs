//! Send-rate and buffer metrics (000 §5 checklist: "性能监控").

use std::sync::atomic::{AtomicU64, Ordering};

/// Counters shared by the call sites, the dispatch and the peers.
#[derive(Debug, Default)]
pub struct Metrics {
    pub logged: AtomicU64,
    pub filtered: AtomicU64,
    pub sent_entries: AtomicU64,
    pub sent_messages: AtomicU64,
    pub sent_bytes: AtomicU64,
    pub dropped_buffered: AtomicU64,
    pub dropped_slow_consumer: AtomicU64,
    pub buffered: AtomicU64,
    pub channels_open: AtomicU64,
    pub registrations: AtomicU64,
    pub connection_failures: AtomicU64,
    /// Entries sent in the last whole second, kept by the producer's ticker.
    pub sent_entries_per_second: AtomicU64,
}

/// A copy of the counters at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct MetricsSnapshot {
    /// Entries handed to the producer that passed the level filter.
    pub logged: u64,
    /// Entries below the level filter.
    pub filtered: u64,
    /// Entries written to a `logs` channel, counted once per channel.
    pub sent_entries: u64,
    /// Data-channel messages (an entry, a batch, or a compressed batch).
    pub sent_messages: u64,
    /// Bytes handed to the data channels.
    pub sent_bytes: u64,
    /// Entries dropped from the backlog while no channel was open.
    pub dropped_buffered: u64,
    /// Entries dropped from a channel's queue because it could not keep up.
    pub dropped_slow_consumer: u64,
    /// Entries waiting in the backlog now.
    pub buffered: u64,
    /// `logs` channels open now.
    pub channels_open: u64,
    /// Successful registrations with the signaling server, reconnects included.
    pub registrations: u64,
    /// Signaling connections that failed or dropped.
    pub connection_failures: u64,
    pub sent_entries_per_second: u64,
}

impl Metrics {
    pub fn snapshot(&self) -> MetricsSnapshot {
        let read = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        MetricsSnapshot {
            logged: read(&self.logged),
            filtered: read(&self.filtered),
            sent_entries: read(&self.sent_entries),
            sent_messages: read(&self.sent_messages),
            sent_bytes: read(&self.sent_bytes),
            dropped_buffered: read(&self.dropped_buffered),
            dropped_slow_consumer: read(&self.dropped_slow_consumer),
            buffered: read(&self.buffered),
            channels_open: read(&self.channels_open),
            registrations: read(&self.registrations),
            connection_failures: read(&self.connection_failures),
            sent_entries_per_second: read(&self.sent_entries_per_second),
        }
    }
}
