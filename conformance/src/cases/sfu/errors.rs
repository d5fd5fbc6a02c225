//! Bad input gets an error response with a code, and the connection goes on (S7).

use super::{check_error_shape, fresh_room, quiet_window, Peer};
use crate::case::{Case, CaseResult, Failure, Outcome};
use crate::check::{compact, ensure};
use crate::client::Event;
use crate::target::Ctx;
use crate::wire::sfu as wire;
use serde_json::{json, Value};

pub fn cases() -> Vec<Case> {
    vec![
        Case::must("sfu/errors/unknown-method-answered")
            .inferred("S7: an unknown method is answered unknown_method with the request's id")
            .sends("a request with method \"dance\"")
            .requires("ok:false, the request's id, errorCode and errorReason; the connection stays")
            .run(|c| Box::pin(unknown_method_answered(c))),
        Case::should("sfu/errors/code-is-a-string")
            .documented("004 §5: \"errorCode\": \"err_codexxx\"")
            .sends("a request with an unknown method")
            .requires("errorCode is a string, as the document writes it (protoo's numbers are a variant)")
            .run(|c| Box::pin(code_is_a_string(c))),
        Case::must("sfu/errors/string-id-answered")
            .inferred("S2: protoo ids are integers; a string id is answered bad_request with the id as sent")
            .sends("join with id \"7\"")
            .requires("a response with ok:false and an errorCode; the connection stays")
            .run(|c| Box::pin(string_id_answered(c))),
        Case::must("sfu/errors/bad-json-answered")
            .inferred("S7: a frame that is not JSON is answered bad_json with id null")
            .sends("`{\"request\":true,\"id\":1,` (cut short)")
            .requires("ok:false with an errorCode (a clean close is a variant); no crash")
            .run(|c| Box::pin(bad_json_answered(c))),
        Case::must("sfu/errors/missing-rid-answered")
            .inferred("S7: a request without its rid is invalid_params")
            .sends("keepalive with data {}")
            .requires("ok:false with errorCode and errorReason")
            .run(|c| Box::pin(missing_rid_answered(c))),
        Case::must("sfu/errors/before-join-refused")
            .inferred("S5: every method but join needs the room joined")
            .sends("broadcast on a connection that has not joined")
            .requires("ok:false with errorCode and errorReason")
            .run(|c| Box::pin(before_join_refused(c))),
        Case::must("sfu/errors/oversized-answered")
            .inferred("S7: a frame over 64 KiB is answered too_large with its id")
            .sends("a 100 KiB broadcast")
            .requires("ok:false with an errorCode (close 1009 is a variant); no broadcast reaches the room")
            .run(|c| Box::pin(oversized_answered(c))),
        Case::must("sfu/errors/binary-answered")
            .inferred("S7: binary frames are answered unsupported_frame")
            .sends("a binary frame")
            .requires("ok:false with an errorCode, or a clean close (variant)")
            .run(|c| Box::pin(binary_answered(c))),
        Case::must("sfu/errors/survives-errors")
            .inferred("S7: errors leave the connection usable")
            .sends("bad JSON, an unknown method and a string id, then a join")
            .requires("the join succeeds")
            .run(|c| Box::pin(survives_errors(c))),
    ]
}

async fn unknown_method_answered(ctx: Ctx) -> CaseResult {
    let mut peer = Peer::connect(&ctx).await?;
    let id = peer.send("dance", json!({"rid": fresh_room()})).await?;
    let response = peer.response(id, ctx.wait).await?;
    check_error_shape(&response)?;
    still_open(&ctx, &mut peer).await
}

async fn code_is_a_string(ctx: Ctx) -> CaseResult {
    let mut peer = Peer::connect(&ctx).await?;
    let response = peer.refused("dance", json!({"rid": fresh_room()})).await?;
    match &response["errorCode"] {
        Value::String(_) => Ok(Outcome::Pass),
        Value::Number(n) => Ok(Outcome::Variant(format!(
            "errorCode is the number {n}, as protoo writes it; the document writes a string"
        ))),
        _ => Err(Failure::mismatch("a string errorCode", compact(&response))),
    }
}

/// The next frame must answer the one just sent with an error: a response with ok:false.
async fn error_answer(peer: &mut Peer) -> Result<Result<Value, Event>, Failure> {
    match peer.ws.next_event().await {
        Event::Json(reply) if reply["response"] == true && reply["ok"] == false => Ok(Ok(reply)),
        event @ Event::Close(Some(_)) => Ok(Err(event)),
        other => Err(Failure::mismatch("an error response", other.describe())),
    }
}

