//! Persistence through sqlx: a SQLite file by default, PostgreSQL by URL.
//!
//! Writes go through one writer task that commits them in batches (group commit), and each
//! caller is answered only after its batch committed. Reads use the pool directly.

mod heartbeats;
mod nodemgr;
mod sample_chain;
mod schema;
pub mod tokens;

pub use nodemgr::{state as command_state, CommandRecord, MetricSample, NodeRecord};

use heartbeats::{HeartbeatRow, RunOutcome};
use sample_chain::SampleChain;
use schema::Backend;

use crate::protocol::nodemgr::{StoreFailure, StoreOp};
use sqlx::any::{AnyPoolOptions, AnyQueryResult};
use sqlx::pool::PoolConnection;
use sqlx::{Any, AnyPool, Connection, Executor};
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
    /// SQLite only: when a commit reaches the disk.
    pub sqlite_sync: SqliteSync,
}

/// SQLite's `synchronous` setting, in WAL mode. Either way a write is committed before it is
/// acknowledged and survives a crash of this process; they differ on a crash of the machine.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SqliteSync {
    /// Every commit waits for fsync: an acknowledged write survives power loss too.
    #[default]
    Full,
    /// Commits reach the OS at once and the disk at the next checkpoint: the last commits
    /// before a power loss or kernel crash may be rolled back. Helps where fsync is slow.
    Normal,
}

impl SqliteSync {
    const ALL: [Self; 2] = [Self::Full, Self::Normal];

    fn pragma(self) -> &'static str {
        match self {
            Self::Full => "PRAGMA synchronous = FULL",
            Self::Normal => "PRAGMA synchronous = NORMAL",
        }
    }

    /// The name `--sqlite-sync` takes.
    pub fn name(self) -> &'static str {
        match self {
            Self::Full => "full",
            Self::Normal => "normal",
        }
    }
}

impl std::str::FromStr for SqliteSync {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|sync| sync.name() == s)
            .ok_or_else(|| format!("{s:?} is not full or normal"))
    }
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
            sqlite_sync: SqliteSync::Full,
        }
    }

    fn is_sqlite(&self) -> bool {
        self.url.starts_with("sqlite:")
    }

    fn backend(&self) -> Backend {
        if self.is_sqlite() {
            Backend::Sqlite
        } else {
            Backend::Postgres
        }
    }
}

/// What is done with a write's outcome once it is committed or failed. It runs on the
/// writer's task, so it must not wait.
/// `Sync` because the writer lends its batch across awaits while it applies it.
pub type OnCommitted = Box<dyn FnOnce(Result<(), StoreFailure>) + Send + Sync>;

struct WriteJob {
    op: StoreOp,
    done: OnCommitted,
}

/// A handle to the database. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
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
        let backend = config.backend();
        schema::migrate(&pool, backend).await?;
        let (writer, jobs) = mpsc::channel(WRITE_QUEUE_DEPTH);
        let writer_db = WriterDb {
            pool: pool.clone(),
            held: None,
            backend,
            chain: SampleChain::default(),
        };
        tokio::spawn(writer_db.run(jobs));
        Ok(Self {
            pool,
            backend,
            writer,
        })
    }

    /// Commits `op` and returns once it is durable (or failed).
    pub async fn write(&self, op: StoreOp) -> Result<(), StoreFailure> {
        self.submit(op).await.await
    }

    /// Queues `op` for the writer, waiting only for room in its queue, and returns what
    /// resolves once it is committed. Writes are committed in the order they were submitted.
    pub async fn submit(
        &self,
        op: StoreOp,
    ) -> impl std::future::Future<Output = Result<(), StoreFailure>> {
        let (done, committed) = oneshot::channel();
        self.submit_then(
            op,
            Box::new(move |outcome| {
                let _ = done.send(outcome);
            }),
        )
        .await;
        async move { committed.await.map_err(|_| writer_gone())? }
    }

    /// Queues `op` for the writer, waiting only for room in its queue; `then` gets its outcome
    /// (on the writer's task), or at once if the writer has stopped. Writes are committed in
    /// the order they were submitted, so a connection that submits each write before it reads
    /// the next frame keeps its frames' order (a node's latest metrics are those of its last
    /// heartbeat), and hears of its writes in that order.
    pub async fn submit_then(&self, op: StoreOp, then: OnCommitted) {
        let job = WriteJob { op, done: then };
        if let Err(refused) = self.writer.send(job).await {
            (refused.0.done)(Err(writer_gone()));
        }
    }

    /// Creates any missing table (run at open; public so operators and tests can repair).
    pub async fn ensure_schema(&self) -> Result<(), StoreError> {
        Ok(schema::migrate(&self.pool, self.backend).await?)
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }
}

