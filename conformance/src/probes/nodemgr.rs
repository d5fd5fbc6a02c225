//! Grades a nodemgr node agent: the suite plays the core through one scripted session
//! (welcome, register, heartbeat, a command, a close to see it reconnect).

use crate::case::{CaseResult, Failure, Level, Outcome, Source};
use crate::check::{compact, ensure, ensure_eq, is_uuid_v4, str_at, timestamp_form, TimestampForm};
use crate::client::{Event, Transcript, WsClient};
use crate::report::{CaseReport, CaseSpec, Report};
use crate::runner::{apply_expectations, grade, RunOptions};
use crate::wire::nodemgr as wire;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::process::{Child, Command};
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::MaybeTlsStream;

#[derive(Debug, Clone)]
pub struct ProbeConfig {
    pub listen: String,
    /// The client to start; `{url}` is replaced by the suite's ws:// URL. Empty: wait for one.
    pub command: Vec<String>,
    /// How long to wait for a connection and for each of the client's messages.
    pub wait: Duration,
    pub options: RunOptions,
}

#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("cannot listen on {0}: {1}")]
    Listen(String, std::io::Error),
    #[error("cannot start the client `{0}`: {1}")]
    Spawn(String, std::io::Error),
}

const fn spec(
    id: &'static str,
    level: Level,
    source: Source,
    sends: &'static str,
    requires: &'static str,
) -> CaseSpec {
    CaseSpec {
        id,
        level,
        source,
        sends,
        requires,
    }
}

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

/// Results as the session reaches them; anything unreached fails with the reason it stopped.
#[derive(Default)]
struct Results(HashMap<&'static str, CaseResult>);

impl Results {
    fn set(&mut self, id: &'static str, result: CaseResult) {
        self.0.entry(id).or_insert(result);
    }

    fn check(&mut self, id: &'static str, result: Result<(), Failure>) {
        self.set(id, result.map(|()| Outcome::Pass));
    }
}

pub async fn run_probe(config: &ProbeConfig) -> Result<Report, ProbeError> {
    let listener = TcpListener::bind(&config.listen)
        .await
        .map_err(|e| ProbeError::Listen(config.listen.clone(), e))?;
    run_probe_on(listener, config).await
}

/// The probe on a listener the caller bound (tests start the client in-process).
pub async fn run_probe_on(
    listener: TcpListener,
    config: &ProbeConfig,
) -> Result<Report, ProbeError> {
    let addr = listener
        .local_addr()
        .map_err(|e| ProbeError::Listen(config.listen.clone(), e))?;
    let url = format!("ws://{addr}/api/v1/ws");
    let _child = start_client(&config.command, &url)?;
    let shown = if config.command.is_empty() {
        url.clone()
    } else {
        config.command.join(" ")
    };
    eprintln!("playing the nodemgr core at {url}; waiting for {shown}");
    let started = Instant::now();
    let started_at = chrono::Utc::now();
    let transcript = Transcript::default();
    let mut results = Results::default();
    let stop = drive(&listener, config.wait, &transcript, &mut results).await;
    let reports = CASES
        .iter()
        .map(|spec| {
            let result = results.0.remove(spec.id).unwrap_or_else(|| {
                let why = stop
                    .as_ref()
                    .err()
                    .cloned()
                    .unwrap_or_else(|| "the session ended".to_owned());
                Err(Failure::mismatch(
                    spec.requires,
                    format!("not reached: {why}"),
                ))
            });
            let verdict = grade(spec.level, spec.requires, result, config.options.strict);
            let verdict = apply_expectations(verdict, config.options.expectations.reason(spec.id));
            CaseReport::from_spec(spec, verdict, Duration::ZERO, transcript.lines())
        })
        .collect();
    Ok(Report::new(
        "nodemgr-client",
        &format!("client {shown}"),
        config.options.strict,
        started_at,
        started.elapsed(),
        reports,
    ))
}

fn start_client(command: &[String], url: &str) -> Result<Option<Child>, ProbeError> {
    let Some((program, args)) = command.split_first() else {
        return Ok(None);
    };
    let args: Vec<String> = args.iter().map(|a| a.replace("{url}", url)).collect();
    Command::new(program)
        .args(&args)
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .map(Some)
        .map_err(|e| ProbeError::Spawn(command.join(" "), e))
}

/// Accepts one connection, returning the client and its request URI.
async fn accept(
    listener: &TcpListener,
    wait: Duration,
    transcript: &Transcript,
) -> Result<(WsClient, String), String> {
    let (tcp, _) = tokio::time::timeout(wait, listener.accept())
        .await
        .map_err(|_| format!("no client connected within {} s", wait.as_secs()))?
        .map_err(|e| e.to_string())?;
    let mut uri = String::new();
    #[allow(
        clippy::result_large_err,
        reason = "the callback type is tungstenite's"
    )]
    let callback = |request: &Request, response: Response| {
        uri = request.uri().to_string();
        Ok(response)
    };
    let stream = tokio_tungstenite::accept_hdr_async(MaybeTlsStream::Plain(tcp), callback)
        .await
        .map_err(|e| format!("WebSocket handshake failed: {e}"))?;
    transcript.record("core", "⇠", &format!("connection to {uri}"));
    Ok((WsClient::accepted("client", stream, transcript, wait), uri))
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
    let (mut ws, uri) = accept(listener, wait, transcript).await?;
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
    let reconnected = accept(listener, wait, transcript).await.map(|_| ());
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
