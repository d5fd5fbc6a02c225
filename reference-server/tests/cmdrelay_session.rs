//! The cmdrelay session, stepped through time without sleeping or sockets.

use reference_server::faults::{Fault, Faults};
use reference_server::protocol::cmdrelay::{Input, Output, Session, SessionConfig, TokenStatus};
use reference_server::protocol::Now;
use reference_server::transport::read_clock;
use serde_json::{json, Value};
use std::time::Duration;

const PERIOD: Duration = Duration::from_secs(10);

fn config(faults: &[Fault]) -> SessionConfig {
    SessionConfig {
        heartbeat_period: PERIOD,
        faults: faults.iter().copied().collect::<Faults>(),
        ..SessionConfig::default()
    }
}

fn drain(session: &mut Session) -> Vec<Output> {
    std::iter::from_fn(|| session.poll_output()).collect()
}

fn sent(outputs: &[Output]) -> Vec<Value> {
    outputs
        .iter()
        .filter_map(|o| match o {
            Output::Send(text) => serde_json::from_str(text).ok(),
            _ => None,
        })
        .collect()
}

fn text(value: Value) -> Input {
    Input::Text(value.to_string())
}

/// A session that sent init with token `t` and was accepted into a room.
fn joined(now: Now, faults: &[Fault]) -> Session {
    let mut session = Session::open(now, config(faults));
    session.handle_input(now, text(json!({"cmd": "init", "token": "t"})));
    assert_eq!(
        drain(&mut session),
        vec![Output::CheckToken("t".to_owned())]
    );
    session.handle_input(now, Input::TokenChecked(TokenStatus::Valid));
    assert_eq!(
        drain(&mut session),
        vec![Output::Join {
            token: "t".to_owned()
        }]
    );
    session.handle_input(
        now,
        Input::Joined {
            session_id: "s-1".to_owned(),
        },
    );
    let answer = sent(&drain(&mut session));
    assert_eq!(
        answer,
        vec![json!({"cmd": "init", "code": "1", "session_id": "s-1", "extra": {}})]
    );
    session
}

#[test]
fn an_accepted_init_is_answered_with_the_rooms_session_id() {
    joined(read_clock(), &[]);
}

#[test]
fn every_invalid_token_is_refused_with_401_and_a_close() {
    let now = read_clock();
    for status in [
        TokenStatus::Unknown,
        TokenStatus::Expired,
        TokenStatus::Revoked,
    ] {
        let mut session = Session::open(now, config(&[]));
        session.handle_input(now, text(json!({"cmd": "init", "token": "bad"})));
        drain(&mut session);
        session.handle_input(now, Input::TokenChecked(status.clone()));
        let outputs = drain(&mut session);
        assert_eq!(sent(&outputs)[0]["code"], "401", "{status:?}");
        assert!(
            matches!(outputs.last(), Some(Output::Close { code: 1008, .. })),
            "{status:?}"
        );
        assert!(session.is_closed());
    }
}

#[test]
fn an_init_without_a_token_is_refused_without_asking_the_store() {
    let now = read_clock();
    let mut session = Session::open(now, config(&[]));
    session.handle_input(now, text(json!({"cmd": "init"})));
    let outputs = drain(&mut session);
    assert!(!outputs.iter().any(|o| matches!(o, Output::CheckToken(_))));
    assert_eq!(sent(&outputs)[0]["extra"]["error"], "INVALID_TOKEN");
}

#[test]
fn a_failing_token_store_is_503_and_close_1011() {
    let now = read_clock();
    let mut session = Session::open(now, config(&[]));
    session.handle_input(now, text(json!({"cmd": "init", "token": "t"})));
    drain(&mut session);
    session.handle_input(
        now,
        Input::TokenChecked(TokenStatus::StoreFailed("disk".into())),
    );
    let outputs = drain(&mut session);
    assert_eq!(sent(&outputs)[0]["code"], "503");
    assert!(matches!(
        outputs.last(),
        Some(Output::Close { code: 1011, .. })
    ));
}

#[test]
fn heartbeats_come_every_period_after_init_and_not_before() {
    let start = read_clock();
    let mut session = Session::open(start, config(&[]));
    assert_eq!(
        session.poll_timeout(),
        Some(start.mono + Duration::from_secs(10)),
        "only the init deadline"
    );
    let now = start.after(Duration::from_secs(2));
    session.handle_input(now, text(json!({"cmd": "init", "token": "t"})));
    drain(&mut session);
    session.handle_input(now, Input::TokenChecked(TokenStatus::Valid));
    session.handle_input(
        now,
        Input::Joined {
            session_id: "s".into(),
        },
    );
    drain(&mut session);
    assert_eq!(session.poll_timeout(), Some(now.mono + PERIOD));
    for n in 1..=3 {
        let at = now.after(PERIOD * n);
        session.handle_timeout(at);
        let outputs = drain(&mut session);
        assert_eq!(
            sent(&outputs),
            vec![json!({"cmd": "Heartbeat", "code": "1", "extra": {}})]
        );
        assert!(outputs.contains(&Output::Ping));
    }
}

#[test]
fn a_connection_without_init_is_closed_at_the_init_timeout() {
    let now = read_clock();
    let mut session = Session::open(now, config(&[]));
    session.handle_timeout(now.after(Duration::from_secs(9)));
    assert!(drain(&mut session).is_empty());
    session.handle_timeout(now.after(Duration::from_secs(10)));
    assert!(matches!(
        drain(&mut session).as_slice(),
        [Output::Close { code: 1008, .. }]
    ));
}

