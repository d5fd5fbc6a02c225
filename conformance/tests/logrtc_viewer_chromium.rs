//! The viewer page in a real headless Chromium (Debian's chromium + chromium-driver, over
//! WebDriver): it lists the reference producer, connects to it by WebRTC, shows its entries
//! with fields and spans, filters them, pauses; and it passes the consumer probe.
//! A screenshot is saved under target/tmp/artifacts/.

use std::time::Duration;

use conformance::client::browser::{Browser, BrowserPrograms};
use conformance::probes::logrtc::{run_probe_on, ProbeConfig, Role, PROBE_PRODUCER_ID};
use conformance::RunOptions;
use fantoccini::{Client, Locator};
use logrtc_producer::{Level, LogEntry, Producer, ProducerConfig, SpanRef};
use reference_server::externals::skip_or_fail;
use reference_server::protocol::logrtc::SessionConfig;
use reference_server::server::{start_logrtc, RunningLogrtc};
use serde_json::Value;
use tokio::net::TcpListener;

const PRODUCER_ID: &str = "chromium-demo";
const WAIT: Duration = Duration::from_secs(20);

/// One browser at a time: two Chromiums on two cores starve each other's WebRTC timers.
static ONE_BROWSER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn browser() -> Option<Browser> {
    match BrowserPrograms::find() {
        Ok(programs) => Some(Browser::start(&programs).await.expect("start chromium")),
        Err(missing) => {
            skip_or_fail(&format!("the Chromium viewer tests need {missing}"));
            None
        }
    }
}

async fn server() -> RunningLogrtc {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    start_logrtc(listener, SessionConfig::default())
        .await
        .expect("start")
}

