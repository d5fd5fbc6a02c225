//! logrtc signaling load: producer/consumer pairs registered on one signaling server; each
//! consumer watches its producer, then each producer relays an `ice_candidate` to its consumer
//! on an interval and the consumer measures sender-to-receiver latency. Registration and the
//! watch round trip (watch → consumer_connected) are timed too.

use crate::cmdrelay::{close_all, latency_at, receive_loop, send_loop, Sink, GRACE};
use crate::stats::Stats;
use crate::ws::Ws;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;

/// How long one registration or watch may take before it counts as an error.
pub(crate) const STEP_WAIT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone)]
pub struct Scenario {
    pub ws_url: String,
    pub pairs: usize,
    pub interval: Duration,
    pub duration: Duration,
    pub connect_concurrency: usize,
}

/// What the set-up steps measured, besides the relays.
#[derive(Debug)]
pub struct SetUp {
    pub register: Arc<Stats>,
    pub watch: Arc<Stats>,
}

/// Reads until a text message `wanted` accepts, within [`STEP_WAIT`].
pub(crate) async fn await_text(ws: &mut Ws, wanted: impl Fn(&Value) -> bool) -> Option<Value> {
    let step = async {
        while let Some(Ok(frame)) = ws.next().await {
            if let Message::Text(text) = frame {
                let message: Value = serde_json::from_str(&text).unwrap_or_default();
                if wanted(&message) {
                    return Some(message);
                }
            }
        }
        None
    };
    tokio::time::timeout(STEP_WAIT, step).await.ok().flatten()
}

/// Connects and registers; the time to `registered` is recorded.
pub(crate) async fn register(url: &str, role: &str, id: &str, stats: &Stats) -> Option<Ws> {
    let started = Instant::now();
    let Ok((mut ws, _)) = crate::ws::connect(url).await else {
        stats.record_error("connect");
        return None;
    };
    let message = json!({"type": "register", "role": role, "client_id": id,
        "metadata": {"system_name": "load", "version": "1.0.0"}});
    ws.send(Message::text(message.to_string())).await.ok()?;
    let answer = await_text(&mut ws, |m| m["type"] != "producer_connected").await;
    match answer {
        Some(m) if m["type"] == "registered" => {
            stats.record_ack(started.elapsed());
            stats.connected.fetch_add(1, Ordering::Relaxed);
            Some(ws)
        }
        Some(m) => {
            stats.record_error(m["code"].as_str().unwrap_or("register refused"));
            None
        }
        None => {
            stats.record_error("no registered answer");
            None
        }
    }
}

/// One pair: the producer's sink, once its consumer watches it and reads.
async fn join_pair(
    scenario: &Scenario,
    index: usize,
    setup: &SetUp,
    relays: &Arc<Stats>,
    until: &Arc<tokio::sync::OnceCell<Instant>>,
    base: Instant,
) -> Option<Sink> {
    let url = &scenario.ws_url;
    let producer_id = format!("load-producer-{index}");
    let consumer_id = format!("load-consumer-{index}");
    let mut producer = register(url, "producer", &producer_id, &setup.register).await?;
    let mut consumer = register(url, "consumer", &consumer_id, &setup.register).await?;
    let watched = Instant::now();
    let watch = json!({"type": "watch", "producer_id": producer_id});
    consumer.send(Message::text(watch.to_string())).await.ok()?;
    let told = await_text(&mut producer, |m| m["consumer_id"] == consumer_id.as_str()).await;
    if told.is_none() {
        setup.watch.record_error("no consumer_connected");
        return None;
    }
    setup.watch.record_ack(watched.elapsed());
    let latency = move |text: &str| latency_at(text, base, "/sent_ns");
    tokio::spawn(receive_loop(
        consumer,
        until.clone(),
        relays.clone(),
        latency,
    ));
    let (sink, mut stream) = producer.split();
    tokio::spawn(async move { while let Some(Ok(_)) = stream.next().await {} });
    Some(sink)
}

/// Registers every pair, then relays for the run's duration. Returns the pairs that joined.
pub async fn run(scenario: &Scenario, setup: Arc<SetUp>, relays: Arc<Stats>) -> usize {
    let base = Instant::now();
    let until = Arc::new(tokio::sync::OnceCell::new());
    let gate = Arc::new(tokio::sync::Semaphore::new(
        scenario.connect_concurrency.max(1),
    ));
    let mut joins = tokio::task::JoinSet::new();
    for index in 0..scenario.pairs {
        let (gate, scenario, setup, relays, until) = (
            gate.clone(),
            scenario.clone(),
            setup.clone(),
            relays.clone(),
            until.clone(),
        );
        joins.spawn(async move {
            let _permit = gate.acquire().await;
            let sink = join_pair(&scenario, index, &setup, &relays, &until, base).await;
            sink.map(|sink| (index, sink))
        });
    }
    let mut sinks = Vec::with_capacity(scenario.pairs);
    while let Some(joined) = joins.join_next().await {
        sinks.extend(joined.ok().flatten());
    }
    let joined = sinks.len();
    // The progress line counts registered clients: both sides of every pair.
    relays.connected.store(2 * joined as u64, Ordering::Relaxed);
    let end = Instant::now() + scenario.duration;
    let _ = until.set(end + GRACE);
    let progress = tokio::spawn(relays.clone().show_progress("logrtc relays", end));
    let mut senders = tokio::task::JoinSet::new();
    for (index, sink) in sinks {
        let offset = scenario.interval.mul_f64((index % 1000) as f64 / 1000.0);
        let to = format!("load-consumer-{index}");
        let frame = move |sequence| candidate_at(base, &to, sequence);
        senders.spawn(send_loop(
            sink,
            scenario.interval,
            offset,
            end,
            relays.clone(),
            frame,
        ));
    }
    let sinks = senders.join_all().await;
    tokio::time::sleep(GRACE).await;
    close_all(sinks).await;
    progress.abort();
    joined
}

/// An `ice_candidate` whose extra `sent_ns` field (relayed as sent, L4) carries the send time.
fn candidate_at(base: Instant, to: &str, sequence: u64) -> Message {
    let sent = u64::try_from(base.elapsed().as_nanos()).unwrap_or(u64::MAX);
    let candidate = format!("candidate:{sequence} 1 udp 2130706431 127.0.0.1 50000 typ host");
    let message = json!({"type": "ice_candidate", "to": to, "candidate": candidate,
        "sdpMLineIndex": 0, "sent_ns": sent});
    Message::text(message.to_string())
}
