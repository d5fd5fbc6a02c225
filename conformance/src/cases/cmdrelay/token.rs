//! Token rejection: "如果初始化消息中的令牌无效，服务器将返回错误响应并关闭连接。" (C3)

use super::Client;
use crate::case::{Case, CaseResult, Failure, Outcome};
use crate::check::compact;
use crate::client::{Event, TokenSource};
use crate::target::Ctx;
use crate::wire::cmdrelay as wire;
use serde_json::{json, Value};

pub fn cases() -> Vec<Case> {
    vec![
        Case::must("cmdrelay/token/unknown-token-gets-error-response")
            .documented("003 §错误处理: 令牌无效，服务器将返回错误响应")
            .sends("init with a token the server never issued")
            .requires("an error response (code other than \"1\"); strictly code \"401\" with extra.error INVALID_TOKEN")
            .run(|c| Box::pin(unknown_token_gets_error_response(c))),
        Case::must("cmdrelay/token/unknown-token-closes-connection")
            .documented("003 §错误处理: 令牌无效 ... 并关闭连接")
            .sends("init with a token the server never issued")
            .requires("the server closes the connection after its error response")
            .run(|c| Box::pin(unknown_token_closes_connection(c))),
        Case::must("cmdrelay/token/missing-token-rejected")
            .inferred("C3: an init without a string token is an invalid token")
            .sends("init without a token field")
            .requires("an error response, then the connection closes")
            .run(|c| Box::pin(missing_token_rejected(c))),
        Case::must("cmdrelay/token/expired-token-rejected")
            .inferred("C3: tokens expire; an expired token is an invalid token")
            .sends("init with a token past its expiry")
            .requires("an error response, then the connection closes")
            .run(|c| Box::pin(expired_token_rejected(c))),
    ]
}

/// Sends `init` as given and returns what came back first (heartbeats skipped).
async fn first_answer(ctx: &Ctx, init: &Value) -> Result<(Client, Event), Failure> {
    let mut client = Client::connect(ctx, "device").await?;
    client.ws.send_json(init).await?;
    let event = client.next(ctx.wait).await;
    Ok((client, event))
}

/// The error response a rejected init must get.
fn expect_refusal(event: &Event) -> Result<&Value, Failure> {
    match event {
        Event::Json(reply) if super::is_refusal(reply) => Ok(reply),
        other => Err(Failure::mismatch(
            "an error response (a ResponseMessage whose code is not \"1\")",
            other.describe(),
        )),
    }
}

/// After the error: a close frame passes; a dropped TCP connection closes too, less cleanly.
async fn expect_closed(client: &mut Client, ctx: &Ctx) -> CaseResult {
    match client.next(ctx.slow_wait).await {
        Event::Close(Some(_)) => Ok(Outcome::Pass),
        Event::Close(None) | Event::Dropped(_) => Ok(Outcome::Variant(
            "the connection ended without a close code".to_owned(),
        )),
        other => Err(Failure::mismatch(
            "the connection to be closed",
            other.describe(),
        )),
    }
}

async fn rejected(ctx: &Ctx, init: &Value) -> CaseResult {
    let (mut client, event) = first_answer(ctx, init).await?;
    expect_refusal(&event)?;
    expect_closed(&mut client, ctx).await
}

async fn unknown_token_gets_error_response(ctx: Ctx) -> CaseResult {
    let (_client, event) = first_answer(&ctx, &wire::init(&TokenSource::unknown())).await?;
    let reply = expect_refusal(&event)?;
    if reply["code"] == "401" && reply["extra"]["error"] == "INVALID_TOKEN" {
        return Ok(Outcome::Pass);
    }
    Ok(Outcome::Variant(format!(
        "refused with {} (the reference's code table: \"401\", extra.error INVALID_TOKEN)",
        compact(reply)
    )))
}

async fn unknown_token_closes_connection(ctx: Ctx) -> CaseResult {
    rejected(&ctx, &wire::init(&TokenSource::unknown())).await
}

async fn missing_token_rejected(ctx: Ctx) -> CaseResult {
    rejected(&ctx, &json!({ "cmd": "init" })).await
}

async fn expired_token_rejected(ctx: Ctx) -> CaseResult {
    let token = ctx.cmdrelay()?.expired_token().await?;
    rejected(&ctx, &wire::init(&token)).await
}
