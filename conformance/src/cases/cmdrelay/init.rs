//! init and the ResponseMessage that answers it; rooms and their session_id (C2).

use super::{room, Client};
use crate::case::{Case, CaseResult, Failure, Outcome};
use crate::check::{compact, ensure};
use crate::client::Event;
use crate::target::Ctx;
use crate::wire::cmdrelay as wire;
use serde_json::Value;
use std::time::Duration;
use tokio::time::Instant;

pub fn cases() -> Vec<Case> {
    vec![
        Case::must("cmdrelay/init/accepted-with-response")
            .documented("003 §通讯流程 2-3 初始化连接 / 身份验证")
            .sends("init with a valid token")
            .requires("a ResponseMessage answering init, and the connection stays open")
            .run(|c| Box::pin(accepted_with_response(c))),
        Case::must("cmdrelay/init/response-fields-typed")
            .documented("003 §响应消息 (ResponseMessage)")
            .sends("init with a valid token")
            .requires("cmd and code are strings; session_id a string when present; extra an object")
            .run(|c| Box::pin(response_fields_typed(c))),
        Case::must("cmdrelay/init/same-token-shares-session-id")
            .inferred("C2: clients of one token share a room and its session_id")
            .sends("init twice with the same token, on two connections")
            .requires("both answers carry the same session_id")
            .run(|c| Box::pin(same_token_shares_session_id(c))),
        Case::must("cmdrelay/init/tokens-have-distinct-session-ids")
            .inferred("C2: one room, one session_id")
            .sends("init with two different tokens, on two connections")
            .requires("the two answers carry different session_ids")
            .run(|c| Box::pin(tokens_have_distinct_session_ids(c))),
        Case::should("cmdrelay/init/room-removed-with-last-client")
            .inferred("C2: a room is removed with its last client")
            .sends("init, close, then init again with the same token")
            .requires("the second client gets a new session_id: the old room is gone")
            .run(|c| Box::pin(room_removed_with_last_client(c))),
        Case::must("cmdrelay/init/second-init-does-not-move-client")
            .inferred("C5: a connection belongs to the room of its first init")
            .sends("a second init with another token from a client that shares a room")
            .requires("the client stays in its first room (checkDevice counts it there, not in the other)")
            .run(|c| Box::pin(second_init_does_not_move_client(c))),
        Case::should("cmdrelay/init/second-init-answered-with-error")
            .inferred("C5: a second init is refused with 409 ALREADY_INITIALIZED")
            .sends("a second init on an initialised connection")
            .requires("an error response (code other than \"1\"), and the connection stays open")
            .run(|c| Box::pin(second_init_answered_with_error(c))),
    ]
}

async fn accepted_with_response(ctx: Ctx) -> CaseResult {
    let tokens = ctx.cmdrelay()?.tokens.rooms(1).await?;
    let (mut client, response) = Client::join(&ctx, "device", tokens.get(0)).await?;
    // The document names no success code for init; "1" is the code of every positive answer.
    let documented = response["cmd"] == "init" && response["code"] == "1";
    client.device_code().await?;
    if documented {
        return Ok(Outcome::Pass);
    }
    Ok(Outcome::Variant(format!(
        "init was answered with {} (the reference answers cmd \"init\", code \"1\")",
        compact(&response)
    )))
}

async fn response_fields_typed(ctx: Ctx) -> CaseResult {
    let tokens = ctx.cmdrelay()?.tokens.rooms(1).await?;
    let (_client, response) = Client::join(&ctx, "device", tokens.get(0)).await?;
    check_typed(&response)
}

/// The ResponseMessage field rules; variants for the loose spellings real servers use.
pub fn check_typed(response: &Value) -> CaseResult {
    let shown = compact(response);
    ensure(response["cmd"].is_string(), "cmd to be a string", &shown)?;
    ensure(
        response["code"].is_string(),
        "code to be a string, as in every example",
        &shown,
    )?;
    match response.get("session_id") {
        None | Some(Value::String(_)) => {}
        // "session_id: 可选的会话 ID": null is a common spelling of "none".
        Some(Value::Null) => {
            return Ok(Outcome::Variant(
                "session_id is null instead of absent".to_owned(),
            ))
        }
        Some(_) => return Err(Failure::mismatch("session_id to be a string", shown)),
    }
    match response.get("extra") {
        Some(Value::Object(_)) => Ok(Outcome::Pass),
        // Every example carries extra, if only {}; leaving it out is a reasonable variant.
        None | Some(Value::Null) => Ok(Outcome::Variant(
            "extra is absent or null instead of {}".to_owned(),
        )),
        Some(_) => Err(Failure::mismatch("extra to be an object", shown)),
    }
}

