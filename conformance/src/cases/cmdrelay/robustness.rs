//! Bad input at the WebSocket level: an answer or a clean close, never silence, a reset, or
//! harm to other clients (C8).

use super::{room, Client};
use crate::case::{Case, CaseResult, Failure, Outcome};
use crate::cases::abuse;
use crate::check::ensure;
use crate::client::Event;
use crate::target::Ctx;
use crate::wire::cmdrelay as wire;
use serde_json::Value;

/// Frames in the flood: bounded, and well past any sane per-connection burst.
const FLOOD_FRAMES: usize = 2000;
/// Size of the oversized frame.
const OVERSIZED_BYTES: usize = 1024 * 1024;

pub fn cases() -> Vec<Case> {
    vec![
        Case::must("cmdrelay/robustness/binary-frame")
            .inferred("C8: a binary frame is answered with 415 UNSUPPORTED_FRAME")
            .sends("a binary frame on an initialised connection")
            .requires(
                "an error response (a close with a code: non-strict); the server keeps serving",
            )
            .run(|c| Box::pin(binary_frame(c))),
        Case::must("cmdrelay/robustness/invalid-utf8")
            .inferred("C8: invalid UTF-8 closes with 1007")
            .sends("a text frame that is not UTF-8")
            .requires("a close frame or an error response; the server keeps serving")
            .run(|c| Box::pin(invalid_utf8(c))),
        Case::must("cmdrelay/robustness/oversized-frame")
            .inferred("C8: frames over 64 KiB close with 1009")
            .sends("a 1 MiB execute frame")
            .requires("a close frame or an error response, never silence; the server keeps serving")
            .run(|c| Box::pin(oversized_frame(c))),
        Case::must("cmdrelay/robustness/flood-leaves-others-unharmed")
            .inferred("C8: a flood is answered or closed with 1008 (429 RATE_LIMITED)")
            .sends("2000 checkDevice at once from one client while a room elsewhere relays")
            .requires("every checkDevice answered, or a clean close; the other room still relays")
            .run(|c| Box::pin(flood_leaves_others_unharmed(c))),
    ]
}

fn is_error(reply: &Value) -> bool {
    super::is_refusal(reply) && reply["cmd"] != "checkDevice"
}

async fn joined(ctx: &Ctx) -> Result<(Client, crate::client::RoomTokens), Failure> {
    let tokens = ctx.cmdrelay()?.tokens.rooms(1).await?;
    let (client, _) = Client::join(ctx, "device", tokens.get(0)).await?;
    Ok((client, tokens))
}

/// After abuse, a new client must still be able to join and count its room.
async fn server_still_serves(ctx: &Ctx) -> Result<(), Failure> {
    let (mut client, _tokens) = joined(ctx).await?;
    client.device_code().await.map(|_| ())
}

async fn binary_frame(ctx: Ctx) -> CaseResult {
    let (mut client, _tokens) = joined(&ctx).await?;
    client.ws.send_binary(b"\x00\x01binary".to_vec()).await?;
    let verdict = abuse::judge_answer(client.next(ctx.wait).await, is_error, false)?;
    server_still_serves(&ctx).await?;
    Ok(verdict)
}

async fn invalid_utf8(ctx: Ctx) -> CaseResult {
    let (mut client, _tokens) = joined(&ctx).await?;
    client
        .ws
        .send_invalid_utf8_text(vec![b'{', 0xff, 0xfe, b'}'])
        .await?;
    let verdict = abuse::judge_answer(client.next(ctx.wait).await, is_error, true)?;
    server_still_serves(&ctx).await?;
    Ok(verdict)
}

async fn oversized_frame(ctx: Ctx) -> CaseResult {
    let (mut client, _tokens) = joined(&ctx).await?;
    let frame = wire::execute(&"x".repeat(OVERSIZED_BYTES));
    client.ws.send_text(&frame.to_string()).await?;
    // An execute is never answered, so ask something: a server without a size limit answers it.
    client.ws.send_json(&wire::check_device()).await?;
    let verdict = match client.next(ctx.slow_wait).await {
        Event::Json(reply) if reply["cmd"] == "checkDevice" => {
            Outcome::Variant("a 1 MiB frame was accepted: no frame size limit".to_owned())
        }
        other => abuse::judge_answer(other, is_error, true)?,
    };
    server_still_serves(&ctx).await?;
    Ok(verdict)
}

async fn flood_leaves_others_unharmed(ctx: Ctx) -> CaseResult {
    let tokens = ctx.cmdrelay()?.tokens.rooms(2).await?;
    let mut bystanders = room(&ctx, tokens.get(1), &["sender", "receiver"]).await?;
    let (mut flooder, _) = Client::join(&ctx, "flooder", tokens.get(0)).await?;
    let frames = (0..FLOOD_FRAMES)
        .map(|_| wire::check_device().to_string())
        .collect();
    flooder.ws.send_burst(frames).await?;
    let outcome = drain_flood(&mut flooder, &ctx).await?;
    let frame = wire::execute(&wire::unique_command("after-flood"));
    bystanders[0].ws.send_json(&frame).await?;
    let got = bystanders[1]
        .reply("the relay in another room after the flood")
        .await?;
    ensure(
        got["extra"] == frame["extra"],
        "the bystanders' relay to arrive",
        got,
    )?;
    Ok(outcome)
}

/// Reads the flooder's answers until all are in or the connection closes.
async fn drain_flood(flooder: &mut Client, ctx: &Ctx) -> CaseResult {
    let mut answered = 0;
    while answered < FLOOD_FRAMES {
        match flooder.next(ctx.slow_wait).await {
            Event::Json(_) => answered += 1,
            Event::Close(Some(_)) => return Ok(Outcome::Pass),
            other => {
                return Err(Failure::mismatch(
                    format!("all {FLOOD_FRAMES} checkDevice answered or a clean close"),
                    format!("{answered} answered, then {}", other.describe()),
                ))
            }
        }
    }
    Ok(Outcome::Pass)
}
