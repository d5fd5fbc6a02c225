//! The SFU's forwarding core in memory (str0m peers, no sockets): a publisher's packet goes
//! out to every subscriber from the call that received it, without waiting for a timer turn;
//! forwarded packets keep their payload, order and timing; only publishers are asked for
//! transport-wide congestion control. Opus is checked both ways the SFU can forward it: sealed
//! by the SFU with each subscriber's SRTP key, and written through str0m (CLARIFICATIONS S8);
//! the subscribers are str0m peers, which decrypt and check what arrives. VP8 is sealed the
//! same way, and a subscriber that loses a packet gets it again when it NACKs. Sealed media
//! follows a subscriber whose address changes (a NAT rebinding) in whichever shard it is.

#[path = "../benches/support/in_memory_sfu.rs"]
mod in_memory_sfu;

use conformance::client::media::is_rtp;
use in_memory_sfu::{client_of, connected, pump, pump_losing, sfu, write_sample, ForwardPath};
use std::time::{Duration, Instant};
use str0m::media::{Direction, MediaKind, MediaTime};
use str0m::{Output, Rtc};

const SUBSCRIBERS: usize = 3;
const EVERY_PATH: [ForwardPath; 3] = [
    ForwardPath::Sealed,
    ForwardPath::SealedInShards,
    ForwardPath::Str0m,
];

/// What the peer wants sent now.
fn datagrams_of(rtc: &mut Rtc) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    while let Ok(output) = rtc.poll_output() {
        match output {
            Output::Transmit(t) => out.push(t.contents.into()),
            Output::Timeout(_) => break,
            Output::Event(_) => {}
        }
    }
    out
}

#[test]
fn a_published_packet_is_sent_to_every_subscriber_from_the_call_that_received_it() {
    for path in EVERY_PATH {
        sent_from_the_call_that_received_it(path);
    }
}

fn sent_from_the_call_that_received_it(path: ForwardPath) {
    let (mut sfu, mut clients, mid) = connected(MediaKind::Audio, path, SUBSCRIBERS);
    let subscriber_addrs: Vec<_> = clients[1..].iter().map(|c| c.addr).collect();
    while sfu.poll_transmit().is_some() {}

    let now = Instant::now();
    let packet: Vec<u8> = std::iter::once(0xFC).chain(0..80).collect();
    write_sample(&mut clients[0], (MediaKind::Audio, mid), &packet, 1, now);
    let publisher = &mut clients[0];
    let _ = publisher.rtc.handle_input(str0m::Input::Timeout(now));
    let sent = datagrams_of(&mut publisher.rtc);
    assert!(sent.iter().any(|d| is_rtp(d)), "the publisher sent no RTP");
    for datagram in &sent {
        sfu.handle_datagram(now, publisher.addr, datagram);
    }

    // No `sfu.handle_timeout`: what reached the subscribers left in `handle_datagram`.
    let mut rtp_to = Vec::new();
    while let Some((to, datagram)) = sfu.poll_transmit() {
        if is_rtp(&datagram) {
            rtp_to.push(to);
        }
    }
    for addr in &subscriber_addrs {
        assert_eq!(
            rtp_to.iter().filter(|to| *to == addr).count(),
            1,
            "{path:?}: RTP toward {addr}: {rtp_to:?}"
        );
    }
}

#[test]
fn subscribers_get_each_payload_unchanged_in_order_and_in_time() {
    for path in EVERY_PATH {
        payloads_unchanged_in_order_and_in_time(path);
    }
}

