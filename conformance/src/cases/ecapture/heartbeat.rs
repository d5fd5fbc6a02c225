//! eCapture's heartbeat: one right after connect, then one per period (15 s), counting from 0
//! on each connection, `message` `"heartbeat:<count>"`, `timestamp` in Unix seconds (E2).

use super::connect;
use crate::case::{Case, CaseResult, Failure, Outcome};
use crate::check::{ensure, ensure_eq};
use crate::client::{Frame, StreamClient};
use crate::target::Ctx;
use crate::wire::ecapture::{decode, Heartbeat};
use std::time::Duration;
use tokio::time::Instant;

/// Allowed drift of one interval from the period, as a fraction of it.
const PERIOD_TOLERANCE: f64 = 0.25;
/// The share of a period, from the start of connecting, within which the first heartbeat
/// must come: anything under one tells "at connect" from "one period after".
const AT_CONNECT_SHARE: f64 = 0.9;
/// Allowed distance of a heartbeat's timestamp from the suite's clock.
const CLOCK_SKEW_SECONDS: i64 = 300;

pub fn cases() -> Vec<Case> {
    vec![
        Case::must("ecapture/heartbeat/at-connect")
            .inferred("E2: a heartbeat right after connect")
            .sends("nothing: connects")
            .requires("a heartbeat before 9/10 of a period (or the wait, if shorter) has passed since the connection was started")
            .run(|c| Box::pin(at_connect(c))),
        Case::must("ecapture/heartbeat/period")
            .inferred("E2: then one heartbeat per period (eCapture: 15 s)")
            .sends("nothing: reads three heartbeats")
            .requires("intervals between heartbeats within ±25% of the period")
            .run(|c| Box::pin(period(c))),
        Case::must("ecapture/heartbeat/count-per-connection")
            .documented("002 §Heartbeat: int64 count 心跳计数")
            .sends("one connection for two heartbeats, then a second connection")
            .requires("count is 0, 1, ... on each connection, the second starting at 0 again (E2)")
            .run(|c| Box::pin(count_per_connection(c))),
        Case::should("ecapture/heartbeat/message-names-count")
            .inferred("E2: message is \"heartbeat:<count>\"")
            .sends("nothing: reads two heartbeats")
            .requires("message equals \"heartbeat:\" followed by the count")
            .run(|c| Box::pin(message_names_count(c))),
        Case::should("ecapture/heartbeat/timestamp-unix-seconds")
            .inferred("E2: the heartbeat timestamp is Unix seconds")
            .sends("nothing: reads one heartbeat")
            .requires("timestamp within 300 s of the suite's clock, in seconds")
            .run(|c| Box::pin(timestamp_seconds(c))),
    ]
}

/// The next heartbeat within `wait`, skipping other entries; with the time it arrived.
async fn next_heartbeat(
    client: &mut StreamClient,
    wait: Duration,
) -> Result<(Instant, Heartbeat), Failure> {
    let deadline = Instant::now() + wait;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let frame = client.next_within(left).await;
        let at = Instant::now();
        match &frame {
            Frame::Binary(bytes) => {
                if let Some(beat) = decode(bytes).ok().and_then(|d| d.heartbeat().cloned()) {
                    return Ok((at, beat));
                }
            }
            Frame::Text(_) => {}
            _ => return Err(Failure::mismatch("a heartbeat", frame.describe())),
        }
    }
}

/// How long a heartbeat may take after the previous one.
fn one_period(ctx: &Ctx) -> Result<Duration, Failure> {
    Ok(ctx
        .ecapture()?
        .heartbeat_period
        .mul_f64(1.0 + PERIOD_TOLERANCE)
        + ctx.wait)
}

async fn at_connect(ctx: Ctx) -> CaseResult {
    // Counted from before the handshake: the server's connection starts after it, so a first
    // heartbeat sent one period later cannot come within the window, however slow the
    // handshake was. Counted from its end, a slow client could let it in.
    let started = Instant::now();
    let within = ctx
        .wait
        .min(ctx.ecapture()?.heartbeat_period.mul_f64(AT_CONNECT_SHARE));
    let mut client = connect(&ctx, "collector").await?;
    let deadline = started + within;
    let (read_at, _) = next_heartbeat(
        &mut client,
        deadline.saturating_duration_since(Instant::now()),
    )
    .await?;
    // A wait that is resumed late still hands over a frame that is already there: a heartbeat
    // read after the deadline was not in time, whatever the wait returned (CI let a late one
    // through while the machine was busy).
    ensure(
        read_at <= deadline,
        format!("a heartbeat within {} ms of connecting", within.as_millis()),
        format!("the first after {} ms", (read_at - started).as_millis()),
    )?;
    client.close().await;
    Ok(Outcome::Pass)
}

async fn period(ctx: Ctx) -> CaseResult {
    let period = ctx.ecapture()?.heartbeat_period;
    let mut client = connect(&ctx, "collector").await?;
    let (mut last, _) = next_heartbeat(&mut client, one_period(&ctx)?).await?;
    for _ in 0..2 {
        let (at, _) = next_heartbeat(&mut client, one_period(&ctx)?).await?;
        let interval = at - last;
        let drift = (interval.as_secs_f64() - period.as_secs_f64()).abs();
        ensure(
            drift <= period.as_secs_f64() * PERIOD_TOLERANCE,
            format!("a heartbeat every {} ms (±25%)", period.as_millis()),
            format!("one after {} ms", interval.as_millis()),
        )?;
        last = at;
    }
    client.close().await;
    Ok(Outcome::Pass)
}

async fn count_per_connection(ctx: Ctx) -> CaseResult {
    let mut first = connect(&ctx, "first").await?;
    for expected in 0..2 {
        let (_, beat) = next_heartbeat(&mut first, one_period(&ctx)?).await?;
        ensure_eq("count on the first connection", expected, beat.count)?;
    }
    let mut second = connect(&ctx, "second").await?;
    let (_, beat) = next_heartbeat(&mut second, one_period(&ctx)?).await?;
    ensure_eq("count of a new connection's first heartbeat", 0, beat.count)?;
    first.close().await;
    second.close().await;
    Ok(Outcome::Pass)
}

async fn message_names_count(ctx: Ctx) -> CaseResult {
    let mut client = connect(&ctx, "collector").await?;
    for _ in 0..2 {
        let (_, beat) = next_heartbeat(&mut client, one_period(&ctx)?).await?;
        ensure_eq(
            "message",
            format!("heartbeat:{}", beat.count),
            beat.message.clone(),
        )?;
    }
    client.close().await;
    Ok(Outcome::Pass)
}

async fn timestamp_seconds(ctx: Ctx) -> CaseResult {
    let mut client = connect(&ctx, "collector").await?;
    let (_, beat) = next_heartbeat(&mut client, one_period(&ctx)?).await?;
    let now = chrono::Utc::now().timestamp();
    ensure(
        (beat.timestamp - now).abs() <= CLOCK_SKEW_SECONDS,
        format!("a Unix time in seconds near {now}"),
        beat.timestamp,
    )?;
    client.close().await;
    Ok(Outcome::Pass)
}
