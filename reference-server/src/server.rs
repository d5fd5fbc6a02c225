//! Assembles the services and serves them on already-bound listeners (so tests bind port 0).

use crate::protocol::cmdrelay;
use crate::protocol::logrtc;
use crate::protocol::nodemgr::{SessionConfig, WS_PATH};
use crate::protocol::sfu;
use crate::store::tokens::TokenStore;
use crate::store::{Store, StoreConfig, StoreError};
use crate::transport::ecapture::{spawn_source, EcaptureApp, EcaptureConfig};
use crate::transport::logrtc_ws::{self, LogrtcApp};
use crate::transport::sfu_udp::{start_media, MediaLoop, MediaSetup};
use crate::transport::sfu_ws::{self, SfuApp};
use crate::transport::{
    cmdrelay_ws, ecapture_ws, nodemgr_ws, operator_api, token_api, CmdrelayApp, NodemgrApp,
};
use axum::routing::{delete, get, post};
use axum::{middleware, Router};
use serde_json::json;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// The routes of the nodemgr port: the node WebSocket and the operator API.
pub fn nodemgr_router(app: Arc<NodemgrApp>) -> Router {
    let operator = Router::new()
        .route("/api/v1/nodes", get(operator_api::list_nodes))
        .route("/api/v1/nodes/{node_id}", get(operator_api::get_node))
        .route(
            "/api/v1/nodes/{node_id}/metrics",
            get(operator_api::metric_history),
        )
        .route(
            "/api/v1/nodes/{node_id}/commands",
            post(operator_api::send_command),
        )
        .route(
            "/api/v1/commands/{command_id}",
            get(operator_api::get_command),
        )
        .route_layer(middleware::from_fn_with_state(
            app.clone(),
            operator_api::require_token,
        ));
    Router::new()
        .route(WS_PATH, get(nodemgr_ws::upgrade))
        .route("/api/v1/health", get(operator_api::health))
        .merge(operator)
        .with_state(app)
}

/// Serves `router` on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use axum::serve::ListenerExt;
    // Every protocol here sends small frames that should leave at once: Nagle's algorithm
    // would hold one back until the peer acknowledges the previous, up to its delayed-ACK
    // timer (40 ms on Linux).
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
}

/// A service running in this process, stopped on drop.
#[derive(Debug)]
pub struct Running<A> {
    pub addr: SocketAddr,
    pub app: Arc<A>,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

pub type RunningNodemgr = Running<NodemgrApp>;
pub type RunningCmdrelay = Running<CmdrelayApp>;

impl RunningNodemgr {
    pub fn ws_url(&self) -> String {
        format!("ws://{}{}", self.addr, WS_PATH)
    }

    pub fn operator_url(&self) -> String {
        format!("http://{}/api/v1", self.addr)
    }
}

impl RunningCmdrelay {
    pub fn ws_url(&self) -> String {
        format!("ws://{}{}", self.addr, cmdrelay::WS_PATH)
    }

    /// The token-management API.
    pub fn admin_url(&self) -> String {
        format!("http://{}/api/v1", self.addr)
    }
}

impl<A> Running<A> {
    /// Serves `router` on `listener` in a background task.
    fn spawn(listener: TcpListener, addr: SocketAddr, app: Arc<A>, router: Router) -> Self {
        let (tx, rx) = oneshot::channel();
        let task = tokio::spawn(serve(listener, router, async {
            let _ = rx.await;
        }));
        Self {
            addr,
            app,
            shutdown: Some(tx),
            task: Some(task),
        }
    }

