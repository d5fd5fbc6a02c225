//! Storage on both backends: SQLite (default) and a real PostgreSQL. Data is committed before
//! the ack; a database failure is DATABASE_ERROR and the server goes on serving.

mod support;

use futures_util::{SinkExt, StreamExt};
use reference_server::protocol::nodemgr::envelope::rfc3339;
use reference_server::protocol::nodemgr::{
    CommandResult, Metrics, NodeInfo, SessionConfig, StoreFailure, StoreOp,
};
use reference_server::server::start_nodemgr;
use reference_server::store::{command_state, CommandRecord, Store, StoreConfig};
use serde_json::{json, Value};
use support::postgres::Postgres;
use tokio_tungstenite::tungstenite::Message;

fn metrics(x: f64) -> Metrics {
    Metrics {
        cpu_usage: x,
        memory_usage: x + 1.0,
        disk_usage: x + 2.0,
        load_average: x / 10.0,
    }
}

fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4())
}

/// A heartbeat of `node_id` with [`metrics`]`(x)`, now.
fn heartbeat(node_id: &str, x: f64) -> StoreOp {
    StoreOp::RecordHeartbeat {
        node_id: node_id.to_owned(),
        status: "online".into(),
        metrics: metrics(x),
        at: chrono::Utc::now(),
    }
}

/// The CPU figure of each sample in a node's history, newest first.
async fn cpu_history(store: &Store, node_id: &str, limit: i64) -> Vec<f64> {
    let history = store.metric_history(node_id, limit).await.expect("history");
    history.iter().map(|s| s.metrics.cpu_usage).collect()
}

fn command(node_id: &str) -> CommandRecord {
    CommandRecord {
        command_id: unique("cmd"),
        node_id: node_id.to_owned(),
        command_text: "true".to_owned(),
        timeout: 30,
        state: command_state::QUEUED.to_owned(),
        exit_code: None,
        stdout: None,
        stderr: None,
        execution_time_ms: None,
        created_at: "2025-01-21T10:00:00.000Z".to_owned(),
        started_at: None,
        finished_at: None,
    }
}

async fn register(store: &Store, node_id: &str) {
    let at = chrono::Utc::now();
    let info = NodeInfo {
        hostname: Some("h".into()),
        ..NodeInfo::default()
    };
    store
        .write(StoreOp::UpsertNode {
            node_id: node_id.into(),
            info,
            at,
        })
        .await
        .expect("upsert");
}

/// Heartbeats of `node_id` with [`metrics`]`(x)` for each `x`, one after the other.
async fn send_heartbeats(store: &Store, node_id: &str, xs: &[f64]) {
    for x in xs {
        store
            .write(heartbeat(node_id, *x))
            .await
            .expect("heartbeat");
    }
}

/// Submits every write before awaiting any, so that the writer batches them; their
/// outcomes, in order.
async fn write_concurrently(store: &Store, ops: Vec<StoreOp>) -> Vec<Result<(), StoreFailure>> {
    let mut pending = Vec::with_capacity(ops.len());
    for op in ops {
        pending.push(store.submit(op).await);
    }
    futures_util::future::join_all(pending).await
}

/// Drops `metrics` and lets the store create it again, as C9's sabotage does: sample ids
/// start over while `latest_samples` still points at the old ones.
async fn recreate_metrics_table(store: &Store) {
    sqlx::query("DROP TABLE metrics")
        .execute(store.pool())
        .await
        .expect("drop");
    store.ensure_schema().await.expect("restore");
}

