//! Bad input: an answer or a clean close, never silence, a reset, or harm to other nodes
//! (C5, C11).

use super::{unique_node_id, welcomed, Node};
use crate::case::{Case, CaseResult, Failure, Outcome};
use crate::cases::abuse;
use crate::check::{compact, ensure};
use crate::client::Event;
use crate::target::Ctx;
use crate::wire::nodemgr as wire;

/// Frames in the flood: bounded, and well past any sane per-connection burst.
const FLOOD_FRAMES: usize = 1000;
/// Size of the oversized frame.
const OVERSIZED_BYTES: usize = 1024 * 1024;

pub fn cases() -> Vec<Case> {
    vec![
        Case::must("nodemgr/robustness/binary-frame")
            .inferred("C5: a binary frame is answered with PARSE_ERROR")
            .sends("a binary frame on a registered connection")
            .requires("an `error` PARSE_ERROR (a close with a code: non-strict); the server keeps serving")
            .run(|c| Box::pin(binary_frame(c))),
        Case::must("nodemgr/robustness/invalid-utf8")
            .inferred("C11 limits: invalid UTF-8 closes with 1007")
            .sends("a text frame that is not UTF-8")
            .requires("a close frame (1007) or an `error`; the server keeps serving")
            .run(|c| Box::pin(invalid_utf8(c))),
        Case::must("nodemgr/robustness/oversized-frame")
            .inferred("C11 limits: frames over the limit close with 1009")
            .sends("a 1 MiB text frame")
            .requires("a close frame or an `error`, never silence; the server keeps serving")
            .run(|c| Box::pin(oversized_frame(c))),
        Case::must("nodemgr/robustness/flood-leaves-others-unharmed")
            .inferred("C11 limits: a flood is answered or closed with 1008")
            .sends("1000 heartbeats at once from one node while another node heartbeats")
            .requires("every heartbeat answered, or a clean close; the other node is still acked")
            .run(|c| Box::pin(flood_leaves_others_unharmed(c))),
    ]
}

/// After abuse, a new connection must still be welcomed.
async fn server_still_serves(ctx: &Ctx) -> Result<(), Failure> {
    welcomed(ctx, Some(&unique_node_id())).await.map(|_| ())
}

/// The answer to abuse: an `error` (pass) or a clean close (variant or pass), else a failure.
fn judge_answer(event: Event, close_is_documented: bool) -> CaseResult {
    abuse::judge_answer(event, |reply| reply["type"] == "error", close_is_documented)
}

async fn binary_frame(ctx: Ctx) -> CaseResult {
    let mut node = Node::register(&ctx).await?;
    node.ws.send_binary(b"\x00\x01binary".to_vec()).await?;
    let verdict = judge_answer(node.ws.next_event().await, false)?;
    server_still_serves(&ctx).await?;
    Ok(verdict)
}

async fn invalid_utf8(ctx: Ctx) -> CaseResult {
    let mut node = Node::register(&ctx).await?;
    node.ws
        .send_invalid_utf8_text(vec![b'{', 0xff, 0xfe, b'}'])
        .await?;
    let verdict = judge_answer(node.ws.next_event().await, true)?;
    server_still_serves(&ctx).await?;
    Ok(verdict)
}

async fn oversized_frame(ctx: Ctx) -> CaseResult {
    let mut node = Node::register(&ctx).await?;
    let mut frame = wire::heartbeat(&wire::fresh_id(), &node.node_id, wire::metrics(0.0));
    frame["data"]["padding"] = serde_json::Value::String("x".repeat(OVERSIZED_BYTES));
    node.ws.send_text(&frame.to_string()).await?;
    let event = node.ws.next_event_within(ctx.slow_wait).await;
    let verdict = match event {
        // A server without a size limit that simply acks is not wrong, only unguarded.
        Event::Json(reply) if reply["type"] == "heartbeat_ack" => {
            Outcome::Variant("a 1 MiB frame was accepted: no frame size limit".to_owned())
        }
        other => judge_answer(other, true)?,
    };
    server_still_serves(&ctx).await?;
    Ok(verdict)
}

async fn flood_leaves_others_unharmed(ctx: Ctx) -> CaseResult {
    let mut bystander = Node::register(&ctx).await?;
    let mut flooder = Node::register(&ctx).await?;
    let frames = (0..FLOOD_FRAMES)
        .map(|_| {
            wire::heartbeat(&wire::fresh_id(), &flooder.node_id, wire::metrics(0.0)).to_string()
        })
        .collect();
    flooder.ws.send_burst(frames).await?;
    let outcome = drain_flood(&mut flooder, ctx.slow_wait).await?;
    let (_, ack) = bystander.heartbeat(0.0).await?;
    ensure(
        ack["type"] == "heartbeat_ack",
        "the other node to be acked after the flood",
        compact(&ack),
    )?;
    Ok(outcome)
}

/// Reads the flooder's replies until all are in or the connection closes.
async fn drain_flood(flooder: &mut Node, wait: std::time::Duration) -> CaseResult {
    let mut answered = 0;
    while answered < FLOOD_FRAMES {
        match flooder.ws.next_event_within(wait).await {
            Event::Json(_) => answered += 1,
            Event::Close(Some(_)) => return Ok(Outcome::Pass),
            other => {
                return Err(Failure::mismatch(
                    format!("all {FLOOD_FRAMES} heartbeats answered or a clean close"),
                    format!("{answered} answered, then {}", other.describe()),
                ))
            }
        }
    }
    Ok(Outcome::Pass)
}
