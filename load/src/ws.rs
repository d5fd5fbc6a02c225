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

#[cfg(test)]
mod tests {
    use super::*;

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
