//! The forwarding core. Each `publish` gets its own `Rtc` that receives; each `subscribe` gets
//! one that sends what its publication receives, track by track of the same kind. Keyframe
//! requests from subscribers go up to the publisher; str0m answers NACKs (with RTX when
//! negotiated), sends receiver reports and TWCC feedback on its own.

use super::ogg::{is_stereo, OggOpusWriter};
use super::{KEYFRAME_REQUEST_INTERVAL, MAX_PEERS, MAX_QUEUED_DATAGRAMS};
use crate::faults::{Fault, Faults};
use crate::protocol::sfu::{ErrorCode, MediaRefusal};
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::fs::File;
use std::io::BufWriter;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Instant;
use str0m::change::SdpOffer;
use str0m::format::Codec;
use str0m::media::{KeyframeRequestKind, MediaData, MediaKind, Mid};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, IceConnectionState, Input, Output, Rtc};

/// How the media plane is set up.
#[derive(Debug, Clone)]
pub struct SfuConfig {
    /// The one UDP socket's address, offered as the only (host) candidate.
    pub local_addr: SocketAddr,
    pub faults: Faults,
    /// With a directory, each published Opus track is recorded to `<dir>/<mid>.ogg`.
    pub record_dir: Option<PathBuf>,
}

/// One publication's Opus recording; the file is opened at the first packet (which says
/// whether the stream is stereo) and finished when the publication ends.
#[derive(Debug)]
struct Recorder {
    path: PathBuf,
    writer: Option<OggOpusWriter<BufWriter<File>>>,
    failed: bool,
}

impl Recorder {
    fn new(dir: &std::path::Path, mid: &str) -> Self {
        let name: String = mid
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        Self {
            path: dir.join(format!("{name}.ogg")),
            writer: None,
            failed: false,
        }
    }

    fn write(&mut self, data: &MediaData) {
        if self.failed {
            return;
        }
        if self.writer.is_none() {
            let channels = if is_stereo(&data.data) { 2 } else { 1 };
            let opened = File::create(&self.path)
                .and_then(|f| OggOpusWriter::new(BufWriter::new(f), 1, channels));
            self.writer = self.record_failure(opened);
        }
        if let Some(writer) = self.writer.as_mut() {
            let written = writer.write_packet(data.time.numer(), &data.data);
            if self.record_failure(written).is_none() {
                self.writer = None;
            }
        }
    }

    /// A recording that cannot be written stops, with one warning; forwarding goes on.
    fn record_failure<T>(&mut self, outcome: std::io::Result<T>) -> Option<T> {
        outcome
            .map_err(|error| {
                tracing::warn!(path = %self.path.display(), %error, "recording stopped");
                self.failed = true;
            })
            .ok()
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        if let Some(mut writer) = self.writer.take() {
            let _ = writer.finish();
        }
    }
}

/// Counters for the operator and the load generator.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct MediaStats {
    pub publishers: usize,
    pub subscribers: usize,
    /// Media samples (Opus packets, VP8 frames) received from publishers.
    pub samples_in: u64,
    /// Samples written toward subscribers.
    pub samples_forwarded: u64,
    pub bytes_forwarded: u64,
    /// Publications being recorded.
    pub recordings: usize,
    pub datagrams_in: u64,
    pub datagrams_out: u64,
    /// Datagrams no peer connection accepted.
    pub datagrams_unmatched: u64,
    /// Datagrams dropped because the send queue was full.
    pub datagrams_dropped: u64,
    pub keyframe_requests: u64,
    /// Times handed to peer connections (`Input::Timeout`): timer wake-ups, and one after each
    /// sample written to a subscriber.
    pub peer_timeouts: u64,
}

type PeerKey = u64;

#[derive(Debug)]
enum Role {
    Publisher {
        mid: String,
        subscribers: Vec<PeerKey>,
        last_keyframe_request: HashMap<Mid, Instant>,
    },
    Subscriber {
        sid: String,
        source: PeerKey,
    },
}

