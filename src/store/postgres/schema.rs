//! The tables in PostgreSQL, and their versions.
//!
//! Each version is one step of SQL, run in order in one transaction at start
//! under an advisory lock (nodes starting together migrate once). A database
//! whose schema is newer than this build refuses to open, as sled's does.

use deadpool_postgres::Object;

use crate::store::StoreError;

/// The schema this build reads and writes.
pub const VERSION: i64 = 1;

/// Taken by the migrating transaction (an arbitrary constant: "noom").
const MIGRATION_LOCK: i64 = 0x6e6f_6f6d;

/// Step `i` brings the schema from version `i` to `i + 1`.
const STEPS: [&str; VERSION as usize] = [
    // 1: sessions, rooms, messages.
    "
    CREATE TABLE sessions (
        key BYTEA PRIMARY KEY,
        user_id TEXT NOT NULL,
        nickname TEXT NOT NULL,
        created BIGINT NOT NULL,
        seen BIGINT NOT NULL
    );
    CREATE INDEX sessions_by_seen ON sessions (seen);
    CREATE INDEX sessions_by_user ON sessions (user_id);
    -- last_seq is the room's counter: it only grows (deleted messages keep
    -- theirs), so a seq is never handed out twice.
    CREATE TABLE rooms (
        name TEXT PRIMARY KEY,
        created BIGINT NOT NULL,
        last_activity BIGINT NOT NULL,
        last_seq BIGINT NOT NULL DEFAULT 0,
        unlisted BOOLEAN NOT NULL DEFAULT FALSE,
        password TEXT,
        moderation TEXT
    );
    CREATE TABLE messages (
        room TEXT NOT NULL,
        seq BIGINT NOT NULL,
        user_id TEXT NOT NULL,
        nickname TEXT NOT NULL,
        text TEXT NOT NULL,
        ts BIGINT NOT NULL,
        PRIMARY KEY (room, seq)
    );
    ",
];

/// Creates `schema` and brings its tables to [`VERSION`]; refuses a newer one.
pub async fn migrate(client: &mut Object, schema: &str) -> Result<(), StoreError> {
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await?;
    // The name was checked by the configuration (lowercase, digits, `_`).
    tx.batch_execute(&format!(
        "CREATE SCHEMA IF NOT EXISTS {schema};
         SET LOCAL search_path TO {schema};
         CREATE TABLE IF NOT EXISTS noom_schema (version BIGINT NOT NULL);"
    ))
    .await?;
    let found: i64 = tx
        .query_opt("SELECT version FROM noom_schema", &[])
        .await?
        .map_or(0, |row| row.get(0));
    if found > VERSION {
        return Err(StoreError::Schema {
            found: found as u64,
            expected: VERSION as u64,
        });
    }
    for step in STEPS.iter().skip(found as usize) {
        tx.batch_execute(step).await?;
    }
    if found == 0 {
        tx.execute("INSERT INTO noom_schema (version) VALUES ($1)", &[&VERSION])
            .await?;
    } else if found < VERSION {
        tx.execute("UPDATE noom_schema SET version = $1", &[&VERSION])
            .await?;
    }
    tx.commit().await?;
    if found < VERSION {
        tracing::info!(
            schema,
            from = found,
            to = VERSION,
            "PostgreSQL schema migrated"
        );
    }
    Ok(())
}
