//! Thin IO drivers around the sans-IO cores.

pub mod cmdrelay_ws;
pub mod commit_log;
pub mod ecapture;
pub mod ecapture_ws;
pub mod logrtc_ws;
pub mod nodemgr_ws;
pub mod operator_api;
pub mod session_timer;
pub mod sfu_udp;
pub mod sfu_ws;
pub mod token_api;
pub mod ws_queue;

use crate::faults::Faults;
use crate::protocol::cmdrelay::{self, ConnId, Rooms};
use crate::protocol::nodemgr::{CommandOrder, SessionConfig};
use crate::store::tokens::TokenStore;
use crate::store::Store;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use ws_queue::Member;

/// Reads both clocks for a protocol core: the one place outside tests where time is read (`src/protocol/` never reads it).
pub fn read_clock() -> crate::protocol::Now {
    crate::protocol::Now {
        mono: std::time::Instant::now(),
        wall: chrono::Utc::now(),
    }
}

/// Commands an open connection accepts before the operator API answers 503.
pub const DISPATCH_QUEUE_DEPTH: usize = 64;

/// Shared state of the nodemgr service: its store, settings, and the live connections.
#[derive(Debug)]
pub struct NodemgrApp {
    pub session: SessionConfig,
    pub store: Store,
    pub registry: Registry,
    next_connection: AtomicU64,
}

impl NodemgrApp {
    pub fn new(session: SessionConfig, store: Store) -> Arc<Self> {
        Arc::new(Self {
            session,
            store,
            registry: Registry::default(),
            next_connection: AtomicU64::new(1),
        })
    }

    pub fn faults(&self) -> &Faults {
        &self.session.faults
    }

    fn connection_number(&self) -> u64 {
        self.next_connection.fetch_add(1, Ordering::Relaxed)
    }
}

/// A command for a nodemgr connection to run, from the operator API. (The connection's own
/// writes come back through its [`commit_log::CommitLog`].)
#[derive(Debug)]
pub struct Inbox {
    pub order: CommandOrder,
    /// The command's place in [`DISPATCH_QUEUE_DEPTH`], given back when the connection takes
    /// it.
    _place: OwnedSemaphorePermit,
}

/// The way into a nodemgr connection's [`Inbox`]: commands are refused beyond
/// [`DISPATCH_QUEUE_DEPTH`] not yet taken.
#[derive(Debug, Clone)]
pub struct Dispatcher {
    inbox: mpsc::UnboundedSender<Inbox>,
    places: Arc<Semaphore>,
}

/// Why a command could not be queued for a connection.
#[derive(Debug, PartialEq, Eq)]
pub enum DispatchRefused {
    /// [`DISPATCH_QUEUE_DEPTH`] commands wait already.
    Full,
    /// The connection has ended.
    Closed,
}

/// A place taken in a connection's command queue: sending cannot be refused.
#[derive(Debug)]
pub struct DispatchSlot {
    inbox: mpsc::UnboundedSender<Inbox>,
    place: OwnedSemaphorePermit,
}

impl Dispatcher {
    pub fn new() -> (Self, mpsc::UnboundedReceiver<Inbox>) {
        let (inbox, receiver) = mpsc::unbounded_channel();
        let places = Arc::new(Semaphore::new(DISPATCH_QUEUE_DEPTH));
        (Self { inbox, places }, receiver)
    }

    /// Takes a place for one command, so that a caller can refuse before it stores anything.
    pub fn try_reserve(&self) -> Result<DispatchSlot, DispatchRefused> {
        if self.inbox.is_closed() {
            return Err(DispatchRefused::Closed);
        }
        let place = Arc::clone(&self.places)
            .try_acquire_owned()
            .map_err(|_| DispatchRefused::Full)?;
        Ok(DispatchSlot {
            inbox: self.inbox.clone(),
            place,
        })
    }
}

impl DispatchSlot {
    pub fn send(self, order: CommandOrder) {
        // A connection that ended after the place was taken drops the order, as it would
        // have dropped it queued.
        let _ = self.inbox.send(Inbox {
            order,
            _place: self.place,
        });
    }
}

#[derive(Debug)]
struct Route {
    connection: u64,
    dispatch: Dispatcher,
}

/// Which connection speaks for which node. The newest registration of a node wins.
#[derive(Debug, Default)]
pub struct Registry {
    routes: Mutex<HashMap<String, Route>>,
}

