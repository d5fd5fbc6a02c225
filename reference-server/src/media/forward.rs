//! The forwarding core. Each `publish` gets its own `Rtc` that receives; each `subscribe` gets
//! one that sends what its publication receives, track by track of the same kind. Keyframe
//! requests from subscribers go up to the publisher; str0m NACKs gaps in what publishers send,
//! sends receiver reports, and sends publishers TWCC feedback on its own.
//!
//! Every `Rtc` is in str0m's RTP mode: a publisher's RTP packets are forwarded as packets, with
//! the payload shared by all subscribers, and never reassembled into frames and cut up again
//! per subscriber (that was a fifth of the SFU's CPU per forwarded packet). Once DTLS is done
//! the SFU goes further: it seals each packet with the subscriber's SRTP key and sends it
//! without the subscriber's `Rtc` ([`super::srtp`], CLARIFICATIONS S8). The `Rtc` still reads
//! the subscriber's RTCP; the SFU answers its NACKs from the publisher's recent video.

use super::fanout::{FanoutCounters, FanoutMessage, PeerKey, Published, SealShard, SealedTrack};
use super::ogg::{is_stereo, OggOpusWriter};
use super::srtp::{self, KeySlot, Sealing};
use super::{
    KEYFRAME_REQUEST_INTERVAL, MAX_PEERS, MAX_QUEUED_DATAGRAMS, MAX_RESENT_PER_NACK, RESEND_BUFFER,
};
use crate::faults::{Fault, Faults};
use crate::protocol::rate::TokenBucket;
use crate::protocol::sfu::{ErrorCode, MediaRefusal};
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::fs::File;
use std::io::BufWriter;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;
use str0m::change::SdpOffer;
use str0m::format::{Codec, CodecConfig, PayloadParams};
use str0m::media::{KeyframeRequestKind, MediaKind, Mid, Pt};
use str0m::net::{Protocol, Receive};
use str0m::rtp::rtcp::{Nack, Rtcp};
use str0m::rtp::{Extension, ExtensionMap, ExtensionValues, RawPacket, RtpPacket, RtpWrite};
use str0m::{Candidate, Event, IceConnectionState, Input, Output, Rtc};

/// How the media plane is set up.
#[derive(Debug, Clone)]
pub struct SfuConfig {
    /// The one UDP socket's address, offered as the only (host) candidate.
    pub local_addr: SocketAddr,
    pub faults: Faults,
    pub options: super::MediaOptions,
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

