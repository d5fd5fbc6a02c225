//! Where counting subscribers (`MediaPeer::counting_subscriber`, `load sfu --light`) read their
//! sockets once connected: one thread and one epoll for all of them, which naps a millisecond
//! between reads so that the datagrams that arrived meanwhile are read together.
//!
//! Why: a task per socket, woken per datagram, cost the load generator about 12 µs of CPU per
//! datagram at 100,000 datagrams a second (2026-12-06, 3,000 subscriptions on two cores), more
//! than the SFU it measured, and every `sendto` toward a sleeping reader also pays for waking
//! it. Here a datagram costs its `recv`.
//!
//! RTP is counted here, in the peer's report; every other datagram (STUN, DTLS, RTCP) goes to
//! the peer's task, for str0m. A socket reads at most one datagram per nap (level-triggered, it
//! is read again after the next), which is about 900 datagrams a second per socket: far above a
//! subscription's 50.

use super::media::{is_rtp, PeerReport};
use rustix::event::epoll;
use std::collections::HashMap;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// Non-RTP datagrams queued toward a peer's task; beyond it they are dropped, which STUN,
/// DTLS and RTCP survive.
const TO_PEER_DEPTH: usize = 64;
/// Ready sockets taken per wait.
const EVENTS_PER_WAIT: usize = 512;
/// Between reads, so that one wait gathers many sockets.
const NAP: Duration = Duration::from_millis(1);
/// How often sockets whose peers are gone are dropped.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// A datagram for the peer's task, with its source.
pub type Datagram = (SocketAddr, Vec<u8>);

/// What a peer keeps once its socket is adopted: the socket, to send on, and its datagrams.
pub struct Adopted {
    pub socket: Arc<UdpSocket>,
    pub inbox: mpsc::Receiver<Datagram>,
}

struct Member {
    socket: Arc<UdpSocket>,
    report: Arc<Mutex<PeerReport>>,
    to_peer: mpsc::Sender<Datagram>,
}

struct Pool {
    epoll: OwnedFd,
    members: Mutex<HashMap<u64, Member>>,
    next_token: AtomicU64,
}

static POOL: OnceLock<Result<Arc<Pool>, String>> = OnceLock::new();
/// RTP datagrams the pool has counted in this process, for tests that must know who counted.
static COUNTED: AtomicU64 = AtomicU64::new(0);

/// RTP datagrams counted by the pool so far, across all its sockets.
pub fn datagrams_counted() -> u64 {
    COUNTED.load(Ordering::Relaxed)
}

/// Hands `socket` (non-blocking) to the pool, which counts its RTP into `report` from now on.
pub fn adopt(socket: UdpSocket, report: Arc<Mutex<PeerReport>>) -> Result<Adopted, String> {
    let pool = POOL.get_or_init(Pool::start).clone()?;
    let socket = Arc::new(socket);
    let (to_peer, inbox) = mpsc::channel(TO_PEER_DEPTH);
    let token = pool.next_token.fetch_add(1, Ordering::Relaxed);
    pool.lock().insert(
        token,
        Member {
            socket: Arc::clone(&socket),
            report,
            to_peer,
        },
    );
    let interest = epoll::EventFlags::IN;
    if let Err(error) = epoll::add(
        &pool.epoll,
        &*socket,
        epoll::EventData::new_u64(token),
        interest,
    ) {
        pool.lock().remove(&token);
        return Err(format!("epoll_ctl: {error}"));
    }
    Ok(Adopted { socket, inbox })
}

impl Pool {
    fn start() -> Result<Arc<Pool>, String> {
        let epoll =
            epoll::create(epoll::CreateFlags::CLOEXEC).map_err(|e| format!("epoll_create: {e}"))?;
        let pool = Arc::new(Pool {
            epoll,
            members: Mutex::new(HashMap::new()),
            next_token: AtomicU64::new(0),
        });
        let running = Arc::clone(&pool);
        std::thread::Builder::new()
            .name("counting-subscribers".to_owned())
            .spawn(move || running.run())
            .map_err(|e| format!("thread: {e}"))?;
        Ok(pool)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Member>> {
        self.members.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn run(&self) {
        let idle = epoll::Event {
            flags: epoll::EventFlags::empty(),
            data: epoll::EventData::new_u64(0),
        };
        let mut events = vec![idle; EVENTS_PER_WAIT];
        let mut buf = vec![0_u8; 2048];
        let mut last_sweep = Instant::now();
        let at_most = rustix::event::Timespec {
            tv_sec: 1,
            tv_nsec: 0,
        };
        loop {
            let ready = epoll::wait(&self.epoll, &mut events[..], Some(&at_most)).unwrap_or(0);
            let mut members = self.lock();
            for event in &events[..ready] {
                let token = event.data.u64();
                if let Some(member) = members.get(&token) {
                    member.read_one(&mut buf);
                }
            }
            if last_sweep.elapsed() >= SWEEP_EVERY {
                last_sweep = Instant::now();
                members.retain(|_, member| {
                    let alive = !member.to_peer.is_closed();
                    if !alive {
                        let _ = epoll::delete(&self.epoll, &*member.socket);
                    }
                    alive
                });
            }
            drop(members);
            if ready < EVENTS_PER_WAIT {
                std::thread::sleep(NAP);
            }
        }
    }
}

impl Member {
    /// Reads one datagram: RTP is counted, the rest goes to the peer.
    fn read_one(&self, buf: &mut [u8]) {
        let Ok((len, source)) = self.socket.recv_from(buf) else {
            return;
        };
        let data = &buf[..len];
        if !is_rtp(data) {
            let _ = self.to_peer.try_send((source, data.to_vec()));
            return;
        }
        COUNTED.fetch_add(1, Ordering::Relaxed);
        let mut report = self.report.lock().unwrap_or_else(PoisonError::into_inner);
        report.first_sample.get_or_insert_with(Instant::now);
        report.rtp_datagrams += 1;
        report.rtp_datagram_bytes += len as u64;
    }
}
