//! Heartbeats in bulk: they are nearly every write, so a run of them in one batch goes out as a
//! few multi-row statements instead of one statement each.
//!
//! Each statement has one of a few fixed row counts ([`CHUNK_SIZES`]) so that its SQL text is
//! always the same and stays in sqlx's prepared-statement cache (a batch-sized text would be
//! prepared anew for almost every batch, which measured slower than one row at a time).

use crate::protocol::nodemgr::envelope::rfc3339;
use crate::protocol::nodemgr::{Metrics, StoreOp};
use chrono::{DateTime, Utc};
use sqlx::{Any, Transaction};
use std::sync::OnceLock;

/// Row counts of the multi-row statements, largest first; a run is cut greedily into them.
const CHUNK_SIZES: [usize; 4] = [64, 16, 4, 1];
/// Bound values per row of either statement.
const COLUMNS: usize = 7;

/// How the database spells a bound parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Placeholders {
    /// `$1, $2, ...`: PostgreSQL's only form.
    Numbered,
    /// `?, ?, ...`: SQLite binds these by position. Its numbered parameters are looked up by
    /// name, one linear scan per bound value, which made binding a 448-value statement cost
    /// more than running it.
    Anonymous,
}

/// One heartbeat, borrowed from its [`StoreOp::RecordHeartbeat`].
pub(super) struct HeartbeatRow<'a> {
    node_id: &'a str,
    status: &'a str,
    metrics: &'a Metrics,
    at: String,
}

impl<'a> HeartbeatRow<'a> {
    pub(super) fn node_id(&self) -> &str {
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
            at: rfc3339(at),
        }
    }
}

/// How a run of heartbeats went.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum RunOutcome {
    /// Every sample is stored.
    AllStored,
    /// At least one node has no row; the caller must find out which, one write at a time.
    SomeNodeMissing,
}

/// Inserts every sample of `rows` into the history, keyed by its node's `node_key`. A node's
/// latest metrics are its newest sample, so nothing else is written.
///
/// The run is cut into chunks in which no node appears twice: a chunk's rows get their
/// sample ids in an order the database chooses, and the chunks run in order, so a node's
/// samples are numbered in the order they arrived and its newest is its last heartbeat.
/// A sample whose node has no row finds no match in the join and is not inserted, which the
/// row count shows.
pub(super) async fn record(
    tx: &mut Transaction<'_, Any>,
    placeholders: Placeholders,
    rows: &[HeartbeatRow<'_>],
) -> Result<RunOutcome, sqlx::Error> {
    for chunk in chunks(rows) {
        let inserted = bind_rows(
            sqlx::query(insert_sql(placeholders, chunk.len())),
            chunk.iter(),
        )
        .execute(&mut **tx)
        .await?
        .rows_affected();
        if inserted != chunk.len() as u64 {
            return Ok(RunOutcome::SomeNodeMissing);
        }
    }
    Ok(RunOutcome::AllStored)
}

/// Binds each row's seven values in the column order both statements share: node id,
/// time, status, then the four metrics.
fn bind_rows<'q>(
    mut query: sqlx::query::Query<'q, Any, sqlx::any::AnyArguments<'q>>,
    rows: impl Iterator<Item = &'q HeartbeatRow<'q>>,
) -> sqlx::query::Query<'q, Any, sqlx::any::AnyArguments<'q>> {
    for row in rows {
        let m = row.metrics;
        query = query
            .bind(row.node_id)
            .bind(row.at.as_str())
            .bind(row.status)
            .bind(m.cpu_usage)
            .bind(m.memory_usage)
            .bind(m.disk_usage)
            .bind(m.load_average);
    }
    query
}

/// Cuts `rows` greedily into slices whose lengths are all in [`CHUNK_SIZES`] and in which no
/// node appears twice.
fn chunks<'r, 'a>(
    mut rows: &'r [HeartbeatRow<'a>],
) -> impl Iterator<Item = &'r [HeartbeatRow<'a>]> {
    std::iter::from_fn(move || {
        let distinct = distinct_prefix(rows);
        let size = CHUNK_SIZES.into_iter().find(|&size| size <= distinct)?;
        let (head, tail) = rows.split_at(size);
        rows = tail;
        Some(head)
    })
}

