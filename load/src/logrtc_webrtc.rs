//! logrtc over real WebRTC on loopback: reference producers (the logrtc-producer SDK) write
//! numbered ~200-byte entries at a set rate; consumers (the suite's webrtc-rs peer) register,
//! watch, answer the offer and read the `logs` channel. Measured: the signaling round trips,
//! watch-to-open time, lines per second, line latency (written to read, one clock), and drops
//! (gaps in each channel's numbering, and the producers' own drop counters).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use conformance::client::webrtc::{
    candidate_from_message, candidate_message, ChannelMessage, ChannelReader, Peer,
};
use futures_util::SinkExt;
use logrtc_producer::{Level, LogEntry, Producer, ProducerConfig};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

use crate::logrtc::{await_text, register, STEP_WAIT};
use crate::stats::Stats;
use crate::ws::Ws;

#[derive(Debug, Clone)]
pub struct Scenario {
    pub ws_url: String,
    pub producers: usize,
    /// Consumers in all, spread over the producers round robin.
    pub consumers: usize,
    /// Lines per second per producer.
    pub rate: u64,
    pub line_bytes: usize,
    pub duration: Duration,
}

/// Everything measured.
#[derive(Debug)]
pub struct Measured {
    pub register: Arc<Stats>,
    pub watch: Arc<Stats>,
    /// Watch sent → `logs` channel open at the consumer.
    pub open: Arc<Stats>,
    /// Line latency, written to read.
    pub lines: Arc<Stats>,
    /// Gaps in the numbering seen by consumers.
    pub gaps: AtomicU64,
    pub producer_drops: AtomicU64,
    pub written: AtomicU64,
}

impl Measured {
    pub fn new() -> Arc<Self> {
        Arc::new(Measured {
            register: Stats::new(),
            watch: Stats::new(),
            open: Stats::new(),
            lines: Stats::new(),
            gaps: AtomicU64::new(0),
            producer_drops: AtomicU64::new(0),
            written: AtomicU64::new(0),
        })
    }
}

