//! Heartbeats in bulk, each looked up by its node's id: PostgreSQL's path, and SQLite's when
//! heartbeats share a batch with other writes (a batch of heartbeats alone goes through
//! `sample_chain`). They are nearly every write, so a run of them goes out in one execution.
//! SQLite binds the samples' values into multi-row inserts of a fixed size, padded, so that a
//! run has one of a few texts and each stays prepared; PostgreSQL binds one JSON array
//! (`json_array_elements`), whose text never changes with the run's length.

use super::sample_chain::{SQLITE_POINT_PAST_WATERMARK, SQLITE_WATERMARK_AT_NEWEST};
use super::schema::Backend;
use crate::protocol::nodemgr::envelope::rfc3339;
use crate::protocol::nodemgr::{Metrics, StoreOp};
use chrono::{DateTime, Utc};
use sqlx::error::ErrorKind;
use sqlx::{Any, AnyConnection};
use std::collections::HashSet;
use std::sync::LazyLock;

/// SQLite: rows one `INSERT` carries, here and in `sample_chain`. A run is padded with empty
/// rows to a whole number of inserts, so that a batch of up to 512 has one of eight texts and
/// each stays prepared.
pub(super) const SQLITE_ROWS_PER_INSERT: usize = 64;

/// The columns of one row of a SQLite insert's `VALUES`, in [`HeartbeatRow::bind`]'s order.
const SQLITE_ROW: &str = "(?, ?, ?, ?, ?, ?, ?)";

/// SQLite's insert of [`SQLITE_ROWS_PER_INSERT`] samples, each linked to its node's newest so
/// far. The values are bound one by one: reading them out of a bound JSON array cost SQLite
/// more than the statement's own work (docs/performance.md). An empty row (no node id) is
/// padding; a row whose node has no row gets no `node_key`, and the `NOT NULL` fails it.
static SQLITE_INSERT: LazyLock<String> = LazyLock::new(|| {
    let rows = vec![SQLITE_ROW; SQLITE_ROWS_PER_INSERT].join(", ");
    format!(
        "INSERT INTO metrics (node_key, previous_sample_id, recorded_at, status, cpu_usage,
            memory_usage, disk_usage, load_average)
         SELECT nodes.node_key, latest_samples.sample_id, v.column2, v.column3, v.column4,
            v.column5, v.column6, v.column7
         FROM (VALUES {rows}) AS v
         LEFT JOIN nodes ON nodes.node_id = v.column1
         LEFT JOIN latest_samples ON latest_samples.node_key = nodes.node_key
         WHERE v.column1 IS NOT NULL"
    )
});

/// SQLite: the newest `?` samples, those the inserts before it just added (the transaction
/// holds SQLite's one write lock), become their nodes' latest. The `WHERE true` is SQLite's
/// own workaround: without a `WHERE`, the `ON` of an upsert after `INSERT ... SELECT` parses
/// as a join constraint (sqlite.org/lang_upsert.html, "Parsing Ambiguity").
const SQLITE_POINT_LATEST: &str = "INSERT INTO latest_samples (node_key, sample_id)
     SELECT node_key, sample_id
     FROM (SELECT node_key, sample_id FROM metrics ORDER BY sample_id DESC LIMIT ?)
     WHERE true
     ON CONFLICT (node_key) DO UPDATE SET sample_id = excluded.sample_id";

/// SQLite: the inserts that carry `rows` samples, at least one; the text and the bound
/// padding ([`pad_sqlite_inserts`]) both follow from it.
pub(super) fn sqlite_inserts_for(rows: usize) -> usize {
    rows.div_ceil(SQLITE_ROWS_PER_INSERT).max(1)
}

/// Binds the empty rows, `values_per_row` NULLs each, that fill `rows` bound samples up to a
/// whole number of inserts.
pub(super) fn pad_sqlite_inserts(
    query: AnyQuery<'_>,
    rows: usize,
    values_per_row: usize,
) -> AnyQuery<'_> {
    let padded = sqlite_inserts_for(rows) * SQLITE_ROWS_PER_INSERT;
    (0..(padded - rows) * values_per_row).fold(query, |query, _| query.bind(None::<i64>))
}

/// SQLite's text for `rows` samples: the pointers first brought up to date (this path reads
/// its predecessors from them), enough inserts, the pointer update, and the watermark moved
/// past the new samples, whose pointers are exact.
fn sqlite_record_text(rows: usize) -> String {
    let inserts = sqlite_inserts_for(rows);
    let mut statements = Vec::with_capacity(inserts + 4);
    statements.extend(SQLITE_POINT_PAST_WATERMARK);
    statements.extend(std::iter::repeat_n(SQLITE_INSERT.as_str(), inserts));
    statements.push(SQLITE_POINT_LATEST);
    statements.push(SQLITE_WATERMARK_AT_NEWEST);
    statements.join(";\n")
}

