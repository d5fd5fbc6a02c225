//! ecapture: N collectors read the stream; each decodes every frame and measures delivery
//! latency (the event's nanosecond timestamp, stamped by the server when it made the event,
//! to the moment the collector decoded it). Optional slow clients connect and never read:
//! the server must drop them while the others go on.

use futures_util::StreamExt;
use hdrhistogram::Histogram;
use prost::Message as _;
use reference_server::protocol::ecapture::pb::{log_entry::Payload, LogEntry};
use std::time::Duration;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message;

/// What one collector saw.
#[derive(Debug)]
pub struct Collected {
    pub events: u64,
    pub frames: u64,
    pub latency_us: Histogram<u64>,
    /// Why the stream ended before the deadline, if it did.
    pub ended: Option<String>,
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

pub async fn connect(url: &str) -> anyhow::Result<Socket> {
    let mut request = url.into_client_request()?;
    request
        .headers_mut()
        .insert("Origin", HeaderValue::from_static("http://localhost/"));
    let (socket, _) = crate::ws::connect(request).await?;
    Ok(socket)
}

fn now_nanos() -> i64 {
    chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default()
}

/// Reads and decodes until `until`.
pub async fn collect(mut socket: Socket, until: Instant) -> Collected {
    let mut seen = Collected {
        events: 0,
        frames: 0,
        latency_us: Histogram::new_with_bounds(1, 60_000_000, 3)
            .expect("1 µs to 60 s at 3 significant figures are valid bounds"),
        ended: None,
    };
    loop {
        let next = match tokio::time::timeout_at(until, socket.next()).await {
            Err(_) => break,
            Ok(next) => next,
        };
        let bytes = match next {
            Some(Ok(Message::Binary(bytes))) => bytes,
            Some(Ok(Message::Close(frame))) => {
                seen.ended = Some(format!("closed: {frame:?}"));
                break;
            }
            Some(Ok(_)) => continue,
            Some(Err(e)) => {
                seen.ended = Some(e.to_string());
                break;
            }
            None => {
                seen.ended = Some("end of stream".to_owned());
                break;
            }
        };
        seen.frames += 1;
        if let Ok(LogEntry {
            payload: Some(Payload::EventPayload(event)),
            ..
        }) = LogEntry::decode(bytes)
        {
            seen.events += 1;
            let micros = (now_nanos() - event.timestamp).max(1_000) / 1_000;
            let _ = seen.latency_us.record((micros as u64).min(60_000_000));
        }
    }
    seen
}

/// A client that connects and never reads until `until`; then tells whether the server
/// had closed it (reading what is buffered, bounded by 10 s).
pub async fn stall(mut socket: Socket, until: Instant) -> bool {
    tokio::time::sleep_until(until).await;
    let drain = async {
        while let Some(message) = socket.next().await {
            match message {
                Ok(Message::Close(_)) | Err(_) => return true,
                Ok(_) => {}
            }
        }
        true
    };
    tokio::time::timeout(Duration::from_secs(10), drain)
        .await
        .unwrap_or(false)
}
