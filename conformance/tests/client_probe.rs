//! The client probe grades the reference node agent as conforming, and a broken client as not.

use conformance::probes::nodemgr::{run_probe_on, ProbeConfig};
use conformance::{RunOptions, Verdict};
use futures_util::SinkExt;
use reference_server::clients::node_agent::{self, AgentConfig};
use serde_json::json;
use std::time::Duration;
use tokio::net::TcpListener;

fn probe_config(wait: Duration) -> ProbeConfig {
    ProbeConfig {
        listen: String::new(),
        command: Vec::new(),
        wait,
        options: RunOptions::default(),
    }
}

async fn listener() -> (TcpListener, String) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("ws://{}/api/v1/ws", listener.local_addr().expect("addr"));
    (listener, url)
}

fn agent(url: String, allow_commands: bool) -> AgentConfig {
    AgentConfig {
        url,
        token: "default-token".into(),
        node_id: None,
        heartbeat_interval: Duration::from_millis(300),
        allow_commands,
        max_backoff: Duration::from_secs(1),
        max_attempts: Some(5),
    }
}

/// Probes the reference agent running in this process.
async fn probe_reference_agent(allow_commands: bool) -> conformance::Report {
    let (listener, url) = listener().await;
    let agent = tokio::spawn(node_agent::run(agent(url, allow_commands)));
    let report = run_probe_on(listener, &probe_config(Duration::from_secs(10)))
        .await
        .expect("probe");
    agent.abort();
    report
}

#[tokio::test]
async fn the_reference_agent_passes_every_client_case() {
    let report = probe_reference_agent(true).await;
    let not_passing = report.not_passing();
    assert!(not_passing.is_empty(), "{not_passing:#?}");
}

#[tokio::test]
async fn an_agent_that_refuses_commands_is_informational_not_failing() {
    let report = probe_reference_agent(false).await;
    let verdict = report.verdict_of("nodemgr-client/command/output-captured");
    assert!(
        matches!(verdict, Some(Verdict::Informational { .. })),
        "{verdict:?}"
    );
    assert_eq!(report.exit_code(), 0);
}

/// A client with no token, Unix timestamps, and no heartbeat.
async fn broken_client(url: String) {
    let Ok((mut ws, _)) = tokio_tungstenite::connect_async(url).await else {
        return;
    };
    let register = json!({"type": "node_register", "id": "1", "timestamp": "1737453600", "data": {"node_id": "x"}});
    let _ = ws
        .send(tokio_tungstenite::tungstenite::Message::text(
            register.to_string(),
        ))
        .await;
    tokio::time::sleep(Duration::from_secs(10)).await;
}

#[tokio::test]
async fn a_broken_client_fails_the_cases_it_breaks() {
    let (listener, url) = listener().await;
    let client = tokio::spawn(broken_client(url));
    let report = run_probe_on(listener, &probe_config(Duration::from_secs(2)))
        .await
        .expect("probe");
    client.abort();
    let failing = report.failing_ids();
    for id in [
        "nodemgr-client/connection/presents-token",
        "nodemgr-client/heartbeat/sent-with-metrics",
        "nodemgr-client/command/result-reported",
    ] {
        assert!(
            failing.contains(&id),
            "{id} not failing: {:?}",
            report.verdict_of(id)
        );
    }
    assert_eq!(report.exit_code(), 1);
}
