//! The operator REST API on the nodemgr port, under `/api/v1/`. Every route needs
//! `Authorization: Bearer <token>` with the server's token.

use super::{DispatchRefused, NodemgrApp};
use crate::protocol::nodemgr::envelope::rfc3339;
use crate::protocol::nodemgr::{CommandOrder, ErrorCode};
use crate::store::{CommandRecord, StoreError};
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::json;
use std::sync::Arc;

/// Longest command timeout an operator may ask for, in seconds.
pub const MAX_COMMAND_TIMEOUT_SECS: u64 = 3600;
/// Default command timeout, as in the document's example.
pub const DEFAULT_COMMAND_TIMEOUT_SECS: u64 = 30;
/// Most metric samples one history request returns.
pub const MAX_HISTORY: i64 = 10_000;
/// Longest command text accepted.
pub const MAX_COMMAND_TEXT: usize = 8 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("missing or wrong bearer token")]
    Unauthorized,
    #[error("node {0} is not known")]
    NodeNotFound(String),
    #[error("node {0} is not connected")]
    NodeNotConnected(String),
    #[error("node {0} has too many commands waiting")]
    NodeBusy(String),
    #[error("command {0} is not known")]
    CommandNotFound(String),
    #[error("{0}")]
    BadRequest(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl ApiError {
    fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            Self::Unauthorized => (StatusCode::UNAUTHORIZED, ErrorCode::InvalidToken.as_str()),
            Self::NodeNotFound(_) => (StatusCode::NOT_FOUND, ErrorCode::NodeNotFound.as_str()),
            Self::NodeNotConnected(_) => (StatusCode::CONFLICT, ErrorCode::NodeNotFound.as_str()),
            Self::NodeBusy(_) => (StatusCode::SERVICE_UNAVAILABLE, "NODE_BUSY"),
            Self::CommandNotFound(_) => (StatusCode::NOT_FOUND, "COMMAND_NOT_FOUND"),
            Self::BadRequest(_) => (StatusCode::BAD_REQUEST, "BAD_REQUEST"),
            Self::Store(_) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                ErrorCode::DatabaseError.as_str(),
            ),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        let body = json!({ "error_code": code, "message": self.to_string() });
        (status, Json(body)).into_response()
    }
}

pub async fn require_token(
    State(app): State<Arc<NodemgrApp>>,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    if bearer(&request) != Some(app.session.token.as_str()) {
        return Err(ApiError::Unauthorized);
    }
    Ok(next.run(request).await)
}

/// The token of an `Authorization: Bearer <token>` header.
pub fn bearer(request: &Request) -> Option<&str> {
    request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
}

pub async fn health() -> Json<serde_json::Value> {
    Json(json!({ "status": "ok" }))
}

pub async fn list_nodes(State(app): State<Arc<NodemgrApp>>) -> Result<Response, ApiError> {
    let nodes = app.store.list_nodes().await?;
    let nodes: Vec<_> = nodes
        .into_iter()
        .map(|node| {
            let connected = app.registry.is_connected(&node.node_id);
            json!({ "connected": connected, "node": node })
        })
        .collect();
    Ok(Json(json!({ "nodes": nodes })).into_response())
}

pub async fn get_node(
    State(app): State<Arc<NodemgrApp>>,
    Path(node_id): Path<String>,
) -> Result<Response, ApiError> {
    let node = app.store.node(&node_id).await?;
    let node = node.ok_or(ApiError::NodeNotFound(node_id))?;
    let connected = app.registry.is_connected(&node.node_id);
    Ok(Json(json!({ "connected": connected, "node": node })).into_response())
}

#[derive(Debug, Deserialize)]
pub struct HistoryQuery {
    limit: Option<i64>,
}

pub async fn metric_history(
    State(app): State<Arc<NodemgrApp>>,
    Path(node_id): Path<String>,
    Query(query): Query<HistoryQuery>,
) -> Result<Response, ApiError> {
    if app.store.node(&node_id).await?.is_none() {
        return Err(ApiError::NodeNotFound(node_id));
    }
    let limit = query.limit.unwrap_or(100).clamp(1, MAX_HISTORY);
    let samples = app.store.metric_history(&node_id, limit).await?;
    Ok(Json(json!({ "node_id": node_id, "metrics": samples })).into_response())
}

#[derive(Debug, Deserialize)]
pub struct NewCommand {
    command_text: String,
    timeout: Option<u64>,
}

/// Queues a command: stored as `queued` first, then handed to the node's connection.
pub async fn send_command(
    State(app): State<Arc<NodemgrApp>>,
    Path(node_id): Path<String>,
    body: Result<Json<NewCommand>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(body) = body.map_err(|rejection| ApiError::BadRequest(rejection.body_text()))?;
    let timeout_secs = body.timeout.unwrap_or(DEFAULT_COMMAND_TIMEOUT_SECS);
    validate_command(&body.command_text, timeout_secs)?;
    let Some(dispatch) = app.registry.dispatcher(&node_id) else {
        return Err(not_connected(&app, node_id).await);
    };
    // Take the queue slot before storing, so that a refusal never leaves a stored command
    // that no connection will run.
    let slot = match dispatch.try_reserve() {
        Ok(slot) => slot,
        Err(DispatchRefused::Full) => return Err(ApiError::NodeBusy(node_id)),
        Err(DispatchRefused::Closed) => return Err(not_connected(&app, node_id).await),
    };
    let record = CommandRecord {
        command_id: format!("cmd-{}", uuid::Uuid::new_v4()),
        node_id: node_id.clone(),
        command_text: body.command_text,
        timeout: i64::try_from(timeout_secs).unwrap_or(i64::MAX),
        state: crate::store::command_state::QUEUED.to_owned(),
        exit_code: None,
        stdout: None,
        stderr: None,
        execution_time_ms: None,
        created_at: rfc3339(chrono::Utc::now()),
        started_at: None,
        finished_at: None,
    };
    app.store.insert_command(&record).await?;
    let order = CommandOrder {
        command_id: record.command_id.clone(),
        command_text: record.command_text.clone(),
        timeout_secs,
    };
    slot.send(order);
    Ok((StatusCode::ACCEPTED, Json(record)).into_response())
}

async fn not_connected(app: &NodemgrApp, node_id: String) -> ApiError {
    match app.store.node(&node_id).await {
        Ok(Some(_)) => ApiError::NodeNotConnected(node_id),
        Ok(None) => ApiError::NodeNotFound(node_id),
        Err(error) => ApiError::Store(error),
    }
}

fn validate_command(text: &str, timeout_secs: u64) -> Result<(), ApiError> {
    if text.trim().is_empty() || text.len() > MAX_COMMAND_TEXT {
        return Err(ApiError::BadRequest(format!(
            "command_text must be 1 to {MAX_COMMAND_TEXT} bytes"
        )));
    }
    if timeout_secs == 0 || timeout_secs > MAX_COMMAND_TIMEOUT_SECS {
        return Err(ApiError::BadRequest(format!(
            "timeout must be 1 to {MAX_COMMAND_TIMEOUT_SECS} seconds"
        )));
    }
    Ok(())
}

pub async fn get_command(
    State(app): State<Arc<NodemgrApp>>,
    Path(command_id): Path<String>,
) -> Result<Response, ApiError> {
    let record = app.store.command(&command_id).await?;
    let record = record.ok_or(ApiError::CommandNotFound(command_id))?;
    Ok(Json(record).into_response())
}
