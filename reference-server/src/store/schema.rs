//! Tables, created on start. The SQL is the common subset of SQLite and PostgreSQL.

use sqlx::AnyPool;

const TABLES: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS nodes (
        node_id TEXT PRIMARY KEY,
        hostname TEXT,
        ip_address TEXT,
        os_info TEXT,
        status TEXT NOT NULL,
        registered_at TEXT NOT NULL,
        last_seen TEXT NOT NULL,
        cpu_usage DOUBLE PRECISION,
        memory_usage DOUBLE PRECISION,
        disk_usage DOUBLE PRECISION,
        load_average DOUBLE PRECISION
    )",
    "CREATE TABLE IF NOT EXISTS metrics (
        node_id TEXT NOT NULL,
        recorded_at TEXT NOT NULL,
        status TEXT NOT NULL,
        cpu_usage DOUBLE PRECISION NOT NULL,
        memory_usage DOUBLE PRECISION NOT NULL,
        disk_usage DOUBLE PRECISION NOT NULL,
        load_average DOUBLE PRECISION NOT NULL
    )",
    "CREATE INDEX IF NOT EXISTS metrics_by_node ON metrics (node_id, recorded_at)",
    "CREATE TABLE IF NOT EXISTS commands (
        command_id TEXT PRIMARY KEY,
        node_id TEXT NOT NULL,
        command_text TEXT NOT NULL,
        timeout_secs BIGINT NOT NULL,
        state TEXT NOT NULL,
        exit_code BIGINT,
        stdout TEXT,
        stderr TEXT,
        execution_time_ms BIGINT,
        created_at TEXT NOT NULL,
        started_at TEXT,
        finished_at TEXT
    )",
];

pub async fn migrate(pool: &AnyPool) -> Result<(), sqlx::Error> {
    for statement in TABLES {
        sqlx::query(statement).execute(pool).await?;
    }
    Ok(())
}