/// One heartbeat, borrowed from its [`StoreOp::RecordHeartbeat`].
pub(super) struct HeartbeatRow<'a> {
    node_id: &'a str,
    status: &'a str,
    metrics: &'a Metrics,
    at: DateTime<Utc>,
}

impl<'a> HeartbeatRow<'a> {
    pub(super) fn node_id(&self) -> &'a str {
        self.node_id
    }

    pub(super) fn from_op(op: &'a StoreOp) -> Option<Self> {
        match op {
            StoreOp::RecordHeartbeat {
                node_id,
                status,
                metrics,
                at,
            } => Some(Self::new(node_id, status, metrics, *at)),
            _ => None,
        }
    }

    pub(super) fn new(
        node_id: &'a str,
        status: &'a str,
        metrics: &'a Metrics,
        at: DateTime<Utc>,
    ) -> Self {
        Self {
            node_id,
            status,
            metrics,
            at,
        }
    }

    /// Values a row binds.
    const VALUES: usize = 7;

    /// Binds `[node_id, time, status, cpu, memory, disk, load]`, a row of [`SQLITE_ROW`].
    fn bind<'q>(&self, query: AnyQuery<'q>) -> AnyQuery<'q>
    where
        'a: 'q,
    {
        self.bind_values(query.bind(self.node_id))
    }

    /// Binds `[time, status, cpu, memory, disk, load]`: the sample without its node.
    pub(super) fn bind_values<'q>(&self, query: AnyQuery<'q>) -> AnyQuery<'q>
    where
        'a: 'q,
    {
        let m = self.metrics;
        query
            .bind(rfc3339(self.at))
            .bind(self.status)
            .bind(m.cpu_usage)
            .bind(m.memory_usage)
            .bind(m.disk_usage)
            .bind(m.load_average)
    }

    /// `[node_id, time, status, cpu, memory, disk, load]` (serde writes a tuple as a JSON
    /// array), the order the statements read.
    fn as_tuple(&self) -> (&str, String, &str, f64, f64, f64, f64) {
        let m = self.metrics;
        (
            self.node_id,
            rfc3339(self.at),
            self.status,
            m.cpu_usage,
            m.memory_usage,
            m.disk_usage,
            m.load_average,
        )
    }
}

/// How a run of heartbeats went.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum RunOutcome {
    /// Every sample is stored.
    AllStored,
    /// At least one node has no row, so the statement that held it failed; the caller must
    /// roll back and find out which, one write at a time.
    SomeNodeMissing,
}

/// Appends every sample of `rows` to the history, in the order of `rows`, each linked to its
/// node's previous sample, and makes each node's last one its latest. Must run inside a
/// transaction: on SQLite it is several statements.
///
/// The run is cut into chunks in which no node appears twice, so that within a statement
/// each sample's predecessor is the one `latest_samples` held before it; the chunks run in
/// order. A sample whose node has no row gets no `node_key` from the outer join, and the
/// column's `NOT NULL` fails the statement.
pub(super) async fn record(
    tx: &mut AnyConnection,
    backend: Backend,
    rows: &[HeartbeatRow<'_>],
) -> Result<RunOutcome, sqlx::Error> {
    for chunk in distinct_chunks(rows) {
        let text = record_text(backend, chunk.len());
        let executed = bind_chunk(sqlx::query(&text), backend, chunk)
            .execute(&mut *tx)
            .await;
        if outcome(executed)? == RunOutcome::SomeNodeMissing {
            return Ok(RunOutcome::SomeNodeMissing);
        }
    }
    Ok(RunOutcome::AllStored)
}

pub(super) type AnyQuery<'q> = sqlx::query::Query<'q, Any, sqlx::any::AnyArguments<'q>>;

/// Binds a chunk as [`record_text`] reads it. SQLite: each row's values, empty rows up to a
/// whole number of inserts, and the count of samples for the pointer update. PostgreSQL: the
/// rows as one JSON array.
fn bind_chunk<'q>(
    query: AnyQuery<'q>,
    backend: Backend,
    chunk: &[HeartbeatRow<'q>],
) -> AnyQuery<'q> {
    match backend {
        Backend::Sqlite => {
            let query = chunk.iter().fold(query, |query, row| row.bind(query));
            pad_sqlite_inserts(query, chunk.len(), HeartbeatRow::VALUES).bind(chunk.len() as i64)
        }
        Backend::Postgres => query.bind(rows_json(chunk)),
    }
}

