//! cmdrelay (seed 003) server cases: the suite plays devices and controllers.
//!
//! The server pushes `Heartbeat` at any time, so every read here skips heartbeats unless the
//! case is about them. Each case leases tokens of its own: one token is one room.

mod device;
mod errors;
mod heartbeat;
mod init;
mod order;
mod relay;
mod robustness;
mod token;

use crate::case::{Case, Failure};
use crate::check::compact;
use crate::client::{Event, WsClient};
use crate::target::Ctx;
use crate::wire::cmdrelay as wire;
use serde_json::Value;
use std::time::Duration;
use tokio::time::Instant;

pub fn cases() -> Vec<Case> {
    [
        init::cases(),
        token::cases(),
        order::cases(),
        heartbeat::cases(),
        device::cases(),
        relay::cases(),
        errors::cases(),
        robustness::cases(),
    ]
    .concat()
}

/// How long a client must stay silent to show that nothing was sent to it. Relays are
/// checked for silence only after the intended receiver got its copy.
pub fn quiet_window(ctx: &Ctx) -> Duration {
    ctx.wait / 4
}

/// One client connection.
pub struct Client {
    pub ws: WsClient,
}

impl Client {
    pub async fn connect(ctx: &Ctx, name: &str) -> Result<Self, Failure> {
        let url = &ctx.cmdrelay()?.ws_url;
        let ws = WsClient::connect(name, url, &ctx.transcript, ctx.wait).await?;
        Ok(Self { ws })
    }

    /// Connects, sends `init` with `token`, and returns the answer to it.
    pub async fn join(ctx: &Ctx, name: &str, token: &str) -> Result<(Self, Value), Failure> {
        let mut client = Self::connect(ctx, name).await?;
        client.ws.send_json(&wire::init(token)).await?;
        let response = client.reply("a ResponseMessage answering init").await?;
        Ok((client, response))
    }

    /// The next event that is not a heartbeat, within `wait`.
    pub async fn next(&mut self, wait: Duration) -> Event {
        let deadline = Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.ws.next_event_within(left).await {
                Event::Json(message) if wire::is_heartbeat(&message) => continue,
                event => return event,
            }
        }
    }

    /// The next message that is not a heartbeat, within the default wait.
    pub async fn reply(&mut self, what: &str) -> Result<Value, Failure> {
        match self.next(self.ws.wait()).await {
            Event::Json(message) => Ok(message),
            other => Err(Failure::mismatch(what, other.describe())),
        }
    }

    /// Sends `checkDevice` and returns the answer, which must be a `checkDevice` response.
    pub async fn check_device(&mut self) -> Result<Value, Failure> {
        self.ws.send_json(&wire::check_device()).await?;
        let reply = self.reply("a checkDevice response").await?;
        if reply["cmd"] != "checkDevice" {
            return Err(Failure::mismatch(
                "a response with cmd checkDevice",
                compact(&reply),
            ));
        }
        Ok(reply)
    }

    /// The `code` of a `checkDevice` response, as written.
    pub async fn device_code(&mut self) -> Result<String, Failure> {
        let reply = self.check_device().await?;
        Ok(code_text(&reply))
    }

    /// Nothing but heartbeats for `window`.
    pub async fn expect_quiet(&mut self, window: Duration, what: &str) -> Result<(), Failure> {
        match self.next(window).await {
            Event::Silence(_) => Ok(()),
            other => Err(Failure::mismatch(what, other.describe())),
        }
    }
}

/// Clients joined to the room of `token`, in order of `names`.
pub async fn room(ctx: &Ctx, token: &str, names: &[&str]) -> Result<Vec<Client>, Failure> {
    let mut clients = Vec::with_capacity(names.len());
    for name in names {
        let (client, _) = Client::join(ctx, name, token).await?;
        clients.push(client);
    }
    Ok(clients)
}

/// `code` as the server wrote it: a string, or another JSON value shown as JSON.
pub fn code_text(message: &Value) -> String {
    match &message["code"] {
        Value::String(code) => code.clone(),
        other => other.to_string(),
    }
}

/// Polls `checkDevice` until it answers `want`, for at most `wait`; returns the last code.
pub async fn await_device_code(
    client: &mut Client,
    want: &str,
    wait: Duration,
) -> Result<String, Failure> {
    let deadline = Instant::now() + wait;
    loop {
        let code = client.device_code().await?;
        if code == want || Instant::now() >= deadline {
            return Ok(code);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A response that refuses: a JSON message whose code is not the success code "1".
pub fn is_refusal(message: &Value) -> bool {
    !wire::is_heartbeat(message) && message["code"] != "1"
}
