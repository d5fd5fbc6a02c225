//! What wakes a nodemgr connection, behind one waker: its committed writes, the operator's
//! commands and its socket. (The session timer, polled last, holds the task's waker itself:
//! [`SessionTimer::poll_fired`].)
//!
//! **Writes.** The store's writer finishes a connection's writes in the order the connection
//! submitted them ([`crate::store::Store::submit_then`]), and a session numbers its writes 0,
//! 1, 2, ... So "every write below ticket N is done" says it all for the writes that
//! succeeded: one atomic store per write. Failures are rare and carry a reason, so they wait
//! in a locked list, put there before the count moves past them. (Each outcome used to be a
//! channel message, and the connection's core fetched the channel's block from the writer's
//! core: a visible share of a heartbeat's cost in `perf`, docs/performance.md.)
//!
//! **Commands** wait in a locked queue of at most [`DISPATCH_QUEUE_DEPTH`], counted by an
//! atomic, so that a connection finds "no command" without the lock.
//!
//! **One waker.** A connection waits for all of them and its timer at once, after every
//! frame. With a channel, a commit log, the socket and the timer each polled on every
//! wake-up, each registered the task's waker again; here the mailbox holds it once, the socket
//! is handed a waker of the mailbox's own that marks it as woken, and the socket is polled
//! only when that mark is set or its last poll gave a frame (more may wait in its buffer).

use super::session_timer::SessionTimer;
use crate::protocol::nodemgr::{CommandOrder, StoreFailure, Ticket};
use crate::store::OnCommitted;
use futures_util::task::AtomicWaker;
use futures_util::Stream;
use std::collections::VecDeque;
use std::ops::Range;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Wake, Waker};

/// Commands an open connection accepts before the operator API answers 503.
pub const DISPATCH_QUEUE_DEPTH: usize = 64;

/// What the writer, the operator API and the socket share with one connection.
#[derive(Debug, Default)]
struct Shared {
    /// Tickets below this are done.
    below: AtomicU64,
    /// The failed writes not yet taken, oldest first.
    failures: Mutex<VecDeque<(Ticket, StoreFailure)>>,
    /// `failures.len()`, read without the lock.
    failure_count: AtomicUsize,
    /// Commands sent and not yet taken, oldest first.
    commands: Mutex<VecDeque<CommandOrder>>,
    /// `commands.len()`, read without the lock.
    command_count: AtomicUsize,
    /// Places taken in the command queue: commands queued plus those reserved.
    places_taken: AtomicUsize,
    /// Set when the connection has ended: no place is given any more.
    closed: AtomicBool,
    /// Set by the socket's waker, cleared before the socket is polled.
    socket_woken: AtomicBool,
    /// The connection's task.
    waker: AtomicWaker,
}

impl Shared {
    fn finish(&self, ticket: Ticket, result: Result<(), StoreFailure>) {
        if let Err(failure) = result {
            lock(&self.failures).push_back((ticket, failure));
            self.failure_count.fetch_add(1, Ordering::Release);
        }
        // In order (see the module's comment): ticket is the lowest not yet done.
        let before = self.below.swap(ticket + 1, Ordering::Release);
        debug_assert_eq!(before, ticket, "writes finished out of order");
        self.waker.wake();
    }

