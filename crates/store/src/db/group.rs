//! Group commit for writers.
//!
//! SQLite has one writer at a time, and with `synchronous = FULL` each commit waits for
//! an fsync: one transaction per request made the fsync the limit on every write path.
//! PostgreSQL came to the same limit another way: every audited write locks the audit
//! chain head (one row) and holds it through its commit, so writers took turns there,
//! one fsync each. Here every write transaction of the process runs on one connection,
//! inside one shared transaction (an *epoch*), each in its own savepoint:
//!
//! - a writer takes its turn (in order), opens the epoch if none is open (`BEGIN
//!   IMMEDIATE` on SQLite; on PostgreSQL `BEGIN` and a lock on the audit chain head, taken
//!   first so that epochs of several nodes never wait on each other's rows while holding
//!   it; the epoch's first writer needs no savepoint), and otherwise works inside
//!   `SAVEPOINT`;
//! - its commit releases the savepoint and waits for the epoch's `COMMIT`; the writer that
//!   finds nobody else waiting (or the epoch full or old) commits it for everyone;
//! - its rollback (or a `Tx` dropped unfinished) rolls back to its savepoint: the other
//!   writers of the epoch keep their work;
//! - if the epoch's `COMMIT` fails (or the shared transaction is lost), every writer of the
//!   epoch gets the error: each learns of its change only with its durable commit, so
//!   nothing is reported written that is not. A `COMMIT` cut off by a lost connection has
//!   an unknown outcome; its writers get an error all the same (a client's retry of a
//!   create that did commit meets the uniqueness of what it created).
//!
//! The shared connection outlives any one request, so it must survive the database
//! restarting, failing over or closing it: an error that says the connection is gone (or
//! a `ROLLBACK` that fails after an error) drops it, and the next writer takes a new one
//! from the pool, after a back-off with jitter while attempts keep failing. A writer
//! whose `BEGIN` or `SAVEPOINT` met a lost connection has done nothing yet and starts
//! again on the new one at once. The audit chain head is re-read before the first append
//! on a new connection (the process's hint is cleared with the old one).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use sqlx::pool::PoolConnection;
use sqlx::{Any, AnyConnection, AnyPool, Executor, Row};
use tokio::sync::{Mutex, OwnedMutexGuard, oneshot, watch};

use super::health::{Health, is_connection_lost, jitter};
use super::{Backend, ChainHead};

/// Writers committed together at most (by default).
pub(super) const MAX_EPOCH_WRITERS: usize = 64;
/// An epoch older than this is committed by its next writer even if others wait.
const MAX_EPOCH_AGE: Duration = Duration::from_millis(4);
/// A waiting writer whose epoch was not committed within this time commits it itself
/// (the writer meant to lost its turn).
const WAITER_PATIENCE: Duration = Duration::from_secs(1);
/// Waits between attempts to take a new shared connection while they fail: doubling
/// from the first to the last, half of each random (nodes reconnecting together spread out).
const RECONNECT_FIRST: Duration = Duration::from_millis(100);
const RECONNECT_MAX: Duration = Duration::from_secs(2);

pub(super) struct Group {
    state: Arc<Mutex<Shared>>,
    backend: Backend,
    /// Writers waiting for their turn.
    queued: AtomicUsize,
    /// Writers committed together at most; 1 is a commit per transaction.
    pub(super) max_writers: AtomicUsize,
    /// Commits of the shared transaction, and the writers they carried.
    pub(super) commits: AtomicU64,
    pub(super) writers: AtomicU64,
}

pub(super) struct Shared {
    /// Taken from the pool on first use; given back by [`Group::close`], dropped when lost.
    conn: Option<PoolConnection<Any>>,
    pool: AnyPool,
    /// The process's audit chain head hint, refreshed when a PostgreSQL epoch locks the
    /// head and cleared when the connection is lost.
    audit_head: Arc<std::sync::Mutex<Option<ChainHead>>>,
    health: Arc<Health>,
    /// Attempts to take a new connection that failed in a row, and when the next may start.
    reconnect_failures: u32,
    reconnect_at: Option<Instant>,
    /// `BEGIN IMMEDIATE` issued and not yet committed.
    open: bool,
    opened_at: Option<Instant>,
    /// Incremented by every commit or rollback of the shared transaction.
    epoch: u64,
    /// Writers whose savepoint was released in the open epoch, waiting for its commit.
    waiters: Vec<oneshot::Sender<Result<(), String>>>,
    /// The number of the last epoch that ended (committed or rolled back).
    ended: watch::Sender<u64>,
}

