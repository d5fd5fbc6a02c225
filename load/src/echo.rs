//! The baseline: closed-loop round trips against a bare tokio-tungstenite echo server, and the
//! same loop of heartbeats against the reference server, in one run.

use crate::nodemgr::{connect_node, error_code, heartbeat, is_heartbeat_ack, Scenario};
use crate::stats::Stats;
use crate::ws::Ws;
use futures_util::{SinkExt, StreamExt};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::Message;

/// A WebSocket server that sends every text frame back.
pub async fn start_echo_server() -> std::io::Result<String> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("ws://{}/", listener.local_addr()?);
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            // As the reference server does: small frames leave at once.
            let _ = tcp.set_nodelay(true);
            tokio::spawn(async move {
                let Ok(mut ws) =
                    tokio_tungstenite::accept_async_with_config(tcp, Some(crate::ws::config()))
                        .await
                else {
                    return;
                };
                while let Some(Ok(message)) = ws.next().await {
                    if message.is_text() && ws.send(message).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    Ok(url)
}

/// Sends a heartbeat and waits for the answer, again and again until `until`. Only an answer
/// `counts` is a round trip; any other (an error, say) is recorded by its code.
async fn closed_loop(
    mut ws: Ws,
    node_id: String,
    until: Instant,
    round_trips: Arc<AtomicU64>,
    stats: Arc<Stats>,
    counts: fn(&str) -> bool,
) {
    while Instant::now() < until {
        let sent = Instant::now();
        if ws
            .send(heartbeat(&uuid::Uuid::new_v4().to_string(), &node_id))
            .await
            .is_err()
        {
            return;
        }
        match ws.next().await {
            Some(Ok(Message::Text(text))) if counts(&text) => {
                stats.record_ack(sent.elapsed());
                round_trips.fetch_add(1, Ordering::Relaxed);
            }
            Some(Ok(Message::Text(text))) => stats.record_error(&error_code(&text)),
            _ => return,
        }
    }
}

/// The echo server's answer: any text frame (it is the heartbeat sent).
fn is_echo(_: &str) -> bool {
    true
}

/// Round trips per second over `connections` closed loops; `register` for the reference server.
pub async fn measure(
    url: &str,
    connections: usize,
    duration: Duration,
    register: bool,
) -> (f64, Arc<Stats>) {
    let stats = Stats::new();
    let scenario = Scenario {
        ws_url: url.trim_end_matches('/').to_owned(),
        token: "default-token".to_owned(),
        nodes: connections,
        interval: Duration::ZERO,
        duration: Duration::ZERO,
        connect_concurrency: 64,
        run_id: uuid::Uuid::new_v4().to_string()[..8].to_owned(),
    };
    let mut sockets = Vec::new();
    for i in 0..connections {
        let node_id = format!("rtt-{}-{i}", scenario.run_id);
        let ws = if register {
            connect_node(&scenario, &node_id, &stats).await
        } else {
            crate::ws::connect(url).await.ok().map(|(ws, _)| ws)
        };
        sockets.extend(ws.map(|ws| (node_id, ws)));
    }
    let round_trips = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let until = started + duration;
    let mut loops = tokio::task::JoinSet::new();
    for (node_id, ws) in sockets {
        loops.spawn(closed_loop(
            ws,
            node_id,
            until,
            round_trips.clone(),
            stats.clone(),
            if register { is_heartbeat_ack } else { is_echo },
        ));
    }
    while loops.join_next().await.is_some() {}
    let rate = round_trips.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64();
    (rate, stats)
}

/// Closed-loop round trips per second of `frame` against a bare echo server.
pub async fn echo_rate(
    url: &str,
    connections: usize,
    duration: Duration,
    frame: fn() -> Message,
) -> (f64, Arc<Stats>) {
    let stats = Stats::new();
    let count = Arc::new(AtomicU64::new(0));
    let mut sockets = Vec::new();
    for _ in 0..connections {
        sockets.extend(crate::ws::connect(url).await.ok().map(|(ws, _)| ws));
    }
    let started = Instant::now();
    let until = started + duration;
    let mut loops = tokio::task::JoinSet::new();
    for mut ws in sockets {
        let (stats, count) = (stats.clone(), count.clone());
        loops.spawn(async move {
            while Instant::now() < until {
                let sent = Instant::now();
                if ws.send(frame()).await.is_err() {
                    return;
                }
                let deadline = until + Duration::from_secs(2);
                match tokio::time::timeout_at(deadline.into(), ws.next()).await {
                    Ok(Some(Ok(Message::Text(_)))) => {
                        stats.record_ack(sent.elapsed());
                        count.fetch_add(1, Ordering::Relaxed);
                    }
                    _ => return,
                }
            }
        });
    }
    while loops.join_next().await.is_some() {}
    (
        count.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64(),
        stats,
    )
}
