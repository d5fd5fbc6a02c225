//! Sealed media fanned out over more than one thread.
//!
//! Forwarding an Opus packet to a room of 300 is 300 seals and 300 datagrams: at 150,000
//! packets a second that is more than one core, nearly all of it in the kernel's send path
//! (docs/performance.md). The seals and sends of one subscriber need nothing but that
//! subscriber's [`SealedTrack`]s, so the subscribers are split into shards by key. Shard 0 is
//! the media loop's own; each other shard is a [`SealShard`] that a thread of its own runs
//! from [`FanoutMessage`]s, sending on the same socket. ICE, DTLS, RTCP (NACKs included) and
//! every decision stay with the media loop: a shard only seals and sends what it is told to.

use super::srtp::{RtpFields, Sealer};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use str0m::format::PayloadParams;
use str0m::media::{MediaKind, Mid, Pt};
use str0m::rtp::RtpPacket;

/// A peer connection's key in the SFU.
pub type PeerKey = u64;

/// A publisher's packet, with what its subscribers need to know of it.
#[derive(Debug)]
pub struct Published {
    pub(super) kind: MediaKind,
    /// The publisher's codec parameters for the packet's payload type.
    pub(super) params: PayloadParams,
    pub(super) packet: RtpPacket,
}

/// What the SFU needs to write one of a subscriber's tracks (its audio or its video) itself.
#[derive(Debug)]
pub struct SealedTrack {
    pub(super) kind: MediaKind,
    pub(super) destination: SocketAddr,
    pub(super) ssrc: u32,
    pub(super) mid: Mid,
    pub(super) mid_id: Option<u8>,
    /// The ids the subscriber gave the publisher's extensions the SFU carries over.
    pub(super) audio_level_id: Option<u8>,
    pub(super) orientation_id: Option<u8>,
    /// As the subscriber line's sequence base, copied so both paths number alike.
    pub(super) sequence_base: u64,
    /// The publisher's payload type, and the subscriber's for it; packets of another go
    /// through the `Rtc`.
    pub(super) payload_type: (Pt, Pt),
    pub(super) sealer: Sealer,
}

impl SealedTrack {
    /// The packet renumbered, with the subscriber's payload type, SSRC and extension ids,
    /// sealed with its SRTP key.
    fn seal(&mut self, published: &Published) -> Option<(SocketAddr, Vec<u8>)> {
        let packet = &published.packet;
        if packet.header.payload_type != self.payload_type.0 {
            return None;
        }
        let sequence = (*packet.seq_no).checked_sub(self.sequence_base)?;
        let ext = &packet.header.ext_vals;
        // RFC 6464: the voice activity bit over the level in -dBov.
        let level = ext
            .audio_level
            .zip(ext.voice_activity)
            .map(|(level, voice)| [u8::from(voice) << 7 | (level.unsigned_abs() & 0x7F)]);
        // 3GPP TS 26.114 §7.4.5: the rotation in the low two bits (all str0m reads of it).
        let orientation = ext.video_orientation.map(|o| [o as u8]);
        let mid = self.mid_id.map(|id| (id, self.mid.as_bytes()));
        let level = self
            .audio_level_id
            .zip(level.as_ref())
            .map(|(id, v)| (id, &v[..]));
        let orientation = self
            .orientation_id
            .zip(orientation.as_ref())
            .map(|(id, v)| (id, &v[..]));
        let mut extensions: [(u8, &[u8]); 3] = [(0, &[]); 3];
        let mut count = 0;
        for extension in mid.into_iter().chain(level).chain(orientation) {
            extensions[count] = extension;
            count += 1;
        }
        let fields = RtpFields {
            payload_type: *self.payload_type.1,
            marker: packet.header.marker,
            sequence,
            timestamp: packet.header.timestamp,
            ssrc: self.ssrc,
            extensions: &extensions[..count],
        };
        let datagram = self.sealer.seal(&fields, &packet.payload)?;
        Some((self.destination, datagram))
    }
}

/// What the media loop tells a shard, in order: a route is added before the packets it takes.
#[derive(Debug)]
pub enum FanoutMessage {
    /// Replaces the subscriber's route of the track's kind, if any.
    AddRoute {
        publisher: PeerKey,
        subscriber: PeerKey,
        track: Box<SealedTrack>,
    },
    /// Forgets every route of the subscriber.
    RemoveRoute { subscriber: PeerKey },
    /// The subscriber's `Rtc` now sends to another address (ICE chose another pair).
    Relocate {
        subscriber: PeerKey,
        destination: SocketAddr,
    },
    /// Seal and send this packet to each of the publisher's routes here.
    Packet {
        publisher: PeerKey,
        packet: Arc<Published>,
        /// How many routes the shard has for the publisher: the datagrams lost if the
        /// message is.
        routes: u64,
    },
    /// Seal and send these packets again to the subscriber's track of SSRC `ssrc`: the ones
    /// it reported lost (RFC 4585 §6.2.1 generic NACK).
    Resend {
        subscriber: PeerKey,
        ssrc: u32,
        packets: Vec<Arc<Published>>,
    },
}

/// Counters every shard adds to, read by [`super::Sfu::stats`].
#[derive(Debug, Default)]
pub struct FanoutCounters {
    sealed: AtomicU64,
    bytes: AtomicU64,
    /// Of the sealed, those sent again after a NACK.
    resent: AtomicU64,
    /// Datagrams sent by shards other than the media loop's own (which counts its own).
    datagrams_out: AtomicU64,
    /// Datagrams never sealed because a shard's queue was full, or sealed and then lost on
    /// the way out (see `MediaStats::datagrams_dropped`).
    dropped: AtomicU64,
}

