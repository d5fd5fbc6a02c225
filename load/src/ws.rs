//! How the load generator opens and accepts WebSockets: one stream type, one configuration.

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

/// Opens a WebSocket as every simulated client does: the small read buffer, and no Nagle
/// delay on its small frames.
pub async fn connect<R>(
    request: R,
) -> Result<
    (
        Ws,
        tokio_tungstenite::tungstenite::handshake::client::Response,
    ),
    tokio_tungstenite::tungstenite::Error,
>
where
    R: tokio_tungstenite::tungstenite::client::IntoClientRequest + Unpin,
{
    tokio_tungstenite::connect_async_with_config(request, Some(config()), true).await
}
