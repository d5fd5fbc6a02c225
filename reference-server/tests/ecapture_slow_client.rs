//! A client that stops reading is dropped once it falls a queue behind, and the others go on
//! (E6): the server's memory for it is bounded by the queue, not by the stream.

use futures_util::StreamExt;
use reference_server::protocol::ecapture::source::SourceConfig;
use reference_server::server::start_ecapture;
use reference_server::transport::ecapture::EcaptureConfig;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message;

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect(url: &str) -> Socket {
    let mut request = url.into_client_request().expect("request");
    request
        .headers_mut()
        .insert("Origin", HeaderValue::from_static("http://localhost/"));
    tokio_tungstenite::connect_async(request)
        .await
        .expect("connects")
        .0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_is_dropped_and_the_others_go_on() {
    // 5,000 events/s of 2 KiB: 10 MB/s, which fills the stalled client's socket buffers and
    // queue within seconds. The queue of 4,096 gives the reading client 0.8 s of slack: with
    // the default 256 (13 ms at 20,000/s) a busy CI machine once let the reader fall behind too.
    let config = EcaptureConfig {
        source: SourceConfig::Synthetic {
            rate: 5_000.0,
            payload_size: 2048,
        },
        queue_depth: 4_096,
        ..EcaptureConfig::default()
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let server = start_ecapture(listener, config).await.expect("server");
    let url = server.ws_url();
    let _stalled = connect(&url).await;
    let mut reader = connect(&url).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let mut frames = 0u64;
    while server.app.stats.dropped_slow.load(Ordering::Relaxed) == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the stalled client was never dropped"
        );
        let next = tokio::time::timeout(Duration::from_secs(5), reader.next()).await;
        match next {
            Ok(Some(Ok(Message::Binary(_)))) => frames += 1,
            Ok(Some(Ok(_))) => {}
            other => panic!("the reading client lost its stream: {other:?}"),
        }
    }
    // The reader goes on after the drop.
    let mut after = 0;
    while after < 100 {
        match tokio::time::timeout(Duration::from_secs(5), reader.next()).await {
            Ok(Some(Ok(Message::Binary(_)))) => after += 1,
            Ok(Some(Ok(_))) => {}
            other => panic!("the reading client lost its stream after the drop: {other:?}"),
        }
    }
    assert!(frames > 0);
    assert_eq!(server.app.stats.clients.load(Ordering::Relaxed), 1);
}
