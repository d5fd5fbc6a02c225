//! Per-message CPU cost of the nodemgr core: decoding a heartbeat, and a whole
//! heartbeat → persist → ack step through the session.

use criterion::{criterion_group, criterion_main, Criterion};
use reference_server::protocol::nodemgr::{
    decode_node_frame, ConnectParams, Input, Output, Session, SessionConfig,
};
use reference_server::protocol::Now;
use reference_server::transport::read_clock;
use std::hint::black_box;

const HEARTBEAT: &str = r#"{"type":"heartbeat","id":"223e4567-e89b-12d3-a456-426614174001","timestamp":"2025-01-21T10:00:30Z","data":{"node_id":"node-001","status":"online","metrics":{"cpu_usage":45.2,"memory_usage":68.5,"disk_usage":34.1,"load_average":1.23}}}"#;

fn registered_session(now: Now) -> Session {
    let params = ConnectParams {
        token: Some("default-token".into()),
        node_id: Some("node-001".into()),
        generated_node_id: String::new(),
    };
    // A rate limit that the benchmark loop cannot reach.
    let config = SessionConfig {
        rate_per_sec: 1e12,
        rate_burst: 1e12,
        ..SessionConfig::default()
    };
    let mut session = Session::open(now, params, config);
    session.handle_input(
        now,
        Input::Text(
            r#"{"type":"node_register","id":"r","timestamp":"2025-01-21T10:00:00Z","data":{}}"#
                .into(),
        ),
    );
    commit_all(&mut session, now);
    session
}

fn commit_all(session: &mut Session, now: Now) -> usize {
    let mut sent = 0;
    while let Some(output) = session.poll_output() {
        match output {
            Output::Persist { ticket, .. } => session.handle_input(
                now,
                Input::Persisted {
                    ticket,
                    result: Ok(()),
                },
            ),
            Output::Send(envelope) => sent += black_box(envelope.encode()).len(),
            _ => {}
        }
    }
    sent
}

fn benches(c: &mut Criterion) {
    c.bench_function("nodemgr/decode_heartbeat", |b| {
        b.iter(|| decode_node_frame(black_box(HEARTBEAT)))
    });
    let now = read_clock();
    let mut session = registered_session(now);
    c.bench_function("nodemgr/session_heartbeat_to_ack", |b| {
        b.iter(|| {
            session.handle_input(now, Input::Text(HEARTBEAT.to_owned()));
            commit_all(&mut session, now)
        })
    });
}

criterion_group!(nodemgr, benches);
criterion_main!(nodemgr);
