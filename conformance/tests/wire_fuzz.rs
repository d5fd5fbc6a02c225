//! Random and mutated frames against the in-process server: every one gets a documented
//! answer or a clean close, and the server keeps serving. Bounded by PROPTEST_CASES (64).

use conformance::client::{Event, Transcript, WsClient};
use conformance::wire::nodemgr as wire;
mod support;

use proptest::prelude::*;
use serde_json::{json, Value};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(5);
const DOCUMENTED_CODES: &[&str] = &[
    "INVALID_TOKEN",
    "NODE_NOT_FOUND",
    "COMMAND_TIMEOUT",
    "PARSE_ERROR",
    "UNKNOWN_MESSAGE_TYPE",
    "DATABASE_ERROR",
];
const REPLY_TYPES: &[&str] = &[
    "register_response",
    "heartbeat_ack",
    "command_received",
    "error",
];

fn fixture() -> &'static support::Fixture {
    support::fixture(WAIT)
}

/// Registers a node, sends `frames`, and checks every answer.
async fn judge(frames: Vec<String>) -> Result<(), String> {
    let endpoint = fixture().target.nodemgr.as_ref().expect("nodemgr endpoint");
    let node_id = format!("fuzz-{}", wire::fresh_id());
    let transcript = Transcript::default();
    let url = endpoint.url(Some(&endpoint.token), Some(&node_id));
    let mut ws = WsClient::connect("fuzz", &url, &transcript, WAIT)
        .await
        .map_err(|e| e.to_string())?;
    ws.expect_type("welcome").await.map_err(|e| e.to_string())?;
    ws.send_json(&wire::node_register(&wire::fresh_id(), &node_id))
        .await
        .map_err(|e| e.to_string())?;
    ws.expect_type("register_response")
        .await
        .map_err(|e| e.to_string())?;
    for frame in frames {
        ws.send_text(&frame).await.map_err(|e| e.to_string())?;
        match ws.next_event().await {
            Event::Json(reply) => check_reply(&reply)?,
            Event::Close(Some(_)) => break,
            other => return Err(format!("{frame:?} got {}", other.describe())),
        }
    }
    // The server keeps serving.
    let mut fresh = WsClient::connect(
        "after",
        &endpoint.url(Some(&endpoint.token), None),
        &transcript,
        WAIT,
    )
    .await
    .map_err(|e| e.to_string())?;
    fresh
        .expect_type("welcome")
        .await
        .map_err(|e| e.to_string())
        .map(|_| ())
}

fn check_reply(reply: &Value) -> Result<(), String> {
    let kind = reply["type"].as_str().unwrap_or_default();
    if !REPLY_TYPES.contains(&kind) {
        return Err(format!("undocumented reply type: {reply}"));
    }
    if kind == "error"
        && !DOCUMENTED_CODES.contains(&reply["data"]["error_code"].as_str().unwrap_or_default())
    {
        return Err(format!("undocumented error code: {reply}"));
    }
    Ok(())
}

fn documented_frame() -> impl Strategy<Value = Value> {
    let kinds = prop::sample::select(vec![
        "node_register",
        "heartbeat",
        "command_started",
        "command_result",
        "execute_command",
        "welcome",
        "nonsense",
    ]);
    (kinds, any::<u8>()).prop_map(|(kind, seed)| {
        let data = match kind {
            "heartbeat" => json!({"metrics": wire::metrics(f64::from(seed))}),
            "command_result" => {
                json!({"command_id": format!("c{seed}"), "exit_code": seed, "execution_time_ms": 1})
            }
            "command_started" => json!({"command_id": format!("c{seed}")}),
            _ => json!({"node_id": format!("n{seed}")}),
        };
        wire::envelope(kind, &wire::fresh_id(), data)
    })
}

/// A documented-looking frame with one field replaced by a random JSON value, or removed.
fn mutated_frame() -> impl Strategy<Value = String> {
    let values = prop_oneof![
        Just(Value::Null),
        any::<i64>().prop_map(Value::from),
        ".{0,20}".prop_map(Value::from),
        Just(json!([])),
        Just(json!({}))
    ];
    let fields = prop::sample::select(vec![
        "/type",
        "/id",
        "/timestamp",
        "/data",
        "/data/metrics",
        "/data/command_id",
        "/data/exit_code",
    ]);
    (documented_frame(), fields, prop::option::of(values)).prop_map(|(mut frame, field, value)| {
        if let Some(slot) = frame.pointer_mut(field) {
            match value {
                Some(v) => *slot = v,
                None => *slot = Value::Null,
            }
        }
        frame.to_string()
    })
}

fn any_frame() -> impl Strategy<Value = String> {
    prop_oneof![
        ".{0,200}",
        mutated_frame(),
        documented_frame().prop_map(|v| v.to_string()),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn any_sequence_of_frames_gets_documented_answers(frames in prop::collection::vec(any_frame(), 1..8)) {
        let verdict = fixture().runtime.block_on(judge(frames));
        prop_assert!(verdict.is_ok(), "{}", verdict.unwrap_err());
    }
}
