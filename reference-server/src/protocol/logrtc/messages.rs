//! Client frames in, server messages out. Every message is a JSON object with a string `type`.

use super::codes::ErrorCode;
use serde_json::{json, Map, Value};

/// Which side of the log stream a client is (000 §2: `"role": "producer"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Producer,
    Consumer,
}

impl Role {
    pub fn name(self) -> &'static str {
        match self {
            Self::Producer => "producer",
            Self::Consumer => "consumer",
        }
    }
}

/// The three messages relayed between a producer and a consumer (000 §4.2, §4.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignalKind {
    Offer,
    Answer,
    Candidate,
}

impl SignalKind {
    pub fn type_name(self) -> &'static str {
        match self {
            Self::Offer => "webrtc_offer",
            Self::Answer => "webrtc_answer",
            Self::Candidate => "ice_candidate",
        }
    }
}

/// A client frame the server understood.
#[derive(Debug, Clone, PartialEq)]
pub enum ClientMessage {
    Register {
        role: Role,
        /// Required of producers; a consumer without one is given `consumer-<n>`.
        client_id: Option<String>,
        metadata: Map<String, Value>,
    },
    ListProducers,
    Watch {
        producer_id: String,
        /// L10: what the consumer accepts beyond one plain entry per message.
        features: Vec<String>,
    },
    Unwatch {
        producer_id: String,
    },
    /// Relayed to `to` as sent, with `from` added.
    Signal {
        kind: SignalKind,
        to: String,
        message: Map<String, Value>,
    },
    Ping,
}

/// Why a frame is not a message the server acts on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("the frame is not JSON: {0}")]
    NotJson(String),
    #[error("the frame is not a JSON object")]
    NotAnObject,
    #[error("the message has no string `type`")]
    NoType,
    #[error("unknown type {0:?}; known: {known}", known = CLIENT_TYPES.join(", "))]
    UnknownType(String),
    #[error("`{field}` of {kind} must be {want}")]
    BadField {
        kind: &'static str,
        field: &'static str,
        want: &'static str,
    },
}

impl DecodeError {
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::NotJson(_) | Self::NotAnObject => ErrorCode::BadJson,
            Self::NoType | Self::BadField { .. } => ErrorCode::BadMessage,
            Self::UnknownType(_) => ErrorCode::UnknownType,
        }
    }
}

/// The types a client may send, listed in `unknown_type` errors.
pub const CLIENT_TYPES: &[&str] = &[
    "register",
    "list_producers",
    "watch",
    "unwatch",
    "webrtc_offer",
    "webrtc_answer",
    "ice_candidate",
    "ping",
];

pub fn decode(text: &str) -> Result<ClientMessage, DecodeError> {
    let value: Value =
        serde_json::from_str(text).map_err(|e| DecodeError::NotJson(e.to_string()))?;
    let Value::Object(message) = value else {
        return Err(DecodeError::NotAnObject);
    };
    let kind = message
        .get("type")
        .and_then(Value::as_str)
        .ok_or(DecodeError::NoType)?
        .to_owned();
    match kind.as_str() {
        "register" => decode_register(&message),
        "list_producers" => Ok(ClientMessage::ListProducers),
        "watch" => Ok(ClientMessage::Watch {
            producer_id: id_field(&message, "watch", "producer_id")?,
            features: features(&message)?,
        }),
        "unwatch" => Ok(ClientMessage::Unwatch {
            producer_id: id_field(&message, "unwatch", "producer_id")?,
        }),
        "webrtc_offer" => decode_signal(SignalKind::Offer, message),
        "webrtc_answer" => decode_signal(SignalKind::Answer, message),
        "ice_candidate" => decode_signal(SignalKind::Candidate, message),
        "ping" => Ok(ClientMessage::Ping),
        _ => Err(DecodeError::UnknownType(kind)),
    }
}

/// The `type` of a frame, when it has one, so that errors can name what they answer.
pub fn type_of(text: &str) -> Option<String> {
    let value: Value = serde_json::from_str(text).ok()?;
    value.get("type")?.as_str().map(str::to_owned)
}

