//! One protoo connection as a sans-IO state machine: frame limits, the rate limit and the
//! keepalive deadline. What it decodes goes to the [`super::Rooms`]; what it refuses goes there
//! too, so that one place writes errors.

use super::codes::ErrorCode;
use super::messages::{decode, Incoming};
use crate::faults::{Fault, Faults};
use crate::protocol::rate::TokenBucket;
use crate::protocol::Now;
use serde_json::Value;
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Settings that hold for every connection of one server.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// S6: a peer that sent no request for this long is removed (close 4408).
    pub keepalive_timeout: Duration,
    /// Sustained frames per second one peer may send, and the burst above it.
    pub rate_per_sec: f64,
    pub rate_burst: f64,
    pub faults: Faults,
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            keepalive_timeout: Duration::from_secs(60),
            rate_per_sec: 50.0,
            rate_burst: 200.0,
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
}

#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// Hand this request to the rooms.
    Deliver(Incoming),
    /// Refuse the frame through the rooms, which write the error.
    Refuse {
        id: Value,
        code: ErrorCode,
        reason: String,
    },
    Close {
        code: u16,
        reason: String,
    },
}

#[derive(Debug)]
pub struct Session {
    config: SessionConfig,
    deadline: Instant,
    bucket: TokenBucket,
    closed: bool,
    outputs: VecDeque<Output>,
}

impl Session {
    pub fn open(now: Now, config: SessionConfig) -> Self {
        Self {
            deadline: now.mono + config.keepalive_timeout,
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
        let watched = !self.config.faults.has(Fault::SfuIgnoreKeepaliveTimeout);
        (!self.closed && watched).then_some(self.deadline)
    }

    pub fn handle_timeout(&mut self, now: Now) {
        if self.closed || self.poll_timeout().is_none_or(|t| now.mono < t) {
            return;
        }
        let secs = self.config.keepalive_timeout.as_secs_f64();
        self.close(super::CLOSE_KEEPALIVE, format!("no request for {secs} s"));
    }

    pub fn handle_input(&mut self, now: Now, input: Input) {
        if self.closed {
            return;
        }
        self.deadline = now.mono + self.config.keepalive_timeout;
        if !self.bucket.take(now.mono) {
            let per_sec = self.config.rate_per_sec;
            let reason = format!("more than {per_sec} frames per second");
            return self.refuse(Value::Null, ErrorCode::RateLimited, reason);
        }
        match input {
            Input::Text(text) if text.len() > super::MAX_FRAME_BYTES => self.too_large(&text),
            Input::Text(text) => self.on_text(&text),
            Input::Binary(_) => {
                let reason = "protoo frames are JSON text; binary frames are refused";
                self.refuse(Value::Null, ErrorCode::UnsupportedFrame, reason.to_owned());
            }
        }
    }

    /// S7: an oversized frame is answered `too_large`, with its id when one can be read.
    fn too_large(&mut self, text: &str) {
        let id = serde_json::from_str::<Value>(text)
            .ok()
            .and_then(|v| v.get("id").cloned())
            .unwrap_or(Value::Null);
        let max = super::MAX_FRAME_BYTES;
        self.refuse(
            id,
            ErrorCode::TooLarge,
            format!("frames are limited to {max} bytes"),
        );
    }

    fn on_text(&mut self, text: &str) {
        match decode(text) {
            Ok(incoming) => self.outputs.push_back(Output::Deliver(incoming)),
            Err(refusal) => self.refuse(refusal.id, refusal.code, refusal.reason),
        }
    }

    fn refuse(&mut self, id: Value, code: ErrorCode, reason: String) {
        if code.close_code().is_some() {
            self.closed = true;
        }
        self.outputs.push_back(Output::Refuse { id, code, reason });
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
    fn a_request_goes_to_the_rooms_and_garbage_is_refused() {
        let t = now();
        let mut session = Session::open(t, SessionConfig::default());
        let join = r#"{"request":true,"id":1,"method":"keepalive","data":{"rid":"r"}}"#;
        session.handle_input(t, Input::Text(join.to_owned()));
        assert!(matches!(session.poll_output(), Some(Output::Deliver(_))));
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
    fn an_oversized_frame_is_answered_too_large_with_its_id() {
        let t = now();
        let mut session = Session::open(t, SessionConfig::default());
        let pad = "x".repeat(super::super::MAX_FRAME_BYTES);
        let big = format!(
            r#"{{"request":true,"id":9,"method":"broadcast","data":{{"rid":"r","data":"{pad}"}}}}"#
        );
        session.handle_input(t, Input::Text(big));
        let Some(Output::Refuse { id, code, .. }) = session.poll_output() else {
            panic!("expected a refusal");
        };
        assert_eq!((id, code), (serde_json::json!(9), ErrorCode::TooLarge));
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
            session.handle_input(t, Input::Text("{}".to_owned()));
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
    fn silence_past_the_keepalive_timeout_closes_and_a_request_defers_it() {
        let t = now();
        let config = SessionConfig::default();
        let mut session = Session::open(t, config.clone());
        let half = config.keepalive_timeout / 2;
        let keepalive = r#"{"request":true,"id":1,"method":"keepalive","data":{"rid":"r"}}"#;
        session.handle_input(t.after(half), Input::Text(keepalive.to_owned()));
        session.poll_output();
        session.handle_timeout(t.after(config.keepalive_timeout));
        assert_eq!(session.poll_output(), None);
        session.handle_timeout(t.after(half + config.keepalive_timeout));
        assert!(matches!(
            session.poll_output(),
            Some(Output::Close {
                code: super::super::CLOSE_KEEPALIVE,
                ..
            })
        ));
    }
}
