//! The PostgreSQL engine: the store in a database server that several noom
//! nodes may share (`store.backend = "postgres"`).
//!
//! Nothing is cached in this process: every node reads what every other
//! wrote. Appends go through [`commit::Committer`] (batched, one COMMIT per
//! batch, seqs from the room's row in the same statement); everything else
//! is one statement on a pooled connection. The tables live in their own
//! schema (`store.postgres_schema`), versioned by `schema.rs`.
//!
//! When the server cannot be reached, operations fail at once with
//! `Unavailable` (a clear error ack for the client), `/healthz` says so,
//! and a check every second notices its return; the pool reconnects by
//! itself.

mod commit;
mod schema;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod, Runtime};
use parking_lot::Mutex;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::model::{
    CLOSED, HistoryQuery, Message, Moderation, NewMessage, Outcome, Retention, RoomMeta, Session,
    SessionKey, Settled, StoreHealth, Verified,
};
use super::{Backend, StoreError};
use commit::{Committer, Job};

/// Sessions (and messages, per retention step) deleted per statement at most.
const BATCH: i64 = 10_000;
/// Longest wait for a connection from the pool, or for a new one.
const CONNECT_WITHIN: Duration = Duration::from_secs(5);

/// Where and how to reach PostgreSQL.
#[derive(Debug, Clone)]
pub struct PgSettings {
    /// `postgres://user:password@host:port/database`
    pub url: String,
    pub pool: usize,
    /// The schema of noom's tables (a checked identifier).
    pub schema: String,
}

impl From<tokio_postgres::Error> for StoreError {
    fn from(e: tokio_postgres::Error) -> Self {
        match e.as_db_error() {
            Some(db) => StoreError::Engine(format!("PostgreSQL: {}", db.message())),
            None => StoreError::Unavailable {
                reason: format!("PostgreSQL: {e}"),
            },
        }
    }
}

/// The PostgreSQL engine; cheap to clone.
#[derive(Clone)]
pub struct PgStore {
    inner: Arc<Inner>,
}

struct Inner {
    pool: Pool,
    /// Where the server is, for messages (the URL without its password).
    place: String,
    committer: Arc<Committer>,
    /// Why the server cannot be used now (`None`: it answered last time).
    failing: Mutex<Option<String>>,
    /// Messages whose COMMIT's fate is unknown, looked for until found or
    /// known lost.
    unsure: Mutex<Vec<Message>>,
    late: Mutex<Option<mpsc::UnboundedSender<Message>>>,
}

