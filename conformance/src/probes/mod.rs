//! Client validation: the suite plays the server and grades the client that connects.
//! The plumbing shared by every protocol's probe lives here: listening, starting the client,
//! accepting it, gathering results, and the report.

pub mod cmdrelay;
pub mod ecapture;
pub mod logrtc;
pub mod nodemgr;
pub mod sfu;

use crate::case::{CaseResult, Failure, Level, Outcome, Source};
use crate::client::{Transcript, WsClient};
use crate::report::{CaseReport, CaseSpec, Report};
use crate::runner::{apply_expectations, grade, RunOptions};
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

pub(crate) const fn spec(
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

/// Results as the session reaches them; anything unreached fails with the reason it stopped.
#[derive(Default)]
pub(crate) struct Results(HashMap<&'static str, CaseResult>);

impl Results {
    pub(crate) fn set(&mut self, id: &'static str, result: CaseResult) {
        self.0.entry(id).or_insert(result);
    }

    pub(crate) fn check(&mut self, id: &'static str, result: Result<(), Failure>) {
        self.set(id, result.map(|()| Outcome::Pass));
    }

    /// For a case checked more than once in a session: the first failure stands, so a later
    /// failure replaces an earlier pass.
    pub(crate) fn worst(&mut self, id: &'static str, result: Result<(), Failure>) {
        let failed_before = self.0.get(id).is_some_and(Result::is_err);
        if result.is_err() && !failed_before {
            self.0.insert(id, result.map(|()| Outcome::Pass));
        } else {
            self.check(id, result);
        }
    }
}

pub(crate) async fn bind(config: &ProbeConfig) -> Result<TcpListener, ProbeError> {
    TcpListener::bind(&config.listen)
        .await
        .map_err(|e| ProbeError::Listen(config.listen.clone(), e))
}

/// One probe run: the client it started, its transcript and its clock.
pub(crate) struct ProbeSession {
    _child: Option<Child>,
    /// The client's standard output, when the probe grades what the client reports.
    pub stdout: Option<tokio::process::ChildStdout>,
    shown: String,
    started: Instant,
    started_at: chrono::DateTime<chrono::Utc>,
    pub transcript: Transcript,
}

impl ProbeSession {
    /// Starts the client (if a command was given) against `ws://<listener><path>`.
    pub fn start(
        listener: &TcpListener,
        config: &ProbeConfig,
        path: &str,
        playing: &str,
    ) -> Result<Self, ProbeError> {
        Self::start_capturing(listener, config, path, playing, false)
    }

    /// As [`Self::start`]; with `capture`, the client's stdout is kept in `stdout`.
    pub fn start_capturing(
        listener: &TcpListener,
        config: &ProbeConfig,
        path: &str,
        playing: &str,
        capture: bool,
    ) -> Result<Self, ProbeError> {
        let addr = listener
            .local_addr()
            .map_err(|e| ProbeError::Listen(config.listen.clone(), e))?;
        let url = format!("ws://{addr}{path}");
        let mut child = start_client(&config.command, &url, capture)?;
        let stdout = child.as_mut().and_then(|c| c.stdout.take());
        let shown = if config.command.is_empty() {
            url.clone()
        } else {
            config.command.join(" ")
        };
        eprintln!("playing the {playing} at {url}; waiting for {shown}");
        Ok(Self {
            _child: child,
            stdout,
            shown,
            started: Instant::now(),
            started_at: chrono::Utc::now(),
            transcript: Transcript::default(),
        })
    }

    /// Grades every case; those the session never reached fail with the reason it stopped.
    pub fn report(
        self,
        protocol: &str,
        cases: &[CaseSpec],
        mut results: Results,
        stop: Result<(), String>,
        config: &ProbeConfig,
    ) -> Report {
        let reports = cases
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
                let verdict =
                    apply_expectations(verdict, config.options.expectations.reason(spec.id));
                CaseReport::from_spec(spec, verdict, Duration::ZERO, self.transcript.lines())
            })
            .collect();
        Report::new(
            protocol,
            &format!("client {}", self.shown),
            config.options.strict,
            self.started_at,
            self.started.elapsed(),
            reports,
        )
    }
}

fn start_client(command: &[String], url: &str, capture: bool) -> Result<Option<Child>, ProbeError> {
    let Some((program, args)) = command.split_first() else {
        return Ok(None);
    };
    let args: Vec<String> = args.iter().map(|a| a.replace("{url}", url)).collect();
    Command::new(program)
        .args(&args)
        .stdout(if capture {
            std::process::Stdio::piped()
        } else {
            std::process::Stdio::null()
        })
        .kill_on_drop(true)
        .spawn()
        .map(Some)
        .map_err(|e| ProbeError::Spawn(command.join(" "), e))
}

/// Accepts one connection, returning the client and its request URI. `server` names the
/// suite's side in the transcript.
pub(crate) async fn accept(
    listener: &TcpListener,
    wait: Duration,
    transcript: &Transcript,
    server: &str,
) -> Result<(WsClient, String), String> {
    let accepted = accept_selecting(listener, wait, transcript, server, None).await?;
    Ok((accepted.client, accepted.uri))
}

/// A connection the probe accepted.
pub(crate) struct Accepted {
    pub client: WsClient,
    pub uri: String,
    /// The subprotocols the client offered (`Sec-WebSocket-Protocol`).
    pub offered: Vec<String>,
}

/// Accepts one connection; when the client offers `subprotocol`, the handshake selects it
/// (a browser drops a socket whose server ignores the subprotocol it asked for).
pub(crate) async fn accept_selecting(
    listener: &TcpListener,
    wait: Duration,
    transcript: &Transcript,
    server: &str,
    subprotocol: Option<&str>,
) -> Result<Accepted, String> {
    let (tcp, _) = tokio::time::timeout(wait, listener.accept())
        .await
        .map_err(|_| format!("no client connected within {} s", wait.as_secs()))?
        .map_err(|e| e.to_string())?;
    let mut uri = String::new();
    let mut offered = Vec::new();
    #[allow(
        clippy::result_large_err,
        reason = "the callback type is tungstenite's"
    )]
    let callback = |request: &Request, mut response: Response| {
        uri = request.uri().to_string();
        offered = request
            .headers()
            .get_all("sec-websocket-protocol")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(',').map(|p| p.trim().to_owned()))
            .collect();
        if let Some(chosen) = subprotocol.filter(|p| offered.iter().any(|o| o == p)) {
            if let Ok(value) = chosen.parse() {
                response
                    .headers_mut()
                    .insert("sec-websocket-protocol", value);
            }
        }
        Ok(response)
    };
    let stream = tokio_tungstenite::accept_hdr_async(MaybeTlsStream::Plain(tcp), callback)
        .await
        .map_err(|e| format!("WebSocket handshake failed: {e}"))?;
    transcript.record(server, "⇠", &format!("connection to {uri}"));
    let client = WsClient::accepted("client", stream, transcript, wait);
    Ok(Accepted {
        client,
        uri,
        offered,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_later_failure_replaces_a_pass_and_the_first_failure_stands() {
        let mut results = Results::default();
        results.worst("case", Ok(()));
        results.worst("case", Err(Failure::mismatch("a", "first")));
        results.worst("case", Err(Failure::mismatch("a", "second")));
        results.worst("case", Ok(()));
        assert_eq!(
            results.0.get("case"),
            Some(&Err(Failure::mismatch("a", "first")))
        );
    }
}
