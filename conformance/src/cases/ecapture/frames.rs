//! Every frame is one binary WebSocket frame holding one serialized `LogEntry`, whose
//! `log_type` agrees with its oneof.

use super::{decoded, each, stream_sample};
use crate::case::{Case, CaseResult, Failure, Outcome};
use crate::client::Frame;
use crate::target::Ctx;
use crate::wire::ecapture::{decode, Decoded, Kind};

pub fn cases() -> Vec<Case> {
    vec![
        Case::must("ecapture/frame/binary")
            .inferred("E1: eCapture writes each LogEntry as a binary frame")
            .sends("nothing: connects and reads a sample of the stream")
            .requires("every data frame is a binary frame")
            .run(|c| Box::pin(binary(c))),
        Case::must("ecapture/frame/decodes-as-log-entry")
            .documented("002 §集成示例: proto.Unmarshal(msgData, &logEntry)")
            .sends("nothing: reads a sample of the stream")
            .requires("every binary frame decodes as one event.LogEntry")
            .run(|c| Box::pin(decodes(c))),
        Case::should("ecapture/frame/no-unknown-fields")
            .inferred("E1: one serialized LogEntry per frame, no length prefix, nothing else")
            .sends("nothing: reads a sample of the stream")
            .requires("no frame carries a top-level field outside LogEntry's 1-4")
            .run(|c| Box::pin(no_unknown_fields(c))),
        Case::must("ecapture/frame/payload-present")
            .documented("002 §LogEntry: oneof payload 携带以下三种之一")
            .sends("nothing: reads a sample of the stream")
            .requires("every LogEntry carries one member of the payload oneof")
            .run(|c| Box::pin(payload_present(c))),
        Case::must("ecapture/log-type/agrees-with-payload")
            .documented("002 §LogEntry: 根据 log_type 不同, 携带以下三种之一")
            .sends("nothing: reads a sample of the stream")
            .requires("log_type (absent reads as 0, HEARTBEAT) is HEARTBEAT for a heartbeat_payload, PROCESS_LOG for run_log, EVENT for event_payload")
            .run(|c| Box::pin(log_type_agrees(c))),
    ]
}

async fn binary(ctx: Ctx) -> CaseResult {
    let frames = stream_sample(&ctx).await?;
    each(&frames, "a binary frame", Frame::describe, |f| {
        matches!(f, Frame::Binary(_))
    })?;
    Ok(Outcome::Pass)
}

async fn decodes(ctx: Ctx) -> CaseResult {
    let frames = stream_sample(&ctx).await?;
    for frame in &frames {
        if let Frame::Binary(bytes) = frame {
            decode(bytes)
                .map_err(|e| Failure::mismatch("a frame that decodes as event.LogEntry", e))?;
        }
    }
    Ok(Outcome::Pass)
}

async fn no_unknown_fields(ctx: Ctx) -> CaseResult {
    let entries = decoded(&stream_sample(&ctx).await?);
    each(
        &entries,
        "only LogEntry's fields 1-4 at the top level",
        |d| format!("fields {:?} in {}", d.fields, d.describe()),
        |d| d.unknown_fields().is_empty(),
    )?;
    Ok(Outcome::Pass)
}

async fn payload_present(ctx: Ctx) -> CaseResult {
    let entries = decoded(&stream_sample(&ctx).await?);
    each(
        &entries,
        "a LogEntry with a payload",
        Decoded::describe,
        |d| d.kind() != Kind::Empty,
    )?;
    Ok(Outcome::Pass)
}

async fn log_type_agrees(ctx: Ctx) -> CaseResult {
    let entries = decoded(&stream_sample(&ctx).await?);
    // Heartbeats carry HEARTBEAT = 0, which proto3 leaves off the wire: absent reads as 0.
    each(
        &entries,
        "log_type matching the payload",
        Decoded::describe,
        |d| {
            d.kind()
                .log_type()
                .is_none_or(|expected| expected == d.log_type())
        },
    )?;
    Ok(Outcome::Pass)
}
