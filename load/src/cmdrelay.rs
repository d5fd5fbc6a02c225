//! cmdrelay load: rooms of clients in which one client relays `execute` on an interval and the
//! others measure sender-to-receiver latency; a closed-loop relay against a bare echo; and
//! idle clients for memory.

use crate::stats::Stats;
use crate::ws::Ws;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;

/// How long receivers wait past the end of a run for what is still in flight.
pub const GRACE: Duration = Duration::from_secs(2);
/// How long a receiver re-arms its wait while the other rooms are still joining.
const MAX_JOIN_WAIT: Duration = Duration::from_secs(5);

#[derive(Debug, Clone)]
pub struct Scenario {
    pub ws_url: String,
    /// One token per room.
    pub tokens: Vec<String>,
    pub clients_per_room: usize,
    pub interval: Duration,
    pub duration: Duration,
    pub connect_concurrency: usize,
}

/// Connects and joins the room of `token`; `None` (and an error counted) when refused.
pub async fn join(url: &str, token: &str, stats: &Stats) -> Option<Ws> {
    let Ok((mut ws, _)) = crate::ws::connect(url).await else {
        stats.record_error("connect");
        return None;
    };
    let init = json!({ "cmd": "init", "token": token }).to_string();
    ws.send(Message::text(init)).await.ok()?;
    while let Some(Ok(frame)) = ws.next().await {
        let Message::Text(text) = frame else { continue };
        let answer: Value = serde_json::from_str(&text).unwrap_or_default();
        if answer["cmd"] == "init" {
            if answer["code"] == "1" {
                stats.connected.fetch_add(1, Ordering::Relaxed);
                return Some(ws);
            }
            stats.record_error(answer["code"].as_str().unwrap_or("init refused"));
            return None;
        }
    }
    stats.record_error("closed before init answer");
    None
}

/// Two clients in the room of each token, one after the other. A refused join is said on
/// stderr: the rate is then over fewer pairs than asked for.
pub async fn join_pairs(url: &str, tokens: &[String]) -> Vec<(Ws, Ws)> {
    let stats = Stats::new();
    let mut pairs = Vec::with_capacity(tokens.len());
    for token in tokens {
        let a = join(url, token, &stats).await;
        let b = join(url, token, &stats).await;
        pairs.extend(a.zip(b));
    }
    if pairs.len() < tokens.len() {
        eprintln!(
            "only {} of {} pairs joined; refused joins by code: {:?}",
            pairs.len(),
            tokens.len(),
            stats.errors()
        );
    }
    pairs
}

/// Every room's clients, joined with bounded concurrency.
pub async fn join_all(scenario: &Scenario, stats: &Arc<Stats>) -> Vec<Vec<Ws>> {
    let gate = Arc::new(tokio::sync::Semaphore::new(
        scenario.connect_concurrency.max(1),
    ));
    let mut tasks = tokio::task::JoinSet::new();
    for (room, token) in scenario.tokens.iter().enumerate() {
        for _ in 0..scenario.clients_per_room {
            let (gate, stats, url, token) = (
                gate.clone(),
                stats.clone(),
                scenario.ws_url.clone(),
                token.clone(),
            );
            tasks.spawn(async move {
                let _permit = gate.acquire_owned().await;
                (room, join(&url, &token, &stats).await)
            });
        }
    }
    let mut rooms: Vec<Vec<Ws>> = (0..scenario.tokens.len()).map(|_| Vec::new()).collect();
    while let Some(joined) = tasks.join_next().await {
        if let Ok((room, Some(ws))) = joined {
            rooms[room].push(ws);
        }
    }
    rooms
}

/// The send time travels in the frame as nanoseconds since `base`, shared by every client of
/// this process, so a receiver computes the sender-to-receiver latency.
fn execute_at(base: Instant, sequence: u64) -> Message {
    let sent = u64::try_from(base.elapsed().as_nanos()).unwrap_or(u64::MAX);
    Message::text(json!({ "cmd": "execute", "extra": { "command": "load", "sent_ns": sent, "seq": sequence } }).to_string())
}

fn latency_of(text: &str, base: Instant) -> Option<Duration> {
    latency_at(text, base, "/extra/sent_ns")
}

/// The time since the send time written at `pointer` (nanoseconds since `base`) in a frame.
pub fn latency_at(text: &str, base: Instant, pointer: &str) -> Option<Duration> {
    let frame: Value = serde_json::from_str(text).ok()?;
    let sent = frame.pointer(pointer)?.as_u64()?;
    let now = u64::try_from(base.elapsed().as_nanos()).ok()?;
    Some(Duration::from_nanos(now.saturating_sub(sent)))
}

