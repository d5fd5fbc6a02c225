//! Where events come from: a replay file (JSON Lines, see [`super::records`]) or a synthetic
//! generator, paced at a rate. Time is an input: the driver asks what is due now.

use super::pb::Event;
use bytes::Bytes;
use std::time::{Duration, Instant};

/// The events a server pushes.
#[derive(Debug, Clone)]
pub enum SourceConfig {
    /// No events: heartbeats and process logs only.
    None,
    /// These events in order, stamped with the send time, `repeat`ed or once.
    Replay {
        events: Vec<Event>,
        rate: f64,
        repeat: bool,
    },
    /// Generated HTTP-like events with payloads of `payload_size` bytes.
    Synthetic { rate: f64, payload_size: usize },
}

impl SourceConfig {
    pub fn rate(&self) -> f64 {
        match self {
            Self::None => 0.0,
            Self::Replay { rate, .. } | Self::Synthetic { rate, .. } => *rate,
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Self::None => "no events".to_owned(),
            Self::Replay {
                events,
                rate,
                repeat,
            } => format!(
                "{} replayed events at {rate}/s{}",
                events.len(),
                if *repeat { ", repeated" } else { "" }
            ),
            Self::Synthetic { rate, payload_size } => {
                format!("synthetic events of {payload_size} bytes at {rate}/s")
            }
        }
    }
}

/// Makes the next event on demand.
#[derive(Debug)]
pub struct EventSource {
    config: SourceConfig,
    payloads: Vec<Bytes>,
    made: u64,
}

impl EventSource {
    pub fn new(config: SourceConfig) -> Self {
        let payloads = match &config {
            SourceConfig::Synthetic { payload_size, .. } => synthetic_payloads(*payload_size),
            _ => Vec::new(),
        };
        Self {
            config,
            payloads,
            made: 0,
        }
    }

    /// The next event stamped `unix_nanos`; `None` once a one-shot replay is done.
    pub fn next_event(&mut self, unix_nanos: i64) -> Option<Event> {
        let seq = self.made;
        let event = match &self.config {
            SourceConfig::None => None,
            SourceConfig::Replay { events, repeat, .. } => replayed(events, *repeat, seq),
            SourceConfig::Synthetic { .. } => Some(synthetic(&self.payloads, seq)),
        };
        let mut event = event?;
        event.timestamp = unix_nanos;
        self.made += 1;
        Some(event)
    }
}

fn replayed(events: &[Event], repeat: bool, seq: u64) -> Option<Event> {
    let len = events.len() as u64;
    if len == 0 || (!repeat && seq >= len) {
        return None;
    }
    let index = usize::try_from(seq % len).ok()?;
    events.get(index).cloned()
}

/// One payload per HTTP type 1-4, padded to `size` bytes, shared by every event of that type.
fn synthetic_payloads(size: usize) -> Vec<Bytes> {
    let heads = [
        "GET /synthetic HTTP/1.1\r\nHost: synthetic.local\r\n",
        "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n",
        "HTTP/2 200\r\ncontent-type: text/plain\r\n",
    ];
    heads
        .iter()
        .map(|head| {
            let mut text = head.as_bytes().to_vec();
            text.resize(size.max(1), b'x');
            text.truncate(size);
            Bytes::from(text)
        })
        .collect()
}

fn synthetic(payloads: &[Bytes], seq: u64) -> Event {
    let kind = (seq % 4) as u32 + 1;
    let payload = payloads.get(kind as usize - 1).cloned().unwrap_or_default();
    let pid = 9000 + (seq % 8) as i64;
    let fd = 3 + seq % 61;
    let request = kind % 2 == 1;
    let (src_port, dst_port) = if request {
        (40_000 + (fd as u32), 8080)
    } else {
        (8080, 40_000 + (fd as u32))
    };
    Event {
        timestamp: 0,
        uuid: format!("{pid}_{pid}_synthetic_{fd}_{}", seq % 2),
        src_ip: "127.0.0.1".to_owned(),
        src_port,
        dst_ip: "127.0.0.1".to_owned(),
        dst_port,
        pid,
        pname: "synthetic".to_owned(),
        r#type: kind,
        length: payload.len() as u32,
        payload,
    }
}

/// How many events are due: `rate` per second since the start, at most `burst` at once (a
/// driver that fell behind skips ahead instead of bursting without bound).
#[derive(Debug)]
pub struct Pacer {
    rate: f64,
    start: Instant,
    owed: u64,
    burst: u64,
}

impl Pacer {
    pub fn new(now: Instant, rate: f64, burst: u64) -> Self {
        Self {
            rate,
            start: now,
            owed: 0,
            burst,
        }
    }

    pub fn due(&mut self, now: Instant) -> u64 {
        let total = (now.duration_since(self.start).as_secs_f64() * self.rate) as u64;
        let due = total.saturating_sub(self.owed);
        self.owed = total;
        due.min(self.burst)
    }

    /// How long until the next event is due, at most `cap`.
    pub fn next_in(&self, cap: Duration) -> Duration {
        if self.rate <= 0.0 {
            return cap;
        }
        Duration::from_secs_f64(1.0 / self.rate).min(cap)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_one_shot_replay_ends_and_a_repeated_one_wraps() {
        let events = vec![Event::default(), Event::default()];
        let mut once = EventSource::new(SourceConfig::Replay {
            events: events.clone(),
            rate: 1.0,
            repeat: false,
        });
        assert!(once.next_event(1).is_some() && once.next_event(2).is_some());
        assert!(once.next_event(3).is_none());
        let mut again = EventSource::new(SourceConfig::Replay {
            events,
            rate: 1.0,
            repeat: true,
        });
        assert!((0..5).all(|t| again.next_event(t).is_some()));
    }

    #[test]
    fn synthetic_events_have_the_asked_size_and_a_true_length() {
        let mut source = EventSource::new(SourceConfig::Synthetic {
            rate: 1.0,
            payload_size: 200,
        });
        for t in 0..8 {
            let event = source.next_event(t).expect("endless");
            assert_eq!(event.payload.len(), 200);
            assert_eq!(event.length, 200);
            assert_eq!(event.timestamp, t);
            assert!((1..=4).contains(&event.r#type));
        }
    }

    #[test]
    fn the_pacer_owes_rate_times_elapsed_and_caps_bursts() {
        let start = Instant::now();
        let mut pacer = Pacer::new(start, 1000.0, 50);
        assert_eq!(pacer.due(start + Duration::from_millis(10)), 10);
        assert_eq!(pacer.due(start + Duration::from_millis(30)), 20);
        assert_eq!(pacer.due(start + Duration::from_secs(1)), 50);
    }
}
