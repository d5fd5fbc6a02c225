//! cmdrelay (seed 003): token rooms over a WebSocket JSON `{cmd, code, session_id, extra}`.
//!
//! `codes` is the one place where a violation becomes a wire code, `messages` decodes client
//! frames and builds `ResponseMessage`s, `rooms` is the room registry (who shares a token) and
//! `session` is the per-connection state machine.

pub mod codes;
pub mod messages;
pub mod rooms;
pub mod session;

pub use codes::ErrorCode;
pub use messages::{decode, DecodeError, Request, Response};
pub use rooms::{ConnId, Rooms};
pub use session::{Input, Output, Session, SessionConfig, TokenStatus};

/// The WebSocket path clients connect to.
pub const WS_PATH: &str = "/websocket";
/// The token the reference server accepts out of the box.
pub const DEFAULT_TOKEN: &str = "default-token";
/// Largest text frame accepted, in bytes. Larger frames close the connection with 1009.
pub const MAX_FRAME_BYTES: usize = 64 * 1024;
/// Frames queued toward one client before it counts as too slow and is disconnected.
pub const OUTBOUND_QUEUE_DEPTH: usize = 256;
/// The commands a client may send, listed in UNKNOWN_COMMAND answers.
pub const CLIENT_COMMANDS: &[&str] = &["init", "checkDevice", "execute", "execute_result"];