fn payloads_unchanged_in_order_and_in_time(path: ForwardPath) {
    let (mut sfu, mut clients, mid) = connected(MediaKind::Audio, path, SUBSCRIBERS);
    let payloads: Vec<Vec<u8>> = (0..8_u8)
        .map(|n| {
            std::iter::once(0xFC)
                .chain((0..60).map(|i| i ^ n))
                .collect()
        })
        .collect();
    for (n, payload) in payloads.iter().enumerate() {
        let now = Instant::now();
        write_sample(
            &mut clients[0],
            (MediaKind::Audio, mid),
            payload,
            n as u64 + 1,
            now,
        );
        pump(&mut sfu, &mut clients, now);
    }
    for subscriber in &clients[1..] {
        let received: Vec<&[u8]> = subscriber.received.iter().map(|d| &d.data[..]).collect();
        let sent: Vec<&[u8]> = payloads.iter().map(Vec::as_slice).collect();
        assert_eq!(received, sent, "{path:?}: payloads at {}", subscriber.addr);
        // Renumbered by the SFU, the sequence must still run without a gap...
        let gaps = subscriber.received[1..]
            .iter()
            .filter(|d| !d.contiguous)
            .count();
        assert_eq!(gaps, 0, "gaps at {}", subscriber.addr);
        // ...and the RTP timestamps keep the publisher's 20 ms (960 ticks at 48 kHz) steps.
        let times: Vec<MediaTime> = subscriber.received.iter().map(|d| d.time).collect();
        for pair in times.windows(2) {
            assert_eq!(pair[1].numer() - pair[0].numer(), 960, "{times:?}");
        }
    }
    // Each path was the one taken: every packet to every subscriber sealed by the SFU, or none.
    let sealed = match path {
        ForwardPath::Sealed | ForwardPath::SealedInShards => (payloads.len() * SUBSCRIBERS) as u64,
        ForwardPath::Str0m => 0,
    };
    assert_eq!(sfu.stats().packets_sealed, sealed, "{path:?}");
    // Split three ways by peer key: the subscribers are keys 2, 3 and 4 (the publisher is 1),
    // so shards 2, 0 and 1; two of the three routes live outside the loop's own shard.
    let elsewhere = match path {
        ForwardPath::SealedInShards => 2,
        ForwardPath::Sealed | ForwardPath::Str0m => 0,
    };
    assert_eq!(sfu.routes_in_other_shards(), elsewhere, "{path:?}");
}

#[test]
fn only_publishers_are_offered_transport_wide_congestion_control() {
    const TWCC: &str = "transport-wide-cc-extensions-01";
    let mut sfu = sfu(ForwardPath::Sealed);
    let now = Instant::now();
    let (_, offer, _, _) = client_of(MediaKind::Audio, 10_000, Direction::SendOnly);
    let to_publisher = sfu.publish(now, "twcc#1", &offer).expect("published");
    let (_, offer, _, _) = client_of(MediaKind::Audio, 10_001, Direction::RecvOnly);
    let to_subscriber = sfu
        .subscribe(now, "twcc#S1", "twcc#1", &offer)
        .expect("subscribed");
    assert!(to_publisher.contains(TWCC), "{to_publisher}");
    assert!(!to_subscriber.contains(TWCC), "{to_subscriber}");
}

#[test]
fn a_shard_forgets_the_routes_of_subscribers_that_leave_and_of_a_publication_that_ends() {
    let (mut sfu, mut clients, mid) =
        connected(MediaKind::Audio, ForwardPath::SealedInShards, SUBSCRIBERS);
    let now = Instant::now();
    write_sample(
        &mut clients[0],
        (MediaKind::Audio, mid),
        &[0xFC, 1, 2, 3],
        1,
        now,
    );
    pump(&mut sfu, &mut clients, now);
    let held = sfu.routes_in_other_shards();
    assert!(held > 0, "no route went to another shard");

    // Subscriber keys follow the publisher's (1): 2, 3, 4, in shards 2, 0 and 1.
    sfu.unsubscribe("bench#S00000");
    while sfu.poll_transmit().is_some() {}
    assert_eq!(sfu.routes_in_other_shards(), held - 1);

    sfu.unpublish("bench#000001");
    while sfu.poll_transmit().is_some() {}
    assert_eq!(sfu.routes_in_other_shards(), 0);
    assert_eq!(sfu.stats().subscribers, 0);
}

