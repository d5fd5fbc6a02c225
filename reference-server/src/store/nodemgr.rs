//! nodemgr tables: nodes, metric history (a node's latest metrics are its newest sample),
//! commands.

use super::heartbeats::{self, HeartbeatRow, RunOutcome};
use super::sample_chain::{sqlite_newest_samples_of, SQLITE_NEWEST_SAMPLES};
use super::schema::Backend;
use super::{affected, Store, StoreError};
use crate::protocol::nodemgr::envelope::rfc3339;
use crate::protocol::nodemgr::{Metrics, StoreFailure, StoreOp};
use serde::Serialize;
use sqlx::any::AnyRow;
use sqlx::{Any, Row, Transaction};

/// Command states, as stored and as the operator API shows them.
pub mod state {
    pub const QUEUED: &str = "queued";
    pub const STARTED: &str = "started";
    pub const FINISHED: &str = "finished";
    pub const TIMED_OUT: &str = "timed_out";
    /// The node disconnected before it reported a result.
    pub const LOST: &str = "lost";
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct NodeRecord {
    pub node_id: String,
    pub hostname: Option<String>,
    pub ip_address: Option<String>,
    pub os_info: Option<String>,
    pub status: String,
    pub registered_at: String,
    pub last_seen: String,
    pub metrics: Option<Metrics>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct MetricSample {
    pub recorded_at: String,
    pub status: String,
    #[serde(flatten)]
    pub metrics: Metrics,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct CommandRecord {
    pub command_id: String,
    pub node_id: String,
    pub command_text: String,
    pub timeout: i64,
    pub state: String,
    pub exit_code: Option<i64>,
    pub stdout: Option<String>,
    pub stderr: Option<String>,
    pub execution_time_ms: Option<i64>,
    pub created_at: String,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
}

type Outcome = Result<Result<(), StoreFailure>, sqlx::Error>;

/// A conditional command update that touched no row names a command that is not open.
fn known_command(done: &sqlx::any::AnyQueryResult) -> Result<(), StoreFailure> {
    if affected(done) {
        Ok(())
    } else {
        Err(StoreFailure::UnknownCommand)
    }
}

/// Applies one protocol write inside the writer's transaction.
pub(super) async fn apply(
    tx: &mut Transaction<'_, Any>,
    backend: Backend,
    op: &StoreOp,
) -> Outcome {
    match op {
        StoreOp::UpsertNode { node_id, info, at } => {
            sqlx::query(
                "INSERT INTO nodes (node_id, hostname, ip_address, os_info, status, status_since,
                   registered_at, last_seen)
                 VALUES ($1, $2, $3, $4, 'online', $5, $5, $5)
                 ON CONFLICT (node_id) DO UPDATE SET hostname = excluded.hostname,
                   ip_address = excluded.ip_address, os_info = excluded.os_info,
                   status = 'online', status_since = excluded.status_since,
                   registered_at = excluded.registered_at, last_seen = excluded.last_seen",
            )
            .bind(node_id)
            .bind(info.hostname.clone())
            .bind(info.ip_address.clone())
            .bind(info.os_info.clone())
            .bind(rfc3339(*at))
            .execute(&mut **tx)
            .await?;
            Ok(Ok(()))
        }
        StoreOp::RecordHeartbeat {
            node_id,
            status,
            metrics,
            at,
        } => {
            let row = HeartbeatRow::new(node_id, status, metrics, *at);
            record_heartbeat(tx, backend, row).await
        }
        StoreOp::CommandStarted {
            node_id,
            command_id,
            at,
        } => {
            let done = sqlx::query(
                "UPDATE commands SET state = 'started', started_at = $1
                 WHERE command_id = $2 AND node_id = $3 AND state = 'queued'",
            )
            .bind(rfc3339(*at))
            .bind(command_id)
            .bind(node_id)
            .execute(&mut **tx)
            .await?;
            Ok(known_command(&done))
        }
        StoreOp::CommandFinished {
            node_id,
            result,
            at,
        } => {
            let done = sqlx::query(
                "UPDATE commands SET state = 'finished', exit_code = $1, stdout = $2, stderr = $3,
                   execution_time_ms = $4, finished_at = $5
                 WHERE command_id = $6 AND node_id = $7 AND state IN ('queued', 'started', 'lost')",
            )
            .bind(result.exit_code)
            .bind(result.stdout.clone())
            .bind(result.stderr.clone())
            .bind(i64::try_from(result.execution_time_ms).unwrap_or(i64::MAX))
            .bind(rfc3339(*at))
            .bind(&result.command_id)
            .bind(node_id)
            .execute(&mut **tx)
            .await?;
            if affected(&done) {
                return Ok(Ok(()));
            }
            let state = command_state(tx, &result.command_id, node_id).await?;
            Ok(Err(match state.as_deref() {
                Some(state::TIMED_OUT) => StoreFailure::CommandTimedOut,
                _ => StoreFailure::UnknownCommand,
            }))
        }
        StoreOp::CommandTimedOut { command_id, at } => {
            let done = sqlx::query(
                "UPDATE commands SET state = 'timed_out', finished_at = $1
                 WHERE command_id = $2 AND state IN ('queued', 'started')",
            )
            .bind(rfc3339(*at))
            .bind(command_id)
            .execute(&mut **tx)
            .await?;
            Ok(known_command(&done))
        }
        StoreOp::NodeOffline { node_id, at } => {
            mark_offline(&mut **tx, node_id, &rfc3339(*at)).await?;
            Ok(Ok(()))
        }
    }
}

/// The node's status is `offline` from `at` on, until a newer heartbeat says otherwise.
async fn mark_offline<'c>(
    db: impl sqlx::Executor<'c, Database = Any>,
    node_id: &str,
    at: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE nodes SET status = 'offline', status_since = $1 WHERE node_id = $2")
        .bind(at)
        .bind(node_id)
        .execute(db)
        .await?;
    Ok(())
}

/// One heartbeat alone: the bulk path with a run of one.
async fn record_heartbeat(
    tx: &mut Transaction<'_, Any>,
    backend: Backend,
    row: HeartbeatRow<'_>,
) -> Outcome {
    Ok(
        match heartbeats::record(tx, backend, std::slice::from_ref(&row)).await? {
            RunOutcome::AllStored => Ok(()),
            RunOutcome::SomeNodeMissing => Err(StoreFailure::Database(format!(
                "node {} has no row",
                row.node_id()
            ))),
        },
    )
}

async fn command_state(
    tx: &mut Transaction<'_, Any>,
    command_id: &str,
    node_id: &str,
) -> Result<Option<String>, sqlx::Error> {
    let row = sqlx::query("SELECT state FROM commands WHERE command_id = $1 AND node_id = $2")
        .bind(command_id)
        .bind(node_id)
        .fetch_optional(&mut **tx)
        .await?;
    row.map(|r| r.try_get::<String, _>(0)).transpose()
}

/// A node with its newest sample, if it has one. The sample's columns come last, in the
/// order [`metrics_from_row`] reads them. A pointer is followed only to a sample of the same
/// node: one left behind by a `metrics` table dropped and created again (C9's test does that)
/// may name another node's sample by then, and shows no metrics rather than the wrong ones.
fn nodes_with_newest_sample(backend: Backend, nodes: Nodes) -> String {
    let newest = newest_samples(backend, nodes);
    format!(
        "SELECT nodes.node_id, nodes.hostname, nodes.ip_address,
    nodes.os_info, nodes.status, nodes.status_since, nodes.registered_at, nodes.last_seen,
    latest.recorded_at, latest.status, latest.cpu_usage, latest.memory_usage, latest.disk_usage,
    latest.load_average
    FROM nodes LEFT JOIN {newest} AS newest ON newest.node_key = nodes.node_key
    LEFT JOIN metrics AS latest ON latest.sample_id = newest.sample_id
        AND latest.node_key = nodes.node_key"
    )
}

/// Whose newest samples a query reads.
#[derive(Debug, Clone, Copy)]
enum Nodes {
    All,
    /// The node whose id is bound as `$1`.
    Bound,
}

/// Each node's newest sample, as a table (`node_key`, `sample_id`): on SQLite its pointer or
/// a newer sample past the watermark (`sample_chain`), read for the one node when that is all
/// the query needs; PostgreSQL keeps every pointer exact.
fn newest_samples(backend: Backend, nodes: Nodes) -> String {
    match (backend, nodes) {
        (Backend::Sqlite, Nodes::All) => SQLITE_NEWEST_SAMPLES.to_owned(),
        (Backend::Sqlite, Nodes::Bound) => {
            sqlite_newest_samples_of("(SELECT node_key FROM nodes WHERE node_id = $1)")
        }
        (Backend::Postgres, _) => "latest_samples".to_owned(),
    }
}

/// The node whose id is bound as `$1`, with its newest sample.
fn one_node_text(backend: Backend) -> String {
    format!(
        "{} WHERE nodes.node_id = $1",
        nodes_with_newest_sample(backend, Nodes::Bound)
    )
}

/// The newest `$2` samples of the node whose id is bound as `$1`: see [`Store::metric_history`].
fn history_text(backend: Backend) -> String {
    format!(
        "WITH RECURSIVE chain (sample_id, node_key, depth) AS (
            SELECT newest.sample_id, nodes.node_key, 1 FROM {} AS newest
            JOIN nodes ON nodes.node_key = newest.node_key
            WHERE nodes.node_id = $1
          UNION ALL
            SELECT metrics.previous_sample_id, chain.node_key, chain.depth + 1
            FROM chain JOIN metrics ON metrics.sample_id = chain.sample_id
                AND metrics.node_key = chain.node_key
            WHERE metrics.previous_sample_id < metrics.sample_id AND chain.depth < $2)
         SELECT recorded_at, status, cpu_usage, memory_usage, disk_usage, load_average
         FROM chain JOIN metrics ON metrics.sample_id = chain.sample_id
            AND metrics.node_key = chain.node_key
         ORDER BY chain.depth",
        newest_samples(backend, Nodes::Bound)
    )
}

