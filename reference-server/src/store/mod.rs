//! Persistence through sqlx: a SQLite file by default, PostgreSQL by URL.
//!
//! Writes go through one writer task that commits them in batches (group commit), and each
//! caller is answered only after its batch committed. Reads use the pool directly.

mod nodemgr;
mod schema;
pub mod tokens;

pub use nodemgr::{state as command_state, CommandRecord, MetricSample, NodeRecord};

use crate::protocol::nodemgr::{StoreFailure, StoreOp};
use sqlx::any::{AnyPoolOptions, AnyQueryResult};
use sqlx::{AnyPool, Executor};
use std::path::Path;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// Most writes one transaction carries.
const MAX_BATCH: usize = 512;
/// Writes that may wait for the writer before callers are pushed back.
const WRITE_QUEUE_DEPTH: usize = 16 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("could not open the database {url}: {source}")]
    Open { url: String, source: sqlx::Error },
    #[error("could not create the data directory {path}: {source}")]
    DataDir {
        path: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Sql(#[from] sqlx::Error),
    #[error("the store's writer has stopped")]
    WriterGone,
}

/// Settings for [`Store::open`].
#[derive(Debug, Clone)]
pub struct StoreConfig {
    pub url: String,
    /// SQLite only: how long a write waits on a lock before it fails.
    pub busy_timeout: Duration,
}

impl StoreConfig {
    /// The default: `<data_dir>/reference-server.sqlite3`.
    pub fn sqlite_in(data_dir: &Path) -> Result<Self, StoreError> {
        std::fs::create_dir_all(data_dir).map_err(|source| StoreError::DataDir {
            path: data_dir.display().to_string(),
            source,
        })?;
        let file = data_dir.join("reference-server.sqlite3");
        Ok(Self::from_url(format!(
            "sqlite://{}?mode=rwc",
            file.display()
        )))
    }

    pub fn from_url(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            busy_timeout: Duration::from_secs(5),
        }
    }

    fn is_sqlite(&self) -> bool {
        self.url.starts_with("sqlite:")
    }
}

struct WriteJob {
    op: StoreOp,
    done: oneshot::Sender<Result<(), StoreFailure>>,
}

/// A handle to the database. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    writer: mpsc::Sender<WriteJob>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").finish_non_exhaustive()
    }
}

impl Store {
    pub async fn open(config: &StoreConfig) -> Result<Self, StoreError> {
        let pool = open_pool(config).await?;
        schema::migrate(&pool).await?;
        let (writer, jobs) = mpsc::channel(WRITE_QUEUE_DEPTH);
        tokio::spawn(run_writer(pool.clone(), jobs));
        Ok(Self { pool, writer })
    }

    /// Commits `op` and returns once it is durable (or failed).
    pub async fn write(&self, op: StoreOp) -> Result<(), StoreFailure> {
        let (done, committed) = oneshot::channel();
        let gone = || StoreFailure::Database(StoreError::WriterGone.to_string());
        self.writer
            .send(WriteJob { op, done })
            .await
            .map_err(|_| gone())?;
        committed.await.map_err(|_| gone())?
    }

    /// Creates any missing table (run at open; public so operators and tests can repair).
    pub async fn ensure_schema(&self) -> Result<(), StoreError> {
        Ok(schema::migrate(&self.pool).await?)
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }
}

/// A pool on the configured database, with the SQLite settings applied to each connection.
pub(crate) async fn open_pool(config: &StoreConfig) -> Result<AnyPool, StoreError> {
    sqlx::any::install_default_drivers();
    connect(config).await.map_err(|source| StoreError::Open {
        url: redact(&config.url),
        source,
    })
}

async fn connect(config: &StoreConfig) -> Result<AnyPool, sqlx::Error> {
    let sqlite = config.is_sqlite();
    let busy_ms = config.busy_timeout.as_millis();
    AnyPoolOptions::new()
        .max_connections(if sqlite { 4 } else { 8 })
        .after_connect(move |conn, _meta| {
            Box::pin(async move {
                if sqlite {
                    conn.execute("PRAGMA journal_mode = WAL").await?;
                    conn.execute("PRAGMA synchronous = FULL").await?;
                    conn.execute(format!("PRAGMA busy_timeout = {busy_ms}").as_str())
                        .await?;
                }
                Ok(())
            })
        })
        .connect(&config.url)
        .await
}

/// Hides a password in a database URL before it is shown.
fn redact(url: &str) -> String {
    match (url.find("://"), url.find('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}://***{}", &url[..scheme], &url[at..])
        }
        _ => url.to_owned(),
    }
}

async fn run_writer(pool: AnyPool, mut jobs: mpsc::Receiver<WriteJob>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while jobs.recv_many(&mut batch, MAX_BATCH).await > 0 {
        commit_batch(&pool, &mut batch).await;
    }
}

/// Commits the batch in one transaction. If the transaction fails as a whole, each write is
/// retried alone so that one bad write fails only its own caller.
async fn commit_batch(pool: &AnyPool, batch: &mut Vec<WriteJob>) {
    match apply_all(pool, batch).await {
        Ok(outcomes) => {
            for (job, outcome) in batch.drain(..).zip(outcomes) {
                let _ = job.done.send(outcome);
            }
        }
        Err(_) => {
            for job in batch.drain(..) {
                let outcome = apply_one(pool, &job.op).await;
                let _ = job.done.send(outcome);
            }
        }
    }
}

async fn apply_all(
    pool: &AnyPool,
    batch: &[WriteJob],
) -> Result<Vec<Result<(), StoreFailure>>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let mut outcomes = Vec::with_capacity(batch.len());
    for job in batch {
        outcomes.push(nodemgr::apply(&mut tx, &job.op).await?);
    }
    tx.commit().await?;
    Ok(outcomes)
}

async fn apply_one(pool: &AnyPool, op: &StoreOp) -> Result<(), StoreFailure> {
    let attempt = async {
        let mut tx = pool.begin().await?;
        let outcome = nodemgr::apply(&mut tx, op).await?;
        tx.commit().await?;
        Ok::<_, sqlx::Error>(outcome)
    };
    attempt
        .await
        .unwrap_or_else(|e| Err(StoreFailure::Database(e.to_string())))
}

fn affected(result: &AnyQueryResult) -> bool {
    result.rows_affected() > 0
}