/// A statement's parameters.
type Params<'a> = &'a [&'a (dyn tokio_postgres::types::ToSql + Sync)];

impl PgStore {
    /// Connects, creates the schema or brings it to this build's version
    /// (refusing a newer one).
    /// `window`: how long a batch of appends waits for more before its
    /// transaction (`store.commit_window_ms`).
    pub async fn open(
        settings: &PgSettings,
        window: std::time::Duration,
    ) -> Result<PgStore, StoreError> {
        let mut config: tokio_postgres::Config =
            settings.url.parse().map_err(|e| StoreError::Unavailable {
                reason: format!("store.postgres_url cannot be read: {e}"),
            })?;
        let place = describe(&config);
        config
            .options(format!("-c search_path={}", settings.schema))
            .application_name("noom")
            .connect_timeout(CONNECT_WITHIN);
        let manager = Manager::from_config(
            config,
            tokio_postgres::NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(settings.pool)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(CONNECT_WITHIN))
            .create_timeout(Some(CONNECT_WITHIN))
            .build()
            .map_err(|e| StoreError::Engine(format!("PostgreSQL pool: {e}")))?;
        let store = PgStore {
            inner: Arc::new(Inner {
                pool,
                place,
                committer: Arc::new(Committer::new(window)),
                failing: Mutex::new(None),
                unsure: Mutex::new(Vec::new()),
                late: Mutex::new(None),
            }),
        };
        let mut client = store.client().await?;
        schema::migrate(&mut client, &settings.schema).await?;
        let version: String = client.query_one("SHOW server_version", &[]).await?.get(0);
        tracing::info!(server = %store.inner.place, version = %version, schema = %settings.schema, "store: PostgreSQL");
        Ok(store)
    }

    /// A pooled connection; `Unavailable` (and the store marked failing)
    /// when none can be had.
    async fn client(&self) -> Result<Object, StoreError> {
        match self.inner.pool.get().await {
            Ok(client) => Ok(client),
            Err(e) => {
                let reason = format!("PostgreSQL at {} cannot be reached: {e}", self.inner.place);
                self.fail(reason.clone());
                Err(StoreError::Unavailable { reason })
            }
        }
    }

    fn fail(&self, reason: String) {
        let mut failing = self.inner.failing.lock();
        if failing.is_none() {
            tracing::error!(%reason, "store: PostgreSQL failing");
        }
        *failing = Some(reason);
    }

    /// An error of a statement: a lost connection marks the store failing.
    fn observe(&self, e: &tokio_postgres::Error) {
        if e.as_db_error().is_none() {
            self.fail(format!("PostgreSQL at {}: {e}", self.inner.place));
        }
    }

    /// The server answered.
    fn answered(&self) {
        if self.inner.failing.lock().take().is_some() {
            tracing::info!(server = %self.inner.place, "store: PostgreSQL answers again");
        }
    }

    /// Runs `f`'s statement result through the failing/answered bookkeeping.
    fn track<T>(&self, result: Result<T, tokio_postgres::Error>) -> Result<T, StoreError> {
        match result {
            Ok(v) => {
                self.answered();
                Ok(v)
            }
            Err(e) => {
                self.observe(&e);
                Err(e.into())
            }
        }
    }

    /// One statement on a pooled connection, through [`PgStore::track`]
    /// (and so for `query`, `query_opt`, `query_one`).
    async fn execute(&self, sql: &str, params: Params<'_>) -> Result<u64, StoreError> {
        let client = self.client().await?;
        self.track(client.execute(sql, params).await)
    }

    async fn query(
        &self,
        sql: &str,
        params: Params<'_>,
    ) -> Result<Vec<tokio_postgres::Row>, StoreError> {
        let client = self.client().await?;
        self.track(client.query(sql, params).await)
    }

    async fn query_opt(
        &self,
        sql: &str,
        params: Params<'_>,
    ) -> Result<Option<tokio_postgres::Row>, StoreError> {
        let client = self.client().await?;
        self.track(client.query_opt(sql, params).await)
    }

    async fn query_one(
        &self,
        sql: &str,
        params: Params<'_>,
    ) -> Result<tokio_postgres::Row, StoreError> {
        let client = self.client().await?;
        self.track(client.query_one(sql, params).await)
    }

    /// Messages perhaps stored (their COMMIT's answer was lost).
    fn unsure(&self, messages: Vec<Message>) {
        self.inner.unsure.lock().extend(messages);
    }

    /// Once a second: whether a failing server answers again, and which
    /// unsure messages were stored after all (those go out late).
    async fn recheck(&self) {
        let failing = self.inner.failing.lock().is_some();
        let unsure = std::mem::take(&mut *self.inner.unsure.lock());
        if !failing && unsure.is_empty() {
            return;
        }
        let Ok(client) = self.client().await else {
            self.inner.unsure.lock().extend(unsure);
            return;
        };
        if self.track(client.query_one("SELECT 1", &[]).await).is_err() {
            self.inner.unsure.lock().extend(unsure);
            return;
        }
        let mut keep = Vec::new();
        for m in unsure {
            let found = client
                .query_opt(
                    "SELECT 1 FROM messages WHERE room = $1 AND seq = $2 AND user_id = $3 AND text = $4 AND ts = $5",
                    &[&m.room, &(m.seq as i64), &m.user, &m.text, &m.ts],
                )
                .await;
            match found {
                Ok(Some(_)) => {
                    if let Some(tx) = &*self.inner.late.lock() {
                        let _ = tx.send(m);
                    }
                }
                Ok(None) => {} // rolled back: it was lost
                Err(_) => keep.push(m),
            }
        }
        self.inner.unsure.lock().extend(keep);
    }

    async fn room_exists(&self, client: &Object, room: &str) -> Result<(), StoreError> {
        let found = self.track(
            client
                .query_opt("SELECT 1 FROM rooms WHERE name = $1", &[&room])
                .await,
        )?;
        found.map(|_| ()).ok_or(StoreError::NoSuchRoom)
    }
}

/// What `noom check` reports of a PostgreSQL store, read without changing
/// anything.
#[derive(Debug)]
pub struct PgProbe {
    /// `host:port/database`.
    pub place: String,
    pub server_version: String,
    /// The schema's version; `None` before the first start made it.
    pub schema_version: Option<i64>,
    /// What this build expects.
    pub expected: i64,
    /// Rows, when the schema is this build's.
    pub counts: Option<Verified>,
}

/// Connects once with `settings` and reads the server's version and the
/// schema's, and what it holds.
pub async fn probe(settings: &PgSettings) -> Result<PgProbe, StoreError> {
    let mut config: tokio_postgres::Config =
        settings.url.parse().map_err(|e| StoreError::Unavailable {
            reason: format!("store.postgres_url cannot be read: {e}"),
        })?;
    let place = describe(&config);
    config
        .options(format!("-c search_path={}", settings.schema))
        .application_name("noom check")
        .connect_timeout(CONNECT_WITHIN);
    let (client, connection) =
        config
            .connect(tokio_postgres::NoTls)
            .await
            .map_err(|e| StoreError::Unavailable {
                reason: format!("PostgreSQL at {place} cannot be reached: {e}"),
            })?;
    let driver = tokio::spawn(connection);
    let server_version: String = client.query_one("SHOW server_version", &[]).await?.get(0);
    let schema_version = match client
        .query_opt("SELECT version FROM noom_schema", &[])
        .await
    {
        Ok(row) => row.map(|r| r.get::<_, i64>(0)),
        Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::UNDEFINED_TABLE) => None,
        Err(e) => return Err(e.into()),
    };
    let counts = if schema_version == Some(schema::VERSION) {
        let row = client
            .query_one(
                "SELECT (SELECT count(*) FROM rooms), (SELECT count(*) FROM messages), (SELECT count(*) FROM sessions)",
                &[],
            )
            .await?;
        Some(Verified {
            rooms: row.get::<_, i64>(0) as u64,
            messages: row.get::<_, i64>(1) as u64,
            sessions: row.get::<_, i64>(2) as u64,
            damaged: Vec::new(),
        })
    } else {
        None
    };
    drop(client);
    let _ = driver.await;
    Ok(PgProbe {
        place,
        server_version,
        schema_version,
        expected: schema::VERSION,
        counts,
    })
}

