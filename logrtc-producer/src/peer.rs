//! One consumer's peer connection: the offer, the trickled candidates, the ordered `logs`
//! channel (000 §4.1) and the task that drains the consumer's queue into it.

use std::io::Write;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use serde_json::{json, Value};
use tokio::sync::{mpsc, Notify};
use webrtc::data_channel::{DataChannel, DataChannelEvent};
use webrtc::peer_connection::{
    PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler, RTCConfigurationBuilder,
    RTCIceCandidateInit, RTCIceServer, RTCPeerConnectionIceEvent, RTCPeerConnectionState,
    RTCSessionDescription,
};

use crate::dispatch::{SharedDispatch, SinkId};
use crate::metrics::Metrics;

/// The data channel's label, fixed by the document (000 §4.1: `createDataChannel("logs")`).
pub const CHANNEL_LABEL: &str = "logs";
/// A batch holds at most this many entries (L10).
pub const MAX_BATCH_ENTRIES: usize = 64;
/// ... and at most this many bytes of entries (L10).
pub const MAX_BATCH_BYTES: usize = 16 * 1024;
/// With `deflate`, messages shorter than this go out as text: compressing them saves little.
pub const DEFLATE_MIN_BYTES: usize = 1024;
/// How long a consumer has to answer the offer before the producer gives up on it.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);
/// Bytes a `logs` channel may hold unacknowledged before a send waits; the consumer's queue
/// (bounded, drop-oldest) absorbs the rest.
pub const SEND_BUFFER_LIMIT: usize = 1024 * 1024;

/// What a consumer asked for in `watch.features`, forwarded in `consumer_connected` (L10).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Features {
    pub batch: bool,
    pub deflate: bool,
}

impl Features {
    pub fn from_message(message: &Value) -> Self {
        let listed = |name: &str| {
            message["features"]
                .as_array()
                .is_some_and(|list| list.iter().any(|f| f.as_str() == Some(name)))
        };
        Features {
            batch: listed("batch"),
            deflate: listed("deflate"),
        }
    }
}

/// What the signaling task passes on to one peer.
#[derive(Debug)]
pub enum PeerSignal {
    Answer(String),
    Candidate(RTCIceCandidateInit),
}

/// How peer connections are made.
#[derive(Clone, Debug)]
pub struct PeerSettings {
    /// Local UDP addresses to gather on. `127.0.0.1:0` keeps everything on loopback.
    pub udp_addrs: Vec<String>,
    /// STUN/TURN URLs, e.g. `stun:stun.l.google.com:19302`.
    pub ice_servers: Vec<String>,
}

/// Everything a peer task shares with the producer.
#[derive(Clone, Debug)]
pub struct PeerContext {
    pub settings: Arc<PeerSettings>,
    pub dispatch: SharedDispatch,
    pub metrics: Arc<Metrics>,
    /// Signaling messages to send (offers, candidates), as JSON objects.
    pub outbound: mpsc::Sender<Value>,
}

