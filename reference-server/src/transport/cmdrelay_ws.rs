//! The cmdrelay WebSocket driver. Each connection has a reader (this task: frames in, the
//! session, the room registry) and a writer task that owns the socket's sink and drains one
//! bounded queue, so that a relay never waits on a slow receiver: when a receiver's queue is
//! full it is disconnected instead.

use super::read_clock;
use super::ws_queue::{close_for_read_error, serve, Member, Outbound, Reader, Stop};
use super::CmdrelayApp;
use crate::faults::Fault;
use crate::protocol::cmdrelay::{
    ConnId, Input, Output, Session, MAX_FRAME_BYTES, OUTBOUND_QUEUE_DEPTH,
};
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::response::Response;
use std::sync::Arc;

/// What the WebSocket layer reads whole. Frames over [`MAX_FRAME_BYTES`] and up to this are
/// read, then refused with 1009 while the connection still reads, so that the close frame
/// reaches the client; a frame beyond it is a read error, after which the socket can only be
/// dropped (the client may see a reset).
const READ_LIMIT: usize = 2 * 1024 * 1024;
/// Read limit with the `hang-on-oversized` fault: big enough to let oversized frames in.
const FAULTY_READ_LIMIT: usize = 16 * 1024 * 1024;
const IDLE_READ_BUFFER: usize = 4 * 1024;

pub async fn upgrade(ws: WebSocketUpgrade, State(app): State<Arc<CmdrelayApp>>) -> Response {
    let limit = if app.faults().has(Fault::CmdrelayHangOnOversized) {
        FAULTY_READ_LIMIT
    } else {
        READ_LIMIT
    };
    ws.read_buffer_size(IDLE_READ_BUFFER)
        .max_message_size(limit)
        .max_frame_size(limit)
        .on_upgrade(move |socket| run_connection(socket, app))
}

struct Connection {
    id: ConnId,
    app: Arc<CmdrelayApp>,
    session: Session,
    member: Member,
}

async fn run_connection(socket: WebSocket, app: Arc<CmdrelayApp>) {
    let open = |member| Connection {
        id: app.connection_number(),
        session: Session::open(read_clock(), app.session.clone()),
        member,
        app: app.clone(),
    };
    serve(socket, OUTBOUND_QUEUE_DEPTH, open, |connection| {
        connection.app.leave(connection.id)
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
        let faults = self.app.faults();
        match frame {
            Some(Ok(Message::Text(text))) if text.len() > MAX_FRAME_BYTES => {
                if faults.has(Fault::CmdrelayHangOnOversized) {
                    return None;
                }
                let reason = format!("frame larger than {MAX_FRAME_BYTES} bytes");
                return Some(self.member.queue_close(1009, reason).await);
            }
            Some(Ok(Message::Text(text))) => self
                .session
                .handle_input(read_clock(), Input::Text(text.as_str().to_owned())),
            Some(Ok(Message::Binary(_))) if faults.has(Fault::CmdrelayAbortOnBinary) => {
                return Some(Stop::Abort)
            }
            Some(Ok(Message::Binary(_))) => self.session.handle_input(read_clock(), Input::Binary),
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => {
                self.session.handle_input(read_clock(), Input::Heard)
            }
            Some(Ok(Message::Close(_))) | None => return Some(Stop::Closing),
            Some(Err(_)) if faults.has(Fault::CmdrelayAbortOnInvalidUtf8) => {
                return Some(Stop::Abort)
            }
            Some(Err(error)) => {
                let (code, reason) = close_for_read_error(error, MAX_FRAME_BYTES);
                return Some(self.member.queue_close(code, reason).await);
            }
        }
        None
    }

    /// Performs everything the session asked for. `Err` means the connection must end.
    async fn perform_outputs(&mut self) -> Result<(), Stop> {
        while let Some(output) = self.session.poll_output() {
            match output {
                Output::Send(text) => self.member.queue(Outbound::Text(text.into())).await?,
                Output::Ping => self.member.queue(Outbound::Ping).await?,
                Output::CheckToken(token) => {
                    let status = self.app.tokens.check(&token, read_clock().wall).await;
                    self.session
                        .handle_input(read_clock(), Input::TokenChecked(status));
                }
                Output::Join { token } => {
                    let session_id = self.app.join(self.id, &token, self.member.clone());
                    self.session
                        .handle_input(read_clock(), Input::Joined { session_id });
                }
                Output::Leave => {
                    self.app.leave(self.id);
                }
                Output::QueryRoomSize => {
                    let size = self.app.room_size(self.id);
                    self.session
                        .handle_input(read_clock(), Input::RoomSize(size));
                }
                Output::Relay(text) => self.app.relay(self.id, &text.into()),
                Output::Close { code, reason } => {
                    return Err(self.member.queue_close(code, reason).await)
                }
            }
        }
        Ok(())
    }
}
