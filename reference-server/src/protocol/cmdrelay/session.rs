//! One client connection as a sans-IO state machine.
//!
//! The driver feeds [`Input`]s with the current [`Now`] and drains [`Output`]s. The token
//! check, joining a room and counting it are outputs the driver answers with an input before
//! it reads the next frame; frames that arrive while an answer is pending are kept in order.

use super::codes::ErrorCode;
use super::messages::{cmd_of, decode, RelayKind, Request, Response};
use crate::faults::{Fault, Faults};
use crate::protocol::rate::TokenBucket;
use crate::protocol::Now;
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Messages after which the `stall-on-flood` fault stops answering.
const STALL_AFTER: u32 = 50;

/// Settings that hold for every session of one server.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// Period of the server's `Heartbeat`, counted from the accepted `init`.
    pub heartbeat_period: Duration,
    /// A connection that has not sent `init` by then is closed (1008).
    pub init_timeout: Duration,
    /// A client that sent nothing, not even a pong, for this long is dropped (1001).
    pub idle_timeout: Duration,
    /// Sustained frames per second one client may send, and the burst above it.
    pub rate_per_sec: f64,
    pub rate_burst: f64,
    pub faults: Faults,
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            heartbeat_period: Duration::from_secs(10),
            init_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            rate_per_sec: 200.0,
            rate_burst: 1000.0,
            faults: Faults::none(),
        }
    }
}

/// What the token store said about a token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenStatus {
    Valid,
    Unknown,
    Expired,
    Revoked,
    StoreFailed(String),
}

#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    Text(String),
    Binary,
    /// The answer to [`Output::CheckToken`].
    TokenChecked(TokenStatus),
    /// The answer to [`Output::Join`].
    Joined {
        session_id: String,
    },
    /// The answer to [`Output::QueryRoomSize`]: clients in the room, this one included.
    RoomSize(usize),
    /// A pong or another control frame: the peer is alive.
    Heard,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// A frame for this client.
    Send(String),
    /// Ask the token store; answer with [`Input::TokenChecked`].
    CheckToken(String),
    /// Put this connection in the room of `token`; answer with [`Input::Joined`].
    Join {
        token: String,
    },
    /// Take this connection out of its room.
    Leave,
    /// Count this connection's room; answer with [`Input::RoomSize`].
    QueryRoomSize,
    /// Send this frame, as it is, to the other clients of the room.
    Relay(String),
    /// A WebSocket ping, so that a dead peer shows.
    Ping,
    Close {
        code: u16,
        reason: String,
    },
}

#[derive(Debug, Clone, PartialEq)]
enum State {
    AwaitingInit,
    CheckingToken { token: String },
    Joining,
    Joined,
    Closed,
}

#[derive(Debug)]
pub struct Session {
    config: SessionConfig,
    state: State,
    opened: Instant,
    last_heard: Instant,
    next_heartbeat: Option<Instant>,
    bucket: TokenBucket,
    received: u32,
    /// Frames that arrived while an answer from the driver was pending.
    deferred: VecDeque<String>,
    /// A relay held back by the `reorder-relays` fault.
    held_relay: Option<String>,
    outputs: VecDeque<Output>,
}

impl Session {
    pub fn open(now: Now, config: SessionConfig) -> Self {
        let next_heartbeat = config
            .faults
            .has(Fault::CmdrelayHeartbeatBeforeInit)
            .then(|| now.mono + config.heartbeat_period);
        Self {
            bucket: TokenBucket::new(now.mono, config.rate_per_sec, config.rate_burst),
            config,
            state: State::AwaitingInit,
            opened: now.mono,
            last_heard: now.mono,
            next_heartbeat,
            received: 0,
            deferred: VecDeque::new(),
            held_relay: None,
            outputs: VecDeque::new(),
        }
    }

    pub fn is_joined(&self) -> bool {
        self.state == State::Joined
    }

    pub fn is_closed(&self) -> bool {
        self.state == State::Closed
    }

