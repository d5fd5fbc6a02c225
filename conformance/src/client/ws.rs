//! A raw WebSocket client that records a transcript and waits with timeouts.

use super::Transcript;
use crate::case::Failure;
use crate::check::compact;
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// What the peer did next.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    Json(Value),
    /// A text frame that is not JSON.
    Text(String),
    Binary(usize),
    /// A close frame, with its code and reason when it had them.
    Close(Option<(u16, String)>),
    /// The TCP stream ended or broke without a close frame.
    Dropped(String),
    /// Nothing within the wait.
    Silence(Duration),
}

impl Event {
    pub fn describe(&self) -> String {
        match self {
            Self::Json(v) => compact(v),
            Self::Text(t) => format!("non-JSON text {}", crate::check::truncate(t, 200)),
            Self::Binary(n) => format!("a binary frame of {n} bytes"),
            Self::Close(Some((code, reason))) => format!("close {code} {reason:?}"),
            Self::Close(None) => "close without a code".to_owned(),
            Self::Dropped(why) => format!("the connection dropped without a close frame ({why})"),
            Self::Silence(wait) => format!("nothing within {} ms", wait.as_millis()),
        }
    }

    pub fn is_clean_close(&self) -> bool {
        matches!(self, Self::Close(Some(_)))
    }
}

/// How a connection attempt ended when it did not open.
#[derive(Debug)]
pub enum ConnectError {
    /// The server answered the upgrade with this HTTP status.
    Refused(u16),
    Io(String),
}

pub struct WsClient {
    name: String,
    stream: WebSocketStream<MaybeTlsStream<TcpStream>>,
    transcript: Transcript,
    wait: Duration,
}

impl std::fmt::Debug for WsClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WsClient")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl WsClient {
    pub async fn try_connect(
        name: &str,
        url: &str,
        transcript: &Transcript,
        wait: Duration,
    ) -> Result<Self, ConnectError> {
        let stream = open(name, url, None, transcript, wait).await?;
        Ok(Self {
            name: name.to_owned(),
            stream,
            transcript: transcript.clone(),
            wait,
        })
    }

    /// Wraps a socket the suite accepted, when it plays the server.
    pub fn accepted(
        name: &str,
        stream: WebSocketStream<MaybeTlsStream<TcpStream>>,
        transcript: &Transcript,
        wait: Duration,
    ) -> Self {
        Self {
            name: name.to_owned(),
            stream,
            transcript: transcript.clone(),
            wait,
        }
    }

    /// Closes with a code and reason, as a server ending a session would.
    pub async fn close_with(&mut self, code: u16, reason: &str) {
        use tokio_tungstenite::tungstenite::protocol::CloseFrame;
        self.transcript
            .record(&self.name, "→", &format!("close {code} {reason:?}"));
        let frame = CloseFrame {
            code: code.into(),
            reason: reason.to_owned().into(),
        };
        let _ = self.stream.close(Some(frame)).await;
    }

    /// Connects, or fails the case: the target must accept WebSocket connections.
    pub async fn connect(
        name: &str,
        url: &str,
        transcript: &Transcript,
        wait: Duration,
    ) -> Result<Self, Failure> {
        Self::try_connect(name, url, transcript, wait)
            .await
            .map_err(|e| {
                Failure::mismatch(format!("a WebSocket connection to {url}"), format!("{e:?}"))
            })
    }

    pub fn wait(&self) -> Duration {
        self.wait
    }

    pub async fn send_json(&mut self, value: &Value) -> Result<(), Failure> {
        self.send_text(&value.to_string()).await
    }

    pub async fn send_text(&mut self, text: &str) -> Result<(), Failure> {
        self.note_sent(text);
        self.send(Message::text(text)).await
    }

    pub async fn send_binary(&mut self, bytes: Vec<u8>) -> Result<(), Failure> {
        self.note_sent(&format!("binary frame of {} bytes", bytes.len()));
        self.send(Message::binary(bytes)).await
    }

    /// A text frame whose payload is not UTF-8, which the library's own types refuse to build.
    pub async fn send_invalid_utf8_text(&mut self, bytes: Vec<u8>) -> Result<(), Failure> {
        self.note_sent(&format!(
            "text frame of {} bytes of invalid UTF-8",
            bytes.len()
        ));
        let frame = Frame::message(bytes, OpCode::Data(Data::Text), true);
        self.send(Message::Frame(frame)).await
    }

    /// Sends many frames with one flush: for floods.
    pub async fn send_burst(&mut self, frames: Vec<String>) -> Result<(), Failure> {
        self.note_sent(&format!("{} frames in a burst", frames.len()));
        let total = frames.len();
        let mut fed = 0;
        for text in frames {
            if self.stream.feed(Message::text(text)).await.is_err() {
                break;
            }
            fed += 1;
        }
        if fed < total || self.stream.flush().await.is_err() {
            // The case goes on to read what the peer did; the transcript says what went out.
            self.note_sent(&format!(
                "the connection refused the burst after {fed} of {total} frames"
            ));
        }
        Ok(())
    }

    fn note_sent(&self, what: &str) {
        self.transcript.record(&self.name, "→", what);
    }

    async fn send(&mut self, message: Message) -> Result<(), Failure> {
        self.stream.send(message).await.map_err(|e| {
            Failure::mismatch("the connection to stay open for sending", e.to_string())
        })
    }

    /// The next event within the default wait.
    pub async fn next_event(&mut self) -> Event {
        self.next_event_within(self.wait).await
    }

    pub async fn next_event_within(&mut self, wait: Duration) -> Event {
        let event = loop {
            match tokio::time::timeout(wait, self.stream.next()).await {
                Err(_) => break Event::Silence(wait),
                Ok(None) => break Event::Dropped("end of stream".to_owned()),
                Ok(Some(Err(e))) => break Event::Dropped(e.to_string()),
                Ok(Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_)))) => continue,
                Ok(Some(Ok(message))) => break classify(message),
            }
        };
        self.transcript.record(&self.name, "←", &event.describe());
        event
    }

    /// The next frame must be a JSON message.
    pub async fn expect_message(&mut self, what: &str) -> Result<Value, Failure> {
        self.expect_message_within(what, self.wait).await
    }

    pub async fn expect_message_within(
        &mut self,
        what: &str,
        wait: Duration,
    ) -> Result<Value, Failure> {
        match self.next_event_within(wait).await {
            Event::Json(value) => Ok(value),
            other => Err(Failure::mismatch(what, other.describe())),
        }
    }

    /// The next frame must be a JSON message of type `kind`.
    pub async fn expect_type(&mut self, kind: &str) -> Result<Value, Failure> {
        let value = self.expect_message(&format!("a `{kind}` message")).await?;
        if value.get("type").and_then(Value::as_str) == Some(kind) {
            Ok(value)
        } else {
            Err(Failure::mismatch(
                format!("a `{kind}` message"),
                compact(&value),
            ))
        }
    }

    /// Resets the TCP connection without a close frame, as a crashed peer or a pulled cable
    /// (seen from the server) would.
    pub fn abort(self) {
        self.transcript
            .record(&self.name, "→", "TCP reset, without a close frame");
        if let MaybeTlsStream::Plain(tcp) = self.stream.get_ref() {
            let _ = tcp.set_zero_linger();
        }
    }

    /// Closes politely; errors are irrelevant at this point.
    pub async fn close(mut self) {
        let _ = self.stream.close(None).await;
    }
}

