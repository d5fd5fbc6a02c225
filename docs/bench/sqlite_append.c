// SQLite's own cost of the reference server's heartbeat append, without sqlx or a runtime:
// the `metrics` table of reference-server/src/store/schema.rs, rows appended with their ids
// given, in batches committed as the writer commits them (docs/performance.md, "Acks written
// by the writer, and SQLite alone").
//
// Build against the SQLite that libsqlite3-sys bundles, with the flag .cargo/config.toml sets:
//   cp ~/.cargo/registry/src/*/libsqlite3-sys-0.30.1/sqlite3/sqlite3.[ch] .
//   gcc -O2 -DHAVE_FDATASYNC=1 -o sqlite_append sqlite_append.c sqlite3.c -lpthread -lm -ldl
// Run:
//   ./sqlite_append SYNC PAGE_SIZE ROWS_PER_COMMIT ROWS_PER_INSERT [WAL_AUTOCHECKPOINT]
//   ./sqlite_append full 4096 512 64 1000
// It writes sqlite_append.db (and its WAL) in the current directory, starting afresh, and
// prints the CPU time per row.
#include "sqlite3.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#define DB "sqlite_append.db"
#define VALUES_PER_ROW 9
#define TOTAL_ROWS 200000

static double seconds(struct timeval t) { return t.tv_sec + t.tv_usec / 1e6; }

static void run(sqlite3 *db, const char *sql) {
    char *error = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &error) != SQLITE_OK) {
        fprintf(stderr, "%s: %s\n", sql, error);
        exit(1);
    }
}

static void step(sqlite3 *db, sqlite3_stmt *statement) {
    if (sqlite3_step(statement) != SQLITE_DONE) {
        fprintf(stderr, "step: %s\n", sqlite3_errmsg(db));
        exit(1);
    }
    sqlite3_reset(statement);
}

/* One insert of `rows` rows: a plain one for a single row, else the server's padded form. */
static char *insert_text(int rows) {
    char *sql = malloc(64 + rows * 24);
    strcpy(sql, rows == 1 ? "INSERT INTO metrics VALUES " : "INSERT INTO metrics SELECT * FROM (VALUES ");
    for (int i = 0; i < rows; i++)
        strcat(sql, i ? ",(?,?,?,?,?,?,?,?,?)" : "(?,?,?,?,?,?,?,?,?)");
    if (rows > 1)
        strcat(sql, ") WHERE column1 IS NOT NULL");
    return sql;
}

/* Binds row `row` of an insert as the server does: id, node, predecessor, time, status, metrics. */
static void bind_row(sqlite3_stmt *insert, int row, long sample_id) {
    int p = row * VALUES_PER_ROW;
    sqlite3_bind_int64(insert, p + 1, sample_id);
    sqlite3_bind_int64(insert, p + 2, sample_id % 1024);
    if (sample_id > 1024)
        sqlite3_bind_int64(insert, p + 3, sample_id - 1024);
    else
        sqlite3_bind_null(insert, p + 3);
    sqlite3_bind_text(insert, p + 4, "2026-12-07T05:00:00.123Z", -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(insert, p + 5, "online", -1, SQLITE_TRANSIENT);
    sqlite3_bind_double(insert, p + 6, 12.5);
    sqlite3_bind_double(insert, p + 7, 40.25);
    sqlite3_bind_double(insert, p + 8, 55.2);
    sqlite3_bind_double(insert, p + 9, 0.75);
}

int main(int argc, char **argv) {
    if (argc < 5) {
        fprintf(stderr, "usage: %s SYNC PAGE_SIZE ROWS_PER_COMMIT ROWS_PER_INSERT [WAL_AUTOCHECKPOINT]\n", argv[0]);
        return 2;
    }
    const char *sync = argv[1];
    int page_size = atoi(argv[2]), per_commit = atoi(argv[3]), per_insert = atoi(argv[4]);
    int checkpoint = argc > 5 ? atoi(argv[5]) : 1000;
    if (page_size <= 0 || per_insert <= 0 || per_commit < per_insert || per_commit % per_insert) {
        fprintf(stderr, "ROWS_PER_COMMIT must be a positive multiple of ROWS_PER_INSERT\n");
        return 2;
    }
    unlink(DB);
    unlink(DB "-wal");
    unlink(DB "-shm");

    sqlite3 *db;
    if (sqlite3_open(DB, &db) != SQLITE_OK) {
        fprintf(stderr, "open: %s\n", sqlite3_errmsg(db));
        return 1;
    }
    char pragma[128];
    snprintf(pragma, sizeof pragma, "PRAGMA page_size = %d", page_size);
    run(db, pragma);
    run(db, "PRAGMA journal_mode = WAL");
    snprintf(pragma, sizeof pragma, "PRAGMA synchronous = %s", sync);
    run(db, pragma);
    snprintf(pragma, sizeof pragma, "PRAGMA wal_autocheckpoint = %d", checkpoint);
    run(db, pragma);
    run(db, "PRAGMA temp_store = MEMORY");
    run(db, "CREATE TABLE metrics (sample_id INTEGER PRIMARY KEY, node_key BIGINT NOT NULL, "
            "previous_sample_id BIGINT, recorded_at TEXT NOT NULL, status TEXT NOT NULL, "
            "cpu_usage DOUBLE PRECISION NOT NULL, memory_usage DOUBLE PRECISION NOT NULL, "
            "disk_usage DOUBLE PRECISION NOT NULL, load_average DOUBLE PRECISION NOT NULL)");

    sqlite3_stmt *insert, *begin, *commit;
    char *sql = insert_text(per_insert);
    if (sqlite3_prepare_v2(db, sql, -1, &insert, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(db, "BEGIN IMMEDIATE", -1, &begin, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(db, "COMMIT", -1, &commit, NULL) != SQLITE_OK) {
        fprintf(stderr, "prepare: %s\n", sqlite3_errmsg(db));
        return 1;
    }

    long sample_id = 1;
    int commits = TOTAL_ROWS / per_commit;
    struct rusage before, after;
    getrusage(RUSAGE_SELF, &before);
    for (int c = 0; c < commits; c++) {
        step(db, begin);
        for (int i = 0; i < per_commit / per_insert; i++) {
            for (int row = 0; row < per_insert; row++)
                bind_row(insert, row, sample_id++);
            step(db, insert);
        }
        step(db, commit);
    }
    getrusage(RUSAGE_SELF, &after);

    double rows = (double)commits * per_commit;
    printf("sync=%s page=%d rows/commit=%d rows/insert=%d wal_autocheckpoint=%d: "
           "user %.2f µs, system %.2f µs per row\n",
           sync, page_size, per_commit, per_insert, checkpoint,
           (seconds(after.ru_utime) - seconds(before.ru_utime)) / rows * 1e6,
           (seconds(after.ru_stime) - seconds(before.ru_stime)) / rows * 1e6);
    free(sql);
    sqlite3_close(db);
    return 0;
}
