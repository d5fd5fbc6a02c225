//! The codec against the document's own examples (fixtures/nodemgr/wire) and malformed frames.

use proptest::prelude::*;
use reference_server::protocol::nodemgr::envelope::Envelope;
use reference_server::protocol::nodemgr::messages;
use reference_server::protocol::nodemgr::{
    decode_node_frame, decode_via_value, ErrorCode, NodeMessage,
};
use serde_json::Value;

mod support;

use support::fixtures;

fn wire(name: &str) -> String {
    fixtures::wire("nodemgr", name)
}

#[test]
fn every_node_message_in_the_document_decodes() {
    for name in [
        "node_register",
        "heartbeat",
        "command_started",
        "command_result",
    ] {
        let inbound = decode_node_frame(&wire(name)).unwrap_or_else(|e| panic!("{name}: {e:?}"));
        let expected: Value = serde_json::from_str(&wire(name)).expect("json");
        assert_eq!(inbound.id, expected["id"].as_str().expect("id"), "{name}");
    }
}

#[test]
fn the_document_heartbeat_decodes_to_its_metrics() {
    let inbound = decode_node_frame(&wire("heartbeat")).expect("decodes");
    let NodeMessage::Heartbeat(hb) = inbound.message else {
        panic!("not a heartbeat")
    };
    assert_eq!(
        (hb.metrics.cpu_usage, hb.metrics.load_average),
        (45.2, 1.23)
    );
}

/// The core's messages have exactly the data fields the document shows, of the same JSON types.
#[test]
fn core_messages_have_the_documents_shape() {
    let built = [
        ("welcome", messages::welcome_data("node-001")),
        (
            "register_response",
            messages::register_response_data(true, "ok", "node-001"),
        ),
        ("heartbeat_ack", received_value(true, "node-001")),
        ("command_received", received_value(true, "node-001")),
        (
            "execute_command",
            messages::execute_command_data("cmd-001", "ls -la /home", 30),
        ),
        (
            "error_parse_error",
            messages::error_data(ErrorCode::ParseError, "x"),
        ),
    ];
    for (name, data) in built {
        let documented: Value = serde_json::from_str(&wire(name)).expect("json");
        assert_eq!(shape(&documented["data"]), shape(&data), "{name}");
    }
}

/// The typed acknowledgement as the JSON it writes.
fn received_value(received: bool, node_id: &str) -> Value {
    serde_json::to_value(messages::received_data(received, node_id)).expect("serializes")
}

fn shape(value: &Value) -> Vec<(String, &'static str)> {
    let mut fields: Vec<_> = value
        .as_object()
        .expect("object")
        .iter()
        .map(|(k, v)| {
            let kind = match v {
                Value::Bool(_) => "bool",
                Value::Number(_) => "number",
                Value::String(_) => "string",
                Value::Object(_) => "object",
                _ => "other",
            };
            (k.clone(), kind)
        })
        .collect();
    fields.sort();
    fields
}

/// The document's table (fixtures/nodemgr/error_codes.md): the same codes, spelled the same,
/// with the same descriptions, in the same order.
#[test]
fn every_documented_error_code_is_spelled_and_described_as_in_the_table() {
    let table = std::fs::read_to_string(fixtures::dir("nodemgr").join("error_codes.md"))
        .expect("error_codes.md");
    let documented: Vec<(String, String)> = table
        .lines()
        .filter(|l| l.starts_with("| `"))
        .map(|l| {
            let cells: Vec<&str> = l.split('|').map(str::trim).collect();
            (cells[1].trim_matches('`').to_owned(), cells[2].to_owned())
        })
        .collect();
    let ours: Vec<(String, String)> = ErrorCode::ALL
        .iter()
        .map(|c| (c.as_str().to_owned(), c.message().to_owned()))
        .collect();
    assert_eq!(ours, documented);
}

#[test]
fn malformed_frames_get_the_documented_codes() {
    let frames = fixtures::malformed("nodemgr");
    for (name, text) in &frames {
        let rejection = decode_node_frame(text).expect_err("must be rejected");
        let expected = if name == "unknown_type.txt" {
            ErrorCode::UnknownMessageType
        } else {
            ErrorCode::ParseError
        };
        assert_eq!(rejection.error.code(), expected, "{name}");
    }
    let seen = frames.len();
    assert!(seen >= 10, "only {seen} malformed fixtures");
}

#[test]
fn a_rejection_keeps_the_request_id_when_it_was_readable() {
    let rejection =
        decode_node_frame(r#"{"type":"heartbeat","id":"abc","timestamp":"x","data":{}}"#)
            .expect_err("bad timestamp");
    assert_eq!(rejection.id.as_deref(), Some("abc"));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn decoding_arbitrary_text_never_panics_and_both_paths_agree(text in ".{0,400}") {
        prop_assert_eq!(decode_node_frame(&text), decode_via_value(&text));
    }

    #[test]
    fn decoding_mutated_documented_frames_never_panics_and_both_paths_agree(
        index in 0usize..4, at in 0usize..400, byte in any::<u8>()
    ) {
        let name = ["node_register", "heartbeat", "command_started", "command_result"][index];
        let mut bytes = wire(name).into_bytes();
        let at = at % bytes.len();
        bytes[at] = byte;
        let text = String::from_utf8_lossy(&bytes);
        // The typed fast path and the general one agree, on what they accept and on why not.
        prop_assert_eq!(decode_node_frame(&text), decode_via_value(&text));
    }

    #[test]
    fn an_encoded_heartbeat_decodes_to_the_same_metrics(
        cpu in 0.0f64..100.0, mem in 0.0f64..100.0, disk in 0.0f64..100.0, load in 0.0f64..64.0,
        id in "[a-z0-9-]{1,36}"
    ) {
        let data = serde_json::json!({ "node_id": "n", "status": "online", "metrics": {
            "cpu_usage": cpu, "memory_usage": mem, "disk_usage": disk, "load_average": load } });
        let frame = Envelope::new("heartbeat", id.clone(), chrono::Utc::now(), data).encode();
        let inbound = decode_node_frame(&frame).expect("round trip");
        prop_assert_eq!(inbound.id, id);
        let NodeMessage::Heartbeat(hb) = inbound.message else { panic!("kind changed") };
        prop_assert_eq!((hb.metrics.cpu_usage, hb.metrics.memory_usage), (cpu, mem));
        prop_assert_eq!((hb.metrics.disk_usage, hb.metrics.load_average), (disk, load));
    }
}