impl Registry {
    fn insert(&self, node_id: &str, connection: u64, dispatch: Dispatcher) {
        let mut routes = self.routes.lock().unwrap_or_else(PoisonError::into_inner);
        routes.insert(
            node_id.to_owned(),
            Route {
                connection,
                dispatch,
            },
        );
    }

    /// Removes the route if it still belongs to `connection`; true if it did.
    fn remove(&self, node_id: &str, connection: u64) -> bool {
        let mut routes = self.routes.lock().unwrap_or_else(PoisonError::into_inner);
        let ours = routes
            .get(node_id)
            .is_some_and(|r| r.connection == connection);
        if ours {
            routes.remove(node_id);
        }
        ours
    }

    pub fn dispatcher(&self, node_id: &str) -> Option<Dispatcher> {
        let routes = self.routes.lock().unwrap_or_else(PoisonError::into_inner);
        routes.get(node_id).map(|r| r.dispatch.clone())
    }

    pub fn is_connected(&self, node_id: &str) -> bool {
        self.dispatcher(node_id).is_some()
    }

    pub fn len(&self) -> usize {
        self.routes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Shared state of the cmdrelay service: settings, the token store, and the rooms.
#[derive(Debug)]
pub struct CmdrelayApp {
    pub session: cmdrelay::SessionConfig,
    pub tokens: TokenStore,
    /// The bearer token of the token-management API.
    pub admin_token: String,
    rooms: Mutex<Rooms<Member>>,
    next_connection: AtomicU64,
}

impl CmdrelayApp {
    pub fn new(
        session: cmdrelay::SessionConfig,
        tokens: TokenStore,
        admin_token: String,
    ) -> Arc<Self> {
        Arc::new(Self {
            rooms: Mutex::new(Rooms::new(session.faults.clone())),
            session,
            tokens,
            admin_token,
            next_connection: AtomicU64::new(1),
        })
    }

    pub fn faults(&self) -> &Faults {
        &self.session.faults
    }

    fn connection_number(&self) -> u64 {
        self.next_connection.fetch_add(1, Ordering::Relaxed)
    }

    fn rooms(&self) -> std::sync::MutexGuard<'_, Rooms<Member>> {
        self.rooms.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn join(&self, conn: ConnId, token: &str, member: Member) -> String {
        self.rooms()
            .join(conn, token, member, || uuid::Uuid::new_v4().to_string())
    }

    fn leave(&self, conn: ConnId) {
        self.rooms().leave(conn);
    }

    fn room_size(&self, conn: ConnId) -> usize {
        self.rooms().room_size(conn)
    }

    fn relay(&self, from: ConnId, frame: &axum::extract::ws::Utf8Bytes) {
        for member in self.rooms().others(from) {
            member.deliver(frame);
        }
    }

    /// Disconnects every client of `token`'s room; returns how many.
    pub fn kick_room(&self, token: &str, reason: &str) -> usize {
        let rooms = self.rooms();
        let mut kicked = 0;
        for member in rooms.members_of(token) {
            member.kick.kick(1008, reason);
            kicked += 1;
        }
        kicked
    }

    /// Rooms and clients right now.
    pub fn occupancy(&self) -> (usize, usize) {
        let rooms = self.rooms();
        (rooms.room_count(), rooms.client_count())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order(n: usize) -> CommandOrder {
        CommandOrder {
            command_id: format!("cmd-{n}"),
            command_text: "true".into(),
            timeout_secs: 1,
        }
    }

    #[test]
    fn a_connection_queues_up_to_its_depth_of_commands() {
        let (dispatcher, mut inbox) = Dispatcher::new();
        for n in 0..DISPATCH_QUEUE_DEPTH {
            dispatcher.try_reserve().expect("a place").send(order(n));
        }
        assert_eq!(dispatcher.try_reserve().err(), Some(DispatchRefused::Full));
        let Ok(first) = inbox.try_recv() else {
            panic!("the first command comes first");
        };
        assert_eq!(first.order.command_id, "cmd-0");
        // Taking a command gives its place back.
        drop(first);
        dispatcher.try_reserve().expect("the place it left");
        let rest: Vec<Inbox> = std::iter::from_fn(|| inbox.try_recv().ok()).collect();
        assert_eq!(rest.len(), DISPATCH_QUEUE_DEPTH - 1);
        drop(inbox);
        assert_eq!(
            dispatcher.try_reserve().err(),
            Some(DispatchRefused::Closed)
        );
    }
}
