//! protoo frames (seed 004 §5): requests in, responses and notifications out. Decoding checks
//! every field the document shows; what a field means is the room's business.

use super::codes::ErrorCode;
use serde_json::{json, Map, Value};

/// The media a publisher says it sends (004 §5 `minfo`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Minfo {
    pub audio: bool,
    pub video: bool,
    pub audiotype: i64,
    pub videotype: i64,
}

impl Minfo {
    pub fn to_json(self) -> Value {
        json!({
            "audio": self.audio,
            "video": self.video,
            "audiotype": self.audiotype,
            "videotype": self.videotype,
        })
    }
}

/// One request, by method, with the fields the document gives it.
#[derive(Debug, Clone, PartialEq)]
pub enum Request {
    Join {
        rid: String,
        bizid: Option<String>,
    },
    Leave {
        rid: String,
    },
    Keepalive {
        rid: String,
    },
    Publish {
        rid: String,
        offer: String,
        minfo: Option<Minfo>,
    },
    Unpublish {
        rid: String,
        mid: String,
    },
    Subscribe {
        rid: String,
        mid: String,
        offer: String,
    },
    Unsubscribe {
        rid: String,
        mid: Option<String>,
        sid: String,
    },
    Broadcast {
        rid: String,
        data: Value,
    },
}

impl Request {
    /// The room the request names; every method has one.
    pub fn rid(&self) -> &str {
        match self {
            Self::Join { rid, .. }
            | Self::Leave { rid }
            | Self::Keepalive { rid }
            | Self::Publish { rid, .. }
            | Self::Unpublish { rid, .. }
            | Self::Subscribe { rid, .. }
            | Self::Unsubscribe { rid, .. }
            | Self::Broadcast { rid, .. } => rid,
        }
    }
}

/// A request with its protoo id.
#[derive(Debug, Clone, PartialEq)]
pub struct Incoming {
    pub id: u64,
    pub request: Request,
}

/// Why a frame is refused, with the id to answer (`null` when the frame has none usable).
#[derive(Debug, Clone, PartialEq)]
pub struct Refusal {
    pub id: Value,
    pub code: ErrorCode,
    pub reason: String,
}

impl Refusal {
    fn new(id: &Value, code: ErrorCode, reason: impl Into<String>) -> Self {
        Self {
            id: id.clone(),
            code,
            reason: reason.into(),
        }
    }
}

/// The methods of 004 §5.
pub const METHODS: &[&str] = &[
    "join",
    "leave",
    "keepalive",
    "publish",
    "unpublish",
    "subscribe",
    "unsubscribe",
    "broadcast",
];

/// The largest protoo id: JavaScript clients number requests with safe integers.
const MAX_ID: u64 = (1 << 53) - 1;

pub fn decode(text: &str) -> Result<Incoming, Refusal> {
    let value: Value = serde_json::from_str(text)
        .map_err(|e| Refusal::new(&Value::Null, ErrorCode::BadJson, format!("not JSON: {e}")))?;
    let Value::Object(frame) = value else {
        let reason = "a protoo frame is a JSON object";
        return Err(Refusal::new(&Value::Null, ErrorCode::BadJson, reason));
    };
    let raw_id = frame.get("id").cloned().unwrap_or(Value::Null);
    let id = request_id(&frame, &raw_id)?;
    let method = frame.get("method").and_then(Value::as_str).ok_or_else(|| {
        Refusal::new(
            &raw_id,
            ErrorCode::BadRequest,
            "a request needs a string method",
        )
    })?;
    let data = match frame.get("data") {
        Some(Value::Object(data)) => data,
        _ => {
            return Err(Refusal::new(
                &raw_id,
                ErrorCode::BadRequest,
                "data must be an object",
            ))
        }
    };
    let request = decode_method(method, data).map_err(|(code, reason)| Refusal {
        id: raw_id.clone(),
        code,
        reason,
    })?;
    Ok(Incoming { id, request })
}

