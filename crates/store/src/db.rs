//! Connection pool and transactions over sqlx's `Any` driver.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{Any, AnyConnection, AnyPool, ConnectOptions, Connection, Executor, Transaction};

use crate::StoreError;

mod group;
mod health;

pub use health::Readiness;
pub(crate) use health::{Checked, is_connection_lost};

/// The two supported backends and the handful of places where their SQL differs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn from_url(url: &str) -> Result<Backend, StoreError> {
        if url.starts_with("sqlite:") {
            Ok(Backend::Sqlite)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Backend::Postgres)
        } else {
            Err(StoreError::Config("database URL must start with sqlite: or postgres://".into()))
        }
    }

    /// SQLite writers take the write lock up front; a deferred transaction that reads
    /// and then writes can fail with SQLITE_BUSY instead of waiting.
    fn begin_statement(self) -> &'static str {
        match self {
            Backend::Sqlite => "BEGIN IMMEDIATE",
            Backend::Postgres => "BEGIN",
        }
    }

    /// A read-only transaction that sees one consistent snapshot without blocking
    /// writers (SQLite in WAL mode: a deferred transaction's snapshot is taken at its
    /// first read and kept until it ends).
    fn snapshot_statement(self) -> &'static str {
        match self {
            Backend::Sqlite => "BEGIN DEFERRED",
            Backend::Postgres => "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY",
        }
    }

    /// Reads the audit chain head, locking it until commit. SQLite's `BEGIN IMMEDIATE`
    /// already serialises writers.
    pub(crate) fn lock_audit_head(self) -> &'static str {
        match self {
            Backend::Sqlite => "SELECT seq, hash FROM audit_head WHERE id = 1",
            Backend::Postgres => "SELECT seq, hash FROM audit_head WHERE id = 1 FOR UPDATE",
        }
    }

    /// Locks one trust row so concurrent rotations of it serialise.
    pub(crate) fn lock_trust(self) -> &'static str {
        match self {
            Backend::Sqlite => "SELECT id FROM trusts WHERE id = $1",
            Backend::Postgres => "SELECT id FROM trusts WHERE id = $1 FOR UPDATE",
        }
    }

    /// Claims rows of a queue: other PostgreSQL nodes skip the rows this transaction
    /// holds instead of waiting; SQLite has a single writer (`BEGIN IMMEDIATE`).
    pub(crate) fn skip_locked(self) -> &'static str {
        match self {
            Backend::Sqlite => "",
            Backend::Postgres => " FOR UPDATE SKIP LOCKED",
        }
    }

    pub(crate) fn migrations(self) -> &'static [(i64, &'static str)] {
        match self {
            Backend::Sqlite => &[
                (1, include_str!("../migrations/sqlite/0001_foundation.sql")),
                (2, include_str!("../migrations/sqlite/0002_scim.sql")),
                (3, include_str!("../migrations/sqlite/0003_trust_policy.sql")),
                (4, include_str!("../migrations/sqlite/0004_rotation.sql")),
                (5, include_str!("../migrations/sqlite/0005_federation.sql")),
                (6, include_str!("../migrations/sqlite/0006_outbox.sql")),
                (7, include_str!("../migrations/sqlite/0007_member_index.sql")),
                (8, include_str!("../migrations/sqlite/0008_reconcile_schedule.sql")),
                (10, include_str!("../migrations/sqlite/0010_planner.sql")),
                (11, include_str!("../migrations/sqlite/0011_sync_bulk.sql")),
                (12, include_str!("../migrations/sqlite/0012_users_follow_groups.sql")),
                (13, include_str!("../migrations/sqlite/0013_target_allow_http.sql")),
                (14, include_str!("../migrations/sqlite/0014_leak_response.sql")),
                (15, include_str!("../migrations/sqlite/0015_overlap_cap.sql")),
                (17, include_str!("../migrations/sqlite/0017_notifications.sql")),
                (18, include_str!("../migrations/sqlite/0018_audit_sinks.sql")),
                (19, include_str!("../migrations/sqlite/0019_oauth_clients.sql")),
                (20, include_str!("../migrations/sqlite/0020_console_sessions.sql")),
                (21, include_str!("../migrations/sqlite/0021_security_events.sql")),
                (22, include_str!("../migrations/sqlite/0022_ssf_verifications.sql")),
            ],
            Backend::Postgres => &[
                (1, include_str!("../migrations/postgres/0001_foundation.sql")),
                (2, include_str!("../migrations/postgres/0002_scim.sql")),
                (3, include_str!("../migrations/postgres/0003_trust_policy.sql")),
                (4, include_str!("../migrations/postgres/0004_rotation.sql")),
                (5, include_str!("../migrations/postgres/0005_federation.sql")),
                (6, include_str!("../migrations/postgres/0006_outbox.sql")),
                (7, include_str!("../migrations/postgres/0007_member_index.sql")),
                (8, include_str!("../migrations/postgres/0008_reconcile_schedule.sql")),
                (10, include_str!("../migrations/postgres/0010_planner.sql")),
                (11, include_str!("../migrations/postgres/0011_sync_bulk.sql")),
                (12, include_str!("../migrations/postgres/0012_users_follow_groups.sql")),
                (13, include_str!("../migrations/postgres/0013_target_allow_http.sql")),
                (14, include_str!("../migrations/postgres/0014_leak_response.sql")),
                (15, include_str!("../migrations/postgres/0015_overlap_cap.sql")),
                (17, include_str!("../migrations/postgres/0017_notifications.sql")),
                (18, include_str!("../migrations/postgres/0018_audit_sinks.sql")),
                (19, include_str!("../migrations/postgres/0019_oauth_clients.sql")),
                (20, include_str!("../migrations/postgres/0020_console_sessions.sql")),
                (21, include_str!("../migrations/postgres/0021_security_events.sql")),
                (22, include_str!("../migrations/postgres/0022_ssf_verifications.sql")),
            ],
        }
    }

    /// Serialises concurrent migrators on PostgreSQL (several nodes starting at once).
    pub(crate) fn migration_lock(self) -> Option<&'static str> {
        match self {
            Backend::Sqlite => None,
            Backend::Postgres => Some("SELECT pg_advisory_xact_lock(4242424242)"),
        }
    }

    /// The names (column `name`) of `schema_migrations`' columns, which the migrator
    /// upgrades in place.
    pub(crate) fn migration_columns(self) -> &'static str {
        match self {
            Backend::Sqlite => "SELECT name FROM pragma_table_info('schema_migrations')",
            Backend::Postgres => {
                "SELECT column_name::text AS name FROM information_schema.columns \
                 WHERE table_schema = current_schema() AND table_name = 'schema_migrations'"
            }
        }
    }

    /// Tells the other nodes, when the transaction commits, that cached credentials may be
    /// stale (see `crate::invalidate`); `$1` names the node that sends it. SQLite has one
    /// node, which invalidates in-process.
    pub(crate) fn auth_change_notice(self) -> Option<&'static str> {
        match self {
            Backend::Sqlite => None,
            Backend::Postgres => Some("SELECT pg_notify('fedkey_auth', $1)"),
        }
    }
}