fn session_id(response: &Value) -> Option<&str> {
    response["session_id"].as_str()
}

async fn same_token_shares_session_id(ctx: Ctx) -> CaseResult {
    let tokens = ctx.cmdrelay()?.tokens.rooms(1).await?;
    let (_first, a) = Client::join(&ctx, "first", tokens.get(0)).await?;
    let (_second, b) = Client::join(&ctx, "second", tokens.get(0)).await?;
    match (session_id(&a), session_id(&b)) {
        (Some(x), Some(y)) => {
            ensure(
                x == y,
                format!("the same session_id {x:?} for the same token"),
                y,
            )?;
            Ok(Outcome::Pass)
        }
        (None, None) => Ok(Outcome::Variant(
            "no session_id in init answers (the document makes it optional)".to_owned(),
        )),
        _ => Err(Failure::mismatch(
            "a session_id in both answers or in neither",
            format!("{} and {}", compact(&a), compact(&b)),
        )),
    }
}

async fn tokens_have_distinct_session_ids(ctx: Ctx) -> CaseResult {
    let tokens = ctx.cmdrelay()?.tokens.rooms(2).await?;
    let (_first, a) = Client::join(&ctx, "room-a", tokens.get(0)).await?;
    let (_second, b) = Client::join(&ctx, "room-b", tokens.get(1)).await?;
    match (session_id(&a), session_id(&b)) {
        (Some(x), Some(y)) => {
            ensure(
                x != y,
                "different session_ids for different tokens",
                format!("both {x:?}"),
            )?;
            Ok(Outcome::Pass)
        }
        _ => Ok(Outcome::Variant(
            "no session_id in init answers (the document makes it optional)".to_owned(),
        )),
    }
}

async fn room_removed_with_last_client(ctx: Ctx) -> CaseResult {
    let tokens = ctx.cmdrelay()?.tokens.rooms(1).await?;
    let (first, response) = Client::join(&ctx, "first", tokens.get(0)).await?;
    let Some(old) = session_id(&response).map(str::to_owned) else {
        return Ok(Outcome::Variant(
            "no session_id to compare (optional in the document)".to_owned(),
        ));
    };
    first.ws.close().await;
    // The server may take a moment to notice the close: retry within the wait.
    let deadline = Instant::now() + ctx.wait;
    loop {
        let (again, response) = Client::join(&ctx, "again", tokens.get(0)).await?;
        let new = session_id(&response).unwrap_or_default().to_owned();
        if new != old {
            return Ok(Outcome::Pass);
        }
        again.ws.close().await;
        if Instant::now() >= deadline {
            return Err(Failure::mismatch(
                "a new session_id once the room's only client has left",
                format!("the old session_id {old:?} again"),
            ));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn second_init_does_not_move_client(ctx: Ctx) -> CaseResult {
    let tokens = ctx.cmdrelay()?.tokens.rooms(2).await?;
    let mut first_room = room(&ctx, tokens.get(0), &["mover", "stayer"]).await?;
    let (mut other, _) = Client::join(&ctx, "other-room", tokens.get(1)).await?;
    let mover = &mut first_room[0];
    mover.ws.send_json(&wire::init(tokens.get(1))).await?;
    // Whatever the answer (an error, or nothing), read it before counting.
    let _ = mover.next(super::quiet_window(&ctx)).await;
    let stayer_code = first_room[1].device_code().await?;
    ensure(
        stayer_code == "1",
        "checkDevice \"1\" in the first room: the client that sent a second init is still there",
        &stayer_code,
    )?;
    let other_code = other.device_code().await?;
    ensure(
        other_code == "0",
        "checkDevice \"0\" in the other room: the second init did not join it",
        &other_code,
    )?;
    Ok(Outcome::Pass)
}

async fn second_init_answered_with_error(ctx: Ctx) -> CaseResult {
    let tokens = ctx.cmdrelay()?.tokens.rooms(1).await?;
    let (mut client, _) = Client::join(&ctx, "device", tokens.get(0)).await?;
    client.ws.send_json(&wire::init(tokens.get(0))).await?;
    let event = client.next(ctx.wait).await;
    let Event::Json(reply) = &event else {
        return Err(Failure::mismatch(
            "an error response to the second init",
            event.describe(),
        ));
    };
    ensure(
        super::is_refusal(reply),
        "a response with a code other than \"1\"",
        compact(reply),
    )?;
    client.device_code().await?;
    Ok(Outcome::Pass)
}
