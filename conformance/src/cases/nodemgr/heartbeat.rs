//! heartbeat → heartbeat_ack, metrics stored (001 §2 心跳与监控数据, §心跳监控流程).

use super::{expect_error_code, unique_node_id, welcomed, Node};
use crate::case::{Case, CaseResult, Failure, Outcome};
use crate::check::{bool_at, compact, ensure, ensure_eq, f64_at, str_at};
use crate::target::Ctx;
use crate::wire::nodemgr as wire;

/// Heartbeats sent back to back in the ordering case.
const PIPELINED: usize = 20;

pub fn cases() -> Vec<Case> {
    vec![
        Case::must("nodemgr/heartbeat/ack-echoes-request-id")
            .documented("001 §2 心跳与监控数据 响应示例")
            .sends("a heartbeat from a registered node")
            .requires("heartbeat_ack with the same id")
            .run(|c| Box::pin(ack_echoes_request_id(c))),
        Case::must("nodemgr/heartbeat/ack-received-true")
            .documented("001 §2 心跳与监控数据 响应示例")
            .sends("a heartbeat from a registered node")
            .requires("heartbeat_ack.data.received is true")
            .run(|c| Box::pin(ack_received_true(c))),
        Case::must("nodemgr/heartbeat/ack-names-the-node")
            .documented("001 §2 心跳与监控数据 响应示例")
            .sends("a heartbeat from a registered node")
            .requires("heartbeat_ack.data.node_id is the node's id")
            .run(|c| Box::pin(ack_names_the_node(c))),
        Case::must("nodemgr/heartbeat/metrics-stored")
            .documented("001 §心跳监控流程: 存储监控数据到数据库")
            .sends("two heartbeats with distinct metrics")
            .requires(
                "once acked, both samples are in the node's stored history and the latest is shown",
            )
            .run(|c| Box::pin(metrics_stored(c))),
        Case::must("nodemgr/heartbeat/each-acked-in-order")
            .inferred("C7 replies echo request ids; one reply per request, in order")
            .sends("20 heartbeats back to back")
            .requires("20 heartbeat_acks with the 20 request ids (in another order: non-strict)")
            .run(|c| Box::pin(each_acked_in_order(c))),
        Case::must("nodemgr/heartbeat/before-register-is-node-not-found")
            .inferred("C3 registration comes first: NODE_NOT_FOUND")
            .sends("a heartbeat on a welcomed connection that never registered")
            .requires("an `error` with NODE_NOT_FOUND")
            .run(|c| Box::pin(before_register_is_node_not_found(c))),
        Case::should("nodemgr/heartbeat/foreign-node-id-is-node-not-found")
            .inferred("C3: a heartbeat must name the registered node")
            .sends("a heartbeat naming another node_id on a registered connection")
            .requires("an `error` with NODE_NOT_FOUND")
            .run(|c| Box::pin(foreign_node_id_is_node_not_found(c))),
    ]
}

async fn ack_echoes_request_id(ctx: Ctx) -> CaseResult {
    let mut node = Node::register(&ctx).await?;
    let (id, ack) = node.heartbeat(0.0).await?;
    ensure_eq(
        "heartbeat_ack type",
        "heartbeat_ack",
        str_at(&ack, "/type")?,
    )?;
    ensure_eq("heartbeat_ack.id", id.as_str(), str_at(&ack, "/id")?)?;
    Ok(Outcome::Pass)
}

async fn ack_received_true(ctx: Ctx) -> CaseResult {
    let mut node = Node::register(&ctx).await?;
    let (_, ack) = node.heartbeat(0.0).await?;
    ensure_eq(
        "heartbeat_ack.data.received",
        true,
        bool_at(&ack, "/data/received")?,
    )?;
    Ok(Outcome::Pass)
}

async fn ack_names_the_node(ctx: Ctx) -> CaseResult {
    let mut node = Node::register(&ctx).await?;
    let (_, ack) = node.heartbeat(0.0).await?;
    ensure_eq(
        "heartbeat_ack.data.node_id",
        node.node_id.as_str(),
        str_at(&ack, "/data/node_id")?,
    )?;
    Ok(Outcome::Pass)
}

async fn metrics_stored(ctx: Ctx) -> CaseResult {
    let operator = ctx.operator()?.clone();
    let mut node = Node::register(&ctx).await?;
    for seed in [1.0, 2.0] {
        let (_, ack) = node.heartbeat(seed).await?;
        ensure(
            ack["type"] == "heartbeat_ack",
            "heartbeat_ack",
            compact(&ack),
        )?;
    }
    // Acked means stored: read right after the ack, with no retry.
    let history = operator.metric_history(&node.node_id, 10).await?;
    let cpus: Vec<f64> = history
        .iter()
        .filter_map(|s| s["cpu_usage"].as_f64())
        .collect();
    ensure(
        cpus.contains(&11.25) && cpus.contains(&12.25),
        "stored cpu_usage 11.25 and 12.25",
        format!("{cpus:?}"),
    )?;
    let stored = operator
        .node(&node.node_id)
        .await?
        .ok_or_else(|| Failure::mismatch("the node", "none"))?;
    ensure_eq(
        "latest load_average",
        3.125,
        f64_at(&stored, "/metrics/load_average")?,
    )?;
    Ok(Outcome::Pass)
}

async fn each_acked_in_order(ctx: Ctx) -> CaseResult {
    let mut node = Node::register(&ctx).await?;
    let ids: Vec<String> = (0..PIPELINED).map(|_| wire::fresh_id()).collect();
    let frames = ids
        .iter()
        .map(|id| wire::heartbeat(id, &node.node_id, wire::metrics(0.0)).to_string())
        .collect();
    node.ws.send_burst(frames).await?;
    let mut acked = Vec::new();
    for _ in 0..PIPELINED {
        let ack = node
            .ws
            .expect_message("a heartbeat_ack for each heartbeat")
            .await?;
        ensure(
            ack["type"] == "heartbeat_ack",
            "heartbeat_ack",
            compact(&ack),
        )?;
        acked.push(str_at(&ack, "/id")?.to_owned());
    }
    let mut sorted = (acked.clone(), ids.clone());
    sorted.0.sort();
    sorted.1.sort();
    ensure(
        sorted.0 == sorted.1,
        "one ack per heartbeat id",
        format!("{acked:?}"),
    )?;
    if acked == ids {
        Ok(Outcome::Pass)
    } else {
        Ok(Outcome::Variant(
            "every heartbeat was acked, but not in the order sent".to_owned(),
        ))
    }
}

async fn before_register_is_node_not_found(ctx: Ctx) -> CaseResult {
    let node_id = unique_node_id();
    let (mut ws, _) = welcomed(&ctx, Some(&node_id)).await?;
    ws.send_json(&wire::heartbeat(
        &wire::fresh_id(),
        &node_id,
        wire::metrics(0.0),
    ))
    .await?;
    let reply = ws.expect_message("an `error` with NODE_NOT_FOUND").await?;
    expect_error_code(&reply, "NODE_NOT_FOUND")?;
    Ok(Outcome::Pass)
}

async fn foreign_node_id_is_node_not_found(ctx: Ctx) -> CaseResult {
    let mut node = Node::register(&ctx).await?;
    let other = unique_node_id();
    node.ws
        .send_json(&wire::heartbeat(
            &wire::fresh_id(),
            &other,
            wire::metrics(0.0),
        ))
        .await?;
    let reply = node
        .ws
        .expect_message("an `error` with NODE_NOT_FOUND")
        .await?;
    expect_error_code(&reply, "NODE_NOT_FOUND")?;
    Ok(Outcome::Pass)
}
