//! node_register → register_response (001 §1 节点注册).

use super::{unique_node_id, welcomed, Node};
use crate::case::{Case, CaseResult, Failure, Outcome};
use crate::check::{bool_at, compact, ensure, ensure_eq, str_at};
use crate::target::Ctx;
use crate::wire::nodemgr as wire;
use serde_json::{json, Value};

pub fn cases() -> Vec<Case> {
    vec![
        Case::must("nodemgr/register/response-success")
            .documented("001 §1 节点注册 响应示例")
            .sends("node_register after the welcome")
            .requires("a register_response with success=true")
            .run(|c| Box::pin(response_success(c))),
        Case::must("nodemgr/register/response-echoes-request-id")
            .documented("001 §1 节点注册 响应示例 (same id as the request)")
            .sends("node_register with a fresh id")
            .requires("register_response.id is the request's id")
            .run(|c| Box::pin(response_echoes_request_id(c))),
        Case::must("nodemgr/register/response-echoes-node-id")
            .documented("001 §1 节点注册 响应示例")
            .sends("node_register for a node_id")
            .requires("register_response.data.node_id is that node_id")
            .run(|c| Box::pin(response_echoes_node_id(c))),
        Case::should("nodemgr/register/response-has-message")
            .documented("001 §1 节点注册 响应示例")
            .sends("node_register")
            .requires("register_response.data.message is a string")
            .run(|c| Box::pin(response_has_message(c))),
        Case::must("nodemgr/register/node-stored")
            .documented("001 概述: stored in the core; §节点注册流程")
            .sends("node_register with hostname, ip_address and os_info")
            .requires("the core's operator view lists the node with those fields")
            .run(|c| Box::pin(node_stored(c))),
        Case::should("nodemgr/register/without-node-id-uses-connection-id")
            .inferred(
                "C2 node_id rules: a register without node_id registers the connection's node_id",
            )
            .sends("node_register whose data has no node_id, on a connection with a URL node_id")
            .requires("success=true for the URL's node_id")
            .run(|c| Box::pin(without_node_id_uses_connection_id(c))),
        Case::should("nodemgr/register/node-id-cannot-change")
            .inferred("C2 node_id rules: a connection speaks for one node")
            .sends("a second node_register with another node_id on a registered connection")
            .requires("register_response with success=false")
            .run(|c| Box::pin(node_id_cannot_change(c))),
    ]
}

/// Registers a fresh node and returns the request id, node_id and the response.
async fn register_once(ctx: &Ctx) -> Result<(String, String, Value), Failure> {
    let node_id = unique_node_id();
    let (mut ws, _) = welcomed(ctx, Some(&node_id)).await?;
    let id = wire::fresh_id();
    ws.send_json(&wire::node_register(&id, &node_id)).await?;
    let response = ws.expect_type("register_response").await?;
    Ok((id, node_id, response))
}

async fn response_success(ctx: Ctx) -> CaseResult {
    let (_, _, response) = register_once(&ctx).await?;
    ensure_eq(
        "register_response.data.success",
        true,
        bool_at(&response, "/data/success")?,
    )?;
    Ok(Outcome::Pass)
}

async fn response_echoes_request_id(ctx: Ctx) -> CaseResult {
    let (id, _, response) = register_once(&ctx).await?;
    ensure_eq(
        "register_response.id",
        id.as_str(),
        str_at(&response, "/id")?,
    )?;
    Ok(Outcome::Pass)
}

async fn response_echoes_node_id(ctx: Ctx) -> CaseResult {
    let (_, node_id, response) = register_once(&ctx).await?;
    ensure_eq(
        "register_response.data.node_id",
        node_id.as_str(),
        str_at(&response, "/data/node_id")?,
    )?;
    Ok(Outcome::Pass)
}

async fn response_has_message(ctx: Ctx) -> CaseResult {
    let (_, _, response) = register_once(&ctx).await?;
    str_at(&response, "/data/message")?;
    Ok(Outcome::Pass)
}

async fn node_stored(ctx: Ctx) -> CaseResult {
    let operator = ctx.operator()?.clone();
    let node = Node::register(&ctx).await?;
    let stored = operator.node(&node.node_id).await?;
    let stored = stored.ok_or_else(|| {
        Failure::mismatch("the registered node in the operator view", "no such node")
    })?;
    ensure_eq(
        "stored hostname",
        json!("conformance-host"),
        stored["hostname"].clone(),
    )?;
    ensure_eq(
        "stored os_info",
        json!("Conformance OS 1.0"),
        stored["os_info"].clone(),
    )?;
    ensure_eq(
        "stored ip_address",
        json!("127.0.0.1"),
        stored["ip_address"].clone(),
    )?;
    Ok(Outcome::Pass)
}

async fn without_node_id_uses_connection_id(ctx: Ctx) -> CaseResult {
    let node_id = unique_node_id();
    let (mut ws, _) = welcomed(&ctx, Some(&node_id)).await?;
    let data = json!({ "hostname": "conformance-host", "ip_address": "127.0.0.1", "os_info": "x" });
    ws.send_json(&wire::envelope("node_register", &wire::fresh_id(), data))
        .await?;
    let response = ws.expect_type("register_response").await?;
    let ok = response["data"]["success"] == true && response["data"]["node_id"] == node_id.as_str();
    ensure(
        ok,
        format!("success=true for {node_id}"),
        compact(&response),
    )?;
    Ok(Outcome::Pass)
}

async fn node_id_cannot_change(ctx: Ctx) -> CaseResult {
    let mut node = Node::register(&ctx).await?;
    let other = unique_node_id();
    node.ws
        .send_json(&wire::node_register(&wire::fresh_id(), &other))
        .await?;
    let response = node.ws.expect_type("register_response").await?;
    ensure_eq(
        "register_response.data.success",
        false,
        bool_at(&response, "/data/success")?,
    )?;
    Ok(Outcome::Pass)
}
