//! The suite's media peer (str0m), bound to loopback: a publisher that sends real Opus and VP8
//! RTP, or a subscriber that records what arrives. Each peer owns one UDP socket and one task.
//! The VP8 frames come from a one-second clip encoded by libvpx (fixtures/sfu/media/clip.ivf,
//! or for load at a higher rate clip-hd.ivf);
//! the Opus packets are 20 ms stereo CELT frames (TOC 0xFC) with a fixed payload: valid
//! streams, no codec needed.

use super::loss::{Loss, Verdict};
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use str0m::change::{SdpAnswer, SdpOffer, SdpPendingOffer};
use str0m::format::Codec;
use str0m::media::{Direction, KeyframeRequestKind, MediaKind, MediaTime, Mid};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, Input, Output, Rtc};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

/// Why a media step failed, in words for a verdict.
pub type MediaError = String;

const CLIP: &[u8] = include_bytes!("../../../fixtures/sfu/media/clip.ivf");
/// 1280x720, 30 frames, about 2.6 Mbit/s: about 300 packets a second, so that one VP8
/// publisher and 500 subscribers make 150,000 forwarded packets a second. Made with
/// `ffmpeg -f lavfi -i "testsrc2=size=1280x720:rate=30,noise=alls=20:allf=t" -t 1 -c:v libvpx
/// -b:v 2800k -minrate 2800k -maxrate 2800k -bufsize 1400k -g 30 -deadline realtime
/// -cpu-used 8 -auto-alt-ref 0 -lag-in-frames 0 -error-resilient 1 clip-hd.ivf`.
const CLIP_HD: &[u8] = include_bytes!("../../../fixtures/sfu/media/clip-hd.ivf");
/// 20 ms of Opus at 48 kHz.
const OPUS_FRAME_TICKS: u64 = 960;
const OPUS_PERIOD: Duration = Duration::from_millis(20);
const VP8_PERIOD: Duration = Duration::from_millis(33);
/// How often a publisher looks whether its next frame is due.
const MEDIA_CHECK: Duration = Duration::from_millis(10);
/// Samples a report keeps; older ones are only counted.
pub const SAMPLE_HISTORY: usize = 512;
/// How often str0m reports RTP statistics.
const STATS_INTERVAL: Duration = Duration::from_secs(1);
/// TOC byte: config 31 (CELT fullband, 20 ms), stereo, one frame.
const OPUS_TOC: u8 = 0xFC;

/// What a peer sends or receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tracks {
    pub audio: bool,
    pub video: bool,
    /// The VP8 a publisher sends.
    pub clip: VideoClip,
}

/// Which VP8 clip a publisher loops.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum VideoClip {
    /// About 32 packets a second of 380 bytes (fixtures/sfu/media/clip.ivf).
    #[default]
    Small,
    /// About 300 packets a second of up to 1,150 bytes (clip-hd.ivf).
    Hd,
}

impl Tracks {
    pub const AUDIO_VIDEO: Tracks = Tracks {
        audio: true,
        video: true,
        clip: VideoClip::Small,
    };
    pub const AUDIO: Tracks = Tracks {
        audio: true,
        video: false,
        clip: VideoClip::Small,
    };
    pub const VIDEO: Tracks = Tracks {
        audio: false,
        video: true,
        clip: VideoClip::Small,
    };

    pub fn with_clip(self, clip: VideoClip) -> Self {
        Self { clip, ..self }
    }
}

/// One sample (an Opus packet, a VP8 frame) a subscriber received.
#[derive(Debug, Clone)]
pub struct Sample {
    pub kind: MediaKind,
    /// The RTP payload type and the codec it was negotiated for.
    pub pt: u8,
    pub codec: String,
    pub bytes: usize,
    pub keyframe: bool,
    pub at: Instant,
}

