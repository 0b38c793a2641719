//! Audit storage: appending inside a caller's transaction, the group-commit writer
//! for high-volume records (authentications), checkpoints, queries and verification.
//!
//! Both paths lock the chain head (`audit_head`) inside their transaction, so records
//! from several writers — or several nodes on PostgreSQL — form one chain.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use fedkey_audit::{Checkpoint, Event, GENESIS, Outcome, Record, Sealed, Verifier, VerifyReport};
use fedkey_core::{Clock, Timestamp};
use sqlx::{Row, any::AnyRow};
use tokio::sync::{mpsc, oneshot};

use crate::db::{ChainHead, Tx};
use crate::install::Install;
use crate::{Db, StoreError};

/// Appends `events` to the chain inside `tx`. Nothing is durable until the caller
/// commits, and the caller's change commits only with its audit records.
pub async fn append_in_tx(tx: &mut Tx, db: &Db, events: Vec<Event>) -> Result<Appended, StoreError> {
    let chained = Chained::on(events.into_iter().map(Event::seal).collect(), head_guess(tx, db));
    append_chained(tx, db, chained).await
}

/// The head to chain on without reading it: the one this process wrote last.
///
/// A writer of the shared transaction tries it first: one guarded UPDATE checks that it
/// is still the head and moves it, instead of reading the head and then updating it (one
/// round trip fewer inside the writers' turn, on every audited write). When something
/// else moved it (another process, a write rolled back), the head is read and the records
/// chained again. Not in a transaction of its own on PostgreSQL: other transactions move
/// the head all the time, and a failed guess would wait for the row lock only to read the
/// head afterwards anyway (the shared transaction locks the head when it begins, and
/// refreshes the hint then).
fn head_guess(tx: &Tx, db: &Db) -> Option<ChainHead> {
    if tx.is_grouped() || db.backend == crate::Backend::Sqlite { db.audit_head_hint() } else { None }
}

/// Sealed records, linked after `base` when there was a head to guess.
struct Chained {
    records: Vec<Sealed>,
    base: Option<ChainHead>,
    appended: Appended,
}

impl Chained {
    /// Links `records` after `base` (if any; otherwise they are linked once the head is
    /// read). The group-commit writer does this before its turn, on the head it wrote
    /// last: inside the turn only a moved head costs hashing again.
    fn on(records: Vec<Sealed>, base: Option<ChainHead>) -> Chained {
        let mut c =
            Chained { records, base: None, appended: Appended { first_seq: 0, last_seq: 0, last_hash: GENESIS } };
        if let Some(head) = base {
            c.link(head);
        }
        c
    }

    /// Links the records after `head`, unless they already are.
    fn link(&mut self, head: ChainHead) {
        if self.base == Some(head) {
            return;
        }
        let (mut seq, mut prev) = head;
        for r in &mut self.records {
            seq += 1;
            prev = r.link(seq, prev);
        }
        let first_seq = self.records.first().map_or(seq, |r| r.record.seq);
        self.base = Some(head);
        self.appended = Appended { first_seq, last_seq: seq, last_hash: prev };
    }
}

/// Moves the chain head past `c` (linking it again if the head is not where it was
/// linked) and inserts its records, inside `tx`.
async fn append_chained(tx: &mut Tx, db: &Db, mut c: Chained) -> Result<Appended, StoreError> {
    let moved = match head_guess(tx, db) {
        Some(guess) => {
            c.link(guess);
            move_head(tx, &c.appended, Some(guess)).await?
        }
        None => false,
    };
    if !moved {
        let head = read_head(tx, db).await?;
        c.link(head);
        move_head(tx, &c.appended, None).await?;
    }
    insert_records(tx, db.backend, c.records).await?;
    // If this transaction rolls back, the hint is ahead of the head: the next guarded
    // UPDATE finds out.
    db.set_audit_head_hint(Some((c.appended.last_seq, c.appended.last_hash)));
    Ok(c.appended)
}

/// The chain head, locked for this transaction.
async fn read_head(tx: &mut Tx, db: &Db) -> Result<ChainHead, StoreError> {
    let head = sqlx::query(db.backend.lock_audit_head()).fetch_one(&mut **tx).await?;
    Ok((head.try_get("seq")?, hash32(head.try_get("hash")?, "audit_head")?))
}