/// A writer's turn: the shared connection, inside the writer's savepoint.
pub(super) struct Turn {
    pub(super) guard: OwnedMutexGuard<Shared>,
    group: Arc<Group>,
    /// The first writer of an epoch needs no savepoint: the transaction holds only its
    /// work, so undoing it is a `ROLLBACK` (two statements fewer for a lone writer).
    savepoint: bool,
}

const SAVEPOINT: &str = "SAVEPOINT fk_writer";
const RELEASE: &str = "RELEASE SAVEPOINT fk_writer";
const ROLLBACK_TO: &str = "ROLLBACK TO SAVEPOINT fk_writer";

impl Group {
    pub(super) fn new(
        pool: &AnyPool,
        backend: Backend,
        audit_head: Arc<std::sync::Mutex<Option<ChainHead>>>,
        health: Arc<Health>,
    ) -> Arc<Group> {
        Arc::new(Group {
            backend,
            state: Arc::new(Mutex::new(Shared {
                conn: None,
                pool: pool.clone(),
                audit_head,
                health,
                reconnect_failures: 0,
                reconnect_at: None,
                open: false,
                opened_at: None,
                epoch: 0,
                waiters: Vec::new(),
                ended: watch::Sender::new(0),
            })),
            queued: AtomicUsize::new(0),
            max_writers: AtomicUsize::new(MAX_EPOCH_WRITERS),
            commits: AtomicU64::new(0),
            writers: AtomicU64::new(0),
        })
    }

    fn count(&self, carried: Option<u64>) {
        if let Some(n) = carried.filter(|n| *n > 0) {
            self.commits.fetch_add(1, Ordering::Relaxed);
            self.writers.fetch_add(n, Ordering::Relaxed);
        }
    }

    /// Gives the shared connection back to the pool (before the pool closes), once the
    /// writers of the open epoch are answered.
    pub(super) async fn close(&self) {
        let mut g = self.state.lock().await;
        if g.open {
            self.count(finish(&mut g).await);
        }
        g.conn = None;
    }

    /// Returns once the epoch open now, if any, has ended (at most after [`WAITER_PATIENCE`]):
    /// what its writers wrote is then committed and visible to every connection, or gone.
    pub(super) async fn settled(&self) {
        let (epoch, mut ended) = {
            let g = self.state.lock().await;
            if !g.open {
                return;
            }
            (g.epoch, g.ended.subscribe())
        };
        let _ = tokio::time::timeout(WAITER_PATIENCE, ended.wait_for(|e| *e > epoch)).await;
    }

    /// Waits (at most `wait`) for this writer's turn and opens its savepoint; `None` when
    /// the wait timed out.
    pub(super) async fn begin(self: &Arc<Self>, wait: Duration) -> Result<Option<Turn>, sqlx::Error> {
        self.queued.fetch_add(1, Ordering::SeqCst);
        let guard = tokio::time::timeout(wait, self.state.clone().lock_owned()).await;
        self.queued.fetch_sub(1, Ordering::SeqCst);
        let Ok(mut g) = guard else { return Ok(None) };
        let had_conn = g.conn.is_some();
        match self.open_turn(&mut g).await {
            Ok(savepoint) => Ok(Some(Turn { guard: g, group: self.clone(), savepoint })),
            // Nothing of this writer's was on the lost connection: start again on a new one.
            Err(_) if had_conn && g.conn.is_none() => {
                let savepoint = self.open_turn(&mut g).await?;
                Ok(Some(Turn { guard: g, group: self.clone(), savepoint }))
            }
            Err(e) => Err(e),
        }
    }

    /// Opens the epoch or this writer's savepoint in it; returns whether it is a savepoint.
    async fn open_turn(&self, g: &mut Shared) -> Result<bool, sqlx::Error> {
        g.connect().await?;
        if !g.open {
            if let Err(e) = g.conn().execute(self.backend.begin_statement()).await {
                // No transaction is open (SQLite's BEGIN IMMEDIATE found the database
                // locked, or the connection is gone).
                if is_connection_lost(&e) {
                    g.drop_conn(&e);
                }
                return Err(e);
            }
            g.open = true;
            g.opened_at = Some(Instant::now());
            if self.backend == Backend::Postgres
                && let Err(e) = self.lock_audit_head(g).await
            {
                abandon(g, &e).await;
                return Err(e);
            }
            return Ok(false);
        }
        if let Err(e) = g.conn().execute(SAVEPOINT).await {
            abandon(g, &e).await;
            return Err(e);
        }
        Ok(true)
    }

