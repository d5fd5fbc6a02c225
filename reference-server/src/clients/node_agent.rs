//! The reference node agent: registers, heartbeats with host metrics, runs commands when
//! allowed, and reconnects with backoff (seed 001 §完整通信流程示例).

use super::reconnect::{with_backoff, Next};
use super::sysinfo::{self, MetricsReader};
use crate::protocol::nodemgr::Envelope;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use tokio::process::Command;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::MaybeTlsStream;

/// Most bytes of stdout and of stderr reported per command.
pub const MAX_OUTPUT_BYTES: usize = 32 * 1024;
/// Exit code reported when the agent killed a command at its timeout (as `timeout(1)` does).
pub const EXIT_TIMED_OUT: i64 = 124;
/// Exit code reported when command execution is disabled (as a shell does for "cannot execute").
pub const EXIT_NOT_ALLOWED: i64 = 126;

#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// The WebSocket URL without query, e.g. `ws://127.0.0.1:9999/api/v1/ws`.
    pub url: String,
    pub token: String,
    pub node_id: Option<String>,
    pub heartbeat_interval: Duration,
    pub allow_commands: bool,
    pub max_backoff: Duration,
    /// Stop after this many connection attempts in a row fail (None: never).
    pub max_attempts: Option<u32>,
}

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("could not connect to {url}: {source}")]
    Connect {
        url: String,
        source: tokio_tungstenite::tungstenite::Error,
    },
    #[error("the core closed the connection: {0}")]
    Closed(String),
    #[error("the core rejected the agent: {0}")]
    Rejected(String),
    #[error("no welcome within 10 s")]
    NoWelcome,
    #[error("gave up after {0} failed connection attempts")]
    GaveUp(u32),
    #[error(transparent)]
    Ws(#[from] tokio_tungstenite::tungstenite::Error),
}

type Socket = tokio_tungstenite::WebSocketStream<MaybeTlsStream<tokio::net::TcpStream>>;

/// Runs the agent until `max_attempts` consecutive failures, reconnecting with backoff.
pub async fn run(config: AgentConfig) -> Result<(), AgentError> {
    let failures = with_backoff(config.max_backoff, config.max_attempts, || async {
        match run_once(&config).await {
            Ok(()) => tracing::info!("connection closed by the core"),
            Err(error) => tracing::warn!(%error, "connection failed"),
        }
        Next::<()>::Retry
    })
    .await;
    Err(AgentError::GaveUp(failures.err().unwrap_or_default()))
}

fn connect_url(config: &AgentConfig) -> String {
    let mut url = format!("{}?token={}", config.url, config.token);
    if let Some(node_id) = &config.node_id {
        url.push_str(&format!("&node_id={node_id}"));
    }
    url
}

/// A node's frame, its keys in the document's order.
fn envelope(kind: &'static str, id: &str, data: Value) -> Message {
    Message::text(Envelope::new(kind, id, chrono::Utc::now(), data).encode())
}

fn fresh_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// One connection: welcome, register, then heartbeats and commands until it closes.
pub async fn run_once(config: &AgentConfig) -> Result<(), AgentError> {
    let url = connect_url(config);
    let (mut socket, _) = tokio_tungstenite::connect_async(&url)
        .await
        .map_err(|source| AgentError::Connect {
            url: config.url.clone(),
            source,
        })?;
    let node_id = await_welcome(&mut socket).await?;
    let register = json!({
        "node_id": node_id,
        "hostname": sysinfo::hostname(),
        "ip_address": local_ip(&socket),
        "os_info": sysinfo::os_info(),
    });
    socket
        .send(envelope("node_register", &fresh_id(), register))
        .await?;
    tracing::info!(%node_id, "registered");
    serve(config, socket, &node_id).await
}

fn local_ip(socket: &Socket) -> String {
    match socket.get_ref() {
        MaybeTlsStream::Plain(tcp) => tcp
            .local_addr()
            .map(|a| a.ip().to_string())
            .unwrap_or_default(),
        _ => String::new(),
    }
}

async fn await_welcome(socket: &mut Socket) -> Result<String, AgentError> {
    let first = tokio::time::timeout(Duration::from_secs(10), socket.next())
        .await
        .map_err(|_| AgentError::NoWelcome)?;
    let Some(Ok(Message::Text(text))) = first else {
        return Err(AgentError::Closed(format!("{first:?}")));
    };
    let value: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    match value["type"].as_str() {
        Some("welcome") => Ok(value["data"]["node_id"]
            .as_str()
            .unwrap_or_default()
            .to_owned()),
        _ => Err(AgentError::Rejected(text.to_string())),
    }
}

async fn serve(config: &AgentConfig, mut socket: Socket, node_id: &str) -> Result<(), AgentError> {
    let mut metrics = MetricsReader::default();
    let mut ticker = tokio::time::interval(config.heartbeat_interval);
    let (outbox_tx, mut outbox) = mpsc::channel::<Message>(64);
    loop {
        tokio::select! {
            _ = ticker.tick() => {
                let data = json!({ "node_id": node_id, "status": "online", "metrics": metrics.read() });
                socket.send(envelope("heartbeat", &fresh_id(), data)).await?;
            }
            Some(message) = outbox.recv() => socket.send(message).await?,
            frame = socket.next() => match frame {
                Some(Ok(Message::Text(text))) => on_core_message(config, &text, &outbox_tx),
                Some(Ok(Message::Close(frame))) => return Err(AgentError::Closed(format!("{frame:?}"))),
                Some(Ok(_)) => {}
                Some(Err(error)) => return Err(error.into()),
                None => return Ok(()),
            },
        }
    }
}

