//! The room registry: clients that presented the same token share a room and its session id.
//! A room is created by its first client and removed with its last.
//!
//! Generic over the member handle `M` (the driver's outbound queue), so the rules are tested
//! without sockets.

use crate::faults::{Fault, Faults};
use std::collections::HashMap;

/// A connection's number, unique within one server.
pub type ConnId = u64;

#[derive(Debug)]
struct Room<M> {
    session_id: String,
    members: Vec<(ConnId, M)>,
}

#[derive(Debug)]
pub struct Rooms<M> {
    by_token: HashMap<String, Room<M>>,
    token_of: HashMap<ConnId, String>,
    faults: Faults,
}

impl<M> Rooms<M> {
    pub fn new(faults: Faults) -> Self {
        Self {
            by_token: HashMap::new(),
            token_of: HashMap::new(),
            faults,
        }
    }

    /// Puts `conn` in the room of `token`, creating it with `fresh_session_id` if needed, and
    /// returns the room's session id.
    pub fn join(
        &mut self,
        conn: ConnId,
        token: &str,
        member: M,
        fresh_session_id: impl FnOnce() -> String,
    ) -> String {
        let session_id = if self.faults.has(Fault::CmdrelaySharedSessionId) {
            "00000000-0000-4000-8000-000000000000".to_owned()
        } else {
            fresh_session_id()
        };
        let room = self
            .by_token
            .entry(token.to_owned())
            .or_insert_with(|| Room {
                session_id: session_id.clone(),
                members: Vec::new(),
            });
        room.members.push((conn, member));
        self.token_of.insert(conn, token.to_owned());
        if self.faults.has(Fault::CmdrelaySessionPerClient) {
            return session_id;
        }
        room.session_id.clone()
    }

    /// Takes `conn` out of its room; the room goes with its last member. Returns the token.
    pub fn leave(&mut self, conn: ConnId) -> Option<String> {
        if self.faults.has(Fault::CmdrelayGhostMembers) {
            return self.token_of.get(&conn).cloned();
        }
        let token = self.token_of.remove(&conn)?;
        let keep_empty = self.faults.has(Fault::CmdrelayKeepEmptyRooms);
        if let Some(room) = self.by_token.get_mut(&token) {
            room.members.retain(|(id, _)| *id != conn);
            if room.members.is_empty() && !keep_empty {
                self.by_token.remove(&token);
            }
        }
        Some(token)
    }

    /// How many clients share `conn`'s room, `conn` included; 0 if it is in none.
    pub fn room_size(&self, conn: ConnId) -> usize {
        if self.faults.has(Fault::CmdrelayCountAllClients) {
            return self.token_of.len();
        }
        self.room_of(conn).map_or(0, |room| room.members.len())
    }

    /// The members a frame from `conn` is relayed to: the rest of its room.
    pub fn others(&self, conn: ConnId) -> impl Iterator<Item = &M> {
        let everyone = self.faults.has(Fault::CmdrelayRelayAcrossRooms);
        let echo = self.faults.has(Fault::CmdrelayEchoToSender);
        let limit = if self.faults.has(Fault::CmdrelayRelayToOne) {
            1
        } else {
            usize::MAX
        };
        let rooms: Vec<&Room<M>> = if everyone {
            self.by_token.values().collect()
        } else {
            self.room_of(conn).into_iter().collect()
        };
        rooms
            .into_iter()
            .flat_map(|room| room.members.iter())
            .filter(move |(id, _)| echo || *id != conn)
            .map(|(_, member)| member)
            .take(limit)
    }

    /// Every member of the room of `token`.
    pub fn members_of(&self, token: &str) -> impl Iterator<Item = &M> {
        self.by_token
            .get(token)
            .into_iter()
            .flat_map(|room| room.members.iter().map(|(_, member)| member))
    }

    pub fn room_count(&self) -> usize {
        self.by_token.len()
    }

    pub fn client_count(&self) -> usize {
        self.token_of.len()
    }

    fn room_of(&self, conn: ConnId) -> Option<&Room<M>> {
        self.by_token.get(self.token_of.get(&conn)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids() -> impl FnMut() -> String {
        let mut n = 0;
        move || {
            n += 1;
            format!("session-{n}")
        }
    }

    #[test]
    fn clients_with_one_token_share_a_room_and_its_session_id() {
        let mut rooms = Rooms::new(Faults::none());
        let mut fresh = ids();
        let a = rooms.join(1, "t", 'a', &mut fresh);
        let b = rooms.join(2, "t", 'b', &mut fresh);
        let c = rooms.join(3, "u", 'c', &mut fresh);
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_eq!(rooms.room_size(1), 2);
        assert_eq!(rooms.room_size(3), 1);
        assert_eq!(rooms.others(1).copied().collect::<Vec<_>>(), vec!['b']);
    }

    #[test]
    fn a_room_goes_with_its_last_client_and_comes_back_with_a_new_session_id() {
        let mut rooms = Rooms::new(Faults::none());
        let mut fresh = ids();
        let first = rooms.join(1, "t", (), &mut fresh);
        assert_eq!(rooms.leave(1).as_deref(), Some("t"));
        assert_eq!(rooms.room_count(), 0);
        assert_ne!(rooms.join(2, "t", (), &mut fresh), first);
    }

    #[test]
    fn leaving_twice_or_without_a_room_is_harmless() {
        let mut rooms: Rooms<()> = Rooms::new(Faults::none());
        assert_eq!(rooms.leave(7), None);
        rooms.join(1, "t", (), || "s".to_owned());
        rooms.leave(1);
        assert_eq!(rooms.leave(1), None);
        assert_eq!(rooms.client_count(), 0);
    }
}
