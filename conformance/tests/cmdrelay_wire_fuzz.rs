//! Random and mutated frames from one client of a room of two, against the in-process server.
//! The oracle is the document plus CLARIFICATIONS.md, never the server's types: a relay frame
//! reaches the other client verbatim and nothing else does; every other frame is answered
//! with a documented code, and the connection goes on. Bounded at 64 sequences.

use conformance::client::{Event, Transcript, WsClient};
use conformance::wire::cmdrelay as wire;
mod support;

use proptest::prelude::*;
use serde_json::{json, Value};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(5);
/// C4: the error codes a bad frame may get without closing.
const ERROR_CODES: &[&str] = &["400", "403", "404", "409", "415"];

fn fixture() -> &'static support::Fixture {
    support::fixture(WAIT)
}

/// Whether the document says the frame is relayed: an object, cmd execute or
/// execute_result, and an object extra.
fn is_relay(frame: &str) -> bool {
    let Ok(value) = serde_json::from_str::<Value>(frame) else {
        return false;
    };
    let relay_cmd = value["cmd"] == "execute" || value["cmd"] == "execute_result";
    relay_cmd && value["extra"].is_object()
}

fn is_check_device(frame: &str) -> bool {
    serde_json::from_str::<Value>(frame).is_ok_and(|v| v["cmd"] == "checkDevice")
}

async fn next_json(ws: &mut WsClient) -> Result<Value, String> {
    loop {
        match ws.next_event_within(WAIT).await {
            // Only the server's own heartbeat: an error answering a client's "Heartbeat" cmd
            // carries that cmd too.
            Event::Json(v) if v == json!({"cmd": "Heartbeat", "code": "1", "extra": {}}) => {
                continue
            }
            Event::Json(v) => return Ok(v),
            other => return Err(format!("expected a message, got {}", other.describe())),
        }
    }
}

/// Sends `frame`, then a checkDevice sentinel; returns what came back before the sentinel's answer.
async fn answers_to(sender: &mut WsClient, frame: &str) -> Result<Vec<Value>, String> {
    sender.send_text(frame).await.map_err(|e| e.to_string())?;
    sender
        .send_json(&wire::check_device())
        .await
        .map_err(|e| e.to_string())?;
    let mut replies = Vec::new();
    loop {
        let reply = next_json(sender).await?;
        if reply["cmd"] == "checkDevice" && reply["code"] == "1" {
            // The frame's own checkDevice answer comes first, then the sentinel's.
            if is_check_device(frame) && replies.is_empty() {
                replies.push(reply);
                continue;
            }
            return Ok(replies);
        }
        replies.push(reply);
    }
}

fn judge_answers(frame: &str, replies: &[Value]) -> Result<(), String> {
    if is_relay(frame) || is_check_device(frame) {
        let expected = usize::from(is_check_device(frame));
        if replies.len() != expected {
            return Err(format!(
                "{frame:?} got {replies:?}; a relay is never answered"
            ));
        }
        return Ok(());
    }
    match replies {
        [reply] if ERROR_CODES.contains(&reply["code"].as_str().unwrap_or_default()) => Ok(()),
        other => Err(format!(
            "{frame:?} got {other:?}; expected one error with a documented code"
        )),
    }
}

async fn judge(frames: Vec<String>) -> Result<(), String> {
    let endpoint = fixture()
        .target
        .cmdrelay
        .as_ref()
        .expect("cmdrelay endpoint");
    let tokens = endpoint.tokens.rooms(1).await.map_err(|e| e.to_string())?;
    let transcript = Transcript::default();
    let connect = |name| WsClient::connect(name, &endpoint.ws_url, &transcript, WAIT);
    let mut sender = connect("sender").await.map_err(|e| e.to_string())?;
    let mut listener = connect("listener").await.map_err(|e| e.to_string())?;
    for ws in [&mut sender, &mut listener] {
        ws.send_json(&wire::init(tokens.get(0)))
            .await
            .map_err(|e| e.to_string())?;
        next_json(ws).await?;
    }
    for frame in &frames {
        judge_answers(frame, &answers_to(&mut sender, frame).await?)?;
    }
    let marker = wire::execute(&wire::unique_command("end"));
    sender.send_json(&marker).await.map_err(|e| e.to_string())?;
    let mut relayed = Vec::new();
    loop {
        let got = next_json(&mut listener).await?;
        if got == marker {
            break;
        }
        relayed.push(got);
    }
    let expected: Vec<Value> = frames
        .iter()
        .filter(|f| is_relay(f))
        .filter_map(|f| serde_json::from_str(f).ok())
        .collect();
    if relayed != expected {
        return Err(format!(
            "the listener got {relayed:?}, expected exactly the relays {expected:?}"
        ));
    }
    Ok(())
}

fn document_frame() -> impl Strategy<Value = Value> {
    let cmds = prop::sample::select(vec![
        "init",
        "checkDevice",
        "execute",
        "execute_result",
        "Heartbeat",
        "nonsense",
    ]);
    (cmds, ".{0,12}").prop_map(|(cmd, text)| json!({ "cmd": cmd, "token": text, "extra": { "command": text, "data": text } }))
}

/// Random text, a frame as the document shows it, or one with a field removed or replaced.
fn any_frame() -> impl Strategy<Value = String> {
    let fields = vec!["cmd", "extra", "token"];
    support::any_frame(
        document_frame(),
        fields,
        vec![json!({"nested": {"deep": [1, "二"]}})],
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn any_sequence_of_frames_is_relayed_or_answered_as_documented(frames in prop::collection::vec(any_frame(), 1..8)) {
        let verdict = fixture().runtime.block_on(judge(frames));
        prop_assert!(verdict.is_ok(), "{}", verdict.unwrap_err());
    }
}
