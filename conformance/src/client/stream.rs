//! A receiving WebSocket client for push-only streams (ecapture): it sends an `Origin` header,
//! keeps every frame's bytes, and writes a bounded number of them to the transcript.

use super::ws::ConnectError;
use super::Transcript;
use crate::case::Failure;
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::MaybeTlsStream;

/// The Origin of the document's Go example.
pub const ORIGIN: &str = "http://localhost/";
/// Frames written to the transcript per connection; the rest are counted.
const SHOWN_FRAMES: usize = 12;

/// What the server did next.
#[derive(Debug, Clone, PartialEq)]
pub enum Frame {
    Binary(Bytes),
    Text(String),
    Close(Option<(u16, String)>),
    Dropped(String),
    Silence(Duration),
}

impl Frame {
    pub fn describe(&self) -> String {
        match self {
            Self::Binary(bytes) => crate::wire::ecapture::describe_frame(bytes),
            Self::Text(text) => format!("a text frame {}", crate::check::truncate(text, 200)),
            Self::Close(Some((code, reason))) => format!("close {code} {reason:?}"),
            Self::Close(None) => "close without a code".to_owned(),
            Self::Dropped(why) => format!("the connection dropped ({why})"),
            Self::Silence(wait) => format!("nothing within {} ms", wait.as_millis()),
        }
    }

    /// True for anything that ends the stream.
    pub fn is_end(&self) -> bool {
        matches!(self, Self::Close(_) | Self::Dropped(_))
    }
}

pub struct StreamClient {
    name: String,
    stream: super::ws::Socket,
    transcript: Transcript,
    received: usize,
}

impl std::fmt::Debug for StreamClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamClient")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl StreamClient {
    /// Connects to `url`, with `origin` as the Origin header when given.
    pub async fn try_connect(
        name: &str,
        url: &str,
        origin: Option<&str>,
        transcript: &Transcript,
        wait: Duration,
    ) -> Result<Self, ConnectError> {
        let stream = super::ws::open(name, url, origin, transcript, wait).await?;
        Ok(Self {
            name: name.to_owned(),
            stream,
            transcript: transcript.clone(),
            received: 0,
        })
    }

    /// Connects with the document's Origin, or fails the case.
    pub async fn connect(
        name: &str,
        url: &str,
        transcript: &Transcript,
        wait: Duration,
    ) -> Result<Self, Failure> {
        Self::try_connect(name, url, Some(ORIGIN), transcript, wait)
            .await
            .map_err(|e| {
                Failure::mismatch(format!("a WebSocket connection to {url}"), format!("{e:?}"))
            })
    }

    /// The next frame within `wait`.
    pub async fn next_within(&mut self, wait: Duration) -> Frame {
        let frame = loop {
            match tokio::time::timeout(wait, self.stream.next()).await {
                Err(_) => break Frame::Silence(wait),
                Ok(None) => break Frame::Dropped("end of stream".to_owned()),
                Ok(Some(Err(e))) => break Frame::Dropped(e.to_string()),
                Ok(Some(Ok(Message::Binary(bytes)))) => break Frame::Binary(bytes),
                Ok(Some(Ok(Message::Text(text)))) => break Frame::Text(text.to_string()),
                Ok(Some(Ok(Message::Close(close)))) => {
                    break Frame::Close(close.map(|f| (u16::from(f.code), f.reason.to_string())))
                }
                Ok(Some(Ok(_))) => continue,
            }
        };
        self.note_received(&frame);
        frame
    }

    fn note_received(&mut self, frame: &Frame) {
        self.received += 1;
        let data = matches!(frame, Frame::Binary(_) | Frame::Text(_));
        if !data || self.received <= SHOWN_FRAMES {
            self.transcript.record(&self.name, "←", &frame.describe());
        } else if self.received == SHOWN_FRAMES + 1 {
            self.transcript
                .record(&self.name, "←", "… further frames are not shown");
        }
    }

    pub async fn send(&mut self, message: Message, shown: &str) -> Result<(), Failure> {
        self.transcript.record(&self.name, "→", shown);
        self.stream.send(message).await.map_err(|e| {
            Failure::mismatch("the connection to stay open for sending", e.to_string())
        })
    }

    /// Resets the TCP connection without a close frame.
    pub fn abort(self) {
        self.transcript
            .record(&self.name, "→", "TCP reset, without a close frame");
        if let MaybeTlsStream::Plain(tcp) = self.stream.get_ref() {
            let _ = tcp.set_zero_linger();
        }
    }

    pub async fn close(mut self) {
        let _ = self.stream.close(None).await;
    }
}
