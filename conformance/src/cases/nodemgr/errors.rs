//! Error replies (001 §4 错误处理, §错误码说明).

use super::{expect_error_code, Node};
use crate::case::{Case, CaseResult, Outcome};
use crate::check::{compact, ensure, ensure_eq, str_at};
use crate::target::Ctx;
use crate::wire::nodemgr as wire;
use serde_json::json;

pub fn cases() -> Vec<Case> {
    vec![
        Case::must("nodemgr/errors/malformed-json-is-parse-error")
            .documented("001 §4 解析错误示例")
            .sends("a text frame that is not JSON")
            .requires("an `error` with PARSE_ERROR")
            .run(|c| Box::pin(malformed_json_is_parse_error(c))),
        Case::must("nodemgr/errors/missing-envelope-field-is-parse-error")
            .inferred("C5 PARSE_ERROR covers the envelope and the payload")
            .sends("four heartbeats, each missing one of type, id, timestamp, data")
            .requires("an `error` with PARSE_ERROR for each")
            .run(|c| Box::pin(missing_envelope_field_is_parse_error(c))),
        Case::must("nodemgr/errors/wrong-field-type-is-parse-error")
            .inferred("C5 PARSE_ERROR covers the envelope and the payload")
            .sends("a heartbeat whose cpu_usage is a string, and one whose data is a string")
            .requires("an `error` with PARSE_ERROR for each")
            .run(|c| Box::pin(wrong_field_type_is_parse_error(c))),
        Case::should("nodemgr/errors/bad-timestamp-is-parse-error")
            .inferred("C6 timestamps: nodes must send RFC 3339")
            .sends("a heartbeat with timestamp \"yesterday\"")
            .requires("an `error` with PARSE_ERROR")
            .run(|c| Box::pin(bad_timestamp_is_parse_error(c))),
        Case::must("nodemgr/errors/unknown-type")
            .documented("001 §4 未知消息类型错误")
            .sends("a message of type invalid_type")
            .requires("an `error` with UNKNOWN_MESSAGE_TYPE")
            .run(|c| Box::pin(unknown_type(c))),
        Case::should("nodemgr/errors/unknown-type-lists-supported-types")
            .documented("001 §4 未知消息类型错误: 支持的消息类型")
            .sends("a message of type invalid_type")
            .requires("details name node_register and heartbeat")
            .run(|c| Box::pin(unknown_type_lists_supported_types(c))),
        Case::should("nodemgr/errors/error-echoes-request-id")
            .inferred("C4 error replies echo the request id")
            .sends("an unknown type with a readable id")
            .requires("the `error` carries that id")
            .run(|c| Box::pin(error_echoes_request_id(c))),
        Case::must("nodemgr/errors/error-has-code-message-details")
            .documented("001 §4 错误消息示例")
            .sends("a text frame that is not JSON")
            .requires("error.data has string error_code and message (details missing: non-strict)")
            .run(|c| Box::pin(error_has_code_message_details(c))),
        Case::must("nodemgr/errors/connection-survives-errors")
            .documented("001 §最佳实践 3 错误处理: 所有操作都应该有相应的错误响应")
            .sends("a malformed frame, then a heartbeat on the same connection")
            .requires("the error, then a heartbeat_ack: an error does not end the session")
            .run(|c| Box::pin(connection_survives_errors(c))),
    ]
}

async fn reply_to(node: &mut Node, text: &str) -> Result<serde_json::Value, crate::case::Failure> {
    node.ws.send_text(text).await?;
    node.ws.expect_message("an `error` reply").await
}

