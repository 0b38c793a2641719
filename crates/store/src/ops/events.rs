//! Security event streams: who receives a directory's security events (RFC 8417 SETs),
//! and the queue of SETs not yet delivered. Two kinds of stream share the pipeline:
//! `scim` (RFC 9967 provisioning events, receivers registered by an admin) and `ssf`
//! (OpenID SSF 1.0 CAEP/RISC events, streams created by a receiver through its trust).
//!
//! Tables (migration 0021):
//!
//! ```text
//! sync_outbox + events TEXT NULL       -- JSON array of kinds (see map::write_kinds); NULL: no event
//!             + attributes TEXT NULL   -- JSON array of changed attribute names
//!             + external_id TEXT NULL, version BIGINT NULL  -- the resource after the write
//! event_streams(id TEXT PK (uuid), directory_id TEXT NOT NULL -> directories,
//!   kind TEXT NOT NULL ('scim' | 'ssf'), receiver_trust_id TEXT NULL -> trusts ON DELETE CASCADE,
//!   delivery TEXT NOT NULL ('push' | 'poll'), endpoint_url TEXT NULL, allow_http BIGINT NOT NULL,
//!   authorization_header BLOB NULL  -- sealed (AAD event-stream/ID): the push Authorization value
//!   poll_secret_hash BLOB NULL      -- SHA-256 of a scim poll receiver's bearer secret
//!   audience TEXT NOT NULL          -- JSON string or array: the SETs' "aud"
//!   events_requested TEXT NOT NULL  -- JSON array of event-type URIs
//!   status TEXT NOT NULL ('enabled' | 'paused' | 'disabled'), status_reason TEXT NULL,
//!   description TEXT NULL, consecutive_failures BIGINT NOT NULL, last_error TEXT NULL,
//!   last_delivered_at BIGINT NULL, created_at, updated_at BIGINT NOT NULL, updated_by TEXT NOT NULL)
//! security_events(seq autoincrement PK, stream_id TEXT NOT NULL -> event_streams ON DELETE CASCADE,
//!   jti TEXT NOT NULL UNIQUE, event_type TEXT NOT NULL, subject TEXT NOT NULL (the RFC 9493
//!   sub_id, as put in the SET), payload TEXT NOT NULL (the event's members), txn TEXT NULL,
//!   created_at BIGINT NOT NULL (the SET's iat), attempts BIGINT NOT NULL,
//!   next_attempt_at BIGINT NOT NULL, last_error TEXT NULL, lease_owner TEXT NULL,
//!   lease_expires_at BIGINT NULL)
//! ```
//!
//! [`Store::fan_out`] turns each outbox row with events into one `security_events` row per
//! (enabled or paused stream of the directory, requested event type) in the transaction
//! that consumes the row: at least once, nothing lost between the write and the queue.
//! Push workers lease due rows ([`Store::claim_push_events`]); poll receivers read and
//! acknowledge them ([`Store::poll_stream_events`]).

mod map;
mod queue;

use fedkey_audit::Outcome;
use fedkey_core::Timestamp;
use fedkey_crypto::Secret;
use serde::Serialize;
use serde_json::{Value, json};
use sqlx::{Row, any::AnyRow};

use super::{Actor, Store, new_id, opt_ts};
use crate::StoreError;

pub use map::{
    CAEP_CREDENTIAL_CHANGE, CAEP_SESSION_REVOKED, MappedEvent, OutboxChange, RISC_ACCOUNT_DISABLED,
    RISC_ACCOUNT_ENABLED, RISC_ACCOUNT_PURGED, SCIM_ACTIVATE, SCIM_CREATE, SCIM_DEACTIVATE, SCIM_DELETE,
    SCIM_EVENT_TYPES, SCIM_PATCH, SCIM_PUT, SSF_EVENT_TYPES, events_for, supported_event_types, write_kinds,
};
pub use queue::{MAX_POLL_ITEMS, QueuedEvent};

/// Longest accepted description, endpoint URL and Authorization value.
const MAX_TEXT: usize = 2048;
/// Most event types one stream requests.
const MAX_EVENT_TYPES: usize = 64;

/// Who registered a stream and what it carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StreamKind {
    /// RFC 9967 SCIM events, for a receiver an admin registered.
    Scim,
    /// OpenID SSF (CAEP/RISC), for a receiver that manages its stream itself.
    Ssf,
}

