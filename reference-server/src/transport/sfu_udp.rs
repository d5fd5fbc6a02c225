//! The SFU's media loop: one UDP socket, the [`Sfu`] core, and the command channel from
//! signaling. One thread of its own owns all of it (a single-threaded runtime), so no lock is
//! taken per packet. The one thing shared is the sealing and sending of forwarded media
//! ([`crate::media::fanout`]): each fanout thread seals its share of the subscribers and sends
//! on the same socket, woken once per published packet, not per datagram.

use crate::faults::Faults;
use crate::media::{
    FanoutCounters, FanoutMessage, MediaCommand, MediaHandle, MediaOptions, SealShard, Sfu,
    SfuConfig, MAX_DATAGRAM,
};
use std::net::SocketAddr;
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::time::{Duration, Instant};
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use tokio::sync::{mpsc, oneshot};

/// The longest the loop sleeps when no peer has a timer.
const IDLE_TICK: Duration = Duration::from_millis(100);
/// The socket's receive buffer: subscribers' RTCP (receiver reports, TWCC feedback) arrives
/// at thousands of datagrams a second, and a burst must wait while the loop sends. The kernel
/// caps it at `net.core.rmem_max`.
pub const RECEIVE_BUFFER_BYTES: usize = 4 * 1024 * 1024;
/// Datagrams read in one go before what they caused is sent.
const READ_BATCH: usize = 64;
/// Datagrams handed to the kernel in one `sendmmsg` call: one Opus packet for a room of 300 is
/// five calls instead of 300.
const SEND_BATCH: usize = 64;
/// Messages queued toward one fanout thread; past it a packet is dropped for that thread's
/// subscribers, and counted (`datagrams_dropped`).
const FANOUT_QUEUE_DEPTH: usize = 1024;
/// The longest a sender waits at once for a full socket buffer to take datagrams again.
const WRITABLE_WAIT: Duration = Duration::from_millis(100);
/// Waits in a row without a datagram taken before the rest of a batch is given up (about a
/// second): a socket that never drains must not stall the loop or a fanout thread for good.
const MAX_WRITABLE_WAITS: u32 = 10;

/// A running media loop; dropped, it stops.
#[derive(Debug)]
pub struct MediaLoop {
    pub handle: MediaHandle,
    pub local_addr: SocketAddr,
    /// Dropping it ends the loop.
    _stop: oneshot::Sender<()>,
}

/// How the media plane starts.
#[derive(Debug, Clone)]
pub struct MediaSetup {
    /// The socket's address (port 0 for any).
    pub bind: SocketAddr,
    pub faults: Faults,
    pub options: MediaOptions,
}

/// Binds the media socket and starts the loop and its fanout threads.
pub async fn start_media(setup: MediaSetup) -> std::io::Result<MediaLoop> {
    let MediaSetup {
        bind,
        faults,
        options,
    } = setup;
    if let Some(dir) = &options.record_dir {
        std::fs::create_dir_all(dir)?;
    }
    let socket = bind_media_socket(bind)?;
    let local_addr = socket.local_addr()?;
    let (commands, inbox) = mpsc::channel(crate::media::handle::COMMAND_QUEUE_DEPTH);
    let sfu = Sfu::new(SfuConfig {
        local_addr,
        faults,
        options,
    });
    let shards = spawn_fanout_threads(&socket, &sfu)?;
    let (stop, stopped) = oneshot::channel();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    std::thread::Builder::new()
        .name("sfu-media".to_owned())
        .spawn(move || {
            runtime.block_on(async move {
                let Ok(socket) = readable_only(socket) else {
                    return;
                };
                tokio::select! {
                    () = run(socket, sfu, inbox, shards) => {}
                    _ = stopped => {}
                }
            });
        })?;
    Ok(MediaLoop {
        handle: MediaHandle::new(commands),
        local_addr,
        _stop: stop,
    })
}

/// The socket registered with this thread's runtime for readability alone (see [`run`]).
#[allow(unsafe_code)]
fn readable_only(socket: std::net::UdpSocket) -> std::io::Result<AsyncFd<std::net::UdpSocket>> {
    // SAFETY: the `AsyncFd` takes the socket, which owns its descriptor, so the descriptor
    // stays open and the same for as long as the registration lives (tokio#8587).
    let registered = unsafe { AsyncFd::register_with_interest(socket, Interest::READABLE) };
    Ok(registered?)
}

/// A non-blocking UDP socket with a large receive buffer.
pub fn bind_media_socket(bind: SocketAddr) -> std::io::Result<std::net::UdpSocket> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(bind),
        socket2::Type::DGRAM,
        Some(socket2::Protocol::UDP),
    )?;
    // Best effort: a smaller buffer still works, it only drops sooner under load.
    let _ = socket.set_recv_buffer_size(RECEIVE_BUFFER_BYTES);
    socket.set_nonblocking(true)?;
    socket.bind(&bind.into())?;
    Ok(socket.into())
}

