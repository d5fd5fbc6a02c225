//! The baseline for `load sfu`: a bare UDP relay that forwards each packet of each stream to
//! that stream's receivers, with no crypto and no RTP, measured in the same run. Its CPU per
//! forwarded packet is the floor an SFU is compared against.
//!
//! Its receivers read the way the run's subscribers do: a task per socket asleep until a
//! datagram arrives (decoding subscribers), or threads that never wait in the kernel (the
//! counting pool of `--light`). That matters to the relay's own CPU: a datagram sent to a
//! socket with a sleeping reader also pays, inside the sender's `sendto`, for waking it.

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What the relay is asked to carry: the same shape as the SFU run.
#[derive(Debug, Clone, Copy)]
pub struct RelayLoad {
    pub streams: usize,
    pub fanout: usize,
    pub packets_per_sec: f64,
    pub packet_bytes: usize,
    pub duration: Duration,
    pub receivers: Receivers,
}

/// How the relay's receiving sockets are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Receivers {
    /// A task per socket on the given runtime, asleep until a datagram arrives, as each
    /// subscriber of `load sfu` is.
    Waiting,
    /// Two threads that sweep all sockets without blocking and nap 1 ms when all are empty:
    /// no reader is ever woken, as with the counting pool (`conformance::client::counting`).
    Polling,
}

#[derive(Debug, Clone, Copy)]
pub struct RelayFigures {
    pub forwarded: u64,
    pub received: u64,
    /// CPU seconds of the relay thread alone.
    pub relay_cpu: f64,
}

impl RelayFigures {
    pub fn cpu_per_packet_us(&self) -> f64 {
        self.relay_cpu * 1e6 / self.forwarded.max(1) as f64
    }
}

/// Runs the relay, its senders and its receivers on loopback for `load.duration`; waiting
/// receivers run on `runtime`.
pub fn run(load: RelayLoad, runtime: &tokio::runtime::Handle) -> std::io::Result<RelayFigures> {
    let relay = UdpSocket::bind("127.0.0.1:0")?;
    relay.set_read_timeout(Some(Duration::from_millis(50)))?;
    let relay_addr = relay.local_addr()?;
    let stop = Arc::new(AtomicBool::new(false));
    let received = Arc::new(AtomicU64::new(0));
    let mut receivers = Vec::new();
    let mut routes: Vec<Vec<SocketAddr>> = Vec::new();
    for _ in 0..load.streams {
        let mut route = Vec::new();
        for _ in 0..load.fanout {
            let socket = UdpSocket::bind("127.0.0.1:0")?;
            route.push(socket.local_addr()?);
            receivers.push(socket);
        }
        routes.push(route);
    }
    let senders: Vec<UdpSocket> = (0..load.streams)
        .map(|_| UdpSocket::bind("127.0.0.1:0"))
        .collect::<Result<_, _>>()?;
    let by_sender: std::collections::HashMap<SocketAddr, usize> = senders
        .iter()
        .enumerate()
        .filter_map(|(i, s)| s.local_addr().ok().map(|a| (a, i)))
        .collect();
    let (receiving_threads, receiving_tasks) = match load.receivers {
        Receivers::Waiting => (
            Vec::new(),
            spawn_waiting_receivers(receivers, runtime, received.clone())?,
        ),
        Receivers::Polling => (
            spawn_receivers(receivers, stop.clone(), received.clone()),
            Vec::new(),
        ),
    };
    let relay_thread = {
        let stop = stop.clone();
        std::thread::spawn(move || forward(&relay, &routes, &by_sender, &stop))
    };
    send(&senders, relay_addr, load);
    std::thread::sleep(Duration::from_millis(200));
    stop.store(true, Ordering::Relaxed);
    let (forwarded, relay_cpu) = relay_thread.join().unwrap_or((0, 0.0));
    for handle in receiving_threads {
        let _ = handle.join();
    }
    for task in receiving_tasks {
        task.abort();
    }
    Ok(RelayFigures {
        forwarded,
        received: received.load(Ordering::Relaxed),
        relay_cpu,
    })
}

