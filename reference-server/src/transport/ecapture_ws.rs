//! The ecapture WebSocket driver. Each connection has a reader task, which reads client
//! frames and discards them, and this writer, which owns the sink: the heartbeat, the start-up
//! replay, then the live feed from the hub. A client that falls more than the queue depth
//! behind is disconnected; every disconnect is logged with its reason.

use super::ecapture::{EcaptureApp, Published};
use super::read_clock;
use super::session_timer::SessionTimer;
use crate::faults::Fault;
use crate::protocol::ecapture::pb::log_entry::Payload;
use crate::protocol::ecapture::pb::LogEntry;
use crate::protocol::ecapture::{Frame, Input, Output, Session};
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use std::fmt;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{broadcast, mpsc};

/// What the WebSocket layer reads whole: frames over
/// [`MAX_CLIENT_FRAME_BYTES`](crate::protocol::ecapture::MAX_CLIENT_FRAME_BYTES) and up to
/// this are read, then refused with 1009; a larger one is a read error, after which the
/// socket can only be dropped.
const READ_LIMIT: usize = 1024 * 1024;
/// Live frames written before a flush.
const WRITE_BATCH: usize = 256;
/// How long closing a connection may take.
const CLOSE_GRACE: Duration = Duration::from_secs(2);
/// A write that makes no progress for this long (the client's socket is full and it does not
/// read) counts as a client too slow to keep: it would otherwise block its writer forever,
/// never seeing that it fell behind the queue.
const WRITE_STALL: Duration = Duration::from_secs(2);
/// How long a failed write waits for the reader to say how the client went.
const READER_ACCOUNT_WAIT: Duration = Duration::from_millis(200);

/// Any path upgrades, as eCapture's server does; a handshake without `Origin` gets 403.
pub async fn upgrade(
    State(app): State<Arc<EcaptureApp>>,
    uri: Uri,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    if !headers.contains_key(header::ORIGIN) {
        return (
            StatusCode::FORBIDDEN,
            "an Origin header is required, as eCapture requires it\n",
        )
            .into_response();
    }
    if app.faults().has(Fault::EcaptureRootPathOnly) && uri.path() != "/" {
        return StatusCode::NOT_FOUND.into_response();
    }
    ws.max_message_size(READ_LIMIT)
        .on_upgrade(move |socket| serve(app, socket))
}

/// Why a connection ended.
#[derive(Debug)]
enum Ending {
    ClientClosed,
    ClientDropped(String),
    TooSlow(u64),
    Stalled,
    WriteFailed(String),
    ServerClosed(u16, String),
    ServerStopped,
}

impl fmt::Display for Ending {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ClientClosed => f.write_str("the client closed"),
            Self::ClientDropped(why) => write!(f, "the client dropped without a close ({why})"),
            Self::TooSlow(behind) => write!(f, "too slow: {behind} frames behind the queue"),
            Self::Stalled => write!(f, "too slow: no write progress for {WRITE_STALL:?}"),
            Self::WriteFailed(why) => write!(f, "write failed ({why})"),
            Self::ServerClosed(code, reason) => write!(f, "closed by the server ({code} {reason})"),
            Self::ServerStopped => f.write_str("the server stopped"),
        }
    }
}

/// What the reader tells the writer.
#[derive(Debug)]
enum FromClient {
    Frame(usize),
    Gone(Ending),
}

async fn serve(app: Arc<EcaptureApp>, socket: WebSocket) {
    let conn = app.connection_number();
    app.stats.clients.fetch_add(1, Ordering::Relaxed);
    let (sink, stream) = socket.split();
    let (live, replay) = app.subscribe();
    let (tx, mut rx) = mpsc::channel(16);
    let reader = tokio::spawn(read_client(stream, tx));
    app.publish_log(
        read_clock(),
        "info",
        "client connected",
        serde_json::json!({"client": conn}),
    );
    let mut writer = Writer {
        app: app.clone(),
        conn,
        sink,
    };
    let ending = writer.run(live, replay, &mut rx).await;
    let ending = prefer_reader_account(ending, &mut rx).await;
    writer.finish(&ending).await;
    reader.abort();
    app.stats.clients.fetch_sub(1, Ordering::Relaxed);
    if matches!(ending, Ending::TooSlow(_) | Ending::Stalled) {
        app.stats.dropped_slow.fetch_add(1, Ordering::Relaxed);
    }
    if matches!(ending, Ending::ClientDropped(_)) {
        app.note_abrupt_drop();
    }
    tracing::info!(client = conn, reason = %ending, "ecapture client disconnected");
    let fields = serde_json::json!({"client": conn, "reason": ending.to_string()});
    app.publish_log(read_clock(), "info", "client disconnected", fields);
}

