//! webrtc_offer, webrtc_answer and ice_candidate go to `to`, as sent, with `from` added (L4).

use super::{error_reply, pair, quiet_window, Peer};
use crate::case::{Case, CaseResult, Failure, Outcome};
use crate::check::{compact, ensure};
use crate::target::Ctx;
use crate::wire::logrtc as wire;
use serde_json::Value;

/// Candidates sent by the ordering case.
const ORDERED_CANDIDATES: usize = 20;

pub fn cases() -> Vec<Case> {
    vec![
        Case::must("logrtc/relay/offer-reaches-consumer")
            .documented("000 §4.2 创建并发送Offer: webrtc_offer with to and sdp")
            .sends("webrtc_offer from a producer to the consumer watching it")
            .requires("the consumer gets webrtc_offer with the SDP byte for byte")
            .run(|c| Box::pin(offer_reaches_consumer(c))),
        Case::must("logrtc/relay/answer-reaches-producer")
            .documented("000 §4.3 处理Answer: webrtc_answer with sdp")
            .sends("webrtc_answer from the consumer to its producer")
            .requires("the producer gets webrtc_answer with the SDP byte for byte")
            .run(|c| Box::pin(answer_reaches_producer(c))),
        Case::must("logrtc/relay/candidates-both-ways")
            .documented("000 §4.3 处理ICE候选: candidate and sdpMLineIndex")
            .sends("ice_candidate each way between a producer and its consumer")
            .requires("each side gets the candidate with candidate and sdpMLineIndex as sent")
            .run(|c| Box::pin(candidates_both_ways(c))),
        Case::must("logrtc/relay/from-names-sender")
            .inferred("L4: the server adds `from`, the sender's client_id")
            .sends("an offer one way and an answer the other")
            .requires("each arrives with `from` naming its sender")
            .run(|c| Box::pin(from_names_sender(c))),
        Case::must("logrtc/relay/only-the-addressee")
            .inferred("L4: a relay goes to `to` only")
            .sends("an offer to one of two consumers watching the producer")
            .requires("the other consumer gets nothing")
            .run(|c| Box::pin(only_the_addressee(c))),
        Case::must("logrtc/relay/keeps-order")
            .inferred("L4: relays keep the sender's order")
            .sends("20 ice_candidate messages in a row")
            .requires("the consumer gets them in the order sent")
            .run(|c| Box::pin(keeps_order(c))),
        Case::should("logrtc/relay/unknown-recipient-refused")
            .inferred("L7: a relay whose `to` is not registered is unknown_recipient")
            .sends("webrtc_offer to an id nobody registered")
            .requires("an `error` message")
            .run(|c| Box::pin(unknown_recipient_refused(c))),
        Case::should("logrtc/relay/unpaired-refused")
            .inferred("L4: relays go only between a producer and a consumer watching it")
            .sends("webrtc_offer from a producer to a consumer that does not watch it")
            .requires("an `error` to the sender and nothing to the consumer")
            .run(|c| Box::pin(unpaired_refused(c))),
    ]
}

/// `message` arrived with `field` as sent in `sent`.
fn kept(field: &str, sent: &Value, got: &Value) -> Result<(), Failure> {
    ensure(
        got[field] == sent[field],
        format!("{field} {} unchanged", sent[field]),
        compact(got),
    )
}

async fn offer_reaches_consumer(ctx: Ctx) -> CaseResult {
    let (mut producer, mut consumer) = pair(&ctx).await?;
    let offer = wire::offer(&consumer.id, &wire::opaque_sdp("offer"));
    producer.ws.send_json(&offer).await?;
    let got = consumer.expect("webrtc_offer").await?;
    kept("sdp", &offer, &got)?;
    Ok(Outcome::Pass)
}

async fn answer_reaches_producer(ctx: Ctx) -> CaseResult {
    let (mut producer, mut consumer) = pair(&ctx).await?;
    let answer = wire::answer(&producer.id, &wire::opaque_sdp("answer"));
    consumer.ws.send_json(&answer).await?;
    let got = producer.expect("webrtc_answer").await?;
    kept("sdp", &answer, &got)?;
    Ok(Outcome::Pass)
}

