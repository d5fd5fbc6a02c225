//! The store's cost per heartbeat, apart from the network: a closed loop of writes in which
//! every registered node sends one heartbeat and waits for its commit, as the nodemgr
//! connections do, on a SQLite file with each commit fsynced (the default) and without.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use reference_server::protocol::nodemgr::{Metrics, NodeInfo, StoreOp};
use reference_server::store::{SqliteSync, Store, StoreConfig};
use std::hint::black_box;
use tokio::runtime::Runtime;

/// Nodes with a heartbeat in flight at once: the 512 closed loops of `load nodemgr-vs-echo`.
const NODES: usize = 512;

const METRICS: Metrics = Metrics {
    cpu_usage: 45.2,
    memory_usage: 68.5,
    disk_usage: 34.1,
    load_average: 1.23,
};

async fn store_with_nodes(dir: &std::path::Path, sqlite_sync: SqliteSync) -> Store {
    let config = StoreConfig {
        sqlite_sync,
        ..StoreConfig::sqlite_in(dir).expect("data dir")
    };
    let store = Store::open(&config).await.expect("open the store");
    for n in 0..NODES {
        let op = StoreOp::UpsertNode {
            node_id: format!("node-{n}"),
            info: NodeInfo::default(),
            at: chrono::Utc::now(),
        };
        store.write(op).await.expect("register");
    }
    store
}

/// One heartbeat from every node, submitted at once; returns when all are committed.
async fn one_round(store: &Store) {
    let mut pending = Vec::with_capacity(NODES);
    for n in 0..NODES {
        let op = StoreOp::RecordHeartbeat {
            node_id: format!("node-{n}"),
            status: "online".into(),
            metrics: METRICS,
            at: chrono::Utc::now(),
        };
        pending.push(store.submit(op).await);
    }
    for committed in futures_util::future::join_all(pending).await {
        committed.expect("committed");
    }
}

fn benches(c: &mut Criterion) {
    let runtime = Runtime::new().expect("tokio runtime");
    let mut group = c.benchmark_group("nodemgr_store");
    group.throughput(Throughput::Elements(NODES as u64));
    for (name, sync) in [
        ("heartbeats_fsync_each_commit", SqliteSync::Full),
        ("heartbeats_no_fsync", SqliteSync::Normal),
    ] {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = runtime.block_on(store_with_nodes(dir.path(), sync));
        group.bench_function(name, |b| {
            b.iter(|| runtime.block_on(one_round(black_box(&store))))
        });
    }
    group.finish();
}

criterion_group!(nodemgr_store, benches);
criterion_main!(nodemgr_store);