/// The relay loop; returns packets forwarded and the thread's CPU seconds.
fn forward(
    relay: &UdpSocket,
    routes: &[Vec<SocketAddr>],
    by_sender: &std::collections::HashMap<SocketAddr, usize>,
    stop: &AtomicBool,
) -> (u64, f64) {
    let cpu_at_start = crate::sfu::cpu_seconds("/proc/thread-self/stat").unwrap_or(0.0);
    let mut buf = [0_u8; 2048];
    let mut forwarded = 0;
    while !stop.load(Ordering::Relaxed) {
        let Ok((len, from)) = relay.recv_from(&mut buf) else {
            continue;
        };
        let Some(route) = by_sender.get(&from).and_then(|i| routes.get(*i)) else {
            continue;
        };
        for to in route {
            if relay.send_to(&buf[..len], to).is_ok() {
                forwarded += 1;
            }
        }
    }
    let cpu = crate::sfu::cpu_seconds("/proc/thread-self/stat").unwrap_or(0.0) - cpu_at_start;
    (forwarded, cpu)
}

/// Each stream sends `packets_per_sec` packets, paced in 10 ms ticks, for the duration.
fn send(senders: &[UdpSocket], relay: SocketAddr, load: RelayLoad) {
    let packet = vec![0x80_u8; load.packet_bytes];
    let started = Instant::now();
    let mut sent_per_stream = 0_u64;
    while started.elapsed() < load.duration {
        let due = (started.elapsed().as_secs_f64() * load.packets_per_sec) as u64;
        while sent_per_stream < due {
            for socket in senders {
                let _ = socket.send_to(&packet, relay);
            }
            sent_per_stream += 1;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A task per socket on `runtime`, each counting what it reads; aborted by the caller.
fn spawn_waiting_receivers(
    sockets: Vec<UdpSocket>,
    runtime: &tokio::runtime::Handle,
    received: Arc<AtomicU64>,
) -> std::io::Result<Vec<tokio::task::JoinHandle<()>>> {
    let _entered = runtime.enter();
    let sockets = sockets
        .into_iter()
        .map(|socket| {
            socket.set_nonblocking(true)?;
            tokio::net::UdpSocket::from_std(socket)
        })
        .collect::<std::io::Result<Vec<_>>>()?;
    let receive = |socket: tokio::net::UdpSocket| {
        let received = received.clone();
        runtime.spawn(async move {
            let mut buf = [0_u8; 2048];
            while socket.recv(&mut buf).await.is_ok() {
                received.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    // Every socket is converted before any task starts: a failure leaves none behind.
    Ok(sockets.into_iter().map(receive).collect())
}

/// Receiver threads, each draining a share of the sockets until stopped.
fn spawn_receivers(
    sockets: Vec<UdpSocket>,
    stop: Arc<AtomicBool>,
    received: Arc<AtomicU64>,
) -> Vec<std::thread::JoinHandle<()>> {
    let mut shares: Vec<Vec<UdpSocket>> = (0..2).map(|_| Vec::new()).collect();
    for (i, socket) in sockets.into_iter().enumerate() {
        let _ = socket.set_nonblocking(true);
        shares[i % 2].push(socket);
    }
    shares
        .into_iter()
        .map(|share| {
            let (stop, received) = (stop.clone(), received.clone());
            std::thread::spawn(move || drain(&share, &stop, &received))
        })
        .collect()
}

fn drain(sockets: &[UdpSocket], stop: &AtomicBool, received: &AtomicU64) {
    let mut buf = [0_u8; 2048];
    while !stop.load(Ordering::Relaxed) {
        let mut got = 0;
        for socket in sockets {
            while socket.recv(&mut buf).is_ok() {
                got += 1;
            }
        }
        received.fetch_add(got, Ordering::Relaxed);
        if got == 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}
