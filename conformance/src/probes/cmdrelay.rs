//! Grades a cmdrelay client: the suite plays the server through one scripted session (answer
//! init, a Heartbeat, an unknown cmd, then an execute for a device, or a relayed result for a
//! controller, and a close to see it reconnect).
//!
//! The role is told by what the client does after its init is answered: a client that sends
//! `execute` within a short window is a controller; one that waits is a device. The cases of
//! the other role are reported as informational.

use super::{accept, bind, spec, ProbeSession, Results};
pub use super::{ProbeConfig, ProbeError};
use crate::case::{CaseResult, Failure, Level, Outcome, Source};
use crate::check::{compact, ensure};
use crate::client::{Event, WsClient};
use crate::report::{CaseSpec, Report};
use serde_json::{json, Value};
use std::time::Duration;
use tokio::net::TcpListener;

use Level::{Must, Should};
use Source::{Documented, Inferred};

/// How long a client may take to act on its own before it is taken for a device.
const CONTROLLER_WINDOW: Duration = Duration::from_millis(1500);

/// The client cases, in the order the session reaches them.
pub const CASES: &[CaseSpec] = &[
    spec(
        "cmdrelay-client/init/first-message",
        Must,
        Documented("003 §初始化消息: 客户端在连接建立后发送的第一条消息"),
        "nothing: the client connects",
        "the first message is init",
    ),
    spec(
        "cmdrelay-client/init/token-string",
        Must,
        Documented("003 §初始化消息: token"),
        "nothing",
        "init carries a non-empty string token",
    ),
    spec(
        "cmdrelay-client/messages/well-formed",
        Must,
        Documented("003 §消息格式: 所有消息均采用 JSON 格式"),
        "nothing",
        "every frame is a JSON object with a string cmd",
    ),
    spec(
        "cmdrelay-client/heartbeat/not-answered",
        Should,
        Inferred("C6: clients do not answer heartbeats"),
        "a Heartbeat",
        "no message in reply to the Heartbeat",
    ),
    spec(
        "cmdrelay-client/robustness/survives-unknown-cmd",
        Should,
        Inferred("C4: unknown messages are not fatal"),
        "a message with an unknown cmd",
        "the client stays connected and goes on",
    ),
    spec(
        "cmdrelay-client/device/answers-execute",
        Must,
        Documented("003 §执行结果消息 (execute_result)"),
        "execute `echo <nonce>`",
        "an execute_result",
    ),
    spec(
        "cmdrelay-client/device/result-has-data",
        Must,
        Documented("003 §执行结果消息: extra 包含执行结果的具体数据"),
        "execute",
        "execute_result.extra is an object with a string data",
    ),
    spec(
        "cmdrelay-client/device/result-echoes-id",
        Should,
        Inferred("C7: a device copies extra.id into its result"),
        "execute with extra.id",
        "execute_result.extra.id equals it",
    ),
    spec(
        "cmdrelay-client/controller/execute-has-command",
        Must,
        Documented("003 §执行命令消息: extra 包含执行命令的具体内容"),
        "nothing: the controller acts",
        "execute.extra is an object with a string command",
    ),
    spec(
        "cmdrelay-client/reconnect/after-close",
        Should,
        Inferred("C7: a client whose connection ends comes back"),
        "a close 1001",
        "the client connects again",
    ),
];

pub async fn run_probe(config: &ProbeConfig) -> Result<Report, ProbeError> {
    run_probe_on(bind(config).await?, config).await
}

/// The probe on a listener the caller bound (tests start the client in-process).
pub async fn run_probe_on(
    listener: TcpListener,
    config: &ProbeConfig,
) -> Result<Report, ProbeError> {
    let session = ProbeSession::start(&listener, config, "/websocket", "cmdrelay server")?;
    let mut results = Results::default();
    let stop = drive(&listener, config.wait, &session, &mut results).await;
    Ok(session.report("cmdrelay-client", CASES, results, stop, config))
}

/// Every frame the client sent, for the well-formedness case.
struct Seen(Vec<Event>);

impl Seen {
    fn well_formed(&self) -> Result<(), Failure> {
        for event in &self.0 {
            let ok = matches!(event, Event::Json(v) if v["cmd"].is_string());
            ensure(ok, "a JSON object with a string cmd", event.describe())?;
        }
        Ok(())
    }
}

async fn next_frame(ws: &mut WsClient, wait: Duration, seen: &mut Seen) -> Event {
    let event = ws.next_event_within(wait).await;
    if matches!(event, Event::Json(_) | Event::Text(_) | Event::Binary(_)) {
        seen.0.push(event.clone());
    }
    event
}

