//! The logrtc signaling driver. Each connection has a reader (this task: frames in, its
//! session, the hub) and a writer task that drains one bounded queue. The hub and the map of
//! queues sit behind one lock, so that every client sees the hub's messages in the order the
//! hub made them.

use super::read_clock;
use super::ws_queue::{close_for_read_error, serve, Member, Outbound, Reader, Stop};
use crate::faults::Faults;
use crate::protocol::logrtc::hub::ConnId;
use crate::protocol::logrtc::session::{Input, Output};
use crate::protocol::logrtc::{
    ClientMessage, Effect, ErrorCode, Hub, Session, SessionConfig, MAX_FRAME_BYTES,
    OUTBOUND_QUEUE_DEPTH,
};
use axum::extract::ws::{Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::response::Response;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

/// What the WebSocket layer reads whole: frames over [`MAX_FRAME_BYTES`] and up to this are
/// refused with 1009 while the connection still reads.
const READ_LIMIT: usize = 2 * 1024 * 1024;
const IDLE_READ_BUFFER: usize = 4 * 1024;

#[derive(Debug, Default)]
struct Shared {
    hub: Hub,
    members: HashMap<ConnId, Member>,
}

/// Shared state of the logrtc service.
#[derive(Debug)]
pub struct LogrtcApp {
    pub session: SessionConfig,
    shared: Mutex<Shared>,
    next_connection: AtomicU64,
}

impl LogrtcApp {
    pub fn new(session: SessionConfig) -> Arc<Self> {
        Arc::new(Self {
            shared: Mutex::new(Shared {
                hub: Hub::new(session.faults.clone()),
                members: HashMap::new(),
            }),
            session,
            next_connection: AtomicU64::new(1),
        })
    }

    pub fn faults(&self) -> &Faults {
        &self.session.faults
    }

    fn shared(&self) -> MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn open(&self, member: Member) -> ConnId {
        let id = self.next_connection.fetch_add(1, Ordering::Relaxed);
        self.shared().members.insert(id, member);
        id
    }

    fn handle(&self, conn: ConnId, message: ClientMessage) {
        let mut shared = self.shared();
        let effects = shared.hub.handle(read_clock(), conn, message);
        shared.perform(effects);
    }

    fn refuse(&self, conn: ConnId, code: ErrorCode, message: &str, request_type: Option<&str>) {
        let mut shared = self.shared();
        let effects = shared.hub.refuse_frame(conn, code, message, request_type);
        shared.perform(effects);
    }

    fn close(&self, conn: ConnId) {
        let mut shared = self.shared();
        shared.members.remove(&conn);
        let effects = shared.hub.disconnect(conn);
        shared.perform(effects);
    }
}

impl Shared {
    fn perform(&self, effects: Vec<Effect>) {
        for effect in effects {
            match effect {
                Effect::Send { to, message } => {
                    if let Some(member) = self.members.get(&to) {
                        member.deliver(&message.to_string().into());
                    }
                }
                Effect::Broadcast { to, message } => {
                    let text: Utf8Bytes = message.to_string().into();
                    for member in to.iter().filter_map(|conn| self.members.get(conn)) {
                        member.deliver(&text);
                    }
                }
                Effect::Close { conn, code, reason } => {
                    if let Some(member) = self.members.get(&conn) {
                        member.kick.kick(code, &reason);
                    }
                }
            }
        }
    }
}

pub async fn upgrade(ws: WebSocketUpgrade, State(app): State<Arc<LogrtcApp>>) -> Response {
    ws.read_buffer_size(IDLE_READ_BUFFER)
        .max_message_size(READ_LIMIT)
        .max_frame_size(READ_LIMIT)
        .on_upgrade(move |socket| run_connection(socket, app))
}

struct Connection {
    id: ConnId,
    app: Arc<LogrtcApp>,
    session: Session,
    member: Member,
}

async fn run_connection(socket: WebSocket, app: Arc<LogrtcApp>) {
    let open = |member: Member| Connection {
        id: app.open(member.clone()),
        session: Session::open(read_clock(), app.session.clone()),
        member,
        app: app.clone(),
    };
    serve(socket, OUTBOUND_QUEUE_DEPTH, open, |connection| {
        connection.app.close(connection.id)
    })
    .await;
}

impl Reader for Connection {
    fn member(&self) -> &Member {
        &self.member
    }

    fn deadline(&self) -> Option<std::time::Instant> {
        self.session.poll_timeout()
    }

    fn on_timer(&mut self) {
        self.session.handle_timeout(read_clock());
    }

    async fn on_frame(&mut self, frame: Option<Result<Message, axum::Error>>) -> Option<Stop> {
        let input = match frame {
            Some(Ok(Message::Text(text))) => Input::Text(text.as_str().to_owned()),
            Some(Ok(Message::Binary(bytes))) => Input::Binary(bytes.len()),
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => Input::Heard,
            Some(Ok(Message::Close(_))) | None => return Some(Stop::Closing),
            Some(Err(error)) => {
                let (code, reason) = close_for_read_error(error, MAX_FRAME_BYTES);
                return Some(self.member.queue_close(code, reason).await);
            }
        };
        self.session.handle_input(read_clock(), input);
        None
    }

    /// Performs everything the session asked for. `Err` means the connection must end.
    async fn perform_outputs(&mut self) -> Result<(), Stop> {
        while let Some(output) = self.session.poll_output() {
            match output {
                Output::Deliver(message) => self.app.handle(self.id, message),
                Output::Refuse {
                    code,
                    message,
                    request_type,
                } => self
                    .app
                    .refuse(self.id, code, &message, request_type.as_deref()),
                Output::Ping => self.member.queue(Outbound::Ping).await?,
                Output::Close { code, reason } => {
                    return Err(self.member.queue_close(code, reason).await)
                }
            }
        }
        Ok(())
    }
}
