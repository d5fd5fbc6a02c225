//! cmdrelay's token store: a table of tokens with an optional expiry and a revocation time,
//! in the same database as the rest of the server (SQLite file by default).

use super::{open_pool, StoreConfig, StoreError};
use crate::protocol::cmdrelay::TokenStatus;
use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use sqlx::{AnyPool, Row};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

const TABLE: &str = "CREATE TABLE IF NOT EXISTS cmdrelay_tokens (
    token TEXT PRIMARY KEY,
    label TEXT NOT NULL,
    created_at TEXT NOT NULL,
    expires_at TEXT,
    revoked_at TEXT
)";

/// One token as the operator API lists it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TokenRecord {
    pub token: String,
    pub label: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

impl TokenRecord {
    pub fn status(&self, now: DateTime<Utc>) -> TokenStatus {
        if self.revoked_at.is_some() {
            TokenStatus::Revoked
        } else if self.expires_at.is_some_and(|at| at <= now) {
            TokenStatus::Expired
        } else {
            TokenStatus::Valid
        }
    }
}

/// How long a looked-up token is trusted before the table is read again. Revocation through
/// this store takes effect at once; a change made behind its back (another server on the same
/// PostgreSQL) within this long. Expiry is always checked against the cached record.
const CACHE_TTL: std::time::Duration = std::time::Duration::from_secs(5);
/// Entries kept before the cache is emptied, so that a flood of unknown tokens stays bounded.
const CACHE_CAPACITY: usize = 100_000;

type Cache = HashMap<String, (std::time::Instant, Option<TokenRecord>)>;

/// A handle to the token table, with a short-lived cache of lookups so that a burst of inits
/// does not queue on the database. Cheap to clone.
#[derive(Clone)]
pub struct TokenStore {
    pool: AnyPool,
    cache: Arc<Mutex<Cache>>,
}

impl std::fmt::Debug for TokenStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenStore").finish_non_exhaustive()
    }
}

fn rfc3339(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn parse_time(text: Option<String>) -> Option<DateTime<Utc>> {
    text.and_then(|t| DateTime::parse_from_rfc3339(&t).ok())
        .map(|t| t.with_timezone(&Utc))
}

impl TokenStore {
    pub async fn open(config: &StoreConfig) -> Result<Self, StoreError> {
        let pool = open_pool(config).await?;
        sqlx::query(TABLE).execute(&pool).await?;
        Ok(Self {
            pool,
            cache: Arc::default(),
        })
    }

    /// What `token` is worth at `now`.
    pub async fn check(&self, token: &str, now: DateTime<Utc>) -> TokenStatus {
        if let Some(cached) = self.cached(token) {
            return cached.map_or(TokenStatus::Unknown, |record| record.status(now));
        }
        let looked_up = self.get(token).await;
        if let Ok(record) = &looked_up {
            self.remember(token, record.clone());
        }
        match looked_up {
            Ok(Some(record)) => record.status(now),
            Ok(None) => TokenStatus::Unknown,
            Err(error) => TokenStatus::StoreFailed(error.to_string()),
        }
    }

    pub async fn get(&self, token: &str) -> Result<Option<TokenRecord>, StoreError> {
        let row = sqlx::query(
            "SELECT token, label, created_at, expires_at, revoked_at FROM cmdrelay_tokens WHERE token = $1",
        )
        .bind(token)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|row| record(&row)).transpose()
    }

    fn lock_cache(&self) -> std::sync::MutexGuard<'_, Cache> {
        self.cache.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn cached(&self, token: &str) -> Option<Option<TokenRecord>> {
        let cache = self.lock_cache();
        let (at, record) = cache.get(token)?;
        (at.elapsed() < CACHE_TTL).then(|| record.clone())
    }

    fn remember(&self, token: &str, record: Option<TokenRecord>) {
        let mut cache = self.lock_cache();
        if cache.len() >= CACHE_CAPACITY {
            cache.clear();
        }
        cache.insert(token.to_owned(), (std::time::Instant::now(), record));
    }

    fn forget(&self, token: &str) {
        self.lock_cache().remove(token);
    }

    /// Adds `token`, or renews it (clearing a revocation) when it exists.
    pub async fn put(
        &self,
        token: &str,
        label: &str,
        expires_at: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Result<TokenRecord, StoreError> {
        sqlx::query(
            "INSERT INTO cmdrelay_tokens (token, label, created_at, expires_at, revoked_at)
             VALUES ($1, $2, $3, $4, NULL)
             ON CONFLICT (token) DO UPDATE SET label = $2, expires_at = $4, revoked_at = NULL",
        )
        .bind(token)
        .bind(label)
        .bind(rfc3339(now))
        .bind(expires_at.map(rfc3339))
        .execute(&self.pool)
        .await?;
        self.forget(token);
        let stored = self.get(token).await?;
        stored.ok_or(StoreError::Sql(sqlx::Error::RowNotFound))
    }

    /// Adds many tokens without expiry in one transaction (for load runs and bulk imports);
    /// existing ones are left as they are.
    pub async fn put_many(
        &self,
        tokens: &[String],
        label: &str,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        for token in tokens {
            sqlx::query(
                "INSERT INTO cmdrelay_tokens (token, label, created_at) VALUES ($1, $2, $3)
                 ON CONFLICT (token) DO NOTHING",
            )
            .bind(token)
            .bind(label)
            .bind(rfc3339(now))
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        for token in tokens {
            self.forget(token);
        }
        Ok(())
    }

    pub async fn list(&self) -> Result<Vec<TokenRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT token, label, created_at, expires_at, revoked_at FROM cmdrelay_tokens ORDER BY created_at, token",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(record).collect()
    }

    /// Marks `token` revoked; false when there is no such token.
    pub async fn revoke(&self, token: &str, now: DateTime<Utc>) -> Result<bool, StoreError> {
        let result = sqlx::query(
            "UPDATE cmdrelay_tokens SET revoked_at = $1 WHERE token = $2 AND revoked_at IS NULL",
        )
        .bind(rfc3339(now))
        .bind(token)
        .execute(&self.pool)
        .await?;
        self.forget(token);
        Ok(result.rows_affected() > 0)
    }
}

fn record(row: &sqlx::any::AnyRow) -> Result<TokenRecord, StoreError> {
    let created: String = row.try_get("created_at")?;
    Ok(TokenRecord {
        token: row.try_get("token")?,
        label: row.try_get("label")?,
        created_at: parse_time(Some(created)).unwrap_or_default(),
        expires_at: parse_time(row.try_get("expires_at")?),
        revoked_at: parse_time(row.try_get("revoked_at")?),
    })
}