/// What a peer has seen so far.
#[derive(Debug, Clone, Default)]
pub struct PeerReport {
    pub connected: bool,
    pub closed: bool,
    /// The latest samples received, at most [`SAMPLE_HISTORY`].
    pub samples: VecDeque<Sample>,
    /// Samples received in all, by kind, and their bytes.
    pub audio_received: u64,
    pub video_received: u64,
    pub bytes_received: u64,
    /// Keyframe requests (PLI or FIR) that reached this peer as a publisher.
    pub keyframe_requests: u32,
    pub samples_sent: u64,
    /// When the first sample arrived (a subscriber).
    pub first_sample: Option<Instant>,
    /// A counting subscriber: RTP datagrams received undecrypted, and their bytes.
    pub rtp_datagrams: u64,
    pub rtp_datagram_bytes: u64,
    /// RTP datagrams this peer sent (a publisher), retransmissions in.
    pub rtp_datagrams_sent: u64,
    /// A lossy subscriber: VP8 packets it dropped unread, and retransmissions that arrived.
    pub video_dropped: u64,
    pub retransmissions_received: u64,
    /// str0m's latest RTP statistics per media line (every second once connected).
    pub rtp: HashMap<String, LineStats>,
}

/// One media line's RTP counters, from str0m's stats events.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct LineStats {
    pub kind: Option<MediaKind>,
    /// RTP packets received (a receiving line) or sent (a sending line), retransmissions in.
    pub packets: u64,
    pub bytes: u64,
    /// NACKs and PLIs this side sent (receiving) or received (sending).
    pub nacks: u64,
    pub plis: u64,
    /// Interarrival jitter in milliseconds (a receiving line).
    pub jitter_ms: f64,
    /// Fraction lost, from the last receiver report.
    pub loss: Option<f32>,
}

impl PeerReport {
    pub fn of_kind(&self, kind: MediaKind) -> impl Iterator<Item = &Sample> {
        self.samples.iter().filter(move |s| s.kind == kind)
    }

    /// Samples received in all of `kind`.
    pub fn received(&self, kind: MediaKind) -> u64 {
        match kind {
            MediaKind::Audio => self.audio_received,
            MediaKind::Video => self.video_received,
        }
    }
}

#[derive(Debug)]
enum Command {
    Answer(String, tokio::sync::oneshot::Sender<Result<(), MediaError>>),
    RequestKeyframe,
    /// Count RTP datagrams instead of decrypting them, once connected.
    CountOnly,
    /// Lose some of the video that arrives.
    Lose(Loss),
    /// A publisher: send no more media.
    StopSending,
    Close,
}

