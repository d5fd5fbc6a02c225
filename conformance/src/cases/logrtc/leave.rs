//! Departures (L5): the other side is told, and a registration never outlives its connection.

use super::{pair, Peer};
use crate::case::{Case, CaseResult, Failure, Outcome};
use crate::check::compact;
use crate::target::Ctx;
use crate::wire::logrtc as wire;
use std::time::Duration;
use tokio::time::Instant;

pub fn cases() -> Vec<Case> {
    vec![
        Case::must("logrtc/leave/consumer-departure-told")
            .inferred("L5: a producer hears consumer_disconnected when its consumer leaves")
            .sends("a watching consumer's connection reset without a close")
            .requires("the producer gets consumer_disconnected naming the consumer")
            .run(|c| Box::pin(consumer_departure_told(c))),
        Case::must("logrtc/leave/producer-departure-told")
            .inferred("L5: consumers hear producer_disconnected when a producer leaves")
            .sends("a producer's connection closed while a consumer is registered")
            .requires("the consumer gets producer_disconnected naming the producer")
            .run(|c| Box::pin(producer_departure_told(c))),
        Case::must("logrtc/leave/registration-released")
            .inferred("L5: a registration never outlives its connection")
            .sends("a producer's connection reset, then list_producers")
            .requires("the producer leaves the listing within the slow wait")
            .run(|c| Box::pin(registration_released(c))),
    ]
}

async fn consumer_departure_told(ctx: Ctx) -> CaseResult {
    let (mut producer, consumer) = pair(&ctx).await?;
    let consumer_id = consumer.id.clone();
    consumer.ws.abort();
    producer
        .await_message("consumer_disconnected", ctx.slow_wait, |m| {
            m["consumer_id"] == consumer_id.as_str()
        })
        .await?;
    Ok(Outcome::Pass)
}

async fn producer_departure_told(ctx: Ctx) -> CaseResult {
    let producer = Peer::producer(&ctx).await?;
    let mut consumer = Peer::consumer(&ctx).await?;
    let producer_id = producer.id.clone();
    producer.ws.close().await;
    consumer
        .await_message("producer_disconnected", ctx.slow_wait, |m| {
            m["producer_id"] == producer_id.as_str()
        })
        .await?;
    Ok(Outcome::Pass)
}

async fn registration_released(ctx: Ctx) -> CaseResult {
    let producer = Peer::producer(&ctx).await?;
    let producer_id = producer.id.clone();
    let mut consumer = Peer::consumer(&ctx).await?;
    producer.ws.abort();
    let deadline = Instant::now() + ctx.slow_wait;
    loop {
        consumer.ws.send_json(&wire::list_producers()).await?;
        let list = consumer.expect("producer_list").await?;
        let still = list["producers"]
            .as_array()
            .is_some_and(|all| all.iter().any(|p| p["client_id"] == producer_id.as_str()));
        if !still {
            return Ok(Outcome::Pass);
        }
        if Instant::now() >= deadline {
            return Err(Failure::mismatch(
                format!("{producer_id} gone from the listing"),
                compact(&list),
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