/// The rows as one JSON array of [`HeartbeatRow::as_tuple`] arrays.
fn rows_json(rows: &[HeartbeatRow<'_>]) -> String {
    let tuples: Vec<_> = rows.iter().map(HeartbeatRow::as_tuple).collect();
    serde_json::to_string(&tuples).expect("strings and floats always serialize")
}

fn outcome(
    executed: Result<sqlx::any::AnyQueryResult, sqlx::Error>,
) -> Result<RunOutcome, sqlx::Error> {
    match executed {
        Ok(_) => Ok(RunOutcome::AllStored),
        Err(error) if is_not_null_violation(&error) => Ok(RunOutcome::SomeNodeMissing),
        Err(error) => Err(error),
    }
}

fn is_not_null_violation(error: &sqlx::Error) -> bool {
    error
        .as_database_error()
        .is_some_and(|db| matches!(db.kind(), ErrorKind::NotNullViolation))
}

/// Cuts `rows` into the longest slices in which no node appears twice.
fn distinct_chunks<'r, 'a>(
    mut rows: &'r [HeartbeatRow<'a>],
) -> impl Iterator<Item = &'r [HeartbeatRow<'a>]> {
    std::iter::from_fn(move || {
        if rows.is_empty() {
            return None;
        }
        let mut seen = HashSet::with_capacity(rows.len());
        let distinct = rows
            .iter()
            .take_while(|row| seen.insert(row.node_id))
            .count();
        let (head, tail) = rows.split_at(distinct);
        rows = tail;
        Some(head)
    })
}

/// The text that records a chunk of `rows` samples inside a transaction: each sample with its
/// node's key and its node's newest sample so far as its predecessor; then those samples
/// become their nodes' newest. SQLite inserts bound rows ([`sqlite_record_text`]);
/// PostgreSQL reads one bound JSON array with `json_array_elements` and passes the inserted
/// rows on in one statement.
fn record_text(backend: Backend, rows: usize) -> std::borrow::Cow<'static, str> {
    match backend {
        Backend::Sqlite => sqlite_record_text(rows).into(),
        Backend::Postgres => POSTGRES_RECORD.into(),
    }
}

const POSTGRES_RECORD: &str = "WITH inserted AS (
    INSERT INTO metrics (node_key, previous_sample_id, recorded_at, status, cpu_usage,
        memory_usage, disk_usage, load_average)
    SELECT nodes.node_key, latest_samples.sample_id, r.value ->> 1, r.value ->> 2,
        (r.value ->> 3)::double precision, (r.value ->> 4)::double precision,
        (r.value ->> 5)::double precision, (r.value ->> 6)::double precision
    FROM json_array_elements($1::json) WITH ORDINALITY AS r(value, n)
    LEFT JOIN nodes ON nodes.node_id = r.value ->> 0
    LEFT JOIN latest_samples ON latest_samples.node_key = nodes.node_key
    ORDER BY r.n
    RETURNING node_key, sample_id)
 INSERT INTO latest_samples (node_key, sample_id)
 SELECT node_key, sample_id FROM inserted
 ON CONFLICT (node_key) DO UPDATE SET sample_id = excluded.sample_id";

#[cfg(test)]
mod tests {
    use super::*;

    const METRICS: Metrics = Metrics {
        cpu_usage: 1.0,
        memory_usage: 2.0,
        disk_usage: 3.0,
        load_average: 4.0,
    };

    fn row(node_id: &str) -> HeartbeatRow<'_> {
        HeartbeatRow::new(node_id, "online", &METRICS, DateTime::UNIX_EPOCH)
    }

    #[test]
    fn a_chunk_never_holds_one_node_twice() {
        // Within a chunk each sample's predecessor is what `latest_samples` held before the
        // chunk; `a` twice in one chunk would give both the same predecessor.
        let order = ["a", "b", "c", "a", "d", "a", "a"];
        let rows: Vec<HeartbeatRow<'_>> = order.iter().map(|name| row(name)).collect();
        let cut: Vec<Vec<&str>> = distinct_chunks(&rows)
            .map(|chunk| chunk.iter().map(HeartbeatRow::node_id).collect())
            .collect();
        assert_eq!(
            cut,
            vec![vec!["a", "b", "c"], vec!["a", "d"], vec!["a"], vec!["a"]]
        );
        assert_eq!(distinct_chunks(&[]).count(), 0);
    }

    #[test]
    fn a_row_is_its_node_time_status_and_metrics_in_that_order() {
        assert_eq!(
            rows_json(&[row("n"), row("m")]),
            r#"[["n","1970-01-01T00:00:00.000Z","online",1.0,2.0,3.0,4.0],["m","1970-01-01T00:00:00.000Z","online",1.0,2.0,3.0,4.0]]"#
        );
    }
}
