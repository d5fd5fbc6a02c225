//! The rooms: who joined which room, the streams published there and who subscribes to them.
//! One `Rooms` serves every connection of a signaling server. Each call returns the
//! [`Effect`]s the driver must carry out: frames to queue, connections to close, and requests
//! to the media plane, whose outcome comes back through [`Rooms::published`] and
//! [`Rooms::subscribed`].

use super::codes::ErrorCode;
use super::messages::{self, Incoming, Minfo, Request};
use crate::faults::{Fault, Faults};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// A connection's number, unique within one server.
pub type ConnId = u64;

/// What the media plane is asked to do.
#[derive(Debug, Clone, PartialEq)]
pub enum MediaRequest {
    /// Answer a publisher's offer; the outcome goes to [`Rooms::published`].
    Publish {
        conn: ConnId,
        id: u64,
        mid: String,
        offer: String,
    },
    /// Answer a subscriber's offer for `mid`; the outcome goes to [`Rooms::subscribed`].
    Subscribe {
        conn: ConnId,
        id: u64,
        sid: String,
        mid: String,
        offer: String,
    },
    /// Stop a publication and every subscription to it.
    Unpublish {
        mid: String,
    },
    Unsubscribe {
        sid: String,
    },
}

/// What the driver must do.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    Send {
        to: ConnId,
        message: Value,
    },
    /// One message for many connections: serialised once.
    Broadcast {
        to: Vec<ConnId>,
        message: Value,
    },
    Close {
        conn: ConnId,
        code: u16,
        reason: String,
    },
    Media(MediaRequest),
}

/// Why the media plane refused a publication or subscription.
#[derive(Debug, Clone, PartialEq)]
pub struct MediaRefusal {
    pub code: ErrorCode,
    pub reason: String,
}

/// Names this server gives itself in `signalid` and `sfuid` (S3).
#[derive(Debug, Clone, PartialEq)]
pub struct ServerIds {
    pub signal_id: String,
    pub sfu_id: String,
}

impl Default for ServerIds {
    fn default() -> Self {
        Self {
            signal_id: "signal_1".to_owned(),
            sfu_id: "sfu_1".to_owned(),
        }
    }
}

#[derive(Debug, Clone)]
struct Stream {
    uid: String,
    rid: String,
    minfo: Minfo,
    subscribers: BTreeSet<String>,
}

#[derive(Debug)]
struct Peer {
    uid: String,
    room: Option<String>,
    bizid: String,
    published: BTreeSet<String>,
    /// sid → mid.
    subscribed: BTreeMap<String, String>,
}

#[derive(Debug, Default)]
struct Room {
    /// Members in the order they joined.
    members: Vec<ConnId>,
    /// Streams in the order they were published, by mid.
    streams: Vec<String>,
}

/// A publication or subscription the media plane has not answered yet.
#[derive(Debug)]
struct Pending {
    conn: ConnId,
    rid: String,
    mid: String,
    minfo: Minfo,
}

#[derive(Debug, Default)]
pub struct Rooms {
    ids: ServerIds,
    peers: HashMap<ConnId, Peer>,
    by_uid: HashMap<String, ConnId>,
    rooms: HashMap<String, Room>,
    streams: HashMap<String, Stream>,
    /// By mid for publications, by sid for subscriptions.
    pending: HashMap<String, Pending>,
    next_name: u64,
    faults: Faults,
    effects: Vec<Effect>,
}

impl Rooms {
    pub fn new(ids: ServerIds, faults: Faults) -> Self {
        Self {
            ids,
            faults,
            ..Self::default()
        }
    }

    fn has(&self, fault: Fault) -> bool {
        self.faults.has(fault)
    }

    pub fn peer_count(&self) -> usize {
        self.peers.len()
    }

    pub fn stream_count(&self) -> usize {
        self.streams.len()
    }

    pub fn room_count(&self) -> usize {
        self.rooms.len()
    }