/// Moves the head to the end of `appended`; with `from`, only if that is still the head
/// (returns whether it moved).
async fn move_head(tx: &mut Tx, appended: &Appended, from: Option<ChainHead>) -> Result<bool, StoreError> {
    let q = match from {
        Some((seq, hash)) => {
            sqlx::query("UPDATE audit_head SET seq = $1, hash = $2 WHERE id = 1 AND seq = $3 AND hash = $4")
                .bind(appended.last_seq)
                .bind(appended.last_hash.to_vec())
                .bind(seq)
                .bind(hash.to_vec())
        }
        None => sqlx::query("UPDATE audit_head SET seq = $1, hash = $2 WHERE id = 1")
            .bind(appended.last_seq)
            .bind(appended.last_hash.to_vec()),
    };
    Ok(q.execute(&mut **tx).await?.rows_affected() == 1)
}

/// Where an append landed in the chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    pub first_seq: i64,
    pub last_seq: i64,
    pub last_hash: [u8; 32],
}

/// Inserts `records` in one statement per [`max_insert_rows`] of them: a group-commit
/// batch (at most `max_batch` records) is one round trip. The statement for `n` records
/// has room for the next power of two (the rest of the rows are NULLs, which its `WHERE`
/// drops), so a dozen statement shapes reach the prepared-statement cache, whatever the
/// batch sizes. Records are moved into the statement, not cloned: this is the hot path.
async fn insert_records(tx: &mut Tx, backend: crate::Backend, records: Vec<Sealed>) -> Result<(), StoreError> {
    let mut rest = records.into_iter();
    while rest.len() > 0 {
        let n = rest.len().min(max_insert_rows(backend));
        let rows = n.next_power_of_two();
        let mut q = sqlx::query(sqlx::AssertSqlSafe(insert_sql(backend, rows)));
        for Sealed { record: r, .. } in rest.by_ref().take(n) {
            q = q
                .bind(r.seq)
                .bind(r.ts.0)
                .bind(r.actor)
                .bind(r.action)
                .bind(r.outcome.as_str())
                .bind(r.directory)
                .bind(r.trust)
                .bind(r.key_version)
                .bind(r.source)
                .bind(r.request_id)
                .bind(r.details)
                .bind(r.prev_hash.to_vec())
                .bind(r.hash.to_vec());
        }
        for _ in n..rows {
            // Typed NULLs: PostgreSQL takes the column types from the parameters.
            q = q
                .bind(None::<i64>)
                .bind(None::<i64>)
                .bind(None::<String>)
                .bind(None::<String>)
                .bind(None::<String>)
                .bind(None::<String>)
                .bind(None::<String>)
                .bind(None::<i64>)
                .bind(None::<String>)
                .bind(None::<String>)
                .bind(None::<String>)
                .bind(None::<Vec<u8>>)
                .bind(None::<Vec<u8>>);
        }
        q.execute(&mut **tx).await?;
    }
    Ok(())
}

const AUDIT_COLUMNS: usize = 13;

/// Bound parameters per statement at most: SQLite's default `SQLITE_MAX_VARIABLE_NUMBER`
/// (32,766 since 3.32) and PostgreSQL's protocol limit (a 16-bit count).
const fn max_params(backend: crate::Backend) -> usize {
    match backend {
        crate::Backend::Sqlite => 32_766,
        crate::Backend::Postgres => 65_535,
    }
}

/// Records per INSERT at most: the largest power of two whose parameters fit (2,048 rows
/// on SQLite, 4,096 on PostgreSQL), so a padded statement never exceeds the limit.
const fn max_insert_rows(backend: crate::Backend) -> usize {
    let fit = max_params(backend) / AUDIT_COLUMNS;
    1 << fit.ilog2()
}

/// The INSERT of `rows` records (a power of two), cached per backend and size: the text
/// of the big ones is long, and it is the prepared-statement cache's key.
fn insert_sql(backend: crate::Backend, rows: usize) -> &'static str {
    use std::sync::OnceLock;
    const SHAPES: usize = 13; // 2^0 ..= 2^12 rows
    static SQLITE: [OnceLock<String>; SHAPES] = [const { OnceLock::new() }; SHAPES];
    static POSTGRES: [OnceLock<String>; SHAPES] = [const { OnceLock::new() }; SHAPES];
    let cache = match backend {
        crate::Backend::Sqlite => &SQLITE,
        crate::Backend::Postgres => &POSTGRES,
    };
    cache[rows.ilog2() as usize].get_or_init(|| build_insert_sql(backend, rows))
}