    /// Stops accepting, and waits for the server task to end.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl<A> Drop for Running<A> {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// Why a service could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the listener has no local address: {0}")]
    Listener(std::io::Error),
    #[error("cannot bind the SFU's media socket: {0}")]
    MediaSocket(std::io::Error),
}

/// Opens the store and serves nodemgr on `listener` in a background task.
pub async fn start_nodemgr(
    listener: TcpListener,
    session: SessionConfig,
    store: &StoreConfig,
) -> Result<RunningNodemgr, ServerError> {
    let addr = listener.local_addr().map_err(ServerError::Listener)?;
    let store = Store::open(store).await?;
    let app = NodemgrApp::new(session, store);
    let router = nodemgr_router(app.clone());
    Ok(Running::spawn(listener, addr, app, router))
}

/// The routes of the cmdrelay port: the client WebSocket and the token API.
pub fn cmdrelay_router(app: Arc<CmdrelayApp>) -> Router {
    let admin = Router::new()
        .route(
            "/api/v1/tokens",
            get(token_api::list_tokens).post(token_api::add_token),
        )
        .route("/api/v1/tokens/{token}", delete(token_api::revoke_token))
        .route("/api/v1/rooms", get(token_api::rooms))
        .route_layer(middleware::from_fn_with_state(
            app.clone(),
            token_api::require_admin,
        ));
    Router::new()
        .route(cmdrelay::WS_PATH, get(cmdrelay_ws::upgrade))
        .route("/api/v1/health", get(operator_api::health))
        .merge(admin)
        .with_state(app)
}

/// What a cmdrelay service starts with, besides its session settings.
#[derive(Debug, Clone)]
pub struct CmdrelaySetup {
    pub session: cmdrelay::SessionConfig,
    /// Tokens added (without expiry) at start, so that a fresh server accepts someone.
    pub tokens: Vec<String>,
    pub admin_token: String,
}

impl Default for CmdrelaySetup {
    fn default() -> Self {
        Self {
            session: cmdrelay::SessionConfig::default(),
            tokens: vec![cmdrelay::DEFAULT_TOKEN.to_owned()],
            admin_token: cmdrelay::DEFAULT_TOKEN.to_owned(),
        }
    }
}

/// Opens the token store, adds the start-up tokens, and serves cmdrelay on `listener`.
pub async fn start_cmdrelay(
    listener: TcpListener,
    setup: CmdrelaySetup,
    store: &StoreConfig,
) -> Result<RunningCmdrelay, ServerError> {
    let addr = listener.local_addr().map_err(ServerError::Listener)?;
    let tokens = TokenStore::open(store).await?;
    let now = crate::transport::read_clock().wall;
    tokens
        .put_many(&setup.tokens, "start-up token", now)
        .await?;
    let app = CmdrelayApp::new(setup.session, tokens, setup.admin_token);
    let router = cmdrelay_router(app.clone());
    Ok(Running::spawn(listener, addr, app, router))
}

pub type RunningEcapture = Running<EcaptureApp>;

impl RunningEcapture {
    /// The stream's URL; any path is served, the document's example uses `/`.
    pub fn ws_url(&self) -> String {
        format!("ws://{}/", self.addr)
    }
}

/// Every path of the ecapture port upgrades to the stream.
pub fn ecapture_router(app: Arc<EcaptureApp>) -> Router {
    Router::new().fallback(ecapture_ws::upgrade).with_state(app)
}

/// Serves ecapture on `listener`: logs the start-up lines, then starts the event source.
pub async fn start_ecapture(
    listener: TcpListener,
    config: EcaptureConfig,
) -> Result<RunningEcapture, ServerError> {
    let addr = listener.local_addr().map_err(ServerError::Listener)?;
    let app = EcaptureApp::new(&config);
    log_startup(&app, &config, addr);
    let router = ecapture_router(app.clone());
    let running = Running::spawn(listener, addr, app, router);
    spawn_source(&running.app, config.source);
    Ok(running)
}

fn log_startup(app: &EcaptureApp, config: &EcaptureConfig, addr: SocketAddr) {
    let now = crate::transport::read_clock();
    let version = env!("CARGO_PKG_VERSION");
    app.publish_log(
        now,
        "info",
        "reference eCapture event source starting",
        json!({"version": version}),
    );
    app.publish_log(
        now,
        "info",
        "event source",
        json!({"source": config.source.describe()}),
    );
    let period = config.session.heartbeat_period.as_secs_f64();
    app.publish_log(now, "info", "heartbeat", json!({"period_seconds": period}));
    let faults: Vec<_> = config.session.faults.iter().map(|f| f.name()).collect();
    if !faults.is_empty() {
        app.publish_log(now, "warn", "faults injected", json!({"faults": faults}));
    }
    app.publish_log(
        now,
        "info",
        "listening",
        json!({"url": format!("ws://{addr}/")}),
    );
}

pub type RunningLogrtc = Running<LogrtcApp>;

impl RunningLogrtc {
    /// The signaling WebSocket, `ws://<addr>/signaling`.
    pub fn ws_url(&self) -> String {
        format!("ws://{}{}", self.addr, logrtc::WS_PATH)
    }

