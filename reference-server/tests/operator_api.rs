//! The operator API's error paths: every refusal is JSON with an error_code, never a bare text.

use reference_server::protocol::nodemgr::SessionConfig;
use reference_server::server::{start_nodemgr, RunningNodemgr};
use reference_server::store::StoreConfig;
use serde_json::{json, Value};

async fn server(dir: &tempfile::TempDir) -> RunningNodemgr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let store = StoreConfig::sqlite_in(dir.path()).expect("store");
    start_nodemgr(listener, SessionConfig::default(), &store)
        .await
        .expect("server")
}

async fn call(request: reqwest::RequestBuilder) -> (u16, Value) {
    let response = request.send().await.expect("response");
    let status = response.status().as_u16();
    (status, response.json().await.expect("a JSON body"))
}

#[tokio::test]
async fn refusals_carry_a_status_and_an_error_code() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = server(&dir).await;
    let base = server.operator_url();
    let http = reqwest::Client::new();
    let authed = |r: reqwest::RequestBuilder| r.bearer_auth("default-token");

    let (status, body) = call(http.get(format!("{base}/nodes"))).await;
    assert_eq!(
        (status, body["error_code"].as_str()),
        (401, Some("INVALID_TOKEN"))
    );

    let (status, body) = call(authed(http.get(format!("{base}/nodes/nobody")))).await;
    assert_eq!(
        (status, body["error_code"].as_str()),
        (404, Some("NODE_NOT_FOUND"))
    );

    let (status, body) = call(authed(http.get(format!("{base}/commands/none")))).await;
    assert_eq!(
        (status, body["error_code"].as_str()),
        (404, Some("COMMAND_NOT_FOUND"))
    );

    let not_json = authed(http.post(format!("{base}/nodes/nobody/commands")))
        .header("content-type", "application/json")
        .body("{oops");
    let (status, body) = call(not_json).await;
    assert_eq!(
        (status, body["error_code"].as_str()),
        (400, Some("BAD_REQUEST")),
        "{body}"
    );

    let no_text =
        authed(http.post(format!("{base}/nodes/nobody/commands"))).json(&json!({ "timeout": 5 }));
    let (status, body) = call(no_text).await;
    assert_eq!(
        (status, body["error_code"].as_str()),
        (400, Some("BAD_REQUEST")),
        "{body}"
    );

    let too_long = authed(http.post(format!("{base}/nodes/nobody/commands")))
        .json(&json!({ "command_text": "true", "timeout": 0 }));
    let (status, body) = call(too_long).await;
    assert_eq!(
        (status, body["error_code"].as_str()),
        (400, Some("BAD_REQUEST")),
        "{body}"
    );

    let unknown = authed(http.post(format!("{base}/nodes/nobody/commands")))
        .json(&json!({ "command_text": "true" }));
    let (status, body) = call(unknown).await;
    assert_eq!(
        (status, body["error_code"].as_str()),
        (404, Some("NODE_NOT_FOUND"))
    );
    server.stop().await;
}
