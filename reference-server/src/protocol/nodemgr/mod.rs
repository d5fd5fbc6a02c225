//! nodemgr (seed 001): node management over a WebSocket JSON envelope.
//!
//! `envelope` decodes and encodes frames, `messages` holds the typed payloads, `session` is the
//! per-connection state machine and `error` the one place where a violation becomes a wire code.

pub mod envelope;
pub mod error;
pub mod messages;
pub mod session;

pub use envelope::{decode_node_frame, decode_via_value, Envelope, Inbound, Rejection};
pub use error::{DecodeError, ErrorCode};
pub use messages::{CommandResult, Metrics, NodeInfo, NodeMessage};
pub use session::{
    CommandOrder, ConnectParams, Input, Output, Session, SessionConfig, StoreFailure, StoreOp,
    Ticket,
};

/// The WebSocket path of the node channel.
pub const WS_PATH: &str = "/api/v1/ws";
/// The token the document's MVP uses (`default-token`).
pub const DEFAULT_TOKEN: &str = "default-token";
/// Largest text frame accepted, in bytes. Larger frames close the connection with 1009.
pub const MAX_FRAME_BYTES: usize = 64 * 1024;
/// The node message types the core understands, listed in UNKNOWN_MESSAGE_TYPE details.
pub const NODE_MESSAGE_TYPES: &[&str] = &[
    "node_register",
    "heartbeat",
    "command_started",
    "command_result",
];
