//! Bad frames: "如果在处理消息时发生错误，服务器将记录错误日志并尝试继续处理其他消息。"
//! The document only asks the server to log and go on; the reference also answers with an
//! error response (C4), which clients can act on. Silence is graded as a SHOULD missed.

use super::{is_refusal, Client};
use crate::case::{Case, CaseResult, Failure, Outcome};
use crate::check::{compact, ensure};
use crate::client::Event;
use crate::target::Ctx;
use crate::wire::cmdrelay as wire;
use serde_json::Value;

pub fn cases() -> Vec<Case> {
    vec![
        Case::should("cmdrelay/errors/malformed-json-answered")
            .inferred("C4: text that is not JSON is answered with 400 PARSE_ERROR")
            .sends("`{\"cmd\": \"checkDevice\"` (cut short) on an initialised connection")
            .requires("an error response (code other than \"0\"/\"1\")")
            .run(|c| Box::pin(malformed_json_answered(c))),
        Case::should("cmdrelay/errors/missing-cmd-answered")
            .inferred("C4: a frame without cmd is answered with 400 PARSE_ERROR")
            .sends("`{\"extra\":{}}` on an initialised connection")
            .requires("an error response")
            .run(|c| Box::pin(missing_cmd_answered(c))),
        Case::should("cmdrelay/errors/unknown-cmd-answered")
            .inferred("C4: an unknown cmd is answered with 404 UNKNOWN_COMMAND")
            .sends("`{\"cmd\":\"reboot\"}` on an initialised connection")
            .requires("an error response")
            .run(|c| Box::pin(unknown_cmd_answered(c))),
        Case::should("cmdrelay/errors/error-response-shape")
            .inferred("C4: errors are ResponseMessages with extra.error and extra.message")
            .sends("`{\"cmd\":\"reboot\"}` on an initialised connection")
            .requires("cmd and code strings; extra.error and extra.message strings")
            .run(|c| Box::pin(error_response_shape(c))),
        Case::must("cmdrelay/errors/connection-survives-errors")
            .documented("003 §错误处理: 尝试继续处理其他消息")
            .sends("malformed JSON, a frame without cmd and an unknown cmd, then checkDevice")
            .requires("the checkDevice is still answered on the same connection")
            .run(|c| Box::pin(connection_survives_errors(c))),
    ]
}

const BAD_FRAMES: &[&str] = &[
    r#"{"cmd": "checkDevice""#,
    r#"{"extra":{}}"#,
    r#"{"cmd":"reboot"}"#,
];

async fn joined(ctx: &Ctx) -> Result<(Client, crate::client::RoomTokens), Failure> {
    let tokens = ctx.cmdrelay()?.tokens.rooms(1).await?;
    let (client, _) = Client::join(ctx, "device", tokens.get(0)).await?;
    Ok((client, tokens))
}

async fn answered(ctx: Ctx, frame: &str) -> CaseResult {
    let (mut client, _tokens) = joined(&ctx).await?;
    client.ws.send_text(frame).await?;
    let reply = error_reply(&mut client, &ctx).await?;
    ensure(
        reply["code"] != "0",
        "an error code (not \"0\"/\"1\")",
        compact(&reply),
    )?;
    Ok(Outcome::Pass)
}

async fn error_reply(client: &mut Client, ctx: &Ctx) -> Result<Value, Failure> {
    match client.next(ctx.wait).await {
        Event::Json(reply) if is_refusal(&reply) => Ok(reply),
        other => Err(Failure::mismatch("an error response", other.describe())),
    }
}

async fn malformed_json_answered(ctx: Ctx) -> CaseResult {
    answered(ctx, BAD_FRAMES[0]).await
}

async fn missing_cmd_answered(ctx: Ctx) -> CaseResult {
    answered(ctx, BAD_FRAMES[1]).await
}

async fn unknown_cmd_answered(ctx: Ctx) -> CaseResult {
    answered(ctx, BAD_FRAMES[2]).await
}

async fn error_response_shape(ctx: Ctx) -> CaseResult {
    let (mut client, _tokens) = joined(&ctx).await?;
    client.ws.send_text(BAD_FRAMES[2]).await?;
    let reply = error_reply(&mut client, &ctx).await?;
    let shown = compact(&reply);
    let typed = reply["cmd"].is_string()
        && reply["code"].is_string()
        && reply["extra"]["error"].is_string()
        && reply["extra"]["message"].is_string();
    ensure(
        typed,
        "string cmd, code, extra.error and extra.message",
        shown,
    )?;
    Ok(Outcome::Pass)
}

async fn connection_survives_errors(ctx: Ctx) -> CaseResult {
    let (mut client, _tokens) = joined(&ctx).await?;
    for frame in BAD_FRAMES {
        client.ws.send_text(frame).await?;
    }
    client.ws.send_json(&wire::check_device()).await?;
    // Answers to the bad frames (if any) come first, then the checkDevice answer.
    for _ in 0..=BAD_FRAMES.len() {
        match client.next(ctx.wait).await {
            Event::Json(reply) if reply["cmd"] == "checkDevice" && reply["code"] == "0" => {
                return Ok(Outcome::Pass)
            }
            Event::Json(_) => continue,
            other => {
                return Err(Failure::mismatch(
                    "the connection to go on serving after bad frames",
                    other.describe(),
                ))
            }
        }
    }
    Err(Failure::mismatch(
        "a checkDevice answer after the bad frames",
        "only other messages",
    ))
}