#[derive(Clone)]
pub struct Db {
    pub(crate) pool: AnyPool,
    pub backend: Backend,
    /// The writers' group commit (see [`group`]), once migrated. Writers queue here, in
    /// order — on SQLite instead of in its busy handler (which sleeps 1 ms, 2 ms, 5 ms …
    /// between attempts), on PostgreSQL instead of on the audit chain head's row lock, held
    /// by each writer through its commit — and share one commit and one fsync per group.
    group: Option<Arc<group::Group>>,
    /// The audit chain head this process wrote last (see `audit::append_in_tx`).
    audit_head: Arc<std::sync::Mutex<Option<ChainHead>>>,
    pub(crate) health: Arc<health::Health>,
    /// The URL connected to, for the PostgreSQL listener of `crate::invalidate` (which
    /// needs a connection of its own). Never shown: it may hold a password.
    pub(crate) url: Arc<str>,
}

/// Connection settings (see docs/configuration.md); `None` keeps the default.
#[derive(Debug, Clone, Default)]
pub struct DbOptions {
    /// Connections in the pool at most (default 8 on SQLite, 16 on PostgreSQL).
    pub pool_size: Option<u32>,
    /// How long a caller waits for a connection: a new one (retried while the server
    /// refuses connections) or a free one of the pool (default 10 s).
    pub connect_timeout: Option<Duration>,
    /// PostgreSQL: the server cancels a statement that runs longer (default: the server's
    /// `statement_timeout`).
    pub statement_timeout: Option<Duration>,
    /// PostgreSQL: TCP keepalive on the server's side of each connection, so that the
    /// server notices a node that vanished and releases its locks (the audit chain head
    /// among them): first probe after this much idle time (default: the server's).
    pub tcp_keepalive: Option<Duration>,
}

