//! cmdrelay's token management API, on the cmdrelay port under `/api/v1/`. Every route needs
//! `Authorization: Bearer <admin token>`.
//!
//! - `GET /api/v1/tokens`: every token with its label, expiry and revocation.
//! - `POST /api/v1/tokens` `{"token"?, "label"?, "expires_in_secs"?}`: adds (or renews) a token;
//!   a random one when `token` is absent.
//! - `DELETE /api/v1/tokens/{token}`: revokes it and disconnects its room at once.
//! - `GET /api/v1/rooms`: how many rooms and clients there are.

use super::operator_api::bearer;
use super::{read_clock, CmdrelayApp};
use crate::store::StoreError;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::json;
use std::sync::Arc;

/// Longest token accepted, in bytes.
pub const MAX_TOKEN_BYTES: usize = 256;

#[derive(Debug, thiserror::Error)]
pub enum TokenApiError {
    #[error("missing or wrong bearer token")]
    Unauthorized,
    #[error("no active token {0:?}")]
    NotFound(String),
    #[error("{0}")]
    BadRequest(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl IntoResponse for TokenApiError {
    fn into_response(self) -> Response {
        let (status, code) = match &self {
            Self::Unauthorized => (StatusCode::UNAUTHORIZED, "UNAUTHORIZED"),
            Self::NotFound(_) => (StatusCode::NOT_FOUND, "TOKEN_NOT_FOUND"),
            Self::BadRequest(_) => (StatusCode::BAD_REQUEST, "BAD_REQUEST"),
            Self::Store(_) => (StatusCode::INTERNAL_SERVER_ERROR, "STORE_UNAVAILABLE"),
        };
        let body = json!({ "error_code": code, "message": self.to_string() });
        (status, Json(body)).into_response()
    }
}

pub async fn require_admin(
    State(app): State<Arc<CmdrelayApp>>,
    request: Request,
    next: Next,
) -> Result<Response, TokenApiError> {
    if bearer(&request) != Some(app.admin_token.as_str()) {
        return Err(TokenApiError::Unauthorized);
    }
    Ok(next.run(request).await)
}

pub async fn list_tokens(
    State(app): State<Arc<CmdrelayApp>>,
) -> Result<Json<serde_json::Value>, TokenApiError> {
    let tokens = app.tokens.list().await?;
    Ok(Json(json!({ "tokens": tokens })))
}

#[derive(Debug, Deserialize)]
pub struct NewToken {
    token: Option<String>,
    #[serde(default)]
    label: String,
    expires_in_secs: Option<u64>,
}

pub async fn add_token(
    State(app): State<Arc<CmdrelayApp>>,
    body: Result<Json<NewToken>, JsonRejection>,
) -> Result<Response, TokenApiError> {
    let Json(new) = body.map_err(|e| TokenApiError::BadRequest(e.body_text()))?;
    let token = new
        .token
        .unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string());
    if token.is_empty() || token.len() > MAX_TOKEN_BYTES {
        return Err(TokenApiError::BadRequest(format!(
            "a token is 1 to {MAX_TOKEN_BYTES} bytes"
        )));
    }
    let now = read_clock().wall;
    let expires_at = new
        .expires_in_secs
        .map(|secs| expiry(now, secs))
        .transpose()?;
    let record = app.tokens.put(&token, &new.label, expires_at, now).await?;
    Ok((StatusCode::CREATED, Json(record)).into_response())
}

fn expiry(now: DateTime<Utc>, secs: u64) -> Result<DateTime<Utc>, TokenApiError> {
    i64::try_from(secs)
        .ok()
        .and_then(chrono::Duration::try_seconds)
        .and_then(|d| now.checked_add_signed(d))
        .ok_or_else(|| TokenApiError::BadRequest("expires_in_secs is too large".to_owned()))
}

pub async fn revoke_token(
    State(app): State<Arc<CmdrelayApp>>,
    Path(token): Path<String>,
) -> Result<StatusCode, TokenApiError> {
    if !app.tokens.revoke(&token, read_clock().wall).await? {
        return Err(TokenApiError::NotFound(token));
    }
    let kicked = app.kick_room(&token, "token revoked");
    tracing::info!(kicked, "token revoked; its room was disconnected");
    Ok(StatusCode::NO_CONTENT)
}

pub async fn rooms(State(app): State<Arc<CmdrelayApp>>) -> Json<serde_json::Value> {
    let (rooms, clients) = app.occupancy();
    Json(json!({ "rooms": rooms, "clients": clients }))
}
