//! sfu (seed 004) cases: protoo signaling (join, leave, keepalive, publish, unpublish,
//! subscribe, unsubscribe, broadcast and their notifications), errors, and media through real
//! str0m peers that send Opus and VP8.
//!
//! The server under test is shared with other cases running at once: every room and peer id is
//! unique, and a case only reads notifications about its own room.

mod errors;
mod join;
mod media;
mod streams;

use crate::case::{Case, Failure};
use crate::check::compact;
use crate::client::media::{MediaPeer, Tracks};
use crate::client::{Event, WsClient};
use crate::target::Ctx;
use crate::wire::sfu as wire;
use serde_json::Value;
use std::collections::VecDeque;
use std::time::Duration;
use tokio::time::Instant;

pub fn cases() -> Vec<Case> {
    [
        join::cases(),
        streams::cases(),
        media::cases(),
        errors::cases(),
    ]
    .concat()
}

/// How long a peer must stay silent to show that nothing was sent to it.
pub fn quiet_window(ctx: &Ctx) -> Duration {
    ctx.wait / 4
}

/// A keepalive goes out this often while a case waits (a third of the target's timeout).
fn keepalive_period(ctx: &Ctx) -> Duration {
    let timeout = ctx.sfu.as_ref().and_then(|s| s.keepalive_timeout);
    timeout.map_or(Duration::from_secs(10), |t| t / 3)
}

/// One protoo connection with a peer id of its own.
pub struct Peer {
    pub ws: WsClient,
    pub uid: String,
    /// The room joined, once joined.
    pub rid: Option<String>,
    next_id: u64,
    /// Notifications read while waiting for a response.
    inbox: VecDeque<Value>,
    last_request: Instant,
    keepalive_every: Duration,
}

impl Peer {
    pub async fn connect(ctx: &Ctx) -> Result<Self, Failure> {
        let uid = wire::unique_id("peer");
        let url = ctx.sfu()?.peer_url(&uid);
        let ws = WsClient::connect(&uid, &url, &ctx.transcript, ctx.wait).await?;
        Ok(Self {
            ws,
            uid,
            rid: None,
            next_id: 1,
            inbox: VecDeque::new(),
            last_request: Instant::now(),
            keepalive_every: keepalive_period(ctx),
        })
    }

    /// Connects and joins `rid`.
    pub async fn joined(ctx: &Ctx, rid: &str) -> Result<Self, Failure> {
        let mut peer = Self::connect(ctx).await?;
        peer.ok("join", wire::join(rid)).await?;
        peer.rid = Some(rid.to_owned());
        Ok(peer)
    }

    pub fn room(&self) -> &str {
        self.rid.as_deref().unwrap_or_default()
    }

    /// Sends a request and returns its id.
    pub async fn send(&mut self, method: &str, data: Value) -> Result<u64, Failure> {
        let id = self.next_id;
        self.next_id += 1;
        self.last_request = Instant::now();
        self.ws.send_json(&wire::request(id, method, data)).await?;
        Ok(id)
    }

    /// Sends a request and returns its response, whatever `ok` says.
    pub async fn request(&mut self, method: &str, data: Value) -> Result<Value, Failure> {
        let id = self.send(method, data).await?;
        self.response(id, self.ws.wait()).await
    }

    /// Sends a request that must succeed, and returns the response's `data`.
    pub async fn ok(&mut self, method: &str, data: Value) -> Result<Value, Failure> {
        let response = self.request(method, data).await?;
        if response["ok"] != true {
            return Err(Failure::mismatch(
                format!("{method} answered ok:true"),
                compact(&response),
            ));
        }
        Ok(response["data"].clone())
    }

    /// Sends a request that must fail, and returns the response.
    pub async fn refused(&mut self, method: &str, data: Value) -> Result<Value, Failure> {
        let response = self.request(method, data).await?;
        if response["ok"] != false {
            return Err(Failure::mismatch(
                format!("{method} answered ok:false"),
                compact(&response),
            ));
        }
        Ok(response)
    }