impl StreamKind {
    pub fn as_str(self) -> &'static str {
        match self {
            StreamKind::Scim => "scim",
            StreamKind::Ssf => "ssf",
        }
    }

    fn parse(s: &str) -> Result<StreamKind, StoreError> {
        match s {
            "scim" => Ok(StreamKind::Scim),
            "ssf" => Ok(StreamKind::Ssf),
            _ => Err(StoreError::Corrupt("event_streams.kind".into())),
        }
    }
}

/// How SETs reach the receiver.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Delivery {
    /// RFC 8935: fedkey POSTs each SET to the receiver's endpoint.
    Push,
    /// RFC 8936: the receiver POSTs to fedkey to fetch and acknowledge SETs.
    Poll,
}

impl Delivery {
    pub fn as_str(self) -> &'static str {
        match self {
            Delivery::Push => "push",
            Delivery::Poll => "poll",
        }
    }

    fn parse(s: &str) -> Result<Delivery, StoreError> {
        match s {
            "push" => Ok(Delivery::Push),
            "poll" => Ok(Delivery::Poll),
            _ => Err(StoreError::Corrupt("event_streams.delivery".into())),
        }
    }
}

/// Whether a stream receives events: `paused` ones are queued and held, `disabled` ones
/// get none (and lose what was queued).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StreamStatus {
    Enabled,
    Paused,
    Disabled,
}

impl StreamStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            StreamStatus::Enabled => "enabled",
            StreamStatus::Paused => "paused",
            StreamStatus::Disabled => "disabled",
        }
    }

    pub fn parse(s: &str) -> Option<StreamStatus> {
        match s {
            "enabled" => Some(StreamStatus::Enabled),
            "paused" => Some(StreamStatus::Paused),
            "disabled" => Some(StreamStatus::Disabled),
            _ => None,
        }
    }
}

/// A stream as stored (never its secrets; only whether it has them).
#[derive(Debug, Clone, Serialize)]
pub struct EventStream {
    pub id: String,
    #[serde(skip)]
    pub directory_id: String,
    /// The directory's name.
    pub directory: String,
    pub kind: StreamKind,
    #[serde(skip)]
    pub receiver_trust_id: Option<String>,
    pub delivery: Delivery,
    pub endpoint_url: Option<String>,
    pub allow_http: bool,
    /// Whether pushes send an Authorization header (its value is write-only).
    pub has_authorization: bool,
    /// Whether a poll secret has been issued (scim poll streams).
    pub has_poll_secret: bool,
    /// The SETs' `aud`: a string or an array of strings.
    pub audience: Value,
    pub events_requested: Vec<String>,
    pub status: StreamStatus,
    pub status_reason: Option<String>,
    pub description: Option<String>,
    pub consecutive_failures: i64,
    pub last_error: Option<String>,
    #[serde(serialize_with = "fedkey_core::clock::rfc3339_opt")]
    pub last_delivered_at: Option<Timestamp>,
    /// SETs queued and not yet delivered.
    pub pending: i64,
    #[serde(serialize_with = "fedkey_core::clock::rfc3339")]
    pub created_at: Timestamp,
    #[serde(serialize_with = "fedkey_core::clock::rfc3339")]
    pub updated_at: Timestamp,
    pub updated_by: String,
}

/// A stream to create. The caller checks the endpoint URL's scheme and host policy.
#[derive(Debug, Clone)]
pub struct NewEventStream {
    /// The directory's name.
    pub directory: String,
    pub kind: StreamKind,
    /// `ssf`: the receiver's trust, which owns the stream (deleted with it).
    pub receiver_trust_id: Option<String>,
    pub delivery: Delivery,
    /// Required for push, absent for poll.
    pub endpoint_url: Option<String>,
    pub allow_http: bool,
    /// The Authorization header value a push sends (e.g. `Bearer …`).
    pub authorization: Option<Secret>,
    pub audience: Value,
    pub events_requested: Vec<String>,
    pub description: Option<String>,
    pub status: StreamStatus,
}

/// Changes to a stream; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct EventStreamUpdate {
    pub delivery: Option<Delivery>,
    /// `Some(None)` removes the URL (a stream that now polls).
    pub endpoint_url: Option<Option<String>>,
    pub allow_http: Option<bool>,
    /// `Some(None)` removes the header.
    pub authorization: Option<Option<Secret>>,
    pub audience: Option<Value>,
    pub events_requested: Option<Vec<String>>,
    pub description: Option<Option<String>>,
}

fn stream_aad(id: &str) -> Vec<u8> {
    format!("event-stream/{id}").into_bytes()
}