/// The whole write and read path, run once per backend.
async fn lifecycle_round_trips(store: Store) {
    let node_id = unique("node");
    register(&store, &node_id).await;
    for x in [1.0, 2.0] {
        let op = heartbeat(&node_id, x);
        store.write(op).await.expect("heartbeat");
    }
    let node = store.node(&node_id).await.expect("read").expect("node");
    assert_eq!(
        (node.hostname.as_deref(), node.metrics),
        (Some("h"), Some(metrics(2.0)))
    );
    assert_eq!(
        store
            .metric_history(&node_id, 10)
            .await
            .expect("history")
            .len(),
        2
    );

    let finished = command(&node_id);
    store.insert_command(&finished).await.expect("insert");
    let at = chrono::Utc::now();
    let started = StoreOp::CommandStarted {
        node_id: node_id.clone(),
        command_id: finished.command_id.clone(),
        at,
    };
    store.write(started).await.expect("started");
    let result = CommandResult {
        command_id: finished.command_id.clone(),
        exit_code: 3,
        stdout: "o".into(),
        stderr: "e".into(),
        execution_time_ms: 7,
    };
    store
        .write(StoreOp::CommandFinished {
            node_id: node_id.clone(),
            result: result.clone(),
            at,
        })
        .await
        .expect("finished");
    let stored = store
        .command(&finished.command_id)
        .await
        .expect("read")
        .expect("command");
    assert_eq!(
        (
            stored.state.as_str(),
            stored.exit_code,
            stored.stdout.as_deref()
        ),
        ("finished", Some(3), Some("o"))
    );

    let late = command(&node_id);
    store.insert_command(&late).await.expect("insert");
    store
        .write(StoreOp::CommandTimedOut {
            command_id: late.command_id.clone(),
            at,
        })
        .await
        .expect("timed out");
    let late_result = CommandResult {
        command_id: late.command_id.clone(),
        ..result.clone()
    };
    let refused = store
        .write(StoreOp::CommandFinished {
            node_id: node_id.clone(),
            result: late_result,
            at,
        })
        .await;
    assert_eq!(refused, Err(StoreFailure::CommandTimedOut));

    let unknown = CommandResult {
        command_id: "never-sent".into(),
        ..result
    };
    let refused = store
        .write(StoreOp::CommandFinished {
            node_id: node_id.clone(),
            result: unknown,
            at,
        })
        .await;
    assert_eq!(refused, Err(StoreFailure::UnknownCommand));

    let open = command(&node_id);
    store.insert_command(&open).await.expect("insert");
    store.node_disconnected(&node_id).await.expect("disconnect");
    let lost = store
        .command(&open.command_id)
        .await
        .expect("read")
        .expect("command");
    assert_eq!(lost.state, "lost");
    assert_eq!(
        store
            .node(&node_id)
            .await
            .expect("read")
            .expect("node")
            .status,
        "offline"
    );

    // C10: the next heartbeat makes it online again, and is its last-seen time.
    let back_at = chrono::Utc::now() + chrono::Duration::milliseconds(5);
    let op = StoreOp::RecordHeartbeat {
        node_id: node_id.clone(),
        status: "online".into(),
        metrics: metrics(3.0),
        at: back_at,
    };
    store.write(op).await.expect("heartbeat");
    let node = store.node(&node_id).await.expect("read").expect("node");
    assert_eq!(
        (node.status.as_str(), node.last_seen, node.metrics),
        ("online", rfc3339(back_at), Some(metrics(3.0)))
    );
}

#[tokio::test]
async fn sqlite_stores_and_reads_back_every_record() {
    on_sqlite(lifecycle_round_trips).await;
}

#[tokio::test]
async fn postgres_stores_and_reads_back_every_record() {
    on_postgres(lifecycle_round_trips).await;
}

/// Runs `test` on a store in a fresh SQLite file.
async fn on_sqlite<F: std::future::Future<Output = ()>>(test: impl FnOnce(Store) -> F) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(&StoreConfig::sqlite_in(dir.path()).expect("config"))
        .await
        .expect("open");
    test(store).await;
}

/// Runs `test` on a store in a real PostgreSQL (skipped, loudly, where there is none).
async fn on_postgres<F: std::future::Future<Output = ()>>(test: impl FnOnce(Store) -> F) {
    let Some(pg) = Postgres::start() else { return };
    let store = Store::open(&StoreConfig::from_url(pg.url.clone()))
        .await
        .expect("open postgres");
    test(store).await;
}

/// Many concurrent heartbeats, from many nodes and several from each, all commit (the writer
/// batches them into multi-row statements) and each is answered; a node's latest metrics are
/// its last heartbeat's; a heartbeat from a node with no row fails alone.
async fn bulk_heartbeats_are_all_committed(store: Store) {
    heartbeats_of_many_nodes_are_chained(store, 40, 15, Some(300)).await;
}

/// With no stranger to fail the batch, the writer commits runs of 150 distinct nodes: more
/// than one SQLite insert carries (64), so each run spans several inserts and the last is
/// padded, and the next run links to what they left.
async fn long_runs_are_all_committed(store: Store) {
    heartbeats_of_many_nodes_are_chained(store, 150, 4, None).await;
}

