//! The seam between signaling and the media plane: requests over a bounded channel, answers on
//! oneshots. Signaling never touches an `Rtc`.

use crate::protocol::sfu::{ErrorCode, MediaRefusal};
use tokio::sync::{mpsc, oneshot};

/// Commands the media loop carries out.
#[derive(Debug)]
pub enum MediaCommand {
    Publish {
        mid: String,
        offer: String,
        reply: oneshot::Sender<Result<String, MediaRefusal>>,
    },
    Subscribe {
        sid: String,
        mid: String,
        offer: String,
        reply: oneshot::Sender<Result<String, MediaRefusal>>,
    },
    Unpublish {
        mid: String,
    },
    Unsubscribe {
        sid: String,
    },
    Stats {
        reply: oneshot::Sender<super::MediaStats>,
    },
}

/// Commands queued toward the media loop before signaling waits.
pub const COMMAND_QUEUE_DEPTH: usize = 1024;

/// A cloneable handle on a running media loop.
#[derive(Debug, Clone)]
pub struct MediaHandle {
    commands: mpsc::Sender<MediaCommand>,
}

impl MediaHandle {
    pub fn new(commands: mpsc::Sender<MediaCommand>) -> Self {
        Self { commands }
    }

    /// Answers a publisher's offer for the stream `mid`.
    pub async fn publish(&self, mid: String, offer: String) -> Result<String, MediaRefusal> {
        let (reply, answer) = oneshot::channel();
        self.send(MediaCommand::Publish { mid, offer, reply })
            .await?;
        answer.await.map_err(|_| gone())?
    }

    /// Answers a subscriber's offer for the stream `mid`, as subscription `sid`.
    pub async fn subscribe(
        &self,
        sid: String,
        mid: String,
        offer: String,
    ) -> Result<String, MediaRefusal> {
        let (reply, answer) = oneshot::channel();
        let command = MediaCommand::Subscribe {
            sid,
            mid,
            offer,
            reply,
        };
        self.send(command).await?;
        answer.await.map_err(|_| gone())?
    }

    pub async fn unpublish(&self, mid: String) {
        let _ = self.send(MediaCommand::Unpublish { mid }).await;
    }

    pub async fn unsubscribe(&self, sid: String) {
        let _ = self.send(MediaCommand::Unsubscribe { sid }).await;
    }

    /// What the media loop has forwarded so far; `None` when it is gone.
    pub async fn stats(&self) -> Option<super::MediaStats> {
        let (reply, stats) = oneshot::channel();
        self.send(MediaCommand::Stats { reply }).await.ok()?;
        stats.await.ok()
    }

    async fn send(&self, command: MediaCommand) -> Result<(), MediaRefusal> {
        self.commands.send(command).await.map_err(|_| gone())
    }
}

fn gone() -> MediaRefusal {
    MediaRefusal {
        code: ErrorCode::MediaError,
        reason: "the media plane is not running".to_owned(),
    }
}
