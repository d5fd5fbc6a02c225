//! The cmdrelay client probe passes the reference device, tells a controller from a device,
//! and fails a device whose results carry no data.

use conformance::probes::cmdrelay::{run_probe_on, ProbeConfig};
use conformance::{RunOptions, Verdict};
use futures_util::future::BoxFuture;
use futures_util::{SinkExt, StreamExt};
use reference_server::clients::device::{self, DeviceConfig, EchoHandler, ExecuteHandler};
use serde_json::{json, Map, Value};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::Message;

async fn probe(start: impl FnOnce(String) -> tokio::task::JoinHandle<()>) -> conformance::Report {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("ws://{}/websocket", listener.local_addr().expect("addr"));
    let client = start(url);
    let config = ProbeConfig {
        listen: String::new(),
        command: Vec::new(),
        wait: Duration::from_secs(10),
        options: RunOptions::default(),
    };
    let report = run_probe_on(listener, &config).await.expect("probe");
    client.abort();
    report
}

fn reference_device(url: String, handler: Arc<dyn ExecuteHandler>) -> tokio::task::JoinHandle<()> {
    let config = DeviceConfig {
        url,
        token: "default-token".into(),
        handler,
        max_backoff: Duration::from_millis(500),
        max_attempts: Some(5),
    };
    tokio::spawn(async move {
        let _ = device::run(config).await;
    })
}

#[tokio::test]
async fn the_reference_device_passes_and_the_controller_case_is_informational() {
    let report = probe(|url| reference_device(url, Arc::new(EchoHandler))).await;
    let not_passing: Vec<_> = report
        .not_passing()
        .into_iter()
        .filter(|(id, _)| *id != "cmdrelay-client/controller/execute-has-command")
        .collect();
    assert!(not_passing.is_empty(), "{not_passing:#?}");
    assert!(matches!(
        report.verdict_of("cmdrelay-client/controller/execute-has-command"),
        Some(Verdict::Informational { .. })
    ));
}

/// Answers with an empty extra: no `data`.
struct Mute;

impl ExecuteHandler for Mute {
    fn handle(&self, _extra: Map<String, Value>) -> BoxFuture<'static, Map<String, Value>> {
        Box::pin(async { Map::new() })
    }
}

#[tokio::test]
async fn a_device_whose_results_have_no_data_fails() {
    let report = probe(|url| reference_device(url, Arc::new(Mute))).await;
    let failing = report.failing_ids();
    assert!(
        failing.contains(&"cmdrelay-client/device/result-has-data"),
        "{failing:?}"
    );
    assert!(
        !failing.contains(&"cmdrelay-client/device/answers-execute"),
        "{failing:?}"
    );
}

#[tokio::test]
async fn a_controller_that_sends_execute_is_graded_as_a_controller() {
    let report = probe(|url| {
        tokio::spawn(async move {
            for _ in 0..2 {
                let Ok((mut ws, _)) = tokio_tungstenite::connect_async(&url).await else {
                    return;
                };
                let init = json!({"cmd": "init", "token": "t"}).to_string();
                let execute = json!({"cmd": "execute", "extra": {"command": "uptime"}}).to_string();
                let _ = ws.send(Message::text(init)).await;
                let _ = ws.next().await;
                let _ = ws.send(Message::text(execute)).await;
                while let Some(Ok(frame)) = ws.next().await {
                    if frame.is_close() {
                        break;
                    }
                }
            }
        })
    })
    .await;
    assert!(matches!(
        report.verdict_of("cmdrelay-client/controller/execute-has-command"),
        Some(Verdict::Pass)
    ));
    assert!(matches!(
        report.verdict_of("cmdrelay-client/device/answers-execute"),
        Some(Verdict::Informational { .. })
    ));
}
