//! Grades a nodemgr node agent: the suite plays the core through one scripted session
//! (welcome, register, heartbeat, a command, a close to see it reconnect).

use super::{accept, bind, spec, ProbeSession, Results};
pub use super::{ProbeConfig, ProbeError};
use crate::case::{CaseResult, Failure, Level, Outcome, Source};
use crate::check::{compact, ensure, ensure_eq, is_uuid_v4, str_at, timestamp_form, TimestampForm};
use crate::client::{Event, Transcript, WsClient};
use crate::report::{CaseSpec, Report};
use crate::wire::nodemgr as wire;
use serde_json::{json, Value};
use std::time::Duration;
use tokio::net::TcpListener;

use Level::{Must, Should};
use Source::{Documented, Inferred};

/// The client cases, in the order the session reaches them.
pub const CASES: &[CaseSpec] = &[
    spec("nodemgr-client/connection/presents-token", Must, Documented("001 §连接方式 token"), "nothing: the client connects", "the URL has a non-empty token"),
    spec("nodemgr-client/register/first-after-welcome", Must, Documented("001 §节点注册流程"), "a welcome", "the next message is node_register"),
    spec("nodemgr-client/register/fields", Should, Documented("001 §1 节点注册 请求示例"), "a welcome", "node_register.data has node_id, hostname, ip_address and os_info strings"),
    spec("nodemgr-client/envelope/well-formed", Must, Documented("001 §消息格式"), "nothing", "every message has string type, id, timestamp and an object data"),
    spec("nodemgr-client/envelope/timestamps-rfc3339", Must, Documented("001 §最佳实践 2"), "nothing", "every timestamp is RFC 3339"),
    spec("nodemgr-client/envelope/ids-uuid-v4", Should, Documented("001 §最佳实践 1"), "nothing", "request ids are UUID v4"),
    spec("nodemgr-client/heartbeat/sent-with-metrics", Must, Documented("001 §2 心跳与监控数据"), "register_response", "a heartbeat with node_id and the four numeric metrics"),
    spec("nodemgr-client/heartbeat/metrics-in-range", Should, Inferred("usage figures are percentages"), "register_response", "cpu, memory and disk usage within 0..=100, load_average >= 0"),
    spec("nodemgr-client/robustness/survives-unknown-type", Should, Inferred("C5: unknown types are answered, not fatal"), "a message of an unknown type", "the client stays connected and goes on"),
    spec("nodemgr-client/command/started-echoes-execute-id", Must, Documented("001 §3 命令开始响应"), "execute_command", "command_started with the execute_command's id and command_id"),
    spec("nodemgr-client/command/result-reported", Must, Documented("001 §3 命令结果"), "execute_command", "command_result with command_id, integer exit_code, stdout, stderr and execution_time_ms, under a new id"),
    spec("nodemgr-client/command/output-captured", Should, Documented("001 §3 命令结果 stdout"), "execute_command `echo <nonce>`", "stdout holds the nonce and exit_code is 0 (a client that refuses to run commands: informational)"),
    spec("nodemgr-client/reconnect/after-close", Should, Documented("001 §最佳实践 4 重试机制"), "a close 1001", "the client connects again"),
];

pub async fn run_probe(config: &ProbeConfig) -> Result<Report, ProbeError> {
    run_probe_on(bind(config).await?, config).await
}

/// The probe on a listener the caller bound (tests start the client in-process).
pub async fn run_probe_on(
    listener: TcpListener,
    config: &ProbeConfig,
) -> Result<Report, ProbeError> {
    let session = ProbeSession::start(&listener, config, "/api/v1/ws", "nodemgr core")?;
    let mut results = Results::default();
    let stop = drive(&listener, config.wait, &session.transcript, &mut results).await;
    Ok(session.report("nodemgr-client", CASES, results, stop, config))
}

fn query_param(uri: &str, name: &str) -> Option<String> {
    let query = uri.split_once('?')?.1;
    query
        .split('&')
        .find_map(|pair| pair.strip_prefix(&format!("{name}=")).map(str::to_owned))
}

