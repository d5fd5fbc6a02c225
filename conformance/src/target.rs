//! Where the cases run: the in-process reference server, a URL, or a spawned command.

use crate::case::Failure;
use crate::client::{OperatorApi, TokenMinter, TokenPool, TokenSource, Transcript};
use reference_server::faults::Faults;
use reference_server::protocol::ecapture::records;
use reference_server::protocol::ecapture::source::SourceConfig;
use reference_server::protocol::logrtc;
use reference_server::protocol::nodemgr::SessionConfig;
use reference_server::server::{
    start_cmdrelay, start_ecapture, start_logrtc, start_nodemgr, start_sfu, CmdrelaySetup,
    RunningCmdrelay, RunningEcapture, RunningLogrtc, RunningNodemgr, RunningSfu, SfuSetup,
};
use reference_server::store::StoreConfig;
use reference_server::transport::ecapture::EcaptureConfig;
use std::sync::Arc;
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

/// How to reach a cmdrelay implementation.
#[derive(Debug, Clone)]
pub struct CmdrelayEndpoint {
    /// The WebSocket URL, e.g. `ws://127.0.0.1:8765/websocket`.
    pub ws_url: String,
    pub tokens: TokenSource,
    /// A token the target knows but holds expired; `None` leaves the expiry case unimplemented
    /// (a token API mints one instead).
    pub expired_token: Option<String>,
    /// The heartbeat period the target is configured with; `None`: measure and check that it
    /// is steady.
    pub heartbeat_period: Option<Duration>,
}

impl CmdrelayEndpoint {
    /// A token the target holds expired, if the suite can get one.
    pub async fn expired_token(&self) -> Result<String, Failure> {
        if let Some(token) = &self.expired_token {
            return Ok(token.clone());
        }
        match &self.tokens {
            TokenSource::Mint(minter) => minter.mint(Some(0)).await,
            _ => Err(Failure::Unimplemented(
                "no expired token: pass --expired-token".to_owned(),
            )),
        }
    }
}

/// How to reach an ecapture implementation.
#[derive(Debug, Clone)]
pub struct EcaptureEndpoint {
    /// The WebSocket URL, e.g. `ws://127.0.0.1:28257/`.
    pub ws_url: String,
    /// The target's heartbeat period (eCapture's is 15 s).
    pub heartbeat_period: Duration,
}

/// How to reach a logrtc signaling server.
#[derive(Debug, Clone)]
pub struct LogrtcEndpoint {
    /// The signaling WebSocket URL, e.g. `ws://127.0.0.1:8080/signaling`.
    pub ws_url: String,
}

/// How to reach an sfu signaling server.
#[derive(Debug, Clone)]
pub struct SfuEndpoint {
    /// The protoo WebSocket URL without its query, e.g. `ws://127.0.0.1:8443/ws`; cases add
    /// `?peer=<uid>`.
    pub ws_url: String,
    /// How long the target keeps a silent peer, when known; the keepalive cases need it.
    pub keepalive_timeout: Option<Duration>,
}

impl SfuEndpoint {
    /// The URL for peer `uid`.
    pub fn peer_url(&self, uid: &str) -> String {
        format!("{}?peer={uid}", self.ws_url)
    }
}

/// eCapture's own heartbeat period, assumed when none is given.
pub const ECAPTURE_HEARTBEAT: Duration = Duration::from_secs(15);

/// Settings for a cmdrelay target reached by URL or spawned.
#[derive(Debug, Clone)]
pub struct CmdrelayOptions {
    pub tokens: TokenChoice,
    pub expired_token: Option<String>,
    pub heartbeat_period: Option<Duration>,
}

/// Where tokens come from, before the target's address is known.
#[derive(Debug, Clone, PartialEq)]
pub enum TokenChoice {
    /// Mint through `http://<same host:port>/api/v1/tokens` (the reference server's API).
    MintSameHost {
        admin_token: String,
    },
    Mint {
        base: String,
        admin_token: String,
    },
    Any,
    Pool(Vec<String>),
}

impl TokenChoice {
    fn resolve(&self, ws_url: &str, wait: Duration) -> TokenSource {
        match self {
            Self::MintSameHost { admin_token } => {
                TokenSource::Mint(TokenMinter::new(&same_host_api(ws_url), admin_token, wait))
            }
            Self::Mint { base, admin_token } => {
                TokenSource::Mint(TokenMinter::new(base, admin_token, wait))
            }
            Self::Any => TokenSource::Any,
            Self::Pool(tokens) => TokenSource::Pool(Arc::new(TokenPool::new(tokens.clone()))),
        }
    }
}

