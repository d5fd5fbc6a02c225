//! One node connection as a sans-IO state machine.
//!
//! The driver feeds [`Input`]s with the current [`Now`], then drains [`Output`]s. Storage is an
//! output too: the session emits [`Output::Persist`] and sends the acknowledgement only when
//! the driver reports the write committed ("write first, then ack").

use super::envelope::{decode_node_frame, Envelope, Inbound, Payload, Rejection};
use super::error::{DecodeError, ErrorCode};
use super::messages::{self, CommandResult, Metrics, NodeInfo, NodeMessage};
use super::{MAX_FRAME_BYTES, NODE_MESSAGE_TYPES};
use crate::faults::{Fault, Faults};
use crate::protocol::Now;
use chrono::{DateTime, Utc};
use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

/// Settings that hold for every session of one server.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    pub token: String,
    /// A registered node with no heartbeat for this long is marked offline.
    pub offline_after: Duration,
    /// Added to a command's own timeout before the core declares COMMAND_TIMEOUT, so that an
    /// agent that enforces the timeout itself has time to report.
    pub command_grace: Duration,
    /// Sustained messages per second a node may send, and the burst above it.
    pub rate_per_sec: f64,
    pub rate_burst: f64,
    pub faults: Faults,
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            token: super::DEFAULT_TOKEN.to_owned(),
            offline_after: Duration::from_secs(90),
            command_grace: Duration::from_secs(2),
            rate_per_sec: 50.0,
            rate_burst: 200.0,
            faults: Faults::none(),
        }
    }
}

/// What the node put in the connection URL, and an id the driver generated for it in case
/// it gave none (generation is randomness, which stays outside the core).
#[derive(Debug, Clone)]
pub struct ConnectParams {
    pub token: Option<String>,
    pub node_id: Option<String>,
    pub generated_node_id: String,
}

pub type Ticket = u64;

/// Why a store operation did not commit.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum StoreFailure {
    #[error("database error: {0}")]
    Database(String),
    #[error("no open command with that id for this node")]
    UnknownCommand,
    #[error("the command had already timed out")]
    CommandTimedOut,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    Text(String),
    Binary,
    /// The driver finished the [`Output::Persist`] with this ticket.
    Persisted {
        ticket: Ticket,
        result: Result<(), StoreFailure>,
    },
    /// An operator asked for a command to run on this node.
    Dispatch(CommandOrder),
}

#[derive(Debug, Clone, PartialEq)]
pub struct CommandOrder {
    pub command_id: String,
    pub command_text: String,
    pub timeout_secs: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    Send(Envelope),
    Persist {
        ticket: Ticket,
        op: StoreOp,
    },
    /// The connection now speaks for this node: route its commands here.
    Registered {
        node_id: String,
    },
    Close {
        code: u16,
        reason: String,
    },
    /// Drop the transport without a close frame (only ever from a fault).
    Abort,
}

/// A write the driver must commit before the session goes on.
#[derive(Debug, Clone, PartialEq)]
pub enum StoreOp {
    UpsertNode {
        node_id: String,
        info: NodeInfo,
        at: DateTime<Utc>,
    },
    RecordHeartbeat {
        node_id: String,
        status: String,
        metrics: Metrics,
        at: DateTime<Utc>,
    },
    /// Fails with [`StoreFailure::UnknownCommand`] unless the command is open for the node.
    CommandStarted {
        node_id: String,
        command_id: String,
        at: DateTime<Utc>,
    },
    /// Fails with `UnknownCommand` or `CommandTimedOut` unless the command is open.
    CommandFinished {
        node_id: String,
        result: CommandResult,
        at: DateTime<Utc>,
    },
    CommandTimedOut {
        command_id: String,
        at: DateTime<Utc>,
    },
    NodeOffline {
        node_id: String,
        at: DateTime<Utc>,
    },
}

/// What to do once a write has committed (or not).
#[derive(Debug, Clone)]
enum AfterPersist {
    RegisterResponse {
        request_id: String,
        node_id: String,
    },
    HeartbeatAck {
        request_id: String,
        node_id: String,
    },
    CommandStarted {
        request_id: String,
        node_id: String,
    },
    CommandReceived {
        request_id: String,
        node_id: String,
    },
    TimeoutNotice {
        execute_id: String,
        command_id: String,
        timeout_secs: u64,
    },
    Nothing,
}