/// A failed write is mostly the echo of what the reader saw first-hand (a reset, or a close
/// the writer had not yet heard of); since `TCP_NODELAY` the next write often fails before the
/// reader reports. The reader's account, when it comes promptly, is the truer ending.
async fn prefer_reader_account(
    ending: Ending,
    from_client: &mut mpsc::Receiver<FromClient>,
) -> Ending {
    if !matches!(ending, Ending::WriteFailed(_)) {
        return ending;
    }
    let account = tokio::time::timeout(READER_ACCOUNT_WAIT, async {
        while let Some(input) = from_client.recv().await {
            if let FromClient::Gone(gone) = input {
                return Some(gone);
            }
        }
        None
    });
    match account.await {
        Ok(Some(gone)) => gone,
        _ => ending,
    }
}

async fn read_client(mut stream: SplitStream<WebSocket>, tx: mpsc::Sender<FromClient>) {
    let ending = loop {
        let report = match stream.next().await {
            None => break Ending::ClientDropped("end of stream".to_owned()),
            Some(Err(error)) => break Ending::ClientDropped(error.to_string()),
            Some(Ok(Message::Close(_))) => break Ending::ClientClosed,
            Some(Ok(Message::Text(text))) => FromClient::Frame(text.len()),
            Some(Ok(Message::Binary(bytes))) => FromClient::Frame(bytes.len()),
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
        };
        if tx.send(report).await.is_err() {
            return;
        }
    };
    let _ = tx.send(FromClient::Gone(ending)).await;
}

struct Writer {
    app: Arc<EcaptureApp>,
    conn: u64,
    sink: SplitSink<WebSocket, Message>,
}

impl Writer {
    async fn run(
        &mut self,
        mut live: broadcast::Receiver<Published>,
        replay: Vec<Frame>,
        from_client: &mut mpsc::Receiver<FromClient>,
    ) -> Ending {
        let mut session = Session::open(read_clock(), self.app.session.clone());
        // The heartbeat at connect, then the start-up logs, then live traffic.
        if let Err(ending) = self.perform(&mut session).await {
            return ending;
        }
        for frame in replay {
            if let Err(ending) = self.feed(frame).await {
                return ending;
            }
        }
        let mut timer = SessionTimer::default();
        loop {
            if let Err(ending) = self.flush().await {
                return ending;
            }
            timer.arm(session.poll_timeout());
            tokio::select! {
                biased;
                input = from_client.recv() => match input {
                    Some(FromClient::Frame(len)) => {
                        session.handle_input(read_clock(), Input::ClientFrame(len));
                    }
                    Some(FromClient::Gone(ending)) => return ending,
                    None => return Ending::ClientDropped("reader ended".to_owned()),
                },
                () = timer.fired() => session.handle_timeout(read_clock()),
                published = live.recv() => {
                    if let Err(ending) = self.forward(published, &mut live).await {
                        return ending;
                    }
                }
            }
            if let Err(ending) = self.perform(&mut session).await {
                return ending;
            }
        }
    }

    /// Feeds one live frame and whatever else is already queued, up to a batch.
    async fn forward(
        &mut self,
        first: Result<Published, broadcast::error::RecvError>,
        live: &mut broadcast::Receiver<Published>,
    ) -> Result<(), Ending> {
        let mut next = first;
        for _ in 0..WRITE_BATCH {
            match next {
                Ok(published) => self.feed_published(published).await?,
                Err(broadcast::error::RecvError::Lagged(behind)) => {
                    return Err(Ending::TooSlow(behind))
                }
                Err(broadcast::error::RecvError::Closed) => return Err(Ending::ServerStopped),
            }
            next = match live.try_recv() {
                Ok(published) => Ok(published),
                Err(broadcast::error::TryRecvError::Lagged(n)) => {
                    Err(broadcast::error::RecvError::Lagged(n))
                }
                Err(_) => return Ok(()),
            };
        }
        Ok(())
    }

