//! Process logs: the start-up lines are replayed to each new client before live traffic, and
//! every line is a JSON line (E4).

use super::{connect, read_until};
use crate::case::{Case, CaseResult, Failure, Outcome};
use crate::check::ensure;
use crate::client::Frame;
use crate::target::Ctx;
use crate::wire::ecapture::decode;

pub fn cases() -> Vec<Case> {
    vec![
        Case::must("ecapture/process-log/startup-replay")
            .inferred("E4: the first process logs after start-up are replayed to each new client")
            .sends("two connections, one after the other")
            .requires("both begin with the same process log lines, before any event")
            .run(|c| Box::pin(startup_replay(c))),
        Case::should("ecapture/process-log/json-lines")
            .inferred("E4: process logs are JSON lines")
            .sends("a connection; reads the replayed process logs")
            .requires("every run_log is one JSON object")
            .run(|c| Box::pin(json_lines(c))),
    ]
}

/// The process logs a new connection gets before its first event, within half the wait.
async fn opening_logs(ctx: &Ctx, name: &str) -> Result<Vec<String>, Failure> {
    let mut client = connect(ctx, name).await?;
    let frames = read_until(&mut client, ctx.wait / 2, |frames| {
        frames.last().is_some_and(is_event)
    })
    .await?;
    client.close().await;
    Ok(frames
        .iter()
        .take_while(|f| !is_event(f))
        .filter_map(|f| match f {
            Frame::Binary(bytes) => decode(bytes).ok()?.run_log().map(str::to_owned),
            _ => None,
        })
        .collect())
}

fn is_event(frame: &Frame) -> bool {
    match frame {
        Frame::Binary(bytes) => decode(bytes).is_ok_and(|d| d.event().is_some()),
        _ => false,
    }
}

async fn startup_replay(ctx: Ctx) -> CaseResult {
    let first = opening_logs(&ctx, "first").await?;
    let second = opening_logs(&ctx, "second").await?;
    ensure(
        !first.is_empty() && !second.is_empty(),
        "process logs replayed at connect, before any event",
        format!("{} and {} lines", first.len(), second.len()),
    )?;
    let shared = first
        .iter()
        .zip(&second)
        .take_while(|(a, b)| a == b)
        .count();
    ensure(
        shared > 0,
        "both connections opening with the same start-up lines",
        format!(
            "first opened with {:?}, second with {:?}",
            first[0], second[0]
        ),
    )?;
    Ok(Outcome::Pass)
}

async fn json_lines(ctx: Ctx) -> CaseResult {
    let lines = opening_logs(&ctx, "collector").await?;
    ensure(
        !lines.is_empty(),
        "process logs at connect",
        "none before the first event",
    )?;
    for line in &lines {
        let parsed = serde_json::from_str::<serde_json::Value>(line);
        ensure(
            parsed.is_ok_and(|v| v.is_object()),
            "a JSON object",
            crate::check::truncate(line, 200),
        )?;
    }
    Ok(Outcome::Pass)
}