#[derive(Debug, Clone)]
struct OpenCommand {
    execute_id: String,
    timeout_secs: u64,
    deadline: Instant,
}

/// The state of one node connection.
#[derive(Debug)]
pub struct Session {
    config: SessionConfig,
    connection_node_id: String,
    registered: Option<String>,
    online: bool,
    last_seen: Instant,
    open_commands: HashMap<String, OpenCommand>,
    /// Writes not yet persisted, oldest first: a driver answers them in ticket order, so the
    /// answer is nearly always the front (a map cost a hash insert and remove a heartbeat).
    awaiting: VecDeque<(Ticket, AfterPersist)>,
    next_ticket: Ticket,
    next_counter_id: u64,
    tokens: f64,
    refilled_at: Instant,
    messages_seen: u64,
    closed: bool,
    outputs: VecDeque<Output>,
}

impl Session {
    /// Opens a session: a welcome, or INVALID_TOKEN and a close (§4 错误处理).
    pub fn open(now: Now, params: ConnectParams, config: SessionConfig) -> Self {
        let faults = config.faults.clone();
        let generated = if faults.has(Fault::NodemgrFixedGeneratedNodeId) {
            "00000000-0000-4000-8000-000000000000".to_owned()
        } else {
            params.generated_node_id
        };
        let connection_node_id = match params.node_id.filter(|id| !id.is_empty()) {
            Some(_) if faults.has(Fault::NodemgrIgnoreUrlNodeId) => generated,
            Some(id) => id,
            None => generated,
        };
        let mut session = Self {
            tokens: config.rate_burst,
            config,
            connection_node_id,
            registered: None,
            online: false,
            last_seen: now.mono,
            open_commands: HashMap::new(),
            awaiting: VecDeque::new(),
            next_ticket: 0,
            next_counter_id: 0,
            refilled_at: now.mono,
            messages_seen: 0,
            closed: false,
            outputs: VecDeque::new(),
        };
        let token_ok = params.token.as_deref() == Some(session.config.token.as_str())
            || faults.has(Fault::NodemgrAcceptAnyToken);
        if !token_ok {
            let details = match params.token {
                None => "the URL has no token query parameter",
                Some(_) => "the token does not match this server's token",
            };
            session.send_error(now, None, ErrorCode::InvalidToken, details);
            session.close(4001, "invalid token");
        } else if !faults.has(Fault::NodemgrNoWelcome) {
            let mut data = messages::welcome_data(&session.connection_node_id);
            if faults.has(Fault::NodemgrWelcomeWithoutMessage) {
                data.as_object_mut().map(|o| o.remove("message"));
            }
            let id = session.fresh_id();
            session.send(now, "welcome", id, data);
        }
        session
    }

    pub fn node_id(&self) -> &str {
        self.registered
            .as_deref()
            .unwrap_or(&self.connection_node_id)
    }

    pub fn registered_node(&self) -> Option<&str> {
        self.registered.as_deref()
    }