/// `host:port/database` of a connection configuration (no password).
fn describe(config: &tokio_postgres::Config) -> String {
    let host = config
        .get_hosts()
        .first()
        .map(|h| match h {
            tokio_postgres::config::Host::Tcp(name) => name.clone(),
            tokio_postgres::config::Host::Unix(path) => path.display().to_string(),
        })
        .unwrap_or_else(|| "localhost".into());
    let port = config.get_ports().first().copied().unwrap_or(5432);
    format!(
        "{host}:{port}/{}",
        config.get_dbname().unwrap_or("(default database)")
    )
}

fn room_of(row: &tokio_postgres::Row) -> RoomMeta {
    RoomMeta {
        name: row.get("name"),
        created: row.get("created"),
        last_activity: row.get("last_activity"),
        last_seq: row.get::<_, i64>("last_seq") as u64,
        unlisted: row.get("unlisted"),
    }
}

fn message_of(row: &tokio_postgres::Row) -> Message {
    Message {
        room: row.get("room"),
        seq: row.get::<_, i64>("seq") as u64,
        user: row.get("user_id"),
        nickname: row.get("nickname"),
        text: row.get("text"),
        ts: row.get("ts"),
    }
}

const ROOM_COLUMNS: &str = "name, created, last_activity, last_seq, unlisted";
const MESSAGE_COLUMNS: &str = "room, seq, user_id, nickname, text, ts";

/// A u64 of the store's as PostgreSQL's BIGINT (seqs and counts fit).
fn big(n: u64) -> i64 {
    n.min(i64::MAX as u64) as i64
}

