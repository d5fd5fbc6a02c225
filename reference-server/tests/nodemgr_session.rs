//! The session state machine, stepped through time without sleeping or sockets.

use reference_server::faults::{Fault, Faults};
use reference_server::protocol::nodemgr::{
    CommandOrder, ConnectParams, Input, Output, Session, SessionConfig, StoreFailure, StoreOp,
};
use reference_server::protocol::Now;
use reference_server::transport::read_clock;
use serde_json::{json, Value};
use std::time::Duration;

fn params(token: Option<&str>, node_id: Option<&str>) -> ConnectParams {
    ConnectParams {
        token: token.map(str::to_owned),
        node_id: node_id.map(str::to_owned),
        generated_node_id: "generated-1".to_owned(),
    }
}

fn open(now: Now, faults: &[Fault]) -> Session {
    let config = SessionConfig {
        faults: faults.iter().copied().collect::<Faults>(),
        ..SessionConfig::default()
    };
    Session::open(now, params(Some("default-token"), Some("node-001")), config)
}

fn drain(session: &mut Session) -> Vec<Output> {
    std::iter::from_fn(|| session.poll_output()).collect()
}

fn sent(outputs: &[Output]) -> Vec<Value> {
    outputs
        .iter()
        .filter_map(|o| match o {
            Output::Send(e) => serde_json::from_str(&e.encode()).ok(),
            _ => None,
        })
        .collect()
}

fn frame(kind: &str, id: &str, data: Value) -> Input {
    Input::Text(
        json!({"type": kind, "id": id, "timestamp": "2025-01-21T10:00:00Z", "data": data})
            .to_string(),
    )
}

fn heartbeat(id: &str) -> Input {
    let metrics =
        json!({"cpu_usage": 1.0, "memory_usage": 2.0, "disk_usage": 3.0, "load_average": 0.5});
    frame(
        "heartbeat",
        id,
        json!({"node_id": "node-001", "status": "online", "metrics": metrics}),
    )
}

/// Completes every pending write with `result` and returns what followed.
fn commit_all(
    session: &mut Session,
    now: Now,
    outputs: &[Output],
    result: Result<(), StoreFailure>,
) -> Vec<Output> {
    for output in outputs {
        if let Output::Persist { ticket, .. } = output {
            session.handle_input(
                now,
                Input::Persisted {
                    ticket: *ticket,
                    result: result.clone(),
                },
            );
        }
    }
    drain(session)
}

fn registered(now: Now) -> Session {
    registered_with(now, &[])
}

fn registered_with(now: Now, faults: &[Fault]) -> Session {
    let mut session = open(now, faults);
    drain(&mut session);
    session.handle_input(
        now,
        frame("node_register", "r-1", json!({"node_id": "node-001"})),
    );
    let writes = drain(&mut session);
    commit_all(&mut session, now, &writes, Ok(()));
    session
}

#[test]
fn the_first_output_is_a_welcome_with_the_url_node_id() {
    let mut session = open(read_clock(), &[]);
    let messages = sent(&drain(&mut session));
    assert_eq!(messages[0]["type"], "welcome");
    assert_eq!(messages[0]["data"]["node_id"], "node-001");
}

#[test]
fn a_missing_node_id_gets_the_generated_one() {
    let mut session = Session::open(
        read_clock(),
        params(Some("default-token"), None),
        SessionConfig::default(),
    );
    assert_eq!(
        sent(&drain(&mut session))[0]["data"]["node_id"],
        "generated-1"
    );
}

#[test]
fn a_wrong_token_gets_invalid_token_and_a_close_and_no_welcome() {
    let mut session = Session::open(
        read_clock(),
        params(Some("nope"), None),
        SessionConfig::default(),
    );
    let outputs = drain(&mut session);
    assert_eq!(sent(&outputs)[0]["data"]["error_code"], "INVALID_TOKEN");
    assert!(matches!(
        outputs.last(),
        Some(Output::Close { code: 4001, .. })
    ));
    assert_eq!(sent(&outputs).len(), 1);
}

#[test]
fn register_is_answered_only_after_the_write_commits() {
    let now = read_clock();
    let mut session = open(now, &[]);
    drain(&mut session);
    session.handle_input(
        now,
        frame("node_register", "r-1", json!({"node_id": "node-001"})),
    );
    let writes = drain(&mut session);
    assert!(
        sent(&writes).is_empty(),
        "answered before the write: {writes:?}"
    );
    assert!(matches!(
        writes[0],
        Output::Persist {
            op: StoreOp::UpsertNode { .. },
            ..
        }
    ));
    let after = commit_all(&mut session, now, &writes, Ok(()));
    assert!(matches!(after[0], Output::Registered { .. }));
    let response = &sent(&after)[0];
    assert_eq!(
        (response["type"].as_str(), response["id"].as_str()),
        (Some("register_response"), Some("r-1"))
    );
    assert_eq!(response["data"]["success"], true);
}

#[test]
fn a_heartbeat_before_register_is_node_not_found_with_the_request_id() {
    let now = read_clock();
    let mut session = open(now, &[]);
    drain(&mut session);
    session.handle_input(now, heartbeat("h-1"));
    let reply = &sent(&drain(&mut session))[0];
    assert_eq!(
        (reply["id"].as_str(), reply["data"]["error_code"].as_str()),
        (Some("h-1"), Some("NODE_NOT_FOUND"))
    );
}

