//! init comes first: "客户端在连接建立后发送的第一条消息，用于初始化连接。" (C4)

use super::{quiet_window, Client};
use crate::case::{Case, CaseResult, Failure, Outcome};
use crate::check::compact;
use crate::client::Event;
use crate::target::Ctx;
use crate::wire::cmdrelay as wire;
use serde_json::Value;

pub fn cases() -> Vec<Case> {
    vec![
        Case::must("cmdrelay/order/check-device-before-init-not-answered")
            .documented("003 §初始化消息: 客户端在连接建立后发送的第一条消息")
            .sends("checkDevice before init")
            .requires("no checkDevice answer (code \"0\" or \"1\"): the client is in no room yet")
            .run(|c| Box::pin(check_device_before_init_not_answered(c))),
        Case::should("cmdrelay/order/error-before-init")
            .inferred("C4: anything before init is refused with 403 NOT_INITIALIZED")
            .sends("checkDevice before init")
            .requires("an error response (code other than \"0\"/\"1\")")
            .run(|c| Box::pin(error_before_init(c))),
        Case::must("cmdrelay/order/init-after-early-error-works")
            .documented("003 §错误处理: 尝试继续处理其他消息")
            .sends("checkDevice before init, then init")
            .requires("the init is accepted and the client can use the room")
            .run(|c| Box::pin(init_after_early_error_works(c))),
        Case::must("cmdrelay/order/execute-before-init-not-relayed")
            .documented("003 §初始化消息: 客户端在连接建立后发送的第一条消息")
            .sends("execute before init, then init into a room with another client")
            .requires("the other client never receives the early execute")
            .run(|c| Box::pin(execute_before_init_not_relayed(c))),
    ]
}

/// A checkDevice answer as a member of a room gets it.
fn is_device_answer(message: &Value) -> bool {
    message["cmd"] == "checkDevice" && (message["code"] == "0" || message["code"] == "1")
}

async fn check_device_before_init_not_answered(ctx: Ctx) -> CaseResult {
    let mut client = Client::connect(&ctx, "device").await?;
    client.ws.send_json(&wire::check_device()).await?;
    let event = client.next(ctx.wait).await;
    if matches!(&event, Event::Json(m) if is_device_answer(m)) {
        return Err(Failure::mismatch(
            "no room answer before init (an error, a close, or nothing)",
            event.describe(),
        ));
    }
    Ok(Outcome::Pass)
}

async fn error_before_init(ctx: Ctx) -> CaseResult {
    let mut client = Client::connect(&ctx, "device").await?;
    client.ws.send_json(&wire::check_device()).await?;
    match client.next(ctx.wait).await {
        Event::Json(reply) if !is_device_answer(&reply) => {
            if reply["code"] == "403" {
                Ok(Outcome::Pass)
            } else {
                Ok(Outcome::Variant(format!(
                    "refused with {} (the reference: \"403\")",
                    compact(&reply)
                )))
            }
        }
        Event::Close(Some((code, reason))) => Ok(Outcome::Variant(format!(
            "closed with {code} {reason:?} instead of an error response"
        ))),
        other => Err(Failure::mismatch("an error response", other.describe())),
    }
}

async fn init_after_early_error_works(ctx: Ctx) -> CaseResult {
    let tokens = ctx.cmdrelay()?.tokens.rooms(1).await?;
    let mut client = Client::connect(&ctx, "device").await?;
    client.ws.send_json(&wire::check_device()).await?;
    let _ = client.next(quiet_window(&ctx)).await;
    client.ws.send_json(&wire::init(tokens.get(0))).await?;
    let response = client
        .reply("an answer to init after an early error")
        .await?;
    let code = client.device_code().await?;
    if code != "0" {
        return Err(Failure::mismatch(
            "checkDevice \"0\" for the only client of the room",
            format!(
                "init answer {}, then checkDevice {code:?}",
                compact(&response)
            ),
        ));
    }
    Ok(Outcome::Pass)
}

async fn execute_before_init_not_relayed(ctx: Ctx) -> CaseResult {
    let tokens = ctx.cmdrelay()?.tokens.rooms(1).await?;
    let (mut waiting, _) = Client::join(&ctx, "device", tokens.get(0)).await?;
    let mut early = Client::connect(&ctx, "early").await?;
    let command = wire::unique_command("early");
    early.ws.send_json(&wire::execute(&command)).await?;
    let _ = early.next(quiet_window(&ctx)).await;
    early.ws.send_json(&wire::init(tokens.get(0))).await?;
    early.reply("an answer to init").await?;
    match waiting.next(ctx.wait).await {
        Event::Json(m) if m["extra"]["command"] == command.as_str() => Err(Failure::mismatch(
            "the execute sent before init never to be relayed",
            compact(&m),
        )),
        _ => Ok(Outcome::Pass),
    }
}