    pub fn is_closed(&self) -> bool {
        self.closed
    }

    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// The next instant at which [`Session::handle_timeout`] has work to do.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let liveness = (self.registered.is_some() && self.online)
            .then(|| self.last_seen + self.config.offline_after);
        let commands = self.open_commands.values().map(|c| c.deadline).min();
        [liveness, commands].into_iter().flatten().min()
    }

    pub fn handle_input(&mut self, now: Now, input: Input) {
        if self.closed {
            return;
        }
        match input {
            Input::Text(text) => self.on_text(now, text),
            Input::Binary => self.on_binary(now),
            Input::Persisted { ticket, result } => self.on_persisted(now, ticket, result),
            Input::Dispatch(order) => self.on_dispatch(now, order),
        }
    }

    pub fn handle_timeout(&mut self, now: Now) {
        if self.closed {
            return;
        }
        self.expire_commands(now);
        self.check_liveness(now);
    }

    fn on_text(&mut self, now: Now, text: String) {
        if !self.admit(now) {
            return;
        }
        if text.len() > MAX_FRAME_BYTES {
            if !self.config.faults.has(Fault::NodemgrHangOnOversized) {
                self.close(1009, "frame larger than 65536 bytes");
            }
            return;
        }
        let text = if self.config.faults.has(Fault::NodemgrLenientTimestamps) {
            with_valid_timestamp(text)
        } else {
            text
        };
        match decode_node_frame(&text) {
            Ok(inbound) => self.on_message(now, inbound),
            Err(rejection) => self.on_rejection(now, rejection),
        }
    }

    fn on_binary(&mut self, now: Now) {
        if self.config.faults.has(Fault::NodemgrAbortOnBinary) {
            self.closed = true;
            self.outputs.push_back(Output::Abort);
            return;
        }
        if self.admit(now) {
            let details = "binary frames are not part of the protocol: send JSON text frames";
            self.send_error(now, None, ErrorCode::ParseError, details);
        }
    }

    /// Rate limit and the stall fault. Returns false when the message must not be handled.
    fn admit(&mut self, now: Now) -> bool {
        self.messages_seen += 1;
        if self.config.faults.has(Fault::NodemgrStallOnFlood) && self.messages_seen > 50 {
            return false;
        }
        let elapsed = now
            .mono
            .saturating_duration_since(self.refilled_at)
            .as_secs_f64();
        self.refilled_at = now.mono;
        self.tokens =
            (self.tokens + elapsed * self.config.rate_per_sec).min(self.config.rate_burst);
        if self.tokens < 1.0 {
            let reason = format!("rate limit: over {} messages/s", self.config.rate_per_sec);
            self.close(1008, &reason);
            return false;
        }
        self.tokens -= 1.0;
        true
    }

    fn on_rejection(&mut self, now: Now, rejection: Rejection) {
        let faults = &self.config.faults;
        let code = match rejection.error {
            DecodeError::UnknownType(_) if faults.has(Fault::NodemgrUnknownTypeAsParseError) => {
                ErrorCode::ParseError
            }
            ref error => error.code(),
        };
        if code == ErrorCode::ParseError && faults.has(Fault::NodemgrSilentOnParseError) {
            return;
        }
        let details = match &rejection.error {
            DecodeError::UnknownType(_) => {
                format!("支持的消息类型: {}", NODE_MESSAGE_TYPES.join(", "))
            }
            other => other.to_string(),
        };
        self.send_error(now, rejection.id, code, &details);
    }

    fn on_message(&mut self, now: Now, inbound: Inbound) {
        match inbound.message {
            NodeMessage::Register(info) => self.on_register(now, inbound.id, info),
            NodeMessage::Heartbeat(hb) => {
                self.on_heartbeat(now, inbound.id, hb.node_id, hb.status, hb.metrics)
            }
            NodeMessage::CommandStarted(started) => {
                self.on_command_started(now, inbound.id, started.command_id)
            }
            NodeMessage::CommandResult(result) => self.on_command_result(now, inbound.id, result),
        }
    }

    fn on_register(&mut self, now: Now, request_id: String, info: NodeInfo) {
        let node_id = info
            .node_id
            .clone()
            .filter(|id| !id.is_empty())
            .unwrap_or_else(|| self.connection_node_id.clone());
        if self.config.faults.has(Fault::NodemgrRegisterFailure) {
            return self.send_register_response(now, request_id, false, "注册失败", &node_id);
        }
        let may_change = self.config.faults.has(Fault::NodemgrAllowNodeIdChange);
        if let Some(current) = self
            .registered
            .as_deref()
            .filter(|c| *c != node_id && !may_change)
        {
            let message =
                format!("this connection is registered as {current}; node_id cannot change");
            let current = current.to_owned();
            return self.send_register_response(now, request_id, false, &message, &current);
        }
        let info = if self.config.faults.has(Fault::NodemgrDropNodeInfo) {
            NodeInfo::default()
        } else {
            info
        };
        let op = StoreOp::UpsertNode {
            node_id: node_id.clone(),
            info,
            at: now.wall,
        };
        self.persist(
            op,
            AfterPersist::RegisterResponse {
                request_id,
                node_id,
            },
        );
    }

    fn on_heartbeat(
        &mut self,
        now: Now,
        request_id: String,
        claimed: Option<String>,
        status: Option<String>,
        metrics: Metrics,
    ) {
        let Some(node_id) = self.node_for(now, &request_id, claimed.as_deref()) else {
            return;
        };
        self.last_seen = now.mono;
        self.online = true;
        let after = AfterPersist::HeartbeatAck {
            request_id,
            node_id: node_id.clone(),
        };
        if self.config.faults.has(Fault::NodemgrDropMetrics) || self.registered.is_none() {
            return self.after_persist(now, after, Ok(()));
        }
        let status = status.unwrap_or_else(|| "online".to_owned());
        let op = StoreOp::RecordHeartbeat {
            node_id,
            status,
            metrics,
            at: now.wall,
        };
        self.persist(op, after);
    }

    /// The registered node this message speaks for, or NODE_NOT_FOUND (CLARIFICATIONS.md:
    /// heartbeat and command messages need a registered connection, and a node_id in the data
    /// must be the registered one).
    fn node_for(&mut self, now: Now, request_id: &str, claimed: Option<&str>) -> Option<String> {
        if self.config.faults.has(Fault::NodemgrAcceptUnregistered) && self.registered.is_none() {
            return Some(self.connection_node_id.clone());
        }
        let details = match (self.registered.as_deref(), claimed) {
            (None, _) => "this connection has not sent node_register".to_owned(),
            (Some(node), Some(claimed))
                if node != claimed
                    && !self.config.faults.has(Fault::NodemgrIgnoreForeignNodeId) =>
            {
                format!("this connection is registered as {node}, not {claimed}")
            }
            (Some(node), _) => return Some(node.to_owned()),
        };
        self.send_error(
            now,
            Some(request_id.to_owned()),
            ErrorCode::NodeNotFound,
            &details,
        );
        None
    }

    fn on_command_started(&mut self, now: Now, request_id: String, command_id: String) {
        let Some(node_id) = self.node_for(now, &request_id, None) else {
            return;
        };
        if self.config.faults.has(Fault::NodemgrIgnoreCommandStarted) {
            return;
        }
        let node_id_for_reply = node_id.clone();
        let op = StoreOp::CommandStarted {
            node_id,
            command_id,
            at: now.wall,
        };
        self.persist(
            op,
            AfterPersist::CommandStarted {
                request_id,
                node_id: node_id_for_reply,
            },
        );
    }

    fn on_command_result(&mut self, now: Now, request_id: String, result: CommandResult) {
        let Some(node_id) = self.node_for(now, &request_id, None) else {
            return;
        };
        self.open_commands.remove(&result.command_id);
        let after = AfterPersist::CommandReceived {
            request_id,
            node_id: node_id.clone(),
        };
        if self.config.faults.has(Fault::NodemgrResultNotStored) {
            return self.after_persist(now, after, Ok(()));
        }
        let op = StoreOp::CommandFinished {
            node_id,
            result,
            at: now.wall,
        };
        self.persist(op, after);
    }

    fn on_dispatch(&mut self, now: Now, order: CommandOrder) {
        let execute_id = self.fresh_id();
        let timeout = Duration::from_secs(order.timeout_secs);
        self.open_commands.insert(
            order.command_id.clone(),
            OpenCommand {
                execute_id: execute_id.clone(),
                timeout_secs: order.timeout_secs,
                deadline: now.mono + timeout + self.config.command_grace,
            },
        );
        let data = messages::execute_command_data(
            &order.command_id,
            &order.command_text,
            order.timeout_secs,
        );
        self.send(now, "execute_command", execute_id, data);
    }

    fn on_persisted(&mut self, now: Now, ticket: Ticket, result: Result<(), StoreFailure>) {
        // Nearly always the front: the search starts there.
        let place = self
            .awaiting
            .iter()
            .position(|(waiting, _)| *waiting == ticket);
        if let Some((_, after)) = place.and_then(|place| self.awaiting.remove(place)) {
            self.after_persist(now, after, result);
        }
    }

    fn after_persist(&mut self, now: Now, after: AfterPersist, result: Result<(), StoreFailure>) {
        match (after, result) {
            (
                AfterPersist::RegisterResponse {
                    request_id,
                    node_id,
                },
                Ok(()),
            ) => {
                self.registered = Some(node_id.clone());
                self.online = true;
                self.last_seen = now.mono;
                self.outputs.push_back(Output::Registered {
                    node_id: node_id.clone(),
                });
                self.send_register_response(now, request_id, true, "节点注册成功", &node_id);
            }
            (
                AfterPersist::HeartbeatAck {
                    request_id,
                    node_id,
                },
                Ok(()),
            ) => self.send_heartbeat_ack(now, request_id, &node_id),
            (
                AfterPersist::CommandReceived {
                    request_id,
                    node_id,
                },
                outcome,
            ) => self.answer_result(now, request_id, &node_id, outcome),
            (
                AfterPersist::TimeoutNotice {
                    execute_id,
                    command_id,
                    timeout_secs,
                },
                Ok(()),
            ) => {
                let details =
                    format!("command {command_id} sent no command_result within {timeout_secs} s");
                self.send_error(now, Some(execute_id), ErrorCode::CommandTimeout, &details);
            }
            (AfterPersist::CommandStarted { .. } | AfterPersist::Nothing, Ok(())) => {}
            (AfterPersist::TimeoutNotice { .. }, Err(StoreFailure::UnknownCommand)) => {}
            // C8: a start for a command this core did not send to this node is refused the
            // same way as an unknown result.
            (
                AfterPersist::CommandStarted {
                    request_id,
                    node_id,
                },
                Err(StoreFailure::UnknownCommand),
            ) => {
                let received = self.config.faults.has(Fault::NodemgrAcceptUnknownCommands);
                self.send_received(now, "command_received", request_id, received, &node_id)
            }
            (after, Err(failure)) => self.report_store_failure(now, after, failure),
        }
    }

    fn answer_result(
        &mut self,
        now: Now,
        request_id: String,
        node_id: &str,
        outcome: Result<(), StoreFailure>,
    ) {
        match outcome {
            Ok(()) if self.config.faults.has(Fault::NodemgrNoCommandReceived) => {}
            Ok(()) => self.send_received(now, "command_received", request_id, true, node_id),
            Err(StoreFailure::UnknownCommand) => {
                let received = self.config.faults.has(Fault::NodemgrAcceptUnknownCommands);
                self.send_received(now, "command_received", request_id, received, node_id)
            }
            Err(StoreFailure::CommandTimedOut) => {
                let details =
                    "the result arrived after the command had timed out; it was not stored";
                self.send_error(now, Some(request_id), ErrorCode::CommandTimeout, details);
            }
            Err(StoreFailure::Database(details)) => {
                self.send_error(now, Some(request_id), ErrorCode::DatabaseError, &details)
            }
        }
    }

    fn report_store_failure(&mut self, now: Now, after: AfterPersist, failure: StoreFailure) {
        let request_id = match after {
            AfterPersist::RegisterResponse { request_id, .. }
            | AfterPersist::HeartbeatAck { request_id, .. }
            | AfterPersist::CommandStarted { request_id, .. }
            | AfterPersist::CommandReceived { request_id, .. } => Some(request_id),
            AfterPersist::TimeoutNotice { execute_id, .. } => Some(execute_id),
            AfterPersist::Nothing => None,
        };
        self.send_error(
            now,
            request_id,
            ErrorCode::DatabaseError,
            &failure.to_string(),
        );
    }

    fn expire_commands(&mut self, now: Now) {
        if self.config.faults.has(Fault::NodemgrNoCommandTimeout) {
            return;
        }
        let expired: Vec<String> = self
            .open_commands
            .iter()
            .filter(|(_, c)| c.deadline <= now.mono)
            .map(|(id, _)| id.clone())
            .collect();
        for command_id in expired {
            let Some(open) = self.open_commands.remove(&command_id) else {
                continue;
            };
            let op = StoreOp::CommandTimedOut {
                command_id: command_id.clone(),
                at: now.wall,
            };
            let after = AfterPersist::TimeoutNotice {
                execute_id: open.execute_id,
                command_id,
                timeout_secs: open.timeout_secs,
            };
            self.persist(op, after);
        }
    }

    fn check_liveness(&mut self, now: Now) {
        let Some(node_id) = self.registered.clone() else {
            return;
        };
        if self.online && now.mono >= self.last_seen + self.config.offline_after {
            self.online = false;
            let op = StoreOp::NodeOffline {
                node_id,
                at: now.wall,
            };
            self.persist(op, AfterPersist::Nothing);
        }
    }

    fn persist(&mut self, op: StoreOp, after: AfterPersist) {
        let ticket = self.next_ticket;
        self.next_ticket += 1;
        self.awaiting.push_back((ticket, after));
        self.outputs.push_back(Output::Persist { ticket, op });
    }

    fn send_register_response(
        &mut self,
        now: Now,
        request_id: String,
        success: bool,
        message: &str,
        node_id: &str,
    ) {
        let id = if self.config.faults.has(Fault::NodemgrRegisterFreshId) {
            self.fresh_id()
        } else {
            request_id
        };
        let faults = &self.config.faults;
        let node_id = if faults.has(Fault::NodemgrRegisterWrongNodeId) {
            format!("{node_id}-other")
        } else {
            node_id.to_owned()
        };
        let mut data = messages::register_response_data(success, message, &node_id);
        if faults.has(Fault::NodemgrTerseMessages) {
            data.as_object_mut().map(|o| o.remove("message"));
        }
        self.send(now, "register_response", id, data);
    }

    fn send_heartbeat_ack(&mut self, now: Now, request_id: String, node_id: &str) {
        let faults = &self.config.faults;
        let received = !faults.has(Fault::NodemgrAckReceivedFalse);
        let fresh_id = faults.has(Fault::NodemgrAckFreshId);
        let node_id = if faults.has(Fault::NodemgrAckWrongNodeId) {
            "another-node"
        } else {
            node_id
        };
        let data = if faults.has(Fault::NodemgrNullAckData) {
            serde_json::Value::Null.into()
        } else {
            messages::received_data(received, node_id)
        };
        let id = if fresh_id {
            self.fresh_id()
        } else {
            request_id
        };
        self.send(now, "heartbeat_ack", id, data);
    }

    fn send_received(
        &mut self,
        now: Now,
        kind: &'static str,
        id: String,
        received: bool,
        node_id: &str,
    ) {
        self.send(now, kind, id, messages::received_data(received, node_id));
    }

    /// Errors echo the offending request's id when it could be read, else carry a fresh one.
    fn send_error(&mut self, now: Now, id: Option<String>, code: ErrorCode, details: &str) {
        let faults = &self.config.faults;
        let id = id.filter(|_| !faults.has(Fault::NodemgrFreshErrorIds));
        let mut data = messages::error_data(code, details);
        if faults.has(Fault::NodemgrTerseMessages) {
            data.as_object_mut().map(|o| o.remove("details"));
        }
        let id = id.unwrap_or_else(|| self.fresh_id());
        self.send(now, "error", id, data);
        if self.config.faults.has(Fault::NodemgrCloseOnError) {
            self.close(1011, "closing after an error");
        }
    }

    fn send(&mut self, now: Now, kind: &'static str, id: String, data: impl Into<Payload>) {
        let mut envelope = Envelope::new(kind, id, now.wall, data);
        if self.config.faults.has(Fault::NodemgrUnixTimestamps) {
            envelope.timestamp = now.wall.timestamp().to_string();
        }
        self.outputs.push_back(Output::Send(envelope));
    }

    fn close(&mut self, code: u16, reason: &str) {
        self.closed = true;
        self.outputs.push_back(Output::Close {
            code,
            reason: reason.to_owned(),
        });
    }

    fn fresh_id(&mut self) -> String {
        if self.config.faults.has(Fault::NodemgrCounterIds) {
            self.next_counter_id += 1;
            return self.next_counter_id.to_string();
        }
        uuid::Uuid::new_v4().to_string()
    }
}

/// For the `lenient-timestamps` fault: any string timestamp is replaced by a valid one.
fn with_valid_timestamp(text: String) -> String {
    match serde_json::from_str::<serde_json::Value>(&text) {
        Ok(mut value) if value["timestamp"].is_string() => {
            value["timestamp"] = serde_json::Value::from("2025-01-21T10:00:00Z");
            value.to_string()
        }
        _ => text,
    }
}
