//! The suite's own WebRTC peer (webrtc-rs), bound to loopback: it answers a producer's offer
//! or makes one, and reads the `logs` channel with the time each message arrived. It knows
//! the SDP and candidate shapes of seed 000, never the reference producer's types: its
//! candidate helpers repeat the producer SDK's (`logrtc_producer::peer`) on purpose, so that
//! a misreading of the document in one is caught by the other, and the producer probe never
//! judges the producer with its own parser.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::sync::mpsc;
use webrtc::data_channel::{DataChannel, DataChannelEvent};
use webrtc::peer_connection::{
    PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler, RTCIceCandidateInit,
    RTCPeerConnectionIceEvent, RTCPeerConnectionState, RTCSessionDescription,
};

/// Messages a channel reader holds before the peer stops reading (and SCTP pushes back).
const CHANNEL_QUEUE: usize = 65_536;

/// Why a WebRTC step failed, in words for a verdict.
pub type PeerError = String;

fn describe(step: &str) -> impl Fn(webrtc::error::Error) -> PeerError + '_ {
    move |error| format!("{step}: {error}")
}

/// What a `logs` channel delivered, with its arrival time.
#[derive(Debug, Clone)]
pub enum ChannelMessage {
    Text(Instant, String),
    Binary(Instant, Vec<u8>),
    /// The channel closed.
    Closed(Instant),
}

/// A data channel the remote side opened (or ours, once open), with its properties.
pub struct ChannelReader {
    pub label: String,
    pub ordered: bool,
    pub channel: Arc<dyn DataChannel>,
    messages: mpsc::Receiver<ChannelMessage>,
}

impl ChannelReader {
    pub async fn follow(channel: Arc<dyn DataChannel>) -> Self {
        let label = channel.label().await.unwrap_or_default();
        let ordered = channel.ordered().await.unwrap_or(false);
        let (sender, messages) = mpsc::channel(CHANNEL_QUEUE);
        let polled = Arc::clone(&channel);
        tokio::spawn(async move {
            while let Some(event) = polled.poll().await {
                let message = match event {
                    DataChannelEvent::OnMessage(m) if m.is_string => ChannelMessage::Text(
                        Instant::now(),
                        String::from_utf8_lossy(&m.data).into_owned(),
                    ),
                    DataChannelEvent::OnMessage(m) => {
                        ChannelMessage::Binary(Instant::now(), m.data.to_vec())
                    }
                    DataChannelEvent::OnClose => break,
                    _ => continue,
                };
                if sender.send(message).await.is_err() {
                    return;
                }
            }
            let _ = sender.send(ChannelMessage::Closed(Instant::now())).await;
        });
        ChannelReader {
            label,
            ordered,
            channel,
            messages,
        }
    }

    /// The next message, or `None` when nothing came within `wait`.
    pub async fn next_within(&mut self, wait: Duration) -> Option<ChannelMessage> {
        tokio::time::timeout(wait, self.messages.recv())
            .await
            .ok()
            .flatten()
    }
}

struct Events {
    candidates: mpsc::Sender<RTCIceCandidateInit>,
    channels: mpsc::Sender<Arc<dyn DataChannel>>,
    states: mpsc::Sender<RTCPeerConnectionState>,
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for Events {
    async fn on_ice_candidate(&self, event: RTCPeerConnectionIceEvent) {
        if let Ok(init) = event.candidate.to_json() {
            let _ = self.candidates.try_send(init);
        }
    }
    async fn on_data_channel(&self, channel: Arc<dyn DataChannel>) {
        let _ = self.channels.try_send(channel);
    }
    async fn on_connection_state_change(&self, state: RTCPeerConnectionState) {
        let _ = self.states.try_send(state);
    }
}

/// One peer connection of the suite's.
pub struct Peer {
    pc: Box<dyn PeerConnection>,
    /// Our gathered candidates, to relay to the remote side.
    pub local_candidates: mpsc::Receiver<RTCIceCandidateInit>,
    /// Data channels the remote side opened; [`ChannelReader::follow`] reads one.
    pub channels: mpsc::Receiver<Arc<dyn DataChannel>>,
    pub states: mpsc::Receiver<RTCPeerConnectionState>,
    remote_set: bool,
    early_candidates: Vec<RTCIceCandidateInit>,
}

impl Peer {
    async fn new() -> Result<Self, PeerError> {
        let (candidates, local_candidates) = mpsc::channel(64);
        let (channel_tx, channels) = mpsc::channel(8);
        let (state_tx, states) = mpsc::channel(32);
        let handler = Events {
            candidates,
            channels: channel_tx,
            states: state_tx,
        };
        let pc = PeerConnectionBuilder::new()
            .with_handler(Arc::new(handler))
            .with_udp_addrs(vec!["127.0.0.1:0".to_owned()])
            .build()
            .await
            .map_err(describe("building a peer connection"))?;
        Ok(Peer {
            pc: Box::new(pc),
            local_candidates,
            channels,
            states,
            remote_set: false,
            early_candidates: Vec::new(),
        })
    }

