//! The registry: who is registered under which `client_id`, which consumers watch which
//! producer, and the rules of relaying. One hub serves every connection of a server; each call
//! returns the [`Effect`]s the driver must carry out (frames to queue, connections to close).

use super::codes::ErrorCode;
use super::messages::{self, ClientMessage, Role, SignalKind};
use crate::faults::{Fault, Faults};
use crate::protocol::Now;
use serde_json::{Map, Value};
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// A connection's number, unique within one server.
pub type ConnId = u64;

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
}

#[derive(Debug)]
struct Registration {
    role: Role,
    client_id: String,
    metadata: Map<String, Value>,
    registered_at: String,
    /// Producers this consumer watches, by id (kept across the producers' reconnects), with
    /// the features it asked each for.
    watching: BTreeMap<String, Vec<String>>,
}

#[derive(Debug, Default)]
pub struct Hub {
    registered: HashMap<ConnId, Registration>,
    by_id: HashMap<String, ConnId>,
    /// Registered producers by id, in listing order.
    producers: BTreeMap<String, ConnId>,
    /// Producer id → ids of the consumers that watch it.
    watchers: HashMap<String, BTreeSet<String>>,
    next_consumer: u64,
    faults: Faults,
    effects: Vec<Effect>,
}

impl Hub {
    pub fn new(faults: Faults) -> Self {
        Self {
            faults,
            ..Self::default()
        }
    }

    fn has(&self, fault: Fault) -> bool {
        self.faults.has(fault)
    }

    /// Registered clients (producers and consumers).
    pub fn client_count(&self) -> usize {
        self.registered.len()
    }

    pub fn producer_count(&self) -> usize {
        self.producers.len()
    }

    /// Acts on one decoded message from `conn`.
    pub fn handle(&mut self, now: Now, conn: ConnId, message: ClientMessage) -> Vec<Effect> {
        match message {
            ClientMessage::Ping if self.has(Fault::LogrtcNoPong) => {}
            ClientMessage::Ping => self.send(conn, messages::pong()),
            ClientMessage::Register {
                role,
                client_id,
                metadata,
            } => self.register(now, conn, role, client_id, metadata),
            other if !self.registered.contains_key(&conn) => {
                let message = "send register first";
                self.refuse(
                    conn,
                    ErrorCode::NotRegistered,
                    message,
                    Some(type_name(&other)),
                );
            }
            ClientMessage::ListProducers => {
                let list = messages::producer_list(self.listing());
                self.send(conn, list);
            }
            ClientMessage::Watch {
                producer_id,
                features,
            } => self.watch(conn, producer_id, features),
            ClientMessage::Unwatch { producer_id } => self.unwatch(conn, &producer_id),
            ClientMessage::Signal { kind, to, message } => self.relay(conn, kind, &to, message),
        }
        std::mem::take(&mut self.effects)
    }

    /// Forgets `conn` and tells the clients that cared.
    pub fn disconnect(&mut self, conn: ConnId) -> Vec<Effect> {
        if !self.has(Fault::LogrtcLeakRegistrations) {
            if let Some(gone) = self.unregister(conn) {
                self.announce_departure(&gone);
            }
        }
        std::mem::take(&mut self.effects)
    }

    /// Refuses a frame the session could not decode (the hub owns no state for it, but the
    /// error faults apply alike).
    pub fn refuse_frame(
        &mut self,
        conn: ConnId,
        code: ErrorCode,
        message: &str,
        request_type: Option<&str>,
    ) -> Vec<Effect> {
        self.refuse(conn, code, message, request_type);
        std::mem::take(&mut self.effects)
    }

