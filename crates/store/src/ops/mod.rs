//! Domain operations. Each change runs in one transaction together with its audit
//! record: if the record cannot be written, the change does not happen.

mod access;
pub mod console;
mod directories;
pub mod events;
mod health;
mod keys;
mod leaks;
mod masterkey;
mod material;
mod notify;
mod outbox;
mod reconcile_schedule;
mod rotation;
mod ssf;
mod tokens;
mod trusts;
mod wrap;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use fedkey_audit::{Event, Outcome};
use fedkey_core::{Clock, Role, Timestamp};
use fedkey_crypto::Keyring;
use serde_json::Value;

use crate::audit::{AuditWriter, WriterConfig};
use crate::auth::AuthCache;
use crate::db::Tx;
use crate::install::Install;
use crate::keyfile::KeyringSource;
use crate::{Db, StoreError};

pub use directories::DirectoryContents;
pub use events::{Delivery, EventStream, EventStreamUpdate, NewEventStream, QueuedEvent, StreamKind, StreamStatus};
pub use health::{AuditState, DeadLetterSample, OutboxQueue, TargetQueue, TrustFigures};
pub use keys::RotateKey;
pub use leaks::{LeakAction, LeakCandidate, LeakFinding};
pub use masterkey::RewrapReport;
pub use material::{Arrival, MAX_SOURCE_CONFIG, MaterialVersion, NewMaterial, TrustSource};
pub use notify::ExpiringKey;
pub(crate) use outbox::describe as outbox_describe;
pub use outbox::{
    Change, DeadLetterFilter, Delivered, MAX_MAPPING_DOC, NewSyncTarget, OAuthSettings, RemoteRef, SyncTarget,
    SyncWork, WriteEvents,
};
pub use reconcile_schedule::{MAX_RECONCILE_EVERY, MIN_RECONCILE_EVERY, ReconcileRun, ReconcileSchedule, RunOutcome};
pub use rotation::{ConnectorRow, DeliveryRow, MAX_CONNECTOR_DOC, PolicyRow, Rotation};
pub use trusts::NewTrust;
pub use wrap::{MAX_WRAP_TTL, UnwrapRefusal, WrappedLink};

/// Who performs an operation, and from where. Recorded in every audit record.
#[derive(Debug, Clone)]
pub struct Actor {
    /// `token:NAME`, `system:WHAT` or `cli:local`.
    pub id: String,
    pub role: Option<Role>,
    pub source: Option<String>,
    pub request_id: Option<String>,
    /// The admin token acting, whose `last_used_at` the change updates.
    pub token_id: Option<String>,
}

impl Actor {
    pub fn system(what: &str) -> Actor {
        Actor { id: format!("system:{what}"), role: Some(Role::Admin), source: None, request_id: None, token_id: None }
    }

    /// A command-line tool acting directly on the database.
    pub fn cli(what: &str) -> Actor {
        Actor { id: format!("cli:{what}"), role: None, source: None, request_id: None, token_id: None }
    }

    pub fn token(who: &crate::auth::AdminPrincipal, meta: &crate::auth::RequestMeta) -> Actor {
        Actor {
            id: format!("token:{}", who.name),
            role: Some(who.role),
            source: meta.source.clone(),
            request_id: meta.request_id.clone(),
            token_id: Some(who.id.clone()),
        }
    }

    /// An unauthenticated caller (failed authentication).
    pub fn anonymous(id: String, meta: &crate::auth::RequestMeta) -> Actor {
        Actor { id, role: None, source: meta.source.clone(), request_id: meta.request_id.clone(), token_id: None }
    }
}

pub struct Store {
    pub(crate) db: Db,
    pub clock: Arc<dyn Clock>,
    pub install: Arc<Install>,
    pub audit: AuditWriter,
    keyring: Arc<dyn KeyringSource>,
    /// Bumped by every change that can affect authentication; cached credentials from an
    /// older generation are re-read. Shared with the listener that hears other nodes'
    /// changes (see `crate::invalidate`).
    generation: Arc<AtomicU64>,
    pub(crate) auth_cache: AuthCache,
    /// Tells other nodes of this store's changes and (PostgreSQL) listens for theirs.
    invalidation: crate::invalidate::Invalidation,
    /// Directories by name. A directory is never renamed or deleted, so an entry never goes
    /// stale; every SCIM write names its directory.
    pub(crate) directories: std::sync::Mutex<directories::DirectoryCache>,
    /// Failed authentications per source and window (see `auth_failures`).
    pub(crate) auth_failures: crate::auth_failures::FailedAuths,
}