#[async_trait::async_trait]
impl Backend for PgStore {
    async fn run(&self, shutdown: CancellationToken) {
        self.inner
            .committer
            .clone()
            .run(self.clone(), shutdown)
            .await;
    }

    fn health(&self) -> StoreHealth {
        match &*self.inner.failing.lock() {
            None => StoreHealth {
                status: "ok",
                detail: String::new(),
            },
            Some(reason) => StoreHealth {
                status: "failing",
                detail: format!(
                    "{reason}; writes are refused until it answers (checked every second)"
                ),
            },
        }
    }

    fn late_messages(&self) -> mpsc::UnboundedReceiver<Message> {
        let (tx, rx) = mpsc::unbounded_channel();
        *self.inner.late.lock() = Some(tx);
        rx
    }

    async fn durable(&self) -> Result<(), StoreError> {
        let (tx, rx) = oneshot::channel();
        let _ = self.inner.committer.push(Job::Barrier(tx));
        match rx.await {
            Ok(Outcome::Durable) => Ok(()),
            Ok(_) => Err(StoreError::Unavailable {
                reason: self.health().detail,
            }),
            Err(_) => Err(StoreError::Closed),
        }
    }

    /// Everything committed is durable on the server already.
    async fn flush(&self) -> Result<(), StoreError> {
        Ok(())
    }

    async fn verify(&self) -> Result<Verified, StoreError> {
        let row = self.query_one("SELECT (SELECT count(*) FROM rooms), (SELECT count(*) FROM messages), (SELECT count(*) FROM sessions)",
                    &[]).await?;
        Ok(Verified {
            rooms: row.get::<_, i64>(0) as u64,
            messages: row.get::<_, i64>(1) as u64,
            sessions: row.get::<_, i64>(2) as u64,
            damaged: Vec::new(),
        })
    }

    // ---- sessions ---------------------------------------------------------

    async fn session(&self, key: SessionKey) -> Result<Option<Session>, StoreError> {
        let row = self
            .query_opt(
                "SELECT user_id, nickname, created, seen FROM sessions WHERE key = $1",
                &[&key.bytes().as_slice()],
            )
            .await?;
        Ok(row.map(|r| Session {
            user: r.get(0),
            nickname: r.get(1),
            created: r.get(2),
            seen: r.get(3),
        }))
    }

    async fn put_session(
        &self,
        key: SessionKey,
        session: Session,
        _replaces_seen: Option<i64>,
    ) -> Result<(), StoreError> {
        self.execute("INSERT INTO sessions (key, user_id, nickname, created, seen)
                     VALUES ($1, $2, $3, $4, $5)
                     ON CONFLICT (key) DO UPDATE SET user_id = EXCLUDED.user_id,
                        nickname = EXCLUDED.nickname, created = EXCLUDED.created, seen = EXCLUDED.seen",
                    &[
                        &key.bytes().as_slice(),
                        &session.user,
                        &session.nickname,
                        &session.created,
                        &session.seen,
                    ]).await?;
        Ok(())
    }

    async fn set_nickname(&self, key: SessionKey, nickname: &str) -> Result<Session, StoreError> {
        let row = self
            .query_opt(
                "UPDATE sessions SET nickname = $2 WHERE key = $1
                     RETURNING user_id, nickname, created, seen",
                &[&key.bytes().as_slice(), &nickname],
            )
            .await?;
        let row = row.ok_or(StoreError::Corrupt {
            tree: "sessions",
            reason: "session vanished".into(),
        })?;
        Ok(Session {
            user: row.get(0),
            nickname: row.get(1),
            created: row.get(2),
            seen: row.get(3),
        })
    }

    async fn revoke_user(&self, user: &str) -> Result<u64, StoreError> {
        self.execute("DELETE FROM sessions WHERE user_id = $1", &[&user])
            .await
    }

    async fn expire_sessions(&self, before: i64) -> Result<u64, StoreError> {
        self.execute(
            "DELETE FROM sessions WHERE key IN
                        (SELECT key FROM sessions WHERE seen < $1 LIMIT $2)",
            &[&before, &BATCH],
        )
        .await
    }