/// `per_node` heartbeats from each of `node_count` nodes, in turns, committed concurrently
/// (in as few batches as the writer makes of them), with an unregistered node's at
/// `stranger_at`: each node's history and latest metrics are exactly what it sent.
async fn heartbeats_of_many_nodes_are_chained(
    store: Store,
    node_count: usize,
    per_node: usize,
    stranger_at: Option<usize>,
) {
    let nodes: Vec<String> = (0..node_count).map(|_| unique("node")).collect();
    for node_id in &nodes {
        register(&store, node_id).await;
    }
    let mut ops: Vec<StoreOp> = (0..node_count * per_node)
        .map(|i| heartbeat(&nodes[i % node_count], i as f64))
        .collect();
    let stranger = stranger_at.map(|at| {
        let stranger = unique("unregistered");
        ops.insert(at, heartbeat(&stranger, -1.0));
        stranger
    });
    let outcomes = write_concurrently(&store, ops).await;
    for (i, outcome) in outcomes.iter().enumerate() {
        match i {
            i if Some(i) == stranger_at => assert!(
                matches!(outcome, Err(StoreFailure::Database(_))),
                "the unregistered node's heartbeat: {outcome:?}"
            ),
            _ => assert_eq!(outcome, &Ok(()), "heartbeat {i}"),
        }
    }
    for (n, node_id) in nodes.iter().enumerate() {
        let history = store.metric_history(node_id, 1000).await.expect("history");
        let cpu: Vec<f64> = history.iter().map(|s| s.metrics.cpu_usage).collect();
        let sent_newest_first: Vec<f64> = (0..per_node)
            .rev()
            .map(|k| (k * node_count + n) as f64)
            .collect();
        assert_eq!(cpu, sent_newest_first, "history of node {n}");
        let newest_two = store.metric_history(node_id, 2).await.expect("history");
        assert_eq!(newest_two, history[..2], "history of node {n}, limited");
        let record = store.node(node_id).await.expect("read").expect("node");
        let last = ((per_node - 1) * node_count + n) as f64;
        assert_eq!(
            record.metrics,
            Some(metrics(last)),
            "latest metrics of node {n}"
        );
    }
    if let Some(stranger) = stranger {
        assert!(store
            .metric_history(&stranger, 10)
            .await
            .expect("history")
            .is_empty());
    }
}

#[tokio::test]
async fn sqlite_commits_bulk_heartbeats() {
    on_sqlite(bulk_heartbeats_are_all_committed).await;
}

#[tokio::test]
async fn postgres_commits_bulk_heartbeats() {
    on_postgres(bulk_heartbeats_are_all_committed).await;
}

#[tokio::test]
async fn sqlite_commits_runs_longer_than_one_insert() {
    on_sqlite(long_runs_are_all_committed).await;
}

#[tokio::test]
async fn postgres_commits_runs_longer_than_one_insert() {
    on_postgres(long_runs_are_all_committed).await;
}

/// More samples than SQLite's writer stores between two updates of `latest_samples` (8,192),
/// in batches: after each batch every node's latest metrics are its last heartbeat's, whether
/// that sample is past the watermark or pointed at, and at the end each history is whole.
async fn histories_stay_whole_across_pointer_updates(store: Store) {
    const NODES: usize = 16;
    const ROUNDS: usize = 600;
    const ROUNDS_PER_BATCH: usize = 30;
    let nodes: Vec<String> = (0..NODES).map(|_| unique("node")).collect();
    for node_id in &nodes {
        register(&store, node_id).await;
    }
    for first_round in (0..ROUNDS).step_by(ROUNDS_PER_BATCH) {
        let rounds = first_round..first_round + ROUNDS_PER_BATCH;
        let ops = rounds
            .flat_map(|round| {
                nodes
                    .iter()
                    .map(move |node_id| heartbeat(node_id, round as f64))
            })
            .collect();
        let outcomes = write_concurrently(&store, ops).await;
        assert!(outcomes.iter().all(Result::is_ok), "{outcomes:?}");
        let last = (first_round + ROUNDS_PER_BATCH - 1) as f64;
        for node_id in &nodes {
            let node = store.node(node_id).await.expect("read").expect("node");
            assert_eq!(node.metrics, Some(metrics(last)), "after round {last}");
        }
    }
    let whole: Vec<f64> = (0..ROUNDS).rev().map(|round| round as f64).collect();
    for node_id in &nodes {
        assert_eq!(cpu_history(&store, node_id, 10_000).await, whole);
    }
}

