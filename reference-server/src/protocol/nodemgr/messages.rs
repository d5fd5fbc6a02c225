//! Typed payloads of seed 001 §消息类型示例, node → core and core → node.

use super::envelope::{Payload, Received};
use super::error::{DecodeError, ErrorCode};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// A message a node may send.
#[derive(Debug, Clone, PartialEq)]
pub enum NodeMessage {
    Register(NodeInfo),
    Heartbeat(Heartbeat),
    CommandStarted(CommandStarted),
    CommandResult(CommandResult),
}

impl NodeMessage {
    pub fn from_parts(kind: &str, data: Data<'_>) -> Result<Self, DecodeError> {
        match kind {
            "node_register" => data.typed(kind).map(Self::Register),
            "heartbeat" => data.typed(kind).map(Self::Heartbeat),
            "command_started" => data.typed(kind).map(Self::CommandStarted),
            "command_result" => data.typed(kind).map(Self::CommandResult),
            other => Err(DecodeError::UnknownType(other.to_owned())),
        }
    }
}

/// A message's `data`, parsed into a tree or still JSON text.
#[derive(Debug)]
pub enum Data<'a> {
    Value(Value),
    Text(&'a str),
}

impl Data<'_> {
    fn typed<T: DeserializeOwned>(self, kind: &str) -> Result<T, DecodeError> {
        let kind = super::NODE_MESSAGE_TYPES
            .iter()
            .find(|k| **k == kind)
            .copied()
            .unwrap_or("message");
        let parsed = match self {
            Self::Value(value) => serde_json::from_value(value),
            Self::Text(text) => serde_json::from_str(text),
        };
        parsed.map_err(|e| DecodeError::BadData {
            kind,
            detail: e.to_string(),
        })
    }
}

/// `node_register` data. Every field is optional on the wire; a missing `node_id` means the
/// connection's own id (CLARIFICATIONS.md, "node_id rules").
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NodeInfo {
    pub node_id: Option<String>,
    pub hostname: Option<String>,
    pub ip_address: Option<String>,
    pub os_info: Option<String>,
}

/// `heartbeat` data.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Heartbeat {
    pub node_id: Option<String>,
    pub status: Option<String>,
    pub metrics: Metrics,
}

/// The four metrics of §2 心跳与监控数据. All are required numbers.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    pub cpu_usage: f64,
    pub memory_usage: f64,
    pub disk_usage: f64,
    pub load_average: f64,
}

/// `command_started` data.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct CommandStarted {
    pub command_id: String,
}

/// `command_result` data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CommandResult {
    pub command_id: String,
    pub exit_code: i64,
    #[serde(default)]
    pub stdout: String,
    #[serde(default)]
    pub stderr: String,
    pub execution_time_ms: u64,
}

// Core → node payloads.

pub fn welcome_data(node_id: &str) -> Value {
    json!({ "message": "欢迎连接到Server Manager Core", "node_id": node_id })
}

pub fn register_response_data(success: bool, message: &str, node_id: &str) -> Value {
    json!({ "success": success, "message": message, "node_id": node_id })
}

pub fn received_data(received: bool, node_id: &str) -> Payload {
    Payload::Received(Received {
        node_id: node_id.to_owned(),
        received,
    })
}

pub fn execute_command_data(command_id: &str, command_text: &str, timeout_secs: u64) -> Value {
    json!({ "command_id": command_id, "command_text": command_text, "timeout": timeout_secs })
}

pub fn error_data(code: ErrorCode, details: &str) -> Value {
    json!({ "error_code": code.as_str(), "message": code.message(), "details": details })
}
