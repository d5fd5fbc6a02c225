//! execute and execute_result go to the other clients of the room, never back to the sender,
//! and "服务器处理后不返回响应" (C7).

use super::{quiet_window, room, Client};
use crate::case::{Case, CaseResult, Failure, Outcome};
use crate::check::{compact, ensure};
use crate::client::Event;
use crate::target::Ctx;
use crate::wire::cmdrelay as wire;
use serde_json::{json, Value};

/// Frames sent by the ordering case.
const ORDERED_FRAMES: usize = 20;

pub fn cases() -> Vec<Case> {
    vec![
        Case::must("cmdrelay/relay/execute-reaches-others")
            .documented("003 §执行命令消息 (execute)")
            .sends("execute from one client of a room of two")
            .requires("the other client receives cmd execute with the same extra")
            .run(|c| Box::pin(execute_reaches_others(c))),
        Case::must("cmdrelay/relay/execute-not-echoed-to-sender")
            .documented("003 §执行命令消息: 服务器处理后不返回响应")
            .sends("execute from one client of a room of two")
            .requires("the sender receives nothing: no echo, no answer")
            .run(|c| Box::pin(execute_not_echoed_to_sender(c))),
        Case::must("cmdrelay/relay/execute-result-reaches-others")
            .documented("003 §执行结果消息 (execute_result)")
            .sends("execute_result from one client of a room of two")
            .requires("the other client receives cmd execute_result with the same extra")
            .run(|c| Box::pin(execute_result_reaches_others(c))),
        Case::must("cmdrelay/relay/execute-result-not-echoed-to-sender")
            .documented("003 §执行结果消息: 服务器处理后不返回响应")
            .sends("execute_result from one client of a room of two")
            .requires("the sender receives nothing: no echo, no answer")
            .run(|c| Box::pin(execute_result_not_echoed_to_sender(c))),
        Case::must("cmdrelay/relay/reaches-every-other-client")
            .inferred("C7: a relay goes to every other client of the room")
            .sends("execute from one client of a room of three")
            .requires("both other clients receive it")
            .run(|c| Box::pin(reaches_every_other_client(c))),
        Case::must("cmdrelay/relay/isolated-between-rooms")
            .documented("003 §检查设备消息: 当前房间 (rooms are per token)")
            .sends("execute in one room while a client waits in another")
            .requires("the client of the other room receives nothing")
            .run(|c| Box::pin(isolated_between_rooms(c))),
        Case::must("cmdrelay/relay/preserves-extra")
            .inferred("C7: the frame is relayed as sent")
            .sends("execute whose extra holds nested objects, numbers and non-ASCII text, plus a top-level field")
            .requires("extra arrives equal; the extra top-level field survives (dropping it is a variant)")
            .run(|c| Box::pin(preserves_extra(c))),
        Case::must("cmdrelay/relay/keeps-order")
            .inferred("C7: relays keep the sender's order")
            .sends("20 execute frames in a row")
            .requires("the other client receives them in the order sent")
            .run(|c| Box::pin(keeps_order(c))),
    ]
}

/// The next relayed message, which must carry `cmd`.
async fn received(client: &mut Client, cmd: &str) -> Result<Value, Failure> {
    let message = client.reply(&format!("the relayed {cmd}")).await?;
    ensure(
        message["cmd"] == cmd,
        format!("cmd {cmd:?}"),
        compact(&message),
    )?;
    Ok(message)
}

/// `frame` from the first client of a room reaches each of the others with its extra intact.
async fn reaches_others(ctx: Ctx, frame: Value, names: &[&str]) -> CaseResult {
    let tokens = ctx.cmdrelay()?.tokens.rooms(1).await?;
    let mut clients = room(&ctx, tokens.get(0), names).await?;
    clients[0].ws.send_json(&frame).await?;
    let cmd = frame["cmd"].as_str().unwrap_or_default();
    for receiver in &mut clients[1..] {
        let got = received(receiver, cmd).await?;
        let expected = format!("extra {}", frame["extra"]);
        ensure(got["extra"] == frame["extra"], expected, compact(&got))?;
    }
    Ok(Outcome::Pass)
}

const PAIR: &[&str] = &["sender", "receiver"];

