//! Shared by the tests that drive an in-process SFU over raw protoo: the SFU with its media
//! socket on loopback, a joined client, a request, an Opus publisher and a subscription.

use conformance::client::media::{MediaPeer, Tracks};
use conformance::client::{Transcript, WsClient};
use conformance::wire::sfu as wire;
use reference_server::server::{start_sfu, RunningSfu, SfuSetup};
use serde_json::Value;
use std::time::Duration;

pub const WAIT: Duration = Duration::from_secs(10);

/// The SFU of `setup`, its media socket on any loopback port.
pub async fn sfu(setup: SfuSetup) -> RunningSfu {
    let setup = SfuSetup {
        media_bind: "127.0.0.1:0".parse().expect("an address"),
        ..setup
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    start_sfu(listener, setup).await.expect("the SFU starts")
}

/// A client `peer` that has joined room `rid` (request id 1).
pub async fn joined(sfu: &RunningSfu, peer: &str, rid: &str, transcript: &Transcript) -> WsClient {
    let url = format!("{}?peer={peer}", sfu.ws_url());
    let mut ws = WsClient::connect(peer, &url, transcript, WAIT)
        .await
        .expect("connect");
    request(&mut ws, 1, "join", wire::join(rid)).await;
    ws
}

/// Sends a request and returns its response's `data`; the response must be `ok`.
pub async fn request(ws: &mut WsClient, id: u64, method: &str, data: Value) -> Value {
    ws.send_json(&wire::request(id, method, data))
        .await
        .expect("send");
    loop {
        let message = ws.expect_message("a response").await.expect("a message");
        if wire::is_response_to(&message, id) {
            assert_eq!(message["ok"], true, "{method}: {message}");
            return message["data"].clone();
        }
    }
}

/// Publishes an Opus track in `rid` (request id 2) and connects it; the publish response's
/// `data` comes back with the publisher.
#[allow(dead_code)] // not every test that includes this module publishes audio alone
pub async fn publish_opus(ws: &mut WsClient, rid: &str) -> (MediaPeer, Value) {
    publish(ws, rid, Tracks::AUDIO).await
}

/// Publishes `tracks` in `rid` (request id 2) and connects them; the publish response's
/// `data` comes back with the publisher.
pub async fn publish(ws: &mut WsClient, rid: &str, tracks: Tracks) -> (MediaPeer, Value) {
    let publisher = MediaPeer::publisher(tracks).await.expect("a publisher");
    let data = wire::publish(rid, publisher.offer(), tracks.audio, tracks.video);
    let answer = negotiate(ws, 2, "publish", data, &publisher).await;
    (publisher, answer)
}

/// Sends `peer`'s offer in a `publish` or `subscribe` request and applies the answer; the
/// response's `data`.
pub async fn negotiate(
    ws: &mut WsClient,
    id: u64,
    method: &str,
    data: Value,
    peer: &MediaPeer,
) -> Value {
    let answer = request(ws, id, method, data).await;
    let sdp = answer["jsep"]["sdp"].as_str().expect("an answer");
    peer.accept_answer(sdp).await.expect("the answer applies");
    answer
}

/// Subscribes `subscriber` (request `id`, in room `rid`) to the stream a `publish` response's
/// `data` announced; the response's `data`.
#[allow(dead_code)] // not every test that includes this module subscribes
pub async fn subscribe(
    ws: &mut WsClient,
    id: u64,
    rid: &str,
    published: &Value,
    subscriber: &MediaPeer,
) -> Value {
    let mid = published["mid"].as_str().expect("a mid");
    let sfuid = published["sfuid"].as_str().unwrap_or("sfu_1");
    let data = wire::subscribe(rid, mid, subscriber.offer(), sfuid);
    negotiate(ws, id, "subscribe", data, subscriber).await
}
