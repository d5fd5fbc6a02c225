//! logrtc (seed 000) signaling cases: the suite plays producers and consumers with opaque SDP,
//! so that a signaling server is judged without WebRTC.
//!
//! The server under test is shared with other cases running at once, so every client id is
//! unique and consumers skip the listing pushes (`producer_connected`/`_disconnected`) that
//! other cases' producers cause, unless a case is about them.

mod errors;
mod leave;
mod register;
mod relay;

use crate::case::{Case, Failure};
use crate::check::compact;
use crate::client::{Event, WsClient};
use crate::target::Ctx;
use crate::wire::logrtc as wire;
use serde_json::Value;
use std::time::Duration;
use tokio::time::Instant;

pub fn cases() -> Vec<Case> {
    [
        register::cases(),
        relay::cases(),
        leave::cases(),
        errors::cases(),
    ]
    .concat()
}

/// How long a client must stay silent to show that nothing was sent to it.
pub fn quiet_window(ctx: &Ctx) -> Duration {
    ctx.wait / 4
}

/// One signaling connection with a client id of its own.
pub struct Peer {
    pub ws: WsClient,
    pub id: String,
    /// Whether listing pushes are skipped by [`Peer::next`].
    skip_pushes: bool,
}

impl Peer {
    pub async fn connect(ctx: &Ctx, role: &str) -> Result<Self, Failure> {
        let id = wire::unique_id(role);
        let url = &ctx.logrtc()?.ws_url;
        let ws = WsClient::connect(&id, url, &ctx.transcript, ctx.wait).await?;
        Ok(Self {
            ws,
            id,
            skip_pushes: role == "consumer",
        })
    }

    /// Connects and registers as a producer; the acknowledgement, if any, is read.
    pub async fn producer(ctx: &Ctx) -> Result<Self, Failure> {
        let mut peer = Self::connect(ctx, "producer").await?;
        let register = wire::register_producer(&peer.id);
        peer.register(ctx, &register).await?;
        Ok(peer)
    }

    pub async fn consumer(ctx: &Ctx) -> Result<Self, Failure> {
        let mut peer = Self::connect(ctx, "consumer").await?;
        let register = wire::register_consumer(&peer.id);
        peer.register(ctx, &register).await?;
        Ok(peer)
    }

    /// Sends `register` and takes the `registered` answer if one comes within a short window
    /// (an answer is L1's decision; the document shows none). An error fails the case.
    async fn register(&mut self, ctx: &Ctx, register: &Value) -> Result<(), Failure> {
        self.ws.send_json(register).await?;
        match self.next(quiet_window(ctx)).await {
            Event::Json(reply) if reply["type"] == "registered" => Ok(()),
            Event::Silence(_) => Ok(()),
            other => Err(Failure::mismatch(
                "`registered`, or nothing",
                other.describe(),
            )),
        }
    }

    /// The next event, listing pushes skipped for consumers, within `wait`.
    pub async fn next(&mut self, wait: Duration) -> Event {
        let deadline = Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.ws.next_event_within(left).await {
                Event::Json(message) if self.skip_pushes && wire::is_listing_push(&message) => {
                    continue
                }
                event => return event,
            }
        }
    }

    /// The next message, which must be of type `kind`, within the default wait.
    pub async fn expect(&mut self, kind: &str) -> Result<Value, Failure> {
        match self.next(self.ws.wait()).await {
            Event::Json(message) if message["type"] == kind => Ok(message),
            other => Err(Failure::mismatch(
                format!("a `{kind}` message"),
                other.describe(),
            )),
        }
    }

    /// The next message of type `kind` that `matches`, skipping others, within `wait`.
    pub async fn await_message(
        &mut self,
        kind: &str,
        wait: Duration,
        matches: impl Fn(&Value) -> bool,
    ) -> Result<Value, Failure> {
        let deadline = Instant::now() + wait;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.ws.next_event_within(left).await {
                Event::Json(message) if message["type"] == kind && matches(&message) => {
                    return Ok(message)
                }
                Event::Json(message) => seen.push(compact(&message)),
                other => {
                    seen.push(other.describe());
                    return Err(Failure::mismatch(
                        format!("a matching `{kind}` message"),
                        seen.join("; "),
                    ));
                }
            }
        }
    }

    /// Nothing (but listing pushes, for consumers) for `window`.
    pub async fn expect_quiet(&mut self, window: Duration, what: &str) -> Result<(), Failure> {
        match self.next(window).await {
            Event::Silence(_) => Ok(()),
            other => Err(Failure::mismatch(what, other.describe())),
        }
    }

    /// Watches `producer` and reads the `watching` answer when one comes.
    pub async fn watch(&mut self, ctx: &Ctx, producer: &str) -> Result<(), Failure> {
        self.ws.send_json(&wire::watch(producer)).await?;
        match self.next(quiet_window(ctx)).await {
            Event::Json(reply) if reply["type"] == "watching" => Ok(()),
            Event::Silence(_) => Ok(()),
            other => Err(Failure::mismatch(
                "`watching`, or nothing",
                other.describe(),
            )),
        }
    }
}

/// A producer and a consumer watching it; the producer has read its `consumer_connected`.
pub async fn pair(ctx: &Ctx) -> Result<(Peer, Peer), Failure> {
    let mut producer = Peer::producer(ctx).await?;
    let mut consumer = Peer::consumer(ctx).await?;
    consumer.watch(ctx, &producer.id).await?;
    let consumer_id = consumer.id.clone();
    producer
        .await_message("consumer_connected", ctx.wait, |m| {
            m["consumer_id"] == consumer_id.as_str()
        })
        .await?;
    Ok((producer, consumer))
}

/// An `error` message, answering the frame just sent, within the wait.
pub async fn error_reply(peer: &mut Peer) -> Result<Value, Failure> {
    match peer.next(peer.ws.wait()).await {
        Event::Json(reply) if reply["type"] == "error" => Ok(reply),
        other => Err(Failure::mismatch("an `error` message", other.describe())),
    }
}
