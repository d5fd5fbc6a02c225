//! What the JSON-over-WebSocket drivers (cmdrelay, logrtc, sfu) share: a writer task that owns
//! the socket's sink and drains one bounded queue, a way to end a connection from another task,
//! and the close that follows a read error.

use super::session_timer::SessionTimer;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::sync::{mpsc, Notify};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Error as WsError;

/// Frames the writer sends before it flushes.
const WRITE_BATCH: usize = 64;
/// How long the reader waits for the writer to get a close frame out.
const CLOSE_GRACE: Duration = Duration::from_secs(2);
/// How long a reader waits for room in its own full queue before it drops the client: a
/// reader blocked on a client that stopped reading would notice nothing else, its idle timeout
/// included.
const QUEUE_WAIT: Duration = Duration::from_secs(2);

/// What the writer task sends.
#[derive(Debug)]
pub enum Outbound {
    Text(Utf8Bytes),
    Ping,
    Close(u16, String),
}

/// Asks a connection to end, from another task (slow receiver, revoked token).
#[derive(Debug, Default)]
pub struct Kick {
    pub notify: Notify,
    reason: Mutex<Option<(u16, String)>>,
}

impl Kick {
    pub fn kick(&self, code: u16, reason: &str) {
        let mut slot = self.reason.lock().unwrap_or_else(PoisonError::into_inner);
        if slot.is_none() {
            *slot = Some((code, reason.to_owned()));
        }
        self.notify.notify_one();
    }

    pub fn reason(&self) -> (u16, String) {
        let slot = self.reason.lock().unwrap_or_else(PoisonError::into_inner);
        slot.clone().unwrap_or((1008, "disconnected".to_owned()))
    }
}

/// What woke a connection's reader.
#[derive(Debug)]
pub enum Wake {
    /// Another task asked the connection to end, with this close code and reason.
    Kicked(u16, String),
    Frame(Option<Result<Message, axum::Error>>),
    /// The session's timer is due.
    Timer,
}

/// Waits for what a reader must act on next: a kick first, then a frame or the session's timer.
pub async fn next_wake(
    member: &Member,
    stream: &mut SplitStream<WebSocket>,
    timer: &mut SessionTimer,
) -> Wake {
    let kick = member.kick.clone();
    tokio::select! {
        biased;
        () = kick.notify.notified() => {
            let (code, reason) = kick.reason();
            Wake::Kicked(code, reason)
        }
        frame = stream.next() => Wake::Frame(frame),
        () = timer.fired() => Wake::Timer,
    }
}

/// One connection's protocol side, as [`read_frames`] drives it: the session's outputs and
/// timer, and what a frame means.
pub trait Reader {
    fn member(&self) -> &Member;
    fn deadline(&self) -> Option<std::time::Instant>;
    fn on_timer(&mut self);
    /// Carries out what the session asked for; `Err` ends the connection.
    fn perform_outputs(&mut self) -> impl std::future::Future<Output = Result<(), Stop>> + Send;
    /// Acts on one frame; `Some` ends the connection.
    fn on_frame(
        &mut self,
        frame: Option<Result<Message, axum::Error>>,
    ) -> impl std::future::Future<Output = Option<Stop>> + Send;
}

/// One connection from upgrade to end: a writer task drains a queue of `queue_depth` frames
/// onto the socket, `open` makes the connection's reader around its [`Member`] (the queue and
/// the kick switch, which the registry may hold too), [`read_frames`] drives it, and `close`
/// takes it out of the registry once it stopped reading. Dropping the reader then drops the
/// last handle on the queue, so the writer ends once it has sent what is queued.
pub async fn serve<R: Reader + Send>(
    socket: WebSocket,
    queue_depth: usize,
    open: impl FnOnce(Member) -> R,
    close: impl FnOnce(&R),
) {
    let (sink, mut stream) = socket.split();
    let (queue, outbound) = mpsc::channel(queue_depth);
    let writer = tokio::spawn(write_frames(sink, outbound));
    let mut reader = open(Member {
        queue,
        kick: Arc::new(Kick::default()),
    });
    let stop = read_frames(&mut reader, &mut stream).await;
    close(&reader);
    drop(reader);
    finish(writer, stream, stop).await;
}

