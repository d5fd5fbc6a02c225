//! The unified envelope `{type, id, timestamp, data}` (seed 001 §消息格式).

use super::error::DecodeError;
use super::messages::NodeMessage;
use chrono::{DateTime, FixedOffset, SecondsFormat, Utc};
use serde::Serialize;
use serde_json::{Map, Value};

/// An outgoing message, ready to encode.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Envelope {
    #[serde(rename = "type")]
    pub kind: String,
    pub id: String,
    pub timestamp: String,
    pub data: Value,
}

impl Envelope {
    pub fn new(kind: &str, id: impl Into<String>, at: DateTime<Utc>, data: Value) -> Self {
        Self {
            kind: kind.to_owned(),
            id: id.into(),
            timestamp: rfc3339(at),
            data,
        }
    }

    pub fn encode(&self) -> String {
        // Serializing a struct of strings and a Value cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// `2025-01-21T10:00:00.000Z`: RFC 3339 in UTC, as §最佳实践 asks.
pub fn rfc3339(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// A decoded node frame.
#[derive(Debug, Clone, PartialEq)]
pub struct Inbound {
    pub id: String,
    pub sent_at: DateTime<FixedOffset>,
    pub message: NodeMessage,
}

/// A frame that could not be decoded, with the request id when it could be read, so that the
/// error reply can echo it.
#[derive(Debug, Clone, PartialEq)]
pub struct Rejection {
    pub id: Option<String>,
    pub error: DecodeError,
}

/// Decodes one text frame sent by a node.
pub fn decode_node_frame(text: &str) -> Result<Inbound, Rejection> {
    let value: Value = serde_json::from_str(text).map_err(|e| Rejection {
        id: None,
        error: DecodeError::Json(e.to_string()),
    })?;
    let Value::Object(object) = value else {
        return Err(Rejection {
            id: None,
            error: DecodeError::NotAnObject,
        });
    };
    let id = object.get("id").and_then(Value::as_str).map(str::to_owned);
    decode_object(object).map_err(|error| Rejection {
        id: id.clone(),
        error,
    })
}

fn decode_object(mut object: Map<String, Value>) -> Result<Inbound, DecodeError> {
    let kind = take_string(&mut object, "type")?;
    let id = take_string(&mut object, "id")?;
    let timestamp = take_string(&mut object, "timestamp")?;
    let data = object
        .remove("data")
        .ok_or(DecodeError::MissingField("data"))?;
    if !data.is_object() {
        return Err(DecodeError::WrongType {
            field: "data",
            expected: "an object",
        });
    }
    let sent_at = DateTime::parse_from_rfc3339(&timestamp)
        .map_err(|_| DecodeError::BadTimestamp(timestamp.clone()))?;
    let message = NodeMessage::from_parts(&kind, data)?;
    Ok(Inbound {
        id,
        sent_at,
        message,
    })
}

fn take_string(
    object: &mut Map<String, Value>,
    field: &'static str,
) -> Result<String, DecodeError> {
    match object.remove(field) {
        None | Some(Value::Null) => Err(DecodeError::MissingField(field)),
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(DecodeError::WrongType {
            field,
            expected: "a string",
        }),
    }
}
