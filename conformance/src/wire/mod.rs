//! Message builders over `serde_json::Value`, transcribed from the documents.

pub mod nodemgr;