fn decode_register(message: &Map<String, Value>) -> Result<ClientMessage, DecodeError> {
    let bad = |field, want| DecodeError::BadField {
        kind: "register",
        field,
        want,
    };
    let role = match message.get("role").and_then(Value::as_str) {
        Some("producer") => Role::Producer,
        Some("consumer") => Role::Consumer,
        _ => return Err(bad("role", "\"producer\" or \"consumer\"")),
    };
    let client_id = match message.get("client_id") {
        None | Some(Value::Null) if role == Role::Consumer => None,
        _ => Some(id_field(message, "register", "client_id")?),
    };
    let metadata = match message.get("metadata") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(metadata)) if fits(metadata) => metadata.clone(),
        Some(_) => return Err(bad("metadata", "an object of at most 4096 bytes")),
    };
    Ok(ClientMessage::Register {
        role,
        client_id,
        metadata,
    })
}

/// `features`: absent, or an array of at most 16 short strings.
fn features(message: &Map<String, Value>) -> Result<Vec<String>, DecodeError> {
    let bad = DecodeError::BadField {
        kind: "watch",
        field: "features",
        want: "an array of at most 16 strings",
    };
    let Some(value) = message.get("features") else {
        return Ok(Vec::new());
    };
    let items = value
        .as_array()
        .filter(|a| a.len() <= 16)
        .ok_or(bad.clone())?;
    items
        .iter()
        .map(|f| f.as_str().filter(|f| is_valid_id(f)).map(str::to_owned))
        .collect::<Option<Vec<_>>>()
        .ok_or(bad)
}

fn fits(metadata: &Map<String, Value>) -> bool {
    serde_json::to_string(metadata).is_ok_and(|s| s.len() <= super::MAX_METADATA_BYTES)
}

/// A client id: a non-empty string of at most [`super::MAX_CLIENT_ID_CHARS`] characters.
fn id_field(
    message: &Map<String, Value>,
    kind: &'static str,
    field: &'static str,
) -> Result<String, DecodeError> {
    match message.get(field).and_then(Value::as_str) {
        Some(id) if is_valid_id(id) => Ok(id.to_owned()),
        _ => Err(DecodeError::BadField {
            kind,
            field,
            want: "a non-empty string of at most 128 characters",
        }),
    }
}

pub fn is_valid_id(id: &str) -> bool {
    !id.is_empty() && id.chars().count() <= super::MAX_CLIENT_ID_CHARS
}

/// The relay needs `to`; offers and answers need a string `sdp`, candidates a `candidate`.
/// Nothing else is read: the SDP is opaque to the server.
fn decode_signal(
    kind: SignalKind,
    message: Map<String, Value>,
) -> Result<ClientMessage, DecodeError> {
    let to = id_field(&message, kind.type_name(), "to")?;
    let (field, present) = match kind {
        SignalKind::Offer | SignalKind::Answer => {
            ("sdp", message.get("sdp").is_some_and(Value::is_string))
        }
        SignalKind::Candidate => (
            "candidate",
            message
                .get("candidate")
                .is_some_and(|c| c.is_string() || c.is_object()),
        ),
    };
    if !present {
        return Err(DecodeError::BadField {
            kind: kind.type_name(),
            field,
            want: "present (a string)",
        });
    }
    Ok(ClientMessage::Signal { kind, to, message })
}

/// A producer as the listing shows it.
pub fn producer_entry(client_id: &str, metadata: &Map<String, Value>, since: &str) -> Value {
    json!({"client_id": client_id, "metadata": metadata, "registered_at": since})
}

pub fn registered(client_id: &str, role: Role, producers: Option<Vec<Value>>) -> Value {
    let mut message = json!({"type": "registered", "client_id": client_id, "role": role.name()});
    if let Some(producers) = producers {
        message["producers"] = Value::Array(producers);
    }
    message
}

pub fn producer_list(producers: Vec<Value>) -> Value {
    json!({"type": "producer_list", "producers": producers})
}

