//! Bad input gets an `error` and the connection goes on (L7); keepalive (L6).

use super::{error_reply, quiet_window, Peer};
use crate::case::{Case, CaseResult, Failure, Outcome};
use crate::check::ensure;
use crate::client::Event;
use crate::target::Ctx;
use crate::wire::logrtc as wire;
use serde_json::json;

pub fn cases() -> Vec<Case> {
    vec![
        Case::must("logrtc/errors/bad-json-answered")
            .inferred("L7: a frame that is not JSON is answered bad_json; the connection stays")
            .sends("`{\"type\":\"register\"` (cut short)")
            .requires("an `error` message, and no close")
            .run(|c| Box::pin(bad_json_answered(c))),
        Case::must("logrtc/errors/unknown-type-answered")
            .inferred("L7: an unknown type is answered unknown_type; the connection stays")
            .sends("`{\"type\":\"subscribe\"}`")
            .requires("an `error` message, and no close")
            .run(|c| Box::pin(unknown_type_answered(c))),
        Case::must("logrtc/errors/before-register-refused")
            .inferred("L7: anything but register and ping before register is not_registered")
            .sends("webrtc_offer on a connection that has not registered")
            .requires("an `error` message")
            .run(|c| Box::pin(before_register_refused(c))),
        Case::must("logrtc/errors/bad-role-refused")
            .inferred("L1: role is producer or consumer")
            .sends("register with role \"admin\"")
            .requires("an `error` message, and the id is not listed")
            .run(|c| Box::pin(bad_role_refused(c))),
        Case::must("logrtc/errors/survives-errors")
            .inferred("L7: errors leave the connection usable")
            .sends("bad JSON, an unknown type and a bad register, then a valid register")
            .requires("the producer is then listed")
            .run(|c| Box::pin(survives_errors(c))),
        Case::must("logrtc/errors/oversized-frame-closed")
            .inferred("L7: a text frame over 64 KiB is closed with 1009")
            .sends("a 100 KiB text frame")
            .requires("close 1009")
            .run(|c| Box::pin(oversized_frame_closed(c))),
        Case::should("logrtc/keepalive/ping-answered")
            .inferred("L6: {\"type\":\"ping\"} is answered {\"type\":\"pong\"}")
            .sends("`{\"type\":\"ping\"}`")
            .requires("`{\"type\":\"pong\"}`")
            .run(|c| Box::pin(ping_answered(c))),
    ]
}

/// `frame` is answered with an error and the connection stays open.
async fn answered_and_open(ctx: Ctx, frame: &str) -> CaseResult {
    let mut peer = Peer::connect(&ctx, "client").await?;
    peer.ws.send_text(frame).await?;
    error_reply(&mut peer).await?;
    peer.expect_quiet(quiet_window(&ctx), "the connection to stay open")
        .await?;
    Ok(Outcome::Pass)
}

async fn bad_json_answered(ctx: Ctx) -> CaseResult {
    answered_and_open(ctx, r#"{"type":"register""#).await
}

async fn unknown_type_answered(ctx: Ctx) -> CaseResult {
    answered_and_open(ctx, r#"{"type":"subscribe"}"#).await
}

async fn before_register_refused(ctx: Ctx) -> CaseResult {
    let mut peer = Peer::connect(&ctx, "client").await?;
    let offer = wire::offer(&wire::unique_id("nobody"), &wire::opaque_sdp("early"));
    peer.ws.send_json(&offer).await?;
    error_reply(&mut peer).await?;
    Ok(Outcome::Pass)
}

async fn is_listed(ctx: &Ctx, id: &str) -> Result<bool, Failure> {
    let mut consumer = Peer::consumer(ctx).await?;
    consumer.ws.send_json(&wire::list_producers()).await?;
    let list = consumer.expect("producer_list").await?;
    Ok(list["producers"]
        .as_array()
        .is_some_and(|all| all.iter().any(|p| p["client_id"] == id)))
}

async fn bad_role_refused(ctx: Ctx) -> CaseResult {
    let mut peer = Peer::connect(&ctx, "admin").await?;
    let register = json!({"type": "register", "role": "admin", "client_id": peer.id});
    peer.ws.send_json(&register).await?;
    error_reply(&mut peer).await?;
    let listed = is_listed(&ctx, &peer.id).await?;
    ensure(!listed, "the id not listed", "listed as a producer")?;
    Ok(Outcome::Pass)
}

async fn survives_errors(ctx: Ctx) -> CaseResult {
    let mut peer = Peer::connect(&ctx, "producer").await?;
    for frame in [
        r#"{"type":"register""#,
        r#"{"type":"subscribe"}"#,
        r#"{"type":"register","role":"producer"}"#,
    ] {
        peer.ws.send_text(frame).await?;
    }
    peer.ws
        .send_json(&wire::register_producer(&peer.id))
        .await?;
    // The registration is on another connection than the listing: take its answer (L1) when
    // one comes, so that the listing is not asked before the server has read the register.
    let _ = peer
        .await_message("registered", quiet_window(&ctx), |_| true)
        .await;
    let listed = listed_within(&ctx, &peer.id).await?;
    ensure(listed, "the producer listed after the errors", "not listed")?;
    Ok(Outcome::Pass)
}

/// Whether `id` shows in the listing within the wait (asked every 50 ms).
async fn listed_within(ctx: &Ctx, id: &str) -> Result<bool, Failure> {
    let mut consumer = Peer::consumer(ctx).await?;
    let deadline = tokio::time::Instant::now() + ctx.wait;
    loop {
        consumer.ws.send_json(&wire::list_producers()).await?;
        let list = consumer.expect("producer_list").await?;
        let listed = list["producers"]
            .as_array()
            .is_some_and(|all| all.iter().any(|p| p["client_id"] == id));
        if listed || tokio::time::Instant::now() >= deadline {
            return Ok(listed);
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

async fn oversized_frame_closed(ctx: Ctx) -> CaseResult {
    let mut peer = Peer::connect(&ctx, "client").await?;
    let frame = json!({"type": "ping", "pad": "x".repeat(100 * 1024)}).to_string();
    peer.ws.send_text(&frame).await?;
    let event = peer.next(ctx.wait).await;
    match event {
        Event::Close(Some((1009, _))) => Ok(Outcome::Pass),
        other => Err(Failure::mismatch("close 1009", other.describe())),
    }
}

async fn ping_answered(ctx: Ctx) -> CaseResult {
    let mut peer = Peer::connect(&ctx, "client").await?;
    peer.ws.send_json(&json!({"type": "ping"})).await?;
    peer.expect("pong").await?;
    Ok(Outcome::Pass)
}