    fn register(
        &mut self,
        now: Now,
        conn: ConnId,
        role: Role,
        client_id: Option<String>,
        metadata: Map<String, Value>,
    ) {
        if self.registered.contains_key(&conn) {
            let message = "this connection is registered; open another to register again";
            return self.refuse(
                conn,
                ErrorCode::AlreadyRegistered,
                message,
                Some("register"),
            );
        }
        let client_id = client_id.unwrap_or_else(|| self.fresh_consumer_id());
        let taken = self.by_id.get(&client_id).copied();
        if taken.is_none() && self.registered.len() >= super::MAX_CLIENTS {
            let message = format!("{} clients are registered", super::MAX_CLIENTS);
            return self.refuse(conn, ErrorCode::ServerFull, &message, Some("register"));
        }
        if let Some(old) = taken {
            self.replace(old);
        }
        let registration = Registration {
            role,
            client_id: client_id.clone(),
            metadata,
            registered_at: now
                .wall
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            watching: BTreeMap::new(),
        };
        self.registered.insert(conn, registration);
        // With `keep-duplicate` the first holder keeps the id: relays still go to it.
        self.by_id.entry(client_id.clone()).or_insert(conn);
        match role {
            Role::Producer => self.welcome_producer(conn, &client_id),
            Role::Consumer => self.welcome_consumer(conn, &client_id),
        }
    }

    /// L2: the newest registration of an id wins; the older connection is told and closed.
    fn replace(&mut self, old: ConnId) {
        if self.has(Fault::LogrtcKeepDuplicate) {
            return;
        }
        let message = "another connection registered this client_id";
        self.refuse(old, ErrorCode::Replaced, message, None);
        if let Some(gone) = self.unregister(old) {
            self.announce_departure(&gone);
        }
    }

    fn fresh_consumer_id(&mut self) -> String {
        loop {
            self.next_consumer += 1;
            let id = format!("consumer-{}", self.next_consumer);
            if !self.by_id.contains_key(&id) {
                return id;
            }
        }
    }

    fn welcome_producer(&mut self, conn: ConnId, client_id: &str) {
        if self.by_id.get(client_id) == Some(&conn) {
            self.producers.insert(client_id.to_owned(), conn);
        }
        if !self.has(Fault::LogrtcNoRegisteredAck) {
            self.send(conn, messages::registered(client_id, Role::Producer, None));
        }
        let entry = self.producer_entry(conn);
        self.broadcast_to_consumers(messages::producer_connected(entry));
        // L4: watches outlive a producer's reconnect; a returning producer hears of them again.
        let watchers: Vec<String> = self
            .watchers
            .get(client_id)
            .map(|w| w.iter().cloned().collect())
            .unwrap_or_default();
        for consumer_id in watchers {
            let features = self.features_of(&consumer_id, client_id);
            self.tell_consumer_connected(conn, &consumer_id, &features);
        }
    }

    fn welcome_consumer(&mut self, conn: ConnId, client_id: &str) {
        if !self.has(Fault::LogrtcNoRegisteredAck) {
            let producers = Some(self.listing());
            self.send(
                conn,
                messages::registered(client_id, Role::Consumer, producers),
            );
        }
    }

    /// The features `consumer_id` asked of `producer_id` in its watch.
    fn features_of(&self, consumer_id: &str, producer_id: &str) -> Vec<String> {
        let consumer = self
            .by_id
            .get(consumer_id)
            .and_then(|c| self.registered.get(c));
        consumer
            .and_then(|c| c.watching.get(producer_id))
            .cloned()
            .unwrap_or_default()
    }

    fn tell_consumer_connected(
        &mut self,
        producer: ConnId,
        consumer_id: &str,
        features: &[String],
    ) {
        if self.has(Fault::LogrtcNoConsumerConnected) {
            return;
        }
        let mut message = messages::consumer_connected(consumer_id, features);
        if self.has(Fault::LogrtcConsumerConnectedWithoutId) {
            message = serde_json::json!({"type": "consumer_connected"});
        }
        self.send(producer, message);
    }

    fn watch(&mut self, conn: ConnId, producer_id: String, features: Vec<String>) {
        let Some(consumer_id) = self.consumer_id(conn, "watch") else {
            return;
        };
        let Some(&producer) = self.producers.get(&producer_id) else {
            let message = format!("no producer {producer_id:?} is registered");
            return self.refuse(conn, ErrorCode::UnknownProducer, &message, Some("watch"));
        };
        let watching = self.registered.get(&conn).map(|c| &c.watching);
        let full = watching
            .is_some_and(|w| !w.contains_key(&producer_id) && w.len() >= super::MAX_WATCHES);
        if full {
            let message = format!(
                "a consumer watches at most {} producers",
                super::MAX_WATCHES
            );
            return self.refuse(conn, ErrorCode::BadMessage, &message, Some("watch"));
        }
        if let Some(consumer) = self.registered.get_mut(&conn) {
            consumer
                .watching
                .insert(producer_id.clone(), features.clone());
        }
        self.watchers
            .entry(producer_id.clone())
            .or_default()
            .insert(consumer_id.clone());
        self.send(conn, messages::watching(&producer_id, true));
        // L4: watching again asks the producer for a new peer connection.
        self.tell_consumer_connected(producer, &consumer_id, &features);
    }

