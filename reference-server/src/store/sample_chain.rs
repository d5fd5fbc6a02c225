//! SQLite: a heartbeat stored as one plain insert.
//!
//! The writer keeps a copy of each node's key and newest sample, so that a sample's
//! predecessor is bound rather than looked up, and it brings `latest_samples` up to date once
//! every [`POINT_AFTER`] samples rather than in every commit. In between, a node's newest
//! samples may lie past the watermark (`sample_watermark.covered_through`): the pointers are
//! exact for every sample up to it, and readers take the newer of a node's pointer and its
//! samples past it ([`SQLITE_NEWEST_SAMPLES`]). Both halves are in the database, so every
//! commit is complete on its own; the copy in memory only saves reading them back. It is
//! forgotten whenever a write fails, a node's link when its heartbeat is stored another way,
//! and what is forgotten is read back when it is next needed.
//!
//! A sample is given its id here: one past every id the database holds or points at, so a
//! new sample is always past the watermark and newer than any pointer, even one left behind
//! by a `metrics` table dropped and created again. The writer is the only one that stores
//! samples.

use super::heartbeats::{
    pad_sqlite_inserts, sqlite_inserts_for, AnyQuery, HeartbeatRow, SQLITE_ROWS_PER_INSERT,
};
use sqlx::{AnyConnection, Row};
use std::collections::{HashMap, HashSet};
use std::sync::LazyLock;

/// Samples stored between two updates of `latest_samples`. Readers group at most this many
/// samples (and one batch more) on top of the pointers; a commit that passes it also updates
/// the pointers, once per node however many samples the node sent.
pub(super) const POINT_AFTER: usize = 8192;

/// Nodes whose link the writer keeps; past this it forgets them all and reads back those it
/// meets again, so a fleet that comes and goes cannot grow the copy without end.
const MOST_LINKS: usize = 100_000;

/// SQLite: each node's newest sample: its pointer, or a newer sample past the watermark.
/// Used as a table (`node_key`, `sample_id`). It groups every node's pointer: for a few nodes,
/// [`sqlite_newest_samples_of`].
pub(crate) const SQLITE_NEWEST_SAMPLES: &str = "(SELECT node_key, MAX(sample_id) AS sample_id
    FROM (SELECT node_key, sample_id FROM latest_samples
        UNION ALL
        SELECT node_key, sample_id FROM metrics
        WHERE sample_id > (SELECT covered_through FROM sample_watermark)) AS pointed_or_past
    GROUP BY node_key)";

/// SQLite: [`SQLITE_NEWEST_SAMPLES`] for the nodes whose keys `keys` lists (an SQL list: a
/// subquery in parentheses). It looks up those nodes' pointers by key and reads only the
/// samples past the watermark (at most [`POINT_AFTER`] and a batch), where the whole table
/// reads and groups the pointers of the whole fleet. At 100,000 nodes that took a node's read
/// from 63-69 ms to 1.5-2.2 ms, and the median ack in the first second of 5,000 nodes
/// joining from about 150 ms to 1.3 ms (docs/performance.md, "A node read without the fleet").
pub(crate) fn sqlite_newest_samples_of(keys: &str) -> String {
    format!(
        "(SELECT node_key, MAX(sample_id) AS sample_id
        FROM (SELECT node_key, sample_id FROM latest_samples WHERE node_key IN {keys}
            UNION ALL
            SELECT node_key, sample_id FROM metrics
            WHERE sample_id > (SELECT covered_through FROM sample_watermark)
                AND node_key IN {keys}) AS pointed_or_past
        GROUP BY node_key)"
    )
}

/// SQLite: points each node at its newest sample past the watermark, then moves the watermark
/// to the newest sample. Run inside a transaction, it leaves no sample past the watermark.
pub(super) const SQLITE_POINT_PAST_WATERMARK: [&str; 2] = [
    "INSERT INTO latest_samples (node_key, sample_id)
     SELECT node_key, MAX(sample_id) FROM metrics
     WHERE sample_id > (SELECT covered_through FROM sample_watermark)
     GROUP BY node_key
     ON CONFLICT (node_key) DO UPDATE SET sample_id = excluded.sample_id",
    SQLITE_WATERMARK_AT_NEWEST,
];

/// SQLite: the pointers are exact for every sample stored so far.
pub(super) const SQLITE_WATERMARK_AT_NEWEST: &str =
    "UPDATE sample_watermark SET covered_through = (SELECT MAX(sample_id) FROM metrics)
     WHERE EXISTS (SELECT 1 FROM metrics)";

