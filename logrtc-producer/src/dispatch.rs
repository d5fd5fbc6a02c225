//! Where entries wait: the backlog while no consumer's channel is open, and one bounded queue
//! per open channel (CLARIFICATIONS L10). No IO here; the peer's sender task drains a queue.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::Notify;

use crate::entry::{Level, LogEntry};
use crate::metrics::Metrics;

/// Identifies one open `logs` channel; a consumer that reconnects gets a new one.
pub type SinkId = u64;

/// The target of the entry that reports drops to a consumer whose channel opens.
pub const PRODUCER_TARGET: &str = "logrtc::producer";

#[derive(Debug)]
struct Sink {
    queue: VecDeque<Arc<str>>,
    wake: Arc<Notify>,
}

#[derive(Debug)]
pub struct Dispatch {
    capacity: usize,
    backlog: VecDeque<Arc<str>>,
    /// Entries dropped from the backlog since a channel last opened: reported to the next.
    unreported_drops: u64,
    sinks: HashMap<SinkId, Sink>,
    next_sink: SinkId,
    metrics: Arc<Metrics>,
}

/// The dispatch shared between the logging call sites and the peers' sender tasks.
#[derive(Clone, Debug)]
pub struct SharedDispatch(Arc<Mutex<Dispatch>>);

impl SharedDispatch {
    pub fn new(capacity: usize, metrics: Arc<Metrics>) -> Self {
        SharedDispatch(Arc::new(Mutex::new(Dispatch {
            capacity: capacity.max(1),
            backlog: VecDeque::new(),
            unreported_drops: 0,
            sinks: HashMap::new(),
            next_sink: 0,
            metrics,
        })))
    }

