//! Random and mutated signaling frames from a consumer that watches a producer, against the
//! in-process server. The oracle is the document plus fixtures/logrtc/CLARIFICATIONS.md, never
//! the server's types: a relay addressed to the producer (L4) reaches it verbatim with `from`
//! added, and nothing else does; `ping` is answered `pong`, `list_producers` a `producer_list`
//! (L3, L6); every other frame gets one `error` with a code of the L7 table, and the connection
//! goes on. Bounded at 64 sequences of at most 8 frames.

use conformance::client::{Event, Transcript, WsClient};
use conformance::wire::logrtc as wire;
mod support;

use proptest::prelude::*;
use serde_json::{json, Value};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(5);
/// L7: the codes a bad frame may get while the connection stays open.
const ERROR_CODES: &[&str] = &[
    "bad_json",
    "bad_message",
    "unknown_type",
    "not_registered",
    "already_registered",
    "wrong_role",
    "unknown_producer",
    "unknown_recipient",
    "not_paired",
    "unsupported_frame",
];
/// Stands for the producer's id in generated frames; replaced before sending.
const PRODUCER: &str = "{producer}";

fn fixture() -> &'static support::Fixture {
    support::fixture(WAIT)
}

fn parse(frame: &str) -> Option<serde_json::Map<String, Value>> {
    match serde_json::from_str(frame) {
        Ok(Value::Object(object)) => Some(object),
        _ => None,
    }
}

/// L4: a relay names a registered peer in `to`; an offer or answer carries a string `sdp`, a
/// candidate a `candidate` that is a string or the browser's object.
fn is_relay_to(frame: &str, producer: &str) -> bool {
    let Some(object) = parse(frame) else {
        return false;
    };
    let payload = |field: &str| object.get(field);
    let complete = match object.get("type").and_then(Value::as_str) {
        Some("webrtc_offer" | "webrtc_answer") => payload("sdp").is_some_and(Value::is_string),
        Some("ice_candidate") => {
            payload("candidate").is_some_and(|c| c.is_string() || c.is_object())
        }
        _ => false,
    };
    complete && object.get("to").and_then(Value::as_str) == Some(producer)
}

fn type_is(frame: &str, kind: &str) -> bool {
    parse(frame).is_some_and(|o| o.get("type").and_then(Value::as_str) == Some(kind))
}

/// The next message that is not a listing push from other producers coming and going (L3).
async fn next_json(ws: &mut WsClient) -> Result<Value, String> {
    loop {
        match ws.next_event_within(WAIT).await {
            Event::Json(v) if wire::is_listing_push(&v) => continue,
            Event::Json(v) => return Ok(v),
            other => return Err(format!("expected a message, got {}", other.describe())),
        }
    }
}

/// Sends `frame`, then a `ping` sentinel; returns what came back before the sentinel's `pong`.
async fn answers_to(sender: &mut WsClient, frame: &str) -> Result<Vec<Value>, String> {
    sender.send_text(frame).await.map_err(|e| e.to_string())?;
    sender
        .send_json(&json!({"type": "ping"}))
        .await
        .map_err(|e| e.to_string())?;
    let mut replies = Vec::new();
    loop {
        let reply = next_json(sender).await?;
        let first_pong_is_the_frames = type_is(frame, "ping") && replies.is_empty();
        if reply["type"] == "pong" && !first_pong_is_the_frames {
            return Ok(replies);
        }
        replies.push(reply);
    }
}

fn judge_answers(frame: &str, producer: &str, replies: &[Value]) -> Result<(), String> {
    let expected_type = if is_relay_to(frame, producer) {
        None
    } else if type_is(frame, "ping") {
        Some("pong")
    } else if type_is(frame, "list_producers") {
        Some("producer_list")
    } else {
        Some("error")
    };
    let fits = match (expected_type, replies) {
        (None, []) => true,
        (Some("error"), [reply]) => {
            reply["type"] == "error"
                && ERROR_CODES.contains(&reply["code"].as_str().unwrap_or_default())
        }
        (Some(kind), [reply]) => reply["type"] == kind,
        _ => false,
    };
    if fits {
        return Ok(());
    }
    let expected = expected_type.unwrap_or("nothing (a relay is not answered)");
    Err(format!("{frame:?} got {replies:?}; expected {expected}"))
}

