//! Where the cases run: the in-process reference server, a URL, or a spawned command.

use crate::case::Failure;
use crate::client::{OperatorApi, Transcript};
use reference_server::faults::Faults;
use reference_server::protocol::nodemgr::SessionConfig;
use reference_server::server::{start_nodemgr, RunningNodemgr};
use reference_server::store::StoreConfig;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// How to reach a nodemgr implementation.
#[derive(Debug, Clone)]
pub struct NodemgrEndpoint {
    /// The WebSocket URL without query, e.g. `ws://127.0.0.1:9999/api/v1/ws`.
    pub ws_url: String,
    pub token: String,
    /// The command trigger; `None` makes command cases Unimplemented.
    pub operator: Option<OperatorApi>,
}

impl NodemgrEndpoint {
    /// The connection URL with the given token and node_id.
    pub fn url(&self, token: Option<&str>, node_id: Option<&str>) -> String {
        let mut query = Vec::new();
        if let Some(token) = token {
            query.push(format!("token={token}"));
        }
        if let Some(node_id) = node_id {
            query.push(format!("node_id={node_id}"));
        }
        if query.is_empty() {
            self.ws_url.clone()
        } else {
            format!("{}?{}", self.ws_url, query.join("&"))
        }
    }
}

/// What a case body gets: the endpoints, its waits and its transcript.
#[derive(Debug, Clone)]
pub struct Ctx {
    pub nodemgr: Option<NodemgrEndpoint>,
    /// How long to wait for an answer that should come at once.
    pub wait: Duration,
    /// How long to wait for something the target schedules (a timeout, a close).
    pub slow_wait: Duration,
    pub transcript: Transcript,
}

impl Ctx {
    pub fn nodemgr(&self) -> Result<&NodemgrEndpoint, Failure> {
        self.nodemgr
            .as_ref()
            .ok_or_else(|| Failure::Harness("no nodemgr endpoint configured".to_owned()))
    }

    pub fn operator(&self) -> Result<&OperatorApi, Failure> {
        self.nodemgr()?.operator.as_ref().ok_or_else(|| {
            Failure::Unimplemented("the target has no command trigger (operator API)".to_owned())
        })
    }
}

/// Which operator API to use.
#[derive(Debug, Clone, PartialEq)]
pub enum OperatorChoice {
    /// `http://<same host:port>/api/v1`, as the reference server serves it.
    SameHost,
    Url(String),
    None,
}

impl OperatorChoice {
    pub fn parse(text: Option<&str>) -> Self {
        match text {
            None | Some("auto") => Self::SameHost,
            Some("none") => Self::None,
            Some(url) => Self::Url(url.to_owned()),
        }
    }

    fn resolve(&self, ws_url: &str, token: &str, wait: Duration) -> Option<OperatorApi> {
        let base = match self {
            Self::None => return None,
            Self::Url(url) => url.clone(),
            Self::SameHost => {
                let rest = ws_url
                    .trim_start_matches("ws://")
                    .trim_start_matches("wss://");
                let host = rest.split('/').next().unwrap_or(rest);
                let scheme = if ws_url.starts_with("wss://") {
                    "https"
                } else {
                    "http"
                };
                format!("{scheme}://{host}/api/v1")
            }
        };
        Some(OperatorApi::new(&base, token, wait))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    #[error("could not start the in-process reference server: {0}")]
    InProcess(String),
    #[error("could not spawn `{command}`: {source}")]
    Spawn {
        command: String,
        source: std::io::Error,
    },
    #[error(
        "`{command}` printed no line containing {ready:?} within {seconds} s; pass --ready-text"
    )]
    NotReady {
        command: String,
        ready: String,
        seconds: u64,
    },
    #[error("the ready line {0:?} has no ws:// URL; pass --target")]
    NoUrl(String),
}

/// A running target. Dropping it stops what it started.
#[derive(Debug)]
pub struct Target {
    pub nodemgr: NodemgrEndpoint,
    pub description: String,
    _guard: Guard,
}

#[derive(Debug)]
#[allow(
    dead_code,
    reason = "held only so that dropping the target stops what it started"
)]
enum Guard {
    Nothing,
    InProcess(Box<RunningNodemgr>, tempfile::TempDir),
    Child(Child),
}

