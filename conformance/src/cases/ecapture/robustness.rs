//! The server is push-only and serves any number of clients: it reads and discards what
//! clients send, outlives clients that vanish, and gives every client the whole stream (E5).

use super::{connect, decoded, no_events, read_until};
use crate::case::{Case, CaseResult, Failure, Outcome};
use crate::check::ensure;
use crate::client::StreamClient;
use crate::target::Ctx;
use crate::wire::ecapture::{self, Kind, LogEntry, Payload};
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

/// Clients that vanish in the abrupt-disconnect case.
const VANISHING: usize = 5;
/// Events compared across the clients of the fan-out case.
const FANOUT_EVENTS: usize = 30;
/// Events each fan-out client must share with the others.
const FANOUT_OVERLAP: usize = 10;

pub fn cases() -> Vec<Case> {
    vec![
        Case::must("ecapture/robustness/ignores-client-frames")
            .inferred("E5: frames from clients are read and discarded")
            .sends("a text frame, a binary frame of junk, and an encoded LogEntry")
            .requires("the connection stays open and the heartbeats go on")
            .run(|c| Box::pin(ignores_client_frames(c))),
        Case::must("ecapture/robustness/survives-abrupt-disconnects")
            .inferred("E5: clients may vanish; the server serves the others")
            .sends("five connections reset without a close, next to a watching connection")
            .requires("the watcher keeps getting events, and a new connection gets a heartbeat")
            .run(|c| Box::pin(survives_abrupt_disconnects(c))),
        Case::must("ecapture/fanout/every-client-full-stream")
            .inferred("E5: any number of clients, each sent the whole stream")
            .sends("three connections at once")
            .requires(
                "from the first event all three share, they get the same events in the same order",
            )
            .run(|c| Box::pin(every_client_full_stream(c))),
        Case::should("ecapture/handshake/any-path")
            .inferred("E5: the server accepts a WebSocket handshake on any path")
            .sends("a handshake on /conformance/any/path")
            .requires("the connection opens and gets a heartbeat")
            .run(|c| Box::pin(any_path(c))),
    ]
}

async fn heartbeat_within(client: &mut StreamClient, wait: Duration) -> Result<(), Failure> {
    let frames = read_until(client, wait, |frames| {
        decoded(frames).iter().any(|d| d.kind() == Kind::Heartbeat)
    })
    .await?;
    ensure(
        decoded(&frames).iter().any(|d| d.kind() == Kind::Heartbeat),
        "a heartbeat",
        format!("{} other frames", frames.len()),
    )
}

fn heartbeat_wait(ctx: &Ctx) -> Result<Duration, Failure> {
    Ok(ctx.ecapture()?.heartbeat_period.mul_f64(1.5) + ctx.wait)
}

async fn ignores_client_frames(ctx: Ctx) -> CaseResult {
    let mut client = connect(&ctx, "collector").await?;
    heartbeat_within(&mut client, ctx.wait).await?;
    let entry = LogEntry {
        log_type: ecapture::LOG_TYPE_PROCESS_LOG,
        payload: Some(Payload::RunLog("from a client".to_owned())),
    };
    let junk = [
        (Message::text("hello"), "a text frame \"hello\""),
        (Message::binary(vec![0xff; 64]), "64 bytes of 0xff"),
        (
            Message::binary(ecapture::encode(&entry)),
            "an encoded LogEntry",
        ),
    ];
    for (message, shown) in junk {
        client.send(message, shown).await?;
    }
    heartbeat_within(&mut client, heartbeat_wait(&ctx)?).await?;
    client.close().await;
    Ok(Outcome::Pass)
}

async fn count_events(
    client: &mut StreamClient,
    within: Duration,
    at_least: usize,
) -> Result<usize, Failure> {
    let frames = read_until(client, within, |frames| {
        decoded(frames)
            .iter()
            .filter(|d| d.kind() == Kind::Event)
            .count()
            >= at_least
    })
    .await?;
    Ok(decoded(&frames)
        .iter()
        .filter(|d| d.kind() == Kind::Event)
        .count())
}

async fn survives_abrupt_disconnects(ctx: Ctx) -> CaseResult {
    let mut watcher = connect(&ctx, "watcher").await?;
    let before = count_events(&mut watcher, ctx.wait, 1).await?;
    for n in 0..VANISHING {
        let mut client = connect(&ctx, &format!("vanishing-{n}")).await?;
        client.next_within(ctx.wait).await;
        client.abort();
    }
    // What was queued before the resets may still arrive; only what follows counts.
    count_events(&mut watcher, ctx.wait / 3, usize::MAX).await?;
    if before > 0 {
        let after = count_events(&mut watcher, ctx.slow_wait, 1).await?;
        ensure(after > 0, "events after the resets", "none")?;
    }
    let mut newcomer = connect(&ctx, "newcomer").await?;
    heartbeat_within(&mut newcomer, ctx.wait).await?;
    watcher.close().await;
    newcomer.close().await;
    if before == 0 {
        return Err(no_events(&ctx));
    }
    Ok(Outcome::Pass)
}