    // ---- rooms --------------------------------------------------------------

    async fn touch_room(&self, name: &str, now_ms: i64) -> Result<RoomMeta, StoreError> {
        let row = self
            .query_one(
                &format!(
                    "INSERT INTO rooms (name, created, last_activity) VALUES ($1, $2, $2)
                         ON CONFLICT (name) DO UPDATE
                         SET last_activity = GREATEST(rooms.last_activity, EXCLUDED.last_activity)
                         RETURNING {ROOM_COLUMNS}"
                ),
                &[&name, &now_ms],
            )
            .await?;
        Ok(room_of(&row))
    }

    async fn room(&self, name: &str) -> Result<Option<RoomMeta>, StoreError> {
        let row = self
            .query_opt(
                &format!("SELECT {ROOM_COLUMNS} FROM rooms WHERE name = $1"),
                &[&name],
            )
            .await?;
        Ok(row.as_ref().map(room_of))
    }

    async fn set_room_unlisted(&self, name: &str) -> Result<(), StoreError> {
        self.execute("UPDATE rooms SET unlisted = TRUE WHERE name = $1", &[&name])
            .await?;
        Ok(())
    }

    async fn set_room_password(&self, name: &str, hash: &str) -> Result<(), StoreError> {
        let n = self
            .execute(
                "UPDATE rooms SET password = $2 WHERE name = $1",
                &[&name, &hash],
            )
            .await?;
        if n == 0 {
            return Err(StoreError::NoSuchRoom);
        }
        Ok(())
    }

    async fn room_password(&self, name: &str) -> Result<Option<String>, StoreError> {
        let row = self
            .query_opt("SELECT password FROM rooms WHERE name = $1", &[&name])
            .await?;
        Ok(row.and_then(|r| r.get(0)))
    }

    async fn room_moderation(&self, name: &str) -> Result<Moderation, StoreError> {
        let row = self
            .query_opt("SELECT moderation FROM rooms WHERE name = $1", &[&name])
            .await?;
        match row.and_then(|r| r.get::<_, Option<String>>(0)) {
            None => Ok(Moderation::default()),
            Some(raw) => serde_json::from_str(&raw).map_err(|e| StoreError::Corrupt {
                tree: "room_moderation",
                reason: format!("room `{name}`: {e}"),
            }),
        }
    }

    async fn set_room_moderation(
        &self,
        name: &str,
        moderation: &Moderation,
    ) -> Result<(), StoreError> {
        let raw = serde_json::to_string(moderation).map_err(|e| StoreError::Corrupt {
            tree: "room_moderation",
            reason: e.to_string(),
        })?;
        let n = self
            .execute(
                "UPDATE rooms SET moderation = $2 WHERE name = $1",
                &[&name, &raw],
            )
            .await?;
        if n == 0 {
            return Err(StoreError::NoSuchRoom);
        }
        Ok(())
    }

    async fn rooms(&self) -> Result<Vec<RoomMeta>, StoreError> {
        let rows = self
            .query(&format!("SELECT {ROOM_COLUMNS} FROM rooms"), &[])
            .await?;
        Ok(rows.iter().map(room_of).collect())
    }

    async fn room_count(&self) -> Result<u64, StoreError> {
        let client = self.client().await?;
        let row = self.track(client.query_one("SELECT count(*) FROM rooms", &[]).await)?;
        Ok(row.get::<_, i64>(0) as u64)
    }