async fn string_id_answered(ctx: Ctx) -> CaseResult {
    let mut peer = Peer::connect(&ctx).await?;
    let frame =
        json!({"request": true, "id": "7", "method": "join", "data": {"rid": fresh_room()}});
    peer.ws.send_json(&frame).await?;
    match error_answer(&mut peer).await? {
        Ok(reply) => ensure(
            wire::error_code(&reply).is_some(),
            "an errorCode",
            compact(&reply),
        )?,
        Err(close) => {
            return Err(Failure::mismatch(
                "an error response, and the connection open",
                close.describe(),
            ))
        }
    }
    still_open(&ctx, &mut peer).await
}

async fn bad_json_answered(ctx: Ctx) -> CaseResult {
    let mut peer = Peer::connect(&ctx).await?;
    peer.ws.send_text(r#"{"request":true,"id":1,"#).await?;
    match error_answer(&mut peer).await? {
        Ok(reply) => {
            ensure(
                wire::error_code(&reply).is_some(),
                "an errorCode",
                compact(&reply),
            )?;
            still_open(&ctx, &mut peer).await
        }
        Err(close) => Ok(Outcome::Variant(format!(
            "closed the connection ({}) instead of answering",
            close.describe()
        ))),
    }
}

async fn missing_rid_answered(ctx: Ctx) -> CaseResult {
    let mut peer = Peer::joined(&ctx, &fresh_room()).await?;
    check_error_shape(&peer.refused("keepalive", json!({})).await?)?;
    Ok(Outcome::Pass)
}

async fn before_join_refused(ctx: Ctx) -> CaseResult {
    let mut peer = Peer::connect(&ctx).await?;
    let response = peer
        .refused("broadcast", wire::broadcast(&fresh_room(), json!("hello")))
        .await?;
    check_error_shape(&response)?;
    Ok(Outcome::Pass)
}

async fn oversized_answered(ctx: Ctx) -> CaseResult {
    let (mut sender, mut other) = super::two_in_a_room(&ctx).await?;
    let rid = sender.room().to_owned();
    let id = sender
        .send(
            "broadcast",
            wire::broadcast(&rid, json!("x".repeat(100 * 1024))),
        )
        .await?;
    let outcome = match sender.response(id, ctx.wait).await {
        Ok(reply) if reply["ok"] == false => {
            ensure(
                wire::error_code(&reply).is_some(),
                "an errorCode",
                compact(&reply),
            )?;
            Outcome::Pass
        }
        Ok(reply) => {
            return Err(Failure::mismatch(
                "ok:false for a 100 KiB frame",
                compact(&reply),
            ))
        }
        Err(Failure::Mismatch { actual, .. }) if actual.starts_with("close 1009") => {
            Outcome::Variant(format!(
                "closed the connection ({actual}) instead of answering"
            ))
        }
        Err(failure) => return Err(failure),
    };
    other
        .no_notification("broadcast", quiet_window(&ctx), |_| true)
        .await?;
    Ok(outcome)
}

async fn binary_answered(ctx: Ctx) -> CaseResult {
    let mut peer = Peer::connect(&ctx).await?;
    peer.ws.send_binary(vec![0x82, 0, 1, 2]).await?;
    match error_answer(&mut peer).await? {
        Ok(_) => still_open(&ctx, &mut peer).await,
        Err(close) => Ok(Outcome::Variant(format!(
            "closed the connection ({}) instead of answering",
            close.describe()
        ))),
    }
}

async fn survives_errors(ctx: Ctx) -> CaseResult {
    let mut peer = Peer::connect(&ctx).await?;
    peer.ws.send_text("{").await?;
    peer.ws.next_event().await;
    peer.ws
        .send_json(&json!({"request": true, "id": "x", "method": "join", "data": {"rid": "r"}}))
        .await?;
    peer.ws.next_event().await;
    peer.request("dance", json!({})).await?;
    peer.ok("join", wire::join(&fresh_room())).await?;
    Ok(Outcome::Pass)
}

/// The connection must still answer: a keepalive-free request that any server answers.
async fn still_open(ctx: &Ctx, peer: &mut Peer) -> CaseResult {
    match peer.ws.next_event_within(quiet_window(ctx)).await {
        Event::Silence(_) => {}
        other => {
            return Err(Failure::mismatch(
                "the connection to stay open",
                other.describe(),
            ))
        }
    }
    peer.ok("join", wire::join(&fresh_room())).await?;
    Ok(Outcome::Pass)
}
