//! The SFU's forwarding path, sans IO: one Opus packet or one VP8 frame (one packet) from a
//! publisher through `reference_server::media::Sfu` to N subscribers, SRTP both ways included.
//! Peers are str0m `Rtc`s wired to the SFU in memory (no sockets), connected before the
//! measurement.
//!
//! `cargo bench -p load --bench sfu_forward`: Opus sealed by the SFU (in one shard and in
//! three) and through str0m; VP8 sealed and through str0m.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use std::time::Instant;
use str0m::media::{MediaKind, Mid};

#[path = "support/in_memory_sfu.rs"]
mod in_memory_sfu;
use in_memory_sfu::{connected, pump, write_sample, Client, ForwardPath, InMemorySfu};

/// The publisher (client 0) writes one packet of `kind`; the SFU's datagrams are counted, and
/// dropped rather than delivered, so that only the publisher and the SFU are timed.
fn write_and_pump(
    sfu: &mut InMemorySfu,
    clients: &mut [Client],
    (kind, mid): (MediaKind, Mid),
    packet: &[u8],
    sequence: u64,
) -> usize {
    let now = Instant::now();
    write_sample(&mut clients[0], (kind, mid), packet, sequence, now);
    pump(sfu, &mut clients[..1], now)
}

fn forward(c: &mut Criterion) {
    // Sealed by the SFU (the default), then through each subscriber's str0m `Rtc` (S8).
    for (kind, path, name) in [
        (
            MediaKind::Audio,
            ForwardPath::Sealed,
            "sfu_forward_opus_packet",
        ),
        // The same with three fanout shards run in line: what handing work to them costs.
        (
            MediaKind::Audio,
            ForwardPath::SealedInShards,
            "sfu_forward_opus_packet_in_shards",
        ),
        (
            MediaKind::Audio,
            ForwardPath::Str0m,
            "sfu_forward_opus_packet_via_str0m",
        ),
        (
            MediaKind::Video,
            ForwardPath::Sealed,
            "sfu_forward_vp8_packet",
        ),
        (
            MediaKind::Video,
            ForwardPath::Str0m,
            "sfu_forward_vp8_packet_via_str0m",
        ),
    ] {
        forward_group(c, kind, path, name);
    }
}

/// An 81-byte Opus packet, or a 1,000-byte VP8 delta frame (one packet).
fn payload(kind: MediaKind) -> Vec<u8> {
    let (first, len) = match kind {
        MediaKind::Audio => (0xFC, 80),
        MediaKind::Video => (0x11, 1_000),
    };
    std::iter::once(first)
        .chain((0..len).map(|i| i as u8))
        .collect()
}

fn forward_group(c: &mut Criterion, kind: MediaKind, path: ForwardPath, name: &str) {
    let mut group = c.benchmark_group(name);
    for subscribers in [1_usize, 10, 100] {
        let (mut sfu, mut clients, mid) = connected(kind, path, subscribers);
        let packet = payload(kind);
        let mid = (kind, mid);
        let mut sequence = 0_u64;
        // The path must forward before it is timed: one packet reaches every subscriber.
        let forwarded = write_and_pump(&mut sfu, &mut clients, mid, &packet, 0);
        assert!(
            forwarded >= subscribers,
            "{forwarded} datagrams for {subscribers} subscribers"
        );
        assert_eq!(
            sfu.routes_in_other_shards() > 0,
            path == ForwardPath::SealedInShards,
            "{path:?}: routes in other shards"
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