    /// One Opus packet: an RTP payload is one Opus packet (RFC 7587 §4.2).
    fn write(&mut self, packet: &RtpPacket) {
        if self.failed {
            return;
        }
        if self.writer.is_none() {
            let channels = if is_stereo(&packet.payload) { 2 } else { 1 };
            let opened = File::create(&self.path)
                .and_then(|f| OggOpusWriter::new(BufWriter::new(f), 1, channels));
            self.writer = self.record_failure(opened);
        }
        if let Some(writer) = self.writer.as_mut() {
            let written = writer.write_packet(packet.time.numer(), &packet.payload);
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
    /// RTP packets received from publishers.
    pub packets_in: u64,
    /// RTP packets written toward subscribers.
    pub packets_forwarded: u64,
    /// Of those, the packets the SFU sealed itself rather than through str0m (S8).
    pub packets_sealed: u64,
    /// Of the sealed, those sent again because a subscriber reported them lost.
    pub packets_resent: u64,
    pub bytes_forwarded: u64,
    /// Publications being recorded.
    pub recordings: usize,
    pub datagrams_in: u64,
    /// Datagrams handed to the socket (one the kernel then refuses counts in
    /// `datagrams_dropped` as well).
    pub datagrams_out: u64,
    /// Datagrams no peer connection accepted.
    pub datagrams_unmatched: u64,
    /// Datagrams lost on the way out: the send queue or a fanout thread's queue was full, the
    /// kernel refused them, or the socket's buffer stayed full for a second.
    pub datagrams_dropped: u64,
    pub keyframe_requests: u64,
    /// Times handed to peer connections (`Input::Timeout`): timer wake-ups, and one after each
    /// packet written to a subscriber.
    pub peer_timeouts: u64,
}

impl MediaStats {
    fn count_forwarded(&mut self, published: &Published) {
        self.packets_forwarded += 1;
        self.bytes_forwarded += published.packet.payload.len() as u64;
    }
}

/// Kinds of media forwarded through each subscriber's `Rtc`, for comparison or for a client
/// that needs what only str0m's send path gives (sender reports that count the packets).
/// Video written by str0m is resent from str0m's own buffer when NACKed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ViaStr0m {
    pub audio: bool,
    pub video: bool,
}

impl ViaStr0m {
    /// Whether media of `kind` goes through str0m.
    fn carries(self, kind: MediaKind) -> bool {
        match kind {
            MediaKind::Audio => self.audio,
            MediaKind::Video => self.video,
        }
    }
}

#[derive(Debug)]
enum Role {
    Publisher {
        mid: String,
        subscribers: Vec<Route>,
        last_keyframe_request: HashMap<Mid, Instant>,
        /// The last [`RESEND_BUFFER`] video packets, oldest first: what a subscriber's NACK
        /// of a sealed packet is answered from.
        recent_video: VecDeque<Arc<Published>>,
    },
    Subscriber {
        sid: String,
        source: PeerKey,
        /// What it may still have resent ([`SfuConfig::resends_per_second`]).
        resends: TokenBucket,
    },
}

/// A negotiated media line, and for a subscriber how its publisher's packets map onto it.
#[derive(Debug)]
struct Track {
    mid: Mid,
    kind: MediaKind,
    /// Subtracted from the publisher's extended sequence numbers, so that the first packet
    /// forwarded here has a rollover count of 0, which a new receiver assumes (RFC 3711
    /// §3.3.1) however long the publication has been going.
    sequence_base: Option<u64>,
    /// The publisher's payload types and this line's matching ones (`None`: no match).
    payload_types: Vec<(Pt, Option<Pt>)>,
}

/// One subscriber of a publisher, and how each kind of its media goes.
#[derive(Debug)]
struct Route {
    subscriber: PeerKey,
    audio: RoutePath,
    video: RoutePath,
}

impl Route {
    fn new(subscriber: PeerKey) -> Self {
        Self {
            subscriber,
            audio: RoutePath::Unsealed,
            video: RoutePath::Unsealed,
        }
    }

    fn path_mut(&mut self, kind: MediaKind) -> &mut RoutePath {
        match kind {
            MediaKind::Audio => &mut self.audio,
            MediaKind::Video => &mut self.video,
        }
    }

    fn is_sealed(&self) -> bool {
        [self.audio, self.video]
            .iter()
            .any(|path| matches!(path, RoutePath::Sealed { .. }))
    }
}

/// How one kind of forwarded media reaches one subscriber (CLARIFICATIONS S8).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RoutePath {
    /// Through its `Rtc` until it can be sealed (DTLS not done, no packet of its codec yet).
    Unsealed,
    /// Sealed by the SFU, for packets of the publisher's payload type `pt`, from the
    /// publisher's sequence number `from` on (earlier ones went through the `Rtc`, which
    /// answers NACKs for them). What sealing needs lives in the subscriber's fanout shard
    /// ([`super::fanout`]), apart from its `Rtc`, so forwarding a packet reads about a
    /// hundred bytes per subscriber.
    Sealed { pt: Pt, from: u64 },
    /// Always through its `Rtc` (an SRTP profile the SFU does not seal, or configured so).
    ByStr0m,
}

impl RoutePath {
    fn seals(&self, published: &Published) -> bool {
        matches!(self, RoutePath::Sealed { pt, .. } if *pt == published.packet.header.payload_type)
    }
}

impl Track {
    fn new(mid: Mid, kind: MediaKind) -> Self {
        Self {
            mid,
            kind,
            sequence_base: None,
            payload_types: Vec::new(),
        }
    }

    /// This line's sequence number for a publisher's, or `None` for one from before the
    /// first forwarded (a late retransmission).
    fn sequence_for(&mut self, published: u64) -> Option<u64> {
        let base = *self.sequence_base.get_or_insert(published & !0xFFFF);
        published.checked_sub(base)
    }

    /// This line's payload type for a publisher's, matched once by codec and parameters
    /// against `codecs`, this peer's.
    fn payload_type_for(&mut self, codecs: &CodecConfig, published: &PayloadParams) -> Option<Pt> {
        let known = self
            .payload_types
            .iter()
            .find(|(pt, _)| *pt == published.pt());
        if let Some((_, mapped)) = known {
            return *mapped;
        }
        let mapped = codecs.match_params(*published).map(|params| params.pt());
        self.payload_types.push((published.pt(), mapped));
        mapped
    }
}