struct PeerEvents {
    candidates: mpsc::Sender<RTCIceCandidateInit>,
    states: mpsc::Sender<RTCPeerConnectionState>,
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for PeerEvents {
    async fn on_ice_candidate(&self, event: RTCPeerConnectionIceEvent) {
        if let Ok(init) = event.candidate.to_json() {
            let _ = self.candidates.try_send(init);
        }
    }

    async fn on_connection_state_change(&self, state: RTCPeerConnectionState) {
        let _ = self.states.try_send(state);
    }
}

/// Runs one consumer's peer connection until it fails, the consumer leaves (the signal
/// sender is dropped) or the answer does not come.
pub async fn run_peer(
    context: PeerContext,
    consumer_id: String,
    features: Features,
    signals: mpsc::Receiver<PeerSignal>,
) {
    if let Err(error) = drive_peer(&context, &consumer_id, features, signals).await {
        tracing::warn!(consumer = %consumer_id, %error, "peer connection ended");
    }
}

async fn drive_peer(
    context: &PeerContext,
    consumer_id: &str,
    features: Features,
    mut signals: mpsc::Receiver<PeerSignal>,
) -> Result<(), webrtc::error::Error> {
    let (candidates_tx, mut candidates) = mpsc::channel(64);
    let (states_tx, mut states) = mpsc::channel(16);
    let ice_servers = context
        .settings
        .ice_servers
        .iter()
        .map(|url| RTCIceServer {
            urls: vec![url.clone()],
            ..Default::default()
        })
        .collect();
    let pc = PeerConnectionBuilder::new()
        .with_configuration(
            RTCConfigurationBuilder::default()
                .with_ice_servers(ice_servers)
                .build(),
        )
        .with_handler(Arc::new(PeerEvents {
            candidates: candidates_tx,
            states: states_tx,
        }))
        .with_udp_addrs(context.settings.udp_addrs.clone())
        .with_data_channel_send_buffer_limit(SEND_BUFFER_LIMIT)
        .build()
        .await?;
    // Ordered and reliable: the defaults, which the document's `{ordered: true}` asks for.
    let channel = pc.create_data_channel(CHANNEL_LABEL, None).await?;
    tokio::spawn(pump_channel(channel, context.clone(), features));

    let offer = pc.create_offer(None).await?;
    let offer_sdp = offer.sdp.clone();
    pc.set_local_description(offer).await?;
    send(
        context,
        json!({"type": "webrtc_offer", "to": consumer_id, "sdp": offer_sdp}),
    );

    let mut answered = false;
    let mut early_candidates = Vec::new();
    let answer_deadline = tokio::time::sleep(ANSWER_TIMEOUT);
    tokio::pin!(answer_deadline);
    loop {
        tokio::select! {
            signal = signals.recv() => match signal {
                None => break,
                Some(PeerSignal::Answer(sdp)) => {
                    pc.set_remote_description(RTCSessionDescription::answer(sdp)?).await?;
                    answered = true;
                    for candidate in early_candidates.drain(..) {
                        add_candidate(&pc, candidate).await;
                    }
                }
                // A candidate may overtake the answer; hold it until the answer is set.
                Some(PeerSignal::Candidate(candidate)) if !answered => early_candidates.push(candidate),
                Some(PeerSignal::Candidate(candidate)) => add_candidate(&pc, candidate).await,
            },
            Some(candidate) = candidates.recv() => {
                send(context, candidate_message(consumer_id, &candidate));
            }
            Some(state) = states.recv() => {
                if matches!(state, RTCPeerConnectionState::Failed | RTCPeerConnectionState::Closed) {
                    tracing::info!(consumer = %consumer_id, %state, "peer connection over");
                    break;
                }
            }
            () = &mut answer_deadline, if !answered => {
                tracing::warn!(consumer = %consumer_id, "no answer within {ANSWER_TIMEOUT:?}");
                break;
            }
        }
    }
    pc.close().await
}

async fn add_candidate(pc: &impl PeerConnection, candidate: RTCIceCandidateInit) {
    if let Err(error) = pc.add_ice_candidate(candidate).await {
        tracing::debug!(%error, "remote candidate refused");
    }
}

fn send(context: &PeerContext, message: Value) {
    // Full only when signaling is down; the consumer will get a fresh offer after reconnect.
    let _ = context.outbound.try_send(message);
}

/// The document's candidate message: `candidate` and `sdpMLineIndex`, plus `sdpMid` when
/// webrtc-rs knows it (browsers refuse an empty mid, so it is left out then).
pub fn candidate_message(to: &str, candidate: &RTCIceCandidateInit) -> Value {
    let mut message = json!({
        "type": "ice_candidate",
        "to": to,
        "candidate": candidate.candidate,
        "sdpMLineIndex": candidate.sdp_mline_index.unwrap_or(0),
    });
    if let Some(mid) = candidate.sdp_mid.as_deref().filter(|mid| !mid.is_empty()) {
        message["sdpMid"] = json!(mid);
    }
    message
}

/// Reads a candidate as the server relays it: a string, or a browser's candidate object.
pub fn candidate_from_message(message: &Value) -> Option<RTCIceCandidateInit> {
    let (candidate, object) = match &message["candidate"] {
        Value::String(text) => (text.clone(), message),
        Value::Object(_) => (
            message["candidate"]["candidate"].as_str()?.to_owned(),
            &message["candidate"],
        ),
        _ => return None,
    };
    if candidate.is_empty() {
        return None; // end-of-candidates
    }
    Some(RTCIceCandidateInit {
        candidate,
        sdp_mid: object["sdpMid"].as_str().map(str::to_owned),
        sdp_mline_index: object["sdpMLineIndex"]
            .as_u64()
            .and_then(|i| u16::try_from(i).ok()),
        username_fragment: object["usernameFragment"].as_str().map(str::to_owned),
        ..Default::default()
    })
}

/// Follows the channel's events: once open it gets a queue, which `drain_queue` empties.
async fn pump_channel(channel: Arc<dyn DataChannel>, context: PeerContext, features: Features) {
    let mut sink = None;
    while let Some(event) = channel.poll().await {
        match event {
            DataChannelEvent::OnOpen if sink.is_none() => {
                let (id, wake) = context.dispatch.lock().open_sink();
                sink = Some(id);
                tokio::spawn(drain_queue(
                    Arc::clone(&channel),
                    context.clone(),
                    id,
                    wake,
                    features,
                ));
            }
            DataChannelEvent::OnClose => break,
            _ => {}
        }
    }
    if let Some(id) = sink {
        context.dispatch.lock().close_sink(id);
    }
}

/// A message on the `logs` channel.
#[derive(Debug, PartialEq)]
pub enum ChannelMessage {
    Text(String),
    Binary(Vec<u8>),
}

async fn drain_queue(
    channel: Arc<dyn DataChannel>,
    context: PeerContext,
    sink: SinkId,
    wake: Arc<Notify>,
    features: Features,
) {
    loop {
        let taken = context
            .dispatch
            .lock()
            .take(sink, MAX_BATCH_ENTRIES, MAX_BATCH_BYTES);
        let Some(entries) = taken else { return };
        if entries.is_empty() {
            wake.notified().await;
            continue;
        }
        let count = entries.len() as u64;
        for message in encode(&entries, features) {
            let (bytes, sent) = match message {
                ChannelMessage::Text(text) => (text.len(), channel.send_text(&text).await),
                ChannelMessage::Binary(data) => {
                    (data.len(), channel.send(BytesMut::from(&data[..])).await)
                }
            };
            if let Err(error) = sent {
                tracing::debug!(%error, "logs channel refused a message");
                context.dispatch.lock().close_sink(sink);
                return;
            }
            context
                .metrics
                .sent_messages
                .fetch_add(1, Ordering::Relaxed);
            context
                .metrics
                .sent_bytes
                .fetch_add(bytes as u64, Ordering::Relaxed);
        }
        context
            .metrics
            .sent_entries
            .fetch_add(count, Ordering::Relaxed);
    }
}

/// Turns queued entries into channel messages: one text message each by default (what the
/// document's consumers expect); one JSON array with `batch`; raw deflate with `deflate`.
pub fn encode(entries: &[Arc<str>], features: Features) -> Vec<ChannelMessage> {
    let texts: Vec<String> = if features.batch && entries.len() > 1 {
        let mut array =
            String::with_capacity(entries.iter().map(|e| e.len() + 1).sum::<usize>() + 1);
        array.push('[');
        for (index, entry) in entries.iter().enumerate() {
            if index > 0 {
                array.push(',');
            }
            array.push_str(entry);
        }
        array.push(']');
        vec![array]
    } else {
        entries.iter().map(|entry| entry.to_string()).collect()
    };
    texts
        .into_iter()
        .map(
            |text| match features.deflate && text.len() >= DEFLATE_MIN_BYTES {
                true => ChannelMessage::Binary(deflate(text.as_bytes())),
                false => ChannelMessage::Text(text),
            },
        )
        .collect()
}

fn deflate(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::fast());
    // Writing to a Vec cannot fail.
    let _ = encoder.write_all(bytes);
    encoder.finish().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn entries(n: usize, size: usize) -> Vec<Arc<str>> {
        (0..n)
            .map(|i| Arc::from(format!("{{\"n\":{i},\"pad\":\"{}\"}}", "x".repeat(size))))
            .collect()
    }