/// `http://<host:port of ws_url>/api/v1`.
fn same_host_api(ws_url: &str) -> String {
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

/// What a case body gets: the endpoints, its waits and its transcript.
#[derive(Debug, Clone)]
pub struct Ctx {
    pub nodemgr: Option<NodemgrEndpoint>,
    pub cmdrelay: Option<CmdrelayEndpoint>,
    pub ecapture: Option<EcaptureEndpoint>,
    pub logrtc: Option<LogrtcEndpoint>,
    pub sfu: Option<SfuEndpoint>,
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

    /// The least time a case may need: heartbeat cases wait for three periods.
    pub fn min_case_time(&self) -> Duration {
        let cmdrelay = self.cmdrelay.as_ref().map(|endpoint| {
            let period = endpoint.heartbeat_period.unwrap_or(Duration::from_secs(35));
            period * 4 + self.slow_wait
        });
        let ecapture = self
            .ecapture
            .as_ref()
            .map(|endpoint| endpoint.heartbeat_period * 4 + self.slow_wait);
        cmdrelay.max(ecapture).unwrap_or(Duration::ZERO)
    }

    pub fn ecapture(&self) -> Result<&EcaptureEndpoint, Failure> {
        self.ecapture
            .as_ref()
            .ok_or_else(|| Failure::Harness("no ecapture endpoint configured".to_owned()))
    }

    pub fn sfu(&self) -> Result<&SfuEndpoint, Failure> {
        self.sfu
            .as_ref()
            .ok_or_else(|| Failure::Harness("no sfu endpoint configured".to_owned()))
    }

    pub fn logrtc(&self) -> Result<&LogrtcEndpoint, Failure> {
        self.logrtc
            .as_ref()
            .ok_or_else(|| Failure::Harness("no logrtc endpoint configured".to_owned()))
    }

    pub fn cmdrelay(&self) -> Result<&CmdrelayEndpoint, Failure> {
        self.cmdrelay
            .as_ref()
            .ok_or_else(|| Failure::Harness("no cmdrelay endpoint configured".to_owned()))
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
            Self::SameHost => same_host_api(ws_url),
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
    #[error("{0}")]
    Tokens(String),
}

/// A running target. Dropping it stops what it started.
#[derive(Debug)]
pub struct Target {
    pub nodemgr: Option<NodemgrEndpoint>,
    pub cmdrelay: Option<CmdrelayEndpoint>,
    pub ecapture: Option<EcaptureEndpoint>,
    pub logrtc: Option<LogrtcEndpoint>,
    pub sfu: Option<SfuEndpoint>,
    pub description: String,
    _guard: Vec<Guard>,
}

#[derive(Debug)]
#[allow(
    dead_code,
    reason = "held only so that dropping the target stops what it started"
)]
enum Guard {
    Nodemgr(Box<RunningNodemgr>),
    Cmdrelay(Box<RunningCmdrelay>),
    Ecapture(Box<RunningEcapture>),
    Logrtc(Box<RunningLogrtc>),
    Sfu(Box<RunningSfu>),
    Data(tempfile::TempDir),
    Child(Child),
}

/// Settings of the in-process reference server.
#[derive(Debug, Clone, Default)]
pub struct InProcess {
    pub nodemgr: SessionConfig,
    pub cmdrelay: CmdrelaySetup,
    pub ecapture: EcaptureConfig,
    pub logrtc: logrtc::SessionConfig,
    pub sfu: SfuSetup,
}

impl InProcess {
    /// Defaults with these faults, and a short cmdrelay heartbeat so that its cases are quick.
    pub fn with_faults(faults: Faults) -> Self {
        let mut settings = Self::default();
        settings.nodemgr.faults = faults.clone();
        settings.cmdrelay.session.faults = faults.clone();
        settings.cmdrelay.session.heartbeat_period = IN_PROCESS_HEARTBEAT;
        settings.ecapture.session.faults = faults.clone();
        settings.logrtc.faults = faults.clone();
        settings.sfu.session.faults = faults;
        settings.sfu.session.keepalive_timeout = IN_PROCESS_KEEPALIVE;
        settings.sfu.media_bind = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
        settings.ecapture.session.heartbeat_period = IN_PROCESS_HEARTBEAT;
        settings.ecapture.source = in_process_events();
        settings
    }
}

/// The built-in sample events, replayed fast enough that event cases have a sample at once.
fn in_process_events() -> SourceConfig {
    let events = records::parse_lines(records::SAMPLE).unwrap_or_default();
    SourceConfig::Replay {
        events,
        rate: 100.0,
        repeat: true,
    }
}

/// The in-process SFU's keepalive timeout: short, so that the keepalive cases are quick.
pub const IN_PROCESS_KEEPALIVE: Duration = Duration::from_secs(2);