#[tokio::test]
async fn sqlite_keeps_histories_whole_across_pointer_updates() {
    on_sqlite(histories_stay_whole_across_pointer_updates).await;
}

#[tokio::test]
async fn postgres_keeps_histories_whole_across_pointer_updates() {
    on_postgres(histories_stay_whole_across_pointer_updates).await;
}

/// The newest sample id and the watermark: samples past it are not pointed at yet.
async fn sqlite_samples_past_the_watermark(store: &Store) -> i64 {
    sqlx::query_scalar(
        "SELECT (SELECT MAX(sample_id) FROM metrics)
            - (SELECT covered_through FROM sample_watermark)",
    )
    .fetch_one(store.pool())
    .await
    .expect("watermark")
}

/// A store opened again on a file whose newest samples are past the watermark links its
/// first samples to them; so does a batch that mixes a register with heartbeats (stored by the
/// other path, which first brings the pointers up to date), and a node left out of that batch
/// keeps its chain across it.
#[tokio::test]
async fn sqlite_continues_each_chain_past_the_watermark() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = StoreConfig::sqlite_in(dir.path()).expect("config");
    let node_id = unique("node");
    let store = Store::open(&config).await.expect("open");
    register(&store, &node_id).await;
    send_heartbeats(&store, &node_id, &[0.0, 1.0, 2.0]).await;
    assert!(sqlite_samples_past_the_watermark(&store).await > 0);
    drop(store);

    let store = Store::open(&config).await.expect("reopen");
    send_heartbeats(&store, &node_id, &[3.0, 4.0]).await;
    assert!(sqlite_samples_past_the_watermark(&store).await > 0);
    // A node the mixed batch leaves out keeps its chain on either side of it.
    let bystander = unique("bystander");
    register(&store, &bystander).await;
    send_heartbeats(&store, &bystander, &[10.0]).await;
    let newcomer = unique("newcomer");
    let mixed = vec![
        StoreOp::UpsertNode {
            node_id: newcomer.clone(),
            info: NodeInfo::default(),
            at: chrono::Utc::now(),
        },
        heartbeat(&node_id, 5.0),
        heartbeat(&newcomer, 50.0),
    ];
    let outcomes = write_concurrently(&store, mixed).await;
    assert!(outcomes.iter().all(Result::is_ok), "{outcomes:?}");
    send_heartbeats(&store, &node_id, &[6.0]).await;
    send_heartbeats(&store, &newcomer, &[51.0]).await;
    send_heartbeats(&store, &bystander, &[11.0]).await;
    assert_eq!(cpu_history(&store, &bystander, 10).await, [11.0, 10.0]);
    assert_eq!(
        cpu_history(&store, &node_id, 10).await,
        [6.0, 5.0, 4.0, 3.0, 2.0, 1.0, 0.0]
    );
    assert_eq!(cpu_history(&store, &newcomer, 10).await, [51.0, 50.0]);
}

/// Heartbeats from distinct nodes, with an unregistered node among them: only that one fails,
/// and the writer goes on. Every batch the writer cuts from them holds heartbeats of distinct
/// nodes alone, so on SQLite each is one execution that is its own transaction, and the one
/// that holds the stranger fails inside it: it must have been rolled back, or the next round
/// could not begin its own.
async fn a_stranger_fails_alone_in_a_batch_of_distinct_nodes(store: Store) {
    const NODES: usize = 20;
    let nodes: Vec<String> = (0..NODES).map(|_| unique("node")).collect();
    for node_id in &nodes {
        register(&store, node_id).await;
    }
    let stranger = unique("unregistered");
    for round in 0..2 {
        let mut senders: Vec<&str> = nodes.iter().map(String::as_str).collect();
        if round == 0 {
            senders.insert(NODES / 2, &stranger);
        }
        let ops = senders
            .iter()
            .map(|node_id| heartbeat(node_id, f64::from(round)))
            .collect();
        let outcomes = write_concurrently(&store, ops).await;
        for (node_id, outcome) in senders.iter().zip(&outcomes) {
            if *node_id == stranger {
                assert!(
                    matches!(outcome, Err(StoreFailure::Database(_))),
                    "{outcome:?}"
                );
            } else {
                assert_eq!(outcome, &Ok(()), "round {round}, {node_id}");
            }
        }
    }
    for node_id in &nodes {
        let cpu = cpu_history(&store, node_id, 10).await;
        assert_eq!(cpu, [1.0, 0.0], "history of {node_id}");
    }
}

