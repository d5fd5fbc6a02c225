//! checkDevice: "`"1"` 表示有多个客户端，`"0"` 表示只有一个客户端", counted per room, and
//! clients that leave, cleanly or not, no longer count (C7).

use super::{await_device_code, room, Client};
use crate::case::{Case, CaseResult, Outcome};
use crate::check::{compact, ensure};
use crate::target::Ctx;
use serde_json::Value;

pub fn cases() -> Vec<Case> {
    vec![
        Case::must("cmdrelay/device/alone-is-zero")
            .documented("003 §检查设备消息 (checkDevice)")
            .sends("checkDevice from the only client of a room")
            .requires("code \"0\"")
            .run(|c| Box::pin(alone_is_zero(c))),
        Case::must("cmdrelay/device/two-clients-is-one")
            .documented("003 §检查设备消息 (checkDevice)")
            .sends("checkDevice from a room of two")
            .requires("code \"1\", for both clients")
            .run(|c| Box::pin(two_clients_is_one(c))),
        Case::must("cmdrelay/device/response-shape")
            .documented("003 §检查设备消息: 服务器响应")
            .sends("checkDevice")
            .requires("{\"cmd\":\"checkDevice\",\"code\":<string>,\"extra\":{}}")
            .run(|c| Box::pin(response_shape(c))),
        Case::must("cmdrelay/device/counts-only-own-room")
            .documented("003 §检查设备消息: 服务器返回当前房间的客户端数量")
            .sends("checkDevice from a client alone in its room while another room has two")
            .requires("code \"0\": other rooms do not count")
            .run(|c| Box::pin(counts_only_own_room(c))),
        Case::must("cmdrelay/device/count-drops-when-client-leaves")
            .documented("003 §通讯流程 6 连接关闭: 服务器清理相关资源")
            .sends("checkDevice after the other client of the room closed")
            .requires("code \"0\" again within the slow wait")
            .run(|c| Box::pin(count_drops_when_client_leaves(c))),
        Case::must("cmdrelay/device/abrupt-disconnect-leaves-no-ghost")
            .documented("003 §错误处理: 如果连接断开，服务器将清理相关资源并移除客户端")
            .sends("checkDevice after the other client's TCP connection was reset without a close frame")
            .requires("code \"0\" again within the slow wait: no ghost member")
            .run(|c| Box::pin(abrupt_disconnect_leaves_no_ghost(c))),
    ]
}

async fn alone_is_zero(ctx: Ctx) -> CaseResult {
    let tokens = ctx.cmdrelay()?.tokens.rooms(1).await?;
    let (mut client, _) = Client::join(&ctx, "device", tokens.get(0)).await?;
    let code = client.device_code().await?;
    ensure(code == "0", "code \"0\" for the only client", &code)?;
    Ok(Outcome::Pass)
}

async fn two_clients_is_one(ctx: Ctx) -> CaseResult {
    let tokens = ctx.cmdrelay()?.tokens.rooms(1).await?;
    let mut clients = room(&ctx, tokens.get(0), &["device", "controller"]).await?;
    for client in &mut clients {
        let code = client.device_code().await?;
        ensure(code == "1", "code \"1\" in a room of two", &code)?;
    }
    Ok(Outcome::Pass)
}

async fn response_shape(ctx: Ctx) -> CaseResult {
    let tokens = ctx.cmdrelay()?.tokens.rooms(1).await?;
    let (mut client, _) = Client::join(&ctx, "device", tokens.get(0)).await?;
    let reply = client.check_device().await?;
    let shown = compact(&reply);
    ensure(reply["code"].is_string(), "code to be a string", &shown)?;
    match reply.get("extra") {
        Some(Value::Object(_)) => Ok(Outcome::Pass),
        None | Some(Value::Null) => Ok(Outcome::Variant(
            "no extra (the document shows {})".to_owned(),
        )),
        Some(_) => Err(crate::case::Failure::mismatch(
            "extra to be an object",
            shown,
        )),
    }
}

async fn counts_only_own_room(ctx: Ctx) -> CaseResult {
    let tokens = ctx.cmdrelay()?.tokens.rooms(2).await?;
    let _busy = room(&ctx, tokens.get(1), &["other-a", "other-b"]).await?;
    let (mut alone, _) = Client::join(&ctx, "alone", tokens.get(0)).await?;
    let code = alone.device_code().await?;
    ensure(
        code == "0",
        "code \"0\": another room's clients do not count",
        &code,
    )?;
    Ok(Outcome::Pass)
}

async fn count_drops_when_client_leaves(ctx: Ctx) -> CaseResult {
    let tokens = ctx.cmdrelay()?.tokens.rooms(1).await?;
    let mut clients = room(&ctx, tokens.get(0), &["stayer", "leaver"]).await?;
    let leaver = clients.pop().map(|c| c.ws);
    if let Some(ws) = leaver {
        ws.close().await;
    }
    let code = await_device_code(&mut clients[0], "0", ctx.slow_wait).await?;
    ensure(
        code == "0",
        "code \"0\" once the other client has closed",
        &code,
    )?;
    Ok(Outcome::Pass)
}

async fn abrupt_disconnect_leaves_no_ghost(ctx: Ctx) -> CaseResult {
    let tokens = ctx.cmdrelay()?.tokens.rooms(1).await?;
    let mut clients = room(&ctx, tokens.get(0), &["stayer", "crasher"]).await?;
    let code = clients[0].device_code().await?;
    ensure(code == "1", "code \"1\" before the reset", &code)?;
    if let Some(crasher) = clients.pop() {
        crasher.ws.abort();
    }
    let code = await_device_code(&mut clients[0], "0", ctx.slow_wait).await?;
    ensure(
        code == "0",
        "code \"0\" once the other client's connection was reset",
        &code,
    )?;
    Ok(Outcome::Pass)
}