#[derive(Debug)]
struct Peer {
    rtc: Rtc,
    role: Role,
    /// Media lines by kind, as negotiated.
    tracks: Vec<(Mid, MediaKind)>,
    next_timeout: Instant,
    recorder: Option<Recorder>,
}

impl Peer {
    fn track_of_kind(&self, kind: MediaKind) -> Option<Mid> {
        self.tracks
            .iter()
            .find(|(_, k)| *k == kind)
            .map(|(m, _)| *m)
    }

    fn kind_of(&self, mid: Mid) -> Option<MediaKind> {
        self.tracks.iter().find(|(m, _)| *m == mid).map(|(_, k)| *k)
    }
}

/// What one peer's output asks of others.
#[derive(Debug)]
enum Propagate {
    Forward {
        from: PeerKey,
        data: Box<MediaData>,
    },
    KeyframeUp {
        source: PeerKey,
        kind: KeyframeRequestKind,
    },
}

#[derive(Debug)]
pub struct Sfu {
    config: SfuConfig,
    peers: HashMap<PeerKey, Peer>,
    by_addr: HashMap<SocketAddr, PeerKey>,
    publications: HashMap<String, PeerKey>,
    subscriptions: HashMap<String, PeerKey>,
    next_key: PeerKey,
    /// Each peer's next timer, ordered: the earliest is the loop's next wake-up.
    timers: BTreeSet<(Instant, PeerKey)>,
    /// Peers found dead while polled, removed at the next timeout.
    dead: Vec<PeerKey>,
    stats: MediaStats,
    transmits: VecDeque<(SocketAddr, Vec<u8>)>,
}

impl Sfu {
    pub fn new(config: SfuConfig) -> Self {
        Self {
            config,
            peers: HashMap::new(),
            by_addr: HashMap::new(),
            publications: HashMap::new(),
            subscriptions: HashMap::new(),
            next_key: 1,
            timers: BTreeSet::new(),
            dead: Vec::new(),
            stats: MediaStats::default(),
            transmits: VecDeque::new(),
        }
    }

    pub fn stats(&self) -> MediaStats {
        MediaStats {
            publishers: self.publications.len(),
            subscribers: self.subscriptions.len(),
            recordings: self.peers.values().filter(|p| p.recorder.is_some()).count(),
            ..self.stats
        }
    }

    /// Answers a publisher's offer: a new receiving peer connection for stream `mid`.
    pub fn publish(
        &mut self,
        now: Instant,
        mid: &str,
        offer: &str,
    ) -> Result<String, MediaRefusal> {
        let (rtc, answer) = self.accept(now, offer)?;
        let role = Role::Publisher {
            mid: mid.to_owned(),
            subscribers: Vec::new(),
            last_keyframe_request: HashMap::new(),
        };
        let key = self.insert(now, rtc, role);
        if let (Some(dir), Some(peer)) = (&self.config.record_dir, self.peers.get_mut(&key)) {
            peer.recorder = Some(Recorder::new(dir, mid));
        }
        self.publications.insert(mid.to_owned(), key);
        Ok(answer)
    }

    /// Answers a subscriber's offer: a new sending peer connection fed by stream `mid`.
    pub fn subscribe(
        &mut self,
        now: Instant,
        sid: &str,
        mid: &str,
        offer: &str,
    ) -> Result<String, MediaRefusal> {
        let Some(&source) = self.publications.get(mid) else {
            return Err(refusal(
                ErrorCode::StreamNotFound,
                format!("no media for stream {mid:?}"),
            ));
        };
        let (rtc, answer) = self.accept(now, offer)?;
        let role = Role::Subscriber {
            sid: sid.to_owned(),
            source,
        };
        let key = self.insert(now, rtc, role);
        if let Some(Role::Publisher { subscribers, .. }) =
            self.peers.get_mut(&source).map(|p| &mut p.role)
        {
            subscribers.push(key);
        }
        self.subscriptions.insert(sid.to_owned(), key);
        Ok(answer)
    }

