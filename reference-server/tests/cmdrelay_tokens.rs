//! cmdrelay tokens: the store (SQLite and a real PostgreSQL), the token API, and revocation
//! disconnecting a live room.

mod support;

use chrono::{Duration as Span, Utc};
use futures_util::{SinkExt, StreamExt};
use reference_server::protocol::cmdrelay::TokenStatus;
use reference_server::server::{start_cmdrelay, CmdrelaySetup, RunningCmdrelay};
use reference_server::store::tokens::TokenStore;
use reference_server::store::StoreConfig;
use serde_json::{json, Value};
use std::time::Duration;
use support::postgres::Postgres;
use tokio_tungstenite::tungstenite::Message;

async fn store_lifecycle(store: &TokenStore) {
    let now = Utc::now();
    assert_eq!(store.check("t1", now).await, TokenStatus::Unknown);
    store.put("t1", "first", None, now).await.expect("put");
    store
        .put("t2", "soon", Some(now + Span::seconds(60)), now)
        .await
        .expect("put");
    assert_eq!(store.check("t1", now).await, TokenStatus::Valid);
    assert_eq!(store.check("t2", now).await, TokenStatus::Valid);
    assert_eq!(
        store.check("t2", now + Span::seconds(61)).await,
        TokenStatus::Expired
    );
    assert!(store.revoke("t1", now).await.expect("revoke"));
    assert!(
        !store.revoke("t1", now).await.expect("second revoke"),
        "already revoked"
    );
    assert_eq!(store.check("t1", now).await, TokenStatus::Revoked);
    store.put("t1", "renewed", None, now).await.expect("renew");
    assert_eq!(store.check("t1", now).await, TokenStatus::Valid);
    let listed: Vec<_> = store
        .list()
        .await
        .expect("list")
        .into_iter()
        .map(|t| t.token)
        .collect();
    assert_eq!(listed, ["t1", "t2"]);
}

#[tokio::test]
async fn sqlite_tokens_expire_revoke_and_renew() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = StoreConfig::sqlite_in(dir.path()).expect("config");
    store_lifecycle(&TokenStore::open(&config).await.expect("open")).await;
}

#[tokio::test]
async fn postgres_tokens_expire_revoke_and_renew() {
    // `start` has already skipped loudly (or failed under REQUIRE_EXTERNALS) when it is absent.
    let Some(postgres) = Postgres::start() else {
        return;
    };
    let store = TokenStore::open(&StoreConfig::from_url(postgres.url.clone()))
        .await
        .expect("open postgres");
    store_lifecycle(&store).await;
}

async fn server() -> (RunningCmdrelay, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = StoreConfig::sqlite_in(dir.path()).expect("config");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let server = start_cmdrelay(listener, CmdrelaySetup::default(), &config)
        .await
        .expect("start");
    (server, dir)
}

fn api(server: &RunningCmdrelay, path: &str) -> String {
    format!("{}{path}", server.admin_url())
}

#[tokio::test]
async fn the_token_api_needs_the_admin_token_and_mints_lists_and_revokes() {
    let (server, _dir) = server().await;
    let http = reqwest::Client::new();
    let denied = http.get(api(&server, "/tokens")).send().await.expect("get");
    assert_eq!(denied.status(), 401);
    let minted: Value = http
        .post(api(&server, "/tokens"))
        .bearer_auth("default-token")
        .json(&json!({"label": "ci"}))
        .send()
        .await
        .expect("post")
        .json()
        .await
        .expect("json");
    let token = minted["token"].as_str().expect("a token").to_owned();
    let listed: Value = http
        .get(api(&server, "/tokens"))
        .bearer_auth("default-token")
        .send()
        .await
        .expect("list")
        .json()
        .await
        .expect("json");
    let tokens: Vec<&str> = listed["tokens"]
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|t| t["token"].as_str())
        .collect();
    assert!(
        tokens.contains(&token.as_str()) && tokens.contains(&"default-token"),
        "{listed}"
    );
    let too_long = http
        .post(api(&server, "/tokens"))
        .bearer_auth("default-token")
        .json(&json!({"token": "x".repeat(300)}))
        .send()
        .await
        .expect("post");
    assert_eq!(too_long.status(), 400);
    let revoke = |t: String| {
        http.delete(api(&server, &format!("/tokens/{t}")))
            .bearer_auth("default-token")
            .send()
    };
    assert_eq!(revoke(token.clone()).await.expect("delete").status(), 204);
    assert_eq!(revoke(token).await.expect("delete again").status(), 404);
}

async fn join(
    server: &RunningCmdrelay,
    token: &str,
) -> tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>> {
    let (mut ws, _) = tokio_tungstenite::connect_async(server.ws_url())
        .await
        .expect("connect");
    ws.send(Message::text(
        json!({"cmd": "init", "token": token}).to_string(),
    ))
    .await
    .expect("send");
    let Some(Ok(Message::Text(answer))) = ws.next().await else {
        panic!("no init answer")
    };
    assert!(answer.contains(r#""code":"1""#), "{answer}");
    ws
}

#[tokio::test]
async fn revoking_a_token_disconnects_its_room_at_once_and_refuses_new_inits() {
    let (server, _dir) = server().await;
    let http = reqwest::Client::new();
    http.post(api(&server, "/tokens"))
        .bearer_auth("default-token")
        .json(&json!({"token": "doomed"}))
        .send()
        .await
        .expect("post");
    let mut a = join(&server, "doomed").await;
    let _b = join(&server, "doomed").await;
    let mut other = join(&server, "default-token").await;
    let status = http
        .delete(api(&server, "/tokens/doomed"))
        .bearer_auth("default-token")
        .send()
        .await
        .expect("delete")
        .status();
    assert_eq!(status, 204);
    let closed = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match a.next().await {
                Some(Ok(Message::Close(frame))) => return frame.map(|f| u16::from(f.code)),
                Some(Ok(_)) => continue,
                _ => return None,
            }
        }
    })
    .await
    .expect("closed within 5 s");
    assert_eq!(closed, Some(1008));
    let (mut late, _) = tokio_tungstenite::connect_async(server.ws_url())
        .await
        .expect("connect");
    late.send(Message::text(
        json!({"cmd": "init", "token": "doomed"}).to_string(),
    ))
    .await
    .expect("send");
    let Some(Ok(Message::Text(answer))) = late.next().await else {
        panic!("no answer")
    };
    assert!(answer.contains("401"), "{answer}");
    other
        .send(Message::text(r#"{"cmd":"checkDevice"}"#))
        .await
        .expect("send");
    let Some(Ok(Message::Text(answer))) = other.next().await else {
        panic!("no answer")
    };
    assert!(
        answer.contains("checkDevice"),
        "the other room is untouched: {answer}"
    );
    // Both kicked clients leave their room as their connections end.
    let mut rooms = Value::Null;
    for _ in 0..50 {
        rooms = http
            .get(api(&server, "/rooms"))
            .bearer_auth("default-token")
            .send()
            .await
            .expect("rooms")
            .json()
            .await
            .expect("json");
        if rooms == json!({"rooms": 1, "clients": 1}) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the revoked room lingers: {rooms}");
}