impl Target {
    /// An external server at `ws_url`.
    pub fn url(ws_url: &str, token: &str, operator: &OperatorChoice, wait: Duration) -> Self {
        let ws_url = ws_url.split('?').next().unwrap_or(ws_url).to_owned();
        Self {
            nodemgr: NodemgrEndpoint {
                operator: operator.resolve(&ws_url, token, wait),
                token: token.to_owned(),
                ws_url: ws_url.clone(),
            },
            description: ws_url,
            _guard: Guard::Nothing,
        }
    }

    /// The reference server in this process, on a free loopback port, with its own database.
    pub async fn in_process(faults: Faults, wait: Duration) -> Result<Self, TargetError> {
        Self::in_process_with(
            SessionConfig {
                faults,
                ..SessionConfig::default()
            },
            wait,
        )
        .await
    }

    /// The in-process reference server with explicit settings.
    pub async fn in_process_with(
        session: SessionConfig,
        wait: Duration,
    ) -> Result<Self, TargetError> {
        let faults = session.faults.clone();
        let token = session.token.clone();
        let data = tempfile::tempdir().map_err(|e| TargetError::InProcess(e.to_string()))?;
        let store = StoreConfig::sqlite_in(data.path())
            .map_err(|e| TargetError::InProcess(e.to_string()))?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| TargetError::InProcess(e.to_string()))?;
        let server = start_nodemgr(listener, session, &store)
            .await
            .map_err(|e| TargetError::InProcess(e.to_string()))?;
        let names: Vec<_> = faults.iter().map(|f| f.name()).collect();
        let description = if names.is_empty() {
            format!("in-process reference server {}", server.ws_url())
        } else {
            format!(
                "in-process reference server {} with faults {}",
                server.ws_url(),
                names.join(", ")
            )
        };
        let mut target = Self::url(&server.ws_url(), &token, &OperatorChoice::SameHost, wait);
        target.description = description;
        target._guard = Guard::InProcess(Box::new(server), data);
        Ok(target)
    }

    /// Spawns `command` and waits for a stdout line containing `ready`; the target URL is
    /// `ws_url` or else the first `ws://` word of that line.
    pub async fn spawn(spec: &SpawnSpec, wait: Duration) -> Result<Self, TargetError> {
        let shown = spec.command.join(" ");
        let (program, args) = spec
            .command
            .split_first()
            .ok_or_else(|| TargetError::Spawn {
                command: shown.clone(),
                source: std::io::Error::other("empty command"),
            })?;
        let mut child = Command::new(program)
            .args(args)
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|source| TargetError::Spawn {
                command: shown.clone(),
                source,
            })?;
        let line = read_ready_line(&mut child, &spec.ready_text, spec.ready_timeout)
            .await
            .ok_or_else(|| TargetError::NotReady {
                command: shown.clone(),
                ready: spec.ready_text.clone(),
                seconds: spec.ready_timeout.as_secs(),
            })?;
        let url = match &spec.ws_url {
            Some(url) => url.clone(),
            None => first_ws_url(&line).ok_or_else(|| TargetError::NoUrl(line.clone()))?,
        };
        let mut target = Self::url(&url, &spec.token, &spec.operator, wait);
        target.description = format!("`{shown}` at {url}");
        target._guard = Guard::Child(child);
        Ok(target)
    }
}

#[derive(Debug, Clone)]
pub struct SpawnSpec {
    pub command: Vec<String>,
    pub ready_text: String,
    pub ready_timeout: Duration,
    pub ws_url: Option<String>,
    pub token: String,
    pub operator: OperatorChoice,
}

/// Reads stdout until the ready line, then keeps draining it so the child never blocks.
async fn read_ready_line(child: &mut Child, ready: &str, timeout: Duration) -> Option<String> {
    let stdout = child.stdout.take()?;
    let mut lines = BufReader::new(stdout).lines();
    let found = tokio::time::timeout(timeout, async {
        while let Ok(Some(line)) = lines.next_line().await {
            if line.contains(ready) {
                return Some(line);
            }
        }
        None
    })
    .await
    .ok()
    .flatten();
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    found
}

fn first_ws_url(line: &str) -> Option<String> {
    line.split_whitespace()
        .find(|w| w.starts_with("ws://") || w.starts_with("wss://"))
        .map(str::to_owned)
}