    /// S1: a connection for `uid`; an older connection with the same uid is replaced.
    pub fn connect(&mut self, conn: ConnId, uid: &str) -> Vec<Effect> {
        if let Some(old) = self.by_uid.get(uid).copied() {
            self.leave_room(old);
            self.peers.remove(&old);
            let reason = "another connection joined with this peer id".to_owned();
            self.effects.push(Effect::Close {
                conn: old,
                code: super::CLOSE_REPLACED,
                reason,
            });
        }
        self.by_uid.insert(uid.to_owned(), conn);
        let peer = Peer {
            uid: uid.to_owned(),
            room: None,
            bizid: String::new(),
            published: BTreeSet::new(),
            subscribed: BTreeMap::new(),
        };
        self.peers.insert(conn, peer);
        self.take()
    }

    /// Forgets `conn` (socket closed, keepalive missed): its streams go, the room is told.
    pub fn disconnect(&mut self, conn: ConnId) -> Vec<Effect> {
        if !self.has(Fault::SfuGhostPeers) {
            self.leave_room(conn);
        }
        if let Some(peer) = self.peers.remove(&conn) {
            if self.by_uid.get(&peer.uid) == Some(&conn) {
                self.by_uid.remove(&peer.uid);
            }
        }
        self.take()
    }

    /// Answers a frame the session could not decode.
    pub fn refuse(
        &mut self,
        conn: ConnId,
        id: &Value,
        code: ErrorCode,
        reason: &str,
    ) -> Vec<Effect> {
        self.error(conn, id, code, reason);
        self.take()
    }

    /// Acts on one decoded request from `conn`.
    pub fn handle(&mut self, conn: ConnId, incoming: Incoming) -> Vec<Effect> {
        let Incoming { id, request } = incoming;
        if let Err((code, reason)) = self.admit(conn, &request) {
            self.error(conn, &json!(id), code, &reason);
            return self.take();
        }
        match request {
            Request::Join { rid, bizid } => self.join(conn, id, rid, bizid),
            Request::Leave { .. } => {
                self.leave_room(conn);
                self.ok(conn, id, json!({}));
            }
            Request::Keepalive { .. } => self.ok(conn, id, json!({})),
            Request::Publish { rid, offer, minfo } => self.publish(conn, id, rid, offer, minfo),
            Request::Unpublish { mid, .. } => self.unpublish(conn, id, &mid),
            Request::Subscribe { rid, mid, offer } => self.subscribe(conn, id, rid, mid, offer),
            Request::Unsubscribe { mid, sid, .. } => self.unsubscribe(conn, id, mid, &sid),
            Request::Broadcast { rid, data } => self.broadcast(conn, id, &rid, data),
        }
        self.take()
    }

    /// S5: every method but `join` needs the room joined, named by its `rid`.
    fn admit(&self, conn: ConnId, request: &Request) -> Result<(), (ErrorCode, String)> {
        let joined = self.peers.get(&conn).and_then(|p| p.room.as_deref());
        match (request, joined) {
            (Request::Join { .. }, Some(room)) => Err((
                ErrorCode::AlreadyJoined,
                format!("this connection is in room {room:?}; leave it first"),
            )),
            (Request::Join { .. }, None) => Ok(()),
            (Request::Publish { .. }, None) if self.has(Fault::SfuPublishBeforeJoin) => Ok(()),
            (_, Some(room)) if room == request.rid() => Ok(()),
            (_, Some(room)) => Err((
                ErrorCode::NotJoined,
                format!(
                    "this connection is in room {room:?}, not {:?}",
                    request.rid()
                ),
            )),
            (_, None) => Err((ErrorCode::NotJoined, "send join first".to_owned())),
        }
    }