impl DbOptions {
    /// Session settings sent once on every new PostgreSQL connection.
    fn postgres_session(&self) -> Option<String> {
        let mut set = Vec::new();
        if let Some(t) = self.statement_timeout {
            set.push(format!("SET statement_timeout = {}", t.as_millis()));
        }
        if let Some(k) = self.tcp_keepalive {
            let idle = k.as_secs().max(1);
            set.push(format!(
                "SET tcp_keepalives_idle = {idle}; SET tcp_keepalives_interval = {}; SET tcp_keepalives_count = 3",
                (idle / 3).max(1)
            ));
        }
        (!set.is_empty()).then(|| set.join("; "))
    }
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Db").field("backend", &self.backend).finish_non_exhaustive()
    }
}

/// A write (or snapshot) transaction; derefs to the connection it runs on.
pub struct Tx {
    inner: TxInner,
}

enum TxInner {
    /// Its own transaction on a pool connection (PostgreSQL, snapshots).
    Own(Transaction<'static, Any>),
    /// A savepoint in the writers' shared transaction; `None` once finished.
    Grouped(Option<group::Turn>),
}

impl Tx {
    /// Whether this is a writer in the shared transaction, which holds the audit chain
    /// head for its whole life (see [`group`]).
    pub(crate) fn is_grouped(&self) -> bool {
        matches!(self.inner, TxInner::Grouped(Some(_)))
    }

    /// Makes the transaction's changes durable (for a grouped SQLite writer: once the
    /// group it belongs to is committed).
    pub async fn commit(mut self) -> Result<(), sqlx::Error> {
        match std::mem::replace(&mut self.inner, TxInner::Grouped(None)) {
            TxInner::Own(t) => t.commit().await,
            TxInner::Grouped(Some(turn)) => turn.commit().await,
            TxInner::Grouped(None) => Ok(()),
        }
    }

    pub async fn rollback(mut self) -> Result<(), sqlx::Error> {
        match std::mem::replace(&mut self.inner, TxInner::Grouped(None)) {
            TxInner::Own(t) => t.rollback().await,
            TxInner::Grouped(Some(turn)) => turn.rollback().await,
            TxInner::Grouped(None) => Ok(()),
        }
    }
}

impl Drop for Tx {
    fn drop(&mut self) {
        // An unfinished grouped writer is rolled back to its savepoint (sqlx rolls back
        // its own transactions the same way).
        if let TxInner::Grouped(turn) = &mut self.inner
            && let Some(turn) = turn.take()
        {
            turn.rollback_later();
        }
    }
}

impl std::ops::Deref for Tx {
    type Target = AnyConnection;
    fn deref(&self) -> &AnyConnection {
        match &self.inner {
            TxInner::Own(t) => t,
            TxInner::Grouped(Some(turn)) => turn.conn_ref(),
            // Finished transactions are consumed by `commit`/`rollback`: unreachable.
            TxInner::Grouped(None) => unreachable_conn(),
        }
    }
}

impl std::ops::DerefMut for Tx {
    fn deref_mut(&mut self) -> &mut AnyConnection {
        match &mut self.inner {
            TxInner::Own(t) => t,
            TxInner::Grouped(Some(turn)) => turn.conn(),
            TxInner::Grouped(None) => unreachable_conn(),
        }
    }
}

#[allow(clippy::panic)]
fn unreachable_conn() -> ! {
    panic!("a finished transaction has no connection")
}

/// An audit chain head: its `seq` and `hash`.
pub(crate) type ChainHead = (i64, [u8; 32]);

/// How long a writer waits for its turn before it falls back to SQLite's own locking
/// (so a nested transaction in one task cannot wait forever, only fail as before).
const WRITE_TURN_WAIT: Duration = Duration::from_secs(10);

impl Db {
    /// Connects and migrates. `sqlite:` URLs create the file if needed.
    pub async fn connect(url: &str) -> Result<Db, StoreError> {
        Db::connect_with(url, &DbOptions::default()).await
    }