/// Values a row binds: [`LinkedRow::bind`]'s order.
const VALUES_PER_ROW: usize = 9;

/// A plain insert of [`SQLITE_ROWS_PER_INSERT`] samples, ids and predecessors given. An empty
/// row (no id) is padding.
static INSERT: LazyLock<String> = LazyLock::new(|| {
    let row = format!("({})", ["?"; VALUES_PER_ROW].join(", "));
    let rows = vec![row.as_str(); SQLITE_ROWS_PER_INSERT].join(", ");
    format!(
        "INSERT INTO metrics (sample_id, node_key, previous_sample_id, recorded_at, status,
            cpu_usage, memory_usage, disk_usage, load_average)
         SELECT * FROM (VALUES {rows}) WHERE column1 IS NOT NULL"
    )
});

/// `BEGIN IMMEDIATE; INSERT...; [point past the watermark;] COMMIT` for each count of inserts
/// a batch can need, without and with the pointer update.
static APPEND_TEXTS: LazyLock<Vec<[String; 2]>> = LazyLock::new(|| {
    let most_inserts = sqlite_inserts_for(super::MAX_BATCH);
    (1..=most_inserts)
        .map(|inserts| [false, true].map(|point| append_text(inserts, point)))
        .collect()
});

fn append_text(inserts: usize, point: bool) -> String {
    let mut statements = vec!["BEGIN IMMEDIATE"];
    statements.extend(std::iter::repeat_n(INSERT.as_str(), inserts));
    if point {
        statements.extend(SQLITE_POINT_PAST_WATERMARK);
    }
    statements.push("COMMIT");
    statements.join(";\n")
}

/// What the writer knows of a node's chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Link {
    node_key: i64,
    newest: Option<i64>,
}

/// One heartbeat with its id and its place in its node's chain.
pub(super) struct LinkedRow<'r, 'a> {
    sample_id: i64,
    node_key: i64,
    previous: Option<i64>,
    row: &'r HeartbeatRow<'a>,
}

/// A run of heartbeats ready to append: see [`SampleChain::link`].
pub(super) struct Append<'r, 'a> {
    rows: Vec<LinkedRow<'r, 'a>>,
    /// Whether this commit also brings `latest_samples` up to date.
    points: bool,
}

/// The writer's copy of the chain.
#[derive(Debug)]
pub(super) struct SampleChain {
    links: HashMap<String, Link>,
    /// The id the next sample takes; `None` until read back.
    next_sample_id: Option<i64>,
    /// Samples that may lie past the watermark. Unknown after a reset, so it starts at
    /// [`POINT_AFTER`] and the next commit updates the pointers.
    past_watermark: usize,
}

impl Default for SampleChain {
    fn default() -> Self {
        Self {
            links: HashMap::new(),
            next_sample_id: None,
            past_watermark: POINT_AFTER,
        }
    }
}

impl SampleChain {
    /// Gives each of `rows` its id and predecessor, reading back what this copy lacks, and
    /// counts them as stored: the caller must [`Self::forget`] if the append then fails.
    /// `None` when a node has no row (and this copy must be forgotten too).
    pub(super) async fn link<'r, 'a>(
        &mut self,
        db: &mut AnyConnection,
        rows: &'r [HeartbeatRow<'a>],
    ) -> Result<Option<Append<'r, 'a>>, sqlx::Error> {
        let mut next = match self.next_sample_id {
            Some(next) => next,
            None => next_free_sample_id(db).await?,
        };
        self.read_back_missing(db, rows).await?;
        let mut linked = Vec::with_capacity(rows.len());
        for row in rows {
            let Some(link) = self.links.get_mut(row.node_id()) else {
                return Ok(None);
            };
            linked.push(LinkedRow {
                sample_id: next,
                node_key: link.node_key,
                previous: link.newest.replace(next),
                row,
            });
            next += 1;
        }
        self.next_sample_id = Some(next);
        let points = self.past_watermark + rows.len() >= POINT_AFTER;
        self.past_watermark = if points {
            0
        } else {
            self.past_watermark + rows.len()
        };
        Ok(Some(Append {
            rows: linked,
            points,
        }))
    }

    /// Drops the copy: the next run reads back what it needs.
    pub(super) fn forget(&mut self) {
        *self = Self::default();
    }

    /// Drops these nodes' links and the next id, when another path stored their heartbeats
    /// (and took ids); the other nodes' links still hold.
    pub(super) fn forget_nodes<'n>(&mut self, node_ids: impl IntoIterator<Item = &'n str>) {
        for node_id in node_ids {
            self.links.remove(node_id);
            self.next_sample_id = None;
        }
    }

    async fn read_back_missing(
        &mut self,
        db: &mut AnyConnection,
        rows: &[HeartbeatRow<'_>],
    ) -> Result<(), sqlx::Error> {
        let mut missing: HashSet<&str> = rows
            .iter()
            .map(HeartbeatRow::node_id)
            .filter(|node_id| !self.links.contains_key(*node_id))
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        if self.links.len() + missing.len() > MOST_LINKS {
            self.links.clear();
            missing = rows.iter().map(HeartbeatRow::node_id).collect();
        }
        let sql = read_back_text();
        let ids = serde_json::to_string(&missing).expect("strings always serialize");
        for found in sqlx::query(&sql).bind(ids).fetch_all(db).await? {
            let link = Link {
                node_key: found.try_get(1)?,
                newest: found.try_get(2)?,
            };
            self.links.insert(found.try_get(0)?, link);
        }
        Ok(())
    }
}