async fn candidates_both_ways(ctx: Ctx) -> CaseResult {
    let (mut producer, mut consumer) = pair(&ctx).await?;
    let host = "candidate:1 1 udp 2130706431 127.0.0.1 50000 typ host";
    let to_consumer = wire::candidate(&consumer.id, host, 0);
    producer.ws.send_json(&to_consumer).await?;
    let got = consumer.expect("ice_candidate").await?;
    kept("candidate", &to_consumer, &got)?;
    kept("sdpMLineIndex", &to_consumer, &got)?;
    let to_producer = wire::candidate(&producer.id, &host.replace("50000", "50002"), 1);
    consumer.ws.send_json(&to_producer).await?;
    let got = producer.expect("ice_candidate").await?;
    kept("candidate", &to_producer, &got)?;
    kept("sdpMLineIndex", &to_producer, &got)?;
    Ok(Outcome::Pass)
}

async fn from_names_sender(ctx: Ctx) -> CaseResult {
    let (mut producer, mut consumer) = pair(&ctx).await?;
    let sdp = wire::opaque_sdp("from");
    producer
        .ws
        .send_json(&wire::offer(&consumer.id, &sdp))
        .await?;
    let got = consumer.expect("webrtc_offer").await?;
    let expected = format!("from {:?}", producer.id);
    ensure(got["from"] == producer.id.as_str(), expected, compact(&got))?;
    consumer
        .ws
        .send_json(&wire::answer(&producer.id, &sdp))
        .await?;
    let got = producer.expect("webrtc_answer").await?;
    let expected = format!("from {:?}", consumer.id);
    ensure(got["from"] == consumer.id.as_str(), expected, compact(&got))?;
    Ok(Outcome::Pass)
}

async fn only_the_addressee(ctx: Ctx) -> CaseResult {
    let (mut producer, mut first) = pair(&ctx).await?;
    let mut second = Peer::consumer(&ctx).await?;
    second.watch(&ctx, &producer.id).await?;
    let second_id = second.id.clone();
    producer
        .await_message("consumer_connected", ctx.wait, |m| {
            m["consumer_id"] == second_id.as_str()
        })
        .await?;
    let offer = wire::offer(&first.id, &wire::opaque_sdp("addressee"));
    producer.ws.send_json(&offer).await?;
    first.expect("webrtc_offer").await?;
    second
        .expect_quiet(quiet_window(&ctx), "nothing for the consumer not addressed")
        .await?;
    Ok(Outcome::Pass)
}

async fn keeps_order(ctx: Ctx) -> CaseResult {
    let (mut producer, mut consumer) = pair(&ctx).await?;
    let frames: Vec<String> = (0..ORDERED_CANDIDATES)
        .map(|n| {
            let text = format!("candidate:{n} 1 udp 1 127.0.0.1 {} typ host", 40000 + n);
            wire::candidate(&consumer.id, &text, 0).to_string()
        })
        .collect();
    producer.ws.send_burst(frames).await?;
    for n in 0..ORDERED_CANDIDATES {
        let got = consumer.expect("ice_candidate").await?;
        let want = format!("candidate:{n} ");
        let text = got["candidate"].as_str().unwrap_or_default();
        ensure(
            text.starts_with(&want),
            format!("{want:?} next"),
            compact(&got),
        )?;
    }
    Ok(Outcome::Pass)
}

async fn unknown_recipient_refused(ctx: Ctx) -> CaseResult {
    let mut producer = Peer::producer(&ctx).await?;
    let offer = wire::offer(&wire::unique_id("nobody"), &wire::opaque_sdp("lost"));
    producer.ws.send_json(&offer).await?;
    error_reply(&mut producer).await?;
    Ok(Outcome::Pass)
}

async fn unpaired_refused(ctx: Ctx) -> CaseResult {
    let mut producer = Peer::producer(&ctx).await?;
    let mut stranger = Peer::consumer(&ctx).await?;
    let offer = wire::offer(&stranger.id, &wire::opaque_sdp("unpaired"));
    producer.ws.send_json(&offer).await?;
    error_reply(&mut producer).await?;
    stranger
        .expect_quiet(
            quiet_window(&ctx),
            "nothing for a consumer that watches no one",
        )
        .await?;
    Ok(Outcome::Pass)
}