fn build_insert_sql(backend: crate::Backend, rows: usize) -> String {
    use std::fmt::Write;
    const COLUMNS: &str =
        "seq, ts, actor, action, outcome, directory, trust, key_version, source, request_id, details, prev_hash, hash";
    let mut sql = format!("INSERT INTO audit_log ({COLUMNS}) SELECT * FROM (VALUES ");
    for row in 0..rows {
        sql.push_str(if row == 0 { "(" } else { ", (" });
        for col in 0..AUDIT_COLUMNS {
            let sep = if col == 0 { "" } else { ", " };
            let _ = match backend {
                // Resolving `$N` names costs SQLite a linear scan per parameter
                // (quadratic for a multi-row insert); anonymous `?` costs nothing.
                crate::Backend::Sqlite => write!(sql, "{sep}?"),
                crate::Backend::Postgres => write!(sql, "{sep}${}", row * AUDIT_COLUMNS + col + 1),
            };
        }
        sql.push(')');
    }
    // The padding rows are all NULL; every real record has a `seq`.
    match backend {
        crate::Backend::Sqlite => sql.push_str(") WHERE column1 IS NOT NULL"),
        crate::Backend::Postgres => write!(sql, ") AS v ({COLUMNS}) WHERE v.seq IS NOT NULL").unwrap_or(()),
    }
    sql
}

/// Something to mark as used when the audit batch that records its use commits.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Touch {
    KeyVersion { trust_id: String, version: i64 },
    AdminToken { id: String },
}

struct Job {
    /// Sealed by the caller (off the writer's path); taken by the writer when the batch
    /// is appended.
    record: Option<Sealed>,
    touch: Option<Touch>,
    done: oneshot::Sender<Result<i64, String>>,
}

/// Group commit: concurrent callers' records share one transaction and one fsync. A
/// caller's `record` returns only once its record is durable (fail-closed).
#[derive(Clone)]
pub struct AuditWriter {
    tx: mpsc::Sender<Job>,
}

#[derive(Debug, Clone, Copy)]
pub struct WriterConfig {
    pub max_batch: usize,
    /// Sign a checkpoint once this many records have been added since the last one…
    pub checkpoint_every: i64,
    /// …or this much time has passed with new records.
    pub checkpoint_interval: Duration,
}

impl Default for WriterConfig {
    fn default() -> Self {
        WriterConfig { max_batch: 1024, checkpoint_every: 10_000, checkpoint_interval: Duration::from_secs(60) }
    }
}

impl AuditWriter {
    pub fn spawn(db: Db, install: Arc<Install>, clock: Arc<dyn Clock>, cfg: WriterConfig) -> AuditWriter {
        let (tx, rx) = mpsc::channel(cfg.max_batch * 8);
        tokio::spawn(run_writer(db, install, clock, cfg, rx));
        AuditWriter { tx }
    }

    /// Records `event` durably; returns its sequence number.
    pub async fn record(&self, event: Event, touch: Option<Touch>) -> Result<i64, StoreError> {
        self.submit(event, touch).await?.wait().await
    }

    /// Hands `event` to the writer and returns without waiting for it to be durable: the
    /// caller can work meanwhile, but must not answer or commit anything that depends on
    /// the record before [`Pending::wait`] has returned `Ok` (fail-closed).
    pub async fn submit(&self, event: Event, touch: Option<Touch>) -> Result<Pending, StoreError> {
        let (done, wait) = oneshot::channel();
        let record = Some(event.seal());
        self.tx.send(Job { record, touch, done }).await.map_err(|_| unavailable("audit writer stopped"))?;
        Ok(Pending(PendingState::Waiting(wait)))
    }
}

/// A record handed to the [`AuditWriter`], durable once [`Pending::wait`] returns `Ok`.
#[derive(Debug)]
#[must_use = "a pending audit record must be waited for before the request is answered"]
pub struct Pending(PendingState);

