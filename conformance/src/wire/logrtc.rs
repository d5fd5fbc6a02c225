//! logrtc (seed 000) signaling messages, as the document shows them, plus the project's
//! additions (fixtures/logrtc/CLARIFICATIONS.md). The SDP here is opaque: a signaling server
//! is tested without WebRTC.

use serde_json::{json, Value};

/// 000 §2: `register` as a producer, with the document's metadata fields.
pub fn register_producer(client_id: &str) -> Value {
    json!({
        "type": "register",
        "role": "producer",
        "client_id": client_id,
        "metadata": {
            "system_name": format!("conformance {client_id}"),
            "version": "1.0.0",
            "description": "系统描述 (conformance)"
        }
    })
}

/// L1: a consumer registers with the same message and role `consumer`.
pub fn register_consumer(client_id: &str) -> Value {
    json!({"type": "register", "role": "consumer", "client_id": client_id})
}

pub fn list_producers() -> Value {
    json!({"type": "list_producers"})
}

pub fn watch(producer_id: &str) -> Value {
    json!({"type": "watch", "producer_id": producer_id})
}

/// 000 §4.2: `{"type":"webrtc_offer","to":...,"sdp":...}`.
pub fn offer(to: &str, sdp: &str) -> Value {
    json!({"type": "webrtc_offer", "to": to, "sdp": sdp})
}

/// 000 §4.3, with `to` (L4).
pub fn answer(to: &str, sdp: &str) -> Value {
    json!({"type": "webrtc_answer", "to": to, "sdp": sdp})
}

/// 000 §4.3: `candidate` and `sdpMLineIndex`, with `to` (L4).
pub fn candidate(to: &str, candidate: &str, m_line: u64) -> Value {
    json!({"type": "ice_candidate", "to": to, "candidate": candidate, "sdpMLineIndex": m_line})
}

/// An SDP-shaped text with CRLF line endings and a marker, so that a relay is recognised and
/// any change to it shows.
pub fn opaque_sdp(marker: &str) -> String {
    format!(
        "v=0\r\no=- 4611731400430051336 2 IN IP4 127.0.0.1\r\ns={marker}\r\nt=0 0\r\n\
         a=group:BUNDLE 0\r\nm=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\n\
         c=IN IP4 0.0.0.0\r\na=mid:0\r\na=sctp-port:5000\r\n"
    )
}

/// A client id no other case uses.
pub fn unique_id(role: &str) -> String {
    format!(
        "conf-{role}-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    )
}

/// Messages the server pushes to consumers whenever any producer comes or goes (L3): a case
/// skips them unless it is about them, since other cases' producers come and go meanwhile.
pub fn is_listing_push(message: &Value) -> bool {
    matches!(
        message["type"].as_str(),
        Some("producer_connected" | "producer_disconnected")
    )
}

/// The levels the document allows (000 §标准日志格式; L8).
pub const LEVELS: &[&str] = &["ERROR", "WARN", "INFO", "DEBUG"];

/// Checks one log entry against the document's standard format (L8): string `timestamp`,
/// `level`, `target` and `message`, an ISO 8601 timestamp and one of the four levels;
/// `fields` an object and `span` an object with `id` when present. Returns the timestamp's
/// form, so that a caller can tell a missing offset (an accepted variant) from RFC 3339.
pub fn check_log_entry(entry: &Value) -> Result<crate::check::TimestampForm, String> {
    use crate::check::{timestamp_form, TimestampForm};
    if !entry.is_object() {
        return Err(format!(
            "not a JSON object: {}",
            crate::check::compact(entry)
        ));
    }
    for field in ["timestamp", "level", "target", "message"] {
        if !entry[field].is_string() {
            return Err(format!(
                "`{field}` is not a string in {}",
                crate::check::compact(entry)
            ));
        }
    }
    let level = entry["level"].as_str().unwrap_or_default();
    if !LEVELS.contains(&level) {
        return Err(format!("level {level:?} is not one of {LEVELS:?}"));
    }
    if entry.get("fields").is_some_and(|f| !f.is_object()) {
        return Err(format!(
            "`fields` is not an object in {}",
            crate::check::compact(entry)
        ));
    }
    if entry
        .get("span")
        .is_some_and(|s| !s["id"].is_string() && !s["id"].is_number())
    {
        return Err(format!(
            "`span` has no id in {}",
            crate::check::compact(entry)
        ));
    }
    let stamp = entry["timestamp"].as_str().unwrap_or_default();
    match timestamp_form(stamp) {
        TimestampForm::Invalid => Err(format!("timestamp {stamp:?} is not ISO 8601")),
        form => Ok(form),
    }
}