const STREAM_SELECT: &str = "SELECT s.id, s.directory_id, d.name AS directory_name, s.kind, s.receiver_trust_id, s.delivery, \
    s.endpoint_url, s.allow_http, CASE WHEN s.authorization_header IS NULL THEN 0 ELSE 1 END AS has_authorization, \
    CASE WHEN s.poll_secret_hash IS NULL THEN 0 ELSE 1 END AS has_poll_secret, s.audience, s.events_requested, s.status, \
    s.status_reason, s.description, s.consecutive_failures, s.last_error, s.last_delivered_at, s.created_at, s.updated_at, \
    s.updated_by, (SELECT COUNT(*) FROM security_events e WHERE e.stream_id = s.id) AS pending \
    FROM event_streams s JOIN directories d ON d.id = s.directory_id";

/// Checks what a stream would be after a create or an update.
fn validate(
    kind: StreamKind,
    delivery: Delivery,
    endpoint_url: Option<&str>,
    audience: &Value,
    events: &[String],
    description: Option<&str>,
) -> Result<(), StoreError> {
    let invalid = |m: String| Err(StoreError::Invalid(m));
    match (delivery, endpoint_url) {
        (Delivery::Push, None) => return invalid("a push stream needs an endpoint URL".into()),
        (Delivery::Push, Some(u)) if u.is_empty() || u.len() > MAX_TEXT => {
            return invalid(format!("the endpoint URL must be 1 to {MAX_TEXT} characters"));
        }
        (Delivery::Poll, Some(_)) => return invalid("a poll stream has no endpoint URL".into()),
        _ => {}
    }
    let audience_ok = match audience {
        Value::String(s) => !s.is_empty() && s.len() <= MAX_TEXT,
        Value::Array(a) => {
            !a.is_empty()
                && a.len() <= 16
                && a.iter().all(|v| v.as_str().is_some_and(|s| !s.is_empty() && s.len() <= MAX_TEXT))
        }
        _ => false,
    };
    if !audience_ok {
        return invalid("the audience must be a non-empty string or an array of 1 to 16 non-empty strings".into());
    }
    if events.is_empty() || events.len() > MAX_EVENT_TYPES {
        return invalid(format!("a stream requests 1 to {MAX_EVENT_TYPES} event types"));
    }
    let supported = supported_event_types(kind);
    if let Some(e) = events.iter().find(|e| !supported.contains(&e.as_str())) {
        return invalid(format!(
            "event type {:?} is not issued on {} streams (supported: {})",
            map_clip(e),
            kind.as_str(),
            supported.join(", ")
        ));
    }
    if description.is_some_and(|d| d.len() > MAX_TEXT) {
        return invalid(format!("the description must be at most {MAX_TEXT} characters"));
    }
    Ok(())
}

fn map_clip(s: &str) -> String {
    super::outbox::clip(s, 200)
}

impl Store {
    /// Registers a stream, audited as `events.stream.create`.
    pub async fn create_event_stream(&self, actor: &Actor, s: NewEventStream) -> Result<EventStream, StoreError> {
        let dir = self.directory(&s.directory).await?;
        let mut events = s.events_requested.clone();
        events.sort();
        events.dedup();
        validate(s.kind, s.delivery, s.endpoint_url.as_deref(), &s.audience, &events, s.description.as_deref())?;
        if s.authorization.as_ref().is_some_and(|a| a.expose().is_empty() || a.expose().len() > MAX_TEXT) {
            return Err(StoreError::Invalid(format!("the Authorization value must be 1 to {MAX_TEXT} characters")));
        }
        if let Some(t) = &s.receiver_trust_id {
            let row = sqlx::query("SELECT directory_id FROM trusts WHERE id = $1")
                .bind(t.clone())
                .fetch_optional(self.db.pool())
                .await?;
            if row.map(|r| r.try_get::<String, _>("directory_id")).transpose()?.as_deref() != Some(dir.id.as_str()) {
                return Err(StoreError::Invalid("the receiver's trust is not in the stream's directory".into()));
            }
        }
        let id = new_id();
        let sealed = match &s.authorization {
            Some(a) => Some(self.keyring()?.seal(&stream_aad(&id), a.expose().as_bytes())?),
            None => None,
        };
        let now = self.now().0;
        let mut tx = self.db.begin().await?;
        sqlx::query(
            "INSERT INTO event_streams (id, directory_id, kind, receiver_trust_id, delivery, endpoint_url, allow_http, \
             authorization_header, poll_secret_hash, audience, events_requested, status, status_reason, description, \
             consecutive_failures, last_error, last_delivered_at, created_at, updated_at, updated_by) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, NULL, $9, $10, $11, NULL, $12, 0, NULL, NULL, $13, $13, $14)",
        )
        .bind(id.clone())
        .bind(dir.id.clone())
        .bind(s.kind.as_str())
        .bind(s.receiver_trust_id.clone())
        .bind(s.delivery.as_str())
        .bind(s.endpoint_url.clone())
        .bind(i64::from(s.allow_http))
        .bind(sealed)
        .bind(s.audience.to_string())
        .bind(json!(events).to_string())
        .bind(s.status.as_str())
        .bind(s.description.clone())
        .bind(now)
        .bind(actor.id.clone())
        .execute(&mut *tx)
        .await?;
        let ev = self.event(actor, "events.stream.create", Outcome::Success).directory(&dir.name).details(json!({
            "stream": id, "kind": s.kind.as_str(), "delivery": s.delivery.as_str(), "endpoint_url": s.endpoint_url,
            "allow_http": s.allow_http, "authorization": s.authorization.is_some(), "audience": s.audience,
            "events": events, "status": s.status.as_str(),
        }));
        self.commit_with(tx, actor, ev).await?;
        self.event_stream(&id).await?.ok_or_else(|| StoreError::NotFound(format!("event stream {id}")))
    }