#[derive(Debug)]
enum PendingState {
    Waiting(oneshot::Receiver<Result<i64, String>>),
    Durable(i64),
    Summarized,
}

impl Pending {
    /// A record already durable at sequence number `seq`.
    pub fn durable(seq: i64) -> Pending {
        Pending(PendingState::Durable(seq))
    }

    /// No record of its own: a failed authentication counted for its window's summary
    /// (see `auth_failures`). Waiting returns at once, with sequence number 0.
    pub fn summarized() -> Pending {
        Pending(PendingState::Summarized)
    }

    /// Waits until the record is durable; returns its sequence number.
    pub async fn wait(self) -> Result<i64, StoreError> {
        match self.0 {
            PendingState::Durable(seq) => Ok(seq),
            PendingState::Summarized => Ok(0),
            PendingState::Waiting(rx) => match rx.await {
                Ok(Ok(seq)) => Ok(seq),
                Ok(Err(m)) => Err(unavailable(&m)),
                Err(_) => Err(unavailable("audit writer stopped")),
            },
        }
    }
}

fn unavailable(m: &str) -> StoreError {
    StoreError::AuditUnavailable(Box::new(StoreError::Config(m.to_owned())))
}

async fn run_writer(
    db: Db,
    install: Arc<Install>,
    clock: Arc<dyn Clock>,
    cfg: WriterConfig,
    mut rx: mpsc::Receiver<Job>,
) {
    let mut last_checkpoint = latest_checkpoint_size(&db).await.unwrap_or(0);
    let mut tick = tokio::time::interval(cfg.checkpoint_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut batch: Vec<Job> = Vec::with_capacity(cfg.max_batch);
    let mut touched = Touched::default();
    loop {
        tokio::select! {
            n = rx.recv_many(&mut batch, cfg.max_batch) => {
                if n == 0 {
                    return;
                }
                gather(&mut rx, &mut batch, cfg.max_batch).await;
                let mut jobs = std::mem::take(&mut batch);
                metrics::histogram!("fedkey_audit_batch_size").record(jobs.len() as f64);
                let started = std::time::Instant::now();
                let result = commit_batch(&db, &install, clock.as_ref(), &mut jobs, &mut last_checkpoint, cfg.checkpoint_every, &mut touched).await;
                metrics::histogram!("fedkey_audit_append_seconds").record(started.elapsed().as_secs_f64());
                match result {
                    Ok(first_seq) => {
                        db.health.write_succeeded();
                        metrics::counter!("fedkey_audit_records_total").increment(jobs.len() as u64);
                        for (i, j) in jobs.into_iter().enumerate() {
                            let _ = j.done.send(Ok(first_seq + i as i64));
                        }
                    }
                    Err(e) => {
                        db.health.write_failed();
                        if let StoreError::Database(d) = &e {
                            db.note_error(d);
                        }
                        metrics::counter!("fedkey_audit_write_failures_total").increment(1);
                        tracing::error!(error = %e, detail = ?e, batch = jobs.len(), "audit batch could not be committed");
                        for j in jobs {
                            let _ = j.done.send(Err(e.to_string()));
                        }
                    }
                }
            }
            _ = tick.tick() => {
                if let Err(e) = checkpoint_if_new(&db, &install, clock.as_ref(), &mut last_checkpoint, 1).await {
                    tracing::warn!(error = %e, "periodic audit checkpoint failed");
                }
            }
        }
    }
}

/// Lets requests that are already running add their records before the batch is
/// committed. Yielding costs nothing when nobody else is runnable (an idle server commits
/// at once), while under load it turns many small commits into a few large ones.
async fn gather(rx: &mut mpsc::Receiver<Job>, batch: &mut Vec<Job>, max: usize) {
    for _ in 0..GATHER_YIELDS {
        if batch.len() >= max {
            return;
        }
        tokio::task::yield_now().await;
        let before = batch.len();
        while batch.len() < max {
            match rx.try_recv() {
                Ok(j) => batch.push(j),
                Err(_) => break,
            }
        }
        if batch.len() == before {
            return;
        }
    }
}

const GATHER_YIELDS: usize = 8;

/// `last_used_at` is written at most once per [`TOUCH_EVERY`] for each key or token: a
/// statement fewer in nearly every batch (each one waits for its batch), for a time that is
/// at most that much behind. Every use is still in the log, to the microsecond.
const TOUCH_EVERY: i64 = 1_000_000;
/// Keys and tokens remembered by [`Touched`] before it starts over.
const TOUCHED_MAX: usize = 10_000;

/// When this writer last wrote each key's or token's `last_used_at`.
#[derive(Default)]
struct Touched(std::collections::HashMap<Touch, Timestamp>);

impl Touched {
    fn due(&self, t: &Touch, now: Timestamp) -> bool {
        self.0.get(t).is_none_or(|last| now.0 < last.0 || now.0 - last.0 >= TOUCH_EVERY)
    }

    fn written(&mut self, ts: impl IntoIterator<Item = Touch>, now: Timestamp) {
        if self.0.len() >= TOUCHED_MAX {
            self.0.clear();
        }
        self.0.extend(ts.into_iter().map(|t| (t, now)));
    }
}

async fn commit_batch(
    db: &Db,
    install: &Install,
    clock: &dyn Clock,
    jobs: &mut [Job],
    last_checkpoint: &mut i64,
    every: i64,
    touched: &mut Touched,
) -> Result<i64, StoreError> {
    // Linked on the head this writer wrote last before taking the turn, which other
    // writers wait for: inside it, only a head that moved meanwhile costs hashing.
    let records = jobs.iter_mut().filter_map(|j| j.record.take()).collect();
    let chained = Chained::on(records, db.audit_head_hint());
    let mut tx = db.begin().await?;
    let appended = append_chained(&mut tx, db, chained).await?;
    let ts = clock.now();
    let touches: HashSet<&Touch> =
        jobs.iter().filter_map(|j| j.touch.as_ref()).filter(|t| touched.due(t, ts)).collect();
    for t in &touches {
        match t {
            Touch::KeyVersion { trust_id, version } => {
                sqlx::query("UPDATE key_versions SET last_used_at = $1 WHERE trust_id = $2 AND version = $3 AND (last_used_at IS NULL OR last_used_at < $1)")
                    .bind(ts.0).bind(trust_id.clone()).bind(*version).execute(&mut *tx).await?;
            }
            Touch::AdminToken { id } => {
                sqlx::query("UPDATE admin_tokens SET last_used_at = $1 WHERE id = $2 AND (last_used_at IS NULL OR last_used_at < $1)")
                    .bind(ts.0).bind(id.clone()).execute(&mut *tx).await?;
            }
        }
    }
    let checkpoint = appended.last_seq - *last_checkpoint >= every;
    if checkpoint {
        insert_checkpoint(&mut tx, install, appended.last_seq, appended.last_hash, ts).await?;
    }
    tx.commit().await?;
    touched.written(touches.into_iter().cloned(), ts);
    if checkpoint {
        *last_checkpoint = appended.last_seq;
    }
    Ok(appended.first_seq)
}

async fn insert_checkpoint(
    tx: &mut Tx,
    install: &Install,
    size: i64,
    hash: [u8; 32],
    ts: Timestamp,
) -> Result<(), StoreError> {
    let cp = Checkpoint::sign(&install.id, size, hash, ts, &install.signing);
    sqlx::query("INSERT INTO audit_checkpoints (size, head_hash, ts, signature) VALUES ($1, $2, $3, $4) ON CONFLICT (size) DO NOTHING")
        .bind(cp.size)
        .bind(cp.head_hash.to_vec())
        .bind(cp.ts.0)
        .bind(cp.signature)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Signs a checkpoint of the current head if it has grown by at least `min_new` records.
pub async fn checkpoint_if_new(
    db: &Db,
    install: &Install,
    clock: &dyn Clock,
    last: &mut i64,
    min_new: i64,
) -> Result<Option<i64>, StoreError> {
    let mut tx = db.begin().await?;
    let head = sqlx::query(db.backend.lock_audit_head()).fetch_one(&mut *tx).await?;
    let seq: i64 = head.try_get("seq")?;
    let stored_last = latest_checkpoint_in(&mut tx).await?;
    *last = (*last).max(stored_last);
    if seq - *last < min_new || seq == 0 {
        return Ok(None);
    }
    let hash = hash32(head.try_get("hash")?, "audit_head")?;
    insert_checkpoint(&mut tx, install, seq, hash, clock.now()).await?;
    tx.commit().await?;
    *last = seq;
    Ok(Some(seq))
}

async fn latest_checkpoint_in(tx: &mut Tx) -> Result<i64, StoreError> {
    let row = sqlx::query("SELECT COALESCE(MAX(size), 0) AS n FROM audit_checkpoints").fetch_one(&mut **tx).await?;
    Ok(row.try_get("n")?)
}

async fn latest_checkpoint_size(db: &Db) -> Result<i64, StoreError> {
    let row = sqlx::query("SELECT COALESCE(MAX(size), 0) AS n FROM audit_checkpoints").fetch_one(&db.pool).await?;
    Ok(row.try_get("n")?)
}

/// Filters for reading the log; all optional, combined with AND.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub directory: Option<String>,
    pub trust: Option<String>,
    pub actor: Option<String>,
    pub action: Option<String>,
    pub since: Option<Timestamp>,
    pub until: Option<Timestamp>,
    /// Return records with `seq` greater than this (paging cursor).
    pub after_seq: Option<i64>,
    pub limit: i64,
}

/// One page of records in `seq` order. Every filter is always bound (NULL = no filter),
/// so the statement text is fixed.
pub async fn query(db: &Db, f: &AuditFilter) -> Result<Vec<Record>, StoreError> {
    query_on(&db.pool, f).await
}

async fn query_on<'e, E>(ex: E, f: &AuditFilter) -> Result<Vec<Record>, StoreError>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    let rows = sqlx::query(
        "SELECT seq, ts, actor, action, outcome, directory, trust, key_version, source, request_id, details, prev_hash, hash \
         FROM audit_log WHERE seq > $1 \
         AND ($2 IS NULL OR directory = $2) AND ($3 IS NULL OR trust = $3) AND ($4 IS NULL OR actor = $4) \
         AND ($5 IS NULL OR action = $5) AND ($6 IS NULL OR ts >= $6) AND ($7 IS NULL OR ts < $7) \
         ORDER BY seq LIMIT $8",
    )
    .bind(f.after_seq.unwrap_or(0))
    .bind(f.directory.clone())
    .bind(f.trust.clone())
    .bind(f.actor.clone())
    .bind(f.action.clone())
    .bind(f.since.map(|t| t.0))
    .bind(f.until.map(|t| t.0))
    .bind(f.limit.clamp(1, 10_000))
    .fetch_all(ex)
    .await?;
    rows.iter().map(record_from_row).collect()
}

