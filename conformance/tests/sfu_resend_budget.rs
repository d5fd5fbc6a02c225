//! A subscriber's resends are capped (fixtures/sfu/CLARIFICATIONS.md, S8 limits): one that
//! loses half its video asks for its lost packets again. Under a cap of 4 a second it gets no
//! more than the cap allows (its burst is a second's worth); under the default cap it gets
//! more than that, so the cap is what held the first one back.

#[path = "support/protoo.rs"]
mod protoo;

use conformance::client::media::{MediaPeer, Tracks};
use conformance::client::Transcript;
use protoo::{joined, publish, subscribe, WAIT};
use reference_server::media::MediaOptions;
use reference_server::server::SfuSetup;
use std::time::{Duration, Instant};

/// Every second VP8 packet is lost before the subscriber's str0m sees it, so it NACKs it.
const LOSE_EVERY: u64 = 2;
/// How long the subscriber goes on losing once resends have begun.
const RUN: Duration = Duration::from_secs(4);
/// The low cap, packets a second; its burst is as much.
const LOW_CAP: u32 = 4;

/// What a cap of [`LOW_CAP`] allows over `elapsed`: a full burst, then the rate.
fn low_cap_allows(elapsed: Duration) -> f64 {
    f64::from(LOW_CAP) * (1.0 + elapsed.as_secs_f64())
}

/// Packets the SFU of `setup` resent to a lossy subscriber, and how long since it subscribed.
async fn resent_to_a_lossy_subscriber(setup: SfuSetup) -> (u64, Duration) {
    let sfu = protoo::sfu(setup).await;
    let transcript = Transcript::default();
    let mut alice = joined(&sfu, "alice", "budget", &transcript).await;
    let (_publisher, published) = publish(&mut alice, "budget", Tracks::AUDIO_VIDEO).await;
    let mut bob = joined(&sfu, "bob", "budget", &transcript).await;
    let lossy = MediaPeer::lossy_subscriber(Tracks::AUDIO_VIDEO, LOSE_EVERY)
        .await
        .expect("a subscriber");
    // The subscriber's allowance starts when it subscribes, so the time is taken before.
    let subscribed = Instant::now();
    subscribe(&mut bob, 2, "budget", &published, &lossy).await;
    lossy
        .wait_for(WAIT, |r| r.retransmissions_received > 0)
        .await
        .unwrap_or_else(|r| panic!("no resend: {} VP8 packets dropped", r.video_dropped));
    tokio::time::sleep(RUN).await;
    let stats = sfu.app().media.stats().await.expect("the media loop runs");
    let elapsed = subscribed.elapsed();
    sfu.stop().await;
    (stats.packets_resent, elapsed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_gets_no_more_resends_than_its_cap() {
    let capped = SfuSetup {
        media: MediaOptions {
            resends_per_second: LOW_CAP,
            ..MediaOptions::default()
        },
        ..SfuSetup::default()
    };
    let (resent, elapsed) = resent_to_a_lossy_subscriber(capped).await;
    let allowed = low_cap_allows(elapsed);
    assert!(
        resent as f64 <= allowed,
        "{resent} packets resent in {elapsed:?}; the cap allows {allowed:.0}"
    );

    let (uncapped, elapsed) = resent_to_a_lossy_subscriber(SfuSetup::default()).await;
    let low_cap_allows = low_cap_allows(elapsed);
    assert!(
        uncapped as f64 > low_cap_allows,
        "under the default cap {uncapped} packets were resent in {elapsed:?}, no more than the low cap allows ({low_cap_allows:.0}): the test cannot tell the cap at work"
    );
}