/// Runs the scenario; returns how many consumers got an open channel.
pub async fn run(scenario: &Scenario, measured: Arc<Measured>) -> usize {
    let base = Instant::now();
    let producers: Vec<Producer> = (0..scenario.producers)
        .map(|i| {
            let mut config = ProducerConfig::new(&scenario.ws_url, format!("load-producer-{i}"));
            config.max_level = Level::Debug;
            Producer::start(config)
        })
        .collect();
    // Consumers may only watch registered producers (L3): wait for every registration.
    let registered_by = Instant::now() + STEP_WAIT;
    while producers
        .iter()
        .any(|p| p.handle().metrics().registrations == 0)
        && Instant::now() < registered_by
    {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let deadline = Arc::new(tokio::sync::OnceCell::new());
    let mut consumers = Vec::new();
    for i in 0..scenario.consumers {
        let producer_id = format!("load-producer-{}", i % scenario.producers.max(1));
        let (url, measured, deadline) = (
            scenario.ws_url.clone(),
            Arc::clone(&measured),
            Arc::clone(&deadline),
        );
        consumers.push(tokio::spawn(async move {
            consume(&url, i, &producer_id, base, &measured, &deadline).await
        }));
    }
    // Open channels, then write for the measured window.
    let open_wait = Instant::now() + STEP_WAIT * 3;
    while (measured.open.acked.load(Ordering::Relaxed) as usize) < scenario.consumers
        && Instant::now() < open_wait
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = deadline.set(Instant::now() + scenario.duration + crate::cmdrelay::GRACE);
    let writers: Vec<_> = producers
        .iter()
        .map(|p| {
            tokio::spawn(write(
                p.handle(),
                scenario.clone(),
                base,
                Arc::clone(&measured),
            ))
        })
        .collect();
    for writer in writers {
        let _ = writer.await;
    }
    let mut opened = 0;
    for consumer in consumers {
        opened += usize::from(consumer.await.unwrap_or(false));
    }
    for producer in producers {
        let metrics = producer.handle().metrics();
        measured.producer_drops.fetch_add(
            metrics.dropped_buffered + metrics.dropped_slow_consumer,
            Ordering::Relaxed,
        );
        producer.shutdown().await;
    }
    opened
}

/// Writes `rate` lines a second for the window, in 1 ms ticks.
async fn write(
    handle: logrtc_producer::ProducerHandle,
    scenario: Scenario,
    base: Instant,
    measured: Arc<Measured>,
) {
    let total = scenario.rate * scenario.duration.as_millis() as u64 / 1000;
    let started = Instant::now();
    let padding = "x".repeat(scenario.line_bytes.saturating_sub(150));
    let mut ticker = tokio::time::interval(Duration::from_millis(1));
    let mut seq = 0;
    while seq < total {
        ticker.tick().await;
        let due = (started.elapsed().as_micros() as u64 * scenario.rate / 1_000_000).min(total);
        while seq < due {
            seq += 1;
            let sent_us = base.elapsed().as_micros() as u64;
            handle.log(
                LogEntry::now(
                    Level::Info,
                    "load::producer",
                    format!("line {seq} {padding}"),
                )
                .with_field("seq", seq)
                .with_field("sent_us", sent_us),
            );
        }
    }
    measured.written.fetch_add(seq, Ordering::Relaxed);
}

/// One consumer: register, watch, answer, read until the deadline. Returns whether its
/// channel opened.
async fn consume(
    url: &str,
    index: usize,
    producer_id: &str,
    base: Instant,
    measured: &Measured,
    deadline: &tokio::sync::OnceCell<Instant>,
) -> bool {
    let id = format!("load-consumer-{index}");
    let Some(mut ws) = register(url, "consumer", &id, &measured.register).await else {
        return false;
    };
    let watched = Instant::now();
    let watch = json!({"type": "watch", "producer_id": producer_id});
    if ws.send(Message::text(watch.to_string())).await.is_err() {
        return false;
    }
    if await_text(&mut ws, |m| m["type"] == "watching")
        .await
        .is_none()
    {
        measured.watch.record_error("no watching");
        return false;
    }
    measured.watch.record_ack(watched.elapsed());
    let Some((peer, mut reader)) = negotiate(&mut ws, producer_id).await else {
        measured.open.record_error("no channel");
        return false;
    };
    measured.open.record_ack(watched.elapsed());
    measured.lines.connected.fetch_add(1, Ordering::Relaxed);
    read_lines(&mut reader, base, measured, deadline).await;
    peer.close().await;
    true
}

/// Answers the producer's offer and trades candidates until the `logs` channel opens.
async fn negotiate(ws: &mut Ws, producer_id: &str) -> Option<(Peer, ChannelReader)> {
    let offer = await_text(ws, |m| m["type"] == "webrtc_offer").await?;
    let (mut peer, answer) = Peer::answer(offer["sdp"].as_str()?).await.ok()?;
    let reply = json!({"type": "webrtc_answer", "to": producer_id, "sdp": answer});
    ws.send(Message::text(reply.to_string())).await.ok()?;
    let until = tokio::time::sleep(STEP_WAIT);
    tokio::pin!(until);
    loop {
        tokio::select! {
            Some(channel) = peer.channels.recv() => return Some((peer, ChannelReader::follow(channel).await)),
            Some(candidate) = peer.local_candidates.recv() => {
                let message = candidate_message(producer_id, &candidate);
                ws.send(Message::text(message.to_string())).await.ok()?;
            }
            Some(Ok(Message::Text(text))) = futures_util::StreamExt::next(ws) => {
                let message: Value = serde_json::from_str(&text).unwrap_or_default();
                if message["type"] == "ice_candidate" {
                    if let Some(candidate) = candidate_from_message(&message) {
                        peer.add_candidate(candidate).await;
                    }
                }
            }
            () = &mut until => return None,
        }
    }
}

async fn read_lines(
    reader: &mut ChannelReader,
    base: Instant,
    measured: &Measured,
    deadline: &tokio::sync::OnceCell<Instant>,
) {
    let mut last_seq = 0;
    loop {
        let left = match deadline.get() {
            Some(end) => end.saturating_duration_since(Instant::now()),
            None => STEP_WAIT,
        };
        if left.is_zero() {
            return;
        }
        let (at, text) = match reader.next_within(left).await {
            Some(ChannelMessage::Text(at, text)) => (at, text),
            Some(ChannelMessage::Closed(_)) => return,
            Some(_) | None => continue,
        };
        let entry: Value = serde_json::from_str(&text).unwrap_or_default();
        let (Some(seq), Some(sent_us)) = (
            entry["fields"]["seq"].as_u64(),
            entry["fields"]["sent_us"].as_u64(),
        ) else {
            continue; // the producer's own notices
        };
        if last_seq > 0 && seq > last_seq + 1 {
            measured
                .gaps
                .fetch_add(seq - last_seq - 1, Ordering::Relaxed);
        }
        last_seq = seq;
        let sent = base + Duration::from_micros(sent_us);
        measured
            .lines
            .record_ack(at.saturating_duration_since(sent));
    }
}
