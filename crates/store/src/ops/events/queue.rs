//! The SET queue: rows put there by the outbox fan-out (or a stream's own events), taken
//! by poll receivers (acknowledged, or refused with an error) and by push workers (leased,
//! then delivered, retried or refused).

use std::collections::HashMap;
use std::time::Duration;

use fedkey_audit::Outcome;
use fedkey_core::Timestamp;
use serde::Serialize;
use serde_json::{Value, json};
use sqlx::{Row, any::AnyRow};

use super::{Delivery, OutboxChange, StreamKind, StreamStatus, events_for};
use crate::StoreError;
use crate::db::Tx;
use crate::ops::outbox::clip;
use crate::ops::{Actor, Store};

/// One SET waiting for its receiver.
#[derive(Debug, Clone, Serialize)]
pub struct QueuedEvent {
    #[serde(skip)]
    pub seq: i64,
    pub stream_id: String,
    pub jti: String,
    pub event_type: String,
    /// The RFC 9493 `sub_id` of the SET.
    pub subject: Value,
    /// The event's members (`events: {event_type: payload}`).
    pub payload: Value,
    pub txn: Option<String>,
    /// The event time: the SET's `iat`.
    #[serde(serialize_with = "fedkey_core::clock::rfc3339")]
    pub created_at: Timestamp,
    pub attempts: i64,
    pub last_error: Option<String>,
}

/// Most poll errors or acknowledgements one request may carry, and most SETs returned.
pub const MAX_POLL_ITEMS: usize = 1000;

const EVENT_COLUMNS: &str = "seq, stream_id, jti, event_type, subject, payload, txn, created_at, attempts, last_error";

/// A stream as the fan-out needs it.
pub(crate) struct FanStream {
    id: String,
    kind: StreamKind,
    events: Vec<String>,
}

impl Store {
    /// Queues the SETs of one outbox row, inside [`Store::fan_out`]'s transaction. `cache`
    /// holds each directory's receiving streams (enabled or paused) once per fan-out.
    pub(crate) async fn queue_change_events(
        &self,
        tx: &mut Tx,
        cache: &mut HashMap<String, Vec<FanStream>>,
        directory_id: &str,
        seq: i64,
        change: &OutboxChange,
    ) -> Result<(), StoreError> {
        if !cache.contains_key(directory_id) {
            let rows = sqlx::query(
                "SELECT id, kind, events_requested FROM event_streams WHERE directory_id = $1 \
                 AND status IN ('enabled', 'paused') ORDER BY id",
            )
            .bind(directory_id.to_owned())
            .fetch_all(&mut **tx)
            .await?;
            let streams = rows.iter().map(fan_stream).collect::<Result<Vec<_>, _>>()?;
            cache.insert(directory_id.to_owned(), streams);
        }
        let streams = cache.get(directory_id).map(Vec::as_slice).unwrap_or_default();
        let txn = format!("{directory_id}:{seq}");
        for s in streams {
            for e in events_for(s.kind, change) {
                if s.events.iter().any(|r| r == e.event_type) {
                    let now = self.now().0;
                    insert_event(tx, &s.id, e.event_type, &e.subject, &e.payload, Some(&txn), change.at, now).await?;
                }
            }
        }
        Ok(())
    }