const COMMAND_COLUMNS: &str = "command_id, node_id, command_text, timeout_secs, state, exit_code,
    stdout, stderr, execution_time_ms, created_at, started_at, finished_at";

impl Store {
    pub async fn list_nodes(&self) -> Result<Vec<NodeRecord>, StoreError> {
        let sql = format!(
            "{} ORDER BY nodes.node_id",
            nodes_with_newest_sample(self.backend, Nodes::All)
        );
        let rows = sqlx::query(&sql).fetch_all(self.pool()).await?;
        Ok(rows.iter().map(node_from_row).collect::<Result<_, _>>()?)
    }

    pub async fn node(&self, node_id: &str) -> Result<Option<NodeRecord>, StoreError> {
        let row = sqlx::query(&one_node_text(self.backend))
            .bind(node_id)
            .fetch_optional(self.pool())
            .await?;
        Ok(row.as_ref().map(node_from_row).transpose()?)
    }

    /// The newest `limit` samples, newest first: down the chain from the node's latest, as
    /// long as each link is a sample of this node (see `nodes_with_newest_sample`) and an
    /// earlier one: ids grow with time, so a link to a larger id is left from a recreated table,
    /// and following it could walk in a circle.
    pub async fn metric_history(
        &self,
        node_id: &str,
        limit: i64,
    ) -> Result<Vec<MetricSample>, StoreError> {
        let sql = history_text(self.backend);
        let rows = sqlx::query(&sql)
            .bind(node_id)
            .bind(limit)
            .fetch_all(self.pool())
            .await?;
        Ok(rows.iter().map(sample_from_row).collect::<Result<_, _>>()?)
    }