    #[test]
    fn without_features_each_entry_is_its_own_text_message() {
        let messages = encode(&entries(3, 1), Features::default());
        assert_eq!(messages.len(), 3);
        assert_eq!(
            messages[0],
            ChannelMessage::Text("{\"n\":0,\"pad\":\"x\"}".into())
        );
    }

    #[test]
    fn batch_makes_one_json_array_in_order() {
        let messages = encode(
            &entries(3, 1),
            Features {
                batch: true,
                deflate: false,
            },
        );
        let [ChannelMessage::Text(text)] = &messages[..] else {
            panic!("{messages:?}")
        };
        let array: Vec<Value> = serde_json::from_str(text).expect("array");
        assert_eq!(
            array.iter().map(|e| e["n"].as_u64()).collect::<Vec<_>>(),
            [Some(0), Some(1), Some(2)]
        );
    }

    #[test]
    fn deflate_compresses_large_messages_to_raw_deflate_and_leaves_small_ones() {
        let features = Features {
            batch: true,
            deflate: true,
        };
        let [ChannelMessage::Binary(data)] = &encode(&entries(8, 200), features)[..] else {
            panic!()
        };
        let mut text = String::new();
        flate2::read::DeflateDecoder::new(&data[..])
            .read_to_string(&mut text)
            .expect("inflate");
        assert_eq!(
            serde_json::from_str::<Vec<Value>>(&text)
                .expect("array")
                .len(),
            8
        );
        assert!(matches!(
            &encode(&entries(1, 1), features)[..],
            [ChannelMessage::Text(_)]
        ));
    }