pub(crate) type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Opens a WebSocket to `url` within `wait`, with an `Origin` header when given, and records
/// the attempt (and its failure) in the transcript.
pub(crate) async fn open(
    name: &str,
    url: &str,
    origin: Option<&str>,
    transcript: &Transcript,
    wait: Duration,
) -> Result<Socket, ConnectError> {
    let shown = origin.map_or(String::new(), |o| format!(" (Origin: {o})"));
    transcript.record(name, "⇢", &format!("connect {url}{shown}"));
    let outcome = match tokio::time::timeout(wait, handshake(url, origin)).await {
        Err(_) => Err(ConnectError::Io(format!(
            "no handshake within {} ms",
            wait.as_millis()
        ))),
        Ok(outcome) => outcome,
    };
    if let Err(error) = &outcome {
        transcript.record(name, "⇠", &format!("{error:?}"));
    }
    outcome
}

async fn handshake(url: &str, origin: Option<&str>) -> Result<Socket, ConnectError> {
    let mut request = url
        .into_client_request()
        .map_err(|e| ConnectError::Io(e.to_string()))?;
    if let Some(origin) = origin {
        let value = HeaderValue::from_str(origin).map_err(|e| ConnectError::Io(e.to_string()))?;
        request.headers_mut().insert("Origin", value);
    }
    match tokio_tungstenite::connect_async(request).await {
        Ok((stream, _)) => Ok(stream),
        Err(WsError::Http(response)) => Err(ConnectError::Refused(response.status().as_u16())),
        Err(error) => Err(ConnectError::Io(error.to_string())),
    }
}

fn classify(message: Message) -> Event {
    match message {
        Message::Text(text) => match serde_json::from_str::<Value>(&text) {
            Ok(value) => Event::Json(value),
            Err(_) => Event::Text(text.to_string()),
        },
        Message::Binary(bytes) => Event::Binary(bytes.len()),
        Message::Close(frame) => {
            Event::Close(frame.map(|f| (u16::from(f.code), f.reason.to_string())))
        }
        Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => Event::Binary(0),
    }
}

/// The subprotocol a server selects when a handshake offers `protocol`: `Ok(None)` when it
/// selects none (tungstenite refuses such a handshake, as browsers do).
pub async fn selected_subprotocol(
    url: &str,
    protocol: &str,
    wait: Duration,
) -> Result<Option<String>, String> {
    use tokio_tungstenite::tungstenite::error::ProtocolError;
    let mut request = url.into_client_request().map_err(|e| e.to_string())?;
    let offered = HeaderValue::from_str(protocol).map_err(|e| e.to_string())?;
    request
        .headers_mut()
        .insert("Sec-WebSocket-Protocol", offered);
    let handshake = tokio_tungstenite::connect_async(request);
    match tokio::time::timeout(wait, handshake).await {
        Err(_) => Err(format!("no handshake within {} ms", wait.as_millis())),
        Ok(Ok((_, response))) => Ok(response
            .headers()
            .get("sec-websocket-protocol")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)),
        Ok(Err(WsError::Protocol(ProtocolError::SecWebSocketSubProtocolError(_)))) => Ok(None),
        Ok(Err(error)) => Err(error.to_string()),
    }
}
