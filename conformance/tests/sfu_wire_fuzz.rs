//! Random and mutated protoo frames from a peer of a room of two, against the in-process SFU.
//! The oracle is the document plus fixtures/sfu/CLARIFICATIONS.md, never the server's types:
//! every frame gets exactly one response (S2, S7) carrying its integer id, or the id as sent,
//! or null; a failed response has a string errorCode and an errorReason; a well-formed
//! broadcast in the room reaches the other peer with its data unchanged, and nothing else
//! does. Bounded at 64 sequences of at most 8 frames.

use conformance::client::{Event, Transcript, WsClient};
use conformance::wire::sfu as wire;
mod support;

use proptest::prelude::*;
use serde_json::{json, Value};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(5);
/// Stands for the room's id in generated frames; replaced before sending.
const ROOM: &str = "{room}";
/// The sentinel's id: larger than any generated one.
const SENTINEL_ID: u64 = 1 << 40;

fn fixture() -> &'static support::Fixture {
    support::fixture(WAIT)
}

async fn next_json(ws: &mut WsClient) -> Result<Value, String> {
    match ws.next_event_within(WAIT).await {
        Event::Json(v) => Ok(v),
        other => Err(format!("expected a message, got {}", other.describe())),
    }
}

/// S2: the id a response must carry: the integer id, else the id as sent, else null.
fn expected_id(frame: &str) -> Value {
    match serde_json::from_str::<Value>(frame) {
        Ok(Value::Object(object)) => object.get("id").cloned().unwrap_or(Value::Null),
        _ => Value::Null,
    }
}

/// 004 §5 broadcast: a request in the room with a `data` field reaches the others.
fn is_broadcast_in(frame: &str, room: &str) -> bool {
    let Ok(value) = serde_json::from_str::<Value>(frame) else {
        return false;
    };
    let id_ok = value["id"].as_u64().is_some_and(|id| id < 1 << 53);
    value["request"] == true
        && id_ok
        && value["method"] == "broadcast"
        && value["data"]["rid"] == room
        && value["data"].get("data").is_some()
}

fn judge_response(frame: &str, response: &Value) -> Result<(), String> {
    let shape_ok = response["response"] == true
        && response["id"] == expected_id(frame)
        && match response["ok"] {
            Value::Bool(true) => true,
            Value::Bool(false) => {
                response["errorCode"].is_string() && response["errorReason"].is_string()
            }
            _ => false,
        };
    if shape_ok {
        return Ok(());
    }
    Err(format!("{frame:?} got {response}; expected one response with its id and ok, or an error with errorCode and errorReason"))
}

async fn judge(frames: Vec<String>) -> Result<(), String> {
    let url = &fixture().target.sfu.as_ref().expect("sfu endpoint").ws_url;
    let room = wire::unique_id("room");
    let transcript = Transcript::default();
    let (sender_id, listener_id) = (wire::unique_id("peer"), wire::unique_id("peer"));
    let connect = |uid: &str| format!("{url}?peer={uid}");
    let mut sender = WsClient::connect("sender", &connect(&sender_id), &transcript, WAIT)
        .await
        .map_err(|e| e.to_string())?;
    let mut listener = WsClient::connect("listener", &connect(&listener_id), &transcript, WAIT)
        .await
        .map_err(|e| e.to_string())?;
    for ws in [&mut listener, &mut sender] {
        ws.send_json(&wire::request(0, "join", wire::join(&room)))
            .await
            .map_err(|e| e.to_string())?;
        next_json(ws).await?;
    }
    // The sender's join made a peer-join for the listener.
    next_json(&mut listener).await?;
    let frames: Vec<String> = frames.iter().map(|f| f.replace(ROOM, &room)).collect();
    for frame in &frames {
        sender.send_text(frame).await.map_err(|e| e.to_string())?;
        let response = next_json(&mut sender).await?;
        judge_response(frame, &response)?;
    }
    let sentinel = wire::request(
        SENTINEL_ID,
        "broadcast",
        wire::broadcast(&room, json!("end")),
    );
    sender
        .send_json(&sentinel)
        .await
        .map_err(|e| e.to_string())?;
    let answer = next_json(&mut sender).await?;
    if !wire::is_response_to(&answer, SENTINEL_ID) {
        return Err(format!(
            "the sender got {answer} after its frames; expected only the sentinel's answer"
        ));
    }
    let mut heard = Vec::new();
    loop {
        let got = next_json(&mut listener).await?;
        if got["data"]["data"] == "end" {
            break;
        }
        heard.push(got);
    }
    let expected: Vec<Value> = frames
        .iter()
        .filter(|f| is_broadcast_in(f, &room))
        .filter_map(|f| serde_json::from_str::<Value>(f).ok())
        .map(|f| json!({"notification": true, "method": "broadcast", "data": {"rid": room, "uid": sender_id, "data": f["data"]["data"]}}))
        .collect();
    if heard != expected {
        return Err(format!(
            "the listener got {heard:?}, expected exactly the broadcasts {expected:?}"
        ));
    }
    Ok(())
}

fn document_frame() -> impl Strategy<Value = Value> {
    let methods = prop::sample::select(vec![
        "join",
        "keepalive",
        "broadcast",
        "publish",
        "unpublish",
        "subscribe",
        "unsubscribe",
        "dance",
    ]);
    (methods, 0u64..1000, ".{0,12}").prop_map(|(method, id, text)| {
        json!({
            "request": true,
            "id": id,
            "method": method,
            "data": {
                "rid": ROOM,
                "mid": text,
                "sid": text,
                "data": {"text": text},
                "jsep": {"type": "offer", "sdp": text},
            },
        })
    })
}

/// Random text, a frame as the document shows it, or one with a field removed or replaced.
fn any_frame() -> impl Strategy<Value = String> {
    let fields = vec!["request", "id", "method", "data"];
    support::any_frame(
        document_frame(),
        fields,
        vec![json!({"rid": "another-room"}), json!(1.5)],
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn any_sequence_of_protoo_frames_is_answered_once_and_broadcasts_stay_in_the_room(frames in prop::collection::vec(any_frame(), 1..8)) {
        let verdict = fixture().runtime.block_on(judge(frames));
        prop_assert!(verdict.is_ok(), "{}", verdict.unwrap_err());
    }
}