    fn join(&mut self, conn: ConnId, id: u64, rid: String, bizid: Option<String>) {
        let size = self.rooms.get(&rid).map_or(0, |r| r.members.len());
        if size >= super::MAX_PEERS_PER_ROOM {
            let reason = format!("room {rid:?} holds {size} peers, the limit");
            return self.error(conn, &json!(id), ErrorCode::LimitReached, &reason);
        }
        let Some(peer) = self.peers.get_mut(&conn) else {
            return;
        };
        peer.room = Some(rid.clone());
        peer.bizid = bizid.unwrap_or_default();
        let (uid, bizid) = (peer.uid.clone(), peer.bizid.clone());
        let room = self.rooms.entry(rid.clone()).or_default();
        let others: Vec<ConnId> = room.members.clone();
        room.members.push(conn);
        let state = self.room_state(&rid, &others);
        self.ok(conn, id, state);
        if !self.has(Fault::SfuNoPeerJoin) {
            let data = json!({"rid": rid, "uid": uid, "bizid": bizid});
            self.notify(conn, &rid, messages::notification("peer-join", data));
        }
    }

    /// 004 §5 join: `pubs` (the room's streams) and `users` (the other peers, S3).
    fn room_state(&self, rid: &str, others: &[ConnId]) -> Value {
        let users: Vec<Value> = others
            .iter()
            .filter_map(|c| self.peers.get(c))
            .map(|p| json!({"uid": p.uid, "rid": rid, "signalid": self.ids.signal_id}))
            .collect();
        let pubs: Vec<Value> = self
            .rooms
            .get(rid)
            .map(|r| {
                r.streams
                    .iter()
                    .filter_map(|mid| self.stream_entry(mid))
                    .collect()
            })
            .unwrap_or_default();
        if self.has(Fault::SfuJoinWithoutPubs) {
            return json!({"users": users});
        }
        if self.has(Fault::SfuEmptyUsers) {
            return json!({"pubs": pubs, "users": []});
        }
        json!({"pubs": pubs, "users": users})
    }

    fn stream_entry(&self, mid: &str) -> Option<Value> {
        let stream = self.streams.get(mid)?;
        Some(json!({
            "mid": mid,
            "minfo": stream.minfo.to_json(),
            "rid": stream.rid,
            "sfuid": self.ids.sfu_id,
            "uid": stream.uid,
        }))
    }

    /// Takes `conn` out of its room: its streams and subscriptions end, the others are told
    /// (stream-remove for each stream, then peer-leave).
    fn leave_room(&mut self, conn: ConnId) {
        let Some(peer) = self.peers.get_mut(&conn) else {
            return;
        };
        let Some(rid) = peer.room.take() else {
            return;
        };
        let uid = peer.uid.clone();
        let published = std::mem::take(&mut peer.published);
        let subscribed = std::mem::take(&mut peer.subscribed);
        if !self.has(Fault::SfuKeepStreamsOnLeave) {
            for mid in published {
                self.remove_stream(conn, &rid, &mid);
            }
        }
        for (sid, mid) in subscribed {
            self.drop_subscription(&sid, &mid);
        }
        if let Some(room) = self.rooms.get_mut(&rid) {
            room.members.retain(|c| *c != conn);
        }
        if !self.has(Fault::SfuNoPeerLeave) {
            let data = json!({"rid": rid, "uid": uid});
            self.notify(conn, &rid, messages::notification("peer-leave", data));
        }
        self.forget_empty_room(&rid);
    }

    fn forget_empty_room(&mut self, rid: &str) {
        let empty = self
            .rooms
            .get(rid)
            .is_some_and(|r| r.members.is_empty() && r.streams.is_empty());
        if empty {
            self.rooms.remove(rid);
        }
    }

    fn publish(&mut self, conn: ConnId, id: u64, rid: String, offer: String, minfo: Option<Minfo>) {
        let Some(peer) = self.peers.get(&conn) else {
            return;
        };
        if peer.published.len() >= super::MAX_PUBLICATIONS_PER_PEER {
            let reason = format!("{} streams are published, the limit", peer.published.len());
            return self.error(conn, &json!(id), ErrorCode::LimitReached, &reason);
        }
        let mid = self.fresh_name(&peer.uid.clone());
        let minfo = minfo.unwrap_or_else(|| minfo_of(&offer));
        self.pending.insert(
            mid.clone(),
            Pending {
                conn,
                rid,
                mid: mid.clone(),
                minfo,
            },
        );
        let request = MediaRequest::Publish {
            conn,
            id,
            mid,
            offer,
        };
        self.effects.push(Effect::Media(request));
    }

