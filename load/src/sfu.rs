//! `load sfu`: rooms of real WebRTC publishers and subscribers (the suite's str0m peers, real
//! Opus and VP8) against an SFU on loopback. It reports join→first-RTP latency, forwarded
//! samples and bitrate, loss, jitter, NACK and PLI counts, the SFU's CPU per forwarded RTP
//! packet (when its pid is known), and this process's own CPU, so that a run can say when the
//! load generator is the bottleneck. A bare UDP relay forwarding the same packets to the same
//! fan-out runs after it, in the same run, as the baseline (`crate::udp_relay`).

use crate::stats::Stats;
use conformance::cases::sfu::{stream_of, Peer};
use conformance::client::media::{MediaPeer, Tracks};
use conformance::client::Transcript;
use conformance::target::{Ctx, SfuEndpoint};
use std::sync::Arc;
use std::sync::PoisonError;
use std::time::{Duration, Instant};
use str0m::media::MediaKind;

/// What to run.
#[derive(Debug, Clone)]
pub struct Scenario {
    /// The SFU's signaling URL without query, `ws://127.0.0.1:8443/ws`.
    pub ws_url: String,
    pub rooms: usize,
    pub publishers: usize,
    pub subscribers: usize,
    pub tracks: Tracks,
    pub duration: Duration,
    /// Subscriber joins per second while the rooms fill.
    pub joins_per_sec: f64,
    /// Count RTP datagrams at all subscribers but every tenth instead of decrypting them.
    pub light: bool,
}

/// Everything that was set up, alive until dropped.
pub struct Running {
    pub publishers: Vec<MediaPeer>,
    /// Each subscription: its media peer and the index of the publisher it receives.
    pub subscriptions: Vec<(MediaPeer, usize)>,
    /// Join sent → first sample of the subscriber's first subscription.
    pub join_to_first_rtp: Arc<Stats>,
    signaling: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Running {
    fn drop(&mut self) {
        for task in &self.signaling {
            task.abort();
        }
    }
}

fn ctx(url: &str) -> Ctx {
    Ctx {
        nodemgr: None,
        cmdrelay: None,
        ecapture: None,
        logrtc: None,
        sfu: Some(SfuEndpoint {
            ws_url: url.to_owned(),
            keepalive_timeout: Some(Duration::from_secs(30)),
        }),
        wait: Duration::from_secs(10),
        slow_wait: Duration::from_secs(30),
        // A transcript that nobody reads: the load keeps no per-frame record.
        transcript: Transcript::default(),
    }
}

/// Keeps a peer's signaling alive (keepalives, notifications read) until aborted or the SFU
/// closes it.
fn keep_alive(mut peer: Peer) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move { peer.stay_joined().await })
}

/// Joins every room with its publishers, then paces the subscribers in.
pub async fn set_up(scenario: &Scenario) -> anyhow::Result<Running> {
    let ctx = ctx(&scenario.ws_url);
    let mut running = Running {
        publishers: Vec::new(),
        subscriptions: Vec::new(),
        join_to_first_rtp: Stats::new(),
        signaling: Vec::new(),
    };
    let mut streams = Vec::new();
    for room in 0..scenario.rooms {
        let rid = format!("load-room-{room}-{}", uuid::Uuid::new_v4().simple());
        for _ in 0..scenario.publishers {
            let mut peer = Peer::joined(&ctx, &rid)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            let (media, answer) = peer
                .publish(scenario.tracks)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            let (mid, sfuid) = stream_of(&answer).map_err(|e| anyhow::anyhow!("{e}"))?;
            streams.push((rid.clone(), mid, sfuid, running.publishers.len()));
            running.publishers.push(media);
            running.signaling.push(keep_alive(peer));
        }
    }
    let pace = Duration::from_secs_f64(1.0 / scenario.joins_per_sec.max(0.1));
    let mut next_join = Instant::now();
    let mut progress = SetUpProgress::new(scenario.rooms * scenario.subscribers);
    for in_room in streams.chunks(scenario.publishers.max(1)) {
        for in_room_index in 0..scenario.subscribers {
            progress.show(&running);
            tokio::time::sleep_until(next_join.into()).await;
            next_join += pace;
            let joined_at = Instant::now();
            let mut peer = Peer::joined(&ctx, &in_room[0].0)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            let first = running.subscriptions.len();
            // Every tenth subscriber of each room decodes (by subscriber, not by subscription:
            // with ten publishers every subscriber's first subscription index is a multiple of
            // ten, and once that made every subscriber decode).
            let counting = scenario.light && in_room_index % 10 != 0;
            for (_, mid, sfuid, publisher) in in_room {
                let (media, _) = peer
                    .subscribe_with(mid, sfuid, counting)
                    .await
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
                running.subscriptions.push((media, *publisher));
            }
            running.signaling.push(keep_alive(peer));
            watch_first_rtp(&running, first, joined_at);
        }
    }
    Ok(running)
}