/// What [`FanoutCounters`] held when read.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct FanoutTotals {
    pub sealed: u64,
    pub bytes: u64,
    pub resent: u64,
    pub datagrams_out: u64,
    pub dropped: u64,
}

impl FanoutCounters {
    pub fn count_sent(&self, datagrams: usize) {
        self.datagrams_out
            .fetch_add(datagrams as u64, Ordering::Relaxed);
    }

    pub fn count_dropped(&self, datagrams: u64) {
        self.dropped.fetch_add(datagrams, Ordering::Relaxed);
    }

    pub fn totals(&self) -> FanoutTotals {
        FanoutTotals {
            sealed: self.sealed.load(Ordering::Relaxed),
            bytes: self.bytes.load(Ordering::Relaxed),
            resent: self.resent.load(Ordering::Relaxed),
            datagrams_out: self.datagrams_out.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
        }
    }
}

/// One shard's sealed routes, publisher by publisher. Sans-IO: messages in, datagrams out.
#[derive(Debug)]
pub struct SealShard {
    routes: HashMap<PeerKey, Vec<(PeerKey, SealedTrack)>>,
    /// Each subscriber's publisher.
    publisher_of: HashMap<PeerKey, PeerKey>,
    counters: Arc<FanoutCounters>,
}

impl SealShard {
    pub fn new(counters: Arc<FanoutCounters>) -> Self {
        Self {
            routes: HashMap::new(),
            publisher_of: HashMap::new(),
            counters,
        }
    }

    /// Carries out one message; a packet's datagrams go to `emit`.
    pub fn handle(&mut self, message: FanoutMessage, emit: &mut dyn FnMut((SocketAddr, Vec<u8>))) {
        match message {
            FanoutMessage::AddRoute {
                publisher,
                subscriber,
                track,
            } => self.add(publisher, subscriber, *track),
            FanoutMessage::RemoveRoute { subscriber } => self.remove(subscriber),
            FanoutMessage::Relocate {
                subscriber,
                destination,
            } => {
                for track in self.tracks_of(subscriber) {
                    track.destination = destination;
                }
            }
            FanoutMessage::Packet {
                publisher, packet, ..
            } => self.seal_all(publisher, &packet, emit),
            FanoutMessage::Resend {
                subscriber,
                ssrc,
                packets,
            } => self.resend(subscriber, ssrc, &packets, emit),
        }
    }

    /// Subscribers with a route here, over all publishers.
    pub fn len(&self) -> usize {
        self.publisher_of.len()
    }

    pub fn is_empty(&self) -> bool {
        self.publisher_of.is_empty()
    }

    fn seal_all(
        &mut self,
        publisher: PeerKey,
        published: &Published,
        emit: &mut dyn FnMut((SocketAddr, Vec<u8>)),
    ) {
        let Some(routes) = self.routes.get_mut(&publisher) else {
            return;
        };
        let mut sealed = 0;
        for (_, track) in routes.iter_mut() {
            if let Some(datagram) = track.seal(published) {
                sealed += 1;
                emit(datagram);
            }
        }
        self.count_sealed(sealed, sealed * published.packet.payload.len() as u64);
    }

    fn resend(
        &mut self,
        subscriber: PeerKey,
        ssrc: u32,
        packets: &[Arc<Published>],
        emit: &mut dyn FnMut((SocketAddr, Vec<u8>)),
    ) {
        let Some(track) = self.tracks_of(subscriber).find(|t| t.ssrc == ssrc) else {
            return;
        };
        let (mut resent, mut bytes) = (0, 0);
        for published in packets {
            if let Some(datagram) = track.seal(published) {
                resent += 1;
                bytes += published.packet.payload.len() as u64;
                emit(datagram);
            }
        }
        self.counters.resent.fetch_add(resent, Ordering::Relaxed);
        self.count_sealed(resent, bytes);
    }

    fn count_sealed(&self, datagrams: u64, bytes: u64) {
        self.counters.sealed.fetch_add(datagrams, Ordering::Relaxed);
        self.counters.bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    fn add(&mut self, publisher: PeerKey, subscriber: PeerKey, track: SealedTrack) {
        if self.publisher_of.get(&subscriber) != Some(&publisher) {
            self.remove(subscriber);
            self.publisher_of.insert(subscriber, publisher);
        }
        let routes = self.routes.entry(publisher).or_default();
        routes.retain(|(key, held)| *key != subscriber || held.kind != track.kind);
        routes.push((subscriber, track));
    }

    /// The subscriber's sealed tracks here.
    fn tracks_of(&mut self, subscriber: PeerKey) -> impl Iterator<Item = &mut SealedTrack> {
        let publisher = self.publisher_of.get(&subscriber);
        let routes = publisher.and_then(|p| self.routes.get_mut(p));
        routes
            .into_iter()
            .flatten()
            .filter(move |(key, _)| *key == subscriber)
            .map(|(_, track)| track)
    }

    fn remove(&mut self, subscriber: PeerKey) {
        let Some(publisher) = self.publisher_of.remove(&subscriber) else {
            return;
        };
        if let Some(routes) = self.routes.get_mut(&publisher) {
            routes.retain(|(key, _)| *key != subscriber);
            if routes.is_empty() {
                self.routes.remove(&publisher);
            }
        }
    }
}