pub fn producer_connected(producer: Value) -> Value {
    json!({"type": "producer_connected", "producer": producer})
}

pub fn producer_disconnected(producer_id: &str) -> Value {
    json!({"type": "producer_disconnected", "producer_id": producer_id})
}

/// 000 §3: `{"type": "consumer_connected", "consumer_id": "browser_client_123"}`.
pub fn consumer_connected(consumer_id: &str, features: &[String]) -> Value {
    let mut message = json!({"type": "consumer_connected", "consumer_id": consumer_id});
    if !features.is_empty() {
        message["features"] = json!(features);
    }
    message
}

pub fn consumer_disconnected(consumer_id: &str) -> Value {
    json!({"type": "consumer_disconnected", "consumer_id": consumer_id})
}

pub fn watching(producer_id: &str, online: bool) -> Value {
    json!({"type": "watching", "producer_id": producer_id, "online": online})
}

pub fn unwatched(producer_id: &str) -> Value {
    json!({"type": "unwatched", "producer_id": producer_id})
}

pub fn pong() -> Value {
    json!({"type": "pong"})
}

pub fn error(code: ErrorCode, message: &str, request_type: Option<&str>) -> Value {
    let mut error = json!({"type": "error", "code": code.code(), "message": message});
    if let Some(request_type) = request_type {
        error["request_type"] = request_type.into();
    }
    error
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documents_register_example_decodes() {
        let text = r#"{"type":"register","role":"producer","client_id":"your_system_name",
            "metadata":{"system_name":"Your System Name","version":"1.0.0","description":"系统描述"}}"#;
        let Ok(ClientMessage::Register {
            role,
            client_id,
            metadata,
        }) = decode(text)
        else {
            panic!("not a register");
        };
        assert_eq!(role, Role::Producer);
        assert_eq!(client_id.as_deref(), Some("your_system_name"));
        assert_eq!(metadata["version"], "1.0.0");
    }

    #[test]
    fn a_producer_needs_a_client_id_and_a_consumer_does_not() {
        let producer = decode(r#"{"type":"register","role":"producer"}"#);
        assert_eq!(producer.map_err(|e| e.code()), Err(ErrorCode::BadMessage));
        let consumer = decode(r#"{"type":"register","role":"consumer"}"#);
        assert!(matches!(
            consumer,
            Ok(ClientMessage::Register {
                client_id: None,
                ..
            })
        ));
    }

    #[test]
    fn malformed_frames_get_their_codes() {
        let code = |text: &str| decode(text).err().map(|e| e.code());
        assert_eq!(code("not json"), Some(ErrorCode::BadJson));
        assert_eq!(code("[1]"), Some(ErrorCode::BadJson));
        assert_eq!(code(r#"{"role":"producer"}"#), Some(ErrorCode::BadMessage));
        assert_eq!(code(r#"{"type":"dance"}"#), Some(ErrorCode::UnknownType));
        assert_eq!(
            code(r#"{"type":"webrtc_offer","sdp":"v=0"}"#),
            Some(ErrorCode::BadMessage)
        );
        assert_eq!(
            code(r#"{"type":"webrtc_offer","to":"b"}"#),
            Some(ErrorCode::BadMessage)
        );
        let long = format!(r#"{{"type":"watch","producer_id":"{}"}}"#, "x".repeat(129));
        assert_eq!(code(&long), Some(ErrorCode::BadMessage));
    }

    #[test]
    fn a_signal_keeps_every_field_as_sent() {
        let text = r#"{"type":"ice_candidate","to":"p","candidate":"candidate:1 1 udp 1 127.0.0.1 5000 typ host","sdpMLineIndex":0,"x":[1]}"#;
        let Ok(ClientMessage::Signal { kind, to, message }) = decode(text) else {
            panic!("not a signal");
        };
        assert_eq!((kind, to.as_str()), (SignalKind::Candidate, "p"));
        assert_eq!(message["sdpMLineIndex"], 0);
        assert_eq!(message["x"], json!([1]));
    }
}