/// A line on stderr every few seconds while subscribers join: a big room takes minutes.
struct SetUpProgress {
    subscribers: usize,
    joined: usize,
    started: Instant,
    last_shown: Instant,
}

impl SetUpProgress {
    const EVERY: Duration = Duration::from_secs(5);

    fn new(subscribers: usize) -> Self {
        let now = Instant::now();
        Self {
            subscribers,
            joined: 0,
            started: now,
            last_shown: now,
        }
    }

    /// Called before each join.
    fn show(&mut self, running: &Running) {
        if self.last_shown.elapsed() >= Self::EVERY {
            self.last_shown = Instant::now();
            eprintln!(
                "[{:>4.0}s] set-up: {} of {} subscribers joined, {} subscriptions",
                self.started.elapsed().as_secs_f64(),
                self.joined,
                self.subscribers,
                running.subscriptions.len()
            );
        }
        self.joined += 1;
    }
}

/// Records join → first sample of the subscription at `index`, once it arrives.
fn watch_first_rtp(running: &Running, index: usize, joined_at: Instant) {
    let report = running.subscriptions[index].0.report_handle();
    let stats = running.join_to_first_rtp.clone();
    tokio::spawn(async move {
        let deadline = joined_at + Duration::from_secs(30);
        while Instant::now() < deadline {
            let first = report
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .first_sample;
            if let Some(at) = first {
                stats.record_ack(at.duration_since(joined_at));
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        stats.record_error("no RTP within 30 s");
    });
}

/// Counters summed over peers at one instant.
#[derive(Debug, Clone, Copy, Default)]
pub struct Tally {
    /// Samples received by subscribers, and their bytes.
    pub received: u64,
    pub bytes: u64,
    /// Samples the publishers of each subscription sent (what should have arrived).
    pub expected: u64,
    /// RTP packets received by subscribers (str0m's counters, retransmissions in).
    pub rtp_packets: u64,
    pub rtp_bytes: u64,
    pub nacks_sent: u64,
    pub plis_sent: u64,
    pub jitter_audio_ms: f64,
    pub jitter_video_ms: f64,
}

pub fn tally(running: &Running) -> Tally {
    let lock = |m: &MediaPeer| m.report_handle();
    let sent: Vec<(u64, u64)> = running
        .publishers
        .iter()
        .map(|p| {
            let handle = lock(p);
            let report = handle.lock().unwrap_or_else(PoisonError::into_inner);
            (report.samples_sent, report.rtp_datagrams_sent)
        })
        .collect();
    let mut tally = Tally::default();
    for (media, publisher) in &running.subscriptions {
        let handle = lock(media);
        let report = handle.lock().unwrap_or_else(PoisonError::into_inner);
        let (samples_sent, datagrams_sent) = sent[*publisher];
        // A counting subscriber is judged by RTP datagrams, a decoding one by samples.
        let counting = report.rtp_datagrams > 0;
        tally.received += report.audio_received + report.video_received + report.rtp_datagrams;
        tally.bytes += report.bytes_received + report.rtp_datagram_bytes;
        tally.expected += if counting {
            datagrams_sent
        } else {
            samples_sent
        };
        tally.rtp_packets += report.rtp_datagrams;
        tally.rtp_bytes += report.rtp_datagram_bytes;
        for line in report.rtp.values() {
            tally.rtp_packets += line.packets;
            tally.rtp_bytes += line.bytes;
            tally.nacks_sent += line.nacks;
            tally.plis_sent += line.plis;
            match line.kind {
                Some(MediaKind::Video) => {
                    tally.jitter_video_ms = tally.jitter_video_ms.max(line.jitter_ms)
                }
                _ => tally.jitter_audio_ms = tally.jitter_audio_ms.max(line.jitter_ms),
            }
        }
    }
    tally
}

/// CPU seconds (user + system) a process or thread has used, from `/proc/<path>/stat`.
pub fn cpu_seconds(stat_path: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(stat_path).ok()?;
    // Fields after the command's closing parenthesis; utime and stime are the 12th and 13th.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / clock_ticks_per_second())
}

/// Each thread of a process: its id, name and CPU seconds so far.
pub type ThreadCpu = std::collections::HashMap<u32, (String, f64)>;

/// CPU seconds of every thread of process `pid` (`/proc/<pid>/task/*`); empty where there is
/// no such process or no `/proc`.
pub fn thread_cpu_seconds(pid: u32) -> ThreadCpu {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return ThreadCpu::new();
    };
    tasks
        .flatten()
        .filter_map(|task| {
            let tid = task.file_name().to_str()?.parse().ok()?;
            let path = task.path();
            let name = std::fs::read_to_string(path.join("comm")).ok()?;
            let cpu = cpu_seconds(path.join("stat").to_str()?)?;
            Some((tid, (name.trim().to_owned(), cpu)))
        })
        .collect()
}

/// CPU seconds spent between two readings, by thread name (threads of one name summed), the
/// busiest first. A thread born in between counts from zero.
pub fn cpu_by_thread_name(start: &ThreadCpu, end: &ThreadCpu) -> Vec<(String, f64)> {
    let mut by_name: Vec<(String, f64)> = Vec::new();
    for (tid, (name, cpu)) in end {
        let before = start.get(tid).map_or(0.0, |(_, cpu)| *cpu);
        let spent = (cpu - before).max(0.0);
        match by_name.iter_mut().find(|(n, _)| n == name) {
            Some((_, total)) => *total += spent,
            None => by_name.push((name.clone(), spent)),
        }
    }
    by_name.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    by_name
}

/// `sysconf(_SC_CLK_TCK)` is 100 on every Linux this runs on.
fn clock_ticks_per_second() -> f64 {
    100.0
}

#[cfg(test)]
mod thread_tests {
    use super::*;

    #[test]
    fn threads_of_one_name_are_summed_and_a_new_thread_counts_from_zero() {
        let start: ThreadCpu = [
            (1, ("sfu-media".to_owned(), 10.0)),
            (2, ("tokio-rt-worker".to_owned(), 1.0)),
            (3, ("tokio-rt-worker".to_owned(), 2.0)),
        ]
        .into();
        let end: ThreadCpu = [
            (1, ("sfu-media".to_owned(), 14.0)),
            (2, ("tokio-rt-worker".to_owned(), 1.5)),
            (3, ("tokio-rt-worker".to_owned(), 2.5)),
            (4, ("sfu-fanout-1".to_owned(), 3.0)),
        ]
        .into();
        assert_eq!(
            cpu_by_thread_name(&start, &end),
            [
                ("sfu-media".to_owned(), 4.0),
                ("sfu-fanout-1".to_owned(), 3.0),
                ("tokio-rt-worker".to_owned(), 1.0),
            ]
        );
    }

    #[test]
    fn a_process_that_is_not_there_has_no_threads() {
        assert!(thread_cpu_seconds(u32::MAX).is_empty());
    }
}