impl Store {
    /// Opens the store on a migrated database, creating the install secrets on first
    /// use. Returns whether this call created them.
    pub async fn open(
        db: Db,
        keyring: Arc<dyn KeyringSource>,
        clock: Arc<dyn Clock>,
        cfg: WriterConfig,
        auth_cache_ttl: std::time::Duration,
    ) -> Result<(Store, bool), StoreError> {
        let ring = keyring.keyring()?;
        let (install, created) = Install::load_or_create(&db, &ring).await?;
        let install = Arc::new(install);
        let audit = AuditWriter::spawn(db.clone(), install.clone(), clock.clone(), cfg);
        let generation = Arc::new(AtomicU64::new(0));
        let invalidation = crate::invalidate::start(&db, generation.clone()).await;
        let store = Store {
            db,
            clock,
            install,
            audit,
            keyring,
            generation,
            auth_cache: AuthCache::new(auth_cache_ttl),
            invalidation,
            directories: Default::default(),
            auth_failures: crate::auth_failures::FailedAuths::new(Default::default()),
        };
        Ok((store, created))
    }

    /// The store with `policy` for aggregating failed authentications (default: 10 per
    /// source a minute recorded one each).
    pub fn with_auth_failure_policy(mut self, policy: crate::auth_failures::FailurePolicy) -> Store {
        self.auth_failures = crate::auth_failures::FailedAuths::new(policy);
        self
    }

    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }

    pub fn keyring(&self) -> Result<Arc<Keyring>, StoreError> {
        self.keyring.keyring()
    }

    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    pub(crate) fn bump_generation(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    /// An audit event stamped with the clock and the actor's request context.
    pub fn event(&self, actor: &Actor, action: &str, outcome: Outcome) -> Event {
        Event::new(self.now(), actor.id.clone(), action, outcome)
            .source(actor.source.clone())
            .request_id(actor.request_id.clone())
    }

    /// Records an event that accompanies no change (a read, a denial) through the group
    /// committer; returns once it is durable.
    pub async fn record(
        &self,
        actor: &Actor,
        action: &str,
        outcome: Outcome,
        details: Value,
    ) -> Result<(), StoreError> {
        self.audit.record(self.event(actor, action, outcome).details(details), None).await.map(|_| ())
    }

    /// Commits `tx` after appending `event`: the change and its record land together.
    pub(crate) async fn commit_with(&self, tx: Tx, actor: &Actor, event: Event) -> Result<(), StoreError> {
        self.commit_with_events(tx, actor, vec![event]).await
    }

    /// [`commit_with`](Self::commit_with) for a change that can affect authentication: the
    /// other nodes are told in the same transaction (PostgreSQL), and this node's cached
    /// credentials are dropped once it has committed.
    pub(crate) async fn commit_auth_change(&self, mut tx: Tx, actor: &Actor, event: Event) -> Result<(), StoreError> {
        self.invalidation.announce(&mut tx, self.db.backend).await?;
        self.commit_with(tx, actor, event).await?;
        self.bump_generation();
        Ok(())
    }

    /// [`commit_with`](Self::commit_with) for several records.
    pub(crate) async fn commit_with_events(
        &self,
        mut tx: Tx,
        actor: &Actor,
        events: Vec<Event>,
    ) -> Result<(), StoreError> {
        crate::audit::append_in_tx(&mut tx, &self.db, events)
            .await
            .map_err(|e| StoreError::AuditUnavailable(Box::new(e)))?;
        if let Some(id) = &actor.token_id {
            sqlx::query("UPDATE admin_tokens SET last_used_at = $1 WHERE id = $2")
                .bind(event_ts(&self.now()))
                .bind(id.clone())
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await.map_err(|e| StoreError::AuditUnavailable(Box::new(e.into())))?;
        Ok(())
    }
}

fn event_ts(t: &Timestamp) -> i64 {
    t.0
}

pub(crate) fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

pub(crate) fn opt_ts(v: Option<i64>) -> Option<Timestamp> {
    v.map(Timestamp)
}
