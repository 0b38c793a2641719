//! Audit storage: appending inside a caller's transaction, the group-commit writer
//! for high-volume records (authentications), checkpoints, queries and verification.
//!
//! Both paths lock the chain head (`audit_head`) inside their transaction, so records
//! from several writers — or several nodes on PostgreSQL — form one chain.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use fedkey_audit::{Checkpoint, Event, Outcome, Record, Verifier, VerifyReport};
use fedkey_core::{Clock, Timestamp};
use sqlx::{Row, any::AnyRow};
use tokio::sync::{mpsc, oneshot};

use crate::db::Tx;
use crate::install::Install;
use crate::{Db, StoreError};

/// Appends `events` to the chain inside `tx`. Nothing is durable until the caller
/// commits, and the caller's change commits only with its audit records.
pub async fn append_in_tx(tx: &mut Tx, db: &Db, events: Vec<Event>) -> Result<Appended, StoreError> {
    let head = read_head(tx, db).await?;
    let records = chain(events, head);
    write_records(tx, db, records, &Touches::default()).await
}

/// The chain head inside `tx`, locked against other writers where the backend needs it.
async fn read_head(tx: &mut Tx, db: &Db) -> Result<(i64, [u8; 32]), StoreError> {
    let head = sqlx::query(db.backend.lock_audit_head()).fetch_one(&mut **tx).await?;
    Ok((head.try_get("seq")?, hash32(head.try_get("hash")?, "audit_head")?))
}

/// Seals `events` as the records following `head`.
fn chain(events: Vec<Event>, head: (i64, [u8; 32])) -> Vec<Record> {
    let (mut seq, mut prev) = head;
    events
        .into_iter()
        .map(|e| {
            seq += 1;
            let r = e.into_record(seq, prev);
            prev = r.hash;
            r
        })
        .collect()
}

/// Re-seals records after a different head (the head they were chained to was stale).
fn rechain(records: &mut [Record], head: (i64, [u8; 32])) {
    let (mut seq, mut prev) = head;
    for r in records {
        seq += 1;
        r.seq = seq;
        r.prev_hash = prev;
        r.hash = r.compute_hash();
        prev = r.hash;
    }
}

/// Keys and tokens whose `last_used_at` moves with an audit batch.
#[derive(Debug, Default)]
struct Touches {
    ts: i64,
    keys: Vec<(String, i64)>,
    tokens: Vec<String>,
}

/// Writes chained records, moves the head to the last of them and applies `touches`.
///
/// SQLite: one round trip — the records travel as one JSON array, so the statement text
/// is the same for any batch (one prepared statement, whatever the batch size). The
/// round trips to SQLite's worker thread, not the rows, were the cost of a batch.
/// PostgreSQL: multi-row INSERTs, then the head and touch updates.
async fn write_records(tx: &mut Tx, db: &Db, records: Vec<Record>, touches: &Touches) -> Result<Appended, StoreError> {
    let Some(last) = records.last() else {
        let (seq, hash) = read_head(tx, db).await?;
        return Ok(Appended { first_seq: seq, last_seq: seq, last_hash: hash });
    };
    let appended = Appended { first_seq: records[0].seq, last_seq: last.seq, last_hash: last.hash };
    match db.backend {
        crate::Backend::Sqlite => {
            write_records_json(tx, &records, touches).await?;
        }
        crate::Backend::Postgres => {
            insert_rows(tx, db, records).await?;
            sqlx::query("UPDATE audit_head SET seq = $1, hash = $2 WHERE id = 1")
                .bind(appended.last_seq)
                .bind(appended.last_hash.to_vec())
                .execute(&mut **tx)
                .await?;
            for (trust_id, version) in &touches.keys {
                sqlx::query("UPDATE key_versions SET last_used_at = $1 WHERE trust_id = $2 AND version = $3 AND (last_used_at IS NULL OR last_used_at < $1)")
                    .bind(touches.ts).bind(trust_id.clone()).bind(*version).execute(&mut **tx).await?;
            }
            for id in &touches.tokens {
                sqlx::query("UPDATE admin_tokens SET last_used_at = $1 WHERE id = $2 AND (last_used_at IS NULL OR last_used_at < $1)")
                    .bind(touches.ts).bind(id.clone()).execute(&mut **tx).await?;
            }
        }
    }
    Ok(appended)
}

