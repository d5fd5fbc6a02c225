//! The baseline: closed-loop round trips against a bare tokio-tungstenite echo server, and the
//! same loop of heartbeats against the reference server, in one run.

use crate::nodemgr::{
    connect_node, error_code, heartbeat, is_heartbeat_ack, Scenario, BINARY_FRAME,
};
use crate::stats::{planned_rate, Stats};
use crate::ws::{NoText, Ws};
use futures_util::{SinkExt, StreamExt};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::Message;

/// A WebSocket server on `addr` that sends every text frame back; its URL.
pub async fn start_echo_server(addr: std::net::SocketAddr) -> std::io::Result<String> {
    let listener = TcpListener::bind(addr).await?;
    let url = format!("ws://{}/", listener.local_addr()?);
    tokio::spawn(async move {
        loop {
            match listener.accept().await {
                Ok((tcp, _)) => {
                    tokio::spawn(echo(tcp));
                }
                // A failed accept (a connection reset before it was taken, too many open
                // files) is passing: the server goes on listening instead of ending unseen.
                Err(_) => tokio::time::sleep(ACCEPT_RETRY).await,
            }
        }
    });
    Ok(url)
}

/// The pause after an accept fails, so that a lasting failure does not spin.
const ACCEPT_RETRY: Duration = Duration::from_millis(10);

/// One echo connection: every text frame goes back.
async fn echo(tcp: tokio::net::TcpStream) {
    // As the reference server does: small frames leave at once.
    let _ = tcp.set_nodelay(true);
    let Ok(mut ws) =
        tokio_tungstenite::accept_async_with_config(tcp, Some(crate::ws::config())).await
    else {
        return;
    };
    while let Some(Ok(message)) = ws.next().await {
        if message.is_text() && ws.send(message).await.is_err() {
            return;
        }
    }
}

/// How long past the end of a run a loop still waits for its last answer.
const LAST_ANSWER_GRACE: Duration = Duration::from_secs(2);

/// Sends `frame()` and waits for the answer, again and again until `until`. Only an answer
/// that `counts` is a round trip; any other (an error, say) is recorded by its code, and so is
/// a loop that ends early: the server closed, or did not answer in time.
async fn closed_loop(
    mut ws: Ws,
    frame: impl Fn() -> Message,
    until: Instant,
    round_trips: Arc<AtomicU64>,
    stats: Arc<Stats>,
    counts: fn(&str) -> bool,
) {
    while Instant::now() < until {
        let sent = Instant::now();
        if ws.send(frame()).await.is_err() {
            return stats.record_error("closed before the end");
        }
        match next_text(&mut ws, until + LAST_ANSWER_GRACE).await {
            Ok(text) if counts(&text) => {
                stats.record_ack(sent.elapsed());
                round_trips.fetch_add(1, Ordering::Relaxed);
            }
            Ok(text) => stats.record_error(&error_code(&text)),
            Err(why) => return stats.record_error(why),
        }
    }
}

/// The next text frame, past pings and pongs; why there is none by `deadline`.
async fn next_text(ws: &mut Ws, deadline: Instant) -> Result<String, &'static str> {
    match tokio::time::timeout_at(deadline.into(), crate::ws::next_text(ws)).await {
        Ok(Ok(text)) => Ok(text),
        Ok(Err(NoText::Binary)) => Err(BINARY_FRAME),
        Ok(Err(_)) => Err("closed before the end"),
        Err(_) => Err("no answer in time"),
    }
}

/// The echo server's answer: any text frame (it is the heartbeat sent).
fn is_echo(_: &str) -> bool {
    true
}

/// What one closed-loop measurement gave.
pub struct Measured {
    /// Round trips per second.
    pub rate: f64,
    pub stats: Arc<Stats>,
    /// The CPU time the server's process spent per round trip while the loops ran, in µs,
    /// when its process was given and could be read. Unlike the rate, it hardly depends on
    /// how much of the machine the load generator takes.
    pub server_cpu_us: Option<f64>,
}

