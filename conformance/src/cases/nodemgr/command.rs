//! The command lifecycle (001 §3 命令执行, §命令执行流程). The suite plays the node; the
//! command is triggered through the operator API (C12).

use super::{expect_error_code, unique_node_id, welcomed, Node};
use crate::case::{Case, CaseResult, Failure, Outcome};
use crate::check::{bool_at, compact, ensure, ensure_eq, is_uuid_v4, str_at};
use crate::client::OperatorApi;
use crate::target::Ctx;
use crate::wire::nodemgr as wire;
use serde_json::Value;

pub fn cases() -> Vec<Case> {
    vec![
        Case::must("nodemgr/command/execute-command-delivered")
            .documented("001 §3 命令执行 命令下发示例")
            .sends("an operator command to a registered node")
            .requires("execute_command with the command_id, command_text and numeric timeout")
            .run(|c| Box::pin(execute_command_delivered(c))),
        Case::must("nodemgr/command/queued-until-started")
            .inferred("C8 command states")
            .sends("an operator command, then command_started")
            .requires("state queued before command_started, started after it")
            .run(|c| Box::pin(queued_until_started(c))),
        Case::must("nodemgr/command/result-acknowledged")
            .documented("001 §3 命令接收确认")
            .sends("command_started then command_result")
            .requires("command_received with the result's id, received=true and the node_id")
            .run(|c| Box::pin(result_acknowledged(c))),
        Case::must("nodemgr/command/result-stored")
            .documented("001 §命令执行流程: 存储命令结果到数据库")
            .sends("a command_result")
            .requires("once acknowledged, the command is finished with the exit code, stdout and stderr sent")
            .run(|c| Box::pin(result_stored(c))),
        Case::must("nodemgr/command/timeout-reported")
            .documented("001 §错误码说明 COMMAND_TIMEOUT (when: C8)")
            .sends("an operator command with a 1 s timeout, and no result")
            .requires("an `error` COMMAND_TIMEOUT after the timeout, and the command stored as timed_out")
            .run(|c| Box::pin(timeout_reported(c))),
        Case::should("nodemgr/command/unknown-result-not-received")
            .inferred("C8: a result for a command never sent is received=false")
            .sends("a command_result with a command_id the core never sent")
            .requires("command_received with received=false")
            .run(|c| Box::pin(unknown_result_not_received(c))),
        Case::should("nodemgr/command/unknown-started-not-received")
            .inferred("C8: bad input is never met with silence")
            .sends("a command_started with a command_id the core never sent")
            .requires("command_received with received=false, or an `error`")
            .run(|c| Box::pin(unknown_started_not_received(c))),
        Case::must("nodemgr/command/result-before-register-is-node-not-found")
            .inferred("C3 registration comes first: NODE_NOT_FOUND")
            .sends("a command_result on a connection that never registered")
            .requires("an `error` with NODE_NOT_FOUND")
            .run(|c| Box::pin(result_before_register_is_node_not_found(c))),
    ]
}

const COMMAND_TEXT: &str = "echo conformance";

/// A registered node that has just been sent a command: (node, operator, command_id, execute_command).
async fn node_with_command(
    ctx: &Ctx,
    timeout_secs: u64,
) -> Result<(Node, OperatorApi, String, Value), Failure> {
    let operator = ctx.operator()?.clone();
    let mut node = Node::register(ctx).await?;
    let command_id = operator
        .send_command(&node.node_id, COMMAND_TEXT, timeout_secs)
        .await?;
    let execute = node.ws.expect_type("execute_command").await?;
    Ok((node, operator, command_id, execute))
}

async fn execute_command_delivered(ctx: Ctx) -> CaseResult {
    let (_, _, command_id, execute) = node_with_command(&ctx, 30).await?;
    ensure_eq(
        "execute_command.data.command_id",
        command_id.as_str(),
        str_at(&execute, "/data/command_id")?,
    )?;
    ensure_eq(
        "execute_command.data.command_text",
        COMMAND_TEXT,
        str_at(&execute, "/data/command_text")?,
    )?;
    ensure(
        execute["data"]["timeout"].is_number(),
        "a numeric data.timeout",
        compact(&execute),
    )?;
    ensure(
        is_uuid_v4(str_at(&execute, "/id")?),
        "a UUID v4 message id (§最佳实践 1)",
        compact(&execute),
    )?;
    Ok(Outcome::Pass)
}

async fn queued_until_started(ctx: Ctx) -> CaseResult {
    let (mut node, operator, command_id, execute) = node_with_command(&ctx, 30).await?;
    ensure_eq(
        "state before command_started",
        "queued",
        str_at(&operator.command(&command_id).await?, "/state")?,
    )?;
    // The document's command_started echoes the execute_command's id.
    node.ws
        .send_json(&wire::command_started(
            str_at(&execute, "/id")?,
            &command_id,
        ))
        .await?;
    let state = poll_state(&operator, &command_id, "started", ctx.wait).await?;
    ensure_eq("state after command_started", "started", state.as_str())?;
    Ok(Outcome::Pass)
}