/// How many rows from the start name distinct nodes (up to the largest chunk).
fn distinct_prefix(rows: &[HeartbeatRow<'_>]) -> usize {
    let mut seen = std::collections::HashSet::with_capacity(CHUNK_SIZES[0]);
    rows.iter()
        .take(CHUNK_SIZES[0])
        .take_while(|row| seen.insert(row.node_id))
        .count()
}

/// `($1, ..., $7), ($8, ...)` (or `(?, ..., ?), ...`) for `rows` rows.
fn values_list(placeholders: Placeholders, rows: usize) -> String {
    let param = |n: usize| match placeholders {
        Placeholders::Numbered => format!("${n}"),
        Placeholders::Anonymous => "?".to_owned(),
    };
    (0..rows)
        .map(|row| {
            let params: Vec<String> = (1..=COLUMNS)
                .map(|col| param(row * COLUMNS + col))
                .collect();
            format!("({})", params.join(", "))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// One built SQL text per placeholder style and chunk size.
type SqlCache = [[OnceLock<String>; CHUNK_SIZES.len()]; 2];

/// `INSERT ... SELECT ... FROM (VALUES ...) JOIN nodes`: SQLite (3.33+) and PostgreSQL both
/// name the columns of a `VALUES` list `column1`, `column2`, ...
fn insert_sql(placeholders: Placeholders, rows: usize) -> &'static str {
    static CACHE: SqlCache = [const { [const { OnceLock::new() }; CHUNK_SIZES.len()] }; 2];
    let size = CHUNK_SIZES
        .iter()
        .position(|&size| size == rows)
        .expect("chunks() only yields CHUNK_SIZES");
    CACHE[placeholders as usize][size].get_or_init(|| {
        format!(
            "INSERT INTO metrics (node_key, recorded_at, status, cpu_usage, memory_usage, disk_usage, load_average)
             SELECT nodes.node_key, v.column2, v.column3, v.column4, v.column5, v.column6, v.column7
             FROM (VALUES {}) AS v JOIN nodes ON nodes.node_id = v.column1",
            values_list(placeholders, rows)
        )
    })
}

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
        HeartbeatRow {
            node_id,
            status: "online",
            metrics: &METRICS,
            at: String::new(),
        }
    }

    fn chunk_sizes(rows: &[HeartbeatRow<'_>]) -> Vec<usize> {
        chunks(rows).map(<[HeartbeatRow<'_>]>::len).collect()
    }

    #[test]
    fn runs_are_cut_into_the_fixed_sizes_largest_first() {
        let names: Vec<String> = (0..151).map(|i| format!("node-{i}")).collect();
        let rows: Vec<HeartbeatRow<'_>> = names.iter().map(|name| row(name)).collect();
        let sizes = chunk_sizes(&rows);
        assert_eq!(sizes, vec![64, 64, 16, 4, 1, 1, 1]);
        assert_eq!(sizes.iter().sum::<usize>(), 151);
        assert_eq!(chunk_sizes(&[]).len(), 0);
    }

    #[test]
    fn a_chunk_never_holds_one_node_twice() {
        // No chunk holds `a` twice, so each chunk's update sets `a` once, and the chunks run
        // in order: the last heartbeat of `a` is the last one written.
        let order = ["a", "b", "c", "d", "e", "a", "f", "g", "h", "a"];
        let rows: Vec<HeartbeatRow<'_>> = order.iter().map(|name| row(name)).collect();
        let cut: Vec<Vec<&str>> = chunks(&rows)
            .map(|chunk| chunk.iter().map(HeartbeatRow::node_id).collect())
            .collect();
        assert_eq!(
            cut,
            vec![
                vec!["a", "b", "c", "d"],
                vec!["e", "a", "f", "g"],
                vec!["h"],
                vec!["a"],
            ]
        );
    }

    #[test]
    fn values_lists_number_their_parameters_row_by_row() {
        assert_eq!(
            values_list(Placeholders::Numbered, 2),
            "($1, $2, $3, $4, $5, $6, $7), ($8, $9, $10, $11, $12, $13, $14)"
        );
        assert_eq!(
            values_list(Placeholders::Anonymous, 1),
            "(?, ?, ?, ?, ?, ?, ?)"
        );
    }
}