/// The scripted session. `Err` says where and why it stopped.
async fn drive(
    listener: &TcpListener,
    wait: Duration,
    transcript: &Transcript,
    results: &mut Results,
) -> Result<(), String> {
    let (mut ws, uri) = accept(listener, wait, transcript, "core").await?;
    let token = query_param(&uri, "token").unwrap_or_default();
    results.check(
        CASES[0].id,
        ensure(!token.is_empty(), "a token query parameter", &uri),
    );
    let node_id = query_param(&uri, "node_id").unwrap_or_else(wire::fresh_id);
    let welcome = wire::envelope(
        "welcome",
        &wire::fresh_id(),
        json!({ "message": "conformance probe", "node_id": node_id }),
    );
    ws.send_json(&welcome).await.map_err(|e| e.to_string())?;
    let mut seen = Vec::new();
    let register = next_message(&mut ws, &mut seen).await?;
    results.check(
        CASES[1].id,
        ensure_eq(
            "message type",
            "node_register",
            register["type"].as_str().unwrap_or_default(),
        ),
    );
    results.check(CASES[2].id, register_fields(&register));
    let reply = json!({ "success": true, "message": "节点注册成功", "node_id": node_id });
    ws.send_json(&wire::envelope(
        "register_response",
        register["id"].as_str().unwrap_or_default(),
        reply,
    ))
    .await
    .map_err(|e| e.to_string())?;
    ws.send_json(&wire::envelope(
        "conformance_unknown_type",
        &wire::fresh_id(),
        json!({}),
    ))
    .await
    .map_err(|e| e.to_string())?;
    let heartbeat = next_of_type(&mut ws, "heartbeat", &mut seen).await?;
    results.check(CASES[6].id, heartbeat_metrics(&heartbeat));
    results.check(CASES[7].id, metrics_in_range(&heartbeat));
    run_command(&mut ws, &node_id, &mut seen, results).await?;
    results.set(CASES[8].id, Ok(Outcome::Pass));
    grade_envelopes(&seen, results);
    ws.close_with(1001, "conformance probe: reconnect test")
        .await;
    let reconnected = accept(listener, wait, transcript, "core").await.map(|_| ());
    results.check(
        CASES[12].id,
        reconnected.map_err(|why| Failure::mismatch("a new connection", why)),
    );
    Ok(())
}

/// The next JSON message; a heartbeat in passing is acknowledged and kept.
async fn next_message(ws: &mut WsClient, seen: &mut Vec<Value>) -> Result<Value, String> {
    match ws.next_event().await {
        Event::Json(value) => {
            seen.push(value.clone());
            Ok(value)
        }
        other => Err(format!("the client sent {}", other.describe())),
    }
}

async fn next_of_type(
    ws: &mut WsClient,
    kind: &str,
    seen: &mut Vec<Value>,
) -> Result<Value, String> {
    loop {
        let message = next_message(ws, seen).await?;
        if message["type"] == kind {
            return Ok(message);
        }
        if message["type"] == "heartbeat" {
            let data = json!({ "received": true, "node_id": message["data"]["node_id"] });
            ws.send_json(&wire::envelope(
                "heartbeat_ack",
                message["id"].as_str().unwrap_or_default(),
                data,
            ))
            .await
            .map_err(|e| e.to_string())?;
        }
    }
}

async fn run_command(
    ws: &mut WsClient,
    node_id: &str,
    seen: &mut Vec<Value>,
    results: &mut Results,
) -> Result<(), String> {
    let nonce = format!("probe-{}", &wire::fresh_id()[..8]);
    let (execute_id, command_id) = (wire::fresh_id(), format!("cmd-{nonce}"));
    let data =
        json!({ "command_id": command_id, "command_text": format!("echo {nonce}"), "timeout": 10 });
    ws.send_json(&wire::envelope("execute_command", &execute_id, data))
        .await
        .map_err(|e| e.to_string())?;
    let result = next_of_type(ws, "command_result", seen).await?;
    let started = seen
        .iter()
        .find(|m| m["type"] == "command_started")
        .cloned();
    let output = output_captured(&result, &nonce);
    let refused = matches!(output, Ok(Outcome::Informational(_)));
    let start = match (started, refused) {
        // C8: a client that refuses to run commands never starts them.
        (None, true) => Ok(Outcome::Informational(
            "no command_started: the client refused the command".to_owned(),
        )),
        (started, _) => {
            started_echoes(started.as_ref(), &execute_id, &command_id).map(|()| Outcome::Pass)
        }
    };
    results.set(CASES[9].id, start);
    results.check(
        CASES[10].id,
        result_fields(&result, &command_id, &execute_id),
    );
    results.set(CASES[11].id, output);
    let ack = json!({ "received": true, "node_id": node_id });
    ws.send_json(&wire::envelope(
        "command_received",
        result["id"].as_str().unwrap_or_default(),
        ack,
    ))
    .await
    .map_err(|e| e.to_string())
}