    /// Locks the audit chain head for the epoch and makes it the process's hint, so that
    /// every append of the epoch moves it with one guarded UPDATE.
    async fn lock_audit_head(&self, g: &mut Shared) -> Result<(), sqlx::Error> {
        let row = sqlx::query(self.backend.lock_audit_head()).fetch_one(g.conn()).await?;
        let seq: i64 = row.try_get("seq")?;
        let hash: Vec<u8> = row.try_get("hash")?;
        if let Ok(mut hint) = g.audit_head.lock() {
            // A malformed hash leaves no hint: the append reads the head and fails there.
            *hint = <[u8; 32]>::try_from(hash.as_slice()).ok().map(|h| (seq, h));
        }
        Ok(())
    }
}

impl Turn {
    pub(super) fn conn(&mut self) -> &mut AnyConnection {
        self.guard.conn()
    }

    pub(super) fn conn_ref(&self) -> &AnyConnection {
        match &self.guard.conn {
            Some(c) => c,
            None => super::unreachable_conn(),
        }
    }

    /// Releases the savepoint and returns once the epoch holding it is committed.
    pub(super) async fn commit(self) -> Result<(), sqlx::Error> {
        let Turn { mut guard, group, savepoint } = self;
        if savepoint && let Err(e) = guard.conn().execute(RELEASE).await {
            // The savepoint is gone: the shared transaction was lost with it.
            abandon(&mut guard, &e).await;
            return Err(e);
        }
        let (done, wait) = oneshot::channel();
        guard.waiters.push(done);
        let epoch = guard.epoch;
        let full = guard.waiters.len() >= group.max_writers.load(Ordering::Relaxed);
        let state = group.state.clone();
        end_turn(guard, &group, full).await;
        let mut wait = wait;
        let result = match tokio::time::timeout(WAITER_PATIENCE, &mut wait).await {
            Ok(r) => r,
            Err(_) => {
                let mut g = state.lock_owned().await;
                if g.epoch == epoch && g.open {
                    group.count(finish(&mut g).await);
                }
                drop(g);
                wait.await
            }
        };
        match result {
            Ok(Ok(())) => Ok(()),
            Ok(Err(m)) => Err(sqlx::Error::Protocol(format!("the group commit failed: {m}"))),
            Err(_) => Err(sqlx::Error::Protocol("the group commit was abandoned".into())),
        }
    }

    /// Rolls back to the savepoint; the epoch's other writers keep their work.
    pub(super) async fn rollback(self) -> Result<(), sqlx::Error> {
        let Turn { mut guard, group, savepoint } = self;
        let r = undo(&mut guard, savepoint).await;
        end_turn(guard, &group, false).await;
        r
    }

    /// For a `Tx` dropped unfinished: rolls back in a task of its own, keeping the turn
    /// until that is done.
    pub(super) fn rollback_later(self) {
        match tokio::runtime::Handle::try_current() {
            Ok(h) => {
                h.spawn(async move {
                    let _ = self.rollback().await;
                });
            }
            Err(_) => {
                // No runtime to finish it: the shared transaction cannot be trusted.
                let Turn { mut guard, .. } = self;
                guard.end_epoch();
                for w in guard.waiters.drain(..) {
                    let _ = w.send(Err("the write transaction was dropped outside a runtime".into()));
                }
            }
        }
    }
}

impl Shared {
    /// Takes a connection from the pool if there is none; while attempts keep failing, the
    /// next waits for its back-off and writers meanwhile fail at once (their clients get
    /// a quick 503 instead of waiting in line for an attempt that will fail too).
    async fn connect(&mut self) -> Result<(), sqlx::Error> {
        if self.conn.is_some() {
            return Ok(());
        }
        if self.reconnect_at.is_some_and(|at| Instant::now() < at) {
            return Err(sqlx::Error::PoolTimedOut);
        }
        match self.pool.acquire().await {
            Ok(c) => {
                if self.reconnect_failures > 0 {
                    tracing::info!(attempts = self.reconnect_failures + 1, "the shared write connection is back");
                }
                self.conn = Some(c);
                self.reconnect_failures = 0;
                self.reconnect_at = None;
                Ok(())
            }
            Err(e) => {
                self.reconnect_failures = self.reconnect_failures.saturating_add(1);
                let wait = fedkey_core::rotation::retry_delay(
                    self.reconnect_failures,
                    RECONNECT_FIRST,
                    RECONNECT_MAX,
                    jitter(),
                );
                self.reconnect_at = Some(Instant::now() + wait);
                self.health.write_failed();
                tracing::warn!(error = %e, retry_in = ?wait, "no database connection for writes");
                Err(e)
            }
        }
    }