#[tokio::test]
async fn sqlite_fails_a_stranger_alone_in_a_batch_of_distinct_nodes() {
    on_sqlite(a_stranger_fails_alone_in_a_batch_of_distinct_nodes).await;
}

#[tokio::test]
async fn postgres_fails_a_stranger_alone_in_a_batch_of_distinct_nodes() {
    on_postgres(a_stranger_fails_alone_in_a_batch_of_distinct_nodes).await;
}

/// After the `metrics` table is dropped and created again (C9's sabotage), sample ids start
/// over, so a node's pointer to its newest sample may name another node's new sample: the node
/// shows no metrics then, never the other node's.
async fn a_recreated_metrics_table_shows_no_stale_metrics(store: Store) {
    let (quiet, talker) = (unique("quiet"), unique("talker"));
    register(&store, &quiet).await;
    register(&store, &talker).await;
    send_heartbeats(&store, &quiet, &[1.0]).await;
    recreate_metrics_table(&store).await;
    send_heartbeats(&store, &talker, &[2.0]).await;
    let quiet_node = store.node(&quiet).await.expect("read").expect("node");
    assert_eq!(quiet_node.metrics, None, "{quiet_node:?}");
    assert_eq!(cpu_history(&store, &quiet, 10).await, Vec::<f64>::new());
    let talker_node = store.node(&talker).await.expect("read").expect("node");
    assert_eq!(talker_node.metrics, Some(metrics(2.0)));
    assert_eq!(cpu_history(&store, &talker, 10).await, [2.0]);
}

/// A node that sent on both sides of a recreated `metrics` table: its first new sample points
/// at its old newest id, which its second new sample takes. Its history is the new samples
/// once each, not a circle.
async fn a_recreated_metrics_table_leaves_no_circle_in_a_history(store: Store) {
    let node_id = unique("node");
    register(&store, &node_id).await;
    send_heartbeats(&store, &node_id, &[1.0, 2.0]).await;
    recreate_metrics_table(&store).await;
    send_heartbeats(&store, &node_id, &[3.0, 4.0]).await;
    assert_eq!(cpu_history(&store, &node_id, 10).await, [4.0, 3.0]);
}

#[tokio::test]
async fn sqlite_leaves_no_circle_in_a_history_after_the_table_is_recreated() {
    on_sqlite(a_recreated_metrics_table_leaves_no_circle_in_a_history).await;
}

#[tokio::test]
async fn postgres_leaves_no_circle_in_a_history_after_the_table_is_recreated() {
    on_postgres(a_recreated_metrics_table_leaves_no_circle_in_a_history).await;
}

#[tokio::test]
async fn sqlite_shows_no_stale_metrics_after_the_table_is_recreated() {
    on_sqlite(a_recreated_metrics_table_shows_no_stale_metrics).await;
}

#[tokio::test]
async fn postgres_shows_no_stale_metrics_after_the_table_is_recreated() {
    on_postgres(a_recreated_metrics_table_shows_no_stale_metrics).await;
}

/// Metrics that do not survive a decimal round trip unless it is exact.
const AWKWARD: [f64; 4] = [1.0 / 3.0, 0.1 + 0.2, 1e-300, 123_456_789.123_456_78];

/// A heartbeat's metrics are read back exactly as sent: they travel to the database as JSON
/// text, so this checks both sides' float formatting and parsing.
async fn metrics_are_read_back_bit_for_bit(store: Store) {
    let node_id = unique("node");
    register(&store, &node_id).await;
    let sent = Metrics {
        cpu_usage: AWKWARD[0],
        memory_usage: AWKWARD[1],
        disk_usage: AWKWARD[2],
        load_average: AWKWARD[3],
    };
    let op = StoreOp::RecordHeartbeat {
        node_id: node_id.clone(),
        status: "online".into(),
        metrics: sent,
        at: chrono::Utc::now(),
    };
    store.write(op).await.expect("heartbeat");
    let node = store.node(&node_id).await.expect("read").expect("node");
    let read = node.metrics.expect("latest metrics");
    let bits =
        |m: &Metrics| [m.cpu_usage, m.memory_usage, m.disk_usage, m.load_average].map(f64::to_bits);
    assert_eq!(bits(&read), bits(&sent), "{read:?} vs {sent:?}");
}