    fn give_back_place(&self) {
        self.places_taken.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The socket's waker: marks the socket as woken, then wakes the connection.
#[derive(Debug)]
struct SocketBell(Arc<Shared>);

impl Wake for SocketBell {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.0.socket_woken.store(true, Ordering::Release);
        self.0.waker.wake();
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// What woke a connection, in the order it is looked at.
#[derive(Debug, PartialEq)]
pub enum Mail<F> {
    /// These writes are done; their outcomes come from [`Mailbox::outcome`].
    Done(Range<Ticket>),
    Command(CommandOrder),
    /// What the socket gave: a frame, an error, or `None` at its end.
    Socket(F),
    /// The session timer fired.
    Timer,
}

/// The connection's side.
#[derive(Debug)]
pub struct Mailbox {
    shared: Arc<Shared>,
    /// Tickets below this were handed out as [`Mail::Done`].
    taken: Ticket,
    socket_bell: Waker,
    /// The socket's last poll was pending and its waker has not fired since.
    socket_quiet: bool,
}

impl Default for Mailbox {
    fn default() -> Self {
        let shared = Arc::<Shared>::default();
        Self {
            socket_bell: Waker::from(Arc::new(SocketBell(Arc::clone(&shared)))),
            shared,
            taken: 0,
            socket_quiet: false,
        }
    }
}

impl Drop for Mailbox {
    fn drop(&mut self) {
        self.shared.closed.store(true, Ordering::Release);
    }
}

impl Mailbox {
    /// The way in for the operator's commands.
    pub fn dispatcher(&self) -> Dispatcher {
        Dispatcher {
            shared: Arc::clone(&self.shared),
        }
    }

    /// What the store calls once write `ticket` is committed or failed.
    pub fn on_committed(&self, ticket: Ticket) -> OnCommitted {
        let shared = Arc::clone(&self.shared);
        Box::new(move |result| shared.finish(ticket, result))
    }

    /// The next thing that happened to the connection: committed writes first, then
    /// commands, then the socket, then the timer. Cancel-safe: a pending poll takes nothing.
    pub fn poll_next<S: Stream + Unpin>(
        &mut self,
        cx: &mut Context<'_>,
        socket: &mut S,
        timer: &mut SessionTimer,
    ) -> Poll<Mail<Option<S::Item>>> {
        self.shared.waker.register(cx.waker());
        if let Some(done) = self.take_done() {
            return Poll::Ready(Mail::Done(done));
        }
        if let Some(command) = self.take_command() {
            return Poll::Ready(Mail::Command(command));
        }
        if let Poll::Ready(item) = self.poll_socket(socket) {
            return Poll::Ready(Mail::Socket(item));
        }
        timer.poll_fired(cx).map(|()| Mail::Timer)
    }

    /// Waits for [`Mailbox::poll_next`].
    pub async fn next<S: Stream + Unpin>(
        &mut self,
        socket: &mut S,
        timer: &mut SessionTimer,
    ) -> Mail<Option<S::Item>> {
        std::future::poll_fn(|cx| self.poll_next(cx, socket, timer)).await
    }

    fn take_done(&mut self) -> Option<Range<Ticket>> {
        let below = self.shared.below.load(Ordering::Acquire);
        if below == self.taken {
            return None;
        }
        let done = self.taken..below;
        self.taken = below;
        Some(done)
    }

    fn take_command(&self) -> Option<CommandOrder> {
        if self.shared.command_count.load(Ordering::Acquire) == 0 {
            return None;
        }
        let command = lock(&self.shared.commands).pop_front()?;
        self.shared.command_count.fetch_sub(1, Ordering::AcqRel);
        self.shared.give_back_place();
        Some(command)
    }

    fn poll_socket<S: Stream + Unpin>(&mut self, socket: &mut S) -> Poll<Option<S::Item>> {
        if self.socket_quiet && !self.shared.socket_woken.load(Ordering::Acquire) {
            return Poll::Pending;
        }
        // Cleared before the poll, so that a wake-up during it is kept for the next.
        self.shared.socket_woken.store(false, Ordering::Release);
        let polled = Pin::new(socket).poll_next(&mut Context::from_waker(&self.socket_bell));
        self.socket_quiet = polled.is_pending();
        polled
    }

    /// The outcome of `ticket`, one of those [`Mail::Done`] gave; asked in order.
    pub fn outcome(&self, ticket: Ticket) -> Result<(), StoreFailure> {
        // Acquire: the failure was listed before `below` moved past it.
        if self.shared.failure_count.load(Ordering::Acquire) == 0 {
            return Ok(());
        }
        let mut failures = lock(&self.shared.failures);
        match failures.front() {
            Some((failed, _)) if *failed == ticket => {
                self.shared.failure_count.fetch_sub(1, Ordering::Relaxed);
                Err(failures.pop_front().expect("front seen above").1)
            }
            _ => Ok(()),
        }
    }
}

/// The way into a nodemgr connection's command queue: commands are refused beyond
/// [`DISPATCH_QUEUE_DEPTH`] not yet taken.
#[derive(Debug, Clone)]
pub struct Dispatcher {
    shared: Arc<Shared>,
}

/// Why a command could not be queued for a connection.
#[derive(Debug, PartialEq, Eq)]
pub enum DispatchRefused {
    /// [`DISPATCH_QUEUE_DEPTH`] commands wait already.
    Full,
    /// The connection has ended.
    Closed,
}

/// A place taken in a connection's command queue: sending cannot be refused. Dropped unsent,
/// it gives the place back.
#[derive(Debug)]
pub struct DispatchSlot {
    shared: Option<Arc<Shared>>,
}

impl Dispatcher {
    /// Takes a place for one command, so that a caller can refuse before it stores anything.
    pub fn try_reserve(&self) -> Result<DispatchSlot, DispatchRefused> {
        if self.shared.closed.load(Ordering::Acquire) {
            return Err(DispatchRefused::Closed);
        }
        self.shared
            .places_taken
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |taken| {
                (taken < DISPATCH_QUEUE_DEPTH).then_some(taken + 1)
            })
            .map_err(|_| DispatchRefused::Full)?;
        Ok(DispatchSlot {
            shared: Some(Arc::clone(&self.shared)),
        })
    }
}

impl DispatchSlot {
    /// Queues the command and wakes the connection. A connection that ended after the place
    /// was taken never takes it, as it would not have taken it queued.
    pub fn send(mut self, order: CommandOrder) {
        let shared = self.shared.take().expect("a slot sends once");
        lock(&shared.commands).push_back(order);
        shared.command_count.fetch_add(1, Ordering::Release);
        shared.waker.wake();
    }
}

impl Drop for DispatchSlot {
    fn drop(&mut self) {
        if let Some(shared) = self.shared.take() {
            shared.give_back_place();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::counting_waker::counting_waker;
    use super::*;
    use futures_util::stream;

    fn failure(why: &str) -> StoreFailure {
        StoreFailure::Database(why.to_owned())
    }

    fn order(n: usize) -> CommandOrder {
        CommandOrder {
            command_id: format!("cmd-{n}"),
            command_text: "true".into(),
            timeout_secs: 1,
        }
    }

    /// A socket that never has anything.
    fn silent() -> stream::Pending<()> {
        stream::pending()
    }

    /// Polls once with a disarmed timer (the tests run on a runtime: a timer needs one).
    fn poll<S: Stream + Unpin>(
        mailbox: &mut Mailbox,
        socket: &mut S,
        waker: &Waker,
    ) -> Poll<Mail<Option<S::Item>>> {
        let mut timer = SessionTimer::default();
        mailbox.poll_next(&mut Context::from_waker(waker), socket, &mut timer)
    }

    #[tokio::test]
    async fn done_tickets_come_once_in_order_with_their_outcomes() {
        let mut mailbox = Mailbox::default();
        let waker = Waker::noop();
        assert_eq!(poll(&mut mailbox, &mut silent(), waker), Poll::Pending);
        let commits: Vec<OnCommitted> = (0..3).map(|t| mailbox.on_committed(t)).collect();
        let mut commits = commits.into_iter();
        commits.next().expect("0")(Ok(()));
        commits.next().expect("1")(Err(failure("disk full")));
        assert_eq!(
            poll(&mut mailbox, &mut silent(), waker),
            Poll::Ready(Mail::Done(0..2))
        );
        assert_eq!(poll(&mut mailbox, &mut silent(), waker), Poll::Pending);
        assert_eq!(mailbox.outcome(0), Ok(()));
        assert_eq!(mailbox.outcome(1), Err(failure("disk full")));
        commits.next().expect("2")(Ok(()));
        assert_eq!(
            poll(&mut mailbox, &mut silent(), waker),
            Poll::Ready(Mail::Done(2..3))
        );
        assert_eq!(mailbox.outcome(2), Ok(()));
    }

    #[tokio::test]
    async fn a_finished_write_or_a_command_wakes_the_connection_that_found_nothing() {
        let mut mailbox = Mailbox::default();
        let (woken, waker) = counting_waker();
        let commit = mailbox.on_committed(0);
        assert_eq!(poll(&mut mailbox, &mut silent(), &waker), Poll::Pending);
        assert_eq!(woken.count(), 0);
        commit(Ok(()));
        assert_eq!(woken.count(), 1, "the commit woke no one");
        assert_eq!(
            poll(&mut mailbox, &mut silent(), &waker),
            Poll::Ready(Mail::Done(0..1))
        );
        assert_eq!(poll(&mut mailbox, &mut silent(), &waker), Poll::Pending);
        let slot = mailbox.dispatcher().try_reserve().expect("a place");
        slot.send(order(1));
        assert_eq!(woken.count(), 2, "the command woke no one");
        assert_eq!(
            poll(&mut mailbox, &mut silent(), &waker),
            Poll::Ready(Mail::Command(order(1)))
        );
    }

    #[tokio::test]
    async fn commits_come_before_commands_and_commands_before_the_socket() {
        let mut mailbox = Mailbox::default();
        let mut socket = stream::iter([7]);
        mailbox
            .dispatcher()
            .try_reserve()
            .expect("a place")
            .send(order(1));
        mailbox.on_committed(0)(Ok(()));
        let waker = Waker::noop();
        let mut next = || poll(&mut mailbox, &mut socket, waker);
        assert_eq!(next(), Poll::Ready(Mail::Done(0..1)));
        assert_eq!(next(), Poll::Ready(Mail::Command(order(1))));
        assert_eq!(next(), Poll::Ready(Mail::Socket(Some(7))));
        assert_eq!(next(), Poll::Ready(Mail::Socket(None)));
    }

    /// A socket whose frames arrive by hand, and which wakes whoever polled it last.
    #[derive(Default)]
    struct HandSocket {
        frames: VecDeque<u32>,
        waker: Option<Waker>,
        polls: usize,
    }

    impl Stream for HandSocket {
        type Item = u32;

        fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<u32>> {
            self.polls += 1;
            match self.frames.pop_front() {
                Some(frame) => Poll::Ready(Some(frame)),
                None => {
                    self.waker = Some(cx.waker().clone());
                    Poll::Pending
                }
            }
        }
    }

    impl HandSocket {
        fn arrive(&mut self, frame: u32) {
            self.frames.push_back(frame);
            if let Some(waker) = self.waker.take() {
                waker.wake();
            }
        }
    }

    #[tokio::test]
    async fn a_quiet_socket_is_polled_again_only_once_it_woke() {
        let mut mailbox = Mailbox::default();
        let (woken, waker) = counting_waker();
        let mut socket = HandSocket::default();
        assert_eq!(poll(&mut mailbox, &mut socket, &waker), Poll::Pending);
        assert_eq!(socket.polls, 1);
        // A commit wakes the connection; the socket, quiet, is left alone.
        mailbox.on_committed(0)(Ok(()));
        assert!(poll(&mut mailbox, &mut socket, &waker).is_ready());
        assert_eq!(poll(&mut mailbox, &mut socket, &waker), Poll::Pending);
        assert_eq!(socket.polls, 1, "a quiet socket was polled");
        // Two frames arrive at once: the socket's wake-up reaches the connection, and the
        // socket is polled until it is quiet again.
        let before = woken.count();
        socket.frames.push_back(1);
        socket.arrive(2);
        assert_eq!(woken.count(), before + 1, "the socket woke no one");
        assert_eq!(
            poll(&mut mailbox, &mut socket, &waker),
            Poll::Ready(Mail::Socket(Some(1)))
        );
        assert_eq!(
            poll(&mut mailbox, &mut socket, &waker),
            Poll::Ready(Mail::Socket(Some(2)))
        );
        assert_eq!(poll(&mut mailbox, &mut socket, &waker), Poll::Pending);
        assert_eq!(socket.polls, 4);
    }

    #[tokio::test]
    async fn a_connection_queues_up_to_its_depth_of_commands() {
        let mut mailbox = Mailbox::default();
        let dispatcher = mailbox.dispatcher();
        for n in 0..DISPATCH_QUEUE_DEPTH {
            dispatcher.try_reserve().expect("a place").send(order(n));
        }
        assert_eq!(dispatcher.try_reserve().err(), Some(DispatchRefused::Full));
        let waker = Waker::noop();
        assert_eq!(
            poll(&mut mailbox, &mut silent(), waker),
            Poll::Ready(Mail::Command(order(0)))
        );
        // Taking a command gives its place back, and so does a place reserved and not used.
        let slot = dispatcher.try_reserve().expect("the place it left");
        assert_eq!(dispatcher.try_reserve().err(), Some(DispatchRefused::Full));
        drop(slot);
        dispatcher
            .try_reserve()
            .expect("the place the unused slot left");
        drop(mailbox);
        assert_eq!(
            dispatcher.try_reserve().err(),
            Some(DispatchRefused::Closed)
        );
    }
}