#[test]
fn sealed_vp8_reaches_every_subscriber_and_a_lost_packet_is_sent_again_when_nacked() {
    let (mut sfu, mut clients, mid) =
        connected(MediaKind::Video, ForwardPath::SealedInShards, SUBSCRIBERS);
    let lossy = clients[1].addr;
    // A keyframe (bit 0 of the first byte clear, RFC 7741 §4.3) and deltas, each cut in three.
    let frames: Vec<Vec<u8>> = (0..6_u8)
        .map(|n| {
            let first = if n == 0 { 0x10 } else { 0x11 };
            std::iter::once(first)
                .chain((0..3_000_u32).map(|i| (i as u8) ^ n))
                .collect()
        })
        .collect();
    // The second RTP packet toward the first subscriber is lost, once.
    let mut rtp_to_lossy = 0;
    let mut lose = |to, datagram: &[u8]| {
        if to != lossy || !is_rtp(datagram) {
            return false;
        }
        rtp_to_lossy += 1;
        rtp_to_lossy == 2
    };
    let start = Instant::now();
    for (n, frame) in frames.iter().enumerate() {
        let now = start + Duration::from_millis(33 * n as u64);
        write_sample(
            &mut clients[0],
            (MediaKind::Video, mid),
            frame,
            n as u64 + 1,
            now,
        );
        pump_losing(&mut sfu, &mut clients, now, &mut lose);
    }
    // Time for the subscriber's NACK and the resend.
    for step in 1..=20 {
        let now = start + Duration::from_millis(33 * frames.len() as u64 + 20 * step);
        pump_losing(&mut sfu, &mut clients, now, &mut lose);
    }
    let stats = sfu.stats();
    assert!(stats.packets_resent >= 1, "nothing was resent: {stats:?}");
    for subscriber in &clients[1..] {
        let received: Vec<&[u8]> = subscriber.received.iter().map(|d| &d.data[..]).collect();
        let sent: Vec<&[u8]> = frames.iter().map(Vec::as_slice).collect();
        assert_eq!(received, sent, "frames at {}", subscriber.addr);
    }
    // All forwarded video was sealed by the SFU: each packet once per subscriber, plus resends.
    assert_eq!(stats.packets_sealed, stats.packets_forwarded, "{stats:?}");
}

#[test]
fn sealed_media_follows_a_subscriber_whose_address_changes() {
    let (mut sfu, mut clients, mid) =
        connected(MediaKind::Audio, ForwardPath::SealedInShards, SUBSCRIBERS);
    let start = Instant::now();
    let mut sequence = 0;
    let mut send = |sfu: &mut _, clients: &mut Vec<_>, at: Duration| {
        sequence += 1;
        let now = start + at;
        write_sample(
            &mut clients[0],
            (MediaKind::Audio, mid),
            &[0xFC, 1, 2, 3],
            sequence,
            now,
        );
        pump(sfu, clients, now);
    };
    send(&mut sfu, &mut clients, Duration::ZERO);
    assert!(
        clients.iter().skip(1).all(|c| c.received.len() == 1),
        "a subscriber got no audio before the move"
    );

    // NAT rebindings: from now on the SFU sees subscribers 1 and 2 (peer keys 2 and 3: shards
    // 2 and 0) at other ports, and what it sends to the old ones is lost. Their consent checks
    // (RFC 7675) come from the new addresses.
    clients[1].seen_as = "127.0.0.1:19998".parse().expect("an address");
    clients[2].seen_as = "127.0.0.1:19999".parse().expect("an address");
    for step in 1..=300_u64 {
        send(&mut sfu, &mut clients, Duration::from_millis(20 * step));
    }
    for moved in &clients[1..3] {
        let after = moved.received.len() - 1;
        assert!(
            after > 100,
            "{after} packets reached the subscriber at its new address {}",
            moved.seen_as
        );
    }
    for other in &clients[3..] {
        assert_eq!(other.received.len(), 301, "at {}", other.addr);
    }
}
