//! Independent raw clients: they speak the wire format from the documents, never the server's
//! types.

pub mod browser;
#[cfg(target_os = "linux")]
pub mod counting;
pub mod loss;
pub mod media;
pub mod operator;
pub mod stream;
pub mod tokens;
pub mod transcript;
pub mod webrtc;
pub mod ws;

pub use operator::OperatorApi;
pub use stream::{Frame, StreamClient};
pub use tokens::{RoomTokens, TokenMinter, TokenPool, TokenSource};
pub use transcript::Transcript;
pub use ws::{Event, WsClient};