fn writer_gone() -> StoreFailure {
    StoreFailure::Database(StoreError::WriterGone.to_string())
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
    let sync = config.sqlite_sync.pragma();
    AnyPoolOptions::new()
        .max_connections(if sqlite { 4 } else { 8 })
        .after_connect(move |conn, _meta| {
            Box::pin(async move {
                if sqlite {
                    conn.execute("PRAGMA journal_mode = WAL").await?;
                    conn.execute(sync).await?;
                    // Statement journals (multi-row heartbeat writes need them) stay in
                    // memory instead of a temporary file.
                    conn.execute("PRAGMA temp_store = MEMORY").await?;
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

/// What the writer task holds: the pool, the connection it writes on, and which SQL dialect
/// that connection speaks.
struct WriterDb {
    pool: AnyPool,
    /// Held from one batch to the next. SQLite drops a connection's page cache when another
    /// connection wrote since its last transaction; the pool hands out its connections in
    /// turn, so every batch began with a cold cache and read its pages back from the file.
    held: Option<PoolConnection<Any>>,
    backend: Backend,
    /// SQLite: each node's key and newest sample, so that a heartbeat is a plain insert.
    chain: SampleChain,
}

impl WriterDb {
    async fn run(mut self, mut jobs: mpsc::Receiver<WriteJob>) {
        let mut batch = Vec::with_capacity(MAX_BATCH);
        while jobs.recv_many(&mut batch, MAX_BATCH).await > 0 {
            self.commit_batch(&mut batch).await;
        }
    }

    /// Commits the batch in one transaction. If the transaction fails as a whole, each write
    /// is retried alone so that one bad write fails only its own caller (and gets its own
    /// answer).
    async fn commit_batch(&mut self, batch: &mut Vec<WriteJob>) {
        let outcome = self.apply_all(batch).await;
        if matches!(outcome, Err(BatchError::Sql(_))) {
            // The connection may be what failed: the next batch takes one from the pool.
            self.held = None;
        }
        match outcome {
            Ok(outcomes) => {
                for (job, outcome) in batch.drain(..).zip(outcomes) {
                    (job.done)(outcome);
                }
            }
            Err(why) => {
                tracing::debug!(
                    "a batch of {} writes failed as a whole ({why}); each is retried alone",
                    batch.len()
                );
                for job in batch.drain(..) {
                    let outcome = self.apply_one(&job.op).await;
                    (job.done)(outcome);
                }
                // The copy may hold links the failed batch gave out, and the writes retried
                // alone stored their heartbeats without it.
                self.chain.forget();
            }
        }
    }

    /// Applies the batch in order in one transaction; each run of consecutive heartbeats goes
    /// out in bulk ([`heartbeats::record`]).
    async fn apply_all(
        &mut self,
        batch: &[WriteJob],
    ) -> Result<Vec<Result<(), StoreFailure>>, BatchError> {
        let backend = self.backend;
        if backend == Backend::Sqlite {
            let run = leading_heartbeats(batch);
            if run.len() == batch.len() {
                self.append_linked(&run).await?;
                return Ok(batch.iter().map(|_| Ok(())).collect());
            }
        }
        let mut tx = self.connection().await?.begin().await?;
        let mut outcomes = Vec::with_capacity(batch.len());
        let mut rest = batch;
        while let Some(first) = rest.first() {
            let run = leading_heartbeats(rest);
            if run.is_empty() {
                outcomes.push(nodemgr::apply(&mut tx, backend, &first.op).await?);
                rest = &rest[1..];
                continue;
            }
            if heartbeats::record(&mut tx, backend, &run).await? == RunOutcome::SomeNodeMissing {
                return Err(BatchError::NodeMissing);
            }
            outcomes.extend(run.iter().map(|_| Ok(())));
            rest = &rest[run.len()..];
        }
        tx.commit().await?;
        // Heartbeats stored this way moved their nodes' chains, and took ids, without the copy.
        let stored = batch
            .iter()
            .filter_map(|job| HeartbeatRow::from_op(&job.op));
        self.chain.forget_nodes(stored.map(|row| row.node_id()));
        Ok(outcomes)
    }

    /// SQLite: a batch of heartbeats alone, as plain inserts in one execution
    /// ([`sample_chain`]). A failed execution leaves its transaction open; it is rolled back
    /// here, and a connection that cannot say it rolled back is closed rather than handed back
    /// to the pool.
    async fn append_linked(&mut self, run: &[HeartbeatRow<'_>]) -> Result<(), BatchError> {
        self.connection().await?;
        let Self { held, chain, .. } = self;
        let connection = held.as_mut().expect("set above");
        let Some(linked) = chain.link(connection, run).await? else {
            return Err(BatchError::NodeMissing);
        };
        let Err(error) = sample_chain::append(connection, &linked).await else {
            return Ok(());
        };
        if let Err(rollback) = connection.execute("ROLLBACK").await {
            tracing::debug!("closing the writer's connection: {rollback}");
            connection.close_on_drop();
            self.held = None;
        }
        Err(error.into())
    }

    /// The writer's connection, taken from the pool when it has none.
    async fn connection(&mut self) -> Result<&mut PoolConnection<Any>, sqlx::Error> {
        if self.held.is_none() {
            self.held = Some(self.pool.acquire().await?);
        }
        Ok(self.held.as_mut().expect("set above"))
    }

    async fn apply_one(&mut self, op: &StoreOp) -> Result<(), StoreFailure> {
        let backend = self.backend;
        let attempt = async {
            let mut tx = self.connection().await?.begin().await?;
            let outcome = nodemgr::apply(&mut tx, backend, op).await?;
            // A refused write leaves nothing behind (no orphan sample of an unknown node).
            if outcome.is_ok() {
                tx.commit().await?;
            }
            Ok::<_, sqlx::Error>(outcome)
        };
        attempt
            .await
            .unwrap_or_else(|e| Err(StoreFailure::Database(e.to_string())))
    }
}

/// Why a batch could not be committed as a whole.
#[derive(Debug, thiserror::Error)]
enum BatchError {
    #[error(transparent)]
    Sql(#[from] sqlx::Error),
    /// A heartbeat named a node with no row: only one write at a time tells which.
    #[error("a heartbeat names a node that has no row")]
    NodeMissing,
}

/// The heartbeats at the start of `jobs`, up to the first write of another kind.
fn leading_heartbeats(jobs: &[WriteJob]) -> Vec<HeartbeatRow<'_>> {
    jobs.iter()
        .map_while(|job| HeartbeatRow::from_op(&job.op))
        .collect()
}

fn affected(result: &AnyQueryResult) -> bool {
    result.rows_affected() > 0
}

#[cfg(test)]
mod tests {
    use super::SqliteSync;

    #[test]
    fn each_sqlite_sync_reads_back_from_its_name() {
        for sync in SqliteSync::ALL {
            assert_eq!(sync.name().parse(), Ok(sync));
        }
        assert!("fsync".parse::<SqliteSync>().is_err());
    }
}