/// command_started has no reply, so its effect is read until it shows or the wait ends.
async fn poll_state(
    operator: &OperatorApi,
    command_id: &str,
    want: &str,
    wait: std::time::Duration,
) -> Result<String, Failure> {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let state = str_at(&operator.command(command_id).await?, "/state")?.to_owned();
        if state == want || tokio::time::Instant::now() >= deadline {
            return Ok(state);
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

async fn run_to_result(ctx: &Ctx) -> Result<(Node, OperatorApi, String, String, Value), Failure> {
    let (mut node, operator, command_id, execute) = node_with_command(ctx, 30).await?;
    node.ws
        .send_json(&wire::command_started(
            str_at(&execute, "/id")?,
            &command_id,
        ))
        .await?;
    let result_id = wire::fresh_id();
    let result = wire::command_result(&result_id, &command_id, 3, "conformance\n", "a warning\n");
    node.ws.send_json(&result).await?;
    let reply = node.ws.expect_message("command_received").await?;
    Ok((node, operator, command_id, result_id, reply))
}

async fn result_acknowledged(ctx: Ctx) -> CaseResult {
    let (node, _, _, result_id, reply) = run_to_result(&ctx).await?;
    ensure_eq("reply type", "command_received", str_at(&reply, "/type")?)?;
    ensure_eq(
        "command_received.id",
        result_id.as_str(),
        str_at(&reply, "/id")?,
    )?;
    ensure_eq(
        "command_received.data.received",
        true,
        bool_at(&reply, "/data/received")?,
    )?;
    ensure_eq(
        "command_received.data.node_id",
        node.node_id.as_str(),
        str_at(&reply, "/data/node_id")?,
    )?;
    Ok(Outcome::Pass)
}

async fn result_stored(ctx: Ctx) -> CaseResult {
    let (_, operator, command_id, _, reply) = run_to_result(&ctx).await?;
    ensure(
        reply["type"] == "command_received",
        "command_received",
        compact(&reply),
    )?;
    let stored = operator.command(&command_id).await?;
    ensure_eq("state", "finished", str_at(&stored, "/state")?)?;
    ensure_eq("exit_code", Some(3), stored["exit_code"].as_i64())?;
    ensure_eq("stdout", "conformance\n", str_at(&stored, "/stdout")?)?;
    ensure_eq("stderr", "a warning\n", str_at(&stored, "/stderr")?)?;
    Ok(Outcome::Pass)
}

async fn timeout_reported(ctx: Ctx) -> CaseResult {
    let (mut node, operator, command_id, execute) = node_with_command(&ctx, 1).await?;
    let notice = node
        .ws
        .expect_message_within("an `error` COMMAND_TIMEOUT", ctx.slow_wait)
        .await?;
    expect_error_code(&notice, "COMMAND_TIMEOUT")?;
    if notice["id"] != execute["id"] {
        let found = notice["data"]["details"]
            .as_str()
            .is_some_and(|d| d.contains(&command_id));
        ensure(
            found,
            "the error to name the command (its id or the command_id in details)",
            compact(&notice),
        )?;
    }
    ensure_eq(
        "stored state",
        "timed_out",
        str_at(&operator.command(&command_id).await?, "/state")?,
    )?;
    Ok(Outcome::Pass)
}

async fn unknown_result_not_received(ctx: Ctx) -> CaseResult {
    let mut node = Node::register(&ctx).await?;
    let result = wire::command_result(&wire::fresh_id(), "cmd-never-sent", 0, "", "");
    node.ws.send_json(&result).await?;
    let reply = node.ws.expect_type("command_received").await?;
    ensure_eq(
        "command_received.data.received",
        false,
        bool_at(&reply, "/data/received")?,
    )?;
    Ok(Outcome::Pass)
}

async fn result_before_register_is_node_not_found(ctx: Ctx) -> CaseResult {
    let (mut ws, _) = welcomed(&ctx, Some(&unique_node_id())).await?;
    ws.send_json(&wire::command_result(
        &wire::fresh_id(),
        "cmd-001",
        0,
        "",
        "",
    ))
    .await?;
    let reply = ws.expect_message("an `error` with NODE_NOT_FOUND").await?;
    expect_error_code(&reply, "NODE_NOT_FOUND")?;
    Ok(Outcome::Pass)
}

async fn unknown_started_not_received(ctx: Ctx) -> CaseResult {
    let mut node = Node::register(&ctx).await?;
    node.ws
        .send_json(&wire::command_started(&wire::fresh_id(), "cmd-never-sent"))
        .await?;
    let reply = node
        .ws
        .expect_message("a refusal of the unknown command")
        .await?;
    let refused = (reply["type"] == "command_received" && reply["data"]["received"] == false)
        || reply["type"] == "error";
    ensure(
        refused,
        "command_received with received=false (or an `error`)",
        compact(&reply),
    )?;
    Ok(Outcome::Pass)
}
