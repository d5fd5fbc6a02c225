//! How a nodemgr connection hears that its writes are done.
//!
//! The store's writer finishes a connection's writes in the order the connection submitted
//! them ([`crate::store::Store::submit_then`]), and a session numbers its writes 0, 1, 2, ...
//! So "every write below ticket N is done" says it all for the writes that succeeded: one
//! atomic store per write. Before, each outcome went through a channel, and the connection's
//! core fetched the channel's block from the writer's core: the channel was a visible share of
//! a heartbeat's cost in `perf` (docs/performance.md). Failures are rare and carry a reason, so
//! they wait in a locked list, put there before the count moves past them.

use crate::protocol::nodemgr::{StoreFailure, Ticket};
use crate::store::OnCommitted;
use futures_util::task::AtomicWaker;
use std::collections::VecDeque;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

/// The writer's side: what it has finished of one connection's writes.
#[derive(Debug, Default)]
struct Finished {
    /// Tickets below this are done.
    below: AtomicU64,
    /// The failed ones not yet taken, oldest first.
    failures: Mutex<VecDeque<(Ticket, StoreFailure)>>,
    /// `failures.len()`, read without the lock.
    failure_count: AtomicUsize,
    /// The connection's task, woken when `below` moves.
    waker: AtomicWaker,
}

impl Finished {
    fn finish(&self, ticket: Ticket, result: Result<(), StoreFailure>) {
        if let Err(failure) = result {
            self.lock_failures().push_back((ticket, failure));
            self.failure_count.fetch_add(1, Ordering::Release);
        }
        // In order (see the module's comment): ticket is the lowest not yet done.
        let before = self.below.swap(ticket + 1, Ordering::Release);
        debug_assert_eq!(before, ticket, "writes finished out of order");
        self.waker.wake();
    }

    fn lock_failures(&self) -> std::sync::MutexGuard<'_, VecDeque<(Ticket, StoreFailure)>> {
        self.failures.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The connection's side: the outcomes of its writes, in ticket order.
#[derive(Debug, Default)]
pub struct CommitLog {
    finished: Arc<Finished>,
    /// Tickets below this were handed out by [`CommitLog::poll_done`].
    taken: Ticket,
}

impl CommitLog {
    /// What the store calls once write `ticket` is committed or failed.
    pub fn on_committed(&self, ticket: Ticket) -> OnCommitted {
        let finished = Arc::clone(&self.finished);
        Box::new(move |result| finished.finish(ticket, result))
    }

    /// The tickets done since the last call, once there is at least one. Cancel-safe: a
    /// pending poll takes nothing.
    pub fn poll_done(&mut self, cx: &mut Context<'_>) -> Poll<Range<Ticket>> {
        self.finished.waker.register(cx.waker());
        let below = self.finished.below.load(Ordering::Acquire);
        if below == self.taken {
            return Poll::Pending;
        }
        let done = self.taken..below;
        self.taken = below;
        Poll::Ready(done)
    }

    /// Waits for [`CommitLog::poll_done`].
    pub async fn done(&mut self) -> Range<Ticket> {
        std::future::poll_fn(|cx| self.poll_done(cx)).await
    }

    /// The outcome of `ticket`, one of those [`CommitLog::done`] returned; asked in order.
    pub fn outcome(&self, ticket: Ticket) -> Result<(), StoreFailure> {
        // Acquire: the failure was listed before `below` moved past it.
        if self.finished.failure_count.load(Ordering::Acquire) == 0 {
            return Ok(());
        }
        let mut failures = self.finished.lock_failures();
        match failures.front() {
            Some((failed, _)) if *failed == ticket => {
                self.finished.failure_count.fetch_sub(1, Ordering::Relaxed);
                Err(failures.pop_front().expect("front seen above").1)
            }
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::task::Waker;

    fn poll(log: &mut CommitLog) -> Poll<Range<Ticket>> {
        log.poll_done(&mut Context::from_waker(Waker::noop()))
    }

    fn failure(why: &str) -> StoreFailure {
        StoreFailure::Database(why.to_owned())
    }

    #[test]
    fn done_tickets_come_once_in_order_with_their_outcomes() {
        let mut log = CommitLog::default();
        assert_eq!(poll(&mut log), Poll::Pending);
        let commits: Vec<OnCommitted> = (0..3).map(|t| log.on_committed(t)).collect();
        let mut commits = commits.into_iter();
        commits.next().expect("0")(Ok(()));
        commits.next().expect("1")(Err(failure("disk full")));
        assert_eq!(poll(&mut log), Poll::Ready(0..2));
        assert_eq!(poll(&mut log), Poll::Pending);
        assert_eq!(log.outcome(0), Ok(()));
        assert_eq!(log.outcome(1), Err(failure("disk full")));
        commits.next().expect("2")(Ok(()));
        assert_eq!(poll(&mut log), Poll::Ready(2..3));
        assert_eq!(log.outcome(2), Ok(()));
    }

    /// Counts its wake-ups.
    #[derive(Default)]
    struct Woken(std::sync::atomic::AtomicUsize);

    impl std::task::Wake for Woken {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn a_finished_write_wakes_the_connection_that_found_nothing_done() {
        let mut log = CommitLog::default();
        let woken = Arc::new(Woken::default());
        let waker = Waker::from(Arc::clone(&woken));
        let mut cx = Context::from_waker(&waker);
        let commit = log.on_committed(0);
        assert_eq!(log.poll_done(&mut cx), Poll::Pending);
        assert_eq!(woken.0.load(Ordering::SeqCst), 0);
        commit(Ok(()));
        assert_eq!(woken.0.load(Ordering::SeqCst), 1, "the commit woke no one");
        assert_eq!(log.poll_done(&mut cx), Poll::Ready(0..1));
    }
}