fn record_from_row(r: &AnyRow) -> Result<Record, StoreError> {
    let outcome: String = r.try_get("outcome")?;
    Ok(Record {
        seq: r.try_get("seq")?,
        ts: Timestamp(r.try_get("ts")?),
        actor: r.try_get("actor")?,
        action: r.try_get("action")?,
        outcome: Outcome::parse(&outcome).ok_or_else(|| StoreError::Corrupt("audit_log.outcome".into()))?,
        directory: r.try_get("directory")?,
        trust: r.try_get("trust")?,
        key_version: r.try_get("key_version")?,
        source: r.try_get("source")?,
        request_id: r.try_get("request_id")?,
        details: r.try_get("details")?,
        prev_hash: hash32(r.try_get("prev_hash")?, "audit_log.prev_hash")?,
        hash: hash32(r.try_get("hash")?, "audit_log.hash")?,
    })
}

fn hash32(v: Vec<u8>, what: &str) -> Result<[u8; 32], StoreError> {
    v.try_into().map_err(|_| StoreError::Corrupt(what.into()))
}

pub async fn checkpoints(db: &Db) -> Result<Vec<Checkpoint>, StoreError> {
    checkpoints_on(&db.pool).await
}

async fn checkpoints_on<'e, E>(ex: E) -> Result<Vec<Checkpoint>, StoreError>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    let rows =
        sqlx::query("SELECT size, head_hash, ts, signature FROM audit_checkpoints ORDER BY size").fetch_all(ex).await?;
    rows.iter()
        .map(|r| {
            Ok(Checkpoint {
                size: r.try_get("size")?,
                head_hash: hash32(r.try_get("head_hash")?, "audit_checkpoints.head_hash")?,
                ts: Timestamp(r.try_get("ts")?),
                signature: r.try_get("signature")?,
            })
        })
        .collect()
}

