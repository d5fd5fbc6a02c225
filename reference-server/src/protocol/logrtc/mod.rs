//! logrtc (seed 000): a WebSocket signaling server that introduces log producers to consumers
//! (browsers), who then talk WebRTC directly; the logs travel on a data channel named `logs`.
//!
//! `codes` is the one place where a violation becomes a wire error, `messages` decodes client
//! frames and builds server messages, `hub` is the registry of who is registered and who
//! watches whom, and `session` keeps one connection's rate limit and keepalive.
//! Decisions the document leaves open are L1-L9 in `fixtures/logrtc/CLARIFICATIONS.md`.

pub mod codes;
pub mod hub;
pub mod messages;
pub mod session;

pub use codes::ErrorCode;
pub use hub::{Effect, Hub};
pub use messages::{decode, ClientMessage, Role, SignalKind};
pub use session::{Session, SessionConfig};

/// The document's address: `ws://localhost:8080/signaling`.
pub const DEFAULT_PORT: u16 = 8080;
/// The WebSocket path; the viewer page is served at `/` on the same port.
pub const WS_PATH: &str = "/signaling";
/// Largest text frame accepted, in bytes (an SDP offer is a few KiB). Larger: close 1009.
pub const MAX_FRAME_BYTES: usize = 64 * 1024;
/// Longest `client_id`, in characters.
pub const MAX_CLIENT_ID_CHARS: usize = 128;
/// Largest `metadata`, serialised, in bytes.
pub const MAX_METADATA_BYTES: usize = 4 * 1024;
/// Producers one consumer may watch at once.
pub const MAX_WATCHES: usize = 64;
/// Registered clients one server holds; more are refused with `server_full`.
pub const MAX_CLIENTS: usize = 10_000;
/// Frames queued toward one client before it counts as too slow and is disconnected.
pub const OUTBOUND_QUEUE_DEPTH: usize = 256;
