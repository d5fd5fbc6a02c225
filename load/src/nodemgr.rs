//! Simulated nodes: connect, register, heartbeat on an interval, measure ack latency.

use crate::stats::Stats;
use crate::ws::{NoText, Ws};
use futures_util::SinkExt;
use reference_server::protocol::nodemgr::Envelope;
use serde_json::{json, Value};
use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;
use tokio_tungstenite::tungstenite::Message;

#[derive(Debug, Clone)]
pub struct Scenario {
    pub ws_url: String,
    pub token: String,
    pub nodes: usize,
    pub interval: Duration,
    /// Heartbeat for this long once every node is connected. Zero: connect and stay idle.
    pub duration: Duration,
    pub connect_concurrency: usize,
    pub run_id: String,
}

/// A node's frame, spelled by the reference's own envelope: its keys in the document's order
/// (a `json!` map sorts them, which put `data` first).
pub fn frame(kind: &'static str, id: &str, data: Value) -> Message {
    Message::text(Envelope::new(kind, id, chrono::Utc::now(), data).encode())
}

pub fn heartbeat(id: &str, node_id: &str) -> Message {
    let metrics = json!({ "cpu_usage": 12.5, "memory_usage": 40.25, "disk_usage": 55.0, "load_average": 0.75 });
    frame(
        "heartbeat",
        id,
        json!({ "node_id": node_id, "status": "online", "metrics": metrics }),
    )
}

/// Connects, reads the welcome and registers, within [`crate::ws::CONNECT_TIMEOUT`] for the
/// handshake and as long again for the answers. Errors are counted, not raised.
pub async fn connect_node(scenario: &Scenario, node_id: &str, stats: &Stats) -> Option<Ws> {
    let registering = connect_and_register(scenario, node_id, stats);
    let limit = crate::ws::CONNECT_TIMEOUT * 2;
    tokio::time::timeout(limit, registering)
        .await
        .unwrap_or_else(|_| {
            stats.record_error("no welcome or register_response in time");
            None
        })
}

async fn connect_and_register(scenario: &Scenario, node_id: &str, stats: &Stats) -> Option<Ws> {
    let url = format!(
        "{}?token={}&node_id={node_id}",
        scenario.ws_url, scenario.token
    );
    let Ok((mut ws, _)) = crate::ws::connect(&url).await else {
        stats.record_error("connect");
        return None;
    };
    match crate::ws::next_text(&mut ws).await {
        Ok(text) if error_code(&text) == "welcome" => {}
        Ok(text) => {
            stats.record_error(&format!("no welcome: {}", error_code(&text)));
            return None;
        }
        Err(_) => {
            stats.record_error("closed before the welcome");
            return None;
        }
    }
    let register = frame(
        "node_register",
        node_id,
        json!({ "node_id": node_id, "hostname": "load" }),
    );
    if ws.send(register).await.is_err() {
        stats.record_error("closed before node_register");
        return None;
    }
    match crate::ws::next_text(&mut ws).await {
        Ok(text) if text.contains("\"success\":true") => Some(ws),
        other => {
            stats.record_error(&register_failure(other));
            None
        }
    }
}

/// A short label for what came instead of a successful `register_response`.
fn register_failure(answer: Result<String, NoText>) -> String {
    match answer {
        Ok(text) => format!("register refused: {}", error_code(&text)),
        Err(NoText::Closed(Some(code))) => format!("register: closed with {code}"),
        Err(NoText::Binary) => format!("register: {BINARY_FRAME}"),
        Err(NoText::Closed(None) | NoText::Failed) => "closed before register_response".to_owned(),
    }
}

/// One node: heartbeats until `until`, acks matched in order (the core answers in order).
async fn run_node(
    mut ws: Ws,
    node_id: String,
    interval: Duration,
    until: Instant,
    stats: Arc<Stats>,
) -> (String, u64) {
    let phase = Duration::from_micros(u64::from(uuid::Uuid::new_v4().as_fields().1) * 15);
    let mut ticker =
        tokio::time::interval_at(tokio::time::Instant::now() + phase.min(interval), interval);
    let mut in_flight: VecDeque<Instant> = VecDeque::new();
    let deadline = tokio::time::Instant::from_std(until);
    let mut acked = 0;
    loop {
        tokio::select! {
            _ = ticker.tick() => {
                let id = uuid::Uuid::new_v4().to_string();
                if ws.send(heartbeat(&id, &node_id)).await.is_err() { stats.record_error("send"); return (node_id, acked); }
                in_flight.push_back(Instant::now());
                stats.sent.fetch_add(1, Ordering::Relaxed);
            }
            frame = crate::ws::next_text(&mut ws) => match frame {
                Ok(text) => acked += u64::from(on_reply(&text, &mut in_flight, &stats)),
                Err(NoText::Binary) => stats.record_error(BINARY_FRAME),
                Err(_) => { stats.record_error("closed"); return (node_id, acked); }
            },
            () = tokio::time::sleep_until(deadline) => break,
        }
    }
    acked += drain(&mut ws, &mut in_flight, &stats).await;
    (node_id, acked)
}

/// The error a binary frame from the server counts as: nodemgr speaks JSON text frames.
pub const BINARY_FRAME: &str = "a binary frame";