/// Heartbeat period of the in-process reference server (cmdrelay and ecapture).
pub const IN_PROCESS_HEARTBEAT: Duration = Duration::from_secs(1);

fn in_process_error(error: impl std::fmt::Display) -> TargetError {
    TargetError::InProcess(error.to_string())
}

impl Target {
    fn empty(description: String) -> Self {
        Self {
            nodemgr: None,
            cmdrelay: None,
            ecapture: None,
            logrtc: None,
            sfu: None,
            description,
            _guard: Vec::new(),
        }
    }

    /// An external nodemgr server at `ws_url`.
    pub fn url(ws_url: &str, token: &str, operator: &OperatorChoice, wait: Duration) -> Self {
        let ws_url = ws_url.split('?').next().unwrap_or(ws_url).to_owned();
        let mut target = Self::empty(ws_url.clone());
        target.nodemgr = Some(NodemgrEndpoint {
            operator: operator.resolve(&ws_url, token, wait),
            token: token.to_owned(),
            ws_url,
        });
        target
    }

    /// An external cmdrelay server at `ws_url`; fails early when tokens cannot be minted.
    pub async fn cmdrelay_url(
        ws_url: &str,
        options: &CmdrelayOptions,
        wait: Duration,
    ) -> Result<Self, TargetError> {
        let endpoint = CmdrelayEndpoint {
            ws_url: ws_url.to_owned(),
            tokens: options.tokens.resolve(ws_url, wait),
            expired_token: options.expired_token.clone(),
            heartbeat_period: options.heartbeat_period,
        };
        if let TokenSource::Mint(minter) = &endpoint.tokens {
            minter
                .mint(None)
                .await
                .map_err(|e| TargetError::Tokens(e.to_string()))?;
        }
        let mut target = Self::empty(ws_url.to_owned());
        target.cmdrelay = Some(endpoint);
        Ok(target)
    }

    /// An external ecapture server at `ws_url`.
    pub fn ecapture_url(ws_url: &str, heartbeat_period: Option<Duration>) -> Self {
        let mut target = Self::empty(ws_url.to_owned());
        target.ecapture = Some(EcaptureEndpoint {
            ws_url: ws_url.to_owned(),
            heartbeat_period: heartbeat_period.unwrap_or(ECAPTURE_HEARTBEAT),
        });
        target
    }

    /// An external logrtc signaling server at `ws_url`.
    pub fn logrtc_url(ws_url: &str) -> Self {
        let mut target = Self::empty(ws_url.to_owned());
        target.logrtc = Some(LogrtcEndpoint {
            ws_url: ws_url.to_owned(),
        });
        target
    }

    /// An external sfu signaling server at `ws_url` (any `?peer=` query is dropped).
    pub fn sfu_url(ws_url: &str, keepalive_timeout: Option<Duration>) -> Self {
        let ws_url = ws_url.split('?').next().unwrap_or(ws_url).to_owned();
        let mut target = Self::empty(ws_url.clone());
        target.sfu = Some(SfuEndpoint {
            ws_url,
            keepalive_timeout,
        });
        target
    }

    /// The reference server in this process, on free loopback ports, with its own database.
    pub async fn in_process(faults: Faults, wait: Duration) -> Result<Self, TargetError> {
        Self::in_process_with(InProcess::with_faults(faults), wait).await
    }