/// The events a client read, by (timestamp, uuid, length): enough to tell events apart.
type EventKey = (i64, String, u32);

async fn event_keys(mut client: StreamClient, within: Duration) -> Result<Vec<EventKey>, Failure> {
    let frames = read_until(&mut client, within, |frames| {
        decoded(frames)
            .iter()
            .filter(|d| d.kind() == Kind::Event)
            .count()
            >= FANOUT_EVENTS
    })
    .await?;
    client.close().await;
    Ok(decoded(&frames)
        .iter()
        .filter_map(|d| d.event())
        .map(|e| (e.timestamp, e.uuid.clone(), e.length))
        .collect())
}

async fn every_client_full_stream(ctx: Ctx) -> CaseResult {
    let mut clients = Vec::new();
    for name in ["a", "b", "c"] {
        clients.push(connect(&ctx, name).await?);
    }
    let reads = clients.into_iter().map(|c| event_keys(c, ctx.slow_wait));
    let streams = futures_util::future::try_join_all(reads).await?;
    if streams.iter().all(Vec::is_empty) {
        return Err(no_events(&ctx));
    }
    let tails = shared_tails(&streams);
    let overlap = shortest_tail(&tails);
    let shortest = streams.iter().map(Vec::len).min().unwrap_or(0);
    ensure(
        // At least one shared event: `tails` is empty when no connection's first reached all.
        overlap >= FANOUT_OVERLAP.min(shortest).max(1),
        format!("one connection's first event on every connection, then {FANOUT_OVERLAP} shared"),
        format!(
            "tails of {:?} events",
            tails.iter().map(|t| t.len()).collect::<Vec<_>>()
        ),
    )?;
    for (name, tail) in ["a", "b"].iter().zip(&tails) {
        let differs = tail[..overlap]
            .iter()
            .zip(&tails[2][..overlap])
            .position(|(x, y)| x != y);
        if let Some(at) = differs {
            return Err(Failure::mismatch(
                format!("{name} to get the same events as c, in order"),
                format!(
                    "at shared event {at}: {name} got {:?}, c got {:?}",
                    tail[at], tails[2][at]
                ),
            ));
        }
    }
    Ok(Outcome::Pass)
}

/// Each stream from the first event every stream got. Whichever connection the server
/// registered last (not always the last to connect: seen in CI on 2026-12-06) may have missed
/// the earliest events, so the start is the first event of one connection, the one that leaves
/// the longest shared run; empty when no connection's first event reached all of them.
fn shared_tails(streams: &[Vec<EventKey>]) -> Vec<&[EventKey]> {
    let tails_from = |start: &EventKey| -> Vec<&[EventKey]> {
        streams
            .iter()
            .map(|s| {
                s.iter()
                    .position(|k| k == start)
                    .map_or(&[][..], |i| &s[i..])
            })
            .collect()
    };
    streams
        .iter()
        .filter_map(|s| s.first())
        .map(tails_from)
        .max_by_key(|tails| shortest_tail(tails))
        .unwrap_or_default()
}

fn shortest_tail(tails: &[&[EventKey]]) -> usize {
    tails.iter().map(|t| t.len()).min().unwrap_or(0)
}

async fn any_path(ctx: Ctx) -> CaseResult {
    let base = &ctx.ecapture()?.ws_url;
    let url = with_path(base, "/conformance/any/path");
    let mut client = StreamClient::connect("collector", &url, &ctx.transcript, ctx.wait).await?;
    heartbeat_within(&mut client, ctx.wait).await?;
    client.close().await;
    Ok(Outcome::Pass)
}

/// `ws://host:port/x` → `ws://host:port<path>`.
fn with_path(url: &str, path: &str) -> String {
    let scheme_end = url.find("://").map_or(0, |i| i + 3);
    let host_end = url[scheme_end..]
        .find('/')
        .map_or(url.len(), |i| scheme_end + i);
    format!("{}{path}", &url[..host_end])
}

#[cfg(test)]
mod tests {
    use super::{shared_tails, shortest_tail, EventKey};

    fn events(range: std::ops::Range<i64>) -> Vec<EventKey> {
        range.map(|t| (t, format!("uuid-{t}"), 10)).collect()
    }

    #[test]
    fn the_shared_run_starts_where_the_latest_registered_connection_starts() {
        // b was registered after c, though it connected before it.
        let streams = vec![events(0..30), events(5..35), events(2..32)];
        let tails = shared_tails(&streams);
        let starts: Vec<i64> = tails.iter().map(|t| t[0].0).collect();
        assert_eq!(starts, [5, 5, 5]);
        assert_eq!(shortest_tail(&tails), 25);
    }

    #[test]
    fn streams_with_no_common_event_share_nothing() {
        let streams = vec![events(0..10), events(20..30), events(0..10)];
        let tails = shared_tails(&streams);
        assert_eq!(shortest_tail(&tails), 0);
    }
}
