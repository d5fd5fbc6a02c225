//! The logrtc signaling codec against the document's examples (fixtures/logrtc) and malformed
//! frames, plus property tests: no input panics the decoder or the hub.

use proptest::prelude::*;
use reference_server::faults::Faults;
use reference_server::protocol::logrtc::messages::{self, DecodeError};
use reference_server::protocol::logrtc::{decode, ClientMessage, ErrorCode, Hub, Role, SignalKind};
use reference_server::protocol::Now;
use serde_json::Value;

mod support;

use support::fixtures;

fn wire(name: &str) -> String {
    fixtures::wire("logrtc", name)
}

#[test]
fn every_client_message_in_the_document_decodes() {
    let Ok(ClientMessage::Register {
        role, client_id, ..
    }) = decode(&wire("register_producer"))
    else {
        panic!("register_producer does not decode");
    };
    assert_eq!(
        (role, client_id.as_deref()),
        (Role::Producer, Some("your_system_name"))
    );
    for (name, kind) in [
        ("webrtc_offer", SignalKind::Offer),
        ("webrtc_answer", SignalKind::Answer),
        ("ice_candidate", SignalKind::Candidate),
    ] {
        let decoded = decode(&wire(name));
        assert!(
            matches!(decoded, Ok(ClientMessage::Signal { kind: k, .. }) if k == kind),
            "{name}: {decoded:?}"
        );
    }
}

#[test]
fn the_server_writes_the_document_consumer_connected_exactly() {
    let expected: Value = serde_json::from_str(&wire("consumer_connected")).expect("json");
    assert_eq!(
        messages::consumer_connected("browser_client_123", &[]),
        expected
    );
}

#[test]
fn every_malformed_frame_gets_its_documented_code() {
    let frames = fixtures::malformed("logrtc");
    for (name, text) in &frames {
        let error = decode(text).expect_err(name);
        let want = match name.as_str() {
            "truncated.txt" | "not-json.txt" | "array.txt" => ErrorCode::BadJson,
            _ => ErrorCode::BadMessage,
        };
        assert_eq!(error.code(), want, "{name}");
    }
    let seen = frames.len();
    assert!(seen >= 13, "only {seen} malformed fixtures");
}

#[test]
fn an_unknown_type_names_the_known_ones() {
    let error = decode(r#"{"type":"subscribe"}"#).expect_err("unknown");
    assert!(matches!(error, DecodeError::UnknownType(_)));
    assert!(error.to_string().contains("webrtc_offer"));
}

fn now() -> Now {
    Now {
        mono: std::time::Instant::now(),
        wall: chrono::Utc::now(),
    }
}

proptest! {
    #[test]
    fn arbitrary_text_never_panics_the_decoder(text in ".{0,300}") {
        let _ = decode(&text);
    }

    #[test]
    fn arbitrary_messages_from_many_connections_never_panic_the_hub(
        frames in prop::collection::vec((0u64..4, 0usize..8, "[a-c]{1,2}"), 0..60)
    ) {
        let mut hub = Hub::new(Faults::none());
        for (conn, shape, id) in frames {
            let text = match shape {
                0 => format!(r#"{{"type":"register","role":"producer","client_id":"{id}"}}"#),
                1 => format!(r#"{{"type":"register","role":"consumer","client_id":"{id}"}}"#),
                2 => format!(r#"{{"type":"watch","producer_id":"{id}"}}"#),
                3 => format!(r#"{{"type":"unwatch","producer_id":"{id}"}}"#),
                4 => format!(r#"{{"type":"webrtc_offer","to":"{id}","sdp":"v=0"}}"#),
                5 => format!(r#"{{"type":"ice_candidate","to":"{id}","candidate":"c"}}"#),
                6 => r#"{"type":"list_producers"}"#.to_owned(),
                _ => {
                    hub.disconnect(conn);
                    continue;
                }
            };
            if let Ok(message) = decode(&text) {
                hub.handle(now(), conn, message);
            }
        }
        for conn in 0..4 {
            hub.disconnect(conn);
        }
        prop_assert_eq!(hub.client_count(), 0);
        prop_assert_eq!(hub.producer_count(), 0);
    }
}
