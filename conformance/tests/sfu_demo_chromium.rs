//! The SFU demo page in two real headless Chromiums (Debian's chromium + chromium-driver, over
//! WebDriver, with fake camera and microphone): each joins the same room, publishes, and
//! subscribes to the other; each must decode the other's video (framesDecoded, from getStats)
//! and receive its audio (packetsReceived, which counts only packets that SRTP let through; the
//! SFU seals forwarded Opus itself, CLARIFICATIONS S8).
//! Screenshots are saved under target/tmp/artifacts/.

use std::time::{Duration, Instant};

use conformance::client::browser::{Browser, BrowserPrograms};
use reference_server::externals::skip_or_fail;
use reference_server::server::{start_sfu, RunningSfu, SfuSetup};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(60);
const ROOM: &str = "chromium-room";

async fn server() -> RunningSfu {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let setup = SfuSetup {
        media_bind: "127.0.0.1:0".parse().expect("an address"),
        ..SfuSetup::default()
    };
    start_sfu(listener, setup).await.expect("the SFU starts")
}

async fn run_js(browser: &Browser, script: &str) -> Value {
    browser
        .client
        .execute(script, Vec::new())
        .await
        .expect("script runs")
}

/// Opens the page as `peer` and waits until it publishes.
async fn open(browser: &Browser, sfu: &RunningSfu, peer: &str) {
    let url = format!("{}?room={ROOM}&peer={peer}", sfu.page_url());
    browser.client.goto(&url).await.expect("the page loads");
    let deadline = Instant::now() + WAIT;
    loop {
        let state = run_js(browser, "return window.sfuDemo.state;").await;
        if state == "live" {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{peer}'s page is {state}, not live"
        );
        assert!(
            !state.as_str().is_some_and(|s| s.starts_with("error")),
            "{peer}: {state}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Video frames `browser` decoded from each stream it subscribes to.
async fn frames_decoded(browser: &Browser) -> Vec<u64> {
    per_stream(browser, "return window.sfuDemo.framesDecoded();").await
}

/// Audio packets `browser` received from each stream it subscribes to.
async fn audio_packets(browser: &Browser) -> Vec<u64> {
    per_stream(browser, "return window.sfuDemo.audioPacketsReceived();").await
}

/// A page function's figure for each subscribed stream.
async fn per_stream(browser: &Browser, script: &str) -> Vec<u64> {
    let by_mid = run_js(browser, script).await;
    by_mid
        .as_object()
        .map(|by_mid| by_mid.values().filter_map(Value::as_u64).collect())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_chromiums_each_decode_the_others_video_through_the_sfu() {
    let programs = match BrowserPrograms::find() {
        Ok(programs) => programs,
        Err(missing) => return skip_or_fail(&format!("the SFU demo test needs {missing}")),
    };
    let sfu = server().await;
    let alice = Browser::start(&programs).await.expect("chromium starts");
    open(&alice, &sfu, "alice").await;
    let bob = Browser::start(&programs).await.expect("chromium starts");
    open(&bob, &sfu, "bob").await;
    let deadline = Instant::now() + WAIT;
    // Opus at 50 packets a second: a second's worth each way, besides ten video frames.
    let ((seen_by_alice, heard_by_alice), (seen_by_bob, heard_by_bob)) = loop {
        let alice_got = (frames_decoded(&alice).await, audio_packets(&alice).await);
        let bob_got = (frames_decoded(&bob).await, audio_packets(&bob).await);
        let enough = |(frames, packets): &(Vec<u64>, Vec<u64>)| {
            frames.iter().any(|f| *f > 10) && packets.iter().any(|p| *p > 50)
        };
        if (enough(&alice_got) && enough(&bob_got)) || Instant::now() >= deadline {
            break (alice_got, bob_got);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let artifacts = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("artifacts");
    for (browser, name) in [(&alice, "sfu-demo-alice.png"), (&bob, "sfu-demo-bob.png")] {
        if let Err(error) = browser.screenshot(&artifacts.join(name)).await {
            eprintln!("no screenshot {name}: {error}");
        }
    }
    let stats = sfu.app().media.stats().await.expect("media stats");
    eprintln!("alice decoded {seen_by_alice:?} frames, bob {seen_by_bob:?}; audio packets: alice {heard_by_alice:?}, bob {heard_by_bob:?}; SFU {stats:?}");
    assert!(
        seen_by_alice.iter().any(|f| *f > 10),
        "alice decoded {seen_by_alice:?} video frames from bob"
    );
    assert!(
        seen_by_bob.iter().any(|f| *f > 10),
        "bob decoded {seen_by_bob:?} video frames from alice"
    );
    assert!(
        heard_by_alice.iter().any(|p| *p > 50) && heard_by_bob.iter().any(|p| *p > 50),
        "audio packets received: alice {heard_by_alice:?}, bob {heard_by_bob:?}"
    );
    assert!(stats.packets_sealed > 100, "{stats:?}");
    alice.close().await;
    bob.close().await;
    sfu.stop().await;
}