/// Joins every room; receivers start reading at once (so no client sits unread, unanswered to
/// pings, while the others connect), and senders start together once every room is in, so
/// that the figures are of the steady state, not of the connection storm. Returns the number
/// of clients that joined.
pub async fn run(scenario: &Scenario, stats: Arc<Stats>) -> usize {
    let base = Instant::now();
    let until = Arc::new(tokio::sync::OnceCell::new());
    let rooms = join_rooms(scenario, &stats, &until, base).await;
    let joined = rooms.iter().map(|(_, receivers)| receivers + 1).sum();
    let end = Instant::now() + scenario.duration;
    let _ = until.set(end + GRACE);
    let progress = tokio::spawn(stats.clone().show_progress("cmdrelay relays", end));
    let mut senders = tokio::task::JoinSet::new();
    for (index, (sink, _)) in rooms.into_iter().enumerate() {
        // Spread the rooms' sends over one interval so that they do not all fire at once.
        let offset = scenario.interval.mul_f64((index % 1000) as f64 / 1000.0);
        senders.spawn(send_loop(
            sink,
            scenario.interval,
            offset,
            end,
            stats.clone(),
            move |sequence| execute_at(base, sequence),
        ));
    }
    let sinks = senders.join_all().await;
    tokio::time::sleep(GRACE).await;
    close_all(sinks).await;
    progress.abort();
    joined
}

pub type Sink = futures_util::stream::SplitSink<Ws, Message>;

/// Each room's sender (its sink; what it receives is drained) and how many receivers it has.
async fn join_rooms(
    scenario: &Scenario,
    stats: &Arc<Stats>,
    until: &Arc<tokio::sync::OnceCell<Instant>>,
    base: Instant,
) -> Vec<(Sink, usize)> {
    let gate = Arc::new(tokio::sync::Semaphore::new(
        scenario.connect_concurrency.max(1),
    ));
    let mut tasks = tokio::task::JoinSet::new();
    for token in &scenario.tokens {
        let (gate, stats, until, scenario, token) = (
            gate.clone(),
            stats.clone(),
            until.clone(),
            scenario.clone(),
            token.clone(),
        );
        tasks.spawn(async move {
            let mut clients = Vec::with_capacity(scenario.clients_per_room);
            for _ in 0..scenario.clients_per_room {
                let _permit = gate.acquire().await;
                clients.extend(join(&scenario.ws_url, &token, &stats).await);
            }
            if clients.len() < 2 {
                return None;
            }
            let (sink, mut stream) = clients.remove(0).split();
            tokio::spawn(async move { while let Some(Ok(_)) = stream.next().await {} });
            let receivers = clients.len();
            for receiver in clients {
                let latency = move |text: &str| latency_of(text, base);
                tokio::spawn(receive_loop(
                    receiver,
                    until.clone(),
                    stats.clone(),
                    latency,
                ));
            }
            Some((sink, receivers))
        });
    }
    let mut rooms = Vec::with_capacity(scenario.tokens.len());
    while let Some(joined) = tasks.join_next().await {
        rooms.extend(joined.ok().flatten());
    }
    rooms
}

/// Reads and drops what the server sends (answering its pings), until the socket closes.
pub fn keep_reading(mut ws: Ws) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move { while let Some(Ok(_)) = ws.next().await {} })
}

/// Sends `frame(sequence)` every `interval`, starting after `offset`, until `until`.
pub async fn send_loop(
    mut ws: Sink,
    interval: Duration,
    offset: Duration,
    until: Instant,
    stats: Arc<Stats>,
    frame: impl Fn(u64) -> Message,
) -> Option<Sink> {
    tokio::time::sleep(offset).await;
    let mut ticks = tokio::time::interval(interval);
    let mut sequence = 0;
    while Instant::now() < until {
        ticks.tick().await;
        if ws.send(frame(sequence)).await.is_err() {
            stats.record_error("send");
            return None;
        }
        stats.sent.fetch_add(1, Ordering::Relaxed);
        sequence += 1;
    }
    // Closed by the caller once the receivers are done: a departure may cost the server a
    // broadcast (logrtc), which must not fall inside the measured window.
    Some(ws)
}

/// Closes the senders' sockets.
pub async fn close_all(sinks: Vec<Option<Sink>>) {
    for mut sink in sinks.into_iter().flatten() {
        let _ = sink.close().await;
    }
}

