//! One signaling connection as a sans-IO state machine: frame limits, the rate limit and the
//! keepalive. What it decodes goes to the [`super::Hub`]; what it refuses goes there too, so
//! that one place writes errors.

use super::codes::ErrorCode;
use super::messages::{decode, type_of, ClientMessage};
use crate::faults::{Fault, Faults};
use crate::protocol::rate::TokenBucket;
use crate::protocol::Now;
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Settings that hold for every connection of one server.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// L6: a WebSocket ping goes out this long after the last one.
    pub ping_period: Duration,
    /// L6: a client that sent nothing, not even a pong, for this long is dropped (1001).
    pub idle_timeout: Duration,
    /// Sustained frames per second one client may send, and the burst above it.
    pub rate_per_sec: f64,
    pub rate_burst: f64,
    pub faults: Faults,
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            ping_period: Duration::from_secs(20),
            idle_timeout: Duration::from_secs(60),
            rate_per_sec: 100.0,
            rate_burst: 500.0,
            faults: Faults::none(),
        }
    }
}

/// A frame as the driver read it.
#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    Text(String),
    /// A binary frame, by its length.
    Binary(usize),
    /// A pong or a ping: the peer is alive.
    Heard,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// Hand this message to the hub.
    Deliver(ClientMessage),
    /// Refuse the frame through the hub, which writes the error.
    Refuse {
        code: ErrorCode,
        message: String,
        request_type: Option<String>,
    },
    Ping,
    Close {
        code: u16,
        reason: String,
    },
}

#[derive(Debug)]
pub struct Session {
    config: SessionConfig,
    last_heard: Instant,
    next_ping: Instant,
    bucket: TokenBucket,
    closed: bool,
    outputs: VecDeque<Output>,
}

impl Session {
    pub fn open(now: Now, config: SessionConfig) -> Self {
        Self {
            last_heard: now.mono,
            next_ping: now.mono + config.ping_period,
            bucket: TokenBucket::new(now.mono, config.rate_per_sec, config.rate_burst),
            config,
            closed: false,
            outputs: VecDeque::new(),
        }
    }

    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// When [`Session::handle_timeout`] must next run.
    pub fn poll_timeout(&self) -> Option<Instant> {
        (!self.closed).then(|| {
            self.next_ping
                .min(self.last_heard + self.config.idle_timeout)
        })
    }

    pub fn handle_timeout(&mut self, now: Now) {
        if self.closed {
            return;
        }
        if now.mono >= self.last_heard + self.config.idle_timeout {
            let secs = self.config.idle_timeout.as_secs();
            return self.close(1001, format!("nothing heard for {secs} s"));
        }
        if now.mono >= self.next_ping {
            self.next_ping = now.mono + self.config.ping_period;
            self.outputs.push_back(Output::Ping);
        }
    }

    pub fn handle_input(&mut self, now: Now, input: Input) {
        if self.closed {
            return;
        }
        self.last_heard = now.mono;
        if matches!(input, Input::Heard) {
            return;
        }
        if !self.bucket.take(now.mono) {
            let message = format!("more than {} frames per second", self.config.rate_per_sec);
            return self.refuse(ErrorCode::RateLimited, message, None);
        }
        match input {
            Input::Text(text)
                if text.len() > super::MAX_FRAME_BYTES && !self.accepts_oversized() =>
            {
                let max = super::MAX_FRAME_BYTES;
                self.close(1009, format!("frame larger than {max} bytes"));
            }
            Input::Text(text) => self.on_text(&text),
            Input::Binary(_) => {
                let message = "binary frames are not part of the protocol; send JSON text";
                self.refuse(ErrorCode::UnsupportedFrame, message.to_owned(), None);
            }
            Input::Heard => {}
        }
    }

    fn accepts_oversized(&self) -> bool {
        self.config.faults.has(Fault::LogrtcAcceptOversized)
    }

    fn on_text(&mut self, text: &str) {
        match decode(text) {
            Ok(message) => self.outputs.push_back(Output::Deliver(message)),
            Err(error) => self.refuse(error.code(), error.to_string(), type_of(text)),
        }
    }

    fn refuse(&mut self, code: ErrorCode, message: String, request_type: Option<String>) {
        if code.close_code().is_some() {
            self.closed = true;
        }
        self.outputs.push_back(Output::Refuse {
            code,
            message,
            request_type,
        });
    }

    fn close(&mut self, code: u16, reason: String) {
        self.closed = true;
        self.outputs.push_back(Output::Close { code, reason });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> Now {
        Now {
            mono: Instant::now(),
            wall: chrono::Utc::now(),
        }
    }

    #[test]
    fn a_decoded_frame_goes_to_the_hub_and_garbage_is_refused() {
        let t = now();
        let mut session = Session::open(t, SessionConfig::default());
        session.handle_input(t, Input::Text(r#"{"type":"ping"}"#.to_owned()));
        assert_eq!(
            session.poll_output(),
            Some(Output::Deliver(ClientMessage::Ping))
        );
        session.handle_input(t, Input::Text("{".to_owned()));
        assert!(matches!(
            session.poll_output(),
            Some(Output::Refuse {
                code: ErrorCode::BadJson,
                ..
            })
        ));
        assert!(!session.is_closed());
    }

    #[test]
    fn an_oversized_frame_closes_with_1009() {
        let t = now();
        let mut session = Session::open(t, SessionConfig::default());
        let big = format!(
            r#"{{"type":"ping","pad":"{}"}}"#,
            "x".repeat(super::super::MAX_FRAME_BYTES)
        );
        session.handle_input(t, Input::Text(big));
        assert!(matches!(
            session.poll_output(),
            Some(Output::Close { code: 1009, .. })
        ));
    }

    #[test]
    fn a_flood_past_the_burst_is_refused_and_closed() {
        let t = now();
        let config = SessionConfig {
            rate_burst: 3.0,
            ..SessionConfig::default()
        };
        let mut session = Session::open(t, config);
        for _ in 0..4 {
            session.handle_input(t, Input::Text(r#"{"type":"ping"}"#.to_owned()));
        }
        let outputs: Vec<_> = std::iter::from_fn(|| session.poll_output()).collect();
        assert!(matches!(
            outputs.last(),
            Some(Output::Refuse {
                code: ErrorCode::RateLimited,
                ..
            })
        ));
        assert!(session.is_closed());
    }

    #[test]
    fn pings_go_out_each_period_and_silence_closes() {
        let t = now();
        let config = SessionConfig::default();
        let mut session = Session::open(t, config.clone());
        session.handle_timeout(t.after(config.ping_period));
        assert_eq!(session.poll_output(), Some(Output::Ping));
        session.handle_timeout(t.after(config.idle_timeout));
        assert!(matches!(
            session.poll_output(),
            Some(Output::Close { code: 1001, .. })
        ));
    }
}