    /// Queues one SET on a stream outside the outbox (e.g. an SSF verification event);
    /// returns its `jti`. Disabled streams take nothing.
    pub async fn enqueue_stream_event(
        &self,
        stream_id: &str,
        event_type: &str,
        subject: Value,
        payload: Value,
    ) -> Result<String, StoreError> {
        let s = self
            .event_stream(stream_id)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("event stream {stream_id}")))?;
        if s.status == StreamStatus::Disabled {
            return Err(StoreError::InvalidState(format!("event stream {stream_id} is disabled")));
        }
        let mut tx = self.db.begin().await?;
        let now = self.now().0;
        let jti = insert_event(&mut tx, stream_id, event_type, &subject, &payload, None, now, now).await?;
        tx.commit().await?;
        Ok(jti)
    }

    /// RFC 8936 poll: deletes the acknowledged SETs and those the receiver refused
    /// (`errors`: `(jti, err, description)`, each audited as `events.set_error`), then
    /// returns up to `max` pending SETs oldest first and whether more are waiting. A
    /// stream that is not enabled returns none (a paused one keeps them). Unknown jtis
    /// are ignored (an acknowledgement may be repeated).
    pub async fn poll_stream_events(
        &self,
        stream_id: &str,
        max: usize,
        ack: &[String],
        errors: &[(String, String, String)],
    ) -> Result<(Vec<QueuedEvent>, bool), StoreError> {
        if ack.len() > MAX_POLL_ITEMS || errors.len() > MAX_POLL_ITEMS {
            return Err(StoreError::Invalid(format!("at most {MAX_POLL_ITEMS} acknowledgements and errors per poll")));
        }
        let s = self
            .event_stream(stream_id)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("event stream {stream_id}")))?;
        let actor = Actor::system("events");
        let mut tx = self.db.begin().await?;
        let mut audit = Vec::new();
        for jti in ack {
            delete_event(&mut tx, stream_id, jti).await?;
        }
        for (jti, err, description) in errors {
            if delete_event(&mut tx, stream_id, jti).await? > 0 {
                audit.push(self.event(&actor, "events.set_error", Outcome::Failure).directory(&s.directory).details(
                    json!({"stream": stream_id, "jti": clip(jti, 100), "err": clip(err, 100), "description": clip(description, 500)}),
                ));
            }
        }
        let delivered = !ack.is_empty() || !errors.is_empty();
        if delivered {
            sqlx::query("UPDATE event_streams SET last_delivered_at = $1 WHERE id = $2")
                .bind(self.now().0)
                .bind(stream_id.to_owned())
                .execute(&mut *tx)
                .await?;
        }
        let (events, more) = if s.status == StreamStatus::Enabled && max > 0 {
            let sql = format!("SELECT {EVENT_COLUMNS} FROM security_events WHERE stream_id = $1 ORDER BY seq LIMIT $2");
            let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(stream_id.to_owned())
                .bind(i64::try_from(max.min(MAX_POLL_ITEMS)).unwrap_or(1) + 1)
                .fetch_all(&mut *tx)
                .await?;
            let mut events = rows.iter().map(event_from_row).collect::<Result<Vec<_>, _>>()?;
            let more = events.len() > max.min(MAX_POLL_ITEMS);
            events.truncate(max.min(MAX_POLL_ITEMS));
            (events, more)
        } else {
            (Vec::new(), false)
        };
        if audit.is_empty() {
            tx.commit().await?;
        } else {
            self.commit_with_events(tx, &actor, audit).await?;
        }
        Ok((events, more))
    }

    /// Leases up to `limit` due SETs of enabled push streams for `owner` until now +
    /// `lease`, oldest first. A lease that ran out (a node that died mid-push) is taken over.
    pub async fn claim_push_events(
        &self,
        owner: &str,
        limit: i64,
        lease: Duration,
    ) -> Result<Vec<QueuedEvent>, StoreError> {
        let now = self.now().0;
        let until = now.saturating_add(i64::try_from(lease.as_micros()).unwrap_or(i64::MAX));
        let mut tx = self.db.begin().await?;
        let sql = format!(
            "SELECT {EVENT_COLUMNS} FROM security_events WHERE next_attempt_at <= $1 \
             AND (lease_expires_at IS NULL OR lease_expires_at <= $1) \
             AND stream_id IN (SELECT s.id FROM event_streams s LEFT JOIN trusts t ON t.id = s.receiver_trust_id \
             WHERE s.status = 'enabled' AND s.delivery = 'push' AND (t.id IS NULL OR t.status = 'active')) \
             ORDER BY seq LIMIT $2{}",
            self.db.backend.skip_locked()
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(now).bind(limit).fetch_all(&mut *tx).await?;
        let events = rows.iter().map(event_from_row).collect::<Result<Vec<_>, _>>()?;
        for e in &events {
            sqlx::query("UPDATE security_events SET lease_owner = $1, lease_expires_at = $2 WHERE seq = $3")
                .bind(owner.to_owned())
                .bind(until)
                .bind(e.seq)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(events)
    }

    /// The receiver accepted `e` (HTTP 202): the SET is gone from the queue and the
    /// stream's failure count resets. Returns false when `owner` no longer held the lease
    /// (another node took it over; the receiver may see the SET twice, which `jti` dedupes).
    pub async fn finish_push_events(&self, owner: &str, e: &QueuedEvent) -> Result<bool, StoreError> {
        let mut tx = self.db.begin().await?;
        let n = sqlx::query("DELETE FROM security_events WHERE seq = $1 AND lease_owner = $2")
            .bind(e.seq)
            .bind(owner.to_owned())
            .execute(&mut *tx)
            .await?
            .rows_affected();
        sqlx::query(
            "UPDATE event_streams SET consecutive_failures = 0, last_error = NULL, last_delivered_at = $1 WHERE id = $2",
        )
        .bind(self.now().0)
        .bind(e.stream_id.clone())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(n > 0)
    }

    /// A push of `e` failed for now: it is tried again at `retry_at`, and the stream
    /// counts the failure and shows `error`.
    pub async fn fail_push_events(
        &self,
        owner: &str,
        e: &QueuedEvent,
        retry_at: Timestamp,
        error: &str,
    ) -> Result<(), StoreError> {
        let error = clip(error, 500);
        let mut tx = self.db.begin().await?;
        sqlx::query(
            "UPDATE security_events SET attempts = attempts + 1, next_attempt_at = $1, last_error = $2, \
             lease_owner = NULL, lease_expires_at = NULL WHERE seq = $3 AND lease_owner = $4",
        )
        .bind(retry_at.0)
        .bind(error.clone())
        .bind(e.seq)
        .bind(owner.to_owned())
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "UPDATE event_streams SET consecutive_failures = consecutive_failures + 1, last_error = $1 WHERE id = $2",
        )
        .bind(error)
        .bind(e.stream_id.clone())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The receiver refused `e` for good (RFC 8935 §2.3 error): the SET is dropped, with
    /// an `events.set_error` audit record saying why.
    pub async fn refuse_push_event(
        &self,
        owner: &str,
        e: &QueuedEvent,
        err: &str,
        description: &str,
    ) -> Result<(), StoreError> {
        let directory = sqlx::query(
            "SELECT d.name FROM event_streams s JOIN directories d ON d.id = s.directory_id WHERE s.id = $1",
        )
        .bind(e.stream_id.clone())
        .fetch_optional(self.db.pool())
        .await?
        .map(|r| r.try_get::<String, _>("name"))
        .transpose()?;
        let actor = Actor::system("events");
        let mut tx = self.db.begin().await?;
        sqlx::query("DELETE FROM security_events WHERE seq = $1 AND lease_owner = $2")
            .bind(e.seq)
            .bind(owner.to_owned())
            .execute(&mut *tx)
            .await?;
        sqlx::query("UPDATE event_streams SET last_error = $1 WHERE id = $2")
            .bind(clip(&format!("SET {} refused: {err}", e.jti), 500))
            .bind(e.stream_id.clone())
            .execute(&mut *tx)
            .await?;
        let mut ev = self.event(&actor, "events.set_error", Outcome::Failure).details(json!({
            "stream": e.stream_id, "jti": e.jti, "event_type": e.event_type, "err": clip(err, 100),
            "description": clip(description, 500), "delivery": Delivery::Push.as_str(),
        }));
        if let Some(d) = directory {
            ev = ev.directory(d);
        }
        self.commit_with(tx, &actor, ev).await
    }

    /// SETs queued on a stream, oldest first (for the admin API and tests).
    pub async fn stream_events(&self, stream_id: &str, limit: i64) -> Result<Vec<QueuedEvent>, StoreError> {
        let sql = format!("SELECT {EVENT_COLUMNS} FROM security_events WHERE stream_id = $1 ORDER BY seq LIMIT $2");
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(stream_id.to_owned())
            .bind(limit)
            .fetch_all(self.db.pool())
            .await?;
        rows.iter().map(event_from_row).collect()
    }
}

/// Queues one SET: `at` is its event time (`iat`), `due` when it may first be pushed.
#[allow(clippy::too_many_arguments)]
async fn insert_event(
    tx: &mut Tx,
    stream_id: &str,
    event_type: &str,
    subject: &Value,
    payload: &Value,
    txn: Option<&str>,
    at: i64,
    due: i64,
) -> Result<String, StoreError> {
    let jti = uuid::Uuid::new_v4().simple().to_string();
    sqlx::query(
        "INSERT INTO security_events (stream_id, jti, event_type, subject, payload, txn, created_at, attempts, next_attempt_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, 0, $8)",
    )
    .bind(stream_id.to_owned())
    .bind(jti.clone())
    .bind(event_type.to_owned())
    .bind(subject.to_string())
    .bind(payload.to_string())
    .bind(txn.map(str::to_owned))
    .bind(at)
    .bind(due)
    .execute(&mut **tx)
    .await?;
    Ok(jti)
}

async fn delete_event(tx: &mut Tx, stream_id: &str, jti: &str) -> Result<u64, StoreError> {
    Ok(sqlx::query("DELETE FROM security_events WHERE stream_id = $1 AND jti = $2")
        .bind(stream_id.to_owned())
        .bind(jti.to_owned())
        .execute(&mut **tx)
        .await?
        .rows_affected())
}

fn fan_stream(r: &AnyRow) -> Result<FanStream, StoreError> {
    let events: String = r.try_get("events_requested")?;
    Ok(FanStream {
        id: r.try_get("id")?,
        kind: StreamKind::parse(&r.try_get::<String, _>("kind")?)?,
        events: serde_json::from_str(&events)
            .map_err(|_| StoreError::Corrupt("event_streams.events_requested".into()))?,
    })
}

fn event_from_row(r: &AnyRow) -> Result<QueuedEvent, StoreError> {
    let corrupt = |c: &str| StoreError::Corrupt(format!("security_events.{c}"));
    let subject: String = r.try_get("subject")?;
    let payload: String = r.try_get("payload")?;
    Ok(QueuedEvent {
        seq: r.try_get("seq")?,
        stream_id: r.try_get("stream_id")?,
        jti: r.try_get("jti")?,
        event_type: r.try_get("event_type")?,
        subject: serde_json::from_str(&subject).map_err(|_| corrupt("subject"))?,
        payload: serde_json::from_str(&payload).map_err(|_| corrupt("payload"))?,
        txn: r.try_get("txn")?,
        created_at: Timestamp(r.try_get("created_at")?),
        attempts: r.try_get("attempts")?,
        last_error: r.try_get("last_error")?,
    })
}
