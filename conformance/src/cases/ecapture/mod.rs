//! ecapture (seed 002) server cases: the suite plays collectors. The stream is push-only, so
//! most cases read a sample of it and check every frame of the sample. Cases that need
//! captured events report Unimplemented, never Pass, when the target sends none in time.

mod events;
mod frames;
mod heartbeat;
mod logs;
mod robustness;

use crate::case::{Case, Failure};
use crate::client::{Frame, StreamClient};
use crate::target::Ctx;
use crate::wire::ecapture::{decode, Decoded, Event, Kind};
use std::time::Duration;
use tokio::time::Instant;

pub fn cases() -> Vec<Case> {
    [
        frames::cases(),
        heartbeat::cases(),
        events::cases(),
        logs::cases(),
        robustness::cases(),
    ]
    .concat()
}

/// Events a sample holds before event cases judge them.
const EVENT_SAMPLE: usize = 20;

pub async fn connect(ctx: &Ctx, name: &str) -> Result<StreamClient, Failure> {
    let url = &ctx.ecapture()?.ws_url;
    StreamClient::connect(name, url, &ctx.transcript, ctx.wait).await
}

/// Reads data frames until `enough` holds for those read so far, or `within` passes. A stream
/// that ends fails the case: the server must keep pushing.
pub async fn read_until(
    client: &mut StreamClient,
    within: Duration,
    mut enough: impl FnMut(&[Frame]) -> bool,
) -> Result<Vec<Frame>, Failure> {
    let deadline = Instant::now() + within;
    let mut frames = Vec::new();
    while !enough(&frames) {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        match client.next_within(left).await {
            Frame::Silence(_) => break,
            end if end.is_end() => {
                return Err(Failure::mismatch("the stream to stay open", end.describe()))
            }
            frame => frames.push(frame),
        }
    }
    Ok(frames)
}

/// The frames that decode, in order.
pub fn decoded(frames: &[Frame]) -> Vec<Decoded> {
    frames
        .iter()
        .filter_map(|frame| match frame {
            Frame::Binary(bytes) => decode(bytes).ok(),
            _ => None,
        })
        .collect()
}

fn count_kind(frames: &[Frame], kind: Kind) -> usize {
    decoded(frames).iter().filter(|d| d.kind() == kind).count()
}

/// A sample of the stream from connect: at least 12 frames with 3 events, or what came
/// within the slow wait.
pub async fn stream_sample(ctx: &Ctx) -> Result<Vec<Frame>, Failure> {
    let mut client = connect(ctx, "collector").await?;
    let frames = read_until(&mut client, ctx.slow_wait, |frames| {
        frames.len() >= 12 && count_kind(frames, Kind::Event) >= 3
    })
    .await?;
    client.close().await;
    if frames.is_empty() {
        return Err(Failure::mismatch(
            "frames after connect (a heartbeat at least)",
            format!("nothing within {} s", ctx.slow_wait.as_secs()),
        ));
    }
    Ok(frames)
}

/// Events read on a new connection: up to `EVENT_SAMPLE` within the slow wait.
pub async fn event_sample(ctx: &Ctx) -> Result<Vec<Event>, Failure> {
    let mut client = connect(ctx, "collector").await?;
    let frames = read_until(&mut client, ctx.slow_wait, |frames| {
        count_kind(frames, Kind::Event) >= EVENT_SAMPLE
    })
    .await?;
    client.close().await;
    let events: Vec<Event> = decoded(&frames)
        .into_iter()
        .filter_map(|d| d.event().cloned())
        .collect();
    if events.is_empty() {
        return Err(no_events(ctx));
    }
    Ok(events)
}

/// Nothing to judge: the target captured no traffic in time.
pub fn no_events(ctx: &Ctx) -> Failure {
    Failure::Unimplemented(format!(
        "no event arrived within {} s: make the captured programs send traffic during the run",
        ctx.slow_wait.as_secs()
    ))
}

/// Fails on the first item `check` rejects, naming it.
pub fn each<T>(
    items: &[T],
    expected: &str,
    describe: impl Fn(&T) -> String,
    check: impl Fn(&T) -> bool,
) -> Result<(), Failure> {
    match items.iter().find(|item| !check(item)) {
        None => Ok(()),
        Some(bad) => Err(Failure::mismatch(expected, describe(bad))),
    }
}