/// S2: `request: true` and an integer id; a string id is refused, answered with the id as sent.
fn request_id(frame: &Map<String, Value>, raw_id: &Value) -> Result<u64, Refusal> {
    if frame.get("request") != Some(&Value::Bool(true)) {
        let reason = "only requests ({\"request\":true,...}) are accepted from clients";
        return Err(Refusal::new(raw_id, ErrorCode::BadRequest, reason));
    }
    match raw_id.as_u64() {
        Some(id) if id <= MAX_ID => Ok(id),
        _ => {
            let reason = "id must be an integer from 0 to 2^53-1";
            Err(Refusal::new(raw_id, ErrorCode::BadRequest, reason))
        }
    }
}

type FieldResult<T> = Result<T, (ErrorCode, String)>;

fn decode_method(method: &str, data: &Map<String, Value>) -> FieldResult<Request> {
    let rid = || text_field(data, "rid");
    Ok(match method {
        "join" => Request::Join {
            rid: rid()?,
            bizid: optional_text(data, "bizid")?,
        },
        "leave" => Request::Leave { rid: rid()? },
        "keepalive" => Request::Keepalive { rid: rid()? },
        "publish" => Request::Publish {
            rid: rid()?,
            offer: offer(data)?,
            minfo: minfo(data)?,
        },
        "unpublish" => Request::Unpublish {
            rid: rid()?,
            mid: text_field(data, "mid")?,
        },
        "subscribe" => Request::Subscribe {
            rid: rid()?,
            mid: text_field(data, "mid")?,
            offer: offer(data)?,
        },
        "unsubscribe" => Request::Unsubscribe {
            rid: rid()?,
            mid: optional_text(data, "mid")?,
            sid: text_field(data, "sid")?,
        },
        "broadcast" => Request::Broadcast {
            rid: rid()?,
            data: data.get("data").cloned().ok_or_else(|| missing("data"))?,
        },
        other => {
            let reason = format!("unknown method {other:?}; the methods are {METHODS:?}");
            return Err((ErrorCode::UnknownMethod, reason));
        }
    })
}

fn missing(field: &str) -> (ErrorCode, String) {
    (ErrorCode::InvalidParams, format!("data.{field} is missing"))
}

/// An id-like field: a non-empty string of at most [`super::MAX_ID_CHARS`] characters.
fn text_field(data: &Map<String, Value>, field: &str) -> FieldResult<String> {
    optional_text(data, field)?.ok_or_else(|| missing(field))
}

fn optional_text(data: &Map<String, Value>, field: &str) -> FieldResult<Option<String>> {
    match data.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) if is_valid_id(text) => Ok(Some(text.clone())),
        Some(_) => {
            let max = super::MAX_ID_CHARS;
            let reason =
                format!("data.{field} must be a non-empty string of at most {max} characters");
            Err((ErrorCode::InvalidParams, reason))
        }
    }
}

pub fn is_valid_id(id: &str) -> bool {
    !id.is_empty() && id.chars().count() <= super::MAX_ID_CHARS
}

/// `jsep` must be `{"type":"offer","sdp":"..."}`: the client always offers (004 §5).
fn offer(data: &Map<String, Value>) -> FieldResult<String> {
    let jsep = data.get("jsep").ok_or_else(|| missing("jsep"))?;
    let sdp = jsep.get("sdp").and_then(Value::as_str);
    match (jsep.get("type").and_then(Value::as_str), sdp) {
        (Some("offer"), Some(sdp)) => Ok(sdp.to_owned()),
        (Some(other), Some(_)) => {
            let reason = format!("jsep.type is {other:?}; the client sends an offer");
            Err((ErrorCode::BadSdp, reason))
        }
        _ => {
            let reason = "jsep must be {\"type\":\"offer\",\"sdp\":\"...\"}";
            Err((ErrorCode::InvalidParams, reason.to_owned()))
        }
    }
}

