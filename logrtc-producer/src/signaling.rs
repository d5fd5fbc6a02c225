//! The producer's side of the signaling flow (000 §3 and CLARIFICATIONS L1-L6): register,
//! answer every `consumer_connected` with a peer, route answers and candidates to it by
//! `from`, and reconnect with backoff for ever (000 §5: `maxReconnectAttempts = -1`).

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::sync::{mpsc, watch};
use tokio_tungstenite::tungstenite::Message;

use crate::peer::{candidate_from_message, run_peer, Features, PeerContext, PeerSignal};
use crate::ProducerConfig;

/// Offers and candidates waiting for the signaling connection.
pub const OUTBOUND_DEPTH: usize = 1024;
/// Answers and candidates waiting for one peer.
const PEER_SIGNAL_DEPTH: usize = 64;

/// Why a signaling session ended.
#[derive(Debug, PartialEq, Eq)]
enum SessionEnd {
    /// The connection failed or closed: try again after the backoff.
    Lost,
    /// Another connection registered this `client_id` (L2): retrying would fight it.
    Replaced,
    Shutdown,
}

/// The reconnect delay: doubles from `min` to `max`, with ±20 % jitter (L10).
#[derive(Debug)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    next: Duration,
    seed: u64,
}

impl Backoff {
    pub fn new(min: Duration, max: Duration) -> Self {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0x9e37_79b9, |d| d.as_nanos() as u64);
        Backoff {
            min,
            max: max.max(min),
            next: min,
            seed,
        }
    }

    pub fn reset(&mut self) {
        self.next = self.min;
    }

    pub fn next_delay(&mut self) -> Duration {
        let base = self.next;
        self.next = (self.next * 2).min(self.max);
        // splitmix64: enough randomness to keep producers from reconnecting in step.
        self.seed = self.seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.seed;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        let unit = ((z ^ (z >> 31)) % 1000) as f64 / 1000.0; // 0.0 .. 1.0
        base.mul_f64(0.8 + 0.4 * unit).min(self.max)
    }
}

/// The peers of the consumers that watch this producer, by consumer id.
#[derive(Debug, Default)]
struct Peers(HashMap<String, mpsc::Sender<PeerSignal>>);

impl Peers {
    /// Starts a peer for a consumer, replacing (and so closing) any earlier one (L4).
    fn start(&mut self, context: &PeerContext, consumer_id: String, features: Features) {
        let (signals, receiver) = mpsc::channel(PEER_SIGNAL_DEPTH);
        self.0.insert(consumer_id.clone(), signals);
        tokio::spawn(run_peer(context.clone(), consumer_id, features, receiver));
    }

    fn forward(&self, from: &str, signal: PeerSignal) {
        match self.0.get(from) {
            Some(peer) => {
                let _ = peer.try_send(signal);
            }
            None => tracing::debug!(%from, "signal from a consumer without a peer"),
        }
    }
}

pub async fn run(
    config: Arc<ProducerConfig>,
    context: PeerContext,
    mut outbound: mpsc::Receiver<Value>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut backoff = Backoff::new(config.reconnect_min, config.reconnect_max);
    let mut peers = Peers::default();
    loop {
        let end = match tokio_tungstenite::connect_async(config.signaling_url.as_str()).await {
            Ok((socket, _)) => {
                // Offers and candidates for the last connection are stale now.
                while outbound.try_recv().is_ok() {}
                session(
                    &config,
                    &context,
                    socket,
                    &mut outbound,
                    &mut peers,
                    &mut shutdown,
                    &mut backoff,
                )
                .await
            }
            Err(error) => {
                tracing::warn!(url = %config.signaling_url, %error, "signaling connection failed");
                SessionEnd::Lost
            }
        };
        match end {
            SessionEnd::Shutdown => return,
            SessionEnd::Replaced => {
                tracing::error!(client_id = %config.client_id, "another producer registered this client_id; stopping");
                return;
            }
            SessionEnd::Lost => context
                .metrics
                .connection_failures
                .fetch_add(1, Ordering::Relaxed),
        };
        let delay = backoff.next_delay();
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            _ = shutdown.changed() => return,
        }
    }
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn session(
    config: &ProducerConfig,
    context: &PeerContext,
    socket: Socket,
    outbound: &mut mpsc::Receiver<Value>,
    peers: &mut Peers,
    shutdown: &mut watch::Receiver<bool>,
    backoff: &mut Backoff,
) -> SessionEnd {
    let (mut writer, mut reader) = socket.split();
    let register = json!({
        "type": "register",
        "role": "producer",
        "client_id": config.client_id,
        "metadata": config.metadata,
    });
    if writer
        .send(Message::text(register.to_string()))
        .await
        .is_err()
    {
        return SessionEnd::Lost;
    }
    loop {
        tokio::select! {
            frame = reader.next() => {
                let text = match frame {
                    Some(Ok(Message::Text(text))) => text,
                    Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return SessionEnd::Lost,
                    Some(Ok(_)) => continue,
                };
                let Ok(message) = serde_json::from_str::<Value>(&text) else { continue };
                if let Some(end) = handle(context, &message, peers, backoff) {
                    return end;
                }
            }
            Some(message) = outbound.recv() => {
                if writer.send(Message::text(message.to_string())).await.is_err() {
                    return SessionEnd::Lost;
                }
            }
            _ = shutdown.changed() => {
                let _ = writer.send(Message::Close(None)).await;
                return SessionEnd::Shutdown;
            }
        }
    }
}

fn handle(
    context: &PeerContext,
    message: &Value,
    peers: &mut Peers,
    backoff: &mut Backoff,
) -> Option<SessionEnd> {
    let text = |key: &str| message[key].as_str().unwrap_or_default().to_owned();
    match message["type"].as_str().unwrap_or_default() {
        "registered" => {
            backoff.reset();
            context
                .metrics
                .registrations
                .fetch_add(1, Ordering::Relaxed);
        }
        "consumer_connected" => {
            peers.start(
                context,
                text("consumer_id"),
                Features::from_message(message),
            );
        }
        "consumer_disconnected" => {
            // Dropping the sender ends the peer task, which closes the connection.
            peers.0.remove(&text("consumer_id"));
        }
        "webrtc_answer" => peers.forward(&text("from"), PeerSignal::Answer(text("sdp"))),
        "ice_candidate" => {
            if let Some(candidate) = candidate_from_message(message) {
                peers.forward(&text("from"), PeerSignal::Candidate(candidate));
            }
        }
        "error" if message["code"] == "replaced" => return Some(SessionEnd::Replaced),
        "error" => {
            tracing::warn!(code = %message["code"], message = %message["message"], "signaling error")
        }
        _ => {}
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_its_ceiling_with_jitter_and_resets() {
        let mut backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(30));
        let delays: Vec<Duration> = (0..10).map(|_| backoff.next_delay()).collect();
        assert!(delays[0] >= Duration::from_millis(400) && delays[0] <= Duration::from_millis(600));
        assert!(
            delays[1] >= Duration::from_millis(800) && delays[1] <= Duration::from_millis(1200)
        );
        assert!(delays.iter().all(|d| *d <= Duration::from_secs(30)));
        assert!(delays[9] >= Duration::from_secs(24));
        backoff.reset();
        assert!(backoff.next_delay() <= Duration::from_millis(600));
    }
}