/// SQLite: records, head and touches in one round trip (see [`SQLITE_APPEND`]).
async fn write_records_json(tx: &mut Tx, records: &[Record], touches: &Touches) -> Result<Appended, StoreError> {
    let (Some(first), Some(last)) = (records.first(), records.last()) else {
        return Err(StoreError::Config("an audit batch without records".into()));
    };
    let keys: Vec<(&str, i64)> = touches.keys.iter().map(|(t, v)| (t.as_str(), *v)).collect();
    sqlx::query(SQLITE_APPEND)
        .bind(records_json(records))
        .bind(last.seq)
        .bind(last.hash.to_vec())
        .bind(touches.ts)
        .bind(serde_json::to_string(&keys).unwrap_or_default())
        .bind(touches.ts)
        .bind(touches.ts)
        .bind(serde_json::to_string(&touches.tokens).unwrap_or_default())
        .bind(touches.ts)
        .execute(&mut **tx)
        .await?;
    Ok(Appended { first_seq: first.seq, last_seq: last.seq, last_hash: last.hash })
}

/// Records, head and touches in one statement list (anonymous parameters run on across
/// the statements). The INSERT comes first: if it fails (a stale head: the `seq` is
/// taken), nothing after it has run.
const SQLITE_APPEND: &str = "\
INSERT INTO audit_log (seq, ts, actor, action, outcome, directory, trust, key_version, source, request_id, details, prev_hash, hash) \
SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3, value ->> 4, value ->> 5, value ->> 6, value ->> 7, value ->> 8, \
value ->> 9, value ->> 10, unhex(value ->> 11), unhex(value ->> 12) FROM json_each(?) ORDER BY key; \
UPDATE audit_head SET seq = ?, hash = ? WHERE id = 1; \
UPDATE key_versions SET last_used_at = ? WHERE (trust_id, version) IN (SELECT value ->> 0, value ->> 1 FROM json_each(?)) \
AND (last_used_at IS NULL OR last_used_at < ?); \
UPDATE admin_tokens SET last_used_at = ? WHERE id IN (SELECT value FROM json_each(?)) AND (last_used_at IS NULL OR last_used_at < ?)";

/// `[[seq, ts, actor, …, prev_hash_hex, hash_hex], …]` in the column order of [`SQLITE_APPEND`].
fn records_json(records: &[Record]) -> String {
    let rows: Vec<serde_json::Value> = records
        .iter()
        .map(|r| {
            serde_json::json!([
                r.seq,
                r.ts.0,
                r.actor,
                r.action,
                r.outcome.as_str(),
                r.directory,
                r.trust,
                r.key_version,
                r.source,
                r.request_id,
                r.details,
                hex::encode(r.prev_hash),
                hex::encode(r.hash)
            ])
        })
        .collect();
    serde_json::Value::Array(rows).to_string()
}

/// Multi-row INSERTs: one round trip per chunk instead of per record. Chunk sizes are
/// powers of two so only a handful of distinct statements reach the prepared-statement
/// cache. Records are moved into the statements, not cloned.
async fn insert_rows(tx: &mut Tx, db: &Db, records: Vec<Record>) -> Result<(), StoreError> {
    let mut rest = records.into_iter();
    while rest.len() > 0 {
        let n = chunk_len(rest.len());
        let mut q = sqlx::query(sqlx::AssertSqlSafe(insert_sql(db.backend, n)));
        for r in rest.by_ref().take(n) {
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
        q.execute(&mut **tx).await?;
    }
    Ok(())
}

/// Where an append landed in the chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    pub first_seq: i64,
    pub last_seq: i64,
    pub last_hash: [u8; 32],
}

const AUDIT_COLUMNS: usize = 13;
const MAX_INSERT_ROWS: usize = 64;

/// The largest power of two not above `remaining` (capped at [`MAX_INSERT_ROWS`]).
fn chunk_len(remaining: usize) -> usize {
    let n = remaining.min(MAX_INSERT_ROWS);
    if n == 0 { 0 } else { 1 << n.ilog2() }
}

fn insert_sql(backend: crate::Backend, rows: usize) -> String {
    use std::fmt::Write;
    let mut sql = String::from(
        "INSERT INTO audit_log (seq, ts, actor, action, outcome, directory, trust, key_version, source, request_id, details, prev_hash, hash) VALUES ",
    );
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
    sql
}

/// Something to mark as used when the audit batch that records its use commits.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Touch {
    KeyVersion { trust_id: String, version: i64 },
    AdminToken { id: String },
}