#[tokio::test]
async fn sqlite_reads_metrics_back_bit_for_bit() {
    on_sqlite(metrics_are_read_back_bit_for_bit).await;
}

#[tokio::test]
async fn postgres_reads_metrics_back_bit_for_bit() {
    on_postgres(metrics_are_read_back_bit_for_bit).await;
}

/// Text that JSON must escape or carry as multi-byte UTF-8.
const AWKWARD_TEXT: &str = "q\"uote \\ back\\slash tab\t ctl\u{1} é 漢 🚀";

/// A node id and a heartbeat status are free text (C2 sets no character rules): both travel to
/// the database inside the run's JSON and must come back as they were sent.
async fn text_is_read_back_as_sent(store: Store) {
    let node_id = format!("{}{AWKWARD_TEXT}", unique("node"));
    register(&store, &node_id).await;
    let op = StoreOp::RecordHeartbeat {
        node_id: node_id.clone(),
        status: AWKWARD_TEXT.into(),
        metrics: metrics(1.0),
        at: chrono::Utc::now(),
    };
    store.write(op).await.expect("heartbeat");
    let history = store.metric_history(&node_id, 10).await.expect("history");
    let statuses: Vec<&str> = history.iter().map(|s| s.status.as_str()).collect();
    assert_eq!(statuses, [AWKWARD_TEXT]);
    let node = store.node(&node_id).await.expect("read").expect("node");
    assert_eq!(node.metrics, Some(metrics(1.0)), "{node:?}");
}

#[tokio::test]
async fn sqlite_reads_text_back_as_sent() {
    on_sqlite(text_is_read_back_as_sent).await;
}

#[tokio::test]
async fn postgres_reads_text_back_as_sent() {
    on_postgres(text_is_read_back_as_sent).await;
}

/// The tables of the version before the sample chain: a node key, and metrics indexed by it.
fn indexed_tables(backend_key: &str) -> Vec<String> {
    [
        "CREATE TABLE nodes (node_key {key}, node_id TEXT NOT NULL UNIQUE, hostname TEXT,
            ip_address TEXT, os_info TEXT, status TEXT NOT NULL, status_since TEXT NOT NULL,
            registered_at TEXT NOT NULL, last_seen TEXT NOT NULL)",
        "CREATE TABLE metrics (sample_id {key}, node_key BIGINT NOT NULL,
            recorded_at TEXT NOT NULL, status TEXT NOT NULL, cpu_usage DOUBLE PRECISION NOT NULL,
            memory_usage DOUBLE PRECISION NOT NULL, disk_usage DOUBLE PRECISION NOT NULL,
            load_average DOUBLE PRECISION NOT NULL)",
        "CREATE INDEX metrics_by_node ON metrics (node_key)",
        "INSERT INTO nodes (node_id, hostname, status, status_since, registered_at, last_seen)
            VALUES ('indexed-a', 'h', 'online', '2025-01-21T10:00:00.000Z',
            '2025-01-21T10:00:00.000Z', '2025-01-21T10:00:00.000Z')",
        "INSERT INTO nodes (node_id, hostname, status, status_since, registered_at, last_seen)
            VALUES ('indexed-b', 'h', 'online', '2025-01-21T10:00:00.000Z',
            '2025-01-21T10:00:00.000Z', '2025-01-21T10:00:00.000Z')",
    ]
    .iter()
    .map(|statement| statement.replace("{key}", backend_key))
    .chain((1..=3).flat_map(|x| {
        ["indexed-a", "indexed-b"].map(|node| {
            format!(
                "INSERT INTO metrics (node_key, recorded_at, status, cpu_usage, memory_usage,
                    disk_usage, load_average)
                 SELECT node_key, '2025-01-21T10:00:0{x}.000Z', 'online', {x}.0, {x}.0 + 1.0,
                    {x}.0 + 2.0, {x}.0 / 10.0 FROM nodes WHERE node_id = '{node}'"
            )
        })
    }))
    .collect()
}