    pub async fn event_stream(&self, id: &str) -> Result<Option<EventStream>, StoreError> {
        let sql = format!("{STREAM_SELECT} WHERE s.id = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(id.to_owned()).fetch_optional(self.db.pool()).await?;
        row.as_ref().map(stream_from_row).transpose()
    }

    /// The streams of a directory, optionally of one kind or one receiver, oldest first.
    pub async fn event_streams(
        &self,
        directory: &str,
        kind: Option<StreamKind>,
        receiver_trust_id: Option<&str>,
    ) -> Result<Vec<EventStream>, StoreError> {
        let dir = self.directory(directory).await?;
        let sql = format!(
            "{STREAM_SELECT} WHERE s.directory_id = $1 AND ($2 IS NULL OR s.kind = $2) \
             AND ($3 IS NULL OR s.receiver_trust_id = $3) ORDER BY s.created_at, s.id"
        );
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(dir.id)
            .bind(kind.map(StreamKind::as_str))
            .bind(receiver_trust_id.map(str::to_owned))
            .fetch_all(self.db.pool())
            .await?
            .iter()
            .map(stream_from_row)
            .collect()
    }

    /// Changes a stream, audited as `events.stream.update` (secret values never recorded).
    pub async fn update_event_stream(
        &self,
        actor: &Actor,
        id: &str,
        u: EventStreamUpdate,
    ) -> Result<EventStream, StoreError> {
        let cur = self.event_stream(id).await?.ok_or_else(|| StoreError::NotFound(format!("event stream {id}")))?;
        let delivery = u.delivery.unwrap_or(cur.delivery);
        let endpoint_url = match &u.endpoint_url {
            Some(v) => v.clone(),
            None if delivery == Delivery::Poll => None,
            None => cur.endpoint_url.clone(),
        };
        let audience = u.audience.clone().unwrap_or_else(|| cur.audience.clone());
        let mut events = u.events_requested.clone().unwrap_or_else(|| cur.events_requested.clone());
        events.sort();
        events.dedup();
        let description = u.description.clone().unwrap_or_else(|| cur.description.clone());
        validate(cur.kind, delivery, endpoint_url.as_deref(), &audience, &events, description.as_deref())?;
        let sealed = match &u.authorization {
            Some(Some(a)) if a.expose().is_empty() || a.expose().len() > MAX_TEXT => {
                return Err(StoreError::Invalid(format!("the Authorization value must be 1 to {MAX_TEXT} characters")));
            }
            Some(Some(a)) => Some(Some(self.keyring()?.seal(&stream_aad(id), a.expose().as_bytes())?)),
            Some(None) => Some(None),
            None => None,
        };
        let now = self.now().0;
        let mut tx = self.db.begin().await?;
        sqlx::query(
            "UPDATE event_streams SET delivery = $1, endpoint_url = $2, allow_http = $3, audience = $4, \
             events_requested = $5, description = $6, updated_at = $7, updated_by = $8, \
             authorization_header = CASE WHEN $9 = 1 THEN $10 ELSE authorization_header END WHERE id = $11",
        )
        .bind(delivery.as_str())
        .bind(endpoint_url.clone())
        .bind(i64::from(u.allow_http.unwrap_or(cur.allow_http)))
        .bind(audience.to_string())
        .bind(json!(events).to_string())
        .bind(description)
        .bind(now)
        .bind(actor.id.clone())
        .bind(i64::from(sealed.is_some()))
        .bind(sealed.flatten())
        .bind(id.to_owned())
        .execute(&mut *tx)
        .await?;
        let ev = self.event(actor, "events.stream.update", Outcome::Success).directory(&cur.directory).details(json!({
            "stream": id, "delivery": delivery.as_str(), "endpoint_url": endpoint_url, "audience": audience,
            "events": events, "authorization": u.authorization.as_ref().map(|a| if a.is_some() { "set" } else { "removed" }),
        }));
        self.commit_with(tx, actor, ev).await?;
        self.event_stream(id).await?.ok_or_else(|| StoreError::NotFound(format!("event stream {id}")))
    }

    /// Deletes a stream and its queued SETs, audited as `events.stream.delete`.
    pub async fn delete_event_stream(&self, actor: &Actor, id: &str) -> Result<(), StoreError> {
        let cur = self.event_stream(id).await?.ok_or_else(|| StoreError::NotFound(format!("event stream {id}")))?;
        let mut tx = self.db.begin().await?;
        sqlx::query("DELETE FROM security_events WHERE stream_id = $1").bind(id.to_owned()).execute(&mut *tx).await?;
        sqlx::query("DELETE FROM event_streams WHERE id = $1").bind(id.to_owned()).execute(&mut *tx).await?;
        let ev = self
            .event(actor, "events.stream.delete", Outcome::Success)
            .directory(&cur.directory)
            .details(json!({"stream": id, "kind": cur.kind.as_str(), "dropped": cur.pending}));
        self.commit_with(tx, actor, ev).await
    }

    /// Enables, pauses or disables a stream, audited as `events.stream.status`. Disabling
    /// drops what was queued (a disabled stream holds nothing); pausing keeps it.
    pub async fn set_event_stream_status(
        &self,
        actor: &Actor,
        id: &str,
        status: StreamStatus,
        reason: Option<&str>,
    ) -> Result<EventStream, StoreError> {
        let cur = self.event_stream(id).await?.ok_or_else(|| StoreError::NotFound(format!("event stream {id}")))?;
        if reason.is_some_and(|r| r.len() > MAX_TEXT) {
            return Err(StoreError::Invalid(format!("the reason must be at most {MAX_TEXT} characters")));
        }
        let now = self.now().0;
        let mut tx = self.db.begin().await?;
        sqlx::query(
            "UPDATE event_streams SET status = $1, status_reason = $2, updated_at = $3, updated_by = $4 WHERE id = $5",
        )
        .bind(status.as_str())
        .bind(reason.map(str::to_owned))
        .bind(now)
        .bind(actor.id.clone())
        .bind(id.to_owned())
        .execute(&mut *tx)
        .await?;
        let mut dropped = 0;
        if status == StreamStatus::Disabled {
            dropped = sqlx::query("DELETE FROM security_events WHERE stream_id = $1")
                .bind(id.to_owned())
                .execute(&mut *tx)
                .await?
                .rows_affected();
        }
        let ev = self.event(actor, "events.stream.status", Outcome::Success).directory(&cur.directory).details(json!({
            "stream": id, "from": cur.status.as_str(), "to": status.as_str(), "reason": reason, "dropped": dropped,
        }));
        self.commit_with(tx, actor, ev).await?;
        self.event_stream(id).await?.ok_or_else(|| StoreError::NotFound(format!("event stream {id}")))
    }

    /// The Authorization header value of a push stream, decrypted for use; audited first
    /// (`events.stream.secret.read`).
    pub async fn event_stream_authorization(
        &self,
        actor: &Actor,
        s: &EventStream,
    ) -> Result<Option<Secret>, StoreError> {
        let row = sqlx::query("SELECT authorization_header FROM event_streams WHERE id = $1")
            .bind(s.id.clone())
            .fetch_optional(self.db.pool())
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("event stream {}", s.id)))?;
        let Some(envelope) = row.try_get::<Option<Vec<u8>>, _>("authorization_header")? else {
            return Ok(None);
        };
        self.record(
            actor,
            "events.stream.secret.read",
            Outcome::Success,
            json!({"directory": s.directory, "stream": s.id}),
        )
        .await?;
        let plain = self.keyring()?.open(&stream_aad(&s.id), &envelope)?;
        let text =
            String::from_utf8(plain.to_vec()).map_err(|_| StoreError::Corrupt("event_streams.authorization".into()))?;
        Ok(Some(Secret::new(text)))
    }

    /// Issues a new bearer secret for a poll stream (the old one stops working), audited as
    /// `events.stream.poll_secret`. Only its SHA-256 is kept; the caller shows it once.
    pub async fn issue_event_stream_poll_secret(&self, actor: &Actor, id: &str) -> Result<Secret, StoreError> {
        let cur = self.event_stream(id).await?.ok_or_else(|| StoreError::NotFound(format!("event stream {id}")))?;
        if cur.delivery != Delivery::Poll {
            return Err(StoreError::Invalid("only a poll stream has a poll secret".into()));
        }
        let secret = fedkey_crypto::token::generate(fedkey_crypto::token::TokenKind::Provisioning)
            .map_err(|e| StoreError::Crypto(e.to_string()))?;
        let hash = fedkey_crypto::sha256(secret.expose().as_bytes()).to_vec();
        let mut tx = self.db.begin().await?;
        sqlx::query("UPDATE event_streams SET poll_secret_hash = $1, updated_at = $2, updated_by = $3 WHERE id = $4")
            .bind(hash)
            .bind(self.now().0)
            .bind(actor.id.clone())
            .bind(id.to_owned())
            .execute(&mut *tx)
            .await?;
        let ev = self
            .event(actor, "events.stream.poll_secret", Outcome::Success)
            .directory(&cur.directory)
            .details(json!({"stream": id}));
        self.commit_with(tx, actor, ev).await?;
        Ok(secret)
    }

    /// Whether `presented` is the poll secret of stream `id` (constant-time compare).
    pub async fn event_stream_poll_secret_matches(&self, id: &str, presented: &str) -> Result<bool, StoreError> {
        let row = sqlx::query("SELECT poll_secret_hash FROM event_streams WHERE id = $1")
            .bind(id.to_owned())
            .fetch_optional(self.db.pool())
            .await?;
        let Some(Some(hash)) = row.map(|r| r.try_get::<Option<Vec<u8>>, _>("poll_secret_hash")).transpose()? else {
            return Ok(false);
        };
        Ok(fedkey_crypto::ct_eq(&hash, &fedkey_crypto::sha256(presented.as_bytes())))
    }
}