// Nearly every job is a record; boxing it would cost an allocation per record.
#[allow(clippy::large_enum_variant)]
enum Job {
    Record(Pending),
    /// Time for a periodic checkpoint (sent by a ticker on the runtime).
    Tick,
}

struct Pending {
    /// Taken by the writer when the batch is appended.
    event: Option<Event>,
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
    /// Starts the writer on a thread of its own (see [`run_on_own_thread`]) and a ticker
    /// for periodic checkpoints on the runtime. Must be called inside a Tokio runtime.
    pub fn spawn(db: Db, install: Arc<Install>, clock: Arc<dyn Clock>, cfg: WriterConfig) -> AuditWriter {
        let (tx, rx) = mpsc::channel(cfg.max_batch * 8);
        run_on_own_thread(Box::pin(run_writer(db, install, clock, cfg, rx)));
        tokio::spawn(tick(tx.downgrade(), cfg.checkpoint_interval));
        AuditWriter { tx }
    }

    /// Records `event` durably; returns its sequence number.
    pub async fn record(&self, event: Event, touch: Option<Touch>) -> Result<i64, StoreError> {
        let (done, wait) = oneshot::channel();
        let unavailable = |m: String| StoreError::AuditUnavailable(Box::new(StoreError::Config(m)));
        self.tx
            .send(Job::Record(Pending { event: Some(event), touch, done }))
            .await
            .map_err(|_| unavailable("audit writer stopped".into()))?;
        match wait.await {
            Ok(Ok(seq)) => Ok(seq),
            Ok(Err(m)) => Err(unavailable(m)),
            Err(_) => Err(unavailable("audit writer stopped".into())),
        }
    }
}

type Writer = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

/// Runs the writer's loop on a dedicated OS thread, inside the runtime's context (its I/O
/// and timers are still driven by the runtime's workers).
///
/// A batch takes several round trips to the database. A task on the shared runtime is
/// queued behind every runnable request after each of them, so under load the batch
/// cycle — which every authenticated request waits for — grew with the number of
/// clients; a thread of its own is woken as soon as a round trip completes.
fn run_on_own_thread(writer: Writer) {
    let handle = tokio::runtime::Handle::current();
    let cell = Arc::new(std::sync::Mutex::new(Some(writer)));
    let take = |c: &std::sync::Mutex<Option<Writer>>| c.lock().ok().and_then(|mut w| w.take());
    let on_thread = cell.clone();
    let started = std::thread::Builder::new().name("fedkey-audit".into()).spawn(move || {
        if let Some(w) = take(&on_thread) {
            handle.block_on(w);
        }
    });
    if let Err(e) = started {
        tracing::warn!(error = %e, "no thread for the audit writer; running it as a task");
        if let Some(w) = take(&cell) {
            tokio::spawn(w);
        }
    }
}

/// Asks the writer for a periodic checkpoint. The timer lives here, on the runtime, so
/// the writer's thread waits on nothing but its channel and the database; the ticker
/// holds no sender, so it stops with the writer.
async fn tick(writer: mpsc::WeakSender<Job>, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(tx) = writer.upgrade() else { return };
        if tx.send(Job::Tick).await.is_err() {
            return;
        }
    }
}

async fn run_writer(
    db: Db,
    install: Arc<Install>,
    clock: Arc<dyn Clock>,
    cfg: WriterConfig,
    mut rx: mpsc::Receiver<Job>,
) {
    let mut state = WriterState { last_checkpoint: latest_checkpoint_size(&db).await.unwrap_or(0), head: None };
    let mut inbox: Vec<Job> = Vec::with_capacity(cfg.max_batch);
    loop {
        if rx.recv_many(&mut inbox, cfg.max_batch).await == 0 {
            return;
        }
        // No gathering pause: records that arrive while a batch commits form the next one.
        let mut jobs = Vec::with_capacity(inbox.len());
        let mut ticked = false;
        for j in inbox.drain(..) {
            match j {
                Job::Record(p) => jobs.push(p),
                Job::Tick => ticked = true,
            }
        }
        if !jobs.is_empty() {
            metrics::histogram!("fedkey_audit_batch_size").record(jobs.len() as f64);
            let result = commit_batch(&db, &install, clock.as_ref(), &mut jobs, &mut state, cfg.checkpoint_every).await;
            match result {
                Ok(first_seq) => {
                    metrics::counter!("fedkey_audit_records_total").increment(jobs.len() as u64);
                    for (i, j) in jobs.into_iter().enumerate() {
                        let _ = j.done.send(Ok(first_seq + i as i64));
                    }
                }
                Err(e) => {
                    metrics::counter!("fedkey_audit_write_failures_total").increment(1);
                    tracing::error!(error = %e, detail = ?e, batch = jobs.len(), "audit batch could not be committed");
                    for j in jobs {
                        let _ = j.done.send(Err(e.to_string()));
                    }
                }
            }
        }
        if ticked && let Err(e) = checkpoint_if_new(&db, &install, clock.as_ref(), &mut state.last_checkpoint, 1).await
        {
            tracing::warn!(error = %e, "periodic audit checkpoint failed");
        }
    }
}