    /// The in-process reference server (every protocol) with explicit settings.
    pub async fn in_process_with(settings: InProcess, wait: Duration) -> Result<Self, TargetError> {
        let faults = settings.nodemgr.faults.clone();
        let data = tempfile::tempdir().map_err(in_process_error)?;
        let store = StoreConfig::sqlite_in(data.path()).map_err(in_process_error)?;
        let nodemgr_token = settings.nodemgr.token.clone();
        let nodemgr = start_nodemgr(loopback().await?, settings.nodemgr, &store)
            .await
            .map_err(in_process_error)?;
        let admin_token = settings.cmdrelay.admin_token.clone();
        let heartbeat = settings.cmdrelay.session.heartbeat_period;
        let cmdrelay = start_cmdrelay(loopback().await?, settings.cmdrelay, &store)
            .await
            .map_err(in_process_error)?;
        let mut target = Self::url(
            &nodemgr.ws_url(),
            &nodemgr_token,
            &OperatorChoice::SameHost,
            wait,
        );
        target.cmdrelay = Some(CmdrelayEndpoint {
            ws_url: cmdrelay.ws_url(),
            tokens: TokenSource::Mint(TokenMinter::new(&cmdrelay.admin_url(), &admin_token, wait)),
            expired_token: None,
            heartbeat_period: Some(heartbeat),
        });
        let ecapture_period = settings.ecapture.session.heartbeat_period;
        let ecapture = start_ecapture(loopback().await?, settings.ecapture)
            .await
            .map_err(in_process_error)?;
        target.ecapture = Some(EcaptureEndpoint {
            ws_url: ecapture.ws_url(),
            heartbeat_period: ecapture_period,
        });
        let logrtc = start_logrtc(loopback().await?, settings.logrtc)
            .await
            .map_err(in_process_error)?;
        target.logrtc = Some(LogrtcEndpoint {
            ws_url: logrtc.ws_url(),
        });
        let keepalive = settings.sfu.session.keepalive_timeout;
        let sfu = start_sfu(loopback().await?, settings.sfu)
            .await
            .map_err(in_process_error)?;
        target.sfu = Some(SfuEndpoint {
            ws_url: sfu.ws_url(),
            keepalive_timeout: Some(keepalive),
        });
        target.description = describe_in_process(
            &[
                nodemgr.ws_url(),
                cmdrelay.ws_url(),
                ecapture.ws_url(),
                logrtc.ws_url(),
                sfu.ws_url(),
            ],
            &faults,
        );
        target._guard = vec![
            Guard::Nodemgr(Box::new(nodemgr)),
            Guard::Cmdrelay(Box::new(cmdrelay)),
            Guard::Ecapture(Box::new(ecapture)),
            Guard::Logrtc(Box::new(logrtc)),
            Guard::Sfu(Box::new(sfu)),
            Guard::Data(data),
        ];
        Ok(target)
    }

    /// Spawns `command` and waits for a stdout line containing `ready` (and not naming another
    /// protocol); the target URL is `ws_url` or else the first `ws://` word of that line.
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
        let line =
            read_ready_line(&mut child, spec)
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
        let mut target = match (&spec.cmdrelay, spec.protocol.as_str()) {
            (Some(options), _) => Self::cmdrelay_url(&url, options, wait).await?,
            (None, "ecapture") => Self::ecapture_url(&url, spec.heartbeat_period),
            (None, "logrtc") => Self::logrtc_url(&url),
            (None, "sfu") => Self::sfu_url(&url, spec.keepalive_timeout),
            (None, _) => Self::url(&url, &spec.token, &spec.operator, wait),
        };
        target.description = format!("`{shown}` at {url}");
        target._guard.push(Guard::Child(child));
        Ok(target)
    }
}

async fn loopback() -> Result<tokio::net::TcpListener, TargetError> {
    tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(in_process_error)
}

fn describe_in_process(urls: &[String], faults: &Faults) -> String {
    let names: Vec<_> = faults.iter().map(|f| f.name()).collect();
    let urls = urls.join(", ");
    if names.is_empty() {
        format!("in-process reference server {urls}")
    } else {
        format!(
            "in-process reference server {urls} with faults {}",
            names.join(", ")
        )
    }
}

#[derive(Debug, Clone)]
pub struct SpawnSpec {
    pub command: Vec<String>,
    pub ready_text: String,
    pub ready_timeout: Duration,
    pub ws_url: Option<String>,
    /// The protocol judged: a ready line naming only another protocol is skipped.
    pub protocol: String,
    pub token: String,
    pub operator: OperatorChoice,
    /// Set when the protocol is cmdrelay.
    pub cmdrelay: Option<CmdrelayOptions>,
    /// ecapture: the target's heartbeat period (default 15 s).
    pub heartbeat_period: Option<Duration>,
    /// sfu: how long the target keeps a peer that sends no keepalive, when known.
    pub keepalive_timeout: Option<Duration>,
}

/// Reads stdout until the ready line, then keeps draining it so the child never blocks.
async fn read_ready_line(child: &mut Child, spec: &SpawnSpec) -> Option<String> {
    let stdout = child.stdout.take()?;
    let mut lines = BufReader::new(stdout).lines();
    let found = tokio::time::timeout(spec.ready_timeout, async {
        while let Ok(Some(line)) = lines.next_line().await {
            if line.contains(&spec.ready_text)
                && !names_only_another_protocol(&line, &spec.protocol)
            {
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

/// A reference-server ready line such as `ready nodemgr ws://...` when `protocol` is cmdrelay.
fn names_only_another_protocol(line: &str, protocol: &str) -> bool {
    let names = |p: &&str| line.split_whitespace().any(|w| w == *p);
    !names(&protocol) && crate::cases::PROTOCOLS.iter().any(names)
}

fn first_ws_url(line: &str) -> Option<String> {
    line.split_whitespace()
        .find(|w| w.starts_with("ws://") || w.starts_with("wss://"))
        .map(str::to_owned)
}
