//! The envelope of the core's messages (001 §消息格式, §最佳实践).

use super::{unique_node_id, welcomed, Node};
use crate::case::{Case, CaseResult, Outcome};
use crate::check::{compact, ensure, is_uuid_v4, str_at, timestamp_form, TimestampForm};
use crate::target::Ctx;
use serde_json::Value;

pub fn cases() -> Vec<Case> {
    vec![
        Case::must("nodemgr/envelope/fields-present-and-typed")
            .documented("001 §消息格式")
            .sends("a connection, node_register and heartbeat")
            .requires("welcome, register_response and heartbeat_ack each have string type, id, timestamp and an object data")
            .run(|c| Box::pin(fields_present_and_typed(c))),
        Case::must("nodemgr/envelope/timestamps-rfc3339")
            .documented("001 §消息格式 ISO 8601时间戳; §最佳实践 2 RFC 3339")
            .sends("a connection, node_register and heartbeat")
            .requires("every timestamp is RFC 3339 (an ISO 8601 time without offset is a non-strict variant, C6)")
            .run(|c| Box::pin(timestamps_rfc3339(c))),
        Case::should("nodemgr/envelope/core-ids-are-uuid-v4")
            .documented("001 §最佳实践 1 消息ID生成: 使用UUID v4")
            .sends("two connections")
            .requires("welcome ids are UUID v4 and differ")
            .run(|c| Box::pin(core_ids_are_uuid_v4(c))),
    ]
}

/// The three messages every healthy exchange produces.
async fn exchange(ctx: &Ctx) -> Result<Vec<Value>, crate::case::Failure> {
    let (_, welcome) = welcomed(ctx, Some(&unique_node_id())).await?;
    let mut node = Node::register(ctx).await?;
    let (_, ack) = node.heartbeat(0.0).await?;
    Ok(vec![welcome, ack])
}

async fn fields_present_and_typed(ctx: Ctx) -> CaseResult {
    // "所有WebSocket消息采用统一的JSON格式: {type, id, timestamp, data}"
    for message in exchange(&ctx).await? {
        for field in ["type", "id", "timestamp"] {
            ensure(
                message[field].is_string(),
                format!("`{field}` as a string"),
                compact(&message),
            )?;
        }
        ensure(
            message["data"].is_object(),
            "`data` as an object",
            compact(&message),
        )?;
    }
    Ok(Outcome::Pass)
}

async fn timestamps_rfc3339(ctx: Ctx) -> CaseResult {
    let mut naive = Vec::new();
    for message in exchange(&ctx).await? {
        let stamp = str_at(&message, "/timestamp")?;
        match timestamp_form(stamp) {
            TimestampForm::Rfc3339 => {}
            TimestampForm::IsoWithoutOffset => naive.push(stamp.to_owned()),
            TimestampForm::Invalid => {
                return Err(crate::case::Failure::mismatch(
                    "an RFC 3339 timestamp",
                    compact(&message),
                ))
            }
        }
    }
    if naive.is_empty() {
        Ok(Outcome::Pass)
    } else {
        Ok(Outcome::Variant(format!(
            "ISO 8601 without a UTC offset: {}",
            naive.join(", ")
        )))
    }
}

async fn core_ids_are_uuid_v4(ctx: Ctx) -> CaseResult {
    let (_, first) = welcomed(&ctx, Some(&unique_node_id())).await?;
    let (_, second) = welcomed(&ctx, Some(&unique_node_id())).await?;
    let (a, b) = (str_at(&first, "/id")?, str_at(&second, "/id")?);
    ensure(
        is_uuid_v4(a) && is_uuid_v4(b),
        "UUID v4 message ids",
        format!("{a}, {b}"),
    )?;
    ensure(
        a != b,
        "different ids for different messages",
        format!("{a} twice"),
    )?;
    Ok(Outcome::Pass)
}