    /// Ends a publication and every subscription fed by it.
    pub fn unpublish(&mut self, mid: &str) {
        let Some(key) = self.publications.remove(mid) else {
            return;
        };
        if let Some(Role::Publisher { subscribers, .. }) = self.peers.get(&key).map(|p| &p.role) {
            for subscriber in subscribers.clone() {
                self.remove(subscriber);
            }
        }
        self.remove(key);
    }

    pub fn unsubscribe(&mut self, sid: &str) {
        if let Some(key) = self.subscriptions.get(sid).copied() {
            self.remove(key);
        }
    }

    fn accept(&self, now: Instant, offer: &str) -> Result<(Rtc, String), MediaRefusal> {
        if self.peers.len() >= MAX_PEERS {
            return Err(refusal(
                ErrorCode::LimitReached,
                format!("the SFU holds {MAX_PEERS} peer connections"),
            ));
        }
        let offer = SdpOffer::from_sdp_string(offer)
            .map_err(|e| refusal(ErrorCode::BadSdp, format!("the offer does not parse: {e}")))?;
        let mut rtc = Rtc::builder()
            .set_ice_lite(true)
            .clear_codecs()
            .enable_opus(true, false)
            .enable_vp8(true)
            .build(now);
        let candidate = Candidate::host(self.config.local_addr, "udp")
            .map_err(|e| refusal(ErrorCode::MediaError, format!("no host candidate: {e}")))?;
        rtc.add_local_candidate(candidate);
        let answer = rtc
            .sdp_api()
            .accept_offer(offer)
            .map_err(|e| {
                refusal(
                    ErrorCode::BadSdp,
                    format!("the offer cannot be answered: {e}"),
                )
            })?
            .to_sdp_string();
        if !carries_opus_or_vp8(&answer) {
            let reason =
                "the offer has no Opus audio or VP8 video line (004 §1: opus and vp8 only)";
            return Err(refusal(ErrorCode::BadSdp, reason.to_owned()));
        }
        Ok((rtc, answer))
    }

    fn insert(&mut self, now: Instant, rtc: Rtc, role: Role) -> PeerKey {
        let key = self.next_key;
        self.next_key += 1;
        let peer = Peer {
            rtc,
            role,
            tracks: Vec::new(),
            next_timeout: now,
            recorder: None,
        };
        self.peers.insert(key, peer);
        self.drive(now, key);
        key
    }

    fn remove(&mut self, key: PeerKey) {
        let Some(mut peer) = self.peers.remove(&key) else {
            return;
        };
        self.timers.remove(&(peer.next_timeout, key));
        peer.rtc.disconnect();
        self.by_addr.retain(|_, k| *k != key);
        match peer.role {
            Role::Publisher { mid, .. } => {
                self.publications.remove(&mid);
            }
            Role::Subscriber { sid, source } => {
                self.subscriptions.remove(&sid);
                if let Some(Role::Publisher { subscribers, .. }) =
                    self.peers.get_mut(&source).map(|p| &mut p.role)
                {
                    subscribers.retain(|k| *k != key);
                }
            }
        }
    }

    /// One datagram read from the socket.
    pub fn handle_datagram(&mut self, now: Instant, source: SocketAddr, data: &[u8]) {
        self.stats.datagrams_in += 1;
        let Ok(contents) = data.try_into() else {
            self.stats.datagrams_unmatched += 1;
            return;
        };
        let destination = self.config.local_addr;
        let input = Input::Receive(
            now,
            Receive {
                proto: Protocol::Udp,
                source,
                destination,
                contents,
            },
        );
        let Some(key) = self.owner_of(source, &input) else {
            self.stats.datagrams_unmatched += 1;
            return;
        };
        if let Some(peer) = self.peers.get_mut(&key) {
            if peer.rtc.handle_input(input).is_err() {
                peer.rtc.disconnect();
            }
        }
        self.drive(now, key);
    }