    /// Answers a remote offer; returns the peer and the answer's SDP.
    pub async fn answer(offer_sdp: &str) -> Result<(Self, String), PeerError> {
        let mut peer = Peer::new().await?;
        let offer = RTCSessionDescription::offer(offer_sdp.to_owned())
            .map_err(describe("reading the offer"))?;
        peer.pc
            .set_remote_description(offer)
            .await
            .map_err(describe("applying the offer"))?;
        peer.remote_is_set().await;
        let answer = peer
            .pc
            .create_answer(None)
            .await
            .map_err(describe("creating the answer"))?;
        let sdp = answer.sdp.clone();
        peer.pc
            .set_local_description(answer)
            .await
            .map_err(describe("setting the answer"))?;
        Ok((peer, sdp))
    }

    /// Makes an offer with an ordered `logs` channel, as a producer does (000 §4.1).
    pub async fn offer() -> Result<(Self, Arc<dyn DataChannel>, String), PeerError> {
        Self::offer_channel("logs", true).await
    }

    /// Makes an offer with one data channel of the given label and ordering.
    pub async fn offer_channel(
        label: &str,
        ordered: bool,
    ) -> Result<(Self, Arc<dyn DataChannel>, String), PeerError> {
        let peer = Peer::new().await?;
        let init = webrtc::data_channel::RTCDataChannelInit {
            ordered,
            ..Default::default()
        };
        let channel = peer
            .pc
            .create_data_channel(label, Some(init))
            .await
            .map_err(describe("creating the data channel"))?;
        let offer = peer
            .pc
            .create_offer(None)
            .await
            .map_err(describe("creating the offer"))?;
        let sdp = offer.sdp.clone();
        peer.pc
            .set_local_description(offer)
            .await
            .map_err(describe("setting the offer"))?;
        Ok((peer, channel, sdp))
    }

    pub async fn accept_answer(&mut self, answer_sdp: &str) -> Result<(), PeerError> {
        let answer = RTCSessionDescription::answer(answer_sdp.to_owned())
            .map_err(describe("reading the answer"))?;
        self.pc
            .set_remote_description(answer)
            .await
            .map_err(describe("applying the answer"))?;
        self.remote_is_set().await;
        Ok(())
    }

    async fn remote_is_set(&mut self) {
        self.remote_set = true;
        for candidate in std::mem::take(&mut self.early_candidates) {
            let _ = self.pc.add_ice_candidate(candidate).await;
        }
    }

    /// Adds a remote candidate; one that overtakes the description waits for it.
    pub async fn add_candidate(&mut self, candidate: RTCIceCandidateInit) {
        if self.remote_set {
            let _ = self.pc.add_ice_candidate(candidate).await;
        } else {
            self.early_candidates.push(candidate);
        }
    }

    /// The next data channel the remote side opens, within `wait`.
    pub async fn next_channel(&mut self, wait: Duration) -> Option<ChannelReader> {
        let channel = tokio::time::timeout(wait, self.channels.recv())
            .await
            .ok()
            .flatten()?;
        Some(ChannelReader::follow(channel).await)
    }

    pub async fn close(&self) {
        let _ = self.pc.close().await;
    }
}

/// Waits for our own channel to open; returns a reader for it.
pub async fn wait_open(channel: Arc<dyn DataChannel>, wait: Duration) -> Option<ChannelReader> {
    let opened = tokio::time::timeout(wait, async {
        while let Some(event) = channel.poll().await {
            if matches!(event, DataChannelEvent::OnOpen) {
                return true;
            }
        }
        false
    })
    .await;
    match opened {
        Ok(true) => Some(ChannelReader::follow(channel).await),
        _ => None,
    }
}

/// The seed's candidate message for `to`: `candidate`, `sdpMLineIndex`, and `sdpMid` when known.
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

/// Reads a relayed candidate: a string in `candidate`, or a browser's candidate object.
pub fn candidate_from_message(message: &Value) -> Option<RTCIceCandidateInit> {
    let object = if message["candidate"].is_object() {
        &message["candidate"]
    } else {
        message
    };
    let candidate = object["candidate"]
        .as_str()
        .filter(|c| !c.is_empty())?
        .to_owned();
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
