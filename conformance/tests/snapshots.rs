//! Transcript snapshots of the whole nodemgr exchange against the reference server, with ids,
//! timestamps, ports and timings redacted. `cargo insta review` after an intended change.

use conformance::client::{Transcript, WsClient};
use conformance::wire::nodemgr as wire;
use conformance::Target;
use reference_server::faults::Faults;
use std::time::Duration;

/// Replaces what changes from run to run with stable placeholders.
fn redact(line: &str) -> String {
    let uuid =
        regex_lite::Regex::new(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
            .expect("re");
    let stamp =
        regex_lite::Regex::new(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z").expect("re");
    let port = regex_lite::Regex::new(r"127\.0\.0\.1:\d+").expect("re");
    let timing = regex_lite::Regex::new(r"^\s*\d+ms ").expect("re");
    let node = regex_lite::Regex::new(r"conformance-[0-9a-f-]{13}").expect("re");
    let line = timing.replace(line, "");
    let line = uuid.replace_all(&line, "[uuid]");
    let line = stamp.replace_all(&line, "[timestamp]");
    let line = port.replace_all(&line, "127.0.0.1:[port]");
    node.replace_all(&line, "[node]").into_owned()
}

#[tokio::test]
async fn the_full_nodemgr_exchange() {
    let wait = Duration::from_secs(5);
    let target = Target::in_process(Faults::none(), wait)
        .await
        .expect("server");
    let endpoint = target.nodemgr.clone().expect("nodemgr endpoint");
    let operator = endpoint.operator.clone().expect("operator API");
    let transcript = Transcript::default();
    let node_id = format!("conformance-{}", &wire::fresh_id()[..13]);
    let url = endpoint.url(Some(&endpoint.token), Some(&node_id));
    let mut ws = WsClient::connect("node", &url, &transcript, wait)
        .await
        .expect("connect");
    ws.expect_type("welcome").await.expect("welcome");
    ws.send_json(&wire::node_register(&wire::fresh_id(), &node_id))
        .await
        .expect("send");
    ws.expect_type("register_response").await.expect("response");
    ws.send_json(&wire::heartbeat(
        &wire::fresh_id(),
        &node_id,
        wire::metrics(0.0),
    ))
    .await
    .expect("send");
    ws.expect_type("heartbeat_ack").await.expect("ack");
    let command_id = operator
        .send_command(&node_id, "echo snapshot", 30)
        .await
        .expect("command");
    let execute = ws.expect_type("execute_command").await.expect("execute");
    let execute_id = execute["id"].as_str().expect("id");
    ws.send_json(&wire::command_started(execute_id, &command_id))
        .await
        .expect("send");
    ws.send_json(&wire::command_result(
        &wire::fresh_id(),
        &command_id,
        0,
        "snapshot\n",
        "",
    ))
    .await
    .expect("send");
    ws.expect_type("command_received").await.expect("received");
    ws.send_json(&wire::envelope(
        "invalid_type",
        &wire::fresh_id(),
        serde_json::json!({}),
    ))
    .await
    .expect("send");
    ws.expect_type("error").await.expect("error");
    ws.send_text("not json").await.expect("send");
    ws.expect_type("error").await.expect("error");
    let lines: Vec<String> = transcript.lines().iter().map(|l| redact(l)).collect();
    let command_line = regex_lite::Regex::new(r"cmd-\[uuid\]").expect("re");
    let text = command_line
        .replace_all(&lines.join("\n"), "[command]")
        .into_owned();
    insta::assert_snapshot!(text);
}
