//! The SFU's forwarding path, sans IO: one Opus packet from a publisher through
//! `reference_server::media::Sfu` to N subscribers, SRTP both ways included. Peers are str0m
//! `Rtc`s wired to the SFU in memory (no sockets), connected before the measurement.
//!
//! `cargo bench -p load --bench sfu_forward`

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use reference_server::faults::Faults;
use reference_server::media::{Sfu, SfuConfig};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use str0m::change::SdpAnswer;
use str0m::format::Codec;
use str0m::media::{Direction, Frequency, MediaKind, MediaTime, Mid};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, Input, Output, Rtc};

const SFU_ADDR: &str = "127.0.0.1:9000";

struct Client {
    rtc: Rtc,
    addr: SocketAddr,
    connected: bool,
}

fn client(
    port: u16,
    direction: Direction,
) -> (Client, String, Mid, str0m::change::SdpPendingOffer) {
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("an address");
    let mut rtc = Rtc::builder()
        .clear_codecs()
        .enable_opus(true, false)
        .build(Instant::now());
    rtc.add_local_candidate(Candidate::host(addr, "udp").expect("a candidate"));
    let mut change = rtc.sdp_api();
    let mid = change.add_media(MediaKind::Audio, direction, None, None, None);
    let (offer, pending) = change.apply().expect("an offer");
    let client = Client {
        rtc,
        addr,
        connected: false,
    };
    (client, offer.to_sdp_string(), mid, pending)
}

fn answer(client: &mut Client, pending: str0m::change::SdpPendingOffer, sdp: &str) {
    let answer = SdpAnswer::from_sdp_string(sdp).expect("an answer");
    client
        .rtc
        .sdp_api()
        .accept_answer(pending, answer)
        .expect("accepted");
}

/// Moves every datagram between the clients and the SFU until nothing is left to send.
/// Returns how many datagrams the SFU sent.
fn pump(sfu: &mut Sfu, clients: &mut [Client], now: Instant) -> usize {
    let sfu_addr: SocketAddr = SFU_ADDR.parse().expect("an address");
    let mut sent_by_sfu = 0;
    loop {
        let mut moved = false;
        for client in clients.iter_mut() {
            let _ = client.rtc.handle_input(Input::Timeout(now));
            while let Ok(output) = client.rtc.poll_output() {
                match output {
                    Output::Transmit(t) => {
                        sfu.handle_datagram(now, client.addr, &t.contents);
                        moved = true;
                    }
                    Output::Event(Event::Connected) => client.connected = true,
                    Output::Event(_) => {}
                    Output::Timeout(_) => break,
                }
            }
        }
        sfu.handle_timeout(now);
        while let Some((to, datagram)) = sfu.poll_transmit() {
            sent_by_sfu += 1;
            moved = true;
            let Some(client) = clients.iter_mut().find(|c| c.addr == to) else {
                continue;
            };
            let Ok(contents) = datagram.as_slice().try_into() else {
                continue;
            };
            let receive = Receive {
                proto: Protocol::Udp,
                source: sfu_addr,
                destination: to,
                contents,
            };
            let _ = client.rtc.handle_input(Input::Receive(now, receive));
        }
        if !moved {
            return sent_by_sfu;
        }
    }
}

/// An SFU with one connected publisher (client 0) and `subscribers` connected subscribers.
fn connected(subscribers: usize) -> (Sfu, Vec<Client>, Mid) {
    let config = SfuConfig {
        local_addr: SFU_ADDR.parse().expect("an address"),
        faults: Faults::none(),
        record_dir: None,
    };
    let mut sfu = Sfu::new(config);
    let now = Instant::now();
    let (mut publisher, offer, mid, pending) = client(10_000, Direction::SendOnly);
    let sdp = sfu.publish(now, "bench#000001", &offer).expect("published");
    answer(&mut publisher, pending, &sdp);
    let mut clients = vec![publisher];
    for n in 0..subscribers {
        let (mut subscriber, offer, _, pending) = client(10_001 + n as u16, Direction::RecvOnly);
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

/// The publisher (client 0) writes one Opus packet; the SFU's datagrams are counted, and
/// dropped rather than delivered, so that only the publisher and the SFU are timed.
fn write_and_pump(
    sfu: &mut Sfu,
    clients: &mut [Client],
    mid: Mid,
    packet: &[u8],
    sequence: u64,
) -> usize {
    let now = Instant::now();
    let writer = clients[0].rtc.writer(mid).expect("a writer");
    let pt = writer
        .payload_params()
        .find(|p| p.spec().codec == Codec::Opus)
        .map(|p| p.pt())
        .expect("opus");
    let time = MediaTime::new(sequence * 960, Frequency::FORTY_EIGHT_KHZ);
    writer
        .write(pt, now, time, packet.to_vec())
        .expect("written");
    pump(sfu, &mut clients[..1], now)
}

fn forward(c: &mut Criterion) {
    let mut group = c.benchmark_group("sfu_forward_opus_packet");
    for subscribers in [1_usize, 10, 100] {
        let (mut sfu, mut clients, mid) = connected(subscribers);
        let packet: Vec<u8> = std::iter::once(0xFC)
            .chain((0..80).map(|i| i as u8))
            .collect();
        let mut sequence = 0_u64;
        // The path must forward before it is timed: one packet reaches every subscriber.
        let forwarded = write_and_pump(&mut sfu, &mut clients, mid, &packet, 0);
        assert!(
            forwarded >= subscribers,
            "{forwarded} datagrams for {subscribers} subscribers"
        );
        group.throughput(Throughput::Elements(subscribers as u64));
        group.bench_with_input(
            BenchmarkId::from_parameter(subscribers),
            &subscribers,
            |b, _| {
                b.iter(|| {
                    sequence += 1;
                    write_and_pump(&mut sfu, &mut clients, mid, &packet, sequence)
                });
            },
        );
    }
    group.finish();
}

criterion_group!(benches, forward);
criterion_main!(benches);