    /// Like [`Db::connect`], with connection settings.
    pub async fn connect_with(url: &str, options: &DbOptions) -> Result<Db, StoreError> {
        Db::connect_mode(url, "rwc", true, options).await
    }

    /// Like [`Db::connect`], but a SQLite file must already exist: offline tools must
    /// not create an empty database when pointed at the wrong directory.
    pub async fn connect_existing(url: &str) -> Result<Db, StoreError> {
        Db::connect_mode(url, "rw", false, &DbOptions::default()).await.map_err(|e| match e {
            StoreError::Database(sqlx::Error::Database(d)) if d.message().contains("unable to open") => {
                StoreError::Config(format!(
                    "no fedkey database at {url} (run `fedkey init`, or check --data-dir / --database-url)"
                ))
            }
            other => other,
        })
    }

    async fn connect_mode(url: &str, sqlite_mode: &str, create: bool, options: &DbOptions) -> Result<Db, StoreError> {
        sqlx::any::install_default_drivers();
        let backend = Backend::from_url(url)?;
        let given = url;
        let url = match backend {
            Backend::Sqlite if !url.contains("mode=") => {
                format!("{url}{}mode={sqlite_mode}", if url.contains('?') { "&" } else { "?" })
            }
            _ => url.to_owned(),
        };
        let opts = AnyConnectOptions::from_str(&url)
            .map_err(|e| StoreError::Config(format!("invalid database URL: {}", redact_url_error(&e))))?
            .log_statements(tracing::log::LevelFilter::Trace)
            .log_slow_statements(tracing::log::LevelFilter::Warn, Duration::from_secs(2));
        let max = match backend {
            Backend::Sqlite => 8,
            Backend::Postgres => 16,
        };
        let health = Arc::new(health::Health::default());
        let (ping_health, connect_health) = (health.clone(), health.clone());
        let session = options.postgres_session();
        let pool = AnyPoolOptions::new()
            .max_connections(options.pool_size.unwrap_or(max).max(1))
            .acquire_timeout(options.connect_timeout.unwrap_or(Duration::from_secs(10)))
            // sqlx pings every idle connection before lending it out: a round trip to the
            // SQLite worker thread or the PostgreSQL server on every pool query, for a check
            // that only matters after a long idle spell (a firewall that drops quiet
            // connections, the server's idle_session_timeout) or once a connection was
            // found lost (a restarted or failed-over server). Ping only those.
            .test_before_acquire(false)
            .before_acquire(move |conn, meta| {
                let health = ping_health.clone();
                Box::pin(async move {
                    if backend == Backend::Postgres && health.should_ping(meta.idle_for) {
                        conn.ping().await?;
                    }
                    Ok(true)
                })
            })
            .after_connect(move |conn, _| {
                let (health, session) = (connect_health.clone(), session.clone());
                Box::pin(async move {
                    if backend == Backend::Postgres {
                        if let Some(set) = &session {
                            conn.execute(sqlx::AssertSqlSafe(set.as_str())).await?;
                        }
                        health.set_idle_session_timeout(idle_session_timeout(conn).await?);
                    }
                    if backend == Backend::Sqlite {
                        // WAL for concurrent readers, FULL so a commit is durable when it returns.
                        // Reads are memory-mapped up to SQLite's 2 GiB limit (a million users is
                        // about 2.2 GB): a connection's page cache is emptied whenever another
                        // connection has committed, so with a smaller map every lookup beyond it
                        // re-read its pages with read(2), and `userName eq` at 1M users ran at
                        // half the rate it has at 100k.
                        conn.execute("PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA busy_timeout = 10000; PRAGMA foreign_keys = ON; PRAGMA cache_size = -32768; PRAGMA mmap_size = 2147418112; PRAGMA temp_store = MEMORY;").await?;
                    }
                    Ok(())
                })
            })
            .connect_with(opts)
            .await
            .map_err(StoreError::Database)?;
        let mut db = Db { pool, backend, group: None, audit_head: Arc::default(), health, url: url.as_str().into() };
        if !create {
            // An offline tool must not turn an empty or foreign database into a fedkey one.
            let initialised =
                sqlx::query("SELECT value FROM install WHERE name = 'install_id'").fetch_optional(&db.pool).await;
            if !matches!(initialised, Ok(Some(_))) {
                return Err(StoreError::Config(format!(
                    "{} is not an initialised fedkey database (run `fedkey init`, or check --data-dir / --database-url)",
                    redact_url(given)
                )));
            }
        }
        // Migrations run in transactions of their own (on PostgreSQL an epoch begins by
        // locking the audit chain head, which migrations create).
        crate::migrate::run(&db).await?;
        db.group = Some(group::Group::new(&db.pool, backend, db.audit_head.clone(), db.health.clone()));
        Ok(db)
    }