#[test]
fn a_silent_client_is_dropped_at_the_idle_timeout_and_a_pong_keeps_it() {
    let now = read_clock();
    let mut session = joined(now, &[]);
    session.handle_input(now.after(Duration::from_secs(50)), Input::Heard);
    session.handle_timeout(now.after(Duration::from_secs(61)));
    let outputs = drain(&mut session);
    assert!(
        !outputs.iter().any(|o| matches!(o, Output::Close { .. })),
        "the pong at 50 s counts"
    );
    session.handle_timeout(now.after(Duration::from_secs(111)));
    assert!(drain(&mut session)
        .iter()
        .any(|o| matches!(o, Output::Close { code: 1001, .. })));
}

#[test]
fn check_device_asks_the_room_and_answers_by_its_size() {
    let now = read_clock();
    let mut session = joined(now, &[]);
    for (size, code) in [(1, "0"), (2, "1"), (5, "1")] {
        session.handle_input(now, text(json!({"cmd": "checkDevice"})));
        assert_eq!(drain(&mut session), vec![Output::QueryRoomSize]);
        session.handle_input(now, Input::RoomSize(size));
        assert_eq!(
            sent(&drain(&mut session))[0]["code"],
            code,
            "room of {size}"
        );
    }
}

#[test]
fn execute_and_execute_result_are_relayed_verbatim_and_never_answered() {
    let now = read_clock();
    let mut session = joined(now, &[]);
    for frame in [
        r#"{"cmd":"execute","extra":{"command":"ls"},"id":7}"#,
        r#"{"cmd":"execute_result","extra":{"data":"ok"}}"#,
    ] {
        session.handle_input(now, Input::Text(frame.to_owned()));
        assert_eq!(drain(&mut session), vec![Output::Relay(frame.to_owned())]);
    }
}

#[test]
fn before_init_everything_else_is_refused_and_nothing_is_relayed() {
    let now = read_clock();
    let mut session = Session::open(now, config(&[]));
    for frame in [
        json!({"cmd": "checkDevice"}),
        json!({"cmd": "execute", "extra": {}}),
    ] {
        session.handle_input(now, text(frame));
        let outputs = drain(&mut session);
        assert_eq!(sent(&outputs)[0]["code"], "403");
        assert!(!outputs
            .iter()
            .any(|o| matches!(o, Output::Relay(_) | Output::QueryRoomSize)));
    }
}

#[test]
fn frames_sent_while_the_token_is_checked_are_handled_in_order_after_the_join() {
    let now = read_clock();
    let mut session = Session::open(now, config(&[]));
    session.handle_input(now, text(json!({"cmd": "init", "token": "t"})));
    session.handle_input(
        now,
        text(json!({"cmd": "execute", "extra": {"command": "a"}})),
    );
    session.handle_input(now, text(json!({"cmd": "checkDevice"})));
    drain(&mut session);
    session.handle_input(now, Input::TokenChecked(TokenStatus::Valid));
    session.handle_input(
        now,
        Input::Joined {
            session_id: "s".into(),
        },
    );
    let outputs = drain(&mut session);
    assert!(
        matches!(
            outputs.as_slice(),
            [
                Output::Join { .. },
                Output::Send(_),
                Output::Relay(_),
                Output::QueryRoomSize
            ]
        ),
        "{outputs:?}"
    );
}

#[test]
fn a_second_init_is_409_and_changes_nothing() {
    let now = read_clock();
    let mut session = joined(now, &[]);
    session.handle_input(now, text(json!({"cmd": "init", "token": "other"})));
    let outputs = drain(&mut session);
    assert_eq!(sent(&outputs)[0]["code"], "409");
    assert_eq!(outputs.len(), 1);
    assert!(session.is_joined());
}

#[test]
fn bad_frames_are_answered_and_the_session_goes_on() {
    let now = read_clock();
    let mut session = joined(now, &[]);
    let cases = [
        ("{", "400"),
        (r#"{"cmd":"reboot"}"#, "404"),
        (r#"{"cmd":"execute"}"#, "400"),
    ];
    for (frame, code) in cases {
        session.handle_input(now, Input::Text(frame.to_owned()));
        assert_eq!(sent(&drain(&mut session))[0]["code"], code, "{frame}");
    }
    session.handle_input(now, Input::Binary);
    assert_eq!(sent(&drain(&mut session))[0]["code"], "415");
    assert!(session.is_joined());
}

#[test]
fn a_flood_past_the_burst_is_429_and_a_close() {
    let now = read_clock();
    let mut session = joined(now, &[]);
    let burst = SessionConfig::default().rate_burst as usize;
    let mut closed_after = None;
    for n in 0..burst + 10 {
        session.handle_input(now, text(json!({"cmd": "execute", "extra": {}})));
        let outputs = drain(&mut session);
        if outputs
            .iter()
            .any(|o| matches!(o, Output::Close { code: 1008, .. }))
        {
            assert_eq!(sent(&outputs)[0]["code"], "429");
            closed_after = Some(n);
            break;
        }
    }
    assert_eq!(
        closed_after,
        Some(burst - 1),
        "the init used one token of the burst"
    );
}

#[test]
fn the_rate_refills_with_time() {
    let now = read_clock();
    let mut session = joined(now, &[]);
    let burst = SessionConfig::default().rate_burst as usize;
    for _ in 0..burst - 1 {
        session.handle_input(now, text(json!({"cmd": "execute", "extra": {}})));
    }
    drain(&mut session);
    session.handle_input(
        now.after(Duration::from_secs(1)),
        text(json!({"cmd": "execute", "extra": {}})),
    );
    assert!(matches!(drain(&mut session).as_slice(), [Output::Relay(_)]));
}
