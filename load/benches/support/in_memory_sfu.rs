//! An SFU and str0m peers wired together in memory (no sockets): client 0 publishes, the
//! others subscribe, all connected before use. Shared by the `sfu_forward` bench and the
//! `sfu_in_memory` test through `#[path]`.

use reference_server::faults::Faults;
use reference_server::media::{MediaOptions, SealShard, Sfu, SfuConfig, ViaStr0m};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::ops::{Deref, DerefMut};
use std::time::{Duration, Instant};
use str0m::change::SdpAnswer;
use str0m::format::Codec;
use str0m::media::{Direction, Frequency, MediaData, MediaKind, MediaTime, Mid};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, Input, Output, Rtc};

pub const SFU_ADDR: &str = "127.0.0.1:9000";

pub struct Client {
    pub rtc: Rtc,
    /// Its own address, its one candidate.
    pub addr: SocketAddr,
    /// The address the SFU sees its datagrams come from and sends to: its own, unless a NAT
    /// in between has mapped it elsewhere.
    pub seen_as: SocketAddr,
    pub connected: bool,
    /// Media this client received, in order.
    pub received: Vec<MediaData>,
}

/// A str0m peer with one line of `kind` (Opus or VP8) in `direction`, its offer and the
/// offer's line.
pub fn client_of(
    kind: MediaKind,
    port: u16,
    direction: Direction,
) -> (Client, String, Mid, str0m::change::SdpPendingOffer) {
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("an address");
    let mut rtc = Rtc::builder()
        .clear_codecs()
        .enable_opus(true, false)
        .enable_vp8(true)
        .build(Instant::now());
    rtc.add_local_candidate(Candidate::host(addr, "udp").expect("a candidate"));
    let mut change = rtc.sdp_api();
    let mid = change.add_media(kind, direction, None, None, None);
    let (offer, pending) = change.apply().expect("an offer");
    let client = Client {
        rtc,
        addr,
        seen_as: addr,
        connected: false,
        received: Vec::new(),
    };
    (client, offer.to_sdp_string(), mid, pending)
}

pub fn answer(client: &mut Client, pending: str0m::change::SdpPendingOffer, sdp: &str) {
    let answer = SdpAnswer::from_sdp_string(sdp).expect("an answer");
    client
        .rtc
        .sdp_api()
        .accept_answer(pending, answer)
        .expect("accepted");
}

/// The SFU with its fanout shards run in line, as its media loop's threads would run them.
pub struct InMemorySfu {
    core: Sfu,
    /// Shards 1 and on.
    shards: Vec<SealShard>,
    /// What the shards sealed, to go out before the core's own datagrams.
    from_shards: VecDeque<(SocketAddr, Vec<u8>)>,
}

impl InMemorySfu {
    /// The next datagram to send, the shards' first.
    pub fn poll_transmit(&mut self) -> Option<(SocketAddr, Vec<u8>)> {
        while let Some((index, message)) = self.core.poll_fanout() {
            let out = &mut self.from_shards;
            self.shards[index - 1].handle(message, &mut |datagram| out.push_back(datagram));
        }
        self.from_shards
            .pop_front()
            .or_else(|| self.core.poll_transmit())
    }

    /// Routes held by shards 1 and on.
    pub fn routes_in_other_shards(&self) -> usize {
        self.shards.iter().map(SealShard::len).sum()
    }
}

impl Deref for InMemorySfu {
    type Target = Sfu;

    fn deref(&self) -> &Sfu {
        &self.core
    }
}

impl DerefMut for InMemorySfu {
    fn deref_mut(&mut self) -> &mut Sfu {
        &mut self.core
    }
}

/// Moves every datagram between the clients and the SFU until nothing is left to send.
/// Returns how many datagrams the SFU sent.
pub fn pump(sfu: &mut InMemorySfu, clients: &mut [Client], now: Instant) -> usize {
    pump_losing(sfu, clients, now, &mut |_, _| false)
}