    /// `<uid>#<6 hex digits>`, as the document's `64236c21-...#ABCDEF`; unique on this server.
    fn fresh_name(&mut self, uid: &str) -> String {
        self.next_name += 1;
        let tag = self.next_name.wrapping_mul(0x9E37_79B9) & 0xFF_FFFF;
        format!("{uid}#{tag:06X}")
    }

    /// The media plane answered (or refused) a publication.
    pub fn published(
        &mut self,
        id: u64,
        mid: &str,
        outcome: Result<String, MediaRefusal>,
    ) -> Vec<Effect> {
        let Some(pending) = self.pending.remove(mid) else {
            return self.take();
        };
        let conn = pending.conn;
        let accepts_anyone = self.has(Fault::SfuPublishBeforeJoin);
        let still_there = self
            .peers
            .get(&conn)
            .is_some_and(|p| p.room.as_deref() == Some(pending.rid.as_str()) || accepts_anyone);
        match outcome {
            Ok(_) if !still_there => self.effects.push(Effect::Media(MediaRequest::Unpublish {
                mid: mid.to_owned(),
            })),
            Ok(answer) => self.add_stream(pending, id, &answer),
            Err(refusal) => self.error(conn, &json!(id), refusal.code, &refusal.reason),
        }
        self.take()
    }

    fn add_stream(&mut self, pending: Pending, id: u64, answer: &str) {
        let Pending {
            conn,
            rid,
            mid,
            minfo,
        } = pending;
        let Some(peer) = self.peers.get_mut(&conn) else {
            return;
        };
        peer.published.insert(mid.clone());
        let uid = peer.uid.clone();
        let stream = Stream {
            uid: uid.clone(),
            rid: rid.clone(),
            minfo,
            subscribers: BTreeSet::new(),
        };
        self.streams.insert(mid.clone(), stream);
        self.rooms
            .entry(rid.clone())
            .or_default()
            .streams
            .push(mid.clone());
        let jsep = json!({"type": "answer", "sdp": answer});
        let mut answered = json!({"jsep": jsep, "mid": mid, "sfuid": self.ids.sfu_id});
        if self.has(Fault::SfuPublishWithoutSfuid) {
            answered.as_object_mut().map(|d| d.remove("sfuid"));
        }
        self.ok(conn, id, answered);
        if self.has(Fault::SfuNoStreamAdd) {
            return;
        }
        let mut data = json!({"rid": rid, "uid": uid, "mid": mid, "sfuid": self.ids.sfu_id, "minfo": minfo.to_json()});
        if self.has(Fault::SfuStreamAddWithoutMinfo) {
            data.as_object_mut().map(|d| d.remove("minfo"));
        }
        self.notify(conn, &rid, messages::notification("stream-add", data));
    }

    fn unpublish(&mut self, conn: ConnId, id: u64, mid: &str) {
        let owner = self.streams.get(mid).map(|s| s.uid.clone());
        let caller = self.peers.get(&conn).map(|p| p.uid.clone());
        let rid = self
            .peers
            .get(&conn)
            .and_then(|p| p.room.clone())
            .unwrap_or_default();
        let in_room = self.streams.get(mid).is_some_and(|s| s.rid == rid);
        match owner {
            Some(_) if !in_room => self.stream_not_found(conn, id, mid),
            Some(owner) if Some(&owner) != caller.as_ref() => {
                let reason = format!("{mid:?} was published by {owner:?}");
                self.error(conn, &json!(id), ErrorCode::NotOwner, &reason);
            }
            Some(_) => {
                if let Some(peer) = self.peers.get_mut(&conn) {
                    peer.published.remove(mid);
                }
                self.ok(conn, id, json!({}));
                self.remove_stream(conn, &rid, mid);
            }
            None => self.stream_not_found(conn, id, mid),
        }
    }

