//! The logrtc client probes: the reference producer passes the producer probe, and producers
//! and consumers that break the document's rules fail the cases about them.

use std::time::Duration;

use conformance::client::webrtc::{candidate_from_message, candidate_message, wait_open, Peer};
use conformance::probes::logrtc::{run_probe_on, ProbeConfig, Role};
use conformance::RunOptions;
use futures_util::{SinkExt, StreamExt};
use logrtc_producer::{Level, LogEntry, Producer, ProducerConfig};
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;

const WAIT: Duration = Duration::from_secs(10);

async fn listen() -> (TcpListener, String) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("ws://{}/signaling", listener.local_addr().expect("addr"));
    (listener, url)
}

fn config() -> ProbeConfig {
    ProbeConfig {
        listen: String::new(),
        command: Vec::new(),
        wait: WAIT,
        options: RunOptions::default(),
    }
}

/// The reference producer, logging numbered entries every 5 ms.
fn reference_producer(url: String) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut producer_config = ProducerConfig::new(url, "probe-subject");
        producer_config.max_level = Level::Debug;
        let producer = Producer::start(producer_config);
        let handle = producer.handle();
        for seq in 1u64.. {
            handle.log(
                LogEntry::now(Level::Info, "probe::subject", format!("entry {seq}"))
                    .with_field("seq", seq),
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reference_producer_passes_every_producer_case() {
    let (listener, url) = listen().await;
    let producer = reference_producer(url);
    let report = run_probe_on(listener, &config(), Role::Producer)
        .await
        .expect("probe");
    producer.abort();
    let not_passing = report.not_passing();
    assert!(not_passing.is_empty(), "{not_passing:#?}");
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn send(ws: &mut Socket, message: Value) {
    let _ = ws.send(Message::text(message.to_string())).await;
}

/// Connects to the probe and registers with `role` and `client_id`.
async fn registered(url: &str, role: &str, client_id: &str) -> Socket {
    let (mut ws, _) = tokio_tungstenite::connect_async(url)
        .await
        .expect("connect");
    send(
        &mut ws,
        json!({"type": "register", "role": role, "client_id": client_id}),
    )
    .await;
    ws
}

/// A producer that gets the channel wrong: labelled `log`, unordered, with entries that use
/// the level TRACE and run backwards.
fn careless_producer(url: String) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut ws = registered(&url, "producer", "careless").await;
        let mut peer = None;
        while let Some(Ok(Message::Text(text))) = ws.next().await {
            let message: Value = serde_json::from_str(&text).expect("json");
            match message["type"].as_str() {
                Some("consumer_connected") => {
                    let consumer = message["consumer_id"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned();
                    let (new_peer, channel, sdp) =
                        Peer::offer_channel("log", false).await.expect("offer");
                    send(
                        &mut ws,
                        json!({"type": "webrtc_offer", "to": consumer, "sdp": sdp}),
                    )
                    .await;
                    tokio::spawn(async move {
                        let Some(reader) = wait_open(channel, WAIT).await else {
                            return;
                        };
                        for seq in (1..=200u64).rev() {
                            let entry = json!({"timestamp": "2024-01-01T12:00:00Z", "level": "TRACE", "target": "t", "message": "m", "fields": {"seq": seq}});
                            let _ = reader.channel.send_text(&entry.to_string()).await;
                        }
                    });
                    peer = Some((consumer, new_peer));
                }
                Some("webrtc_answer") => {
                    if let Some((_, peer)) = peer.as_mut() {
                        peer.accept_answer(message["sdp"].as_str().unwrap_or_default())
                            .await
                            .expect("answer");
                    }
                }
                Some("ice_candidate") => {
                    if let (Some((_, peer)), Some(candidate)) =
                        (peer.as_mut(), candidate_from_message(&message))
                    {
                        peer.add_candidate(candidate).await;
                    }
                }
                _ => {}
            }
            if let Some((consumer, peer)) = peer.as_mut() {
                while let Ok(candidate) = peer.local_candidates.try_recv() {
                    send(&mut ws, candidate_message(consumer, &candidate)).await;
                }
            }
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_producer_with_the_wrong_channel_and_entries_fails_those_cases() {
    let (listener, url) = listen().await;
    let producer = careless_producer(url);
    let mut config = config();
    config.wait = Duration::from_secs(4);
    let report = run_probe_on(listener, &config, Role::Producer)
        .await
        .expect("probe");
    producer.abort();
    let failing = report.failing_ids();
    for id in [
        "logrtc-producer/channel/named-logs",
        "logrtc-producer/channel/ordered",
        "logrtc-producer/entries/standard-format",
        "logrtc-producer/entries/in-order",
        "logrtc-producer/reconnect/after-server-loss",
    ] {
        assert!(failing.contains(&id), "{id} should fail: {failing:?}");
    }
    for id in [
        "logrtc-producer/register/first-message",
        "logrtc-producer/offer/answers-consumer-connected",
    ] {
        assert!(!failing.contains(&id), "{id} should pass: {failing:?}");
    }
}

/// A consumer that registers and watches, then never answers the offer.
fn mute_consumer(url: String) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut ws = registered(&url, "consumer", "mute").await;
        send(
            &mut ws,
            json!({"type": "watch", "producer_id": "conformance-producer"}),
        )
        .await;
        while let Some(Ok(_)) = ws.next().await {}
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_that_never_answers_fails_the_answer_and_channel_cases() {
    let (listener, url) = listen().await;
    let consumer = mute_consumer(url);
    let mut config = config();
    config.wait = Duration::from_secs(3);
    let report = run_probe_on(listener, &config, Role::Consumer)
        .await
        .expect("probe");
    consumer.abort();
    let failing = report.failing_ids();
    assert!(
        failing.contains(&"logrtc-consumer/answer/answers-offer"),
        "{failing:?}"
    );
    assert!(
        failing.contains(&"logrtc-consumer/channel/opens"),
        "{failing:?}"
    );
    assert!(
        !failing.contains(&"logrtc-consumer/register/as-consumer"),
        "{failing:?}"
    );
    assert!(
        !failing.contains(&"logrtc-consumer/watch/chooses-listed-producer"),
        "{failing:?}"
    );
}
