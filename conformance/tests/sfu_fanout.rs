//! The SFU's fanout threads over a real socket: with two of them beside the media loop, the
//! subscribers' sealed audio is split three ways, and every subscriber, whichever thread seals
//! for it, decrypts and decodes the publisher's Opus.

#[path = "support/protoo.rs"]
mod protoo;

use conformance::client::media::{MediaPeer, Tracks};
use conformance::client::Transcript;
use protoo::{joined, publish_opus, subscribe, WAIT};
use reference_server::media::MediaOptions;
use reference_server::server::SfuSetup;

/// Subscribers: with the publisher's peer key first, theirs fall into all three shards.
const SUBSCRIBERS: u64 = 4;
/// One second of a publisher's Opus, decoded.
const SAMPLES: u64 = 50;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_subscriber_gets_the_audio_whichever_fanout_thread_seals_it() {
    let sfu = protoo::sfu(SfuSetup {
        media: MediaOptions {
            fanout_threads: 2,
            ..MediaOptions::default()
        },
        ..SfuSetup::default()
    })
    .await;
    let transcript = Transcript::default();
    let mut alice = joined(&sfu, "alice", "fanout", &transcript).await;
    let (_publisher, published) = publish_opus(&mut alice, "fanout").await;

    let mut bob = joined(&sfu, "bob", "fanout", &transcript).await;
    let mut subscribers = Vec::new();
    for n in 0..SUBSCRIBERS {
        let subscriber = MediaPeer::subscriber(Tracks::AUDIO)
            .await
            .expect("a subscriber");
        subscribe(&mut bob, 2 + n, "fanout", &published, &subscriber).await;
        subscribers.push(subscriber);
    }

    for (n, subscriber) in subscribers.iter().enumerate() {
        subscriber
            .wait_for(WAIT, |r| r.audio_received >= SAMPLES)
            .await
            .unwrap_or_else(|r| panic!("subscriber {n} decoded {} samples", r.audio_received));
    }
    let stats = sfu.app().media.stats().await.expect("the media loop runs");
    assert!(
        stats.packets_sealed >= SUBSCRIBERS * SAMPLES,
        "the SFU sealed {} packets",
        stats.packets_sealed
    );
    assert_eq!(stats.datagrams_dropped, 0, "{stats:?}");
    sfu.stop().await;
}