fn stream_from_row(r: &AnyRow) -> Result<EventStream, StoreError> {
    let corrupt = |c: &str| StoreError::Corrupt(format!("event_streams.{c}"));
    let audience: String = r.try_get("audience")?;
    let events: String = r.try_get("events_requested")?;
    let status: String = r.try_get("status")?;
    Ok(EventStream {
        id: r.try_get("id")?,
        directory_id: r.try_get("directory_id")?,
        directory: r.try_get("directory_name")?,
        kind: StreamKind::parse(&r.try_get::<String, _>("kind")?)?,
        receiver_trust_id: r.try_get("receiver_trust_id")?,
        delivery: Delivery::parse(&r.try_get::<String, _>("delivery")?)?,
        endpoint_url: r.try_get("endpoint_url")?,
        allow_http: r.try_get::<i64, _>("allow_http")? != 0,
        has_authorization: int_flag(r, "has_authorization")?,
        has_poll_secret: int_flag(r, "has_poll_secret")?,
        audience: serde_json::from_str(&audience).map_err(|_| corrupt("audience"))?,
        events_requested: serde_json::from_str(&events).map_err(|_| corrupt("events_requested"))?,
        status: StreamStatus::parse(&status).ok_or_else(|| corrupt("status"))?,
        status_reason: r.try_get("status_reason")?,
        description: r.try_get("description")?,
        consecutive_failures: r.try_get("consecutive_failures")?,
        last_error: r.try_get("last_error")?,
        last_delivered_at: opt_ts(r.try_get("last_delivered_at")?),
        pending: r.try_get("pending")?,
        created_at: Timestamp(r.try_get("created_at")?),
        updated_at: Timestamp(r.try_get("updated_at")?),
        updated_by: r.try_get("updated_by")?,
    })
}

/// A 0/1 expression column (an INTEGER on SQLite; PostgreSQL's CASE gives an int4).
fn int_flag(r: &AnyRow, col: &str) -> Result<bool, StoreError> {
    match r.try_get::<i64, _>(col) {
        Ok(v) => Ok(v != 0),
        Err(_) => Ok(r.try_get::<i32, _>(col)? != 0),
    }
}
