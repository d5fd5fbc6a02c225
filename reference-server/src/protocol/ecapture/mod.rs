//! ecapture (seed 002): eCapture's push-only stream of protobuf `LogEntry` frames over a
//! WebSocket.
//!
//! `pb` holds the types generated from `fixtures/ecapture/ecaptureq.proto`, `entries` builds
//! and encodes the frames (the one place faults bend the wire format), `records` is the JSON
//! Lines form of an event shared by replay files and the collector, `source` makes events
//! (replay or synthetic), `startup` keeps the start-up process logs that each new client is
//! replayed, and `session` is the per-connection heartbeat state machine.

pub mod entries;
pub mod records;
pub mod session;
pub mod source;
pub mod startup;

/// The types generated from the schema: `event.LogEntry`, `event.Event`, `event.Heartbeat`.
#[allow(
    clippy::doc_markdown,
    clippy::derive_partial_eq_without_eq,
    reason = "generated code"
)]
pub mod pb {
    include!(concat!(env!("OUT_DIR"), "/event.rs"));
}

pub use entries::{Encoder, Frame};
pub use records::{EventRecord, RecordError};
pub use session::{Input, Output, Session, SessionConfig};
pub use startup::StartupLog;

use std::time::Duration;

/// The reference server's default port, the one of the document's example.
pub const DEFAULT_PORT: u16 = 28257;
/// eCapture's heartbeat period.
pub const HEARTBEAT_PERIOD: Duration = Duration::from_secs(15);
/// Frames queued toward one client before it counts as too slow and is disconnected
/// (eCapture's own limit).
pub const QUEUE_DEPTH: usize = 256;
/// Process logs kept from start-up and replayed to every new client.
pub const STARTUP_LOG_LIMIT: usize = 128;
/// Largest frame a client may send; it is read and discarded (the server is push-only).
pub const MAX_CLIENT_FRAME_BYTES: usize = 64 * 1024;
/// The `Event.type` values in use: the document's 0-4, and eCapture's 5 (WebSocket).
pub const KNOWN_EVENT_TYPES: std::ops::RangeInclusive<u32> = 0..=5;

/// A readable name for an `Event.type` value.
pub fn event_type_name(kind: u32) -> &'static str {
    match kind {
        0 => "Unknown",
        1 => "HTTP/1.x Request",
        2 => "HTTP/2 Request",
        3 => "HTTP/1.x Response",
        4 => "HTTP/2 Response",
        5 => "WebSocket",
        _ => "unlisted type",
    }
}