/// Records the latency of every relayed frame (those `latency` reads a send time from) until
/// the run's end (plus a grace), which is set once every client has joined.
pub async fn receive_loop(
    mut ws: Ws,
    until: Arc<tokio::sync::OnceCell<Instant>>,
    stats: Arc<Stats>,
    latency: impl Fn(&str) -> Option<Duration>,
) {
    let mut received = 0_u64;
    loop {
        let deadline = until
            .get()
            .copied()
            .unwrap_or_else(|| Instant::now() + MAX_JOIN_WAIT);
        let frame = tokio::time::timeout_at(deadline.into(), ws.next()).await;
        match frame {
            Ok(Some(Ok(Message::Text(text)))) => {
                if let Some(latency) = latency(&text) {
                    stats.record_ack(latency);
                    received += 1;
                }
            }
            Ok(Some(Ok(Message::Close(frame)))) => {
                let code = frame.map_or(0, |f| u16::from(f.code));
                return stats.record_error(&format!("receiver closed by the server ({code})"));
            }
            Ok(Some(Ok(_))) => {}
            Ok(Some(Err(_)) | None) => return stats.record_error("receiver connection dropped"),
            // Only the run's end stops a receiver. A wait that began while the others were
            // still joining has a deadline of its own, which may pass just after the run's
            // end became known and before this room's first relay: that is no verdict.
            // (Treating it as one made whole rooms look lost, intermittently.)
            Err(_) => match until.get() {
                Some(end) if Instant::now() >= *end => {
                    if received == 0 {
                        stats.record_error("receiver got no relay");
                    }
                    return;
                }
                _ => {}
            },
        }
    }
}

/// What one step of the closed loop over a pair is.
#[derive(Debug, Clone, Copy)]
pub enum RelayLoop {
    /// A sends an execute and waits for B to receive it: one relay per step. Each relay costs
    /// a pure TCP ACK on both connections, which an echo's answer carries for free.
    OneWay,
    /// A sends an execute, B answers with an execute_result, A receives it: the document's
    /// exchange, two relays per step, each acknowledged by the next frame as an echo is.
    Exchange,
}

impl RelayLoop {
    fn relays_per_step(self) -> u64 {
        match self {
            Self::OneWay => 1,
            Self::Exchange => 2,
        }
    }
}

/// Reads from `ws` until a text frame that contains `needle`; false if the socket ends or the
/// deadline passes first.
async fn wait_for(ws: &mut Ws, needle: &str, deadline: Instant) -> bool {
    loop {
        match tokio::time::timeout_at(deadline.into(), ws.next()).await {
            Ok(Some(Ok(Message::Text(text)))) if text.contains(needle) => return true,
            Ok(Some(Ok(_))) => continue,
            _ => return false,
        }
    }
}

fn execute_result() -> Message {
    Message::text(r#"{"cmd":"execute_result","extra":{"exit_code":0,"stdout":"load"}}"#)
}

/// Closed loop over pairs, one step after another (see [`RelayLoop`]). Each relay costs the
/// server one read and one write, as one echo round trip does. Returns relays per second and
/// the time of each step.
pub async fn relay_rate(
    pairs: Vec<(Ws, Ws)>,
    duration: Duration,
    pattern: RelayLoop,
) -> (f64, Arc<Stats>) {
    let stats = Stats::new();
    let count = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let until = started + duration;
    let mut loops = tokio::task::JoinSet::new();
    for (mut a, mut b) in pairs {
        let (stats, count) = (stats.clone(), count.clone());
        loops.spawn(async move {
            // Bounded: a relay that never comes ends the loop at the deadline.
            let deadline = until + GRACE;
            while Instant::now() < until {
                let sent = Instant::now();
                if a.send(execute_at(started, 0)).await.is_err()
                    || !wait_for(&mut b, "\"execute\"", deadline).await
                {
                    return stats.record_error("no relay of execute before the end");
                }
                if matches!(pattern, RelayLoop::Exchange)
                    && (b.send(execute_result()).await.is_err()
                        || !wait_for(&mut a, "\"execute_result\"", deadline).await)
                {
                    return stats.record_error("no relay of execute_result before the end");
                }
                stats.record_ack(sent.elapsed());
                count.fetch_add(pattern.relays_per_step(), Ordering::Relaxed);
            }
        });
    }
    while loops.join_next().await.is_some() {}
    (crate::stats::planned_rate(&count, started, duration), stats)
}