/// A running peer; dropping it stops its task.
#[derive(Debug)]
pub struct MediaPeer {
    offer: String,
    report: Arc<Mutex<PeerReport>>,
    commands: mpsc::Sender<Command>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for MediaPeer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl MediaPeer {
    /// A publisher: sendonly lines for `tracks`; media flows once connected.
    pub async fn publisher(tracks: Tracks) -> Result<Self, MediaError> {
        Self::start(tracks, Direction::SendOnly).await
    }

    /// A subscriber: recvonly lines for `tracks`.
    pub async fn subscriber(tracks: Tracks) -> Result<Self, MediaError> {
        Self::start(tracks, Direction::RecvOnly).await
    }

    /// A subscriber for load: once connected, RTP datagrams are counted (`rtp_datagrams`) and
    /// not decrypted, so that hundreds of them cost the load generator little. RTCP, STUN and
    /// DTLS still go to str0m.
    pub async fn counting_subscriber(tracks: Tracks) -> Result<Self, MediaError> {
        let peer = Self::start(tracks, Direction::RecvOnly).await?;
        let _ = peer.commands.send(Command::CountOnly).await;
        Ok(peer)
    }

    /// A subscriber that drops every `every`-th VP8 packet before str0m sees it, so that
    /// str0m asks for it again; what the sender resends is counted
    /// (`retransmissions_received`; [`super::loss`]).
    pub async fn lossy_subscriber(tracks: Tracks, every: u64) -> Result<Self, MediaError> {
        let peer = Self::start(tracks, Direction::RecvOnly).await?;
        let loss = Loss::new(every, &peer.offer);
        let _ = peer.commands.send(Command::Lose(loss)).await;
        Ok(peer)
    }

    async fn start(tracks: Tracks, direction: Direction) -> Result<Self, MediaError> {
        let (socket, local) = bind_loopback().await?;
        let mut rtc = new_rtc(local, false)?;
        let mut change = rtc.sdp_api();
        let wanted = [
            (tracks.audio, MediaKind::Audio),
            (tracks.video, MediaKind::Video),
        ];
        let mut kinds = HashMap::new();
        for (_, kind) in wanted.iter().filter(|(on, _)| *on) {
            let stream = Some("conformance".to_owned());
            kinds.insert(
                change.add_media(*kind, direction, stream, None, None),
                *kind,
            );
        }
        let (offer, pending) = change.apply().ok_or("no media line to offer")?;
        let mut driver = Driver::new(rtc, socket, local, direction, tracks.clip);
        // The lines this side offers: str0m announces only the ones the remote side adds.
        driver.kinds = kinds;
        Ok(Self::spawn(driver, Some(pending), offer.to_sdp_string()))
    }

    /// Answers a client's offer, as an SFU would (ICE-lite, one host candidate): with
    /// `sends`, media goes to the client on every line it offered to receive; without, what the
    /// client sends is recorded. Returns the peer and the SDP answer.
    pub async fn answering(offer: &str, sends: bool) -> Result<(Self, String), MediaError> {
        let (socket, local) = bind_loopback().await?;
        let mut rtc = new_rtc(local, true)?;
        let offer = SdpOffer::from_sdp_string(offer)
            .map_err(|e| format!("the offer does not parse: {e}"))?;
        let answer = rtc
            .sdp_api()
            .accept_offer(offer)
            .map_err(|e| format!("the offer cannot be answered: {e}"))?
            .to_sdp_string();
        let direction = if sends {
            Direction::SendOnly
        } else {
            Direction::RecvOnly
        };
        let driver = Driver::new(rtc, socket, local, direction, VideoClip::Small);
        Ok((Self::spawn(driver, None, answer.clone()), answer))
    }

    fn spawn(driver: Driver, pending: Option<SdpPendingOffer>, sdp: String) -> Self {
        let report = Arc::clone(&driver.report);
        let (commands, inbox) = mpsc::channel(16);
        let task = tokio::spawn(driver.run(pending, inbox));
        Self {
            offer: sdp,
            report,
            commands,
            task,
        }
    }

    /// The SDP offer to send in `jsep` (or, for an answering peer, its answer).
    pub fn offer(&self) -> &str {
        &self.offer
    }

    /// Applies the SFU's answer; ICE and DTLS start.
    pub async fn accept_answer(&self, answer: &str) -> Result<(), MediaError> {
        let (reply, done) = tokio::sync::oneshot::channel();
        self.commands
            .send(Command::Answer(answer.to_owned(), reply))
            .await
            .map_err(|_| "the peer task ended".to_owned())?;
        done.await.map_err(|_| "the peer task ended".to_owned())?
    }

    /// Asks the remote side (the SFU) for a keyframe on the video line.
    pub async fn request_keyframe(&self) {
        let _ = self.commands.send(Command::RequestKeyframe).await;
    }

    /// A publisher sends no more media (the connection stays up).
    pub async fn stop_sending(&self) {
        let _ = self.commands.send(Command::StopSending).await;
    }

    /// Closes the peer connection.
    pub async fn close(&self) {
        let _ = self.commands.send(Command::Close).await;
    }

    /// The live report, for watchers that poll it without cloning.
    pub fn report_handle(&self) -> Arc<Mutex<PeerReport>> {
        Arc::clone(&self.report)
    }

    pub fn report(&self) -> PeerReport {
        self.report
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Waits until `done` holds for the report, or `within` passes; returns the last report.
    pub async fn wait_for(
        &self,
        within: Duration,
        done: impl Fn(&PeerReport) -> bool,
    ) -> Result<PeerReport, PeerReport> {
        let deadline = Instant::now() + within;
        loop {
            let report = self.report();
            if done(&report) {
                return Ok(report);
            }
            if Instant::now() >= deadline {
                return Err(report);
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// RFC 7983 and RFC 5761: an SRTP packet starts 0b10 and its second byte is not an RTCP type.
pub fn is_rtp(data: &[u8]) -> bool {
    matches!(data, [first, second, ..] if (128..=191).contains(first) && !(192..=223).contains(second))
}

async fn bind_loopback() -> Result<(UdpSocket, SocketAddr), MediaError> {
    let socket = bind_with_buffer().map_err(|e| format!("bind: {e}"))?;
    let local = socket
        .local_addr()
        .map_err(|e| format!("local address: {e}"))?;
    Ok((socket, local))
}

/// A loopback UDP socket whose receive buffer holds a second of a busy subscriber's media,
/// so that a load generator's busy moment does not show up as loss.
fn bind_with_buffer() -> std::io::Result<UdpSocket> {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None)?;
    let _ = socket.set_recv_buffer_size(1024 * 1024);
    socket.set_nonblocking(true)?;
    socket.bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into())?;
    UdpSocket::from_std(socket.into())
}

/// An `Rtc` with Opus and VP8 only, RTP stats every second, and `local` as its candidate.
fn new_rtc(local: SocketAddr, ice_lite: bool) -> Result<Rtc, MediaError> {
    let mut rtc = Rtc::builder()
        .set_ice_lite(ice_lite)
        .clear_codecs()
        .enable_opus(true, false)
        .enable_vp8(true)
        .set_stats_interval(Some(STATS_INTERVAL))
        .build(Instant::now());
    let candidate = Candidate::host(local, "udp").map_err(|e| format!("candidate: {e}"))?;
    rtc.add_local_candidate(candidate);
    Ok(rtc)
}

/// The VP8 frames of the clip, in order, with whether each is a keyframe.
fn clip_frames(clip: VideoClip) -> Vec<(&'static [u8], bool)> {
    let clip = match clip {
        VideoClip::Small => CLIP,
        VideoClip::Hd => CLIP_HD,
    };
    let mut frames = Vec::new();
    let mut at = 32; // IVF file header
    while at + 12 <= clip.len() {
        let size =
            u32::from_le_bytes([clip[at], clip[at + 1], clip[at + 2], clip[at + 3]]) as usize;
        let Some(frame) = clip.get(at + 12..at + 12 + size) else {
            break;
        };
        // RFC 6386 §9.1: bit 0 of the frame tag is 0 on a keyframe.
        frames.push((frame, frame.first().is_some_and(|b| b & 1 == 0)));
        at += 12 + size;
    }
    frames
}

/// The Opus packet sent every 20 ms.
fn opus_packet(sequence: u64) -> Vec<u8> {
    let mut packet = vec![OPUS_TOC];
    packet.extend((0..80).map(|i| (sequence as u8).wrapping_add(i)));
    packet
}

/// A peer's socket: read by its task, or (a connected counting subscriber on Linux) by the
/// counting pool, which passes on what is not RTP.
enum Io {
    Own(UdpSocket),
    #[cfg(target_os = "linux")]
    Pooled(super::counting::Adopted),
    /// The socket could not be handed over or taken back, or the pool is gone: the peer
    /// ends (its report says `closed`) instead of waiting for datagrams that cannot come.
    Lost,
}

impl Io {
    async fn recv_from(&mut self, buf: &mut [u8]) -> Option<(usize, SocketAddr)> {
        match self {
            Io::Own(socket) => socket.recv_from(buf).await.ok(),
            #[cfg(target_os = "linux")]
            Io::Pooled(adopted) => {
                let Some((source, data)) = adopted.inbox.recv().await else {
                    *self = Io::Lost;
                    return None;
                };
                let len = data.len().min(buf.len());
                buf[..len].copy_from_slice(&data[..len]);
                Some((len, source))
            }
            Io::Lost => None,
        }
    }

    /// A datagram that cannot go at once, on an adopted socket, is dropped: STUN, DTLS and
    /// RTCP are built to survive that.
    async fn send_to(&self, data: &[u8], destination: SocketAddr) {
        match self {
            Io::Own(socket) => {
                let _ = socket.send_to(data, destination).await;
            }
            #[cfg(target_os = "linux")]
            Io::Pooled(adopted) => {
                let _ = adopted.socket.send_to(data, destination);
            }
            Io::Lost => {}
        }
    }
}

struct Driver {
    rtc: Rtc,
    io: Io,
    local: SocketAddr,
    report: Arc<Mutex<PeerReport>>,
    direction: Direction,
    kinds: HashMap<Mid, MediaKind>,
    clip: Vec<(&'static [u8], bool)>,
    next_frame: usize,
    sent_audio: u64,
    sent_video: u64,
    started: Option<Instant>,
    count_only: bool,
    /// The counting pool would not take the socket: the task counts.
    pool_refused: bool,
    loss: Option<Loss>,
    sending_stopped: bool,
}

impl Driver {
    /// A peer's driver; a publisher among them loops the VP8 of `clip`.
    fn new(
        rtc: Rtc,
        socket: UdpSocket,
        local: SocketAddr,
        direction: Direction,
        clip: VideoClip,
    ) -> Self {
        Self {
            rtc,
            io: Io::Own(socket),
            local,
            report: Arc::new(Mutex::new(PeerReport::default())),
            direction,
            kinds: HashMap::new(),
            clip: clip_frames(clip),
            next_frame: 0,
            sent_audio: 0,
            sent_video: 0,
            started: None,
            count_only: false,
            pool_refused: false,
            loss: None,
            sending_stopped: false,
        }
    }

    fn update(&self, change: impl FnOnce(&mut PeerReport)) {
        change(&mut self.report.lock().unwrap_or_else(PoisonError::into_inner));
    }

    async fn run(
        mut self,
        mut pending: Option<SdpPendingOffer>,
        mut inbox: mpsc::Receiver<Command>,
    ) {
        let mut buf = vec![0_u8; 2000];
        let mut timeout = Instant::now();
        let mut drain_first = true;
        loop {
            if drain_first {
                let Some(next) = self.drain().await else {
                    break;
                };
                timeout = next;
            }
            let mut only_counted = false;
            self.hand_over_counting();
            if matches!(self.io, Io::Lost) {
                break;
            }
            let wake = self.wake_at(timeout);
            tokio::select! {
                read = self.io.recv_from(&mut buf) => {
                    if let Some((len, source)) = read {
                        only_counted = self.receive(source, &buf[..len]);
                    }
                }
                command = inbox.recv() => match command {
                    Some(Command::Answer(sdp, reply)) => {
                        let _ = reply.send(self.accept(&mut pending, &sdp));
                    }
                    Some(Command::RequestKeyframe) => self.request_keyframe(),
                    Some(Command::CountOnly) => self.count_only = true,
                    Some(Command::Lose(loss)) => self.loss = Some(loss),
                    Some(Command::StopSending) => self.sending_stopped = true,
                    Some(Command::Close) | None => break,
                },
                () = tokio::time::sleep_until(wake.into()) => {}
            }
            let now = Instant::now();
            // A datagram that was only counted changed nothing in str0m: until its timer is
            // due there is nothing to hand it or to poll.
            drain_first = !(only_counted && now < timeout);
            if !drain_first {
                continue;
            }
            if self.rtc.handle_input(Input::Timeout(now)).is_err() {
                break;
            }
            self.send_due_media(now);
        }
        self.rtc.disconnect();
        self.update(|r| r.closed = true);
    }

    fn accept(
        &mut self,
        pending: &mut Option<SdpPendingOffer>,
        sdp: &str,
    ) -> Result<(), MediaError> {
        let answer = SdpAnswer::from_sdp_string(sdp)
            .map_err(|e| format!("the answer does not parse: {e}"))?;
        let pending = pending.take().ok_or("an answer was already applied")?;
        self.rtc
            .sdp_api()
            .accept_answer(pending, answer)
            .map_err(|e| format!("the answer is not acceptable: {e}"))
    }

    /// A connected counting subscriber's socket goes to the counting pool (Linux); elsewhere,
    /// or if the pool refuses it, the task counts RTP itself (`receive`).
    #[cfg(target_os = "linux")]
    fn hand_over_counting(&mut self) {
        if !(self.count_only
            && !self.pool_refused
            && self.started.is_some()
            && matches!(self.io, Io::Own(_)))
        {
            return;
        }
        let Io::Own(socket) = std::mem::replace(&mut self.io, Io::Lost) else {
            return;
        };
        let Ok(socket) = socket.into_std() else {
            return;
        };
        let kept = socket.try_clone();
        match super::counting::adopt(socket, Arc::clone(&self.report)) {
            Ok(adopted) => self.io = Io::Pooled(adopted),
            Err(_) => {
                // The task goes on counting, on its socket taken back.
                if let Some(socket) = kept.ok().and_then(|s| UdpSocket::from_std(s).ok()) {
                    self.io = Io::Own(socket);
                }
                self.pool_refused = true;
            }
        }
    }

    #[cfg(not(target_os = "linux"))]
    fn hand_over_counting(&mut self) {}

    /// When the loop must wake without input: at str0m's timer, and for a publisher also at
    /// its next media frame (checked every 10 ms).
    fn wake_at(&self, timeout: Instant) -> Instant {
        if self.direction == Direction::SendOnly {
            timeout.min(Instant::now() + MEDIA_CHECK)
        } else {
            timeout
        }
    }

    /// Hands a datagram to str0m, or only counts it; `true` when it was only counted.
    fn receive(&mut self, source: SocketAddr, data: &[u8]) -> bool {
        match self.loss.as_mut().map(|loss| loss.judge(data)) {
            Some(Verdict::Drop) => {
                self.update(|r| r.video_dropped += 1);
                return true;
            }
            Some(Verdict::Resent) => self.update(|r| r.retransmissions_received += 1),
            Some(Verdict::Keep) | None => {}
        }
        if self.count_only && self.started.is_some() && is_rtp(data) {
            let bytes = data.len() as u64;
            self.update(|r| {
                r.first_sample.get_or_insert_with(Instant::now);
                r.rtp_datagrams += 1;
                r.rtp_datagram_bytes += bytes;
            });
            return true;
        }
        let Ok(contents) = data.try_into() else {
            return false;
        };
        let receive = Receive {
            proto: Protocol::Udp,
            source,
            destination: self.local,
            contents,
        };
        let _ = self
            .rtc
            .handle_input(Input::Receive(Instant::now(), receive));
        false
    }

    /// Sends what str0m wants sent and records its events; `None` when the peer is done.
    async fn drain(&mut self) -> Option<Instant> {
        loop {
            if !self.rtc.is_alive() {
                return None;
            }
            match self.rtc.poll_output().ok()? {
                Output::Timeout(at) => return Some(at),
                Output::Transmit(t) => {
                    if is_rtp(&t.contents) {
                        self.update(|r| r.rtp_datagrams_sent += 1);
                    }
                    self.io.send_to(&t.contents, t.destination).await;
                }
                Output::Event(event) => self.on_event(event),
            }
        }
    }

    fn on_event(&mut self, event: Event) {
        match event {
            Event::Connected => {
                self.started = Some(Instant::now());
                self.update(|r| r.connected = true);
            }
            Event::MediaAdded(added) => {
                self.kinds.insert(added.mid, added.kind);
            }
            Event::MediaData(data) => {
                let kind = self
                    .kinds
                    .get(&data.mid)
                    .copied()
                    .unwrap_or(MediaKind::Audio);
                let sample = Sample {
                    kind,
                    pt: *data.pt,
                    codec: codec_name(data.params.spec().codec),
                    bytes: data.data.len(),
                    keyframe: kind == MediaKind::Video
                        && data.data.first().is_some_and(|b| b & 1 == 0),
                    at: Instant::now(),
                };
                self.update(|r| {
                    r.first_sample.get_or_insert(sample.at);
                    match sample.kind {
                        MediaKind::Audio => r.audio_received += 1,
                        MediaKind::Video => r.video_received += 1,
                    }
                    r.bytes_received += sample.bytes as u64;
                    if r.samples.len() >= SAMPLE_HISTORY {
                        r.samples.pop_front();
                    }
                    r.samples.push_back(sample);
                });
            }
            Event::MediaIngressStats(stats) => {
                let kind = self.kinds.get(&stats.mid).copied();
                let rate = if kind == Some(MediaKind::Video) {
                    90.0
                } else {
                    48.0
                };
                let line = LineStats {
                    kind,
                    packets: stats.packets,
                    bytes: stats.bytes,
                    nacks: stats.nacks,
                    plis: stats.plis,
                    jitter_ms: f64::from(stats.jitter) / rate,
                    loss: stats.loss,
                };
                self.update(|r| {
                    r.rtp.insert(stats.mid.to_string(), line);
                });
            }
            Event::MediaEgressStats(stats) => {
                let line = LineStats {
                    kind: self.kinds.get(&stats.mid).copied(),
                    packets: stats.packets,
                    bytes: stats.bytes,
                    nacks: stats.nacks,
                    plis: stats.plis,
                    jitter_ms: 0.0,
                    loss: stats.loss,
                };
                self.update(|r| {
                    r.rtp.insert(stats.mid.to_string(), line);
                });
            }
            Event::KeyframeRequest(_) => {
                self.next_frame = 0;
                self.update(|r| r.keyframe_requests += 1);
            }
            _ => {}
        }
    }

    fn request_keyframe(&mut self) {
        let video = self
            .kinds
            .iter()
            .find(|(_, k)| **k == MediaKind::Video)
            .map(|(m, _)| *m);
        if let Some(mut writer) = video.and_then(|mid| self.rtc.writer(mid)) {
            let _ = writer.request_keyframe(None, KeyframeRequestKind::Pli);
        }
    }

    /// A publisher sends one Opus packet per 20 ms and one VP8 frame per 33 ms of connection.
    fn send_due_media(&mut self, now: Instant) {
        let Some(started) = self
            .started
            .filter(|_| self.direction == Direction::SendOnly && !self.sending_stopped)
        else {
            return;
        };
        let elapsed = now.duration_since(started);
        while self.sent_audio * OPUS_PERIOD.as_millis() as u64 <= elapsed.as_millis() as u64 {
            if !self.write(
                MediaKind::Audio,
                now,
                MediaTime::new(
                    self.sent_audio * OPUS_FRAME_TICKS,
                    str0m::media::Frequency::FORTY_EIGHT_KHZ,
                ),
                opus_packet(self.sent_audio),
            ) {
                break;
            }
            self.sent_audio += 1;
        }
        while self.sent_video * VP8_PERIOD.as_millis() as u64 <= elapsed.as_millis() as u64 {
            let Some((frame, _)) = self.clip.get(self.next_frame).copied() else {
                break;
            };
            let ticks = self.sent_video * 3000;
            if !self.write(
                MediaKind::Video,
                now,
                MediaTime::from_90khz(ticks),
                frame.to_vec(),
            ) {
                break;
            }
            self.next_frame = (self.next_frame + 1) % self.clip.len().max(1);
            self.sent_video += 1;
        }
    }

    /// Writes one sample on the line of `kind`; `false` when there is no such line.
    fn write(&mut self, kind: MediaKind, now: Instant, time: MediaTime, data: Vec<u8>) -> bool {
        let Some(mid) = self
            .kinds
            .iter()
            .find(|(_, k)| **k == kind)
            .map(|(m, _)| *m)
        else {
            return false;
        };
        let Some(writer) = self.rtc.writer(mid) else {
            return false;
        };
        let wanted = if kind == MediaKind::Audio {
            Codec::Opus
        } else {
            Codec::Vp8
        };
        let Some(pt) = writer
            .payload_params()
            .find(|p| p.spec().codec == wanted)
            .map(|p| p.pt())
        else {
            return false;
        };
        if writer.write(pt, now, time, data).is_ok() {
            self.update(|r| r.samples_sent += 1);
        }
        true
    }
}

fn codec_name(codec: Codec) -> String {
    match codec {
        Codec::Opus => "opus".to_owned(),
        Codec::Vp8 => "VP8".to_owned(),
        other => format!("{other:?}"),
    }
}
