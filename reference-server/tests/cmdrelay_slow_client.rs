//! A client that stops reading must not stall the server or stay in its room as a ghost: once
//! its queue is full it is dropped, and the room counts it no more.

use futures_util::{SinkExt, StreamExt};
use reference_server::server::{start_cmdrelay, CmdrelaySetup};
use reference_server::store::StoreConfig;
use serde_json::{json, Value};
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Relays sent at the stalled client: with 60 KB each, far more than the socket buffers and
/// the 256-frame queue hold together.
const RELAYS: usize = 600;

async fn join(url: &str) -> Ws {
    let (mut ws, _) = tokio_tungstenite::connect_async(url)
        .await
        .expect("connect");
    let init = json!({"cmd": "init", "token": "default-token"}).to_string();
    ws.send(Message::text(init)).await.expect("send");
    let Some(Ok(Message::Text(answer))) = ws.next().await else {
        panic!("no init answer")
    };
    assert!(answer.contains(r#""code":"1""#), "{answer}");
    ws
}

async fn device_code(ws: &mut Ws) -> String {
    ws.send(Message::text(r#"{"cmd":"checkDevice"}"#))
        .await
        .expect("send");
    loop {
        let text = match ws.next().await {
            Some(Ok(Message::Text(text))) => text,
            Some(Ok(_)) => continue,
            other => panic!("the connection ended: {other:?}"),
        };
        let reply: Value = serde_json::from_str(&text).expect("json");
        if reply["cmd"] == "checkDevice" {
            return reply["code"].as_str().unwrap_or_default().to_owned();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_is_dropped_and_leaves_its_room() {
    let dir = tempfile::tempdir().expect("tempdir");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let store = StoreConfig::sqlite_in(dir.path()).expect("config");
    let server = start_cmdrelay(listener, CmdrelaySetup::default(), &store)
        .await
        .expect("start");
    let mut sender = join(&server.ws_url()).await;
    let _stalled = join(&server.ws_url()).await; // never read again
    assert_eq!(device_code(&mut sender).await, "1");
    let frame = json!({"cmd": "execute", "extra": {"command": "x".repeat(60_000)}}).to_string();
    for _ in 0..RELAYS {
        sender
            .send(Message::text(frame.clone()))
            .await
            .expect("the sender is never blocked by a slow receiver");
    }
    let mut code = String::new();
    for _ in 0..100 {
        code = device_code(&mut sender).await;
        if code == "0" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(code, "0", "the stalled client still counts in its room");
}