    fn unwatch(&mut self, conn: ConnId, producer_id: &str) {
        let Some(consumer_id) = self.consumer_id(conn, "unwatch") else {
            return;
        };
        let was_watching = self
            .registered
            .get_mut(&conn)
            .is_some_and(|c| c.watching.remove(producer_id).is_some());
        self.forget_watcher(producer_id, &consumer_id);
        self.send(conn, messages::unwatched(producer_id));
        if was_watching {
            self.tell_consumer_gone(producer_id, &consumer_id);
        }
    }

    /// The id of `conn` when it is a consumer; refuses `request_type` otherwise.
    fn consumer_id(&mut self, conn: ConnId, request_type: &str) -> Option<String> {
        match self.registered.get(&conn) {
            Some(r) if r.role == Role::Consumer => Some(r.client_id.clone()),
            _ => {
                let message = "only consumers watch producers";
                self.refuse(conn, ErrorCode::WrongRole, message, Some(request_type));
                None
            }
        }
    }

    fn forget_watcher(&mut self, producer_id: &str, consumer_id: &str) {
        if let Some(watchers) = self.watchers.get_mut(producer_id) {
            watchers.remove(consumer_id);
            if watchers.is_empty() {
                self.watchers.remove(producer_id);
            }
        }
    }

    fn tell_consumer_gone(&mut self, producer_id: &str, consumer_id: &str) {
        if self.has(Fault::LogrtcNoConsumerDisconnected) {
            return;
        }
        if let Some(&producer) = self.producers.get(producer_id) {
            self.send(producer, messages::consumer_disconnected(consumer_id));
        }
    }

    /// L3: relayed only between a producer and a consumer that watches it, with `from` added.
    fn relay(&mut self, conn: ConnId, kind: SignalKind, to: &str, message: Map<String, Value>) {
        let request_type = Some(kind.type_name());
        let Some(&recipient) = self.by_id.get(to) else {
            if self.has(Fault::LogrtcSilentUnknownRecipient) {
                return;
            }
            let message = format!("no client {to:?} is registered");
            return self.refuse(conn, ErrorCode::UnknownRecipient, &message, request_type);
        };
        if !self.paired(conn, recipient) && !self.has(Fault::LogrtcRelayUnpaired) {
            let message = format!("{to:?} is not a producer you watch or a consumer watching you");
            return self.refuse(conn, ErrorCode::NotPaired, &message, request_type);
        }
        if kind == SignalKind::Candidate && self.has(Fault::LogrtcDropCandidates) {
            return;
        }
        let from = self.id_of(conn).to_owned();
        let relayed = self.bend_relay(kind, message, &from);
        for target in self.relay_targets(conn, recipient) {
            self.send(target, relayed.clone());
        }
    }

    fn paired(&self, a: ConnId, b: ConnId) -> bool {
        let (Some(first), Some(second)) = (self.registered.get(&a), self.registered.get(&b)) else {
            return false;
        };
        let watches = |consumer: &Registration, producer: &Registration| {
            consumer.role == Role::Consumer
                && producer.role == Role::Producer
                && consumer.watching.contains_key(&producer.client_id)
        };
        watches(first, second) || watches(second, first)
    }

    /// The recipient, or with `broadcast-signals` every watcher of a sending producer.
    fn relay_targets(&self, conn: ConnId, recipient: ConnId) -> Vec<ConnId> {
        let sender = self.registered.get(&conn);
        let producer = sender.filter(|s| s.role == Role::Producer);
        match producer {
            Some(producer) if self.has(Fault::LogrtcBroadcastSignals) => self
                .watchers
                .get(&producer.client_id)
                .into_iter()
                .flatten()
                .filter_map(|id| self.by_id.get(id).copied())
                .collect(),
            _ => vec![recipient],
        }
    }