    /// The log viewer page.
    pub fn viewer_url(&self) -> String {
        format!("http://{}/", self.addr)
    }
}

/// The viewer page: one file, no build step (L9).
pub const VIEWER_HTML: &str = include_str!("../web/logrtc/index.html");

/// The routes of the logrtc port: the viewer page and the signaling WebSocket.
pub fn logrtc_router(app: Arc<LogrtcApp>) -> Router {
    Router::new()
        .route("/", get(|| async { axum::response::Html(VIEWER_HTML) }))
        .route(logrtc::WS_PATH, get(logrtc_ws::upgrade))
        .route("/api/v1/health", get(operator_api::health))
        .with_state(app)
}

/// Serves logrtc signaling and the viewer on `listener`.
pub async fn start_logrtc(
    listener: TcpListener,
    session: logrtc::SessionConfig,
) -> Result<RunningLogrtc, ServerError> {
    let addr = listener.local_addr().map_err(ServerError::Listener)?;
    let app = LogrtcApp::new(session);
    let router = logrtc_router(app.clone());
    Ok(Running::spawn(listener, addr, app, router))
}

/// What an sfu service starts with.
#[derive(Debug, Clone)]
pub struct SfuSetup {
    pub session: sfu::SessionConfig,
    pub ids: sfu::ServerIds,
    /// The media socket's address (port 0 picks a free one).
    pub media_bind: SocketAddr,
    pub media: crate::media::MediaOptions,
}

impl Default for SfuSetup {
    fn default() -> Self {
        Self {
            session: sfu::SessionConfig::default(),
            ids: sfu::ServerIds::default(),
            media_bind: SocketAddr::from(([127, 0, 0, 1], sfu::DEFAULT_PORT)),
            media: crate::media::MediaOptions::default(),
        }
    }
}

/// The sfu service: signaling on a TCP listener, media on its UDP socket.
#[derive(Debug)]
pub struct RunningSfu {
    pub signaling: Running<SfuApp>,
    pub media: MediaLoop,
}

impl RunningSfu {
    /// The signaling URL without the `peer` query: `ws://<addr>/ws`.
    pub fn ws_url(&self) -> String {
        format!("ws://{}{}", self.signaling.addr, sfu::WS_PATH)
    }

    /// The demo page.
    pub fn page_url(&self) -> String {
        format!("http://{}/", self.signaling.addr)
    }

    pub fn app(&self) -> &Arc<SfuApp> {
        &self.signaling.app
    }

    pub async fn stop(self) {
        self.signaling.stop().await;
    }
}

/// The SFU demo page: one file, no build step (S9).
pub const SFU_DEMO_HTML: &str = include_str!("../web/sfu/index.html");

/// The routes of the sfu port: the demo page, the signaling WebSocket, the room occupancy and
/// media counters.
pub fn sfu_router(app: Arc<SfuApp>) -> Router {
    Router::new()
        .route("/", get(|| async { axum::response::Html(SFU_DEMO_HTML) }))
        .route(sfu::WS_PATH, get(sfu_ws::upgrade))
        .route("/api/v1/health", get(operator_api::health))
        .route("/api/v1/stats", get(sfu_stats))
        .with_state(app)
}

async fn sfu_stats(
    axum::extract::State(app): axum::extract::State<Arc<SfuApp>>,
) -> axum::Json<serde_json::Value> {
    let media = app.media.stats().await;
    axum::Json(json!({"rooms": app.occupancy(), "media": media}))
}

/// Binds the media socket, starts the media loop, and serves signaling on `listener`.
pub async fn start_sfu(listener: TcpListener, setup: SfuSetup) -> Result<RunningSfu, ServerError> {
    let addr = listener.local_addr().map_err(ServerError::Listener)?;
    let faults = setup.session.faults.clone();
    let media = start_media(MediaSetup {
        bind: setup.media_bind,
        faults,
        options: setup.media,
    })
    .await
    .map_err(ServerError::MediaSocket)?;
    let app = SfuApp::new(setup.session, setup.ids, media.handle.clone());
    let router = sfu_router(app.clone());
    let signaling = Running::spawn(listener, addr, app, router);
    Ok(RunningSfu { signaling, media })
}