/// The reference producer, writing three kinds of entries every 20 ms.
fn producer(url: String) -> (Producer, tokio::task::JoinHandle<()>) {
    let mut config = ProducerConfig::new(url, PRODUCER_ID);
    config.max_level = Level::Debug;
    config.metadata = serde_json::json!({"system_name": "Chromium demo shop", "version": "1.2.3"});
    let producer = Producer::start(config);
    let handle = producer.handle();
    let writer = tokio::spawn(async move {
        for n in 1u64..=100_000 {
            let mut order = LogEntry::now(Level::Info, "shop::orders", format!("order {n} placed"))
                .with_field("order_id", n)
                .with_field("user_id", "u-42");
            order.span = Some(SpanRef {
                id: format!("span-{n}"),
                trace_id: Some("trace-7".into()),
                parent_id: None,
                name: None,
            });
            handle.log(order);
            handle.log(
                LogEntry::now(Level::Warn, "ops::disk", "disk 91% full")
                    .with_field("mount", "/var"),
            );
            handle.log(LogEntry::now(Level::Debug, "shop::cache", "cache miss"));
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    (producer, writer)
}

async fn run_js(client: &Client, script: &str) -> Value {
    client
        .execute(script, Vec::new())
        .await
        .expect("script runs")
}

/// The visible entries as `[level, target, text]`.
async fn visible(client: &Client) -> Vec<(String, String, String)> {
    let rows = run_js(
        client,
        "return [...document.querySelectorAll('#log .entry:not(.hidden)')]\
           .map(e => [e.dataset.level, e.dataset.target, e.textContent]);",
    )
    .await;
    rows.as_array()
        .into_iter()
        .flatten()
        .map(|row| {
            (
                row[0].as_str().unwrap_or_default().into(),
                row[1].as_str().unwrap_or_default().into(),
                row[2].as_str().unwrap_or_default().into(),
            )
        })
        .collect()
}

/// Polls until `condition` holds for the visible entries, or fails with what was seen.
async fn until_visible(
    client: &Client,
    what: &str,
    condition: impl Fn(&[(String, String, String)]) -> bool,
) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let rows = visible(client).await;
        if condition(&rows) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: the page shows {:?}",
            rows.iter().rev().take(5).collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn text_of(client: &Client, css: &str) -> String {
    client
        .find(Locator::Css(css))
        .await
        .expect(css)
        .text()
        .await
        .expect("text")
}

/// Polls until the text of `css` satisfies `condition`, or fails with the last text seen.
async fn until_text(client: &Client, css: &str, what: &str, condition: impl Fn(&str) -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let text = text_of(client, css).await;
        if condition(&text) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: {css} shows {text:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn click(client: &Client, css: &str) {
    client
        .find(Locator::Css(css))
        .await
        .expect(css)
        .click()
        .await
        .expect("click");
}

async fn choose_producer(client: &Client, id: &str) {
    let css = format!("#producers li[data-id='{id}']");
    client
        .wait()
        .at_most(WAIT)
        .for_element(Locator::Css(&css))
        .await
        .expect("the producer is listed")
        .click()
        .await
        .expect("click");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_viewer_shows_filters_and_pauses_a_producers_live_logs() {
    let _turn = ONE_BROWSER.lock().await;
    let Some(browser) = browser().await else {
        return;
    };
    let server = server().await;
    let (producer, writer) = producer(server.ws_url());
    let client = &browser.client;
    client
        .goto(&server.viewer_url())
        .await
        .expect("open the viewer");
    choose_producer(client, PRODUCER_ID).await;

    until_visible(client, "an order entry with its fields and span", |rows| {
        rows.iter().any(|(level, target, text)| {
            level == "INFO"
                && target == "shop::orders"
                && text.contains("placed")
                && text.contains("order_id=")
                && text.contains("trace_id=trace-7")
        })
    })
    .await;
    assert_eq!(text_of(client, "#signaling-state").await, "open");
    assert_eq!(text_of(client, "#peer-state").await, "connected");
    assert_eq!(text_of(client, "#channel-state").await, "open");
    // The rate is redrawn every 250 ms, so the first entries can be on screen before it is.
    until_text(client, "#rate", "a positive lines/s", |rate| {
        rate.parse::<u64>().is_ok_and(|rate| rate > 0)
    })
    .await;

    // Level: WARN only.
    click(client, "input[name=level][value=INFO]").await;
    click(client, "input[name=level][value=DEBUG]").await;
    until_visible(client, "WARN entries only", |rows| {
        !rows.is_empty() && rows.iter().all(|(level, _, _)| level == "WARN")
    })
    .await;
    click(client, "input[name=level][value=INFO]").await;
    click(client, "input[name=level][value=DEBUG]").await;

    // Target, then text.
    let target = client
        .find(Locator::Css("#filter-target"))
        .await
        .expect("target filter");
    target.send_keys("shop::orders").await.expect("type");
    until_visible(client, "shop::orders entries only", |rows| {
        !rows.is_empty() && rows.iter().all(|(_, t, _)| t == "shop::orders")
    })
    .await;
    target.clear().await.expect("clear");
    run_js(
        client,
        "document.getElementById('filter-target').dispatchEvent(new Event('input')); return null;",
    )
    .await;
    let text = client
        .find(Locator::Css("#filter-text"))
        .await
        .expect("text filter");
    text.send_keys("disk 91%").await.expect("type");
    until_visible(client, "disk entries only", |rows| {
        !rows.is_empty() && rows.iter().all(|(_, _, t)| t.contains("disk 91%"))
    })
    .await;
    browser
        .screenshot(&artifact("logrtc-viewer.png"))
        .await
        .expect("screenshot");
    text.clear().await.expect("clear");
    run_js(
        client,
        "document.getElementById('filter-text').dispatchEvent(new Event('input')); return null;",
    )
    .await;

    // Pause holds entries back; resume shows them.
    click(client, "#pause").await;
    let paused_rows = run_js(
        client,
        "return document.querySelectorAll('#log .entry').length;",
    )
    .await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(
        run_js(
            client,
            "return document.querySelectorAll('#log .entry').length;"
        )
        .await,
        paused_rows
    );
    let held = text_of(client, "#paused-count").await;
    assert!(
        held.ends_with("held") && !held.starts_with('0'),
        "paused count {held:?}"
    );
    click(client, "#pause").await;
    let resumed = run_js(
        client,
        "return document.querySelectorAll('#log .entry').length;",
    )
    .await;
    assert_ne!(resumed, paused_rows, "resume shows the held entries");

    writer.abort();
    browser.close().await;
    producer.shutdown().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_viewer_passes_the_consumer_probe() {
    let _turn = ONE_BROWSER.lock().await;
    let Some(browser) = browser().await else {
        return;
    };
    let server = server().await;
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let signaling = format!("ws://{}/signaling", listener.local_addr().expect("addr"));
    let config = ProbeConfig {
        listen: String::new(),
        command: Vec::new(),
        wait: WAIT,
        options: RunOptions::default(),
    };
    let probe = tokio::spawn(async move { run_probe_on(listener, &config, Role::Consumer).await });
    let client = &browser.client;
    client
        .goto(&format!("{}?signaling={signaling}", server.viewer_url()))
        .await
        .expect("open the viewer");
    choose_producer(client, PROBE_PRODUCER_ID).await;
    let report = probe.await.expect("probe task").expect("probe");
    browser
        .screenshot(&artifact("logrtc-viewer-probe.png"))
        .await
        .expect("screenshot");
    let shown = run_js(
        client,
        "return document.querySelectorAll('#log .entry').length;",
    )
    .await;
    browser.close().await;
    server.stop().await;
    let not_passing = report.not_passing();
    assert!(not_passing.is_empty(), "{not_passing:#?}");
    assert_eq!(
        shown,
        Value::from(conformance::probes::logrtc::ENTRIES_TO_CONSUMER),
        "every probe entry is shown"
    );
}

fn artifact(name: &str) -> std::path::PathBuf {
    let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("artifacts")
        .join(name);
    eprintln!("screenshot: {}", path.display());
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_dropped_without_close_leaves_no_chromium_running() {
    let _turn = ONE_BROWSER.lock().await;
    let Some(browser) = browser().await else {
        return;
    };
    let group = browser.driver_pid().expect("chromedriver's process id");
    let running = live_members_of_group(group);
    assert!(
        running.iter().any(|name| name.contains("chrom")),
        "no Chromium in chromedriver's process group {group}: {running:?}"
    );
    // As a test that panics drops it: no close().
    drop(browser);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let mut left = live_members_of_group(group);
    while !left.is_empty() && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        left = live_members_of_group(group);
    }
    assert!(left.is_empty(), "still running after the drop: {left:?}");
}

/// The names of the processes in process group `group` that are not zombies (a zombie has
/// ended; only its parent's wait is missing).
fn live_members_of_group(group: u32) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|entry| std::fs::read_to_string(entry.path().join("stat")).ok())
        .filter_map(|stat| {
            // pid (comm) state ppid pgrp ...
            let (head, rest) = stat.rsplit_once(')')?;
            let name = head.split_once('(')?.1.to_owned();
            let fields: Vec<&str> = rest.split_whitespace().collect();
            let (state, pgrp) = (*fields.first()?, fields.get(2)?.parse::<u32>().ok()?);
            (pgrp == group && state != "Z").then_some(name)
        })
        .collect()
}
