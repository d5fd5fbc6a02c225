//! The SFU's forwarding core in memory (str0m peers, no sockets): a publisher's packet goes
//! out to every subscriber from the call that received it, without waiting for a timer turn.

#[path = "../benches/support/in_memory_sfu.rs"]
mod in_memory_sfu;

use conformance::client::media::is_rtp;
use in_memory_sfu::{connected, write_opus};
use std::time::Instant;
use str0m::{Output, Rtc};

const SUBSCRIBERS: usize = 3;

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
    let (mut sfu, mut clients, mid) = connected(SUBSCRIBERS);
    let subscriber_addrs: Vec<_> = clients[1..].iter().map(|c| c.addr).collect();
    while sfu.poll_transmit().is_some() {}

    let now = Instant::now();
    let packet: Vec<u8> = std::iter::once(0xFC).chain(0..80).collect();
    write_opus(&mut clients[0], mid, &packet, 1, now);
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
            "RTP toward {addr}: {rtp_to:?}"
        );
    }
}