    pub async fn begin(&self) -> Result<Tx, StoreError> {
        if let Some(group) = &self.group
            && let Some(turn) = group.begin(WRITE_TURN_WAIT).await?
        {
            return Ok(Tx { inner: TxInner::Grouped(Some(turn)) });
        }
        let inner = self.pool.begin_with(self.backend.begin_statement()).await?;
        Ok(Tx { inner: TxInner::Own(inner) })
    }

    /// Begins a read-only snapshot transaction (see [`Backend::snapshot_statement`]).
    pub async fn begin_snapshot(&self) -> Result<Tx, StoreError> {
        Ok(Tx { inner: TxInner::Own(self.pool.begin_with(self.backend.snapshot_statement()).await?) })
    }

    /// How many writers' transactions one commit may carry (default 64; 1 commits each
    /// transaction on its own, as benchmarks compare).
    pub fn set_group_commit_limit(&self, writers: usize) {
        if let Some(g) = &self.group {
            g.max_writers.store(writers.max(1), std::sync::atomic::Ordering::Relaxed);
        }
    }

    /// Returns once the writers' shared transaction open now, if any, has ended, so that a
    /// read sees what its writers wrote. A write that found another version than it
    /// expected calls this before it answers: the version it found may be in that open
    /// transaction, invisible to the caller's next read until it commits.
    pub async fn settled(&self) {
        if let Some(g) = &self.group {
            g.settled().await;
        }
    }

    /// The group commits so far and the writers' transactions they carried.
    pub fn group_commit_counts(&self) -> Option<(u64, u64)> {
        use std::sync::atomic::Ordering::Relaxed;
        self.group.as_ref().map(|g| (g.commits.load(Relaxed), g.writers.load(Relaxed)))
    }

    /// The audit chain head this process last wrote: a guess, checked where it is used.
    pub(crate) fn audit_head_hint(&self) -> Option<ChainHead> {
        self.audit_head.lock().ok().and_then(|h| *h)
    }

    pub(crate) fn set_audit_head_hint(&self, head: Option<ChainHead>) {
        if let Ok(mut h) = self.audit_head.lock() {
            *h = head;
        }
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// A cheap liveness probe for `/readyz`.
    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await.inspect_err(|e| self.note_error(e))?;
        Ok(())
    }

    /// Records what an error says about the connection it came from (see
    /// [`is_connection_lost`]): pooled connections idle since are checked before use.
    pub(crate) fn note_error(&self, e: &sqlx::Error) {
        if is_connection_lost(e) {
            self.health.connection_lost();
        }
    }

    pub async fn close(&self) {
        if let Some(g) = &self.group {
            g.close().await;
        }
        self.pool.close().await;
    }
}

/// The server's `idle_session_timeout` in ms (0: off, or a server without it).
async fn idle_session_timeout(conn: &mut AnyConnection) -> Result<u64, sqlx::Error> {
    use sqlx::Row;
    let row = sqlx::query("SELECT setting FROM pg_settings WHERE name = 'idle_session_timeout'")
        .fetch_optional(&mut *conn)
        .await?;
    let setting: Option<String> = row.map(|r| r.try_get("setting")).transpose()?;
    Ok(setting.and_then(|s| s.parse().ok()).unwrap_or(0))
}

/// A database URL without its password, for messages.
fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(a), Some(b)) if b > a => format!("{}://***@{}", &url[..a], &url[b + 1..]),
        _ => url.to_owned(),
    }
}

/// sqlx errors about URLs may echo the URL, password included; keep only the kind.
fn redact_url_error(e: &sqlx::Error) -> &'static str {
    match e {
        sqlx::Error::Configuration(_) => "unsupported or malformed URL",
        _ => "could not parse",
    }
}