    #[test]
    fn features_come_from_consumer_connected() {
        let message =
            json!({"type": "consumer_connected", "consumer_id": "c", "features": ["deflate"]});
        assert_eq!(
            Features::from_message(&message),
            Features {
                batch: false,
                deflate: true
            }
        );
        assert_eq!(Features::from_message(&json!({})), Features::default());
    }

    #[test]
    fn candidates_read_as_strings_or_browser_objects_and_written_without_empty_mids() {
        let plain =
            json!({"candidate": "candidate:1 1 udp 1 127.0.0.1 5000 typ host", "sdpMLineIndex": 0});
        let object = json!({"candidate": {"candidate": "candidate:1 1 udp 1 127.0.0.1 5000 typ host", "sdpMid": "0", "sdpMLineIndex": 0}});
        assert_eq!(
            candidate_from_message(&plain).and_then(|c| c.sdp_mline_index),
            Some(0)
        );
        assert_eq!(
            candidate_from_message(&object).and_then(|c| c.sdp_mid),
            Some("0".into())
        );
        assert!(candidate_from_message(&json!({"candidate": ""})).is_none());
        let init = RTCIceCandidateInit {
            candidate: "candidate:x".into(),
            sdp_mid: Some(String::new()),
            ..Default::default()
        };
        let written = candidate_message("c1", &init);
        assert!(written.get("sdpMid").is_none());
        assert_eq!(written["to"], "c1");
        assert_eq!(written["sdpMLineIndex"], 0);
    }
}
