//! The load generator's counting subscribers (`load sfu --light`): once connected, their
//! sockets are read by the counting pool, which counts the RTP the SFU forwards without
//! decrypting it.

#![cfg(target_os = "linux")]

use conformance::client::counting;
use conformance::client::media::{MediaPeer, Tracks};
use conformance::client::{Transcript, WsClient};
use conformance::wire::sfu as wire;
use reference_server::server::{start_sfu, SfuSetup};
use serde_json::Value;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(10);
/// Three seconds of a publisher's Opus.
const DATAGRAMS: u64 = 150;

async fn request(ws: &mut WsClient, id: u64, method: &str, data: Value) -> Value {
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_counting_subscriber_counts_forwarded_rtp_in_the_pool_without_decrypting_it() {
    let setup = SfuSetup {
        media_bind: "127.0.0.1:0".parse().expect("an address"),
        ..SfuSetup::default()
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let sfu = start_sfu(listener, setup).await.expect("the SFU starts");
    let transcript = Transcript::default();
    let connect = |peer: &str| format!("{}?peer={peer}", sfu.ws_url());
    let mut alice = WsClient::connect("alice", &connect("alice"), &transcript, WAIT)
        .await
        .expect("connect");
    request(&mut alice, 1, "join", wire::join("counting")).await;
    let publisher = MediaPeer::publisher(Tracks::AUDIO)
        .await
        .expect("a publisher");
    let published = request(
        &mut alice,
        2,
        "publish",
        wire::publish("counting", publisher.offer(), true, false),
    )
    .await;
    let sdp = published["jsep"]["sdp"].as_str().expect("an answer");
    publisher
        .accept_answer(sdp)
        .await
        .expect("the answer applies");
    let mid = published["mid"].as_str().expect("a mid");
    let sfuid = published["sfuid"].as_str().unwrap_or("sfu_1");

    let mut bob = WsClient::connect("bob", &connect("bob"), &transcript, WAIT)
        .await
        .expect("connect");
    request(&mut bob, 1, "join", wire::join("counting")).await;
    let counted_before = counting::datagrams_counted();
    let subscriber = MediaPeer::counting_subscriber(Tracks::AUDIO_VIDEO)
        .await
        .expect("a subscriber");
    let subscribed = request(
        &mut bob,
        2,
        "subscribe",
        wire::subscribe("counting", mid, subscriber.offer(), sfuid),
    )
    .await;
    let sdp = subscribed["jsep"]["sdp"].as_str().expect("an answer");
    subscriber
        .accept_answer(sdp)
        .await
        .expect("the answer applies");

    let report = subscriber
        .wait_for(WAIT, |r| r.rtp_datagrams >= DATAGRAMS)
        .await
        .unwrap_or_else(|r| panic!("{} RTP datagrams counted", r.rtp_datagrams));
    assert_eq!(report.audio_received, 0, "a counting subscriber decrypted");
    let by_pool = counting::datagrams_counted() - counted_before;
    // The task counts what arrives before its socket is handed over: a few datagrams at most.
    assert!(
        by_pool + 10 >= report.rtp_datagrams,
        "the pool counted {by_pool} of {} datagrams",
        report.rtp_datagrams
    );
    let sent = publisher.report().rtp_datagrams_sent;
    assert!(
        report.rtp_datagrams <= sent,
        "{} datagrams counted, {sent} sent",
        report.rtp_datagrams
    );
    sfu.stop().await;
}