#[derive(Debug)]
struct Peer {
    rtc: Rtc,
    role: Role,
    /// Media lines, as negotiated.
    tracks: Vec<Track>,
    next_timeout: Instant,
    recorder: Option<Recorder>,
    /// Where DTLS leaves the SRTP keys.
    keys: KeySlot,
    /// The address str0m last sent to: the nominated ICE pair's remote end.
    destination: Option<SocketAddr>,
}

impl Peer {
    fn track_of_kind(&self, kind: MediaKind) -> Option<&Track> {
        self.tracks.iter().find(|t| t.kind == kind)
    }

    /// The media line a received packet belongs to, by its SSRC.
    fn received_kind(&mut self, packet: &RtpPacket) -> Option<MediaKind> {
        let mid = self.rtc.direct_api().stream_rx(&packet.header.ssrc)?.mid();
        self.tracks.iter().find(|t| t.mid == mid).map(|t| t.kind)
    }
}

/// What one peer's output asks of others.
#[derive(Debug)]
enum Propagate {
    Forward {
        from: PeerKey,
        packet: Arc<Published>,
    },
    KeyframeUp {
        source: PeerKey,
        kind: KeyframeRequestKind,
    },
    /// A subscriber's NACK, to answer for what the SFU sealed.
    Resend {
        subscriber: PeerKey,
        source: PeerKey,
        nack: Nack,
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
    /// Subscribers whose `Rtc` started sending elsewhere (publisher, subscriber, address):
    /// their sealed routes follow once the forwarding loop has put the route list back.
    relocated: Vec<(PeerKey, PeerKey, SocketAddr)>,
    /// Shard 0 of the sealed media: the one run here.
    local_shard: SealShard,
    /// Messages for the other shards, by shard index.
    fanout: VecDeque<(usize, FanoutMessage)>,
    fanout_counters: Arc<FanoutCounters>,
}

impl Sfu {
    pub fn new(config: SfuConfig) -> Self {
        let fanout_counters = Arc::new(FanoutCounters::default());
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
            relocated: Vec::new(),
            local_shard: SealShard::new(fanout_counters.clone()),
            fanout: VecDeque::new(),
            fanout_counters,
        }
    }

    pub fn stats(&self) -> MediaStats {
        let fanout = self.fanout_counters.totals();
        MediaStats {
            publishers: self.publications.len(),
            subscribers: self.subscriptions.len(),
            recordings: self.peers.values().filter(|p| p.recorder.is_some()).count(),
            packets_forwarded: self.stats.packets_forwarded + fanout.sealed,
            packets_sealed: fanout.sealed,
            packets_resent: fanout.resent,
            bytes_forwarded: self.stats.bytes_forwarded + fanout.bytes,
            datagrams_out: self.stats.datagrams_out + fanout.datagrams_out,
            datagrams_dropped: self.stats.datagrams_dropped + fanout.dropped,
            ..self.stats
        }
    }

    /// How many shards sealed media is split among, this loop's own included.
    pub fn fanout_shards(&self) -> usize {
        self.config
            .options
            .fanout_threads
            .min(super::MAX_FANOUT_THREADS)
            + 1
    }

    /// A new shard for sealed media that counts with this SFU's, to run the messages
    /// [`Sfu::poll_fanout`] gives for one shard index from 1 on.
    pub fn new_fanout_shard(&self) -> SealShard {
        SealShard::new(self.fanout_counters.clone())
    }

    /// The counters the shards share: where a shard's runner counts what it sent or lost.
    pub fn fanout_counters(&self) -> Arc<FanoutCounters> {
        self.fanout_counters.clone()
    }

    /// The next message for a shard other than this loop's own, with its index.
    pub fn poll_fanout(&mut self) -> Option<(usize, FanoutMessage)> {
        self.fanout.pop_front()
    }