    /// The connection is gone (or cannot be trusted): close it instead of giving it back
    /// to the pool, and forget the audit chain head this process wrote last, so that the
    /// next append reads it from the database.
    fn drop_conn(&mut self, why: &sqlx::Error) {
        if let Some(c) = self.conn.take() {
            drop(c.detach());
        }
        if let Ok(mut hint) = self.audit_head.lock() {
            *hint = None;
        }
        self.health.connection_lost();
        tracing::warn!(error = %why, "the shared write connection is closed after this error; taking a new one");
    }

    /// The open epoch is over (committed, rolled back or lost).
    fn end_epoch(&mut self) {
        self.open = false;
        self.opened_at = None;
        self.epoch += 1;
        self.ended.send_replace(self.epoch);
    }

    /// The shared connection; a turn exists only once it was acquired.
    fn conn(&mut self) -> &mut AnyConnection {
        match &mut self.conn {
            Some(c) => c,
            None => super::unreachable_conn(),
        }
    }
}

/// Undoes the writer's work (its savepoint, or the whole transaction when it was the
/// epoch's first writer); if that fails, the whole shared transaction is gone.
async fn undo(g: &mut Shared, savepoint: bool) -> Result<(), sqlx::Error> {
    if !savepoint {
        let r = g.conn().execute("ROLLBACK").await;
        g.end_epoch();
        // The first writer: nobody else's work was in it, nobody waits on it.
        for w in g.waiters.drain(..) {
            let _ = w.send(Err("the write transaction was rolled back".into()));
        }
        if let Err(e) = &r {
            g.drop_conn(e);
        }
        return r.map(|_| ());
    }
    let r = async {
        g.conn().execute(ROLLBACK_TO).await?;
        g.conn().execute(RELEASE).await
    }
    .await;
    if let Err(e) = &r {
        abandon(g, e).await;
    }
    r.map(|_| ())
}

/// Ends a writer's turn: commits the epoch when nobody else waits for a turn, when it is
/// old (readers see only committed data: a long epoch makes their reads stale) or `now`,
/// so its writers are answered; otherwise the next writer carries it on.
async fn end_turn(mut g: OwnedMutexGuard<Shared>, group: &Group, now: bool) {
    let old = g.opened_at.is_some_and(|t| t.elapsed() >= MAX_EPOCH_AGE);
    if g.open && (now || old || group.queued.load(Ordering::SeqCst) == 0) {
        group.count(finish(&mut g).await);
    }
}

/// Commits the open epoch and tells its writers how it went; returns how many writers it
/// carried when it committed.
async fn finish(g: &mut Shared) -> Option<u64> {
    let r = g.conn().execute("COMMIT").await;
    if let Err(e) = &r {
        g.health.write_failed();
        // Lost mid-COMMIT, the outcome is unknown: the writers get an error either way.
        if is_connection_lost(e) || g.conn().execute("ROLLBACK").await.is_err() {
            g.drop_conn(e);
        }
    }
    g.end_epoch();
    metrics::histogram!("fedkey_db_group_commit_writers").record(g.waiters.len() as f64);
    let outcome = r.map(|_| ()).map_err(|e| e.to_string());
    let carried = g.waiters.len() as u64;
    for w in g.waiters.drain(..) {
        let _ = w.send(outcome.clone());
    }
    outcome.ok().map(|()| carried)
}

/// The shared transaction failed: roll it back and fail every writer waiting on it.
async fn abandon(g: &mut Shared, e: &sqlx::Error) {
    g.health.write_failed();
    let rolled_back = !is_connection_lost(e) && g.conn().execute("ROLLBACK").await.is_ok();
    g.end_epoch();
    for w in g.waiters.drain(..) {
        let _ = w.send(Err(format!("the shared write transaction failed: {e}")));
    }
    if !rolled_back {
        g.drop_conn(e);
    }
}