async fn not_echoed(ctx: Ctx, frame: Value) -> CaseResult {
    let tokens = ctx.cmdrelay()?.tokens.rooms(1).await?;
    let mut clients = room(&ctx, tokens.get(0), &["sender", "receiver"]).await?;
    clients[0].ws.send_json(&frame).await?;
    let cmd = frame["cmd"].as_str().unwrap_or_default();
    // Once the receiver has its copy, an echo or an answer would have been sent too.
    received(&mut clients[1], cmd).await?;
    clients[0]
        .expect_quiet(quiet_window(&ctx), "nothing back to the sender")
        .await?;
    Ok(Outcome::Pass)
}

async fn execute_reaches_others(ctx: Ctx) -> CaseResult {
    reaches_others(ctx, wire::execute(&wire::unique_command("uptime")), PAIR).await
}

async fn execute_not_echoed_to_sender(ctx: Ctx) -> CaseResult {
    not_echoed(ctx, wire::execute(&wire::unique_command("uptime"))).await
}

async fn execute_result_reaches_others(ctx: Ctx) -> CaseResult {
    reaches_others(
        ctx,
        wire::execute_result(&wire::unique_command("result")),
        PAIR,
    )
    .await
}

async fn execute_result_not_echoed_to_sender(ctx: Ctx) -> CaseResult {
    not_echoed(ctx, wire::execute_result(&wire::unique_command("result"))).await
}

async fn reaches_every_other_client(ctx: Ctx) -> CaseResult {
    let frame = wire::execute(&wire::unique_command("date"));
    reaches_others(ctx, frame, &["sender", "receiver-1", "receiver-2"]).await
}

async fn isolated_between_rooms(ctx: Ctx) -> CaseResult {
    let tokens = ctx.cmdrelay()?.tokens.rooms(2).await?;
    let mut clients = room(&ctx, tokens.get(0), &["sender", "receiver"]).await?;
    let (mut outsider, _) = Client::join(&ctx, "other-room", tokens.get(1)).await?;
    clients[0]
        .ws
        .send_json(&wire::execute(&wire::unique_command("id")))
        .await?;
    received(&mut clients[1], "execute").await?;
    outsider
        .expect_quiet(quiet_window(&ctx), "nothing for a client of another room")
        .await?;
    Ok(Outcome::Pass)
}

async fn preserves_extra(ctx: Ctx) -> CaseResult {
    let tokens = ctx.cmdrelay()?.tokens.rooms(1).await?;
    let mut clients = room(&ctx, tokens.get(0), &["sender", "receiver"]).await?;
    let frame = json!({
        "cmd": "execute",
        "request_id": "r-42",
        "extra": {
            "command": "echo 你好 \"quoted\"",
            "args": ["-n", 3, true, null],
            "env": { "LANG": "zh_CN.UTF-8", "depth": { "n": 1.5 } }
        }
    });
    clients[0].ws.send_json(&frame).await?;
    let got = received(&mut clients[1], "execute").await?;
    ensure(
        got["extra"] == frame["extra"],
        format!("extra {}", frame["extra"]),
        compact(&got),
    )?;
    if got["request_id"] != frame["request_id"] {
        return Ok(Outcome::Variant(
            "the relay dropped a top-level field (request_id)".to_owned(),
        ));
    }
    Ok(Outcome::Pass)
}

async fn keeps_order(ctx: Ctx) -> CaseResult {
    let tokens = ctx.cmdrelay()?.tokens.rooms(1).await?;
    let mut clients = room(&ctx, tokens.get(0), &["sender", "receiver"]).await?;
    let frames: Vec<String> = (0..ORDERED_FRAMES)
        .map(|n| wire::execute(&format!("step {n}")).to_string())
        .collect();
    clients[0].ws.send_burst(frames).await?;
    for n in 0..ORDERED_FRAMES {
        let event = clients[1].next(ctx.wait).await;
        let Event::Json(got) = &event else {
            return Err(Failure::mismatch(format!("step {n}"), event.describe()));
        };
        let want = format!("step {n}");
        ensure(
            got["extra"]["command"] == want.as_str(),
            format!("{want:?} next"),
            compact(got),
        )?;
    }
    Ok(Outcome::Pass)
}