/// A database of the version with metrics indexed by node opens with every sample chained to
/// its node's previous one, each node's latest metrics its newest sample, and takes new
/// heartbeats onto the chain.
async fn indexed_metrics_are_chained(config: StoreConfig, backend_key: &str) {
    let pool = sqlx::AnyPool::connect(&config.url).await.expect("connect");
    for statement in indexed_tables(backend_key) {
        sqlx::query(&statement)
            .execute(&pool)
            .await
            .expect(&statement);
    }
    let store = Store::open(&config).await.expect("open and migrate");
    for node_id in ["indexed-a", "indexed-b"] {
        let node = store.node(node_id).await.expect("read").expect("node");
        assert_eq!(node.metrics, Some(metrics(3.0)), "latest of {node_id}");
        let cpu = cpu_history(&store, node_id, 10).await;
        assert_eq!(cpu, [3.0, 2.0, 1.0], "history of {node_id}");
    }
    let op = heartbeat("indexed-a", 4.0);
    store.write(op).await.expect("a new heartbeat");
    let again = Store::open(&config).await.expect("reopen");
    assert_eq!(
        cpu_history(&again, "indexed-a", 10).await,
        [4.0, 3.0, 2.0, 1.0]
    );
}

#[tokio::test]
async fn sqlite_chains_the_samples_of_an_indexed_version() {
    sqlx::any::install_default_drivers();
    let dir = tempfile::tempdir().expect("tempdir");
    let config = StoreConfig::sqlite_in(dir.path()).expect("config");
    indexed_metrics_are_chained(config, "INTEGER PRIMARY KEY").await;
}

#[tokio::test]
async fn postgres_chains_the_samples_of_an_indexed_version() {
    sqlx::any::install_default_drivers();
    let Some(pg) = Postgres::start() else { return };
    let config = StoreConfig::from_url(pg.url.clone());
    let key = "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY";
    indexed_metrics_are_chained(config, key).await;
}

/// The tables of versions before the node key, as they created them.
const EARLIER_TABLES: &[&str] = &[
    "CREATE TABLE nodes (node_id TEXT PRIMARY KEY, hostname TEXT, ip_address TEXT, os_info TEXT,
        status TEXT NOT NULL, registered_at TEXT NOT NULL, last_seen TEXT NOT NULL,
        cpu_usage DOUBLE PRECISION, memory_usage DOUBLE PRECISION, disk_usage DOUBLE PRECISION,
        load_average DOUBLE PRECISION)",
    "CREATE TABLE metrics (node_id TEXT NOT NULL, recorded_at TEXT NOT NULL, status TEXT NOT NULL,
        cpu_usage DOUBLE PRECISION NOT NULL, memory_usage DOUBLE PRECISION NOT NULL,
        disk_usage DOUBLE PRECISION NOT NULL, load_average DOUBLE PRECISION NOT NULL)",
    "CREATE INDEX metrics_by_node ON metrics (node_id, recorded_at)",
    "INSERT INTO nodes VALUES ('old-node', 'h', NULL, NULL, 'offline', '2025-01-21T10:00:00.000Z',
        '2025-01-21T10:00:02.000Z', 2.0, 3.0, 4.0, 0.2)",
    "INSERT INTO metrics VALUES ('old-node', '2025-01-21T10:00:01.000Z', 'online', 1.0, 2.0, 3.0, 0.1)",
    "INSERT INTO metrics VALUES ('old-node', '2025-01-21T10:00:02.000Z', 'online', 2.0, 3.0, 4.0, 0.2)",
];

