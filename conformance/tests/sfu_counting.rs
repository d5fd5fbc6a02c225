//! The load generator's counting subscribers (`load sfu --light`): once connected, their
//! sockets are read by the counting pool, which counts the RTP the SFU forwards without
//! decrypting it.

#![cfg(target_os = "linux")]

#[path = "support/protoo.rs"]
mod protoo;

use conformance::client::counting;
use conformance::client::media::{MediaPeer, Tracks};
use conformance::client::Transcript;
use protoo::{joined, publish_opus, subscribe, WAIT};
use reference_server::server::SfuSetup;

/// Three seconds of a publisher's Opus.
const DATAGRAMS: u64 = 150;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_counting_subscriber_counts_forwarded_rtp_in_the_pool_without_decrypting_it() {
    let sfu = protoo::sfu(SfuSetup::default()).await;
    let transcript = Transcript::default();
    let mut alice = joined(&sfu, "alice", "counting", &transcript).await;
    let (publisher, published) = publish_opus(&mut alice, "counting").await;

    let mut bob = joined(&sfu, "bob", "counting", &transcript).await;
    let counted_before = counting::datagrams_counted();
    let subscriber = MediaPeer::counting_subscriber(Tracks::AUDIO_VIDEO)
        .await
        .expect("a subscriber");
    subscribe(&mut bob, 2, "counting", &published, &subscriber).await;

    let report = subscriber
        .wait_for(WAIT, |r| r.rtp_datagrams >= DATAGRAMS)
        .await
        .unwrap_or_else(|r| panic!("{} RTP datagrams counted", r.rtp_datagrams));
    assert_eq!(report.audio_received, 0, "a counting subscriber decrypted");
    let by_pool = counting::datagrams_counted() - counted_before;
    // The task counts what arrives before its socket is handed over: a few datagrams at most.
    assert!(
        by_pool + 10 >= report.rtp_datagrams,
        "the pool counted {by_pool} of {} datagrams",
        report.rtp_datagrams
    );
    let sent = publisher.report().rtp_datagrams_sent;
    assert!(
        report.rtp_datagrams <= sent,
        "{} datagrams counted, {sent} sent",
        report.rtp_datagrams
    );
    sfu.stop().await;
}