    fn has(&self, fault: Fault) -> bool {
        self.config.faults.has(fault)
    }

    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// When [`Session::handle_timeout`] must next run.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.is_closed() {
            return None;
        }
        let init_deadline =
            (self.state == State::AwaitingInit).then(|| self.opened + self.config.init_timeout);
        let idle_deadline = self.last_heard + self.config.idle_timeout;
        [init_deadline, self.next_heartbeat, Some(idle_deadline)]
            .into_iter()
            .flatten()
            .min()
    }

    pub fn handle_timeout(&mut self, now: Now) {
        if self.is_closed() {
            return;
        }
        if self.state == State::AwaitingInit && now.mono >= self.opened + self.config.init_timeout {
            let secs = self.config.init_timeout.as_secs();
            return self.close(1008, format!("no init within {secs} s"));
        }
        if now.mono >= self.last_heard + self.config.idle_timeout {
            let secs = self.config.idle_timeout.as_secs();
            return self.close(1001, format!("nothing heard for {secs} s"));
        }
        if self.next_heartbeat.is_some_and(|at| now.mono >= at) {
            self.send_heartbeat(now);
        }
    }

    pub fn handle_input(&mut self, now: Now, input: Input) {
        if self.is_closed() {
            return;
        }
        // Only the peer's own frames show that it is alive, not the driver's answers.
        if matches!(input, Input::Text(_) | Input::Binary | Input::Heard) {
            self.last_heard = now.mono;
        }
        match input {
            Input::Text(text) => self.on_frame(now, Some(text)),
            Input::Binary => self.on_frame(now, None),
            Input::TokenChecked(status) => self.on_token_checked(status),
            Input::Joined { session_id } => self.on_joined(now, &session_id),
            Input::RoomSize(size) => self.on_room_size(size),
            Input::Heard => {}
        }
    }

    /// Rate limit, then either handle the frame or keep it until a pending answer arrives.
    fn on_frame(&mut self, now: Now, text: Option<String>) {
        self.received = self.received.saturating_add(1);
        if self.has(Fault::CmdrelayStallOnFlood) && self.received > STALL_AFTER {
            return;
        }
        if !self.bucket.take(now.mono) {
            let per_sec = self.config.rate_per_sec;
            self.refuse(
                None,
                ErrorCode::RateLimited,
                format!("more than {per_sec} frames per second"),
            );
            return;
        }
        let Some(text) = text else {
            let message = "binary frames are not part of the protocol; send JSON text";
            return self.refuse(None, ErrorCode::UnsupportedFrame, message);
        };
        match self.state {
            State::CheckingToken { .. } | State::Joining => self.deferred.push_back(text),
            _ => self.on_text(&text),
        }
    }

    fn on_text(&mut self, text: &str) {
        let request = match decode(text) {
            Ok(request) => request,
            Err(error) => {
                let cmd = cmd_of(text);
                return self.refuse(cmd.as_deref(), error.code(), error.to_string());
            }
        };
        match (&self.state, request) {
            (State::AwaitingInit, Request::Init { token }) => self.on_init(token),
            (State::AwaitingInit, Request::Relay(_))
                if self.has(Fault::CmdrelayRelayBeforeInit) =>
            {
                self.deferred.push_back(text.to_owned());
            }
            (State::AwaitingInit, Request::CheckDevice)
                if self.has(Fault::CmdrelayAnswerBeforeInit) =>
            {
                self.send(Response::check_device(1));
            }
            (State::AwaitingInit, request) => {
                let message = "send init with a token first";
                self.refuse(Some(cmd_name(&request)), ErrorCode::NotInitialized, message);
            }
            (State::Joined, Request::Init { token })
                if self.has(Fault::CmdrelayReinitSwitchesRoom) =>
            {
                self.outputs.push_back(Output::Leave);
                self.state = State::AwaitingInit;
                self.on_init(token);
            }
            (State::Joined, Request::Init { .. }) => {
                let message =
                    "this connection is already initialised; open another to use another token";
                self.refuse(Some("init"), ErrorCode::AlreadyInitialized, message);
            }
            (State::Joined, Request::CheckDevice) => self.outputs.push_back(Output::QueryRoomSize),
            (State::Joined, Request::Relay(kind)) => self.relay(kind, text),
            (State::Joined, Request::Unknown(cmd)) => {
                let message = format!(
                    "unknown cmd {cmd:?}; known: {}",
                    super::CLIENT_COMMANDS.join(", ")
                );
                self.refuse(Some(&cmd), ErrorCode::UnknownCommand, message);
            }
            // Unreachable: frames that arrive in these states are deferred (or the session is
            // over) before `on_text` is called.
            (State::CheckingToken { .. } | State::Joining | State::Closed, _) => {}
        }
    }

    fn on_init(&mut self, token: Option<String>) {
        let accept_any = self.has(Fault::CmdrelayAcceptAnyToken);
        match token {
            Some(token) => {
                self.state = State::CheckingToken {
                    token: token.clone(),
                };
                self.outputs.push_back(Output::CheckToken(token));
            }
            None if accept_any => self.on_token_checked_for(String::new(), TokenStatus::Valid),
            None => self.reject_token("init needs a string `token`"),
        }
    }

    fn on_token_checked(&mut self, status: TokenStatus) {
        let State::CheckingToken { token } = &self.state else {
            return;
        };
        let token = token.clone();
        self.on_token_checked_for(token, status);
    }

    fn on_token_checked_for(&mut self, token: String, status: TokenStatus) {
        let status = if self.has(Fault::CmdrelayAcceptAnyToken) {
            TokenStatus::Valid
        } else {
            status
        };
        match status {
            TokenStatus::Valid => {
                self.state = State::Joining;
                self.outputs.push_back(Output::Join { token });
            }
            TokenStatus::Unknown => self.reject_token("unknown token"),
            TokenStatus::Expired => self.reject_token("the token has expired"),
            TokenStatus::Revoked => self.reject_token("the token was revoked"),
            TokenStatus::StoreFailed(why) => {
                self.refuse(Some("init"), ErrorCode::StoreUnavailable, why);
            }
        }
    }

    /// 003 错误处理: "如果初始化消息中的令牌无效，服务器将返回错误响应并关闭连接。"
    fn reject_token(&mut self, why: &str) {
        let silent = self.has(Fault::CmdrelaySilentTokenRejection);
        let keep_open = self.has(Fault::CmdrelayKeepOpenOnBadToken);
        if !silent {
            self.send(Response::error(Some("init"), ErrorCode::InvalidToken, why));
        }
        if keep_open {
            self.state = State::AwaitingInit;
        } else {
            self.close(1008, format!("invalid token: {why}"));
        }
    }

    fn on_joined(&mut self, now: Now, session_id: &str) {
        if self.state != State::Joining {
            return;
        }
        self.state = State::Joined;
        if !self.has(Fault::CmdrelayNoInitResponse) {
            self.send(Response::init_accepted(session_id));
        }
        if self.next_heartbeat.is_none() {
            self.next_heartbeat = Some(now.mono + self.heartbeat_period());
        }
        while let Some(text) = self.deferred.pop_front() {
            if self.state != State::Joined {
                break;
            }
            self.on_text(&text);
        }
    }

    fn on_room_size(&mut self, size: usize) {
        let size = if self.has(Fault::CmdrelayCheckDeviceAlwaysOne) {
            2
        } else if self.has(Fault::CmdrelayCheckDeviceAlwaysZero) {
            1
        } else {
            size
        };
        self.send(Response::check_device(size));
    }

    /// 003 execute / execute_result: "服务器处理后不返回响应" - relayed, never answered.
    fn relay(&mut self, kind: RelayKind, text: &str) {
        if kind == RelayKind::ExecuteResult && self.has(Fault::CmdrelayDropExecuteResult) {
            return;
        }
        let frame = if self.has(Fault::CmdrelayMangleRelay) {
            format!(r#"{{"cmd":"{}","extra":{{}}}}"#, kind.cmd())
        } else {
            text.to_owned()
        };
        if self.has(Fault::CmdrelayAnswerRelay) {
            self.send(Response::new(kind.cmd(), super::codes::OK));
        }
        if self.has(Fault::CmdrelayReorderRelays) {
            match self.held_relay.take() {
                None => return self.held_relay = Some(frame),
                Some(held) => {
                    self.outputs.push_back(Output::Relay(frame));
                    self.outputs.push_back(Output::Relay(held));
                    return;
                }
            }
        }
        self.outputs.push_back(Output::Relay(frame));
    }

    fn send_heartbeat(&mut self, now: Now) {
        self.next_heartbeat = Some(now.mono + self.heartbeat_period());
        if self.has(Fault::CmdrelayNoHeartbeat) {
            return;
        }
        let heartbeat = if self.has(Fault::CmdrelayHeartbeatWrongShape) {
            Response::new("heartbeat", "0")
        } else {
            Response::heartbeat()
        };
        self.send(heartbeat);
        self.outputs.push_back(Output::Ping);
    }

    fn heartbeat_period(&self) -> Duration {
        if self.has(Fault::CmdrelaySlowHeartbeat) {
            self.config.heartbeat_period * 3
        } else {
            self.config.heartbeat_period
        }
    }

    /// Answers with an error; the errors that end the connection close it.
    fn refuse(&mut self, cmd: Option<&str>, code: ErrorCode, message: impl Into<String>) {
        let message = message.into();
        if !self.has(Fault::CmdrelaySilentOnError) || code.close_code().is_some() {
            self.send(Response::error(cmd, code, message.clone()));
        }
        match code.close_code() {
            Some(close) => self.close(close, format!("{}: {message}", code.name())),
            None if self.has(Fault::CmdrelayCloseOnError) => {
                self.close(1008, format!("{}: {message}", code.name()));
            }
            None => {}
        }
    }

    fn send(&mut self, response: Response) {
        let text = if self.has(Fault::CmdrelayNumericCodes) {
            numeric_code(&response)
        } else {
            response.encode()
        };
        self.outputs.push_back(Output::Send(text));
    }

    fn close(&mut self, code: u16, reason: String) {
        self.state = State::Closed;
        self.next_heartbeat = None;
        self.outputs.push_back(Output::Close { code, reason });
    }
}

/// The `numeric-codes` fault: `"code": 1` instead of `"code": "1"`.
fn numeric_code(response: &Response) -> String {
    let mut value = serde_json::to_value(response).unwrap_or_default();
    if let Ok(code) = response.code.parse::<u64>() {
        value["code"] = code.into();
    }
    value.to_string()
}

fn cmd_name(request: &Request) -> &str {
    match request {
        Request::Init { .. } => "init",
        Request::CheckDevice => "checkDevice",
        Request::Relay(kind) => kind.cmd(),
        Request::Unknown(cmd) => cmd,
    }
}