/// As [`pump`], but a datagram from the SFU for which `lose(to, datagram)` is true never
/// arrives.
pub fn pump_losing(
    sfu: &mut InMemorySfu,
    clients: &mut [Client],
    now: Instant,
    lose: &mut dyn FnMut(SocketAddr, &[u8]) -> bool,
) -> usize {
    let sfu_addr: SocketAddr = SFU_ADDR.parse().expect("an address");
    let mut sent_by_sfu = 0;
    loop {
        let mut moved = false;
        for client in clients.iter_mut() {
            let _ = client.rtc.handle_input(Input::Timeout(now));
            while let Ok(output) = client.rtc.poll_output() {
                match output {
                    Output::Transmit(t) => {
                        sfu.handle_datagram(now, client.seen_as, &t.contents);
                        moved = true;
                    }
                    Output::Event(Event::Connected) => client.connected = true,
                    Output::Event(Event::MediaData(data)) => client.received.push(data),
                    Output::Event(_) => {}
                    Output::Timeout(_) => break,
                }
            }
        }
        sfu.handle_timeout(now);
        while let Some((to, datagram)) = sfu.poll_transmit() {
            sent_by_sfu += 1;
            moved = true;
            if lose(to, &datagram) {
                continue;
            }
            let Some(client) = clients.iter_mut().find(|c| c.seen_as == to) else {
                continue;
            };
            let Ok(contents) = datagram.as_slice().try_into() else {
                continue;
            };
            let receive = Receive {
                proto: Protocol::Udp,
                source: sfu_addr,
                destination: client.addr,
                contents,
            };
            let _ = client.rtc.handle_input(Input::Receive(now, receive));
        }
        if !moved {
            return sent_by_sfu;
        }
    }
}

/// How the SFU forwards Opus and VP8 (`SfuConfig::via_str0m`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ForwardPath {
    /// Sealed by the SFU with each subscriber's SRTP key (the default).
    Sealed,
    /// Sealed by the SFU, the subscribers split among three fanout shards.
    SealedInShards,
    /// Written through each subscriber's str0m `Rtc`.
    Str0m,
}

/// An SFU with no peers, its socket said to be at [`SFU_ADDR`].
pub fn sfu(path: ForwardPath) -> InMemorySfu {
    let fanout_threads = match path {
        ForwardPath::SealedInShards => 2,
        ForwardPath::Sealed | ForwardPath::Str0m => 0,
    };
    let core = Sfu::new(SfuConfig {
        local_addr: SFU_ADDR.parse().expect("an address"),
        faults: Faults::none(),
        options: MediaOptions {
            via_str0m: ViaStr0m {
                audio: path == ForwardPath::Str0m,
                video: path == ForwardPath::Str0m,
            },
            fanout_threads,
            ..MediaOptions::default()
        },
    });
    let shards = (1..core.fanout_shards())
        .map(|_| core.new_fanout_shard())
        .collect();
    InMemorySfu {
        core,
        shards,
        from_shards: VecDeque::new(),
    }
}

/// An SFU forwarding by `path`, with one connected publisher (client 0) of one `kind` line
/// and `subscribers` connected subscribers.
pub fn connected(
    kind: MediaKind,
    path: ForwardPath,
    subscribers: usize,
) -> (InMemorySfu, Vec<Client>, Mid) {
    let mut sfu = sfu(path);
    let now = Instant::now();
    let (mut publisher, offer, mid, pending) = client_of(kind, 10_000, Direction::SendOnly);
    let sdp = sfu.publish(now, "bench#000001", &offer).expect("published");
    answer(&mut publisher, pending, &sdp);
    let mut clients = vec![publisher];
    for n in 0..subscribers {
        let port = 10_001 + n as u16;
        let (mut subscriber, offer, _, pending) = client_of(kind, port, Direction::RecvOnly);
        let sdp = sfu
            .subscribe(now, &format!("bench#S{n:05}"), "bench#000001", &offer)
            .expect("subscribed");
        answer(&mut subscriber, pending, &sdp);
        clients.push(subscriber);
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while !clients.iter().all(|c| c.connected) && Instant::now() < deadline {
        pump(&mut sfu, &mut clients, Instant::now());
        std::thread::sleep(Duration::from_millis(1));
    }
    assert!(
        clients.iter().all(|c| c.connected),
        "the peers did not connect in memory"
    );
    (sfu, clients, mid)
}

/// The publisher writes sample number `sequence` on its line `mid` of `kind`: a 20 ms Opus
/// packet, or a VP8 frame (30 a second) that str0m cuts into packets.
pub fn write_sample(
    publisher: &mut Client,
    (kind, mid): (MediaKind, Mid),
    sample: &[u8],
    sequence: u64,
    now: Instant,
) {
    let (codec, time) = match kind {
        MediaKind::Audio => (
            Codec::Opus,
            MediaTime::new(sequence * 960, Frequency::FORTY_EIGHT_KHZ),
        ),
        MediaKind::Video => (
            Codec::Vp8,
            MediaTime::new(sequence * 3_000, Frequency::NINETY_KHZ),
        ),
    };
    let writer = publisher.rtc.writer(mid).expect("a writer");
    let pt = writer
        .payload_params()
        .find(|p| p.spec().codec == codec)
        .map(|p| p.pt())
        .unwrap_or_else(|| panic!("no {codec:?} payload type"));
    writer
        .write(pt, now, time, sample.to_vec())
        .expect("written");
}