/// The reader loop every JSON WebSocket driver shares: outputs out, then the next kick, frame
/// or timer in, until the connection ends.
pub async fn read_frames<R: Reader + Send>(
    reader: &mut R,
    stream: &mut SplitStream<WebSocket>,
) -> Stop {
    let mut timer = SessionTimer::default();
    loop {
        if let Err(stop) = reader.perform_outputs().await {
            return stop;
        }
        timer.arm(reader.deadline());
        match next_wake(reader.member(), stream, &mut timer).await {
            Wake::Kicked(code, reason) => return reader.member().queue_close(code, reason).await,
            Wake::Frame(frame) => {
                if let Some(stop) = reader.on_frame(frame).await {
                    return stop;
                }
            }
            Wake::Timer => reader.on_timer(),
        }
    }
}

/// A room member as the registry holds it: its queue and its kick switch.
#[derive(Debug, Clone)]
pub struct Member {
    pub queue: mpsc::Sender<Outbound>,
    pub kick: Arc<Kick>,
}

impl Member {
    /// Queues a relayed frame; a receiver whose queue is full is too slow and is dropped.
    pub fn deliver(&self, frame: &Utf8Bytes) {
        match self.queue.try_send(Outbound::Text(frame.clone())) {
            Ok(()) | Err(mpsc::error::TrySendError::Closed(_)) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                let reason = format!("too slow: {} frames queued", self.queue.max_capacity());
                self.kick.kick(1008, &reason);
            }
        }
    }
}

impl Member {
    /// Queues one of the connection's own frames, waiting a little for room (backpressure on a
    /// client that reads slowly); `Err` means the client must be dropped.
    pub async fn queue(&self, frame: Outbound) -> Result<(), Stop> {
        self.queue
            .send_timeout(frame, QUEUE_WAIT)
            .await
            .map_err(|_| Stop::Abort)
    }

    /// Queues a close frame; a client that stopped reading gets none and is dropped.
    pub async fn queue_close(&self, code: u16, reason: String) -> Stop {
        match self.queue(Outbound::Close(code, reason)).await {
            Ok(()) => Stop::Closing,
            Err(stop) => stop,
        }
    }
}

/// How the reader ended.
pub enum Stop {
    /// A close frame is queued; give the writer time to send it.
    Closing,
    /// Drop the connection without a close frame.
    Abort,
}

/// Lets the writer send what is queued (the close frame last), then reads and discards what
/// the peer still sends until it closes too: dropping a socket with unread data resets it,
/// and the reset would destroy the close frame before the peer reads it.
pub async fn finish(mut writer: JoinHandle<()>, mut stream: SplitStream<WebSocket>, stop: Stop) {
    if matches!(stop, Stop::Abort) {
        writer.abort();
        return;
    }
    let drained = tokio::time::timeout(CLOSE_GRACE, async {
        let _ = (&mut writer).await;
        while let Some(Ok(_)) = stream.next().await {}
    });
    if drained.await.is_err() {
        writer.abort();
    }
}

/// The close code and reason for a frame the WebSocket layer could not read.
pub fn close_for_read_error(error: axum::Error, max_frame_bytes: usize) -> (u16, String) {
    let inner = error.into_inner();
    match inner.downcast_ref::<WsError>() {
        Some(WsError::Capacity(_)) => (1009, format!("frame larger than {max_frame_bytes} bytes")),
        Some(WsError::Utf8(_)) => (1007, "text frame is not valid UTF-8".to_owned()),
        _ => (1002, "WebSocket protocol error".to_owned()),
    }
}

/// The writer task: sends queued frames in batches, one flush per batch, until a close.
pub async fn write_frames(
    mut sink: SplitSink<WebSocket, Message>,
    mut queue: mpsc::Receiver<Outbound>,
) {
    let mut batch = Vec::with_capacity(WRITE_BATCH);
    while queue.recv_many(&mut batch, WRITE_BATCH).await > 0 {
        for frame in batch.drain(..) {
            let message = match frame {
                Outbound::Text(text) => Message::Text(text),
                Outbound::Ping => Message::Ping(Default::default()),
                Outbound::Close(code, reason) => {
                    let frame = CloseFrame {
                        code,
                        reason: reason.into(),
                    };
                    let _ = sink.send(Message::Close(Some(frame))).await;
                    return;
                }
            };
            if sink.feed(message).await.is_err() {
                return;
            }
        }
        if sink.flush().await.is_err() {
            return;
        }
    }
}