    /// The response to request `id`; notifications read meanwhile are kept for later.
    pub async fn response(&mut self, id: u64, wait: Duration) -> Result<Value, Failure> {
        let deadline = Instant::now() + wait;
        loop {
            match self.read_until(deadline).await {
                Event::Json(message) if wire::is_response_to(&message, id) => return Ok(message),
                Event::Json(message) if message["notification"] == true => {
                    self.inbox.push_back(message)
                }
                // Responses to the keepalives sent while waiting.
                Event::Json(message) if message["response"] == true && message["ok"] == true => {}
                other => {
                    let expected = format!("the response to request {id}");
                    return Err(Failure::mismatch(expected, other.describe()));
                }
            }
        }
    }

    /// Stays in the room, sending keepalives and reading what arrives (and dropping it), until
    /// the connection closes or breaks: for load, where nobody reads the notifications.
    pub async fn stay_joined(&mut self) {
        loop {
            let an_hour = Instant::now() + Duration::from_secs(3600);
            match self.read_until(an_hour).await {
                Event::Close(_) | Event::Dropped(_) => return,
                _ => self.inbox.clear(),
            }
        }
    }

    /// The next event before `deadline`, sending keepalives as a protoo client would.
    async fn read_until(&mut self, deadline: Instant) -> Event {
        loop {
            let now = Instant::now();
            if now >= deadline {
                return Event::Silence(Duration::ZERO);
            }
            let keepalive_at = self.last_request + self.keepalive_every;
            if now >= keepalive_at && self.rid.is_some() {
                let rid = self.room().to_owned();
                if self.send("keepalive", wire::room(&rid)).await.is_err() {
                    return Event::Dropped("the connection refused a keepalive".to_owned());
                }
                continue;
            }
            let slice = deadline.min(keepalive_at.max(now + Duration::from_millis(50))) - now;
            match self.ws.next_event_within(slice).await {
                Event::Silence(_) => continue,
                event => return event,
            }
        }
    }

    /// The next notification of `method` that `matches` within `wait`; others are skipped.
    pub async fn notification(
        &mut self,
        method: &str,
        wait: Duration,
        matches: impl Fn(&Value) -> bool,
    ) -> Result<Value, Failure> {
        let wanted = |m: &Value| wire::is_notification(m, method) && matches(&m["data"]);
        if let Some(at) = self.inbox.iter().position(&wanted) {
            return Ok(self.inbox.remove(at).unwrap_or_default());
        }
        let deadline = Instant::now() + wait;
        let mut seen = Vec::new();
        loop {
            match self.read_until(deadline).await {
                Event::Json(message) if wanted(&message) => return Ok(message),
                Event::Json(message) if message["response"] == true => {}
                Event::Json(message) => seen.push(compact(&message)),
                Event::Silence(_) => {
                    seen.push(format!("nothing more within {} ms", wait.as_millis()));
                    let expected = format!("a matching {method} notification");
                    return Err(Failure::mismatch(expected, seen.join("; ")));
                }
                other => {
                    seen.push(other.describe());
                    return Err(Failure::mismatch(
                        format!("a matching {method} notification"),
                        seen.join("; "),
                    ));
                }
            }
        }
    }

    /// No notification of `method` that `matches` within `window`.
    pub async fn no_notification(
        &mut self,
        method: &str,
        window: Duration,
        matches: impl Fn(&Value) -> bool,
    ) -> Result<(), Failure> {
        match self.notification(method, window, matches).await {
            Ok(message) => Err(Failure::mismatch(
                format!("no {method} notification"),
                compact(&message),
            )),
            Err(Failure::Mismatch { .. }) => Ok(()),
            Err(other) => Err(other),
        }
    }