    fn stream_not_found(&mut self, conn: ConnId, id: u64, mid: &str) {
        let reason = format!("no stream {mid:?} is published in this room");
        self.error(conn, &json!(id), ErrorCode::StreamNotFound, &reason);
    }

    /// Ends a publication: the media plane stops it, subscriptions to it end, the room hears
    /// stream-remove (S6).
    fn remove_stream(&mut self, owner: ConnId, rid: &str, mid: &str) {
        let Some(stream) = self.streams.remove(mid) else {
            return;
        };
        for sid in &stream.subscribers {
            self.forget_subscription(sid);
        }
        if let Some(room) = self.rooms.get_mut(rid) {
            room.streams.retain(|m| m != mid);
        }
        if !self.has(Fault::SfuMediaAfterUnpublish) {
            self.effects.push(Effect::Media(MediaRequest::Unpublish {
                mid: mid.to_owned(),
            }));
        }
        if !self.has(Fault::SfuNoStreamRemove) {
            let data = json!({"rid": rid, "uid": stream.uid, "mid": mid});
            self.notify(owner, rid, messages::notification("stream-remove", data));
        }
    }

    /// Takes `sid` off the peer that holds it.
    fn forget_subscription(&mut self, sid: &str) {
        for peer in self.peers.values_mut() {
            if peer.subscribed.remove(sid).is_some() {
                return;
            }
        }
    }

    fn subscribe(&mut self, conn: ConnId, id: u64, rid: String, mid: String, offer: String) {
        let visible = self
            .streams
            .get(&mid)
            .is_some_and(|s| s.rid == rid || self.has(Fault::SfuSubscribeAcrossRooms));
        if !visible {
            return self.stream_not_found(conn, id, &mid);
        }
        let Some(peer) = self.peers.get(&conn) else {
            return;
        };
        if peer.subscribed.len() >= super::MAX_SUBSCRIPTIONS_PER_PEER {
            let reason = format!(
                "{} subscriptions are open, the limit",
                peer.subscribed.len()
            );
            return self.error(conn, &json!(id), ErrorCode::LimitReached, &reason);
        }
        let sid = self.fresh_name(&peer.uid.clone());
        let minfo = Minfo::default();
        self.pending.insert(
            sid.clone(),
            Pending {
                conn,
                rid,
                mid: mid.clone(),
                minfo,
            },
        );
        let request = MediaRequest::Subscribe {
            conn,
            id,
            sid,
            mid,
            offer,
        };
        self.effects.push(Effect::Media(request));
    }

    /// The media plane answered (or refused) a subscription.
    pub fn subscribed(
        &mut self,
        id: u64,
        sid: &str,
        outcome: Result<String, MediaRefusal>,
    ) -> Vec<Effect> {
        let Some(Pending { conn, rid, mid, .. }) = self.pending.remove(sid) else {
            return self.take();
        };
        let live = self
            .peers
            .get(&conn)
            .is_some_and(|p| p.room.as_deref() == Some(rid.as_str()))
            && self.streams.contains_key(&mid);
        match outcome {
            Ok(_) if !live => self.effects.push(Effect::Media(MediaRequest::Unsubscribe {
                sid: sid.to_owned(),
            })),
            Ok(answer) => {
                if let Some(peer) = self.peers.get_mut(&conn) {
                    peer.subscribed.insert(sid.to_owned(), mid.clone());
                }
                if let Some(stream) = self.streams.get_mut(&mid) {
                    stream.subscribers.insert(sid.to_owned());
                }
                let jsep = json!({"type": "answer", "sdp": answer});
                let data = if self.has(Fault::SfuSubscribeWithoutSid) {
                    json!({"jsep": jsep})
                } else {
                    json!({"jsep": jsep, "sid": sid})
                };
                self.ok(conn, id, data);
            }
            Err(refusal) => self.error(conn, &json!(id), refusal.code, &refusal.reason),
        }
        self.take()
    }