    async fn prune_idle_rooms(
        &self,
        idle_before: i64,
        live: HashSet<String>,
    ) -> Result<Vec<String>, StoreError> {
        let live: Vec<String> = live.into_iter().collect();
        let client = self.client().await?;
        // A room that ever held a message keeps its row (its seq counter).
        let rows = self.track(
            client
                .query(
                    "DELETE FROM rooms WHERE last_seq = 0 AND last_activity < $1
                     AND NOT (name = ANY($2)) RETURNING name",
                    &[&idle_before, &live],
                )
                .await,
        )?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    async fn close_room(&self, room: &str) -> Result<u64, StoreError> {
        let mut client = self.client().await?;
        let tx = self.track(client.transaction().await)?;
        // Reopened, it is a new room: its next entrant is its host.
        let n = self.track(
            tx.execute(
                "UPDATE rooms SET last_activity = $2, moderation = NULL WHERE name = $1",
                &[&room, &CLOSED],
            )
            .await,
        )?;
        if n == 0 {
            return Err(StoreError::NoSuchRoom);
        }
        let removed = self.track(
            tx.execute("DELETE FROM messages WHERE room = $1", &[&room])
                .await,
        )?;
        self.track(tx.commit().await)?;
        Ok(removed)
    }

    async fn clear_history(&self, room: &str) -> Result<u64, StoreError> {
        let client = self.client().await?;
        self.room_exists(&client, room).await?;
        self.track(
            client
                .execute("DELETE FROM messages WHERE room = $1", &[&room])
                .await,
        )
    }

    async fn delete_message(&self, room: &str, seq: u64) -> Result<bool, StoreError> {
        let client = self.client().await?;
        self.room_exists(&client, room).await?;
        let n = self.track(
            client
                .execute(
                    "DELETE FROM messages WHERE room = $1 AND seq = $2",
                    &[&room, &big(seq)],
                )
                .await,
        )?;
        Ok(n > 0)
    }

    // ---- messages -----------------------------------------------------------

    async fn append(&self, message: NewMessage, settled: Settled) -> Result<(), StoreError> {
        if let Some(reason) = &*self.inner.failing.lock() {
            return Err(StoreError::Unavailable {
                reason: reason.clone(),
            });
        }
        self.inner
            .committer
            .push(Job::Append(message, settled))
            .map_err(|_| StoreError::Closed)
    }

    async fn history(&self, room: &str, query: HistoryQuery) -> Result<Vec<Message>, StoreError> {
        let client = self.client().await?;
        self.room_exists(&client, room).await?;
        let after = big(query.after.unwrap_or(0));
        let before = big(query.before.unwrap_or(u64::MAX));
        let limit = query.limit.min(i64::MAX as usize) as i64;
        // With `after`, the oldest matching; without, the newest.
        let order = if query.after.is_some() { "ASC" } else { "DESC" };
        let rows = self.track(
            client
                .query(
                    &format!(
                        "SELECT {MESSAGE_COLUMNS} FROM messages
                         WHERE room = $1 AND seq > $2 AND seq < $3
                         ORDER BY seq {order} LIMIT $4"
                    ),
                    &[&room, &after, &before, &limit],
                )
                .await,
        )?;
        let mut messages: Vec<Message> = rows.iter().map(message_of).collect();
        if query.after.is_none() {
            messages.reverse();
        }
        Ok(messages)
    }

    async fn stored_messages(&self, room: &str) -> Result<u64, StoreError> {
        let client = self.client().await?;
        self.room_exists(&client, room).await?;
        let row = self.track(
            client
                .query_one("SELECT count(*) FROM messages WHERE room = $1", &[&room])
                .await,
        )?;
        Ok(row.get::<_, i64>(0) as u64)
    }

    async fn enforce_retention(&self, policy: Retention, now_ms: i64) -> Result<u64, StoreError> {
        if policy.max_messages == 0 && policy.max_age_ms == 0 {
            return Ok(0);
        }
        let keep = big(policy.max_messages);
        let expired_before = if policy.max_age_ms > 0 {
            now_ms.saturating_sub(policy.max_age_ms)
        } else {
            i64::MIN
        };
        let client = self.client().await?;
        let mut removed = 0u64;
        // In bounded steps, so one pass never holds long locks.
        loop {
            let n = self.track(
                client
                    .execute(
                        "DELETE FROM messages WHERE (room, seq) IN (
                            SELECT m.room, m.seq FROM messages m JOIN rooms r ON r.name = m.room
                            WHERE ($1::BIGINT > 0 AND m.seq <= r.last_seq - $1::BIGINT) OR m.ts < $2
                            LIMIT $3)",
                        &[&keep, &expired_before, &BATCH],
                    )
                    .await,
            )?;
            removed += n;
            if n < BATCH as u64 {
                return Ok(removed);
            }
        }
    }
}