/// Round trips per second over `connections` closed loops. `register_with`: a nodemgr
/// server's token, with which each loop registers its node first; `None` for the bare echo.
/// `server_pid`: the server's process on this machine, whose CPU time is read.
pub async fn measure(
    url: &str,
    connections: usize,
    duration: Duration,
    register_with: Option<&str>,
    server_pid: Option<u32>,
) -> Measured {
    let stats = Stats::new();
    let scenario = Scenario {
        ws_url: url.trim_end_matches('/').to_owned(),
        token: register_with.unwrap_or_default().to_owned(),
        nodes: connections,
        interval: Duration::ZERO,
        duration: Duration::ZERO,
        connect_concurrency: 64,
        run_id: uuid::Uuid::new_v4().to_string()[..8].to_owned(),
    };
    let mut sockets = Vec::new();
    for i in 0..connections {
        let node_id = format!("rtt-{}-{i}", scenario.run_id);
        let ws = if register_with.is_some() {
            connect_node(&scenario, &node_id, &stats).await
        } else {
            connect_bare(url, &stats).await
        };
        sockets.extend(ws.map(|ws| (node_id, ws)));
    }
    let round_trips = Arc::new(AtomicU64::new(0));
    let server_cpu = || server_pid.and_then(process_cpu_seconds);
    let cpu_at_start = server_cpu();
    let started = Instant::now();
    let until = started + duration;
    let mut loops = tokio::task::JoinSet::new();
    for (node_id, ws) in sockets {
        let frame = move || heartbeat(&uuid::Uuid::new_v4().to_string(), &node_id);
        loops.spawn(closed_loop(
            ws,
            frame,
            until,
            round_trips.clone(),
            stats.clone(),
            if register_with.is_some() {
                is_heartbeat_ack
            } else {
                is_echo
            },
        ));
    }
    while loops.join_next().await.is_some() {}
    let spent = cpu_at_start
        .zip(server_cpu())
        .map(|(at_start, now)| now - at_start);
    Measured {
        rate: planned_rate(&round_trips, started, duration),
        stats,
        server_cpu_us: spent.and_then(|seconds| per_round_trip_us(seconds, &round_trips)),
    }
}

/// A process's CPU seconds so far (Linux: `/proc/PID/stat`).
fn process_cpu_seconds(pid: u32) -> Option<f64> {
    crate::sfu::cpu_seconds(&format!("/proc/{pid}/stat"))
}

/// `seconds` of CPU spread over the round trips counted, in µs; none for no round trip.
fn per_round_trip_us(seconds: f64, round_trips: &AtomicU64) -> Option<f64> {
    let count = round_trips.load(Ordering::Relaxed);
    (count > 0).then(|| seconds * 1e6 / count as f64)
}

/// Closed-loop round trips per second of `frame` against a bare echo server.
pub async fn echo_rate(
    url: &str,
    connections: usize,
    duration: Duration,
    frame: fn() -> Message,
) -> (f64, Arc<Stats>) {
    let stats = Stats::new();
    let mut sockets = Vec::new();
    for _ in 0..connections {
        sockets.extend(connect_bare(url, &stats).await);
    }
    let round_trips = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let until = started + duration;
    let mut loops = tokio::task::JoinSet::new();
    for ws in sockets {
        let (round_trips, stats) = (round_trips.clone(), stats.clone());
        loops.spawn(closed_loop(ws, frame, until, round_trips, stats, is_echo));
    }
    while loops.join_next().await.is_some() {}
    (planned_rate(&round_trips, started, duration), stats)
}

/// A connection without the nodemgr handshake; a failure is counted.
async fn connect_bare(url: &str, stats: &Stats) -> Option<Ws> {
    match crate::ws::connect(url).await {
        Ok((ws, _)) => Some(ws),
        Err(_) => {
            stats.record_error("connect");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_is_spread_over_the_round_trips_counted() {
        assert_eq!(
            per_round_trip_us(2.0, &AtomicU64::new(1_000_000)),
            Some(2.0)
        );
        assert_eq!(per_round_trip_us(2.0, &AtomicU64::new(0)), None);
    }

    #[test]
    fn a_process_cpu_time_is_read_and_grows() {
        let pid = std::process::id();
        let before = process_cpu_seconds(pid).expect("this process's /proc stat");
        // Busy until the reading moves (it counts in clock ticks), for at most 30 s.
        let until = Instant::now() + Duration::from_secs(30);
        let mut after = before;
        while after <= before && Instant::now() < until {
            std::hint::black_box((0..10_000_u64).sum::<u64>());
            after = process_cpu_seconds(pid).expect("read again");
        }
        assert!(
            after > before,
            "{before} s, still {after} s after 30 s busy"
        );
        assert_eq!(process_cpu_seconds(u32::MAX), None);
    }
}
