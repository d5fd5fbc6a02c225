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
