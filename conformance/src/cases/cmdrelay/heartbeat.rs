//! The server's Heartbeat: `{"cmd":"Heartbeat","code":"1","extra":{}}`, "定期发送" (C6).

use super::Client;
use crate::case::{Case, CaseResult, Failure, Outcome};
use crate::check::compact;
use crate::client::Event;
use crate::target::Ctx;
use crate::wire::cmdrelay as wire;
use serde_json::Value;
use std::time::Duration;
use tokio::time::Instant;

/// Heartbeats timed by the period case: two intervals.
const TIMED_HEARTBEATS: usize = 3;
/// Allowed drift of one interval from the period, as a fraction of it.
const PERIOD_TOLERANCE: f64 = 0.5;

pub fn cases() -> Vec<Case> {
    vec![
        Case::must("cmdrelay/heartbeat/shape")
            .documented("003 §心跳消息 (Heartbeat)")
            .sends("init, then nothing")
            .requires("a Heartbeat {\"cmd\":\"Heartbeat\",\"code\":\"1\",\"extra\":{}} within 1.5 periods")
            .run(|c| Box::pin(shape(c))),
        Case::must("cmdrelay/heartbeat/period")
            .documented("003 §通讯流程 4 心跳检测: 服务器定期发送心跳消息")
            .sends("init, then nothing for three heartbeats")
            .requires("heartbeats at the configured period (±50%), or at a steady one when none is configured")
            .run(|c| Box::pin(period(c))),
        Case::should("cmdrelay/heartbeat/not-before-init")
            .inferred("C6: heartbeats start with the accepted init")
            .sends("a connection without init, for 1.5 heartbeat periods")
            .requires("no Heartbeat before init (one is an accepted variant)")
            .run(|c| Box::pin(not_before_init(c))),
    ]
}

/// How long to wait for one heartbeat: 1.5 periods, or 35 s when the period is not given.
pub fn heartbeat_wait(ctx: &Ctx) -> Result<Duration, Failure> {
    let period = ctx.cmdrelay()?.heartbeat_period;
    Ok(period.unwrap_or(Duration::from_secs(35)).mul_f64(1.5) + ctx.wait)
}

/// The next frame of any kind, heartbeats included.
async fn next_message(client: &mut Client, wait: Duration) -> Result<Value, Failure> {
    match client.ws.next_event_within(wait).await {
        Event::Json(message) => Ok(message),
        other => Err(Failure::mismatch("a Heartbeat", other.describe())),
    }
}

async fn shape(ctx: Ctx) -> CaseResult {
    let tokens = ctx.cmdrelay()?.tokens.rooms(1).await?;
    let (mut client, _) = Client::join(&ctx, "device", tokens.get(0)).await?;
    let heartbeat = next_message(&mut client, heartbeat_wait(&ctx)?).await?;
    let shown = compact(&heartbeat);
    // "cmd: 固定为 "Heartbeat"" and "code: 固定为 "1"".
    if heartbeat["cmd"] != "Heartbeat" || heartbeat["code"] != "1" {
        return Err(Failure::mismatch("cmd \"Heartbeat\" and code \"1\"", shown));
    }
    match heartbeat.get("extra") {
        Some(Value::Object(_)) => Ok(Outcome::Pass),
        // "extra: 额外数据，通常为空": absent is a reasonable spelling of empty.
        None => Ok(Outcome::Variant(
            "the heartbeat has no extra (the document shows {})".to_owned(),
        )),
        Some(_) => Err(Failure::mismatch("extra to be an object", shown)),
    }
}

async fn period(ctx: Ctx) -> CaseResult {
    let endpoint = ctx.cmdrelay()?;
    let tokens = endpoint.tokens.rooms(1).await?;
    let (mut client, _) = Client::join(&ctx, "device", tokens.get(0)).await?;
    let wait = heartbeat_wait(&ctx)?;
    let mut arrivals = Vec::with_capacity(TIMED_HEARTBEATS);
    while arrivals.len() < TIMED_HEARTBEATS {
        let message = next_message(&mut client, wait).await?;
        if wire::is_heartbeat(&message) {
            arrivals.push(Instant::now());
        }
    }
    let intervals: Vec<Duration> = arrivals.windows(2).map(|w| w[1] - w[0]).collect();
    let expected = endpoint.heartbeat_period.unwrap_or(intervals[0]);
    let off = |d: &Duration| {
        (d.as_secs_f64() - expected.as_secs_f64()).abs() > expected.as_secs_f64() * PERIOD_TOLERANCE
    };
    if intervals.iter().any(off) {
        return Err(Failure::mismatch(
            format!("heartbeats every {} ms (±50%)", expected.as_millis()),
            format!(
                "intervals of {:?} ms",
                intervals
                    .iter()
                    .map(Duration::as_millis)
                    .collect::<Vec<_>>()
            ),
        ));
    }
    Ok(Outcome::Pass)
}

async fn not_before_init(ctx: Ctx) -> CaseResult {
    let Some(period) = ctx.cmdrelay()?.heartbeat_period else {
        return Ok(Outcome::Informational(
            "the heartbeat period is not configured (--heartbeat-period), so silence before init proves nothing".to_owned(),
        ));
    };
    let mut client = Client::connect(&ctx, "device").await?;
    match client.ws.next_event_within(period.mul_f64(1.5)).await {
        Event::Json(message) if wire::is_heartbeat(&message) => Ok(Outcome::Variant(
            "heartbeats start at connect, before init".to_owned(),
        )),
        Event::Silence(_) => Ok(Outcome::Pass),
        other => Err(Failure::mismatch("nothing before init", other.describe())),
    }
}