    async fn feed_published(&mut self, published: Published) -> Result<(), Ending> {
        let thinned = published.is_event
            && self.conn > 0
            && self.app.faults().has(Fault::EcaptureThinFanout)
            && coin(published.seq, self.conn);
        if thinned {
            return Ok(());
        }
        self.feed(published.frame).await
    }

    /// Carries out the session's outputs.
    async fn perform(&mut self, session: &mut Session) -> Result<(), Ending> {
        while let Some(output) = session.poll_output() {
            match output {
                Output::Send(entry) => {
                    let entry = self.bend_shared_count(entry);
                    let frame = self.app.encoder().encode(entry);
                    self.feed(frame).await?;
                }
                Output::Close { code, reason } => {
                    let _ = self.close(code, &reason).await;
                    return Err(Ending::ServerClosed(code, reason));
                }
            }
        }
        Ok(())
    }

    fn bend_shared_count(&self, mut entry: LogEntry) -> LogEntry {
        if self.app.faults().has(Fault::EcaptureSharedHeartbeatCount) {
            if let Some(Payload::HeartbeatPayload(beat)) = &mut entry.payload {
                beat.count = self.app.next_shared_heartbeat();
                beat.message = format!("heartbeat:{}", beat.count);
            }
        }
        entry
    }

    async fn feed(&mut self, frame: Frame) -> Result<(), Ending> {
        let message = match frame {
            Frame::Binary(bytes) => Message::Binary(bytes),
            Frame::Text(text) => Message::Text(text.into()),
        };
        match tokio::time::timeout(WRITE_STALL, self.sink.feed(message)).await {
            Err(_) => Err(Ending::Stalled),
            Ok(result) => result.map_err(|e| Ending::WriteFailed(e.to_string())),
        }
    }

    async fn flush(&mut self) -> Result<(), Ending> {
        match tokio::time::timeout(WRITE_STALL, self.sink.flush()).await {
            Err(_) => Err(Ending::Stalled),
            Ok(result) => result.map_err(|e| Ending::WriteFailed(e.to_string())),
        }
    }

    async fn close(&mut self, code: u16, reason: &str) -> Result<(), Ending> {
        let frame = CloseFrame {
            code,
            reason: reason.into(),
        };
        self.feed_close(Message::Close(Some(frame))).await
    }

    async fn feed_close(&mut self, message: Message) -> Result<(), Ending> {
        let sent = tokio::time::timeout(CLOSE_GRACE, self.sink.send(message)).await;
        match sent {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(Ending::WriteFailed(e.to_string())),
            Err(_) => Err(Ending::WriteFailed("close timed out".to_owned())),
        }
    }

    /// Says goodbye where the ending allows it: a slow client is told why.
    async fn finish(&mut self, ending: &Ending) {
        match ending {
            Ending::TooSlow(_) => {
                let _ = self.close(1008, "too slow: the send queue is full").await;
            }
            // Its socket is full: a close frame could not get through either.
            Ending::Stalled => {}
            Ending::ServerStopped => {
                let _ = self.close(1001, "server stopping").await;
            }
            Ending::ClientClosed => {
                let _ = tokio::time::timeout(CLOSE_GRACE, self.sink.close()).await;
            }
            Ending::ClientDropped(_) | Ending::WriteFailed(_) | Ending::ServerClosed(..) => {}
        }
    }
}

/// A fair coin per (event, connection), so that no two connections miss the same events
/// whatever order other clients connect in (fault `ecapture/thin-fanout`).
fn coin(seq: u64, conn: u64) -> bool {
    // splitmix64's finaliser: every input bit moves every output bit.
    let mut z = seq ^ conn.rotate_left(32);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    (z ^ (z >> 31)) & 1 == 1
}
