//! The nodemgr WebSocket driver: reads frames, feeds the session, performs its outputs.

use super::mailbox::{Mail, Mailbox};
use super::read_clock;
use super::session_timer::SessionTimer;
use super::ws_queue::close_for_read_error;
use super::NodemgrApp;
use crate::faults::Fault;
use crate::protocol::nodemgr::{ConnectParams, Input, Output, Session, MAX_FRAME_BYTES};
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::response::Response;
use futures_util::SinkExt;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Frame limit with the `hang-on-oversized` fault: big enough to let oversized frames in.
const FAULTY_FRAME_LIMIT: usize = 16 * 1024 * 1024;
/// Initial read buffer of a connection.
const IDLE_READ_BUFFER: usize = 4 * 1024;

pub async fn upgrade(
    ws: WebSocketUpgrade,
    Query(query): Query<HashMap<String, String>>,
    State(app): State<Arc<NodemgrApp>>,
) -> Response {
    let limit = if app.faults().has(Fault::NodemgrHangOnOversized) {
        FAULTY_FRAME_LIMIT
    } else {
        MAX_FRAME_BYTES
    };
    let params = ConnectParams {
        token: query.get("token").cloned(),
        node_id: query.get("node_id").cloned(),
        generated_node_id: generate_node_id(&app),
    };
    // tungstenite preallocates its read buffer per connection (128 KiB by default); a small one
    // keeps idle nodes cheap and still grows for a large frame.
    ws.read_buffer_size(IDLE_READ_BUFFER)
        .max_message_size(limit)
        .max_frame_size(limit)
        .on_upgrade(move |socket| run_connection(socket, params, app))
}

fn generate_node_id(app: &NodemgrApp) -> String {
    static SEQUENCE: AtomicU64 = AtomicU64::new(1);
    if app.faults().has(Fault::NodemgrSequentialNodeIds) {
        return format!("node-{}", SEQUENCE.fetch_add(1, Ordering::Relaxed));
    }
    uuid::Uuid::new_v4().to_string()
}

/// Why the pump stopped.
enum Stop {
    Closed,
    Abort,
}

async fn run_connection(mut socket: WebSocket, params: ConnectParams, app: Arc<NodemgrApp>) {
    let connection = app.connection_number();
    let mut mailbox = Mailbox::default();
    let mut session = Session::open(read_clock(), params, app.session.clone());
    let mut timer = SessionTimer::default();
    loop {
        let performed = perform_outputs(
            &mut session,
            &mut socket,
            &app,
            Answers {
                connection,
                mailbox: &mailbox,
            },
        )
        .await;
        if let Err(stop) = performed {
            if matches!(stop, Stop::Abort) {
                // Dropping the socket without a close frame resets the connection.
                drop(socket);
                return finish(&app, &session, connection).await;
            }
            break;
        }
        timer.arm(session.poll_timeout());
        // Reads and writes take turns in this one task, so the socket needs no split. Commits
        // come first: a wake-up for a commit then answers without polling the socket. They
        // cannot starve the socket: commits come from frames read, and commands are at most
        // DISPATCH_QUEUE_DEPTH.
        match mailbox.next(&mut socket, &mut timer).await {
            Mail::Done(done) => {
                let now = read_clock();
                for ticket in done {
                    let result = mailbox.outcome(ticket);
                    session.handle_input(now, Input::Persisted { ticket, result });
                }
            }
            Mail::Command(order) => session.handle_input(read_clock(), Input::Dispatch(order)),
            Mail::Socket(frame) => match frame {
                Some(Ok(Message::Text(text))) => {
                    session.handle_input(read_clock(), Input::Text(text.as_str().to_owned()))
                }
                Some(Ok(Message::Binary(_))) => session.handle_input(read_clock(), Input::Binary),
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                Some(Ok(Message::Close(_))) | None => break,
                Some(Err(error)) => {
                    if app.faults().has(Fault::NodemgrAbortOnInvalidUtf8) {
                        drop(socket);
                        return finish(&app, &session, connection).await;
                    }
                    close_after_read_error(&mut socket, error).await;
                    break;
                }
            },
            Mail::Timer => session.handle_timeout(read_clock()),
        }
    }
    let _ = socket.close().await;
    finish(&app, &session, connection).await;
}

/// Where the answers to a connection's outputs go.
struct Answers<'a> {
    connection: u64,
    /// The outcomes of its writes, and the way in for its node's commands once it registered.
    mailbox: &'a Mailbox,
}

/// Performs everything the session asked for. `Err` means the connection must end.
async fn perform_outputs(
    session: &mut Session,
    socket: &mut WebSocket,
    app: &Arc<NodemgrApp>,
    answers: Answers<'_>,
) -> Result<(), Stop> {
    let mut wrote = false;
    while let Some(output) = session.poll_output() {
        match output {
            Output::Send(envelope) => {
                socket
                    .feed(Message::Text(envelope.encode().into()))
                    .await
                    .map_err(|_| Stop::Closed)?;
                wrote = true;
            }
            Output::Persist { ticket, op } => {
                // Submitted here, in frame order; the commit comes back through the mailbox.
                app.store
                    .submit_then(op, answers.mailbox.on_committed(ticket))
                    .await;
            }
            Output::Registered { node_id } => {
                app.registry
                    .insert(&node_id, answers.connection, answers.mailbox.dispatcher())
            }
            Output::Close { code, reason } => {
                let frame = CloseFrame {
                    code,
                    reason: reason.into(),
                };
                let _ = socket.send(Message::Close(Some(frame))).await;
                return Err(Stop::Closed);
            }
            Output::Abort => return Err(Stop::Abort),
        }
    }
    if wrote {
        socket.flush().await.map_err(|_| Stop::Closed)?;
    }
    Ok(())
}

/// A read failed: say why in a close frame when the socket still allows it.
async fn close_after_read_error(socket: &mut WebSocket, error: axum::Error) {
    let (code, reason) = close_for_read_error(error, MAX_FRAME_BYTES);
    let frame = CloseFrame {
        code,
        reason: reason.into(),
    };
    let _ = socket.send(Message::Close(Some(frame))).await;
}

async fn finish(app: &NodemgrApp, session: &Session, connection: u64) {
    let Some(node_id) = session.registered_node() else {
        return;
    };
    if app.registry.remove(node_id, connection) {
        if let Err(error) = app.store.node_disconnected(node_id).await {
            tracing::warn!(%node_id, %error, "could not mark the node offline");
        }
    }
}
