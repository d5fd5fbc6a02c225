//! `conformance client --protocol sfu` graded against clients: the reference demo page in a real
//! headless Chromium (fake camera and microphone) passes every case; a careless scripted client
//! fails the cases it breaks and no others it reached.

use conformance::client::browser::{Browser, BrowserPrograms};
use conformance::probes::sfu::{run_probe_on, ProbeConfig};
use conformance::report::Report;
use conformance::RunOptions;
use futures_util::{SinkExt, StreamExt};
use reference_server::externals::skip_or_fail;
use reference_server::server::{start_sfu, SfuSetup};
use serde_json::json;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::Message;

fn config(wait: Duration) -> ProbeConfig {
    ProbeConfig {
        listen: String::new(),
        command: Vec::new(),
        wait,
        options: RunOptions::default(),
    }
}

fn failing(report: &Report) -> Vec<String> {
    let mut ids: Vec<String> = report
        .failing_ids()
        .into_iter()
        .map(str::to_owned)
        .collect();
    ids.sort();
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_page_in_chromium_passes_the_sfu_client_probe() {
    let programs = match BrowserPrograms::find() {
        Ok(programs) => programs,
        Err(missing) => return skip_or_fail(&format!("the SFU client probe test needs {missing}")),
    };
    // The reference server only serves the page; the probe plays the SFU.
    let setup = SfuSetup {
        media_bind: "127.0.0.1:0".parse().expect("an address"),
        ..SfuSetup::default()
    };
    let page_server = start_sfu(TcpListener::bind("127.0.0.1:0").await.expect("bind"), setup)
        .await
        .expect("the page server starts");
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let probe_url = format!("ws://{}/ws", listener.local_addr().expect("address"));
    let probe =
        tokio::spawn(async move { run_probe_on(listener, &config(Duration::from_secs(12))).await });
    let browser = Browser::start(&programs).await.expect("chromium starts");
    let page = format!(
        "{}?room=probe-room&peer=chromium&signaling={probe_url}",
        page_server.page_url()
    );
    browser.client.goto(&page).await.expect("the page loads");
    let report = probe
        .await
        .expect("the probe task")
        .expect("the probe runs");
    let artifacts = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("artifacts");
    let _ = browser
        .screenshot(&artifacts.join("sfu-demo-probe.png"))
        .await;
    browser.close().await;
    page_server.stop().await;
    assert!(report.not_passing().is_empty(), "{}", report.to_console());
}

/// Connects without `?peer=` or the subprotocol, joins with a string id, then publishes
/// nothing and never sends keepalive.
async fn careless_client(url: String) {
    let Ok((mut ws, _)) = tokio_tungstenite::connect_async(url).await else {
        return;
    };
    let join = json!({"request": true, "id": "1", "method": "join", "data": {"rid": "careless"}});
    let _ = ws.send(Message::text(join.to_string())).await;
    while let Some(Ok(_)) = ws.next().await {}
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_careless_client_fails_the_cases_it_breaks() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("ws://{}/ws", listener.local_addr().expect("address"));
    let client = tokio::spawn(careless_client(url));
    let report = run_probe_on(listener, &config(Duration::from_secs(2)))
        .await
        .expect("the probe runs");
    client.abort();
    assert_eq!(
        failing(&report),
        [
            "sfu-client/connection/peer-query",
            "sfu-client/join/first-request",
            "sfu-client/keepalive/sent",
            "sfu-client/publish/media-arrives",
            "sfu-client/publish/offer",
            "sfu-client/requests/integer-unique-ids",
            "sfu-client/subscribe/on-stream-add",
            "sfu-client/subscribe/pubs-from-join",
        ],
        "{}",
        report.to_console()
    );
    assert!(
        report
            .not_passing()
            .iter()
            .any(|(id, _)| id.contains("protoo-subprotocol")),
        "{}",
        report.to_console()
    );
}