    fn unsubscribe(&mut self, conn: ConnId, id: u64, mid: Option<String>, sid: &str) {
        let held = self
            .peers
            .get(&conn)
            .and_then(|p| p.subscribed.get(sid))
            .cloned();
        match (held, mid) {
            (None, _) => {
                let reason = format!("{sid:?} is not a subscription of this peer");
                self.error(conn, &json!(id), ErrorCode::SubscriptionNotFound, &reason);
            }
            (Some(held), Some(mid)) if held != mid => {
                let reason = format!("{sid:?} subscribes to {held:?}, not {mid:?}");
                self.error(conn, &json!(id), ErrorCode::InvalidParams, &reason);
            }
            (Some(held), _) => {
                if let Some(peer) = self.peers.get_mut(&conn) {
                    peer.subscribed.remove(sid);
                }
                self.drop_subscription(sid, &held);
                self.ok(conn, id, json!({}));
            }
        }
    }

    fn drop_subscription(&mut self, sid: &str, mid: &str) {
        if let Some(stream) = self.streams.get_mut(mid) {
            stream.subscribers.remove(sid);
        }
        self.effects.push(Effect::Media(MediaRequest::Unsubscribe {
            sid: sid.to_owned(),
        }));
    }

    fn broadcast(&mut self, conn: ConnId, id: u64, rid: &str, data: Value) {
        let uid = self
            .peers
            .get(&conn)
            .map(|p| p.uid.clone())
            .unwrap_or_default();
        self.ok(conn, id, json!({}));
        let message = json!({"rid": rid, "uid": uid, "data": data});
        self.notify(conn, rid, messages::notification("broadcast", message));
    }

    /// 004 §5 notifications go to the other peers of the room, never to the sender.
    fn notify(&mut self, sender: ConnId, rid: &str, message: Value) {
        let echo = self.has(Fault::SfuNotifySender);
        let everywhere = self.has(Fault::SfuBroadcastEveryRoom) && message["method"] == "broadcast";
        let rooms: Vec<&Room> = if everywhere {
            self.rooms.values().collect()
        } else {
            self.rooms.get(rid).into_iter().collect()
        };
        let to: Vec<ConnId> = rooms
            .iter()
            .flat_map(|r| r.members.iter().copied())
            .filter(|c| echo || *c != sender)
            .collect();
        if !to.is_empty() {
            self.effects.push(Effect::Broadcast { to, message });
        }
    }

    fn ok(&mut self, conn: ConnId, id: u64, data: Value) {
        let id = if self.has(Fault::SfuFreshResponseId) {
            id.wrapping_add(1)
        } else {
            id
        };
        self.effects.push(Effect::Send {
            to: conn,
            message: messages::ok(id, data),
        });
    }

    fn error(&mut self, conn: ConnId, id: &Value, code: ErrorCode, reason: &str) {
        if self.has(Fault::SfuSilentErrors) {
            return;
        }
        self.effects.push(Effect::Send {
            to: conn,
            message: messages::error(id, code, reason),
        });
        if let Some(close) = code.close_code() {
            let reason = reason.to_owned();
            self.effects.push(Effect::Close {
                conn,
                code: close,
                reason,
            });
        }
    }

    fn take(&mut self) -> Vec<Effect> {
        std::mem::take(&mut self.effects)
    }
}

/// S4: without `minfo`, the offer's m-lines say what is sent.
fn minfo_of(offer: &str) -> Minfo {
    let has = |kind: &str| offer.lines().any(|l| l.starts_with(kind));
    Minfo {
        audio: has("m=audio"),
        video: has("m=video"),
        audiotype: 0,
        videotype: 0,
    }
}
