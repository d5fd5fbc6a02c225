//! The signaling rules, on the sans-IO hub: registration, watching, relaying, departures.

use reference_server::faults::{Fault, Faults};
use reference_server::protocol::logrtc::{decode, Effect, Hub};
use reference_server::protocol::Now;
use serde_json::{json, Value};

fn now() -> Now {
    Now {
        mono: std::time::Instant::now(),
        wall: chrono::Utc::now(),
    }
}

struct World {
    hub: Hub,
}

impl World {
    fn new() -> Self {
        Self::with(Faults::none())
    }

    fn with(faults: Faults) -> Self {
        Self {
            hub: Hub::new(faults),
        }
    }

    fn say(&mut self, conn: u64, message: Value) -> Vec<Effect> {
        let message = decode(&message.to_string()).expect("a valid message");
        self.hub.handle(now(), conn, message)
    }

    fn producer(&mut self, conn: u64, id: &str) -> Vec<Effect> {
        let register = json!({"type": "register", "role": "producer", "client_id": id,
            "metadata": {"system_name": id, "version": "1.0.0"}});
        self.say(conn, register)
    }

    fn consumer(&mut self, conn: u64, id: &str) -> Vec<Effect> {
        self.say(
            conn,
            json!({"type": "register", "role": "consumer", "client_id": id}),
        )
    }
}

/// The messages `effects` send to `conn`.
fn to(conn: u64, effects: &[Effect]) -> Vec<Value> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Send { to, message } if *to == conn => Some(message.clone()),
            Effect::Broadcast { to, message } if to.contains(&conn) => Some(message.clone()),
            _ => None,
        })
        .collect()
}

fn types(messages: &[Value]) -> Vec<&str> {
    messages.iter().filter_map(|m| m["type"].as_str()).collect()
}

#[test]
fn a_watch_tells_the_producer_which_consumer_connected() {
    let mut world = World::new();
    world.producer(1, "rust_app");
    let registered = world.consumer(2, "browser_client_123");
    let listing = &to(2, &registered)[0];
    assert_eq!(listing["producers"][0]["client_id"], "rust_app");
    assert_eq!(listing["producers"][0]["metadata"]["version"], "1.0.0");
    let effects = world.say(2, json!({"type": "watch", "producer_id": "rust_app"}));
    assert_eq!(
        to(1, &effects),
        vec![json!({"type": "consumer_connected", "consumer_id": "browser_client_123"})]
    );
    assert_eq!(types(&to(2, &effects)), vec!["watching"]);
}

#[test]
fn signals_reach_only_their_addressee_with_from_added_and_the_sdp_untouched() {
    let mut world = World::new();
    world.producer(1, "p");
    world.consumer(2, "c1");
    world.consumer(3, "c2");
    world.say(2, json!({"type": "watch", "producer_id": "p"}));
    world.say(3, json!({"type": "watch", "producer_id": "p"}));
    let sdp = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\n";
    let effects = world.say(1, json!({"type": "webrtc_offer", "to": "c1", "sdp": sdp}));
    assert_eq!(
        to(2, &effects),
        vec![json!({"type": "webrtc_offer", "to": "c1", "sdp": sdp, "from": "p"})]
    );
    assert!(to(3, &effects).is_empty());
    let candidate =
        json!({"type": "ice_candidate", "to": "p", "candidate": "candidate:1", "sdpMLineIndex": 0});
    let effects = world.say(2, candidate);
    assert_eq!(to(1, &effects)[0]["from"], "c1");
    assert_eq!(to(1, &effects)[0]["sdpMLineIndex"], 0);
}

#[test]
fn unknown_and_unpaired_recipients_are_refused() {
    let mut world = World::new();
    world.producer(1, "p");
    world.consumer(2, "c");
    let effects = world.say(
        1,
        json!({"type": "webrtc_offer", "to": "nobody", "sdp": "v=0"}),
    );
    assert_eq!(to(1, &effects)[0]["code"], "unknown_recipient");
    let effects = world.say(1, json!({"type": "webrtc_offer", "to": "c", "sdp": "v=0"}));
    assert_eq!(to(1, &effects)[0]["code"], "not_paired");
    assert!(to(2, &effects).is_empty());
}

#[test]
fn departures_are_announced_and_release_the_id() {
    let mut world = World::new();
    world.producer(1, "p");
    world.consumer(2, "c");
    world.say(2, json!({"type": "watch", "producer_id": "p"}));
    let effects = world.hub.disconnect(2);
    assert_eq!(
        to(1, &effects),
        vec![json!({"type": "consumer_disconnected", "consumer_id": "c"})]
    );
    world.consumer(3, "c2");
    let effects = world.hub.disconnect(1);
    assert_eq!(
        to(3, &effects),
        vec![json!({"type": "producer_disconnected", "producer_id": "p"})]
    );
    assert_eq!(world.hub.client_count(), 1);
    let again = world.producer(4, "p");
    assert_eq!(types(&to(4, &again)), vec!["registered"]);
}

#[test]
fn a_second_registration_of_an_id_replaces_the_first() {
    let mut world = World::new();
    world.producer(1, "p");
    let effects = world.producer(2, "p");
    assert_eq!(to(1, &effects)[0]["code"], "replaced");
    assert!(effects.iter().any(|e| matches!(
        e,
        Effect::Close {
            conn: 1,
            code: 4001,
            ..
        }
    )));
    assert_eq!(types(&to(2, &effects)), vec!["registered"]);
    assert_eq!(world.hub.client_count(), 1);
}

#[test]
fn a_returning_producer_hears_of_the_consumers_still_watching_it() {
    let mut world = World::new();
    world.producer(1, "p");
    world.consumer(2, "c");
    world.say(2, json!({"type": "watch", "producer_id": "p"}));
    world.hub.disconnect(1);
    let effects = world.producer(3, "p");
    assert_eq!(
        types(&to(3, &effects)),
        vec!["registered", "consumer_connected"]
    );
    assert_eq!(types(&to(2, &effects)), vec!["producer_connected"]);
}

#[test]
fn messages_before_register_and_from_the_wrong_role_are_refused() {
    let mut world = World::new();
    let effects = world.say(1, json!({"type": "list_producers"}));
    assert_eq!(to(1, &effects)[0]["code"], "not_registered");
    world.producer(1, "p");
    let effects = world.say(1, json!({"type": "watch", "producer_id": "p"}));
    assert_eq!(to(1, &effects)[0]["code"], "wrong_role");
    let effects = world.producer(1, "p");
    assert_eq!(to(1, &effects)[0]["code"], "already_registered");
}

#[test]
fn consumers_without_an_id_are_numbered() {
    let mut world = World::new();
    let effects = world.say(1, json!({"type": "register", "role": "consumer"}));
    assert_eq!(to(1, &effects)[0]["client_id"], "consumer-1");
}

#[test]
fn the_leak_fault_keeps_a_departed_producer_listed() {
    let mut world = World::with([Fault::LogrtcLeakRegistrations].into_iter().collect());
    world.producer(1, "p");
    world.hub.disconnect(1);
    let effects = world.consumer(2, "c");
    assert_eq!(
        to(2, &effects)[0]["producers"].as_array().map(Vec::len),
        Some(1)
    );
}
