//! sfu (seed 004 §5) protoo messages, as the document shows them. Requests carry integer ids;
//! the suite numbers them per connection.

use serde_json::{json, Value};

/// `{"request":true,"id":...,"method":...,"data":...}`.
pub fn request(id: u64, method: &str, data: Value) -> Value {
    json!({"request": true, "id": id, "method": method, "data": data})
}

pub fn join(rid: &str) -> Value {
    json!({"rid": rid})
}

pub fn room(rid: &str) -> Value {
    json!({"rid": rid})
}

/// 004 §5 publish: the offer and the document's `minfo`.
pub fn publish(rid: &str, offer: &str, audio: bool, video: bool) -> Value {
    json!({
        "rid": rid,
        "jsep": {"type": "offer", "sdp": offer},
        "minfo": {"audio": audio, "video": video, "audiotype": 0, "videotype": 0},
    })
}

pub fn unpublish(rid: &str, mid: &str, sfuid: &str) -> Value {
    json!({"rid": rid, "mid": mid, "sfuid": sfuid})
}

pub fn subscribe(rid: &str, mid: &str, offer: &str, sfuid: &str) -> Value {
    json!({"rid": rid, "mid": mid, "jsep": {"type": "offer", "sdp": offer}, "sfuid": sfuid})
}

pub fn unsubscribe(rid: &str, mid: &str, sid: &str, sfuid: &str) -> Value {
    json!({"rid": rid, "mid": mid, "sid": sid, "sfuid": sfuid})
}

pub fn broadcast(rid: &str, data: Value) -> Value {
    json!({"rid": rid, "data": data})
}

/// A room or peer id no other case uses.
pub fn unique_id(kind: &str) -> String {
    format!(
        "conf-{kind}-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    )
}

/// Whether `message` is a response (`response: true`) to request `id`.
pub fn is_response_to(message: &Value, id: u64) -> bool {
    message["response"] == true && message["id"] == id
}

/// Whether `message` is a notification of `method`.
pub fn is_notification(message: &Value, method: &str) -> bool {
    message["notification"] == true && message["method"] == method
}

/// 004 §5: a failed response carries `errorCode` and `errorReason`. The document writes the
/// code as a string; protoo itself uses numbers, accepted as a variant.
pub fn error_code(response: &Value) -> Option<String> {
    match &response["errorCode"] {
        Value::String(code) => Some(code.clone()),
        Value::Number(code) => Some(code.to_string()),
        _ => None,
    }
}