#[test]
fn a_failed_heartbeat_write_is_a_database_error_in_place_of_the_ack() {
    let now = read_clock();
    let mut session = registered(now);
    session.handle_input(now, heartbeat("h-1"));
    let writes = drain(&mut session);
    let after = commit_all(
        &mut session,
        now,
        &writes,
        Err(StoreFailure::Database("disk full".into())),
    );
    let reply = &sent(&after)[0];
    assert_eq!(
        (reply["type"].as_str(), reply["id"].as_str()),
        (Some("error"), Some("h-1"))
    );
    assert_eq!(reply["data"]["error_code"], "DATABASE_ERROR");
    assert!(!session.is_closed());
}

#[test]
fn writes_answered_out_of_order_are_each_acked_under_their_own_id() {
    // The server's driver answers in ticket order; the core must not depend on it.
    let now = read_clock();
    let mut session = registered(now);
    session.handle_input(now, heartbeat("h-1"));
    session.handle_input(now, heartbeat("h-2"));
    session.handle_input(now, heartbeat("h-3"));
    let mut writes = drain(&mut session);
    writes.swap(0, 2);
    let after = commit_all(&mut session, now, &writes, Ok(()));
    let acked: Vec<_> = sent(&after)
        .iter()
        .map(|reply| (reply["type"].clone(), reply["id"].clone()))
        .collect();
    assert_eq!(
        acked,
        [
            (json!("heartbeat_ack"), json!("h-3")),
            (json!("heartbeat_ack"), json!("h-2")),
            (json!("heartbeat_ack"), json!("h-1"))
        ]
    );
    assert!(
        commit_all(&mut session, now, &writes, Ok(())).is_empty(),
        "acked twice"
    );
}

#[test]
fn a_command_without_result_times_out_after_its_timeout_plus_grace() {
    let now = read_clock();
    let mut session = registered(now);
    let order = CommandOrder {
        command_id: "cmd-1".into(),
        command_text: "true".into(),
        timeout_secs: 30,
    };
    session.handle_input(now, Input::Dispatch(order));
    let execute = sent(&drain(&mut session))[0].clone();
    assert_eq!(execute["type"], "execute_command");
    let grace = SessionConfig::default().command_grace;
    session.handle_timeout(now.after(Duration::from_secs(30)));
    assert!(
        drain(&mut session).is_empty(),
        "timed out before the grace ran out"
    );
    let deadline = session.poll_timeout().expect("a deadline");
    assert_eq!(deadline, now.mono + Duration::from_secs(30) + grace);
    let later = now.after(Duration::from_secs(30) + grace);
    session.handle_timeout(later);
    let writes = drain(&mut session);
    assert!(matches!(
        writes[0],
        Output::Persist {
            op: StoreOp::CommandTimedOut { .. },
            ..
        }
    ));
    let notice = &sent(&commit_all(&mut session, later, &writes, Ok(())))[0];
    assert_eq!(
        (notice["id"].as_str(), notice["data"]["error_code"].as_str()),
        (execute["id"].as_str(), Some("COMMAND_TIMEOUT"))
    );
}

#[test]
fn a_silent_node_goes_offline_after_the_configured_time() {
    let now = read_clock();
    let mut session = registered(now);
    let offline_after = SessionConfig::default().offline_after;
    session.handle_timeout(now.after(offline_after - Duration::from_secs(1)));
    assert!(drain(&mut session).is_empty());
    session.handle_timeout(now.after(offline_after));
    assert!(matches!(
        drain(&mut session)[0],
        Output::Persist {
            op: StoreOp::NodeOffline { .. },
            ..
        }
    ));
}

#[test]
fn a_flood_past_the_burst_is_closed_with_1008() {
    let now = read_clock();
    let mut session = registered(now);
    let burst = SessionConfig::default().rate_burst as usize;
    for i in 0..=burst {
        session.handle_input(now, Input::Text(format!("not json {i}")));
    }
    let outputs = drain(&mut session);
    assert!(
        matches!(outputs.last(), Some(Output::Close { code: 1008, .. })),
        "{:?}",
        outputs.last()
    );
    assert!(session.is_closed());
}

#[test]
fn a_result_for_an_unknown_command_is_received_false() {
    let now = read_clock();
    let mut session = registered(now);
    let result = json!({"command_id": "nope", "exit_code": 0, "stdout": "", "stderr": "", "execution_time_ms": 1});
    session.handle_input(now, frame("command_result", "c-1", result));
    let writes = drain(&mut session);
    let reply = &sent(&commit_all(
        &mut session,
        now,
        &writes,
        Err(StoreFailure::UnknownCommand),
    ))[0];
    assert_eq!(
        (reply["type"].as_str(), reply["data"]["received"].as_bool()),
        (Some("command_received"), Some(false))
    );
}

#[test]
fn the_ack_fresh_id_fault_changes_the_ack_id() {
    let now = read_clock();
    let mut session = registered_with(now, &[Fault::NodemgrAckFreshId]);
    session.handle_input(now, heartbeat("h-1"));
    let writes = drain(&mut session);
    let ack = &sent(&commit_all(&mut session, now, &writes, Ok(())))[0];
    assert_ne!(ack["id"], "h-1");
}