fn register_fields(register: &Value) -> Result<(), Failure> {
    for field in ["node_id", "hostname", "ip_address", "os_info"] {
        str_at(register, &format!("/data/{field}"))?;
    }
    Ok(())
}

fn heartbeat_metrics(heartbeat: &Value) -> Result<(), Failure> {
    str_at(heartbeat, "/data/node_id")?;
    for metric in ["cpu_usage", "memory_usage", "disk_usage", "load_average"] {
        crate::check::f64_at(heartbeat, &format!("/data/metrics/{metric}"))?;
    }
    Ok(())
}

fn metrics_in_range(heartbeat: &Value) -> Result<(), Failure> {
    let m = &heartbeat["data"]["metrics"];
    let pct = |k: &str| m[k].as_f64().is_some_and(|v| (0.0..=100.0).contains(&v));
    let ok = pct("cpu_usage")
        && pct("memory_usage")
        && pct("disk_usage")
        && m["load_average"].as_f64().is_some_and(|v| v >= 0.0);
    ensure(
        ok,
        "percentages within 0..=100 and a non-negative load",
        compact(m),
    )
}

fn started_echoes(
    started: Option<&Value>,
    execute_id: &str,
    command_id: &str,
) -> Result<(), Failure> {
    let started = started
        .ok_or_else(|| Failure::mismatch("command_started before command_result", "none"))?;
    ensure_eq("command_started.id", execute_id, str_at(started, "/id")?)?;
    ensure_eq(
        "command_started.data.command_id",
        command_id,
        str_at(started, "/data/command_id")?,
    )
}

fn result_fields(result: &Value, command_id: &str, execute_id: &str) -> Result<(), Failure> {
    ensure_eq(
        "command_result.data.command_id",
        command_id,
        str_at(result, "/data/command_id")?,
    )?;
    let data = &result["data"];
    let typed = data["exit_code"].is_i64()
        && data["stdout"].is_string()
        && data["stderr"].is_string()
        && data["execution_time_ms"].is_u64();
    ensure(
        typed,
        "integer exit_code, string stdout and stderr, integer execution_time_ms",
        compact(data),
    )?;
    ensure(
        str_at(result, "/id")? != execute_id,
        "a new id for command_result",
        compact(result),
    )
}

fn output_captured(result: &Value, nonce: &str) -> CaseResult {
    let data = &result["data"];
    let stdout = data["stdout"].as_str().unwrap_or_default();
    if stdout.contains(nonce) && data["exit_code"] == 0 {
        return Ok(Outcome::Pass);
    }
    if data["exit_code"] != 0 && !data["stderr"].as_str().unwrap_or_default().is_empty() {
        return Ok(Outcome::Informational(format!(
            "the client did not run the command: {}",
            compact(data)
        )));
    }
    Err(Failure::mismatch(
        format!("stdout containing {nonce} and exit_code 0"),
        compact(data),
    ))
}

fn grade_envelopes(seen: &[Value], results: &mut Results) {
    let well_formed = seen.iter().try_for_each(|m| {
        let ok =
            ["type", "id", "timestamp"].iter().all(|f| m[f].is_string()) && m["data"].is_object();
        ensure(
            ok,
            "string type, id, timestamp and an object data",
            compact(m),
        )
    });
    results.check(CASES[3].id, well_formed);
    let stamps = seen.iter().try_for_each(|m| {
        let form = timestamp_form(m["timestamp"].as_str().unwrap_or_default());
        ensure(
            form == TimestampForm::Rfc3339,
            "an RFC 3339 timestamp",
            compact(m),
        )
    });
    results.check(CASES[4].id, stamps);
    let requests = seen.iter().filter(|m| m["type"] != "command_started");
    let ids = requests.clone().try_for_each(|m| {
        ensure(
            is_uuid_v4(m["id"].as_str().unwrap_or_default()),
            "a UUID v4 id",
            compact(m),
        )
    });
    results.check(CASES[5].id, ids);
}