    /// Publishes through a real media peer; returns it and the response's data.
    pub async fn publish(&mut self, tracks: Tracks) -> Result<(MediaPeer, Value), Failure> {
        let publisher = MediaPeer::publisher(tracks)
            .await
            .map_err(Failure::Harness)?;
        let rid = self.room().to_owned();
        let data = wire::publish(&rid, publisher.offer(), tracks.audio, tracks.video);
        let answer = self.ok("publish", data).await?;
        let sdp = answer["jsep"]["sdp"].as_str().unwrap_or_default();
        publisher
            .accept_answer(sdp)
            .await
            .map_err(|e| Failure::mismatch("an SDP answer str0m accepts", e))?;
        Ok((publisher, answer))
    }

    /// Subscribes to `mid` through a real media peer; returns it and the response's data.
    pub async fn subscribe(
        &mut self,
        mid: &str,
        sfuid: &str,
    ) -> Result<(MediaPeer, Value), Failure> {
        self.subscribe_with(mid, sfuid, false).await
    }

    /// As [`Peer::subscribe`]; with `counting`, the peer counts RTP datagrams instead of
    /// decrypting them (for load).
    pub async fn subscribe_with(
        &mut self,
        mid: &str,
        sfuid: &str,
        counting: bool,
    ) -> Result<(MediaPeer, Value), Failure> {
        let subscriber = if counting {
            MediaPeer::counting_subscriber(Tracks::AUDIO_VIDEO).await
        } else {
            MediaPeer::subscriber(Tracks::AUDIO_VIDEO).await
        };
        self.subscribe_as(mid, sfuid, subscriber.map_err(Failure::Harness)?)
            .await
    }

    /// Subscribes `subscriber`, a receiving peer not yet connected, to the stream `mid`.
    pub async fn subscribe_as(
        &mut self,
        mid: &str,
        sfuid: &str,
        subscriber: MediaPeer,
    ) -> Result<(MediaPeer, Value), Failure> {
        let rid = self.room().to_owned();
        let answer = self
            .ok(
                "subscribe",
                wire::subscribe(&rid, mid, subscriber.offer(), sfuid),
            )
            .await?;
        let sdp = answer["jsep"]["sdp"].as_str().unwrap_or_default();
        subscriber
            .accept_answer(sdp)
            .await
            .map_err(|e| Failure::mismatch("an SDP answer str0m accepts", e))?;
        Ok((subscriber, answer))
    }
}

/// A fresh room id.
pub fn fresh_room() -> String {
    wire::unique_id("room")
}

/// Two peers in a fresh room; `first` has read `second`'s peer-join if one came.
pub async fn two_in_a_room(ctx: &Ctx) -> Result<(Peer, Peer), Failure> {
    let rid = fresh_room();
    let mut first = Peer::joined(ctx, &rid).await?;
    let second = Peer::joined(ctx, &rid).await?;
    let uid = second.uid.clone();
    let _ = first
        .notification("peer-join", quiet_window(ctx), |d| d["uid"] == uid.as_str())
        .await;
    Ok((first, second))
}

/// The `mid` and `sfuid` of a publish response.
pub fn stream_of(answer: &Value) -> Result<(String, String), Failure> {
    let mid = answer["mid"].as_str().filter(|m| !m.is_empty());
    let mid = mid
        .ok_or_else(|| Failure::mismatch("a string mid in the publish answer", compact(answer)))?;
    let sfuid = answer["sfuid"].as_str().unwrap_or_default();
    Ok((mid.to_owned(), sfuid.to_owned()))
}

/// A response that must be an error: ok:false with an errorCode and errorReason (004 §5).
pub fn check_error_shape(response: &Value) -> Result<(), Failure> {
    let has_code = wire::error_code(response).is_some();
    let has_reason = response["errorReason"].is_string();
    if response["ok"] == false && has_code && has_reason {
        return Ok(());
    }
    Err(Failure::mismatch(
        "ok:false with errorCode and errorReason",
        compact(response),
    ))
}
