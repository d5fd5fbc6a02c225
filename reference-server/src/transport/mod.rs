//! Thin IO drivers around the sans-IO cores.

pub mod cmdrelay_ws;
#[cfg(test)]
mod counting_waker;
pub mod ecapture;
pub mod ecapture_ws;
pub mod logrtc_ws;
pub mod mailbox;
pub mod nodemgr_ws;
pub mod operator_api;
pub mod session_timer;
pub mod sfu_udp;
pub mod sfu_ws;
pub mod token_api;
pub mod ws_queue;

use crate::faults::Faults;
use crate::protocol::cmdrelay::{self, ConnId, Rooms};
use crate::protocol::nodemgr::SessionConfig;
use crate::store::tokens::TokenStore;
use crate::store::Store;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use ws_queue::Member;

/// Reads both clocks for a protocol core: the one place outside tests where time is read (`src/protocol/` never reads it).
pub fn read_clock() -> crate::protocol::Now {
    crate::protocol::Now {
        mono: std::time::Instant::now(),
        wall: chrono::Utc::now(),
    }
}

pub use mailbox::{DispatchRefused, DispatchSlot, Dispatcher, DISPATCH_QUEUE_DEPTH};

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