    fn bend_relay(&self, kind: SignalKind, mut message: Map<String, Value>, from: &str) -> Value {
        if !self.has(Fault::LogrtcNoFrom) {
            message.insert("from".to_owned(), from.into());
        }
        if self.has(Fault::LogrtcRewriteSdp) {
            if let Some(Value::String(sdp)) = message.get_mut("sdp") {
                *sdp = sdp.replace("\r\n", "\n");
            }
        }
        if kind == SignalKind::Candidate && self.has(Fault::LogrtcStripMlineIndex) {
            message.remove("sdpMLineIndex");
        }
        Value::Object(message)
    }

    fn id_of(&self, conn: ConnId) -> &str {
        self.registered
            .get(&conn)
            .map_or("", |r| r.client_id.as_str())
    }

    fn unregister(&mut self, conn: ConnId) -> Option<Registration> {
        let gone = self.registered.remove(&conn)?;
        if self.by_id.get(&gone.client_id) == Some(&conn) {
            self.by_id.remove(&gone.client_id);
        }
        if self.producers.get(&gone.client_id) == Some(&conn) {
            self.producers.remove(&gone.client_id);
        }
        Some(gone)
    }

    /// L5: consumers hear that a producer left; a producer hears that its consumer left.
    fn announce_departure(&mut self, gone: &Registration) {
        match gone.role {
            Role::Producer if self.has(Fault::LogrtcNoProducerDisconnected) => {}
            Role::Producer => {
                self.broadcast_to_consumers(messages::producer_disconnected(&gone.client_id));
            }
            Role::Consumer => {
                for producer_id in gone.watching.keys() {
                    self.forget_watcher(producer_id, &gone.client_id);
                    self.tell_consumer_gone(producer_id, &gone.client_id);
                }
            }
        }
    }

    fn conns_of(&self, role: Role) -> Vec<ConnId> {
        let mut conns: Vec<ConnId> = self
            .registered
            .iter()
            .filter(|(_, r)| r.role == role)
            .map(|(conn, _)| *conn)
            .collect();
        conns.sort_unstable();
        conns
    }

    fn producer_entry(&self, conn: ConnId) -> Value {
        let Some(producer) = self.registered.get(&conn) else {
            return Value::Null;
        };
        let mut entry = messages::producer_entry(
            &producer.client_id,
            &producer.metadata,
            &producer.registered_at,
        );
        if self.has(Fault::LogrtcListWithoutMetadata) {
            if let Some(entry) = entry.as_object_mut() {
                entry.remove("metadata");
            }
        }
        entry
    }

    /// The registered producers with their metadata, by id.
    fn listing(&self) -> Vec<Value> {
        let leaked = self.has(Fault::LogrtcLeakRegistrations);
        let conns: Vec<ConnId> = if leaked {
            self.conns_of(Role::Producer)
        } else {
            self.producers.values().copied().collect()
        };
        conns.into_iter().map(|c| self.producer_entry(c)).collect()
    }

    /// Answers with an error; the errors that end the connection close it.
    fn refuse(&mut self, conn: ConnId, code: ErrorCode, message: &str, request_type: Option<&str>) {
        let closes = code.close_code();
        if !self.has(Fault::LogrtcSilentOnError) || closes.is_some() {
            self.send(conn, messages::error(code, message, request_type));
        }
        let close = closes.or(self.has(Fault::LogrtcCloseOnError).then_some(1008));
        if let Some(close) = close {
            let reason = format!("{}: {message}", code.code());
            self.effects.push(Effect::Close {
                conn,
                code: close,
                reason,
            });
        }
    }

    /// L3: every consumer hears of producers coming and going.
    fn broadcast_to_consumers(&mut self, message: Value) {
        let to = self.conns_of(Role::Consumer);
        if !to.is_empty() {
            self.effects.push(Effect::Broadcast { to, message });
        }
    }

    fn send(&mut self, to: ConnId, message: Value) {
        self.effects.push(Effect::Send { to, message });
    }
}

fn type_name(message: &ClientMessage) -> &'static str {
    match message {
        ClientMessage::Register { .. } => "register",
        ClientMessage::ListProducers => "list_producers",
        ClientMessage::Watch { .. } => "watch",
        ClientMessage::Unwatch { .. } => "unwatch",
        ClientMessage::Signal { kind, .. } => kind.type_name(),
        ClientMessage::Ping => "ping",
    }
}