/// A registered producer, and a consumer that watches it; the producer's `consumer_connected`
/// is read.
async fn pair(transcript: &Transcript) -> Result<(WsClient, WsClient, String, String), String> {
    let url = &fixture()
        .target
        .logrtc
        .as_ref()
        .expect("logrtc endpoint")
        .ws_url;
    let connect = |name| WsClient::connect(name, url, transcript, WAIT);
    let producer_id = wire::unique_id("producer");
    let consumer_id = wire::unique_id("consumer");
    let mut producer = connect("producer").await.map_err(|e| e.to_string())?;
    let mut consumer = connect("consumer").await.map_err(|e| e.to_string())?;
    producer
        .send_json(&wire::register_producer(&producer_id))
        .await
        .map_err(|e| e.to_string())?;
    next_json(&mut producer).await?;
    for message in [
        wire::register_consumer(&consumer_id),
        wire::watch(&producer_id),
    ] {
        consumer
            .send_json(&message)
            .await
            .map_err(|e| e.to_string())?;
        next_json(&mut consumer).await?;
    }
    let connected = next_json(&mut producer).await?;
    if connected["type"] != "consumer_connected" {
        return Err(format!("expected consumer_connected, got {connected}"));
    }
    Ok((producer, consumer, producer_id, consumer_id))
}

async fn judge(frames: Vec<String>) -> Result<(), String> {
    let transcript = Transcript::default();
    let (mut producer, mut consumer, producer_id, consumer_id) = pair(&transcript).await?;
    let frames: Vec<String> = frames
        .iter()
        .map(|f| f.replace(PRODUCER, &producer_id))
        .collect();
    for frame in &frames {
        let replies = answers_to(&mut consumer, frame).await?;
        judge_answers(frame, &producer_id, &replies)?;
    }
    let marker = wire::offer(&producer_id, &wire::opaque_sdp("end of sequence"));
    consumer
        .send_json(&marker)
        .await
        .map_err(|e| e.to_string())?;
    let with_sender = |value: Value| {
        let mut value = value;
        value["from"] = json!(consumer_id);
        value
    };
    let mut relayed = Vec::new();
    loop {
        let got = next_json(&mut producer).await?;
        if got == with_sender(marker.clone()) {
            break;
        }
        relayed.push(got);
    }
    let expected: Vec<Value> = frames
        .iter()
        .filter(|f| is_relay_to(f, &producer_id))
        .filter_map(|f| serde_json::from_str(f).ok())
        .map(with_sender)
        .collect();
    if relayed != expected {
        return Err(format!(
            "the producer got {relayed:?}, expected exactly the relays {expected:?}"
        ));
    }
    Ok(())
}

fn document_frame() -> impl Strategy<Value = Value> {
    let types = prop::sample::select(vec![
        "register",
        "webrtc_offer",
        "webrtc_answer",
        "ice_candidate",
        "list_producers",
        "ping",
        "nonsense",
    ]);
    (types, ".{0,12}").prop_map(|(kind, text)| {
        json!({
            "type": kind,
            "to": PRODUCER,
            "sdp": wire::opaque_sdp(&text),
            "candidate": format!("candidate:1 1 udp 2122260223 127.0.0.1 {} typ host", text.len()),
            "sdpMLineIndex": 0,
            "role": "consumer",
            "client_id": text,
        })
    })
}

/// Random text, a frame as the document shows it, or one with a field removed or replaced.
fn any_frame() -> impl Strategy<Value = String> {
    let fields = vec!["type", "to", "sdp", "candidate", "role"];
    support::any_frame(
        document_frame(),
        fields,
        vec![json!({"candidate": "candidate:2 1 udp 1 127.0.0.1 9 typ host"})],
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn any_sequence_of_signaling_frames_is_relayed_or_answered_as_documented(frames in prop::collection::vec(any_frame(), 1..8)) {
        let verdict = fixture().runtime.block_on(judge(frames));
        prop_assert!(verdict.is_ok(), "{}", verdict.unwrap_err());
    }
}
