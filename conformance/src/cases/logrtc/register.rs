//! Registration, the producer listing, watching, and duplicate ids.

use super::{error_reply, quiet_window, Peer};
use crate::case::{Case, CaseResult, Failure, Outcome};
use crate::check::{compact, ensure};
use crate::client::Event;
use crate::target::Ctx;
use crate::wire::logrtc as wire;
use serde_json::Value;

pub fn cases() -> Vec<Case> {
    vec![
        Case::should("logrtc/register/acknowledged")
            .inferred("L1: register is answered with registered, client_id and role")
            .sends("the document's producer register")
            .requires("`registered` with the same client_id and role producer")
            .run(|c| Box::pin(acknowledged(c))),
        Case::must("logrtc/register/listed-with-metadata")
            .inferred("L3: list_producers lists registered producers with their metadata")
            .sends("a producer register with metadata, then list_producers from a consumer")
            .requires("producer_list holds the producer with the metadata as sent")
            .run(|c| Box::pin(listed_with_metadata(c))),
        Case::must("logrtc/register/consumer-connected")
            .documented("000 §3 等待消费者连接: consumer_connected with consumer_id")
            .sends("a consumer's watch of a registered producer")
            .requires("the producer gets consumer_connected naming the consumer's id")
            .run(|c| Box::pin(consumer_connected(c))),
        Case::must("logrtc/register/duplicate-client-id")
            .inferred("L2: the newest registration of a client_id wins; the older is closed")
            .sends("two producer connections registering one client_id, then a watch of it")
            .requires("the older is told or closed and the newer gets consumer_connected (refusing the newer is a variant)")
            .run(|c| Box::pin(duplicate_client_id(c))),
        Case::should("logrtc/register/unknown-producer-refused")
            .inferred("L3: watching a producer that is not registered is unknown_producer")
            .sends("a watch of an id nobody registered")
            .requires("an `error` message")
            .run(|c| Box::pin(unknown_producer_refused(c))),
    ]
}

async fn acknowledged(ctx: Ctx) -> CaseResult {
    let mut producer = Peer::connect(&ctx, "producer").await?;
    producer
        .ws
        .send_json(&wire::register_producer(&producer.id))
        .await?;
    let reply = producer.expect("registered").await?;
    ensure(
        reply["client_id"] == producer.id.as_str() && reply["role"] == "producer",
        format!("client_id {:?} and role producer", producer.id),
        compact(&reply),
    )?;
    Ok(Outcome::Pass)
}

/// The listing entry of `id`, from a list_producers answer.
fn listed<'a>(list: &'a Value, id: &str) -> Option<&'a Value> {
    list["producers"]
        .as_array()?
        .iter()
        .find(|p| p["client_id"] == id)
}

async fn listed_with_metadata(ctx: Ctx) -> CaseResult {
    let producer = Peer::producer(&ctx).await?;
    let mut consumer = Peer::consumer(&ctx).await?;
    consumer.ws.send_json(&wire::list_producers()).await?;
    let list = consumer.expect("producer_list").await?;
    let entry = listed(&list, &producer.id)
        .ok_or_else(|| Failure::mismatch(format!("{} listed", producer.id), compact(&list)))?;
    let sent = &wire::register_producer(&producer.id)["metadata"];
    ensure(
        &entry["metadata"] == sent,
        format!("metadata {sent}"),
        compact(entry),
    )?;
    Ok(Outcome::Pass)
}

async fn consumer_connected(ctx: Ctx) -> CaseResult {
    let mut producer = Peer::producer(&ctx).await?;
    let mut consumer = Peer::consumer(&ctx).await?;
    consumer.watch(&ctx, &producer.id).await?;
    let told = producer.expect("consumer_connected").await?;
    ensure(
        told["consumer_id"] == consumer.id.as_str(),
        format!("consumer_id {:?}", consumer.id),
        compact(&told),
    )?;
    Ok(Outcome::Pass)
}

async fn duplicate_client_id(ctx: Ctx) -> CaseResult {
    let mut first = Peer::producer(&ctx).await?;
    let mut second = Peer::connect(&ctx, "producer").await?;
    second.id.clone_from(&first.id);
    second
        .ws
        .send_json(&wire::register_producer(&second.id))
        .await?;
    let answer = second.next(quiet_window(&ctx)).await;
    let refused = matches!(&answer, Event::Json(m) if m["type"] == "error");
    let mut consumer = Peer::consumer(&ctx).await?;
    if refused {
        consumer.watch(&ctx, &first.id).await?;
        first.expect("consumer_connected").await?;
        return Ok(Outcome::Variant(
            "the newer registration was refused; the first holder kept the id".to_owned(),
        ));
    }
    let older = first.next(ctx.wait).await;
    let told = match &older {
        Event::Json(m) => m["type"] == "error",
        Event::Close(_) | Event::Dropped(_) => true,
        _ => false,
    };
    ensure(
        told,
        "the older connection told (error) or closed",
        older.describe(),
    )?;
    consumer.watch(&ctx, &second.id).await?;
    second
        .await_message("consumer_connected", ctx.wait, |m| {
            m["consumer_id"] == consumer.id.as_str()
        })
        .await?;
    Ok(Outcome::Pass)
}

async fn unknown_producer_refused(ctx: Ctx) -> CaseResult {
    let mut consumer = Peer::consumer(&ctx).await?;
    consumer
        .ws
        .send_json(&wire::watch(&wire::unique_id("nobody")))
        .await?;
    error_reply(&mut consumer).await?;
    Ok(Outcome::Pass)
}