/// A database written by an earlier version opens with its nodes and history intact, and
/// takes new heartbeats.
async fn earlier_tables_are_moved_over(config: StoreConfig) {
    let pool = sqlx::AnyPool::connect(&config.url).await.expect("connect");
    for statement in EARLIER_TABLES {
        sqlx::query(statement)
            .execute(&pool)
            .await
            .expect(statement);
    }
    let store = Store::open(&config).await.expect("open and migrate");
    let node = store.node("old-node").await.expect("read").expect("node");
    assert_eq!(
        (node.status.as_str(), node.last_seen.as_str(), node.metrics),
        ("offline", "2025-01-21T10:00:02.000Z", Some(metrics(2.0)))
    );
    let history = store.metric_history("old-node", 10).await.expect("history");
    let times: Vec<&str> = history.iter().map(|s| s.recorded_at.as_str()).collect();
    assert_eq!(
        times,
        ["2025-01-21T10:00:02.000Z", "2025-01-21T10:00:01.000Z"]
    );
    let op = heartbeat("old-node", 5.0);
    store.write(op).await.expect("a new heartbeat");
    let node = store.node("old-node").await.expect("read").expect("node");
    assert_eq!(
        (node.status.as_str(), node.metrics),
        ("online", Some(metrics(5.0)))
    );
    // Opening again finds the current tables and changes nothing.
    let again = Store::open(&config).await.expect("reopen");
    assert_eq!(
        again
            .metric_history("old-node", 10)
            .await
            .expect("history")
            .len(),
        3
    );
}

#[tokio::test]
async fn sqlite_moves_an_earlier_versions_tables_over() {
    sqlx::any::install_default_drivers();
    let dir = tempfile::tempdir().expect("tempdir");
    earlier_tables_are_moved_over(StoreConfig::sqlite_in(dir.path()).expect("config")).await;
}

#[tokio::test]
async fn postgres_moves_an_earlier_versions_tables_over() {
    sqlx::any::install_default_drivers();
    let Some(pg) = Postgres::start() else { return };
    earlier_tables_are_moved_over(StoreConfig::from_url(pg.url.clone())).await;
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn next_json(ws: &mut Ws) -> Value {
    let frame = tokio::time::timeout(std::time::Duration::from_secs(10), ws.next())
        .await
        .expect("a reply in time");
    let Some(Ok(Message::Text(text))) = frame else {
        panic!("not text: {frame:?}")
    };
    serde_json::from_str(&text).expect("json")
}

async fn send(ws: &mut Ws, kind: &str, id: &str, data: Value) {
    let frame = json!({"type": kind, "id": id, "timestamp": "2025-01-21T10:00:00Z", "data": data});
    ws.send(Message::text(frame.to_string()))
        .await
        .expect("send");
}

fn heartbeat_data(node_id: &str) -> Value {
    json!({"node_id": node_id, "metrics": {"cpu_usage": 1.0, "memory_usage": 1.0, "disk_usage": 1.0, "load_average": 0.1}})
}

/// C9: drop the metrics table under a running server, then restore it.
async fn database_error_then_recovery(config: StoreConfig) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let server = start_nodemgr(listener, SessionConfig::default(), &config)
        .await
        .expect("server");
    let node_id = unique("node");
    let (mut ws, _) = tokio_tungstenite::connect_async(format!(
        "{}?token=default-token&node_id={node_id}",
        server.ws_url()
    ))
    .await
    .expect("connect");
    assert_eq!(next_json(&mut ws).await["type"], "welcome");
    send(&mut ws, "node_register", "r-1", json!({"node_id": node_id})).await;
    assert_eq!(next_json(&mut ws).await["data"]["success"], true);

    let saboteur = Store::open(&config).await.expect("second handle");
    sqlx::query("DROP TABLE metrics")
        .execute(saboteur.pool())
        .await
        .expect("drop");
    send(&mut ws, "heartbeat", "h-1", heartbeat_data(&node_id)).await;
    let reply = next_json(&mut ws).await;
    assert_eq!(
        (reply["id"].as_str(), reply["data"]["error_code"].as_str()),
        (Some("h-1"), Some("DATABASE_ERROR")),
        "{reply}"
    );

    saboteur.ensure_schema().await.expect("restore");
    send(&mut ws, "heartbeat", "h-2", heartbeat_data(&node_id)).await;
    let reply = next_json(&mut ws).await;
    assert_eq!(
        (reply["type"].as_str(), reply["id"].as_str()),
        (Some("heartbeat_ack"), Some("h-2")),
        "{reply}"
    );
    server.stop().await;
}

#[tokio::test]
async fn sqlite_failure_is_database_error_and_the_server_recovers() {
    let dir = tempfile::tempdir().expect("tempdir");
    database_error_then_recovery(StoreConfig::sqlite_in(dir.path()).expect("config")).await;
}

#[tokio::test]
async fn postgres_failure_is_database_error_and_the_server_recovers() {
    let Some(pg) = Postgres::start() else { return };
    database_error_then_recovery(StoreConfig::from_url(pg.url.clone())).await;
}
