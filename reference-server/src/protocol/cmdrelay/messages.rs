//! Client frames in, `ResponseMessage`s out.

use super::codes::{self, ErrorCode};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// A client frame the server understood.
#[derive(Debug, Clone, PartialEq)]
pub enum Request {
    /// `{"cmd":"init","token":...}`; `None` when `token` is absent or not a string.
    Init {
        token: Option<String>,
    },
    CheckDevice,
    /// `execute` or `execute_result`: relayed verbatim to the rest of the room.
    Relay(RelayKind),
    Unknown(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelayKind {
    Execute,
    ExecuteResult,
}

impl RelayKind {
    pub fn cmd(self) -> &'static str {
        match self {
            Self::Execute => "execute",
            Self::ExecuteResult => "execute_result",
        }
    }
}

/// Why a frame is not a request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("the frame is not JSON: {0}")]
    NotJson(String),
    #[error("the frame is not a JSON object")]
    NotAnObject,
    #[error("the frame has no `cmd`")]
    MissingCmd,
    #[error("`cmd` is not a string")]
    CmdNotAString,
    #[error("`{cmd}` needs `extra` to be an object")]
    ExtraNotAnObject { cmd: &'static str },
}

impl DecodeError {
    /// Every decode error is a PARSE_ERROR on the wire.
    pub fn code(&self) -> ErrorCode {
        ErrorCode::ParseError
    }
}

/// The fields the server reads; others are ignored (and relayed untouched). Each is read into
/// a [`Field`] that keeps only what the rules need, so relaying allocates no JSON tree.
#[derive(Deserialize)]
struct Frame<'a> {
    #[serde(borrow, default)]
    cmd: Option<Field<'a>>,
    #[serde(borrow, default)]
    token: Option<Field<'a>>,
    #[serde(borrow, default)]
    extra: Option<Field<'a>>,
}

/// What a field holds, as far as the rules care.
enum Field<'a> {
    Null,
    Str(std::borrow::Cow<'a, str>),
    Object,
    Other,
}

impl<'de: 'a, 'a> Deserialize<'de> for Field<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(FieldVisitor(std::marker::PhantomData))
    }
}

struct FieldVisitor<'a>(std::marker::PhantomData<&'a ()>);

impl<'de: 'a, 'a> serde::de::Visitor<'de> for FieldVisitor<'a> {
    type Value = Field<'a>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(Field::Null)
    }

    fn visit_none<E>(self) -> Result<Self::Value, E> {
        Ok(Field::Null)
    }

    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Ok(Field::Other)
    }

    fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
        Ok(Field::Other)
    }

    fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
        Ok(Field::Other)
    }

    fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
        Ok(Field::Other)
    }

    fn visit_borrowed_str<E>(self, text: &'de str) -> Result<Self::Value, E> {
        Ok(Field::Str(text.into()))
    }

    fn visit_str<E>(self, text: &str) -> Result<Self::Value, E> {
        Ok(Field::Str(text.to_owned().into()))
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {}
        Ok(Field::Other)
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while map
            .next_entry::<serde::de::IgnoredAny, serde::de::IgnoredAny>()?
            .is_some()
        {}
        Ok(Field::Object)
    }
}

/// Reads one text frame.
pub fn decode(text: &str) -> Result<Request, DecodeError> {
    // A derived struct also reads a JSON array as positional fields: only objects get that far.
    if !text.trim_start().starts_with('{') {
        return Err(match serde_json::from_str::<serde::de::IgnoredAny>(text) {
            Ok(_) => DecodeError::NotAnObject,
            Err(error) => DecodeError::NotJson(error.to_string()),
        });
    }
    let frame: Frame<'_> = match serde_json::from_str(text) {
        Ok(frame) => frame,
        Err(error) if error.is_data() => return Err(DecodeError::NotAnObject),
        Err(error) => return Err(DecodeError::NotJson(error.to_string())),
    };
    let cmd = match frame.cmd {
        None | Some(Field::Null) => return Err(DecodeError::MissingCmd),
        Some(Field::Str(cmd)) => cmd,
        Some(_) => return Err(DecodeError::CmdNotAString),
    };
    let relay = |kind: RelayKind| match frame.extra {
        Some(Field::Object) => Ok(Request::Relay(kind)),
        _ => Err(DecodeError::ExtraNotAnObject { cmd: kind.cmd() }),
    };
    match cmd.as_ref() {
        "init" => Ok(Request::Init {
            token: match frame.token {
                Some(Field::Str(token)) => Some(token.into_owned()),
                _ => None,
            },
        }),
        "checkDevice" => Ok(Request::CheckDevice),
        "execute" => relay(RelayKind::Execute),
        "execute_result" => relay(RelayKind::ExecuteResult),
        _ => Ok(Request::Unknown(cmd.into_owned())),
    }
}

/// The `cmd` of a frame that failed to decode, when it had a readable one.
pub fn cmd_of(text: &str) -> Option<String> {
    let value: Value = serde_json::from_str(text).ok()?;
    value.get("cmd")?.as_str().map(str::to_owned)
}

/// `ResponseMessage`: `session_id` is left out when there is none, `extra` is always an object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Response {
    pub cmd: String,
    pub code: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub session_id: Option<String>,
    #[serde(default)]
    pub extra: Map<String, Value>,
}

impl Response {
    pub fn new(cmd: &str, code: &str) -> Self {
        Self {
            cmd: cmd.to_owned(),
            code: code.to_owned(),
            session_id: None,
            extra: Map::new(),
        }
    }

    /// The answer to an accepted `init`: the room's session id.
    pub fn init_accepted(session_id: &str) -> Self {
        Self {
            session_id: Some(session_id.to_owned()),
            ..Self::new("init", codes::OK)
        }
    }

    /// `{"cmd":"Heartbeat","code":"1","extra":{}}`, as the document shows it.
    pub fn heartbeat() -> Self {
        Self::new("Heartbeat", codes::OK)
    }

    /// `"1"` when the room has more than one client, `"0"` otherwise.
    pub fn check_device(room_size: usize) -> Self {
        let code = if room_size > 1 {
            codes::OK
        } else {
            codes::ALONE
        };
        Self::new("checkDevice", code)
    }

    /// A refusal of the request whose `cmd` was `cmd` (`"error"` when it had none).
    pub fn error(cmd: Option<&str>, code: ErrorCode, message: impl Into<String>) -> Self {
        let mut response = Self::new(cmd.unwrap_or("error"), code.code());
        response
            .extra
            .insert("error".to_owned(), Value::from(code.name()));
        response
            .extra
            .insert("message".to_owned(), Value::from(message.into()));
        response
    }

    pub fn encode(&self) -> String {
        // A struct of strings and a map of JSON values always serializes.
        serde_json::to_string(self).unwrap_or_default()
    }
}
