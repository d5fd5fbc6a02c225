//! The cmdrelay codec against the document's own examples (fixtures/cmdrelay) and malformed
//! frames, plus property tests: no input panics, and built responses always read back.

use proptest::prelude::*;
use reference_server::protocol::cmdrelay::messages::RelayKind;
use reference_server::protocol::cmdrelay::{decode, DecodeError, ErrorCode, Request, Response};
use serde_json::Value;

mod support;

use support::fixtures;

fn wire(name: &str) -> String {
    fixtures::wire("cmdrelay", name)
}

fn json(text: &str) -> Value {
    serde_json::from_str(text).expect("json")
}

#[test]
fn every_client_message_in_the_document_decodes() {
    let expected = [
        (
            "init",
            Request::Init {
                token: Some("your_token_here".to_owned()),
            },
        ),
        ("check_device_request", Request::CheckDevice),
        ("execute", Request::Relay(RelayKind::Execute)),
        ("execute_result", Request::Relay(RelayKind::ExecuteResult)),
    ];
    for (name, request) in expected {
        assert_eq!(decode(&wire(name)), Ok(request), "{name}");
    }
}

#[test]
fn the_server_writes_the_document_heartbeat_exactly() {
    assert_eq!(
        json(&Response::heartbeat().encode()),
        json(&wire("heartbeat"))
    );
}

#[test]
fn check_device_with_others_is_the_document_response() {
    assert_eq!(
        json(&Response::check_device(2).encode()),
        json(&wire("check_device_response"))
    );
    assert_eq!(Response::check_device(1).code, "0");
}

#[test]
fn the_document_response_message_reads_as_a_response() {
    let response: Response = serde_json::from_str(&wire("response_message")).expect("reads");
    assert_eq!(response.session_id.as_deref(), Some("optional_session_id"));
    assert_eq!(response.extra.len(), 2);
    assert_eq!(json(&response.encode()), json(&wire("response_message")));
}

#[test]
fn every_malformed_frame_is_a_parse_error() {
    let frames = fixtures::malformed("cmdrelay");
    for (name, text) in &frames {
        let error = decode(text).expect_err(name);
        assert_eq!(error.code(), ErrorCode::ParseError, "{name}");
    }
    let seen = frames.len();
    assert!(seen >= 8, "only {seen} malformed fixtures");
}

#[test]
fn decode_errors_name_the_problem() {
    assert_eq!(decode("[1]"), Err(DecodeError::NotAnObject));
    assert_eq!(decode("{}"), Err(DecodeError::MissingCmd));
    assert_eq!(decode(r#"{"cmd":1}"#), Err(DecodeError::CmdNotAString));
    assert!(matches!(decode("{"), Err(DecodeError::NotJson(_))));
    assert_eq!(
        decode(r#"{"cmd":"reboot"}"#),
        Ok(Request::Unknown("reboot".to_owned()))
    );
    assert_eq!(
        decode(r#"{"cmd":"init"}"#),
        Ok(Request::Init { token: None })
    );
}

#[test]
fn every_error_code_is_a_distinct_string_that_cannot_be_read_as_success() {
    let codes: std::collections::HashSet<_> = ErrorCode::ALL.iter().map(|c| c.code()).collect();
    assert_eq!(codes.len(), ErrorCode::ALL.len());
    assert!(!codes.contains("1") && !codes.contains("0"));
}

#[test]
fn the_error_table_in_the_clarifications_lists_every_code() {
    let table = std::fs::read_to_string(fixtures::dir("cmdrelay").join("CLARIFICATIONS.md"))
        .expect("clarifications");
    for code in ErrorCode::ALL {
        let row = format!("| `\"{}\"` | {} |", code.code(), code.name());
        assert!(table.contains(&row), "CLARIFICATIONS.md C4 lacks {row}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn decoding_any_text_never_panics(text in ".{0,200}") {
        let _ = decode(&text);
    }

    #[test]
    fn decoding_any_json_object_never_panics(
        cmd in prop_oneof![Just(Value::Null), any::<i64>().prop_map(Value::from), "[a-zA-Z_]{0,16}".prop_map(Value::from)],
        extra in prop_oneof![Just(Value::Null), "[a-z]{0,8}".prop_map(Value::from), Just(serde_json::json!({"command": "x"}))],
    ) {
        let frame = serde_json::json!({ "cmd": cmd, "extra": extra, "token": "t" });
        let _ = decode(&frame.to_string());
    }

    #[test]
    fn an_error_response_always_encodes_to_the_documented_shape(cmd in proptest::option::of("[ -~]{0,20}"), message in ".{0,100}") {
        let text = Response::error(cmd.as_deref(), ErrorCode::ParseError, message.clone()).encode();
        let value = json(&text);
        prop_assert_eq!(&value["cmd"], &Value::from(cmd.unwrap_or_else(|| "error".to_owned())));
        prop_assert_eq!(&value["code"], "400");
        prop_assert_eq!(&value["extra"]["message"], &Value::from(message));
    }
}
