//! Connecting: token, welcome, node_id (001 §连接方式, §5 连接欢迎消息).

use super::{connect, unique_node_id, welcomed};
use crate::case::{Case, CaseResult, Failure, Outcome};
use crate::check::{ensure, ensure_eq, is_uuid_v4, str_at};
use crate::client::ws::ConnectError;
use crate::client::{Event, WsClient};
use crate::target::Ctx;

pub fn cases() -> Vec<Case> {
    vec![
        Case::must("nodemgr/connection/welcome-first")
            .documented("001 §5 连接欢迎消息")
            .sends("a connection with the right token")
            .requires("the first frame is a `welcome` message")
            .run(|c| Box::pin(welcome_first(c))),
        Case::must("nodemgr/connection/welcome-echoes-url-node-id")
            .documented("001 §连接方式 node_id")
            .sends("a connection with node_id in the URL")
            .requires("welcome.data.node_id is the URL's node_id")
            .run(|c| Box::pin(welcome_echoes_url_node_id(c))),
        Case::must("nodemgr/connection/generated-node-id-is-uuid")
            .documented("001 §连接方式: 不提供时自动生成UUID")
            .sends("a connection without node_id")
            .requires("welcome.data.node_id is a generated UUID")
            .run(|c| Box::pin(generated_node_id_is_uuid(c))),
        Case::should("nodemgr/connection/generated-node-ids-differ")
            .documented("001 §连接方式: 节点唯一标识符")
            .sends("two connections without node_id")
            .requires("each is given a different node_id")
            .run(|c| Box::pin(generated_node_ids_differ(c))),
        Case::should("nodemgr/connection/welcome-has-message")
            .documented("001 §5 连接欢迎消息")
            .sends("a connection with the right token")
            .requires("welcome.data.message is a string")
            .run(|c| Box::pin(welcome_has_message(c))),
        Case::must("nodemgr/connection/wrong-token-rejected")
            .documented("001 §4 错误处理, §错误码说明 INVALID_TOKEN")
            .sends("a connection with a wrong token")
            .requires("no welcome; an `error` with INVALID_TOKEN and a close (C1)")
            .run(|c| Box::pin(wrong_token_rejected(c))),
        Case::must("nodemgr/connection/missing-token-rejected")
            .inferred("C1 token rejection: a missing token is a wrong token")
            .sends("a connection without a token")
            .requires("no welcome; an `error` with INVALID_TOKEN and a close (C1)")
            .run(|c| Box::pin(missing_token_rejected(c))),
    ]
}

async fn welcome_first(ctx: Ctx) -> CaseResult {
    let mut ws = connect(&ctx, "node", Some(&unique_node_id())).await?;
    // 001 §节点注册流程: "C->>N: 欢迎消息" comes right after the connection.
    ws.expect_type("welcome").await?;
    Ok(Outcome::Pass)
}

async fn welcome_echoes_url_node_id(ctx: Ctx) -> CaseResult {
    let node_id = unique_node_id();
    let (_, welcome) = welcomed(&ctx, Some(&node_id)).await?;
    ensure_eq(
        "welcome.data.node_id",
        node_id.as_str(),
        str_at(&welcome, "/data/node_id")?,
    )?;
    Ok(Outcome::Pass)
}

async fn generated_node_id_is_uuid(ctx: Ctx) -> CaseResult {
    let (_, welcome) = welcomed(&ctx, None).await?;
    // "node_id: 节点唯一标识符 (可选，不提供时自动生成UUID)"
    let generated = str_at(&welcome, "/data/node_id")?;
    let is_uuid = uuid::Uuid::parse_str(generated).is_ok();
    ensure(is_uuid, "a UUID as welcome.data.node_id", generated)?;
    if is_uuid_v4(generated) {
        Ok(Outcome::Pass)
    } else {
        Ok(Outcome::Variant(format!(
            "{generated} is a UUID but not version 4"
        )))
    }
}

async fn generated_node_ids_differ(ctx: Ctx) -> CaseResult {
    let (_, first) = welcomed(&ctx, None).await?;
    let (_, second) = welcomed(&ctx, None).await?;
    let (a, b) = (
        str_at(&first, "/data/node_id")?,
        str_at(&second, "/data/node_id")?,
    );
    ensure(
        a != b,
        "two different generated node_ids",
        format!("{a} twice"),
    )?;
    Ok(Outcome::Pass)
}

async fn welcome_has_message(ctx: Ctx) -> CaseResult {
    let (_, welcome) = welcomed(&ctx, Some(&unique_node_id())).await?;
    str_at(&welcome, "/data/message")?;
    Ok(Outcome::Pass)
}

async fn wrong_token_rejected(ctx: Ctx) -> CaseResult {
    let endpoint = ctx.nodemgr()?;
    let url = endpoint.url(Some("conformance-wrong-token"), Some(&unique_node_id()));
    expect_token_rejection(&ctx, &url).await
}

async fn missing_token_rejected(ctx: Ctx) -> CaseResult {
    let url = ctx.nodemgr()?.url(None, Some(&unique_node_id()));
    expect_token_rejection(&ctx, &url).await
}

/// C1: `error` INVALID_TOKEN then a close; an HTTP 401/403 refusal is an accepted variant.
async fn expect_token_rejection(ctx: &Ctx, url: &str) -> CaseResult {
    let mut ws = match WsClient::try_connect("node", url, &ctx.transcript, ctx.wait).await {
        Err(ConnectError::Refused(status @ (401 | 403))) => {
            return Ok(Outcome::Variant(format!(
                "the upgrade was refused with HTTP {status}; the node never sees INVALID_TOKEN"
            )))
        }
        Err(other) => {
            return Err(Failure::mismatch(
                "an `error` INVALID_TOKEN or an HTTP 401/403",
                format!("{other:?}"),
            ))
        }
        Ok(ws) => ws,
    };
    let first = ws.expect_message("an `error` with INVALID_TOKEN").await?;
    super::expect_error_code(&first, "INVALID_TOKEN")?;
    match ws.next_event_within(ctx.slow_wait).await {
        Event::Close(_) | Event::Dropped(_) => Ok(Outcome::Pass),
        other => Err(Failure::mismatch(
            "the connection to be closed after INVALID_TOKEN",
            other.describe(),
        )),
    }
}