/// The id, key and newest sample of each node whose id is in the JSON array bound as `$1`.
pub(super) fn read_back_text() -> String {
    let newest = sqlite_newest_samples_of(
        "(SELECT node_key FROM nodes WHERE node_id IN (SELECT value FROM json_each($1)))",
    );
    format!(
        "SELECT nodes.node_id, nodes.node_key, newest.sample_id
         FROM nodes LEFT JOIN {newest} AS newest ON newest.node_key = nodes.node_key
         WHERE nodes.node_id IN (SELECT value FROM json_each($1))"
    )
}

/// One past every sample id that is stored, pointed at, or covered by the watermark.
async fn next_free_sample_id(db: &mut AnyConnection) -> Result<i64, sqlx::Error> {
    let newest: i64 = sqlx::query_scalar(
        "SELECT MAX(COALESCE((SELECT MAX(sample_id) FROM metrics), 0),
            COALESCE((SELECT MAX(sample_id) FROM latest_samples), 0),
            COALESCE((SELECT covered_through FROM sample_watermark), 0))",
    )
    .fetch_one(db)
    .await?;
    Ok(newest + 1)
}

/// Appends the run as a transaction of its own, in one execution (one trip to SQLite's
/// thread). When a statement fails the rest of the text does not run, and the transaction is
/// still open: the caller must roll it back.
pub(super) async fn append(
    connection: &mut AnyConnection,
    run: &Append<'_, '_>,
) -> Result<(), sqlx::Error> {
    let inserts = sqlite_inserts_for(run.rows.len());
    let text = &APPEND_TEXTS[inserts - 1][usize::from(run.points)];
    let query = run
        .rows
        .iter()
        .fold(sqlx::query(text), |query, row| row.bind(query));
    pad_sqlite_inserts(query, run.rows.len(), VALUES_PER_ROW)
        .execute(connection)
        .await?;
    Ok(())
}

impl<'a> LinkedRow<'_, 'a> {
    /// `[sample_id, node_key, previous, then the row's own values]`.
    fn bind<'q>(&self, query: AnyQuery<'q>) -> AnyQuery<'q>
    where
        'a: 'q,
    {
        let query = query
            .bind(self.sample_id)
            .bind(self.node_key)
            .bind(self.previous);
        self.row.bind_values(query)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_batch_size_has_a_prepared_text() {
        let most_inserts = super::super::MAX_BATCH.div_ceil(SQLITE_ROWS_PER_INSERT);
        assert_eq!(APPEND_TEXTS.len(), most_inserts);
        let [plain, pointing] = &APPEND_TEXTS[1];
        assert_eq!(plain.matches("INSERT INTO metrics").count(), 2);
        assert!(!plain.contains("latest_samples"));
        assert!(pointing.contains("INSERT INTO latest_samples"));
        assert!(pointing.ends_with("COMMIT") && plain.starts_with("BEGIN IMMEDIATE"));
    }

    #[test]
    fn a_forgotten_chain_updates_the_pointers_at_its_next_commit() {
        let mut chain = SampleChain {
            past_watermark: 3,
            ..SampleChain::default()
        };
        chain.next_sample_id = Some(7);
        chain.forget();
        assert_eq!(chain.next_sample_id, None);
        assert_eq!(chain.past_watermark, POINT_AFTER);
    }
}