    /// Records a new command as queued. Committed before the operator is told its id.
    pub async fn insert_command(&self, record: &CommandRecord) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO commands (command_id, node_id, command_text, timeout_secs, state, created_at)
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&record.command_id)
        .bind(&record.node_id)
        .bind(&record.command_text)
        .bind(record.timeout)
        .bind(&record.state)
        .bind(&record.created_at)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    pub async fn command(&self, command_id: &str) -> Result<Option<CommandRecord>, StoreError> {
        let sql = format!("SELECT {COMMAND_COLUMNS} FROM commands WHERE command_id = $1");
        let row = sqlx::query(&sql)
            .bind(command_id)
            .fetch_optional(self.pool())
            .await?;
        Ok(row.as_ref().map(command_from_row).transpose()?)
    }

    /// A node's connection closed: it is offline, and its open commands are lost.
    pub async fn node_disconnected(&self, node_id: &str) -> Result<(), StoreError> {
        let mut tx = self.pool().begin().await?;
        mark_offline(&mut *tx, node_id, &rfc3339(chrono::Utc::now())).await?;
        sqlx::query(
            "UPDATE commands SET state = 'lost' WHERE node_id = $1 AND state IN ('queued', 'started')",
        )
        .bind(node_id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }
}

fn metrics_from_row(row: &AnyRow, first: usize) -> Result<Option<Metrics>, sqlx::Error> {
    let cpu: Option<f64> = row.try_get(first)?;
    let Some(cpu_usage) = cpu else {
        return Ok(None);
    };
    Ok(Some(Metrics {
        cpu_usage,
        memory_usage: row.try_get(first + 1)?,
        disk_usage: row.try_get(first + 2)?,
        load_average: row.try_get(first + 3)?,
    }))
}

