//! Assembles the services and serves them on already-bound listeners (so tests bind port 0).

use crate::protocol::nodemgr::{SessionConfig, WS_PATH};
use crate::store::{Store, StoreConfig, StoreError};
use crate::transport::{nodemgr_ws, operator_api, NodemgrApp};
use axum::routing::{get, post};
use axum::{middleware, Router};
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
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
}

/// A nodemgr service running in this process, stopped on drop.
#[derive(Debug)]
pub struct RunningNodemgr {
    pub addr: SocketAddr,
    pub app: Arc<NodemgrApp>,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

impl RunningNodemgr {
    pub fn ws_url(&self) -> String {
        format!("ws://{}{}", self.addr, WS_PATH)
    }

    pub fn operator_url(&self) -> String {
        format!("http://{}/api/v1", self.addr)
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

impl Drop for RunningNodemgr {
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
    let (tx, rx) = oneshot::channel();
    let router = nodemgr_router(app.clone());
    let task = tokio::spawn(serve(listener, router, async {
        let _ = rx.await;
    }));
    Ok(RunningNodemgr {
        addr,
        app,
        shutdown: Some(tx),
        task: Some(task),
    })
}