/// Matches a reply to the oldest heartbeat in flight; true for an ack.
fn on_reply(text: &str, in_flight: &mut VecDeque<Instant>, stats: &Stats) -> bool {
    let Some(sent) = in_flight.pop_front() else {
        return false;
    };
    if is_heartbeat_ack(text) {
        stats.record_ack(sent.elapsed());
        return true;
    }
    stats.record_error(&error_code(text));
    false
}

/// The answer that counts for a heartbeat: the ack, sent once the heartbeat is stored.
pub fn is_heartbeat_ack(text: &str) -> bool {
    text.contains("\"heartbeat_ack\"")
}

/// The `error_code` of a nodemgr error frame, else the frame's type, else "unexpected reply".
pub fn error_code(text: &str) -> String {
    let value: Value = serde_json::from_str(text).unwrap_or_default();
    value["data"]["error_code"]
        .as_str()
        .or(value["type"].as_str())
        .unwrap_or("unexpected reply")
        .to_owned()
}

/// Waits (up to 5 s) for the acks still in flight, so that they are counted.
async fn drain(ws: &mut Ws, in_flight: &mut VecDeque<Instant>, stats: &Stats) -> u64 {
    let until = tokio::time::Instant::now() + Duration::from_secs(5);
    let mut acked = 0;
    while !in_flight.is_empty() {
        match tokio::time::timeout_at(until, crate::ws::next_text(ws)).await {
            Ok(Ok(text)) => acked += u64::from(on_reply(&text, in_flight, stats)),
            Ok(Err(NoText::Binary)) => stats.record_error(BINARY_FRAME),
            _ => {
                for _ in in_flight.drain(..) {
                    stats.record_error("unanswered");
                }
            }
        }
    }
    let _ = ws.close(None).await;
    acked
}

/// Connects every node (bounded concurrency), then heartbeats for the duration.
/// Returns each node's id and acked count, and the open sockets when idle (duration zero).
pub async fn run(scenario: &Scenario, stats: Arc<Stats>) -> (Vec<(String, u64)>, Vec<Ws>) {
    let gate = Arc::new(Semaphore::new(scenario.connect_concurrency.max(1)));
    let mut connecting = tokio::task::JoinSet::new();
    for i in 0..scenario.nodes {
        let (gate, stats, scenario) = (gate.clone(), stats.clone(), scenario.clone());
        connecting.spawn(async move {
            let _permit = gate.acquire_owned().await;
            let node_id = format!("load-{}-{i}", scenario.run_id);
            let ws = connect_node(&scenario, &node_id, &stats).await?;
            stats.connected.fetch_add(1, Ordering::Relaxed);
            Some((node_id, ws))
        });
    }
    let mut nodes = Vec::new();
    while let Some(joined) = connecting.join_next().await {
        if let Ok(Some(node)) = joined {
            nodes.push(node);
        }
    }
    if scenario.duration.is_zero() {
        let (ids, sockets): (Vec<String>, Vec<Ws>) = nodes.into_iter().unzip();
        return (ids.into_iter().map(|id| (id, 0)).collect(), sockets);
    }
    let until = Instant::now() + scenario.duration;
    tokio::spawn(stats.clone().show_progress("nodemgr acks", until));
    let mut running = tokio::task::JoinSet::new();
    for (node_id, ws) in nodes {
        running.spawn(run_node(
            ws,
            node_id,
            scenario.interval,
            until,
            stats.clone(),
        ));
    }
    let mut acked = Vec::new();
    while let Some(joined) = running.join_next().await {
        acked.extend(joined.ok());
    }
    (acked, Vec::new())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_binary_frame_among_the_acks_is_counted_not_dropped() {
        let ack = r#"{"type":"heartbeat_ack","id":"h","timestamp":"2025-01-21T10:00:00Z","data":{"received":true,"node_id":"n"}}"#;
        let url =
            crate::ws::sending(vec![Message::Binary(vec![1].into()), Message::text(ack)]).await;
        let (mut ws, _) = crate::ws::connect(url).await.expect("connect");
        let stats = Stats::new();
        let mut in_flight = VecDeque::from([Instant::now()]);
        assert_eq!(drain(&mut ws, &mut in_flight, &stats).await, 1);
        assert_eq!(stats.errors().get(BINARY_FRAME), Some(&1));
    }

    #[test]
    fn a_frame_spells_its_keys_in_the_documents_order() {
        let Message::Text(text) = heartbeat("h-1", "node-1") else {
            panic!("a heartbeat is a text frame");
        };
        let at = |key: &str| text.find(&format!("\"{key}\":")).expect(key);
        assert!(at("type") < at("id") && at("id") < at("timestamp"));
        assert!(at("timestamp") < at("data"), "{text}");
    }

    #[test]
    fn a_failed_register_is_labelled_by_what_came_instead() {
        let refused = r#"{"type":"error","id":"r","timestamp":"2025-01-21T10:00:00Z","data":{"error_code":"NODE_NOT_FOUND","message":"m"}}"#;
        assert_eq!(
            register_failure(Ok(refused.to_owned())),
            "register refused: NODE_NOT_FOUND"
        );
        assert_eq!(
            register_failure(Err(NoText::Closed(Some(4001)))),
            "register: closed with 4001"
        );
        assert_eq!(
            register_failure(Err(NoText::Closed(None))),
            "closed before register_response"
        );
    }
}
