//! The SFU's media loop: one UDP socket, the [`Sfu`] core, and the command channel from
//! signaling. One task owns all of it, so no lock is taken per packet.

use crate::faults::Faults;
use crate::media::{MediaCommand, MediaHandle, Sfu, SfuConfig, MAX_DATAGRAM};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// The longest the loop sleeps when no peer has a timer.
const IDLE_TICK: Duration = Duration::from_millis(100);

/// A running media loop.
#[derive(Debug)]
pub struct MediaLoop {
    pub handle: MediaHandle,
    pub local_addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Drop for MediaLoop {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Binds the media socket at `bind` (port 0 for any) and starts the loop; with `record_dir`,
/// published Opus tracks are recorded there.
pub async fn start_media(
    bind: SocketAddr,
    faults: Faults,
    record_dir: Option<PathBuf>,
) -> std::io::Result<MediaLoop> {
    if let Some(dir) = &record_dir {
        std::fs::create_dir_all(dir)?;
    }
    let socket = UdpSocket::bind(bind).await?;
    let local_addr = socket.local_addr()?;
    let (commands, inbox) = mpsc::channel(crate::media::handle::COMMAND_QUEUE_DEPTH);
    let sfu = Sfu::new(SfuConfig {
        local_addr,
        faults,
        record_dir,
    });
    let task = tokio::spawn(run(socket, sfu, inbox));
    Ok(MediaLoop {
        handle: MediaHandle::new(commands),
        local_addr,
        task,
    })
}

async fn run(socket: UdpSocket, mut sfu: Sfu, mut inbox: mpsc::Receiver<MediaCommand>) {
    let mut buf = vec![0_u8; MAX_DATAGRAM];
    loop {
        flush(&socket, &mut sfu).await;
        let deadline = sfu
            .poll_timeout()
            .unwrap_or_else(|| Instant::now() + IDLE_TICK);
        tokio::select! {
            read = socket.recv_from(&mut buf) => {
                // Errors here are ICMP reports about earlier sends: nothing to do.
                if let Ok((len, source)) = read {
                    sfu.handle_datagram(Instant::now(), source, &buf[..len]);
                }
            }
            command = inbox.recv() => match command {
                Some(command) => perform(&mut sfu, command),
                None => return,
            },
            () = tokio::time::sleep_until(deadline.into()) => sfu.handle_timeout(Instant::now()),
        }
    }
}

async fn flush(socket: &UdpSocket, sfu: &mut Sfu) {
    while let Some((destination, datagram)) = sfu.poll_transmit() {
        // A send that fails is a lost packet, which RTP and SCTP are built to survive.
        let _ = socket.send_to(&datagram, destination).await;
    }
}

fn perform(sfu: &mut Sfu, command: MediaCommand) {
    let now = Instant::now();
    match command {
        MediaCommand::Publish { mid, offer, reply } => {
            let _ = reply.send(sfu.publish(now, &mid, &offer));
        }
        MediaCommand::Subscribe {
            sid,
            mid,
            offer,
            reply,
        } => {
            let _ = reply.send(sfu.subscribe(now, &sid, &mid, &offer));
        }
        MediaCommand::Unpublish { mid } => sfu.unpublish(&mid),
        MediaCommand::Unsubscribe { sid } => sfu.unsubscribe(&sid),
        MediaCommand::Stats { reply } => {
            let _ = reply.send(sfu.stats());
        }
    }
}