    pub fn lock(&self) -> MutexGuard<'_, Dispatch> {
        // A panic while holding this lock leaves plain queues behind, still usable.
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Dispatch {
    /// Queues one serialised entry: to every open channel, or to the backlog when none is
    /// open. A full queue drops its oldest entry (L10's drop policy) and counts it.
    pub fn push(&mut self, line: Arc<str>) {
        self.metrics.logged.fetch_add(1, Ordering::Relaxed);
        if self.sinks.is_empty() {
            if push_bounded(&mut self.backlog, line, self.capacity) {
                self.unreported_drops += 1;
                self.metrics
                    .dropped_buffered
                    .fetch_add(1, Ordering::Relaxed);
            }
            self.metrics
                .buffered
                .store(self.backlog.len() as u64, Ordering::Relaxed);
            return;
        }
        for sink in self.sinks.values_mut() {
            if push_bounded(&mut sink.queue, Arc::clone(&line), self.capacity) {
                self.metrics
                    .dropped_slow_consumer
                    .fetch_add(1, Ordering::Relaxed);
            }
            sink.wake.notify_one();
        }
    }

    /// A channel opened: it gets the backlog, preceded by a WARN entry that counts what the
    /// backlog dropped, and every entry from now on.
    pub fn open_sink(&mut self) -> (SinkId, Arc<Notify>) {
        let id = self.next_sink;
        self.next_sink += 1;
        let mut queue = VecDeque::new();
        if self.unreported_drops > 0 {
            let report = LogEntry::now(
                Level::Warn,
                PRODUCER_TARGET,
                format!(
                    "dropped {} log entries while no consumer was connected (buffer holds {})",
                    self.unreported_drops, self.capacity
                ),
            )
            .with_field("dropped", self.unreported_drops);
            queue.push_back(Arc::from(report.to_json()));
            self.unreported_drops = 0;
        }
        queue.extend(self.backlog.drain(..));
        self.metrics.buffered.store(0, Ordering::Relaxed);
        let wake = Arc::new(Notify::new());
        wake.notify_one();
        self.sinks.insert(
            id,
            Sink {
                queue,
                wake: Arc::clone(&wake),
            },
        );
        self.metrics
            .channels_open
            .store(self.sinks.len() as u64, Ordering::Relaxed);
        (id, wake)
    }

    pub fn close_sink(&mut self, id: SinkId) {
        if self.sinks.remove(&id).is_some() {
            self.metrics
                .channels_open
                .store(self.sinks.len() as u64, Ordering::Relaxed);
        }
    }

    /// Takes up to `max_entries` entries, and never more than `max_bytes` once one is taken.
    /// `None` once the sink is closed.
    pub fn take(
        &mut self,
        id: SinkId,
        max_entries: usize,
        max_bytes: usize,
    ) -> Option<Vec<Arc<str>>> {
        let sink = self.sinks.get_mut(&id)?;
        let mut taken = Vec::new();
        let mut bytes = 0;
        while taken.len() < max_entries {
            let Some(next) = sink.queue.front() else {
                break;
            };
            if !taken.is_empty() && bytes + next.len() > max_bytes {
                break;
            }
            bytes += next.len();
            taken.extend(sink.queue.pop_front());
        }
        Some(taken)
    }

    /// Entries still waiting in any open channel's queue.
    pub fn queued(&self) -> usize {
        self.sinks.values().map(|sink| sink.queue.len()).sum()
    }

    pub fn backlog_len(&self) -> usize {
        self.backlog.len()
    }
}

/// Pushes to the back; returns whether the front had to be dropped to make room.
fn push_bounded(queue: &mut VecDeque<Arc<str>>, line: Arc<str>, capacity: usize) -> bool {
    let dropped = queue.len() >= capacity && queue.pop_front().is_some();
    queue.push_back(line);
    dropped
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dispatch(capacity: usize) -> (SharedDispatch, Arc<Metrics>) {
        let metrics = Arc::new(Metrics::default());
        (SharedDispatch::new(capacity, Arc::clone(&metrics)), metrics)
    }

    fn line(n: usize) -> Arc<str> {
        Arc::from(format!("{{\"n\":{n}}}"))
    }

    #[test]
    fn the_backlog_drops_its_oldest_and_reports_the_count_to_the_first_channel() {
        let (shared, metrics) = dispatch(3);
        let mut dispatch = shared.lock();
        for n in 0..5 {
            dispatch.push(line(n));
        }
        assert_eq!(dispatch.backlog_len(), 3);
        assert_eq!(metrics.dropped_buffered.load(Ordering::Relaxed), 2);
        let (sink, _) = dispatch.open_sink();
        let taken = dispatch.take(sink, 10, usize::MAX).expect("open");
        assert_eq!(taken.len(), 4);
        assert!(taken[0].contains("\"level\":\"WARN\"") && taken[0].contains("\"dropped\":2"));
        assert_eq!(&*taken[1], "{\"n\":2}");
        assert_eq!(&*taken[3], "{\"n\":4}");
    }

    #[test]
    fn every_open_channel_gets_every_entry_and_a_closed_one_none() {
        let (shared, _) = dispatch(10);
        let mut dispatch = shared.lock();
        let (first, _) = dispatch.open_sink();
        let (second, _) = dispatch.open_sink();
        dispatch.push(line(1));
        dispatch.close_sink(first);
        dispatch.push(line(2));
        assert_eq!(dispatch.take(first, 10, usize::MAX), None);
        assert_eq!(
            dispatch.take(second, 10, usize::MAX).map(|v| v.len()),
            Some(2)
        );
        assert_eq!(dispatch.backlog_len(), 0);
    }

    #[test]
    fn take_stops_at_the_byte_budget_but_always_takes_one() {
        let (shared, _) = dispatch(10);
        let mut dispatch = shared.lock();
        let (sink, _) = dispatch.open_sink();
        for n in 0..4 {
            dispatch.push(line(n));
        }
        assert_eq!(dispatch.take(sink, 10, 1).map(|v| v.len()), Some(1));
        assert_eq!(dispatch.take(sink, 2, usize::MAX).map(|v| v.len()), Some(2));
        assert_eq!(dispatch.queued(), 1);
    }

    #[test]
    fn a_slow_channel_drops_its_oldest_and_counts_it() {
        let (shared, metrics) = dispatch(2);
        let mut dispatch = shared.lock();
        let (sink, _) = dispatch.open_sink();
        for n in 0..5 {
            dispatch.push(line(n));
        }
        assert_eq!(metrics.dropped_slow_consumer.load(Ordering::Relaxed), 3);
        let taken = dispatch.take(sink, 10, usize::MAX).expect("open");
        assert_eq!(&*taken[0], "{\"n\":3}");
    }
}