    /// The peer connection a datagram belongs to: the one last seen at its address, or else
    /// the first that accepts it (ICE checks from a new address).
    fn owner_of(&mut self, source: SocketAddr, input: &Input) -> Option<PeerKey> {
        if let Some(key) = self.by_addr.get(&source).copied() {
            if self.peers.get(&key).is_some_and(|p| p.rtc.accepts(input)) {
                return Some(key);
            }
        }
        let key = self
            .peers
            .iter()
            .find(|(_, p)| p.rtc.accepts(input))
            .map(|(k, _)| *k)?;
        self.by_addr.insert(source, key);
        Some(key)
    }

    /// When [`Sfu::handle_timeout`] must next run.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.first().map(|(at, _)| *at)
    }

    /// Moves time forward for every peer whose timer is due, and drops the dead ones.
    pub fn handle_timeout(&mut self, now: Instant) {
        let later = self.timers.split_off(&(now, PeerKey::MAX));
        let due = std::mem::replace(&mut self.timers, later);
        for (_, key) in due {
            self.advance_peer(now, key);
            self.drive(now, key);
        }
        for key in std::mem::take(&mut self.dead) {
            self.remove(key);
        }
    }

    pub fn poll_transmit(&mut self) -> Option<(SocketAddr, Vec<u8>)> {
        let transmit = self.transmits.pop_front();
        if transmit.is_some() {
            self.stats.datagrams_out += 1;
        }
        transmit
    }

    /// Polls one peer until it waits, then carries out what it asked of the others.
    fn drive(&mut self, now: Instant, key: PeerKey) {
        let mut work = VecDeque::new();
        self.poll_peer(key, &mut work);
        while let Some(item) = work.pop_front() {
            match item {
                Propagate::Forward { from, data } => self.forward(now, from, &data, &mut work),
                Propagate::KeyframeUp { source, kind } => self.request_keyframe(now, source, kind),
            }
        }
    }

    fn poll_peer(&mut self, key: PeerKey, work: &mut VecDeque<Propagate>) {
        let Some(peer) = self.peers.get_mut(&key) else {
            return;
        };
        while peer.rtc.is_alive() {
            match peer.rtc.poll_output() {
                Ok(Output::Timeout(at)) => {
                    self.timers.remove(&(peer.next_timeout, key));
                    peer.next_timeout = at;
                    self.timers.insert((at, key));
                    return;
                }
                Ok(Output::Transmit(t)) => {
                    // Bounded: when the loop cannot send as fast as peers produce, the oldest
                    // datagram goes (RTP and SCTP survive loss; memory must not grow).
                    if self.transmits.len() >= MAX_QUEUED_DATAGRAMS {
                        self.transmits.pop_front();
                        self.stats.datagrams_dropped += 1;
                    }
                    self.transmits.push_back((t.destination, t.contents.into()))
                }
                Ok(Output::Event(event)) => on_event(key, peer, event, work, &mut self.stats),
                Err(_) => peer.rtc.disconnect(),
            }
        }
        // Dead: removed at the next timeout, which comes at once.
        self.timers.remove(&(peer.next_timeout, key));
        self.timers.insert((peer.next_timeout, key));
        self.dead.push(key);
    }

    /// Writes one publisher sample to each of its subscribers' tracks of the same kind.
    fn forward(
        &mut self,
        now: Instant,
        from: PeerKey,
        data: &MediaData,
        work: &mut VecDeque<Propagate>,
    ) {
        if self.config.faults.has(Fault::SfuDropMedia) {
            return;
        }
        let Some(publisher) = self.peers.get(&from) else {
            return;
        };
        let (Some(kind), Role::Publisher { subscribers, .. }) =
            (publisher.kind_of(data.mid), &publisher.role)
        else {
            return;
        };
        for key in subscribers.clone() {
            if self.write_sample(key, kind, data) {
                self.stats.samples_forwarded += 1;
                self.stats.bytes_forwarded += data.data.len() as u64;
                // str0m packetizes a written sample only when it is handed the time. Doing
                // it at once, while the subscriber's state is in cache, is one pass over its
                // `Rtc` per forwarded packet instead of two (write now, timer wake-up later).
                self.advance_peer(now, key);
            }
            self.poll_peer(key, work);
        }
    }

    /// Hands one peer the time (`Input::Timeout`): its timers run, and written samples
    /// become packets.
    fn advance_peer(&mut self, now: Instant, key: PeerKey) {
        if let Some(peer) = self.peers.get_mut(&key) {
            self.stats.peer_timeouts += 1;
            if peer.rtc.handle_input(Input::Timeout(now)).is_err() {
                peer.rtc.disconnect();
            }
        }
    }

    fn write_sample(&mut self, key: PeerKey, kind: MediaKind, data: &MediaData) -> bool {
        let Some(peer) = self.peers.get_mut(&key) else {
            return false;
        };
        let Some(mid) = peer.track_of_kind(kind) else {
            return false;
        };
        let Some(writer) = peer.rtc.writer(mid) else {
            return false;
        };
        let Some(pt) = writer.match_params(data.params) else {
            return false;
        };
        writer
            .write(pt, data.network_time, data.time, data.data.clone())
            .is_ok()
    }

    /// Asks a publisher for a keyframe on its video track, at most once per interval.
    fn request_keyframe(&mut self, now: Instant, source: PeerKey, kind: KeyframeRequestKind) {
        if self.config.faults.has(Fault::SfuNoKeyframeRequest) {
            return;
        }
        let Some(peer) = self.peers.get_mut(&source) else {
            return;
        };
        let Some(mid) = peer.track_of_kind(MediaKind::Video) else {
            return;
        };
        let Role::Publisher {
            last_keyframe_request,
            ..
        } = &mut peer.role
        else {
            return;
        };
        if last_keyframe_request
            .get(&mid)
            .is_some_and(|t| now.duration_since(*t) < KEYFRAME_REQUEST_INTERVAL)
        {
            return;
        }
        last_keyframe_request.insert(mid, now);
        if let Some(mut writer) = peer.rtc.writer(mid) {
            if writer.request_keyframe(None, kind).is_ok() {
                self.stats.keyframe_requests += 1;
            }
        }
        self.drive(now, source);
    }
}