/// `minfo` is optional (S4); when present its four fields have the document's types.
fn minfo(data: &Map<String, Value>) -> FieldResult<Option<Minfo>> {
    let Some(value) = data.get("minfo").filter(|v| !v.is_null()) else {
        return Ok(None);
    };
    let bad = || {
        let reason = "minfo is {audio: bool, video: bool, audiotype: int, videotype: int}";
        (ErrorCode::InvalidParams, reason.to_owned())
    };
    let flag = |name: &str| match value.get(name) {
        None => Ok(false),
        Some(v) => v.as_bool().ok_or_else(bad),
    };
    let kind = |name: &str| match value.get(name) {
        None => Ok(0),
        Some(v) => v.as_i64().ok_or_else(bad),
    };
    if !value.is_object() {
        return Err(bad());
    }
    Ok(Some(Minfo {
        audio: flag("audio")?,
        video: flag("video")?,
        audiotype: kind("audiotype")?,
        videotype: kind("videotype")?,
    }))
}

/// `{"response":true,"id":...,"ok":true,"data":...}`.
pub fn ok(id: u64, data: Value) -> Value {
    json!({"response": true, "id": id, "ok": true, "data": data})
}

/// `{"response":true,"id":...,"ok":false,"errorCode":...,"errorReason":...}`.
pub fn error(id: &Value, code: ErrorCode, reason: &str) -> Value {
    json!({
        "response": true,
        "id": id,
        "ok": false,
        "errorCode": code.code(),
        "errorReason": reason,
    })
}

/// `{"notification":true,"method":...,"data":...}`.
pub fn notification(method: &str, data: Value) -> Value {
    json!({"notification": true, "method": method, "data": data})
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(text: &str) -> (Value, ErrorCode) {
        let refusal = decode(text).expect_err("refused");
        (refusal.id, refusal.code)
    }

    #[test]
    fn the_documents_join_decodes() {
        let text = r#"{"request":true,"id":124495,"method":"join","data":{"rid":"rid_772"}}"#;
        let incoming = decode(text).expect("decodes");
        assert_eq!(incoming.id, 124495);
        let rid = "rid_772".to_owned();
        assert_eq!(incoming.request, Request::Join { rid, bizid: None });
    }

    #[test]
    fn a_string_id_is_refused_with_the_id_as_sent() {
        let text = r#"{"request":true,"id":"7","method":"join","data":{"rid":"r"}}"#;
        assert_eq!(refused(text), (json!("7"), ErrorCode::BadRequest));
    }

    #[test]
    fn garbage_is_refused_with_a_null_id() {
        assert_eq!(refused("{"), (Value::Null, ErrorCode::BadJson));
        assert_eq!(refused("[1]"), (Value::Null, ErrorCode::BadJson));
    }

    #[test]
    fn missing_fields_are_invalid_params() {
        let cases = [
            r#"{"request":true,"id":1,"method":"join","data":{}}"#,
            r#"{"request":true,"id":1,"method":"publish","data":{"rid":"r"}}"#,
            r#"{"request":true,"id":1,"method":"subscribe","data":{"rid":"r","jsep":{"type":"offer","sdp":"v=0"}}}"#,
            r#"{"request":true,"id":1,"method":"unsubscribe","data":{"rid":"r","mid":"m"}}"#,
            r#"{"request":true,"id":1,"method":"publish","data":{"rid":"r","jsep":{"type":"offer","sdp":"v=0"},"minfo":{"audio":"yes"}}}"#,
        ];
        for text in cases {
            assert_eq!(
                refused(text),
                (json!(1), ErrorCode::InvalidParams),
                "{text}"
            );
        }
    }

    #[test]
    fn an_answer_in_place_of_an_offer_is_bad_sdp() {
        let text = r#"{"request":true,"id":2,"method":"publish","data":{"rid":"r","jsep":{"type":"answer","sdp":"v=0"}}}"#;
        assert_eq!(refused(text), (json!(2), ErrorCode::BadSdp));
    }

    #[test]
    fn an_unknown_method_is_named() {
        let text = r#"{"request":true,"id":3,"method":"dance","data":{}}"#;
        assert_eq!(refused(text), (json!(3), ErrorCode::UnknownMethod));
    }
}