/// One thread for each shard of the sealed media past the loop's own; their inboxes, by
/// shard index from 1. A thread ends when its inbox is dropped.
fn spawn_fanout_threads(
    socket: &std::net::UdpSocket,
    sfu: &Sfu,
) -> std::io::Result<Vec<SyncSender<FanoutMessage>>> {
    (1..sfu.fanout_shards())
        .map(|index| {
            let (inbox_sender, inbox) = std::sync::mpsc::sync_channel(FANOUT_QUEUE_DEPTH);
            let shard = sfu.new_fanout_shard();
            let counters = sfu.fanout_counters();
            let socket = socket.try_clone()?;
            std::thread::Builder::new()
                .name(format!("sfu-fanout-{index}"))
                .spawn(move || run_shard(&socket, shard, &inbox, &counters))?;
            Ok(inbox_sender)
        })
        .collect()
}

/// A fanout thread: each message carried out, and what it sealed sent before the next. It
/// blocks on its inbox, not on the socket: no socket event ever wakes it.
fn run_shard(
    socket: &std::net::UdpSocket,
    mut shard: SealShard,
    inbox: &Receiver<FanoutMessage>,
    counters: &FanoutCounters,
) {
    let mut datagrams = Vec::new();
    for message in inbox {
        shard.handle(message, &mut |datagram| datagrams.push(datagram));
        let refused: usize = datagrams
            .chunks(SEND_BATCH)
            .map(|batch| send_batch(socket, batch))
            .sum();
        counters.count_sent(datagrams.len());
        counters.count_dropped(refused as u64);
        datagrams.clear();
    }
}