pub async fn head(db: &Db) -> Result<(i64, [u8; 32]), StoreError> {
    head_on(&db.pool).await
}

async fn head_on<'e, E>(ex: E) -> Result<(i64, [u8; 32]), StoreError>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    let r = sqlx::query("SELECT seq, hash FROM audit_head WHERE id = 1").fetch_one(ex).await?;
    Ok((r.try_get("seq")?, hash32(r.try_get("hash")?, "audit_head")?))
}

/// Verifies the whole chain and every checkpoint, streaming in pages. `Ok(Err(_))` is a
/// verification failure naming the first bad record.
///
/// Everything is read in one snapshot transaction: checkpoints, records and the head are
/// a consistent view even while writers keep appending (read separately, records
/// committed between the last page and the head would look like a truncation).
pub async fn verify(
    db: &Db,
    origin: &str,
    public_key: &[u8],
) -> Result<Result<VerifyReport, fedkey_audit::VerifyError>, StoreError> {
    let mut tx = db.begin_snapshot().await?;
    let mut v = match Verifier::new(origin, public_key, checkpoints_on(&mut *tx).await?) {
        Ok(v) => v,
        Err(e) => return Ok(Err(e)),
    };
    let mut after = 0;
    loop {
        // Paging by seq; the verifier notices gaps, duplicates and reordering.
        let page =
            query_on(&mut *tx, &AuditFilter { after_seq: Some(after), limit: 5000, ..Default::default() }).await?;
        if page.is_empty() {
            break;
        }
        for r in &page {
            if let Err(e) = v.push(r) {
                return Ok(Err(e));
            }
            after = r.seq;
        }
    }
    let head = head_on(&mut *tx).await?;
    tx.rollback().await?;
    Ok(v.finish(Some(head)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_statements_fit_the_parameter_limits_in_few_shapes() {
        for backend in [crate::Backend::Sqlite, crate::Backend::Postgres] {
            let max = max_insert_rows(backend);
            assert!(max.is_power_of_two() && max * AUDIT_COLUMNS <= max_params(backend));
            assert!(2 * max * AUDIT_COLUMNS > max_params(backend), "{backend:?}: the largest power of two that fits");
            let sql = insert_sql(backend, max);
            assert!(std::ptr::eq(sql, insert_sql(backend, max)), "cached");
            let params =
                if backend == crate::Backend::Sqlite { sql.matches('?').count() } else { sql.matches('$').count() };
            assert_eq!(params, max * AUDIT_COLUMNS);
        }
        assert_eq!((max_insert_rows(crate::Backend::Sqlite), max_insert_rows(crate::Backend::Postgres)), (2048, 4096));
        let sql = insert_sql(crate::Backend::Sqlite, 2);
        assert!(!sql.contains('$') && sql.ends_with("?)) WHERE column1 IS NOT NULL"), "{sql}");
        let sql = insert_sql(crate::Backend::Postgres, 2);
        assert!(sql.contains("($14, $15, $16, $17, $18, $19, $20, $21, $22, $23, $24, $25, $26)) AS v (seq,"), "{sql}");
        assert!(sql.ends_with("WHERE v.seq IS NOT NULL"), "{sql}");
    }

    #[test]
    fn records_are_linked_again_only_when_the_head_moved() {
        let ev = |a: &str| Event::new(Timestamp(1), "t", a, Outcome::Success).seal();
        let head = (5, [1; 32]);
        let mut c = Chained::on(vec![ev("a"), ev("b")], Some(head));
        let first = c.appended;
        assert_eq!((first.first_seq, first.last_seq), (6, 7));
        assert_eq!(c.records[1].record.prev_hash, c.records[0].record.hash);
        c.link(head);
        assert_eq!(c.appended, first);
        c.link((9, [2; 32]));
        assert_eq!((c.appended.first_seq, c.appended.last_seq), (10, 11));
        assert_eq!(c.records[0].record.prev_hash, [2; 32]);
        assert_eq!(c.appended.last_hash, c.records[1].record.compute_hash());
        let unlinked = Chained::on(vec![ev("a")], None);
        assert_eq!(unlinked.base, None);
    }
}
