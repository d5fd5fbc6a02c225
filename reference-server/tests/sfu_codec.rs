//! The sfu protoo codec against the document's examples (fixtures/sfu) and malformed frames,
//! plus property tests: no input panics the decoder or the rooms, and no stream, peer or room
//! outlives its connections.

use proptest::prelude::*;
use reference_server::faults::Faults;
use reference_server::protocol::sfu::messages::{self, METHODS};
use reference_server::protocol::sfu::{
    decode, Effect, ErrorCode, MediaRequest, Request, Rooms, ServerIds,
};
use serde_json::{json, Value};

mod support;

use support::fixtures;

fn wire(name: &str) -> String {
    fixtures::wire("sfu", name)
}

fn value(name: &str) -> Value {
    serde_json::from_str(&wire(name)).expect("a JSON fixture")
}

#[test]
fn every_request_in_the_document_decodes_with_its_id() {
    for method in METHODS {
        let name = format!("{method}_request");
        let incoming = decode(&wire(&name)).unwrap_or_else(|e| panic!("{name}: {e:?}"));
        assert_eq!(json!(incoming.id), value(&name)["id"], "{name}");
    }
}

#[test]
fn the_documents_publish_request_keeps_its_minfo() {
    let incoming = decode(&wire("publish_request")).expect("decodes");
    let Request::Publish {
        minfo: Some(minfo),
        offer,
        ..
    } = incoming.request
    else {
        panic!("not a publish with minfo: {incoming:?}");
    };
    assert_eq!(minfo.to_json(), value("publish_request")["data"]["minfo"]);
    assert_eq!(offer, "...");
}

#[test]
fn the_server_writes_the_documents_response_and_notification_shapes() {
    assert_eq!(messages::ok(21244546, json!({})), value("leave_ok"));
    let error = messages::error(&json!(124495), ErrorCode::NotJoined, "err_reason");
    let mut expected = value("join_error");
    expected["errorCode"] = json!("not_joined");
    assert_eq!(error, expected);
    let leave = value("peer_leave");
    assert_eq!(
        messages::notification("peer-leave", leave["data"].clone()),
        leave
    );
}

#[test]
fn every_malformed_frame_gets_its_documented_code() {
    let frames = fixtures::malformed("sfu");
    for (name, text) in &frames {
        let refusal = decode(text).expect_err(name);
        let want = match name.as_str() {
            "truncated.txt" | "not-json.txt" | "array.txt" => ErrorCode::BadJson,
            "string-id.txt"
            | "missing-id.txt"
            | "response-from-client.txt"
            | "data-not-object.txt"
            | "missing-method.txt" => ErrorCode::BadRequest,
            "unknown-method.txt" => ErrorCode::UnknownMethod,
            "publish-with-answer.txt" => ErrorCode::BadSdp,
            _ => ErrorCode::InvalidParams,
        };
        assert_eq!(refusal.code, want, "{name}");
    }
    assert!(
        frames.len() >= 17,
        "only {} malformed fixtures",
        frames.len()
    );
}

/// Plays the media plane: answers every publish and subscribe at once.
fn answer_media(rooms: &mut Rooms, effects: Vec<Effect>) {
    for effect in effects {
        let follow_up = match effect {
            Effect::Media(MediaRequest::Publish { id, mid, .. }) => {
                rooms.published(id, &mid, Ok("v=0".to_owned()))
            }
            Effect::Media(MediaRequest::Subscribe { id, sid, .. }) => {
                rooms.subscribed(id, &sid, Ok("v=0".to_owned()))
            }
            _ => continue,
        };
        answer_media(rooms, follow_up);
    }
}

proptest! {
    #[test]
    fn arbitrary_text_never_panics_the_decoder(text in ".{0,300}") {
        let _ = decode(&text);
    }

    #[test]
    fn arbitrary_requests_from_many_connections_leave_nothing_behind(
        frames in prop::collection::vec((0u64..4, 0usize..9, "[a-b]{1}", 0u64..6), 0..60)
    ) {
        let mut rooms = Rooms::new(ServerIds::default(), Faults::none());
        for conn in 0..4 {
            rooms.connect(conn, &format!("peer{conn}"));
        }
        for (conn, shape, rid, n) in frames {
            let offer = json!({"type": "offer", "sdp": "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n"});
            let mid = format!("peer{}#{n:06X}", n % 4);
            let data = match shape {
                0 => json!({"rid": rid}),
                1 => json!({"rid": rid, "jsep": offer}),
                2 => json!({"rid": rid, "mid": mid}),
                3 => json!({"rid": rid, "mid": mid, "jsep": offer}),
                4 => json!({"rid": rid, "sid": mid}),
                5 => json!({"rid": rid, "data": n}),
                _ => {
                    rooms.disconnect(conn);
                    rooms.connect(conn, &format!("peer{conn}"));
                    continue;
                }
            };
            let method = METHODS[(shape + n as usize) % METHODS.len()];
            let text = json!({"request": true, "id": n, "method": method, "data": data}).to_string();
            if let Ok(incoming) = decode(&text) {
                let effects = rooms.handle(conn, incoming);
                answer_media(&mut rooms, effects);
            }
        }
        for conn in 0..4 {
            rooms.disconnect(conn);
        }
        prop_assert_eq!(rooms.peer_count(), 0);
        prop_assert_eq!(rooms.stream_count(), 0);
        prop_assert_eq!(rooms.room_count(), 0);
    }
}
