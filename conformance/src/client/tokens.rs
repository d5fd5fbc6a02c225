//! Where cmdrelay cases get their tokens. Clients with one token share a room, and cases run
//! concurrently, so each case needs rooms no other case touches: a fresh token per room.

use crate::case::Failure;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::sync::Notify;

/// How the suite obtains tokens for a cmdrelay target.
#[derive(Debug, Clone)]
pub enum TokenSource {
    /// A token API like the reference server's (`POST <base>/tokens`): a fresh token per room.
    Mint(TokenMinter),
    /// The target accepts any token: random tokens make fresh rooms. Token rejection cases
    /// are then expected to fail, truthfully.
    Any,
    /// Only these tokens; each case leases the ones it needs, so cases never share a room.
    Pool(Arc<TokenPool>),
}

/// Tokens a case holds; pooled ones go back when it is dropped.
#[derive(Debug)]
pub struct RoomTokens {
    tokens: Vec<String>,
    pool: Option<Arc<TokenPool>>,
}

impl RoomTokens {
    pub fn get(&self, index: usize) -> &str {
        self.tokens.get(index).map_or("", String::as_str)
    }
}

impl Drop for RoomTokens {
    fn drop(&mut self) {
        if let Some(pool) = &self.pool {
            pool.give_back(std::mem::take(&mut self.tokens));
        }
    }
}

impl TokenSource {
    /// Tokens for `rooms` distinct rooms that no other running case uses.
    pub async fn rooms(&self, rooms: usize) -> Result<RoomTokens, Failure> {
        let (tokens, pool) = match self {
            Self::Mint(minter) => {
                let mut tokens = Vec::with_capacity(rooms);
                for _ in 0..rooms {
                    tokens.push(minter.mint(None).await?);
                }
                (tokens, None)
            }
            Self::Any => ((0..rooms).map(|_| random_token("room")).collect(), None),
            Self::Pool(pool) => (pool.lease(rooms).await?, Some(pool.clone())),
        };
        Ok(RoomTokens { tokens, pool })
    }

    /// A token the target has never heard of.
    pub fn unknown() -> String {
        random_token("never-issued")
    }
}

fn random_token(kind: &str) -> String {
    format!("conformance-{kind}-{}", uuid::Uuid::new_v4().simple())
}

/// Calls a token API: `POST <base>/tokens` with `{"label", "expires_in_secs"?}` answers
/// `{"token": ...}`, with `Authorization: Bearer <admin token>`.
#[derive(Debug, Clone)]
pub struct TokenMinter {
    base: String,
    admin_token: String,
    http: reqwest::Client,
}

impl TokenMinter {
    pub fn new(base: &str, admin_token: &str, wait: Duration) -> Self {
        Self {
            base: base.trim_end_matches('/').to_owned(),
            admin_token: admin_token.to_owned(),
            http: reqwest::Client::builder()
                .timeout(wait)
                .build()
                .unwrap_or_default(),
        }
    }

    /// A new token, valid for `expires_in_secs` (0: already expired) or without expiry.
    pub async fn mint(&self, expires_in_secs: Option<u64>) -> Result<String, Failure> {
        let url = format!("{}/tokens", self.base);
        let body =
            serde_json::json!({ "label": "conformance", "expires_in_secs": expires_in_secs });
        let harness = |why: String| {
            Failure::Harness(format!(
                "could not mint a token at {url}: {why}; a target without a token API needs --token-mode any or --tokens"
            ))
        };
        let response = self
            .http
            .post(&url)
            .bearer_auth(&self.admin_token)
            .json(&body)
            .send()
            .await
            .map_err(|e| harness(e.to_string()))?;
        let status = response.status();
        let value: serde_json::Value = response.json().await.unwrap_or_default();
        match value["token"].as_str() {
            Some(token) if status.is_success() => Ok(token.to_owned()),
            _ => Err(harness(format!("HTTP {status} {value}"))),
        }
    }
}

/// A fixed set of tokens, leased whole to one case at a time.
#[derive(Debug)]
pub struct TokenPool {
    free: Mutex<Vec<String>>,
    total: usize,
    returned: Notify,
}

impl TokenPool {
    pub fn new(tokens: Vec<String>) -> Self {
        Self {
            total: tokens.len(),
            free: Mutex::new(tokens),
            returned: Notify::new(),
        }
    }

    async fn lease(&self, count: usize) -> Result<Vec<String>, Failure> {
        if count > self.total {
            return Err(Failure::Unimplemented(format!(
                "the case needs {count} tokens (rooms) and only {} were given; pass more with --tokens",
                self.total
            )));
        }
        loop {
            let returned = self.returned.notified();
            {
                let mut free = self.free.lock().unwrap_or_else(PoisonError::into_inner);
                if free.len() >= count {
                    let at = free.len() - count;
                    return Ok(free.split_off(at));
                }
            }
            returned.await;
        }
    }

    fn give_back(&self, tokens: Vec<String>) {
        self.free
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend(tokens);
        self.returned.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn pooled_tokens_are_leased_whole_and_come_back_on_drop() {
        let source = TokenSource::Pool(Arc::new(TokenPool::new(vec!["a".into(), "b".into()])));
        let first = source.rooms(2).await.expect("two tokens");
        let waiting = tokio::spawn({
            let source = source.clone();
            async move { source.rooms(1).await.map(|t| t.get(0).to_owned()) }
        });
        tokio::task::yield_now().await;
        assert!(
            !waiting.is_finished(),
            "a lease waits while the pool is empty"
        );
        drop(first);
        let token = waiting.await.expect("joined").expect("a token");
        assert!(token == "a" || token == "b");
    }

    #[tokio::test]
    async fn a_case_that_needs_more_tokens_than_given_is_unimplemented() {
        let source = TokenSource::Pool(Arc::new(TokenPool::new(vec!["a".into()])));
        let error = source.rooms(2).await.expect_err("too few");
        assert!(matches!(error, Failure::Unimplemented(_)));
    }
}
