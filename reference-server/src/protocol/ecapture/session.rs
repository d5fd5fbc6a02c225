//! One client connection: heartbeats on a schedule, client frames read and discarded.
//!
//! eCapture sends a heartbeat right after connect and then every 15 s, counting from 0 on each
//! connection, and ignores whatever a client sends (the stream is push-only).

use super::entries;
use super::pb::LogEntry;
use crate::faults::{Fault, Faults};
use crate::protocol::Now;
use std::collections::VecDeque;
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct SessionConfig {
    pub heartbeat_period: Duration,
    pub faults: Faults,
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            heartbeat_period: super::HEARTBEAT_PERIOD,
            faults: Faults::none(),
        }
    }
}

/// What happened on the connection.
#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    /// A text or binary frame from the client, of this many bytes.
    ClientFrame(usize),
}

/// What the driver must do.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    Send(LogEntry),
    Close { code: u16, reason: String },
}

#[derive(Debug)]
pub struct Session {
    config: SessionConfig,
    next_heartbeat: Option<Instant>,
    count: i64,
    outputs: VecDeque<Output>,
}

impl Session {
    /// A new connection; its first heartbeat is due at once.
    pub fn open(now: Now, config: SessionConfig) -> Self {
        let first = if config.faults.has(Fault::EcaptureNoHeartbeat) {
            None
        } else if config.faults.has(Fault::EcaptureNoConnectHeartbeat) {
            Some(now.mono + config.heartbeat_period)
        } else {
            Some(now.mono)
        };
        let mut session = Self {
            config,
            next_heartbeat: first,
            count: 0,
            outputs: VecDeque::new(),
        };
        session.handle_timeout(now);
        session
    }

    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        self.next_heartbeat
    }

    pub fn handle_timeout(&mut self, now: Now) {
        let Some(due) = self.next_heartbeat else {
            return;
        };
        if now.mono < due {
            return;
        }
        self.outputs.push_back(Output::Send(entries::heartbeat(
            now.wall.timestamp(),
            self.count,
        )));
        self.count += 1;
        // Scheduled from now, not from `due`: a driver that was late does not burst.
        self.next_heartbeat = Some(now.mono + self.period());
    }

    pub fn handle_input(&mut self, _now: Now, input: Input) {
        match input {
            Input::ClientFrame(_) if self.config.faults.has(Fault::EcaptureCloseOnClientFrame) => {
                self.next_heartbeat = None;
                self.outputs.push_back(Output::Close {
                    code: 1003,
                    reason: "this stream is push-only".to_owned(),
                });
            }
            Input::ClientFrame(len) if len > super::MAX_CLIENT_FRAME_BYTES => {
                self.next_heartbeat = None;
                self.outputs.push_back(Output::Close {
                    code: 1009,
                    reason: format!(
                        "frame of {len} bytes; the limit is {}",
                        super::MAX_CLIENT_FRAME_BYTES
                    ),
                });
            }
            // Push-only: frames from clients are read and discarded.
            Input::ClientFrame(_) => {}
        }
    }

    fn period(&self) -> Duration {
        if self.config.faults.has(Fault::EcaptureSlowHeartbeat) {
            self.config.heartbeat_period * 3
        } else {
            self.config.heartbeat_period
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::ecapture::MAX_CLIENT_FRAME_BYTES;
    use chrono::Utc;

    fn now() -> Now {
        Now {
            mono: Instant::now(),
            wall: Utc::now(),
        }
    }

    #[test]
    fn a_heartbeat_is_due_at_open_then_every_period() {
        let start = now();
        let mut session = Session::open(start, SessionConfig::default());
        assert!(matches!(session.poll_output(), Some(Output::Send(_))));
        assert_eq!(
            session.poll_timeout(),
            Some(start.mono + super::super::HEARTBEAT_PERIOD)
        );
        session.handle_timeout(start.after(Duration::from_secs(14)));
        assert_eq!(session.poll_output(), None);
        session.handle_timeout(start.after(super::super::HEARTBEAT_PERIOD));
        assert!(matches!(session.poll_output(), Some(Output::Send(_))));
    }

    #[test]
    fn client_frames_are_ignored_up_to_the_limit_and_closed_with_1009_beyond() {
        let mut session = Session::open(now(), SessionConfig::default());
        session.poll_output();
        session.handle_input(now(), Input::ClientFrame(MAX_CLIENT_FRAME_BYTES));
        assert_eq!(session.poll_output(), None);
        session.handle_input(now(), Input::ClientFrame(MAX_CLIENT_FRAME_BYTES + 1));
        assert!(matches!(
            session.poll_output(),
            Some(Output::Close { code: 1009, .. })
        ));
        assert_eq!(session.poll_timeout(), None);
    }
}