async fn malformed_json_is_parse_error(ctx: Ctx) -> CaseResult {
    let mut node = Node::register(&ctx).await?;
    expect_error_code(
        &reply_to(&mut node, r#"{"type": "heartbeat", "id": "#).await?,
        "PARSE_ERROR",
    )?;
    Ok(Outcome::Pass)
}

async fn missing_envelope_field_is_parse_error(ctx: Ctx) -> CaseResult {
    let mut node = Node::register(&ctx).await?;
    for field in ["type", "id", "timestamp", "data"] {
        let mut frame = wire::heartbeat(&wire::fresh_id(), &node.node_id, wire::metrics(0.0));
        frame.as_object_mut().map(|o| o.remove(field));
        let reply = reply_to(&mut node, &frame.to_string()).await?;
        expect_error_code(&reply, "PARSE_ERROR")
            .map_err(|e| with_context(e, &format!("without `{field}`")))?;
    }
    Ok(Outcome::Pass)
}

fn with_context(failure: crate::case::Failure, context: &str) -> crate::case::Failure {
    match failure {
        crate::case::Failure::Mismatch { expected, actual } => crate::case::Failure::Mismatch {
            expected: format!("{expected} ({context})"),
            actual,
        },
        other => other,
    }
}

async fn wrong_field_type_is_parse_error(ctx: Ctx) -> CaseResult {
    let mut node = Node::register(&ctx).await?;
    let mut metrics = wire::metrics(0.0);
    metrics["cpu_usage"] = json!("high");
    let bad_metric = wire::heartbeat(&wire::fresh_id(), &node.node_id, metrics);
    let bad_data = wire::envelope("heartbeat", &wire::fresh_id(), json!("online"));
    for (what, frame) in [
        ("cpu_usage as a string", bad_metric),
        ("data as a string", bad_data),
    ] {
        let reply = reply_to(&mut node, &frame.to_string()).await?;
        expect_error_code(&reply, "PARSE_ERROR").map_err(|e| with_context(e, what))?;
    }
    Ok(Outcome::Pass)
}

async fn bad_timestamp_is_parse_error(ctx: Ctx) -> CaseResult {
    let mut node = Node::register(&ctx).await?;
    let mut frame = wire::heartbeat(&wire::fresh_id(), &node.node_id, wire::metrics(0.0));
    frame["timestamp"] = json!("yesterday");
    expect_error_code(
        &reply_to(&mut node, &frame.to_string()).await?,
        "PARSE_ERROR",
    )?;
    Ok(Outcome::Pass)
}

fn unknown_type_frame(id: &str) -> String {
    wire::envelope("invalid_type", id, json!({})).to_string()
}

async fn unknown_type(ctx: Ctx) -> CaseResult {
    let mut node = Node::register(&ctx).await?;
    let reply = reply_to(&mut node, &unknown_type_frame(&wire::fresh_id())).await?;
    expect_error_code(&reply, "UNKNOWN_MESSAGE_TYPE")?;
    Ok(Outcome::Pass)
}

async fn unknown_type_lists_supported_types(ctx: Ctx) -> CaseResult {
    let mut node = Node::register(&ctx).await?;
    let reply = reply_to(&mut node, &unknown_type_frame(&wire::fresh_id())).await?;
    let details = str_at(&reply, "/data/details")?;
    ensure(
        details.contains("node_register") && details.contains("heartbeat"),
        "details naming the supported types",
        details,
    )?;
    Ok(Outcome::Pass)
}

async fn error_echoes_request_id(ctx: Ctx) -> CaseResult {
    let mut node = Node::register(&ctx).await?;
    let id = wire::fresh_id();
    let reply = reply_to(&mut node, &unknown_type_frame(&id)).await?;
    ensure_eq("error.id", id.as_str(), str_at(&reply, "/id")?)?;
    Ok(Outcome::Pass)
}

async fn error_has_code_message_details(ctx: Ctx) -> CaseResult {
    let mut node = Node::register(&ctx).await?;
    let reply = reply_to(&mut node, "not json at all").await?;
    ensure_eq("type", "error", str_at(&reply, "/type")?)?;
    str_at(&reply, "/data/error_code")?;
    str_at(&reply, "/data/message")?;
    if reply["data"]["details"].is_string() {
        Ok(Outcome::Pass)
    } else {
        Ok(Outcome::Variant(format!(
            "no string details: {}",
            compact(&reply)
        )))
    }
}

async fn connection_survives_errors(ctx: Ctx) -> CaseResult {
    let mut node = Node::register(&ctx).await?;
    expect_error_code(&reply_to(&mut node, "{{{").await?, "PARSE_ERROR")?;
    let (_, ack) = node.heartbeat(0.0).await?;
    ensure(
        ack["type"] == "heartbeat_ack",
        "a heartbeat_ack after the error",
        compact(&ack),
    )?;
    Ok(Outcome::Pass)
}
