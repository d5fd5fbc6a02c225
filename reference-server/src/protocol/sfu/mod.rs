//! sfu (seed 004): protoo signaling over WebSocket for rooms of peers that publish and
//! subscribe to Opus and VP8 streams, which an SFU forwards.
//!
//! `codes` is the one place where a violation becomes a wire error, `messages` decodes protoo
//! requests and builds responses and notifications, `rooms` is the room state (peers, streams,
//! subscriptions) and asks the media plane for answers, and `session` keeps one connection's
//! limits and keepalive deadline. The media plane itself lives in `crate::media`. Decisions the
//! document leaves open are S1-S10 in `fixtures/sfu/CLARIFICATIONS.md`.

pub mod codes;
pub mod messages;
pub mod rooms;
pub mod session;

pub use codes::ErrorCode;
pub use messages::{decode, Incoming, Minfo, Request};
pub use rooms::{ConnId, Effect, MediaRefusal, MediaRequest, Rooms, ServerIds};
pub use session::{Session, SessionConfig};

/// The document's address: `ws://$host:$port/ws?peer=$uid`; the port is the project's choice.
pub const DEFAULT_PORT: u16 = 8443;
/// The WebSocket path; the demo page is served at `/` on the same port.
pub const WS_PATH: &str = "/ws";
/// The WebSocket subprotocol protoo clients ask for.
pub const SUBPROTOCOL: &str = "protoo";
/// Largest text frame answered, in bytes (an offer is a few KiB); larger gets `too_large`.
pub const MAX_FRAME_BYTES: usize = 64 * 1024;
/// Longest `peer`, `rid`, `mid`, `sid` or `bizid`, in characters.
pub const MAX_ID_CHARS: usize = 128;
/// Peers one room holds.
pub const MAX_PEERS_PER_ROOM: usize = 1_000;
/// Streams one peer may publish at once.
pub const MAX_PUBLICATIONS_PER_PEER: usize = 16;
/// Subscriptions one peer may hold at once.
pub const MAX_SUBSCRIPTIONS_PER_PEER: usize = 256;
/// Frames queued toward one peer before it counts as too slow and is disconnected.
pub const OUTBOUND_QUEUE_DEPTH: usize = 512;
/// S1: the close code of a connection replaced by a newer one with the same peer id.
pub const CLOSE_REPLACED: u16 = 4409;
/// S6: the close code of a peer that missed its keepalive.
pub const CLOSE_KEEPALIVE: u16 = 4408;