async fn commit_batch(
    db: &Db,
    install: &Install,
    clock: &dyn Clock,
    jobs: &mut [Pending],
    state: &mut WriterState,
    every: i64,
) -> Result<i64, StoreError> {
    // Taken, not copied: any error below leaves no guess behind (the batch may have been
    // rolled back, and the head with it).
    let guess = state.head.take().filter(|_| db.backend.statement_errors_keep_transaction());
    let mut tx = db.begin().await?;
    let events = jobs.iter_mut().filter_map(|j| j.event.take()).collect();
    let ts = clock.now();
    let touches = touches_of(jobs, ts);
    let appended = match guess {
        // The head as this writer left it: right unless another writer appended since, and
        // then the first `seq` is taken and the INSERT fails before anything is written.
        Some(head) => {
            let mut records = chain(events, head);
            match write_records_json(&mut tx, &records, &touches).await {
                Ok(a) => a,
                Err(e) if e.is_unique_violation() => {
                    let head = read_head(&mut tx, db).await?;
                    rechain(&mut records, head);
                    write_records(&mut tx, db, records, &touches).await?
                }
                Err(e) => return Err(e),
            }
        }
        None => {
            let head = read_head(&mut tx, db).await?;
            write_records(&mut tx, db, chain(events, head), &touches).await?
        }
    };
    let checkpoint = appended.last_seq - state.last_checkpoint >= every;
    if checkpoint {
        insert_checkpoint(&mut tx, install, appended.last_seq, appended.last_hash, ts).await?;
    }
    tx.commit().await?;
    if checkpoint {
        state.last_checkpoint = appended.last_seq;
    }
    state.head = Some((appended.last_seq, appended.last_hash));
    Ok(appended.first_seq)
}

/// What the writer remembers between batches.
struct WriterState {
    last_checkpoint: i64,
    /// The chain head after this writer's last committed batch (a guess: other writers
    /// may have appended since).
    head: Option<(i64, [u8; 32])>,
}

/// The distinct keys and tokens a batch marks as used.
fn touches_of(jobs: &[Pending], ts: Timestamp) -> Touches {
    let distinct: HashSet<&Touch> = jobs.iter().filter_map(|j| j.touch.as_ref()).collect();
    let mut t = Touches { ts: ts.0, ..Default::default() };
    for touch in distinct {
        match touch {
            Touch::KeyVersion { trust_id, version } => t.keys.push((trust_id.clone(), *version)),
            Touch::AdminToken { id } => t.tokens.push(id.clone()),
        }
    }
    t
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
    fn insert_chunks_cover_every_record_with_few_statement_shapes() {
        let mut shapes = HashSet::new();
        for total in 0..=2048 {
            let mut rest = total;
            while rest > 0 {
                let n = chunk_len(rest);
                assert!(n.is_power_of_two() && n <= rest && n <= MAX_INSERT_ROWS, "{total}: {n}");
                shapes.insert(n);
                rest -= n;
            }
        }
        assert_eq!(shapes.len(), 7);
        let sql = insert_sql(crate::Backend::Sqlite, 2);
        assert_eq!(sql.matches('?').count(), 2 * AUDIT_COLUMNS);
        assert!(!sql.contains('$'));
        let sql = insert_sql(crate::Backend::Postgres, 2);
        assert_eq!(sql.matches('$').count(), 2 * AUDIT_COLUMNS);
        assert!(sql.ends_with("($14, $15, $16, $17, $18, $19, $20, $21, $22, $23, $24, $25, $26)"), "{sql}");
        const { assert!(MAX_INSERT_ROWS * AUDIT_COLUMNS <= 999) };
    }
}
