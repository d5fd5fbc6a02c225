//! Frames from clients are read and discarded; one over the 64 KiB limit gets close 1009
//! with the reason, not a dropped connection (E5).

use futures_util::{SinkExt, StreamExt};
use reference_server::protocol::ecapture::source::SourceConfig;
use reference_server::protocol::ecapture::MAX_CLIENT_FRAME_BYTES;
use reference_server::server::start_ecapture;
use reference_server::transport::ecapture::EcaptureConfig;
use std::time::Duration;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message;

#[tokio::test]
async fn an_oversized_client_frame_is_closed_with_1009_and_a_small_one_is_ignored() {
    let config = EcaptureConfig {
        source: SourceConfig::None,
        ..EcaptureConfig::default()
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let server = start_ecapture(listener, config).await.expect("server");
    let mut request = server.ws_url().into_client_request().expect("request");
    request
        .headers_mut()
        .insert("Origin", HeaderValue::from_static("http://localhost/"));
    let (mut socket, _) = tokio_tungstenite::connect_async(request)
        .await
        .expect("connects");
    socket
        .send(Message::binary(vec![1; 100]))
        .await
        .expect("sends");
    socket
        .send(Message::binary(vec![0; MAX_CLIENT_FRAME_BYTES + 1]))
        .await
        .expect("sends");
    let close = tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(message) = socket.next().await {
            match message {
                Ok(Message::Close(frame)) => return frame,
                Ok(_) => continue,
                Err(error) => panic!("the connection broke instead of closing: {error}"),
            }
        }
        panic!("the stream ended without a close frame")
    })
    .await
    .expect("a close within 5 s")
    .expect("a close code");
    assert_eq!(u16::from(close.code), 1009);
    assert!(close.reason.contains("limit"), "{}", close.reason);
}