fn on_core_message(config: &AgentConfig, text: &str, outbox: &mpsc::Sender<Message>) {
    let Ok(value) = serde_json::from_str::<Value>(text) else {
        tracing::warn!(%text, "the core sent something that is not JSON");
        return;
    };
    match value["type"].as_str() {
        Some("execute_command") => {
            let order = CommandOrder::from_envelope(&value);
            tokio::spawn(execute(order, config.allow_commands, outbox.clone()));
        }
        Some("error") => tracing::warn!(error = %value["data"], "the core reported an error"),
        Some(kind) => tracing::debug!(%kind, "from the core"),
        None => tracing::warn!(%text, "a message without a type"),
    }
}

#[derive(Debug, Clone)]
struct CommandOrder {
    envelope_id: String,
    command_id: String,
    command_text: String,
    timeout: Duration,
}

impl CommandOrder {
    fn from_envelope(value: &Value) -> Self {
        let data = &value["data"];
        Self {
            envelope_id: value["id"].as_str().unwrap_or_default().to_owned(),
            command_id: data["command_id"].as_str().unwrap_or_default().to_owned(),
            command_text: data["command_text"].as_str().unwrap_or_default().to_owned(),
            timeout: Duration::from_secs(data["timeout"].as_u64().unwrap_or(30).max(1)),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Execution {
    pub exit_code: i64,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
}

async fn execute(order: CommandOrder, allowed: bool, outbox: mpsc::Sender<Message>) {
    let execution = if allowed {
        let started = json!({ "command_id": order.command_id });
        let _ = outbox
            .send(envelope("command_started", &order.envelope_id, started))
            .await;
        run_command(&order.command_text, order.timeout).await
    } else {
        Execution {
            exit_code: EXIT_NOT_ALLOWED,
            stdout: String::new(),
            stderr: "command execution is disabled on this agent (start it with --allow-commands)"
                .to_owned(),
            elapsed: Duration::ZERO,
        }
    };
    let result = json!({
        "command_id": order.command_id,
        "exit_code": execution.exit_code,
        "stdout": execution.stdout,
        "stderr": execution.stderr,
        "execution_time_ms": u64::try_from(execution.elapsed.as_millis()).unwrap_or(u64::MAX),
    });
    let _ = outbox
        .send(envelope("command_result", &fresh_id(), result))
        .await;
}

/// Runs `text` with `sh -c`, killing it at `timeout`.
pub async fn run_command(text: &str, timeout: Duration) -> Execution {
    let started = Instant::now();
    let child = Command::new("sh")
        .arg("-c")
        .arg(text)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn();
    let child = match child {
        Ok(child) => child,
        Err(error) => return failed_to_start(error, started),
    };
    match tokio::time::timeout(timeout, child.wait_with_output()).await {
        Ok(Ok(output)) => Execution {
            exit_code: i64::from(output.status.code().unwrap_or(-1)),
            stdout: capped(&output.stdout),
            stderr: capped(&output.stderr),
            elapsed: started.elapsed(),
        },
        Ok(Err(error)) => failed_to_start(error, started),
        Err(_) => Execution {
            exit_code: EXIT_TIMED_OUT,
            stdout: String::new(),
            stderr: format!("killed: no exit within the {} s timeout", timeout.as_secs()),
            elapsed: started.elapsed(),
        },
    }
}

fn failed_to_start(error: std::io::Error, started: Instant) -> Execution {
    Execution {
        exit_code: 127,
        stdout: String::new(),
        stderr: format!("could not run the command: {error}"),
        elapsed: started.elapsed(),
    }
}

fn capped(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(MAX_OUTPUT_BYTES)]).into_owned();
    if bytes.len() > MAX_OUTPUT_BYTES {
        format!("{text}\n[truncated: {} bytes in all]", bytes.len())
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_command_reports_its_output_and_exit_code() {
        let run = run_command("echo out; echo err >&2; exit 3", Duration::from_secs(5)).await;
        assert_eq!(
            (run.exit_code, run.stdout.as_str(), run.stderr.as_str()),
            (3, "out\n", "err\n")
        );
    }

    #[tokio::test]
    async fn a_command_past_its_timeout_is_killed_with_124() {
        let run = run_command("sleep 5", Duration::from_secs(1)).await;
        assert_eq!(run.exit_code, EXIT_TIMED_OUT);
        // Killed, not waited for: the command alone would take 5 s.
        assert!(run.elapsed < Duration::from_secs(5), "{:?}", run.elapsed);
    }

    #[test]
    fn long_output_is_truncated_and_says_so() {
        let text = capped(&vec![b'x'; MAX_OUTPUT_BYTES + 10]);
        assert!(text.ends_with(&format!(
            "[truncated: {} bytes in all]",
            MAX_OUTPUT_BYTES + 10
        )));
    }
}