    /// Answers a publisher's offer: a new receiving peer connection for stream `mid`.
    pub fn publish(
        &mut self,
        now: Instant,
        mid: &str,
        offer: &str,
    ) -> Result<String, MediaRefusal> {
        let (accepted, answer) = self.accept(now, offer, ExtensionMap::standard(), false)?;
        let role = Role::Publisher {
            mid: mid.to_owned(),
            subscribers: Vec::new(),
            last_keyframe_request: HashMap::new(),
            recent_video: VecDeque::new(),
        };
        let key = self.insert(now, accepted, role);
        if let (Some(dir), Some(peer)) = (&self.config.options.record_dir, self.peers.get_mut(&key))
        {
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
        // The NACKs of sealed video reach the SFU only as the raw RTCP str0m has read.
        let reads_nacks = !self.config.options.via_str0m.carries(MediaKind::Video);
        let (accepted, answer) = self.accept(now, offer, subscriber_extensions(), reads_nacks)?;
        let role = Role::Subscriber {
            sid: sid.to_owned(),
            source,
            resends: resend_allowance(now, self.config.options.resends_per_second),
        };
        let key = self.insert(now, accepted, role);
        if let Some(subscribers) = self.subscribers_of(source) {
            subscribers.push(Route::new(key));
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
            let keys: Vec<PeerKey> = subscribers.iter().map(|r| r.subscriber).collect();
            for subscriber in keys {
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

    /// A new peer connection answering `offer`, offering the RTP header extensions of
    /// `extensions`; with `raw_rtcp` it reports the RTCP it reads as events.
    fn accept(
        &self,
        now: Instant,
        offer: &str,
        extensions: ExtensionMap,
        raw_rtcp: bool,
    ) -> Result<((Rtc, KeySlot), String), MediaRefusal> {
        if self.peers.len() >= MAX_PEERS {
            return Err(refusal(
                ErrorCode::LimitReached,
                format!("the SFU holds {MAX_PEERS} peer connections"),
            ));
        }
        let offer = SdpOffer::from_sdp_string(offer)
            .map_err(|e| refusal(ErrorCode::BadSdp, format!("the offer does not parse: {e}")))?;
        let config = Rtc::builder()
            .set_ice_lite(true)
            .set_rtp_mode(true)
            .set_extension_map(extensions)
            .clear_codecs()
            .enable_opus(true, false)
            .enable_vp8(true)
            .enable_raw_packets(raw_rtcp);
        let (mut rtc, keys) = srtp::build_rtc(config, now);
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
        Ok(((rtc, keys), answer))
    }

    fn insert(&mut self, now: Instant, (rtc, keys): (Rtc, KeySlot), role: Role) -> PeerKey {
        let key = self.next_key;
        self.next_key += 1;
        let peer = Peer {
            rtc,
            role,
            tracks: Vec::new(),
            next_timeout: now,
            recorder: None,
            keys,
            destination: None,
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
            Role::Publisher {
                mid, subscribers, ..
            } => {
                self.publications.remove(&mid);
                for route in subscribers {
                    self.end_sealed_route(&route);
                }
            }
            Role::Subscriber { sid, source, .. } => {
                self.subscriptions.remove(&sid);
                let routes = self.subscribers_of(source).map(|subscribers| {
                    let (gone, kept) = std::mem::take(subscribers)
                        .into_iter()
                        .partition(|r| r.subscriber == key);
                    *subscribers = kept;
                    gone
                });
                for route in routes.into_iter().flatten() {
                    self.end_sealed_route(&route);
                }
            }
        }
    }

    /// Tells the route's shard to forget it, if it went there.
    fn end_sealed_route(&mut self, route: &Route) {
        if route.is_sealed() {
            let subscriber = route.subscriber;
            self.send_to_shard(subscriber, FanoutMessage::RemoveRoute { subscriber });
        }
    }

    /// The shard that seals a subscriber's media.
    fn shard_of(&self, subscriber: PeerKey) -> usize {
        (subscriber % self.fanout_shards() as u64) as usize
    }

    /// Sends a message to the shard of `subscriber`.
    fn send_to_shard(&mut self, subscriber: PeerKey, message: FanoutMessage) {
        self.deliver(self.shard_of(subscriber), message);
    }

    /// Carries out a message at once on this loop's shard (0), or queues it for another.
    fn deliver(&mut self, shard: usize, message: FanoutMessage) {
        match shard {
            0 => self.run_local_shard(message),
            shard => self.fanout.push_back((shard, message)),
        }
    }

    fn run_local_shard(&mut self, message: FanoutMessage) {
        let Self {
            local_shard,
            transmits,
            stats,
            ..
        } = self;
        local_shard.handle(message, &mut |datagram| enqueue(transmits, stats, datagram));
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
                Propagate::Forward { from, packet } => self.forward(now, from, &packet, &mut work),
                Propagate::KeyframeUp { source, kind } => self.request_keyframe(now, source, kind),
                Propagate::Resend {
                    subscriber,
                    source,
                    nack,
                } => self.resend(now, subscriber, source, &nack),
            }
        }
        self.relocate_routes();
    }

    fn relocate_routes(&mut self) {
        for (publisher, subscriber, destination) in std::mem::take(&mut self.relocated) {
            let sealed = self
                .subscribers_of(publisher)
                .into_iter()
                .flatten()
                .any(|r| r.subscriber == subscriber && r.is_sealed());
            if sealed {
                let message = FanoutMessage::Relocate {
                    subscriber,
                    destination,
                };
                self.send_to_shard(subscriber, message);
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
                    if peer.destination != Some(t.destination) {
                        peer.destination = Some(t.destination);
                        if let Role::Subscriber { source, .. } = peer.role {
                            self.relocated.push((source, key, t.destination));
                        }
                    }
                    let datagram = (t.destination, t.contents.into());
                    enqueue(&mut self.transmits, &mut self.stats, datagram);
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

    /// Writes one publisher packet to each of its subscribers' tracks of the same kind.
    fn forward(
        &mut self,
        now: Instant,
        from: PeerKey,
        published: &Arc<Published>,
        work: &mut VecDeque<Propagate>,
    ) {
        if self.config.faults.has(Fault::SfuDropMedia) {
            return;
        }
        // Taken out for the loop and put back: nothing in it adds or removes a subscriber.
        let Some(mut subscribers) = self.subscribers_of(from).map(std::mem::take) else {
            return;
        };
        let seal = !self.config.options.via_str0m.carries(published.kind);
        let resendable = !self.config.faults.has(Fault::SfuNoRetransmission);
        if published.kind == MediaKind::Video && resendable {
            self.keep_for_resending(from, published);
        }
        // On the stack: this runs for every packet a publisher sends.
        let mut sealed_per_shard = [0_u64; super::MAX_FANOUT_THREADS + 1];
        for route in subscribers.iter_mut() {
            if seal && self.seals(from, route, published) {
                sealed_per_shard[self.shard_of(route.subscriber)] += 1;
                continue;
            }
            let key = route.subscriber;
            let Some(subscriber) = self.peers.get_mut(&key) else {
                continue;
            };
            if write_to(subscriber, now, published, resendable).is_some() {
                self.stats.count_forwarded(published);
                // str0m sends a written packet only when it is handed the time. Doing it at
                // once, while the subscriber's state is in cache, is one pass over its `Rtc`
                // per forwarded packet instead of two (write now, timer wake-up later).
                self.advance_peer(now, key);
            }
            self.poll_peer(key, work);
        }
        if let Some(list) = self.subscribers_of(from) {
            *list = subscribers;
        }
        let shards = self.fanout_shards();
        self.fan_out(from, published, &sealed_per_shard[..shards]);
    }

    /// Whether the SFU seals this packet for the route itself (S8) rather than str0m writing
    /// it. A route starts sealing at the first packet that can be sealed; what sealing needs
    /// then goes to the subscriber's shard.
    fn seals(&mut self, publisher: PeerKey, route: &mut Route, published: &Published) -> bool {
        let subscriber = route.subscriber;
        let path = route.path_mut(published.kind);
        if *path == RoutePath::Unsealed {
            let Some(peer) = self.peers.get_mut(&subscriber) else {
                return false;
            };
            match start_sealing(peer, published) {
                Ok(track) => {
                    *path = RoutePath::Sealed {
                        pt: track.payload_type.0,
                        from: *published.packet.seq_no,
                    };
                    let message = FanoutMessage::AddRoute {
                        publisher,
                        subscriber,
                        track: Box::new(track),
                    };
                    self.send_to_shard(subscriber, message);
                }
                Err(unsealed) => *path = unsealed,
            }
        }
        path.seals(published)
    }

    /// Keeps a video packet to answer NACKs with. Not called with `sfu/no-retransmission`,
    /// so that nothing is ever resent.
    fn keep_for_resending(&mut self, publisher: PeerKey, published: &Arc<Published>) {
        let Some(Role::Publisher { recent_video, .. }) =
            self.peers.get_mut(&publisher).map(|p| &mut p.role)
        else {
            return;
        };
        if recent_video.len() >= RESEND_BUFFER {
            recent_video.pop_front();
        }
        recent_video.push_back(published.clone());
    }

    /// Answers a subscriber's NACK for the video the SFU sealed for it: the packets still
    /// held go again to its shard, sealed as before, within its [`SfuConfig::resends_per_second`].
    /// str0m answers for what it wrote.
    fn resend(&mut self, now: Instant, subscriber: PeerKey, source: PeerKey, nack: &Nack) {
        let Some(base) = self
            .peers
            .get(&subscriber)
            .and_then(|p| p.track_of_kind(MediaKind::Video))
            .and_then(|t| t.sequence_base)
        else {
            return;
        };
        let Some(Role::Publisher {
            subscribers,
            recent_video,
            ..
        }) = self.peers.get(&source).map(|p| &p.role)
        else {
            return;
        };
        let Some(RoutePath::Sealed { from, .. }) = subscribers
            .iter()
            .find(|r| r.subscriber == subscriber)
            .map(|r| r.video)
        else {
            return;
        };
        let mut packets = lost_packets(nack, recent_video, base, from);
        let Some(Role::Subscriber { resends, .. }) =
            self.peers.get_mut(&subscriber).map(|p| &mut p.role)
        else {
            return;
        };
        packets.truncate(resends.take_up_to(now, packets.len()));
        if packets.is_empty() {
            return;
        }
        let ssrc = *nack.ssrc;
        let message = FanoutMessage::Resend {
            subscriber,
            ssrc,
            packets,
        };
        self.send_to_shard(subscriber, message);
    }

    /// Hands the packet to each shard that seals it for some subscriber.
    fn fan_out(
        &mut self,
        publisher: PeerKey,
        published: &Arc<Published>,
        sealed_per_shard: &[u64],
    ) {
        for (shard, &routes) in sealed_per_shard.iter().enumerate() {
            if routes == 0 {
                continue;
            }
            let message = FanoutMessage::Packet {
                publisher,
                packet: published.clone(),
                routes,
            };
            self.deliver(shard, message);
        }
    }

    fn subscribers_of(&mut self, publisher: PeerKey) -> Option<&mut Vec<Route>> {
        match self.peers.get_mut(&publisher).map(|p| &mut p.role) {
            Some(Role::Publisher { subscribers, .. }) => Some(subscribers),
            _ => None,
        }
    }

    /// Hands one peer the time (`Input::Timeout`): its timers run, and written packets
    /// are queued to go.
    fn advance_peer(&mut self, now: Instant, key: PeerKey) {
        if let Some(peer) = self.peers.get_mut(&key) {
            self.stats.peer_timeouts += 1;
            if peer.rtc.handle_input(Input::Timeout(now)).is_err() {
                peer.rtc.disconnect();
            }
        }
    }

    /// Asks a publisher for a keyframe on its video track, at most once per interval.
    fn request_keyframe(&mut self, now: Instant, source: PeerKey, kind: KeyframeRequestKind) {
        if self.config.faults.has(Fault::SfuNoKeyframeRequest) {
            return;
        }
        let Some(peer) = self.peers.get_mut(&source) else {
            return;
        };
        let Some(mid) = peer.track_of_kind(MediaKind::Video).map(|t| t.mid) else {
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
        if let Some(stream) = peer.rtc.direct_api().stream_rx_by_mid(mid, None) {
            stream.request_keyframe(kind);
            self.stats.keyframe_requests += 1;
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
        (Event::MediaAdded(added), _) => peer.tracks.push(Track::new(added.mid, added.kind)),
        (Event::RtpPacket(packet), Role::Publisher { .. }) => {
            stats.packets_in += 1;
            let Some(kind) = peer.received_kind(&packet) else {
                return;
            };
            let pt = packet.header.payload_type;
            let Some(params) = peer.rtc.codec_config().find(|p| p.pt() == pt).copied() else {
                return;
            };
            if params.spec().codec == Codec::Opus {
                if let Some(recorder) = peer.recorder.as_mut() {
                    recorder.write(&packet);
                }
            }
            let packet = Arc::new(Published {
                kind,
                params,
                packet,
            });
            work.push_back(Propagate::Forward { from: key, packet });
        }
        (Event::RawPacket(raw), Role::Subscriber { source, .. }) => {
            if let RawPacket::RtcpRx(Rtcp::Nack(nack)) = *raw {
                work.push_back(Propagate::Resend {
                    subscriber: key,
                    source: *source,
                    nack,
                });
            }
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

/// Writes one publisher packet to a subscriber's track of its kind, renumbered into the
/// track's sequence space and with the subscriber's payload type. `None` when the subscriber
/// cannot take it (not connected yet, no line of that kind or codec, a packet from before its
/// first). Video that is `resendable` is kept to answer NACKs.
fn write_to(
    subscriber: &mut Peer,
    now: Instant,
    published: &Published,
    resendable: bool,
) -> Option<()> {
    let Peer { rtc, tracks, .. } = subscriber;
    // Before ICE and DTLS are done a packet would only queue up in str0m, to go out late in
    // a burst once they are.
    if !rtc.is_connected() {
        return None;
    }
    let Published {
        kind,
        params,
        packet,
    } = published;
    let track = tracks.iter_mut().find(|t| t.kind == *kind)?;
    let pt = track.payload_type_for(rtc.codec_config(), params)?;
    let sequence = track.sequence_for(*packet.seq_no)?;
    // Audio level and video orientation are the publisher's to say; transport-wide sequence
    // numbers and send times are each hop's own, so str0m writes them afresh.
    let carried = ExtensionValues {
        audio_level: packet.header.ext_vals.audio_level,
        voice_activity: packet.header.ext_vals.voice_activity,
        video_orientation: packet.header.ext_vals.video_orientation,
        ..ExtensionValues::default()
    };
    // The arrival time stands for the wall clock of the media time (str0m's advice for an
    // SFU); the RTP timestamp is the publisher's, the clock rate being the same.
    let write = RtpWrite::new(
        pt,
        sequence.into(),
        packet.header.timestamp,
        now,
        packet.payload.clone(),
    )
    .marker(packet.header.marker)
    .ext_vals(carried)
    // Video is answered from the RTX cache when a subscriber NACKs; Opus is not resent.
    .nackable(*kind == MediaKind::Video && resendable);
    rtc.direct_api()
        .stream_tx_by_mid(track.mid, None)?
        .write_rtp(write);
    Some(())
}

/// Queues a datagram to send. Bounded: when the loop cannot send as fast as peers produce, the
/// oldest datagram goes (RTP and SCTP survive loss; memory must not grow).
fn enqueue(
    transmits: &mut VecDeque<(SocketAddr, Vec<u8>)>,
    stats: &mut MediaStats,
    datagram: (SocketAddr, Vec<u8>),
) {
    if transmits.len() >= MAX_QUEUED_DATAGRAMS {
        transmits.pop_front();
        stats.datagrams_dropped += 1;
    }
    transmits.push_back(datagram);
}

/// What a new subscriber may have resent: `per_second`, in bursts of two NACKs' worth but
/// never more than a second's.
fn resend_allowance(now: Instant, per_second: u32) -> TokenBucket {
    let burst = (2 * MAX_RESENT_PER_NACK).min(per_second as usize);
    TokenBucket::new(now, f64::from(per_second), burst as f64)
}

/// The packets a NACK asks for, of those held (`recent`, oldest first) that the SFU sealed:
/// from publisher sequence number `from` on, in the subscriber's numbering less `base`. At
/// most [`MAX_RESENT_PER_NACK`].
fn lost_packets(
    nack: &Nack,
    recent: &VecDeque<Arc<Published>>,
    base: u64,
    from: u64,
) -> Vec<Arc<Published>> {
    let Some(newest) = recent
        .back()
        .and_then(|p| (*p.packet.seq_no).checked_sub(base))
    else {
        return Vec::new();
    };
    nack.reports
        .iter()
        .flat_map(|entry| entry.into_iter(newest.into()))
        .filter_map(|lost| {
            let published = (*lost).checked_add(base).filter(|seq| *seq >= from)?;
            recent
                .iter()
                .rev()
                .find(|p| *p.packet.seq_no == published)
                .cloned()
        })
        .take(MAX_RESENT_PER_NACK)
        .collect()
}

/// What the SFU needs to seal `published`'s line for a subscriber itself once ICE and DTLS
/// are done and the line takes its codec; otherwise how the route goes for now.
fn start_sealing(subscriber: &mut Peer, published: &Published) -> Result<SealedTrack, RoutePath> {
    let Peer {
        rtc,
        tracks,
        keys,
        destination,
        ..
    } = subscriber;
    let (Some(destination), true) = (*destination, rtc.is_connected()) else {
        return Err(RoutePath::Unsealed);
    };
    let Some(track) = tracks.iter_mut().find(|t| t.kind == published.kind) else {
        return Err(RoutePath::ByStr0m);
    };
    let Some(payload_type) = track.payload_type_for(rtc.codec_config(), &published.params) else {
        return Err(RoutePath::Unsealed);
    };
    let (Some(ssrc), Some(media)) = (
        rtc.direct_api()
            .stream_tx_by_mid(track.mid, None)
            .map(|s| *s.ssrc()),
        rtc.media(track.mid),
    ) else {
        return Err(RoutePath::ByStr0m);
    };
    let extensions = media.remote_extmap();
    let (mid_id, audio_level_id, orientation_id) = (
        extensions.id_of(Extension::RtpMid),
        extensions.id_of(Extension::AudioLevel),
        extensions.id_of(Extension::VideoOrientation),
    );
    let sealer = match keys.sealing() {
        Sealing::Pending => return Err(RoutePath::Unsealed),
        Sealing::ByStr0m => return Err(RoutePath::ByStr0m),
        Sealing::Ready(sealer) => sealer,
    };
    // Sets the line's base if this is its first packet, so both paths number alike.
    let _ = track.sequence_for(*published.packet.seq_no);
    let Some(sequence_base) = track.sequence_base else {
        return Err(RoutePath::Unsealed);
    };
    Ok(SealedTrack {
        kind: published.kind,
        destination,
        ssrc,
        mid: track.mid,
        mid_id,
        audio_level_id,
        orientation_id,
        sequence_base,
        payload_type: (published.params.pt(), payload_type),
        sealer,
    })
}

fn refusal(code: ErrorCode, reason: String) -> MediaRefusal {
    MediaRefusal { code, reason }
}

/// Chrome's standard RTP header extensions without transport-wide sequence numbers. A
/// subscriber that gets them sends transport-wide congestion control feedback about every
/// 50 ms, which only a sender that estimates its bandwidth can use; the SFU does not (it has
/// one layer of each stream to send), so toward subscribers it would be decrypted and thrown
/// away: about 19 datagrams a second per subscription, 0.4 per forwarded packet at 500
/// subscriptions (S8 in fixtures/sfu/CLARIFICATIONS.md). Publishers still get the SFU's
/// feedback.
fn subscriber_extensions() -> ExtensionMap {
    let mut map = ExtensionMap::empty();
    for (id, extension) in [
        (1, Extension::AudioLevel),
        (2, Extension::AbsoluteSendTime),
        (4, Extension::RtpMid),
        (10, Extension::RtpStreamId),
        (11, Extension::RepairedRtpStreamId),
        (13, Extension::VideoOrientation),
    ] {
        map.set(id, extension);
    }
    map
}

/// Whether an answer kept an Opus or VP8 payload type on some media line.
fn carries_opus_or_vp8(answer: &str) -> bool {
    answer.lines().any(|line| {
        let line = line.to_ascii_lowercase();
        line.starts_with("a=rtpmap:")
            && (line.contains(" opus/48000") || line.contains(" vp8/90000"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_subscriber_track_starts_at_rollover_count_zero_and_keeps_the_steps() {
        let mut track = Track::new(Mid::from("a"), MediaKind::Audio);
        // A publication 3 rollovers in: its extended sequence numbers are past 3 * 65536.
        let first = 3 * 65_536 + 65_530;
        assert_eq!(track.sequence_for(first), Some(65_530));
        assert_eq!(
            track.sequence_for(first + 10),
            Some(65_540),
            "rolls over on its own"
        );
        assert_eq!(
            track.sequence_for(first - 5),
            Some(65_525),
            "a late one keeps its place"
        );
        assert_eq!(
            track.sequence_for(3 * 65_536 - 1),
            None,
            "from before the track's base"
        );
    }
}