fn send_error(e: Failure) -> String {
    e.to_string()
}

async fn drive(
    listener: &TcpListener,
    wait: Duration,
    session: &ProbeSession,
    results: &mut Results,
) -> Result<(), String> {
    let (mut ws, _) = accept(listener, wait, &session.transcript, "server").await?;
    let mut seen = Seen(Vec::new());
    let init = match next_frame(&mut ws, wait, &mut seen).await {
        Event::Json(init) => init,
        other => {
            return Err(format!(
                "the client sent {} instead of init",
                other.describe()
            ))
        }
    };
    results.check(
        CASES[0].id,
        ensure(init["cmd"] == "init", "cmd init", compact(&init)),
    );
    let token_ok = init["token"].as_str().is_some_and(|t| !t.is_empty());
    results.check(
        CASES[1].id,
        ensure(token_ok, "a non-empty string token", compact(&init)),
    );
    let accepted = json!({ "cmd": "init", "code": "1", "session_id": uuid::Uuid::new_v4().to_string(), "extra": {} });
    ws.send_json(&accepted).await.map_err(send_error)?;
    ws.send_json(&json!({ "cmd": "Heartbeat", "code": "1", "extra": {} }))
        .await
        .map_err(send_error)?;
    ws.send_json(&json!({ "cmd": "conformance_unknown", "code": "1", "extra": {} }))
        .await
        .map_err(send_error)?;
    let first = next_frame(&mut ws, CONTROLLER_WINDOW, &mut seen).await;
    let unanswered = match &first {
        Event::Json(m) if m["cmd"] == "Heartbeat" || m["cmd"] == "heartbeat" => {
            Err(Failure::mismatch("no reply to the Heartbeat", compact(m)))
        }
        _ => Ok(()),
    };
    results.check(CASES[3].id, unanswered);
    match first {
        Event::Json(message) if message["cmd"] == "execute" => {
            controller(&mut ws, &message, results).await?
        }
        Event::Silence(_) | Event::Json(_) => device(&mut ws, wait, &mut seen, results).await?,
        other => return Err(format!("the client sent {}", other.describe())),
    }
    results.set(CASES[4].id, Ok(Outcome::Pass));
    results.check(CASES[2].id, seen.well_formed());
    ws.close_with(1001, "conformance probe: reconnect test")
        .await;
    let reconnected = accept(listener, wait, &session.transcript, "server")
        .await
        .map(|_| ());
    results.check(
        CASES[9].id,
        reconnected.map_err(|why| Failure::mismatch("a new connection", why)),
    );
    Ok(())
}

fn not_this_role(role: &str) -> CaseResult {
    Ok(Outcome::Informational(format!(
        "the client acts as a {role}"
    )))
}

async fn device(
    ws: &mut WsClient,
    wait: Duration,
    seen: &mut Seen,
    results: &mut Results,
) -> Result<(), String> {
    results.set(CASES[8].id, not_this_role("device"));
    let nonce = format!("probe-{}", uuid::Uuid::new_v4().simple());
    let execute =
        json!({ "cmd": "execute", "extra": { "command": format!("echo {nonce}"), "id": nonce } });
    ws.send_json(&execute).await.map_err(send_error)?;
    let result = loop {
        match next_frame(ws, wait, seen).await {
            Event::Json(m) if m["cmd"] == "execute_result" => break m,
            Event::Json(_) => continue,
            other => {
                results.set(
                    CASES[5].id,
                    Err(Failure::mismatch("an execute_result", other.describe())),
                );
                return Err(format!("no execute_result: {}", other.describe()));
            }
        }
    };
    results.set(CASES[5].id, Ok(Outcome::Pass));
    let has_data = result["extra"]["data"].is_string();
    results.check(
        CASES[6].id,
        ensure(has_data, "extra.data a string", compact(&result)),
    );
    let echoed = result["extra"]["id"] == nonce.as_str();
    results.check(
        CASES[7].id,
        ensure(echoed, format!("extra.id {nonce:?}"), compact(&result)),
    );
    Ok(())
}

async fn controller(
    ws: &mut WsClient,
    execute: &Value,
    results: &mut Results,
) -> Result<(), String> {
    for case in &CASES[5..8] {
        results.set(case.id, not_this_role("controller"));
    }
    let has_command = execute["extra"]["command"].is_string();
    results.check(
        CASES[8].id,
        ensure(has_command, "extra.command a string", compact(execute)),
    );
    // Play the device's side of the room: relay a result back.
    let result = json!({ "cmd": "execute_result", "extra": { "data": "conformance probe", "id": execute["extra"]["id"] } });
    ws.send_json(&result).await.map_err(send_error)
}
