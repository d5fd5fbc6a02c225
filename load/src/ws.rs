//! How the load generator opens and accepts WebSockets: one stream type, one configuration.

use std::time::Duration;
use tokio_tungstenite::tungstenite;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

/// A client WebSocket as every simulated peer holds it.
pub type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// The read buffer of every WebSocket the load generator opens or accepts: the reference
/// server's size. tungstenite's default (128 KiB) is zeroed before each read, which costs
/// more than the frames measured here.
const READ_BUFFER: usize = 4 * 1024;

pub fn config() -> tokio_tungstenite::tungstenite::protocol::WebSocketConfig {
    tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER)
}

/// How long opening a WebSocket may take. A server that stops accepting (one out of file
/// descriptors leaves connections in its backlog) would otherwise hold a run forever.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Opens a WebSocket as every simulated client does: the small read buffer, and no Nagle
/// delay on its small frames. Gives up after [`CONNECT_TIMEOUT`].
pub async fn connect<R>(request: R) -> Result<(Ws, Response), tungstenite::Error>
where
    R: IntoClientRequest + Unpin,
{
    connect_within(request, CONNECT_TIMEOUT).await
}

type Response = tungstenite::handshake::client::Response;

async fn connect_within<R>(
    request: R,
    limit: Duration,
) -> Result<(Ws, Response), tungstenite::Error>
where
    R: IntoClientRequest + Unpin,
{
    let opening = tokio_tungstenite::connect_async_with_config(request, Some(config()), true);
    tokio::time::timeout(limit, opening)
        .await
        .unwrap_or_else(|_| {
            let timed_out = std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "no WebSocket handshake within the connect timeout",
            );
            Err(timed_out.into())
        })
}

/// Why a socket gave no text frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NoText {
    /// A close frame, with its code if it had one, or the end of the stream.
    Closed(Option<u16>),
    Binary,
    /// The read failed (a reset, a protocol error).
    Failed,
}

/// The next text frame, past pings and pongs (tungstenite answers pings itself).
pub async fn next_text(ws: &mut Ws) -> Result<String, NoText> {
    use futures_util::StreamExt;
    use tungstenite::Message;
    loop {
        return match ws.next().await {
            Some(Ok(Message::Text(text))) => Ok(text.as_str().to_owned()),
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            Some(Ok(Message::Binary(_))) => Err(NoText::Binary),
            Some(Ok(Message::Close(close))) => {
                Err(NoText::Closed(close.map(|frame| u16::from(frame.code))))
            }
            Some(Ok(Message::Frame(_)) | Err(_)) => Err(NoText::Failed),
            None => Err(NoText::Closed(None)),
        };
    }
}

/// For tests: a server that sends `frames` on its one connection, then waits for the client
/// to go; its URL.
#[cfg(test)]
pub async fn sending(frames: Vec<tungstenite::Message>) -> String {
    use futures_util::SinkExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("ws://{}/", listener.local_addr().expect("address"));
    tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.expect("accept");
        let mut ws = tokio_tungstenite::accept_async(tcp)
            .await
            .expect("handshake");
        for frame in frames {
            ws.send(frame).await.expect("send");
        }
        let _ = futures_util::StreamExt::next(&mut ws).await;
    });
    url
}

#[cfg(test)]
mod tests {
    use super::*;
    use tungstenite::Message;

    #[tokio::test]
    async fn the_next_text_is_found_past_pings_and_a_close_gives_its_code() {
        let close = tungstenite::protocol::CloseFrame {
            code: 4001.into(),
            reason: "invalid token".into(),
        };
        let url = sending(vec![
            Message::Ping(vec![1].into()),
            Message::Pong(vec![2].into()),
            Message::text("welcome"),
            Message::Binary(vec![3].into()),
            Message::Close(Some(close)),
        ])
        .await;
        let (mut ws, _) = connect(url).await.expect("connect");
        assert_eq!(next_text(&mut ws).await, Ok("welcome".to_owned()));
        assert_eq!(next_text(&mut ws).await, Err(NoText::Binary));
        assert_eq!(next_text(&mut ws).await, Err(NoText::Closed(Some(4001))));
    }

    #[tokio::test]
    async fn a_server_that_never_answers_the_handshake_times_out() {
        // Listening but never accepting: the connection waits in the backlog, as it does
        // on a server out of file descriptors.
        let silent = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("ws://{}/", silent.local_addr().expect("address"));
        let limit = Duration::from_millis(200);
        let outcome = tokio::time::timeout(limit * 10, connect_within(url, limit)).await;
        match outcome.expect("gave up by itself") {
            Err(tungstenite::Error::Io(error)) => {
                assert_eq!(error.kind(), std::io::ErrorKind::TimedOut)
            }
            other => panic!("expected a timeout, got {:?}", other.map(|_| ())),
        }
    }
}
