//! The sfu signaling driver (protoo over WebSocket). Each connection has a reader (this task:
//! frames in, its session, the rooms) and a writer task that drains one bounded queue. The rooms
//! and the map of queues sit behind one lock, so every peer sees notifications in the order the
//! rooms made them. Media requests go to the media loop outside the lock; their answers come
//! back through the rooms.

use super::read_clock;
use super::ws_queue::{close_for_read_error, serve, Member, Reader, Stop};
use crate::faults::Fault;
use crate::media::MediaHandle;
use crate::protocol::sfu::session::{Input, Output};
use crate::protocol::sfu::{
    messages, ConnId, Effect, ErrorCode, Incoming, MediaRequest, Rooms, ServerIds, Session,
    SessionConfig, MAX_FRAME_BYTES, OUTBOUND_QUEUE_DEPTH, SUBPROTOCOL,
};
use axum::extract::ws::{Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

/// What the WebSocket layer reads whole: frames over [`MAX_FRAME_BYTES`] and up to this are
/// answered `too_large` while the connection still reads.
const READ_LIMIT: usize = 1024 * 1024;
const IDLE_READ_BUFFER: usize = 4 * 1024;

#[derive(Debug)]
struct Shared {
    rooms: Rooms,
    members: HashMap<ConnId, Member>,
}

/// Shared state of the sfu signaling service.
#[derive(Debug)]
pub struct SfuApp {
    pub session: SessionConfig,
    pub ids: ServerIds,
    pub media: MediaHandle,
    shared: Mutex<Shared>,
    next_connection: AtomicU64,
}

/// Room occupancy, for the operator.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct Occupancy {
    pub rooms: usize,
    pub peers: usize,
    pub streams: usize,
}

impl SfuApp {
    pub fn new(session: SessionConfig, ids: ServerIds, media: MediaHandle) -> Arc<Self> {
        let rooms = Rooms::new(ids.clone(), session.faults.clone());
        Arc::new(Self {
            shared: Mutex::new(Shared {
                rooms,
                members: HashMap::new(),
            }),
            session,
            ids,
            media,
            next_connection: AtomicU64::new(1),
        })
    }

    pub fn occupancy(&self) -> Occupancy {
        let shared = self.shared();
        Occupancy {
            rooms: shared.rooms.room_count(),
            peers: shared.rooms.peer_count(),
            streams: shared.rooms.stream_count(),
        }
    }

    fn shared(&self) -> MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn open(self: &Arc<Self>, uid: &str, member: Member) -> ConnId {
        let id = self.next_connection.fetch_add(1, Ordering::Relaxed);
        let mut shared = self.shared();
        shared.members.insert(id, member);
        let effects = shared.rooms.connect(id, uid);
        self.perform(shared, effects);
        id
    }

    fn handle(self: &Arc<Self>, conn: ConnId, incoming: Incoming) {
        let mut shared = self.shared();
        let effects = shared.rooms.handle(conn, incoming);
        self.perform(shared, effects);
    }

    fn refuse(self: &Arc<Self>, conn: ConnId, id: &Value, code: ErrorCode, reason: &str) {
        let mut shared = self.shared();
        let effects = shared.rooms.refuse(conn, id, code, reason);
        self.perform(shared, effects);
    }

    fn close(self: &Arc<Self>, conn: ConnId) {
        let mut shared = self.shared();
        shared.members.remove(&conn);
        let effects = shared.rooms.disconnect(conn);
        self.perform(shared, effects);
    }

    /// Queues frames under the lock; media requests go out after it is released.
    fn perform(self: &Arc<Self>, shared: MutexGuard<'_, Shared>, effects: Vec<Effect>) {
        let mut media = Vec::new();
        for effect in effects {
            match effect {
                Effect::Send { to, message } => {
                    if let Some(member) = shared.members.get(&to) {
                        member.deliver(&message.to_string().into());
                    }
                }
                Effect::Broadcast { to, message } => {
                    let text: Utf8Bytes = message.to_string().into();
                    for member in to.iter().filter_map(|conn| shared.members.get(conn)) {
                        member.deliver(&text);
                    }
                }
                Effect::Close { conn, code, reason } => {
                    if let Some(member) = shared.members.get(&conn) {
                        member.kick.kick(code, &reason);
                    }
                }
                Effect::Media(request) => media.push(request),
            }
        }
        drop(shared);
        for request in media {
            tokio::spawn(self.clone().ask_media(request));
        }
    }

    async fn ask_media(self: Arc<Self>, request: MediaRequest) {
        match request {
            MediaRequest::Publish { id, mid, offer, .. } => {
                let outcome = self.media.publish(mid.clone(), offer).await;
                let mut shared = self.shared();
                let effects = shared.rooms.published(id, &mid, outcome);
                self.perform(shared, effects);
            }
            MediaRequest::Subscribe {
                id,
                sid,
                mid,
                offer,
                ..
            } => {
                let outcome = self.media.subscribe(sid.clone(), mid, offer).await;
                let mut shared = self.shared();
                let effects = shared.rooms.subscribed(id, &sid, outcome);
                self.perform(shared, effects);
            }
            MediaRequest::Unpublish { mid } => self.media.unpublish(mid).await,
            MediaRequest::Unsubscribe { sid } => self.media.unsubscribe(sid).await,
        }
    }
}

/// S1: `ws://host:port/ws?peer=<uid>`; without a usable `peer` the handshake is refused (400).
pub async fn upgrade(
    ws: WebSocketUpgrade,
    Query(query): Query<HashMap<String, String>>,
    State(app): State<Arc<SfuApp>>,
) -> Response {
    let Some(uid) = query
        .get("peer")
        .filter(|p| messages::is_valid_id(p))
        .cloned()
    else {
        let max = crate::protocol::sfu::MAX_ID_CHARS;
        let body = format!("connect to /ws?peer=<uid>: a peer id of 1 to {max} characters");
        return (StatusCode::BAD_REQUEST, body).into_response();
    };
    let ws = if app.session.faults.has(Fault::SfuNoSubprotocol) {
        ws
    } else {
        ws.protocols([SUBPROTOCOL])
    };
    ws.read_buffer_size(IDLE_READ_BUFFER)
        .max_message_size(READ_LIMIT)
        .max_frame_size(READ_LIMIT)
        .on_upgrade(move |socket| run_connection(socket, app, uid))
}

struct Connection {
    id: ConnId,
    app: Arc<SfuApp>,
    session: Session,
    member: Member,
}

async fn run_connection(socket: WebSocket, app: Arc<SfuApp>, uid: String) {
    let open = |member: Member| Connection {
        id: app.open(&uid, member.clone()),
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
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => return None,
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
                Output::Deliver(incoming) => self.app.handle(self.id, incoming),
                Output::Refuse { id, code, reason } => {
                    self.app.refuse(self.id, &id, code, &reason);
                }
                Output::Close { code, reason } => {
                    return Err(self.member.queue_close(code, reason).await)
                }
            }
        }
        Ok(())
    }
}
