//! Message builders over `serde_json::Value`, transcribed from the documents.

pub mod cmdrelay;
pub mod ecapture;
pub mod logrtc;
pub mod nodemgr;
pub mod sfu;