/// A row of [`NODES_WITH_LATEST_SAMPLE`]. The newest sample, when it is newer than the
/// node's last registration or disconnection, gives the status and the last-seen time.
fn node_from_row(row: &AnyRow) -> Result<NodeRecord, sqlx::Error> {
    let mut status: String = row.try_get(4)?;
    let status_since: String = row.try_get(5)?;
    let mut last_seen: String = row.try_get(7)?;
    let sample_at: Option<String> = row.try_get(8)?;
    if let Some(sample_at) = sample_at {
        // Times are RFC 3339 in UTC with milliseconds: their text sorts as they do.
        if sample_at > status_since {
            status = row.try_get(9)?;
        }
        last_seen = last_seen.max(sample_at);
    }
    Ok(NodeRecord {
        node_id: row.try_get(0)?,
        hostname: row.try_get(1)?,
        ip_address: row.try_get(2)?,
        os_info: row.try_get(3)?,
        status,
        registered_at: row.try_get(6)?,
        last_seen,
        metrics: metrics_from_row(row, 10)?,
    })
}

fn sample_from_row(row: &AnyRow) -> Result<MetricSample, sqlx::Error> {
    Ok(MetricSample {
        recorded_at: row.try_get(0)?,
        status: row.try_get(1)?,
        metrics: metrics_from_row(row, 2)?.unwrap_or(Metrics {
            cpu_usage: 0.0,
            memory_usage: 0.0,
            disk_usage: 0.0,
            load_average: 0.0,
        }),
    })
}

fn command_from_row(row: &AnyRow) -> Result<CommandRecord, sqlx::Error> {
    Ok(CommandRecord {
        command_id: row.try_get(0)?,
        node_id: row.try_get(1)?,
        command_text: row.try_get(2)?,
        timeout: row.try_get(3)?,
        state: row.try_get(4)?,
        exit_code: row.try_get(5)?,
        stdout: row.try_get(6)?,
        stderr: row.try_get(7)?,
        execution_time_ms: row.try_get(8)?,
        created_at: row.try_get(9)?,
        started_at: row.try_get(10)?,
        finished_at: row.try_get(11)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::StoreConfig;

    /// SQLite's plan for `sql` with `$1`, `$2`, ... bound to `values`: one line per step.
    async fn query_plan(store: &Store, sql: &str, values: &[&str]) -> Vec<String> {
        let explain = format!("EXPLAIN QUERY PLAN {sql}");
        let query = values
            .iter()
            .fold(sqlx::query(&explain), |query, value| query.bind(*value));
        let rows = query.fetch_all(store.pool()).await.expect("explain");
        rows.iter()
            .map(|row| row.try_get::<String, _>(3).expect("detail"))
            .collect()
    }

    const FLEET_SCAN: &str = "SCAN latest_samples";

    /// Reading one node, its history, or the writer's read-back of a batch's nodes looks up
    /// those nodes' pointers by key. Grouping every node's pointer made a node's read take
    /// 63-69 ms and its history 113-120 ms at 100,000 nodes (docs/performance.md, "A node read
    /// without the fleet"); the list of all nodes still groups them, which shows this check
    /// can see it.
    #[tokio::test]
    async fn reading_a_few_nodes_does_not_scan_every_nodes_pointer() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = StoreConfig::sqlite_in(dir.path()).expect("config");
        let store = Store::open(&config).await.expect("open");
        let one_node = one_node_text(Backend::Sqlite);
        let history = history_text(Backend::Sqlite);
        let read_back = super::super::sample_chain::read_back_text();
        for (what, sql, values) in [
            ("one node", one_node, &["n"][..]),
            ("a history", history, &["n", "100"][..]),
            ("the read-back", read_back, &[r#"["n", "m"]"#][..]),
        ] {
            let plan = query_plan(&store, &sql, values).await;
            assert!(
                !plan.iter().any(|step| step == FLEET_SCAN),
                "{what}: {plan:?}"
            );
        }
        let all = nodes_with_newest_sample(Backend::Sqlite, Nodes::All);
        let plan = query_plan(&store, &format!("{all} WHERE nodes.node_id = $1"), &["n"]).await;
        assert!(plan.iter().any(|step| step == FLEET_SCAN), "{plan:?}");
    }
}
