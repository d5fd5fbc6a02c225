//! The reference cmdrelay device: joins the room of its token and answers every `execute`
//! with an `execute_result` from a pluggable [`ExecuteHandler`]. Reconnects with backoff; a
//! refused token stops it (retrying cannot help).

use super::node_agent::run_command;
use super::reconnect::{with_backoff, Next};
use crate::protocol::cmdrelay::codes;
use futures_util::future::BoxFuture;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Map, Value};
use std::sync::Arc;
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

/// Turns the `extra` of an `execute` into the `extra` of its `execute_result`.
pub trait ExecuteHandler: Send + Sync + 'static {
    fn handle(&self, extra: Map<String, Value>) -> BoxFuture<'static, Map<String, Value>>;
}

/// Answers `{"data": <the command>}`: a device that proves the relay works end to end.
#[derive(Debug, Clone, Copy, Default)]
pub struct EchoHandler;

impl ExecuteHandler for EchoHandler {
    fn handle(&self, extra: Map<String, Value>) -> BoxFuture<'static, Map<String, Value>> {
        let command = extra.get("command").cloned().unwrap_or(Value::Null);
        let data = match command {
            Value::String(text) => text,
            other => other.to_string(),
        };
        Box::pin(async move { result_extra(&extra, data, None) })
    }
}

/// Runs `extra.command` with `sh -c` and answers its stdout in `data`, with `exit_code` and
/// `stderr`. Only with the explicit allow option of `reference-server device`.
#[derive(Debug, Clone, Copy)]
pub struct ShellHandler {
    pub timeout: Duration,
}

impl ExecuteHandler for ShellHandler {
    fn handle(&self, extra: Map<String, Value>) -> BoxFuture<'static, Map<String, Value>> {
        let timeout = self.timeout;
        Box::pin(async move {
            let Some(command) = extra.get("command").and_then(Value::as_str) else {
                return result_extra(
                    &extra,
                    String::new(),
                    Some((-1, "no string `command`".to_owned())),
                );
            };
            let execution = run_command(command, timeout).await;
            let stderr = execution.stderr;
            result_extra(
                &extra,
                execution.stdout,
                Some((execution.exit_code, stderr)),
            )
        })
    }
}

/// `{"data": ...}` as the document shows, plus the request's `id` when it had one, so that a
/// controller can match results to requests.
fn result_extra(
    request: &Map<String, Value>,
    data: String,
    outcome: Option<(i64, String)>,
) -> Map<String, Value> {
    let mut extra = Map::new();
    extra.insert("data".to_owned(), Value::String(data));
    if let Some(id) = request.get("id") {
        extra.insert("id".to_owned(), id.clone());
    }
    if let Some((exit_code, stderr)) = outcome {
        extra.insert("exit_code".to_owned(), Value::String(exit_code.to_string()));
        extra.insert("stderr".to_owned(), Value::String(stderr));
    }
    extra
}

#[derive(Clone)]
pub struct DeviceConfig {
    /// `ws://host:port/websocket`.
    pub url: String,
    pub token: String,
    pub handler: Arc<dyn ExecuteHandler>,
    pub max_backoff: Duration,
    pub max_attempts: Option<u32>,
}

impl std::fmt::Debug for DeviceConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceConfig")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    #[error("the server refused the token: code {code}, {message}")]
    Refused { code: String, message: String },
    #[error("the server closed before answering init")]
    NoInitResponse,
    #[error("gave up after {0} failed connections")]
    GaveUp(u32),
    #[error(transparent)]
    Ws(#[from] tokio_tungstenite::tungstenite::Error),
}

/// Runs the device until its token is refused or `max_attempts` connections failed.
pub async fn run(config: DeviceConfig) -> Result<(), DeviceError> {
    let ended = with_backoff(config.max_backoff, config.max_attempts, || async {
        match run_once(&config).await {
            Ok(()) => tracing::info!("connection closed by the server"),
            Err(error @ DeviceError::Refused { .. }) => return Next::Stop(error),
            Err(error) => tracing::warn!(%error, "connection failed"),
        }
        Next::Retry
    })
    .await;
    Err(ended.unwrap_or_else(DeviceError::GaveUp))
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// One connection: init, then answer `execute` until the server closes.
pub async fn run_once(config: &DeviceConfig) -> Result<(), DeviceError> {
    let (mut socket, _) = tokio_tungstenite::connect_async(&config.url).await?;
    let init = json!({ "cmd": "init", "token": config.token });
    socket.send(Message::text(init.to_string())).await?;
    let session_id = await_init_response(&mut socket).await?;
    tracing::info!(?session_id, "joined the room");
    while let Some(frame) = socket.next().await {
        let text = match frame? {
            Message::Text(text) => text,
            Message::Close(_) => break,
            _ => continue,
        };
        if let Some(reply) = answer(config, &text).await {
            socket.send(Message::text(reply.to_string())).await?;
        }
    }
    Ok(())
}

async fn await_init_response(socket: &mut Socket) -> Result<Option<String>, DeviceError> {
    while let Some(frame) = socket.next().await {
        let Message::Text(text) = frame? else {
            continue;
        };
        let Ok(message) = serde_json::from_str::<Value>(&text) else {
            continue;
        };
        if message["cmd"] != "init" {
            continue;
        }
        if message["code"] == codes::OK {
            return Ok(message["session_id"].as_str().map(str::to_owned));
        }
        return Err(DeviceError::Refused {
            code: message["code"].as_str().unwrap_or_default().to_owned(),
            message: message["extra"]["message"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        });
    }
    Err(DeviceError::NoInitResponse)
}

/// The reply to one server frame, if it needs one.
async fn answer(config: &DeviceConfig, text: &str) -> Option<Value> {
    let message: Value = serde_json::from_str(text).ok()?;
    match message["cmd"].as_str()? {
        "execute" => {
            let extra = message["extra"].as_object().cloned().unwrap_or_default();
            let result = config.handler.handle(extra).await;
            Some(json!({ "cmd": "execute_result", "extra": result }))
        }
        "Heartbeat" => {
            tracing::debug!("heartbeat");
            None
        }
        other => {
            tracing::debug!(cmd = other, "ignored");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_echo_handler_answers_the_command_as_data_and_keeps_the_id() {
        let extra = json!({ "command": "ls", "id": 7 })
            .as_object()
            .cloned()
            .unwrap_or_default();
        let result = EchoHandler.handle(extra).await;
        assert_eq!(Value::Object(result), json!({ "data": "ls", "id": 7 }));
    }

    #[tokio::test]
    async fn the_shell_handler_answers_stdout_and_exit_code() {
        let handler = ShellHandler {
            timeout: Duration::from_secs(5),
        };
        let extra = json!({ "command": "echo hi; exit 3" })
            .as_object()
            .cloned()
            .unwrap_or_default();
        let result = handler.handle(extra).await;
        assert_eq!(result["data"], "hi\n");
        assert_eq!(result["exit_code"], "3");
    }
}