/// The media loop. It waits for the socket to be readable only: registered for writability
/// as well, it would be woken by every datagram a fanout thread sends (each one frees send
/// buffer space, which the kernel reports to every waiter on the socket).
async fn run(
    socket: AsyncFd<std::net::UdpSocket>,
    mut sfu: Sfu,
    mut inbox: mpsc::Receiver<MediaCommand>,
    shards: Vec<SyncSender<FanoutMessage>>,
) {
    let mut buf = vec![0_u8; MAX_DATAGRAM];
    let mut batch = Vec::with_capacity(SEND_BATCH);
    loop {
        dispatch_fanout(&mut sfu, &shards);
        flush(socket.get_ref(), &mut sfu, &mut batch);
        let deadline = sfu
            .poll_timeout()
            .unwrap_or_else(|| Instant::now() + IDLE_TICK);
        tokio::select! {
            readable = socket.readable() => {
                let Ok(mut ready) = readable else {
                    return;
                };
                if read_batch(ready.get_inner(), &mut sfu, &mut buf) == Drained::Empty {
                    ready.clear_ready();
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

/// Hands the fanout threads their messages. A packet or a resend for a thread whose queue is
/// full is dropped and counted (media survives loss); a route change waits for room, since
/// later packets depend on it.
fn dispatch_fanout(sfu: &mut Sfu, shards: &[SyncSender<FanoutMessage>]) {
    while let Some((index, message)) = sfu.poll_fanout() {
        let Some(shard) = index.checked_sub(1).and_then(|i| shards.get(i)) else {
            continue;
        };
        match shard.try_send(message) {
            Ok(()) | Err(TrySendError::Disconnected(_)) => {}
            Err(TrySendError::Full(FanoutMessage::Packet { routes, .. })) => {
                sfu.fanout_counters().count_dropped(routes);
            }
            Err(TrySendError::Full(FanoutMessage::Resend { packets, .. })) => {
                sfu.fanout_counters().count_dropped(packets.len() as u64);
            }
            Err(TrySendError::Full(message)) => {
                let _ = shard.send(message);
            }
        }
    }
}

/// Whether a read found the socket empty.
#[derive(Debug, PartialEq, Eq)]
enum Drained {
    Empty,
    More,
}

/// Reads what is queued, up to a batch, without waiting.
fn read_batch(socket: &std::net::UdpSocket, sfu: &mut Sfu, buf: &mut [u8]) -> Drained {
    for _ in 0..READ_BATCH {
        match socket.recv_from(buf) {
            Ok((len, source)) => sfu.handle_datagram(Instant::now(), source, &buf[..len]),
            Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => return Drained::Empty,
            // ICMP reports about earlier sends: nothing to do.
            Err(_) => continue,
        }
    }
    Drained::More
}

/// Sends everything the SFU has queued, a batch per system call.
fn flush(socket: &std::net::UdpSocket, sfu: &mut Sfu, batch: &mut Vec<(SocketAddr, Vec<u8>)>) {
    loop {
        batch.clear();
        batch.extend(std::iter::from_fn(|| sfu.poll_transmit()).take(SEND_BATCH));
        if batch.is_empty() {
            return;
        }
        let refused = send_batch(socket, batch);
        sfu.fanout_counters().count_dropped(refused as u64);
    }
}

/// Most batches go out at once; the sender waits for room only when the socket's buffer is
/// full, which on loopback is rare (a datagram leaves the buffer as it is delivered). A
/// datagram the kernel refuses, or that finds the buffer full for [`MAX_WRITABLE_WAITS`]
/// waits in a row, is a lost packet, which RTP and SCTP are built to survive. Returns how many
/// of the batch were lost so.
fn send_batch(socket: &std::net::UdpSocket, batch: &[(SocketAddr, Vec<u8>)]) -> usize {
    let (mut done, mut refused, mut waits) = (0, 0, 0);
    while let Some(rest) = batch.get(done..).filter(|rest| !rest.is_empty()) {
        match send_many(socket, rest) {
            // `sendmmsg` reports an error only when the first datagram failed; zero never
            // comes back for a non-empty batch, but must not spin if it did.
            Ok(count) => {
                done += count.max(1);
                waits = 0;
            }
            Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {
                waits += 1;
                if waits > MAX_WRITABLE_WAITS || !wait_writable(socket) {
                    return refused + rest.len();
                }
            }
            Err(_) => {
                done += 1;
                refused += 1;
            }
        }
    }
    refused
}

/// Waits until the socket takes datagrams again, or a while; `false` when it cannot tell.
/// A one-off `poll(2)`, so that no waiter stays on the socket.
fn wait_writable(socket: &std::net::UdpSocket) -> bool {
    use rustix::event::{poll, PollFd, PollFlags, Timespec};
    let mut fds = [PollFd::new(socket, PollFlags::OUT)];
    let timeout = Timespec {
        tv_sec: 0,
        tv_nsec: WRITABLE_WAIT.as_nanos() as i64,
    };
    poll(&mut fds, Some(&timeout)).is_ok()
}

/// Sends a prefix of `datagrams` in one `sendmmsg(2)`; the count sent.
#[cfg(target_os = "linux")]
fn send_many(
    socket: &std::net::UdpSocket,
    datagrams: &[(SocketAddr, Vec<u8>)],
) -> std::io::Result<usize> {
    use rustix::net::{sendmmsg, MMsgHdr, SendAncillaryBuffer, SendFlags, SocketAddrAny};
    use std::io::IoSlice;
    let addresses: Vec<SocketAddrAny> = datagrams.iter().map(|(to, _)| (*to).into()).collect();
    let payloads: Vec<[IoSlice<'_>; 1]> = datagrams
        .iter()
        .map(|(_, data)| [IoSlice::new(data)])
        .collect();
    let mut no_control: Vec<SendAncillaryBuffer<'_, '_, '_>> = datagrams
        .iter()
        .map(|_| SendAncillaryBuffer::default())
        .collect();
    let mut messages: Vec<MMsgHdr<'_>> = addresses
        .iter()
        .zip(&payloads)
        .zip(no_control.iter_mut())
        .map(|((to, payload), control)| MMsgHdr::new_with_addr(to, payload, control))
        .collect();
    Ok(sendmmsg(socket, &mut messages, SendFlags::empty())?)
}

/// Elsewhere, one `sendto` a datagram until the socket would block.
#[cfg(not(target_os = "linux"))]
fn send_many(
    socket: &std::net::UdpSocket,
    datagrams: &[(SocketAddr, Vec<u8>)],
) -> std::io::Result<usize> {
    let mut sent = 0;
    for (to, data) in datagrams {
        match socket.try_send_to(data, *to) {
            Ok(_) => sent += 1,
            Err(error) if sent == 0 => return Err(error),
            Err(_) => break,
        }
    }
    Ok(sent)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn loopback_socket() -> std::net::UdpSocket {
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").expect("a socket");
        socket
            .set_read_timeout(Some(Duration::from_secs(2)))
            .expect("a timeout");
        socket
    }

    #[test]
    fn a_datagram_the_kernel_refuses_is_counted_and_the_rest_of_the_batch_still_goes() {
        let sender = bind_media_socket("127.0.0.1:0".parse().expect("an address")).expect("bound");
        let receiver = loopback_socket();
        let to = receiver.local_addr().expect("an address");
        // Broadcast without SO_BROADCAST: the kernel refuses it (EACCES).
        let refused: SocketAddr = "255.255.255.255:9".parse().expect("an address");
        let batch = vec![
            (refused, b"first".to_vec()),
            (to, b"second".to_vec()),
            (refused, b"third".to_vec()),
            (to, b"fourth".to_vec()),
        ];
        assert_eq!(send_batch(&sender, &batch), 2);
        let mut buf = [0_u8; 64];
        for expected in [&b"second"[..], b"fourth"] {
            let (len, _) = receiver.recv_from(&mut buf).expect("a datagram");
            assert_eq!(&buf[..len], expected);
        }
    }
}