/// What one peer's event means for the SFU.
fn on_event(
    key: PeerKey,
    peer: &mut Peer,
    event: Event,
    work: &mut VecDeque<Propagate>,
    stats: &mut MediaStats,
) {
    match (event, &peer.role) {
        (Event::IceConnectionStateChange(IceConnectionState::Disconnected), _) => {
            peer.rtc.disconnect()
        }
        (Event::MediaAdded(added), _) => peer.tracks.push((added.mid, added.kind)),
        (Event::MediaData(data), Role::Publisher { .. }) => {
            stats.samples_in += 1;
            if data.params.spec().codec == Codec::Opus {
                if let Some(recorder) = peer.recorder.as_mut() {
                    recorder.write(&data);
                }
            }
            if !data.contiguous {
                work.push_back(Propagate::KeyframeUp {
                    source: key,
                    kind: KeyframeRequestKind::Fir,
                });
            }
            work.push_back(Propagate::Forward {
                from: key,
                data: Box::new(data),
            });
        }
        (Event::KeyframeRequest(request), Role::Subscriber { source, .. }) => {
            work.push_back(Propagate::KeyframeUp {
                source: *source,
                kind: request.kind,
            });
        }
        // A new subscriber needs a keyframe to start decoding.
        (Event::Connected, Role::Subscriber { source, .. }) => {
            work.push_back(Propagate::KeyframeUp {
                source: *source,
                kind: KeyframeRequestKind::Pli,
            });
        }
        _ => {}
    }
}

fn refusal(code: ErrorCode, reason: String) -> MediaRefusal {
    MediaRefusal { code, reason }
}

/// Whether an answer kept an Opus or VP8 payload type on some media line.
fn carries_opus_or_vp8(answer: &str) -> bool {
    answer.lines().any(|line| {
        let line = line.to_ascii_lowercase();
        line.starts_with("a=rtpmap:")
            && (line.contains(" opus/48000") || line.contains(" vp8/90000"))
    })
}
