//! Authentication of provisioning keys and admin tokens.
//!
//! The presented token is checked for shape, hashed (SHA-256) and looked up by that
//! verifier — in a small in-process cache, then in the database. The cached entry is
//! re-read when this process changed any key, trust or token since, or heard that another
//! node did (generation counter, see `crate::invalidate`), or when it is older than the TTL
//! (the fallback while that news cannot be heard). Expiry is always judged against
//! the clock, so an overlap ends on time whatever the cache holds. Every attempt,
//! successful or not, is audited before the caller proceeds; failures under the
//! per-source aggregation rule of `auth_failures`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fedkey_audit::Outcome;
use fedkey_core::{
    Direction, KeyState, PeerKind, PendingAuth, Role, ScopeSet, Timestamp, TrustRef, TrustStatus, lifecycle,
};
use fedkey_crypto::token::{self, TokenKind, Verifier};
use serde_json::json;
use sqlx::Row;

use crate::audit::{Pending, Touch};
use crate::ops::{Actor, Store};
use crate::{StoreError, TrustPolicy};

/// An authenticated provisioning request: which trust, which key version, what it may do.
#[derive(Debug, Clone)]
pub struct Principal {
    pub directory_id: String,
    pub directory: String,
    pub trust_id: String,
    pub trust: String,
    pub peer_kind: PeerKind,
    pub version: i64,
    pub scopes: ScopeSet,
    /// The trust's policy, cached with the key (re-read when any trust changes here).
    pub policy: Arc<TrustPolicy>,
}

#[derive(Debug, Clone)]
pub struct AdminPrincipal {
    pub id: String,
    pub name: String,
    pub role: Role,
}

/// Why authentication failed. Audited in full; the client only learns "401".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthFailure {
    Missing,
    Malformed,
    Unknown,
    WrongDirectory,
    NotInbound,
    TrustSuspended,
    Revoked,
    Expired,
    WrongKind,
    /// A pending version of a trust whose pending versions wait for every connector.
    NotDelivered,
}

impl AuthFailure {
    /// Every reason, for metrics label sets that exist from start-up.
    pub const ALL: [AuthFailure; 10] = [
        AuthFailure::Missing,
        AuthFailure::Malformed,
        AuthFailure::Unknown,
        AuthFailure::WrongDirectory,
        AuthFailure::NotInbound,
        AuthFailure::TrustSuspended,
        AuthFailure::Revoked,
        AuthFailure::Expired,
        AuthFailure::WrongKind,
        AuthFailure::NotDelivered,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AuthFailure::Missing => "missing_credentials",
            AuthFailure::Malformed => "malformed_token",
            AuthFailure::Unknown => "unknown_token",
            AuthFailure::WrongDirectory => "wrong_directory",
            AuthFailure::NotInbound => "not_an_inbound_trust",
            AuthFailure::TrustSuspended => "trust_suspended",
            AuthFailure::Revoked => "key_revoked",
            AuthFailure::Expired => "key_expired",
            AuthFailure::WrongKind => "wrong_token_kind",
            AuthFailure::NotDelivered => "key_not_yet_delivered",
        }
    }
}

/// The columns of a key version, its trust and directory that [`Store::key_record`]
/// reads, without the WHERE clause.
macro_rules! key_select {
    () => {
        "SELECT k.verifier, k.version, k.state, k.scopes, k.expires_at, t.id AS trust_id, t.name AS trust, t.direction, \
         t.peer_kind, t.status, t.privileged_groups, t.allowed_sources, t.rate_limit, t.pending_auth, d.id AS directory_id, d.name AS directory, \
         CASE WHEN EXISTS (SELECT 1 FROM rotations r WHERE r.trust_id = k.trust_id AND r.version = k.version \
         AND r.step <> 'set') THEN 1 ELSE 0 END AS delivered \
         FROM key_versions k JOIN trusts t ON t.id = k.trust_id JOIN directories d ON d.id = t.directory_id"
    };
}
pub(crate) use key_select;

/// What the database says about a provisioning key.
#[derive(Debug, Clone)]
pub struct KeyRecord {
    pub verifier: Verifier,
    pub principal: Principal,
    pub direction: Direction,
    pub trust_status: TrustStatus,
    pub state: KeyState,
    pub expires_at: Option<Timestamp>,
    /// The trust's rule for pending versions.
    pub pending_auth: PendingAuth,
    /// Whether every connector has confirmed this version (its rotation is past `set`).
    pub delivered: bool,
}

#[derive(Debug, Clone)]
struct TokenRecord {
    verifier: Verifier,
    principal: AdminPrincipal,
    expires_at: Option<Timestamp>,
    revoked: bool,
}

#[derive(Clone)]
enum Cached {
    Key(Box<KeyRecord>),
    Token(TokenRecord),
}

struct Entry {
    value: Cached,
    loaded: Instant,
    generation: u64,
}

pub(crate) struct AuthCache {
    ttl: Duration,
    map: Mutex<HashMap<[u8; 32], Entry>>,
}

const MAX_CACHE_ENTRIES: usize = 100_000;

impl AuthCache {
    pub(crate) fn new(ttl: Duration) -> AuthCache {
        AuthCache { ttl, map: Mutex::new(HashMap::new()) }
    }

    fn get(&self, v: &Verifier, generation: u64) -> Option<Cached> {
        self.get_within(v, generation, self.ttl)
    }

    /// [`AuthCache::get`] with a tighter age bound than the TTL (never a looser one).
    fn get_within(&self, v: &Verifier, generation: u64, max_age: Duration) -> Option<Cached> {
        let map = self.map.lock().ok()?;
        let e = map.get(&v.0)?;
        (e.generation == generation && e.loaded.elapsed() < max_age.min(self.ttl)).then(|| e.value.clone())
    }

    fn put(&self, v: &Verifier, value: Cached, generation: u64) {
        if self.ttl.is_zero() {
            return;
        }
        if let Ok(mut map) = self.map.lock() {
            if map.len() >= MAX_CACHE_ENTRIES {
                map.clear();
            }
            map.insert(v.0, Entry { value, loaded: Instant::now(), generation });
        }
    }
}

/// Request context recorded with every authentication attempt.
#[derive(Debug, Clone, Default)]
pub struct RequestMeta {
    pub source: Option<String>,
    pub request_id: Option<String>,
}

impl Store {
    /// Resolves a provisioning key to its record (cache, then database); `None` when the
    /// token is malformed or unknown. No audit: see [`Store::authenticate_provisioning`].
    pub async fn resolve_key(&self, presented: &str) -> Result<Option<KeyRecord>, StoreError> {
        if token::parse(presented) != Ok(TokenKind::Provisioning) {
            return Ok(None);
        }
        let v = Verifier::of(presented);
        let generation = self.generation();
        if let Some(Cached::Key(k)) = self.auth_cache.get(&v, generation) {
            return Ok(Some(*k));
        }
        let row = self.row_by_verifier(concat!(key_select!(), " WHERE k.verifier = $1"), &v).await?;
        let Some(row) = row else { return Ok(None) };
        let rec = self.key_record(&row, v).await?;
        self.auth_cache.put(&v, Cached::Key(Box::new(rec.clone())), generation);
        Ok(Some(rec))
    }

    /// The record a key row (selected by `key_select!`) describes, with the trust's policy.
    pub(crate) async fn key_record(&self, row: &sqlx::any::AnyRow, v: Verifier) -> Result<KeyRecord, StoreError> {
        let corrupt = |c: &str| StoreError::Corrupt(c.to_owned());
        let get = |c: &str| row.try_get::<String, _>(c);
        let mut policy =
            TrustPolicy::from_stored(&get("privileged_groups")?, &get("allowed_sources")?, row.try_get("rate_limit")?)?;
        let (directory_id, trust_id) = (get("directory_id")?, get("trust_id")?);
        self.add_directory_privileged_groups(&mut policy, &directory_id, &trust_id).await?;
        let rec = KeyRecord {
            verifier: v,
            principal: Principal {
                directory_id,
                directory: get("directory")?,
                trust_id,
                trust: get("trust")?,
                peer_kind: get("peer_kind")?.parse().map_err(|_| corrupt("trusts.peer_kind"))?,
                version: row.try_get("version")?,
                scopes: ScopeSet::parse_stored(&get("scopes")?).map_err(|_| corrupt("key_versions.scopes"))?,
                policy: Arc::new(policy),
            },
            direction: get("direction")?.parse().map_err(|_| corrupt("trusts.direction"))?,
            trust_status: get("status")?.parse().map_err(|_| corrupt("trusts.status"))?,
            state: get("state")?.parse().map_err(|_| corrupt("key_versions.state"))?,
            expires_at: row.try_get::<Option<i64>, _>("expires_at")?.map(Timestamp),
            pending_auth: get("pending_auth")?.parse().map_err(|_| corrupt("trusts.pending_auth"))?,
            delivered: row.try_get::<i64, _>("delivered")? != 0,
        };
        Ok(rec)
    }

    /// The cached record under `v` if it is from this generation and younger than
    /// `max_age` (and the TTL); for authenticators that resolve something other than a
    /// presented key, e.g. the subject of an access token.
    pub(crate) fn cached_key(&self, v: &Verifier, max_age: Duration) -> Option<KeyRecord> {
        match self.auth_cache.get_within(v, self.generation(), max_age) {
            Some(Cached::Key(k)) => Some(*k),
            _ => None,
        }
    }

    /// Caches `rec` under `v` for this generation.
    pub(crate) fn cache_key(&self, v: &Verifier, rec: &KeyRecord, generation: u64) {
        self.auth_cache.put(v, Cached::Key(Box::new(rec.clone())), generation);
    }

    /// Adds the privileged-group patterns of the directory's other trusts to `policy`: a
    /// group is privileged in a directory when any of its trusts says so, so the key of a
    /// trust without patterns is no way around another trust's.
    async fn add_directory_privileged_groups(
        &self,
        policy: &mut TrustPolicy,
        directory_id: &str,
        trust_id: &str,
    ) -> Result<(), StoreError> {
        let rows = sqlx::query("SELECT privileged_groups FROM trusts WHERE directory_id = $1 AND id <> $2")
            .bind(directory_id.to_owned())
            .bind(trust_id.to_owned())
            .fetch_all(self.db.pool())
            .await?;
        for r in rows {
            let stored: String = r.try_get("privileged_groups")?;
            for p in stored.split_whitespace() {
                if !policy.privileged_groups.iter().any(|q| q == p) {
                    policy.privileged_groups.push(p.to_owned());
                }
            }
        }
        Ok(())
    }

    /// Decides whether `rec` may access `directory` now. Pure, for benchmarks and tests.
    pub fn check_key(rec: &KeyRecord, directory: &str, now: Timestamp) -> Result<(), AuthFailure> {
        if rec.principal.directory != directory {
            return Err(AuthFailure::WrongDirectory);
        }
        if rec.direction != Direction::Inbound {
            return Err(AuthFailure::NotInbound);
        }
        if rec.trust_status != TrustStatus::Active {
            return Err(AuthFailure::TrustSuspended);
        }
        match lifecycle::effective_state(rec.state, rec.expires_at, now) {
            KeyState::Current | KeyState::Previous => Ok(()),
            // A pending version is being delivered by the rotation engine. It authenticates
            // from the moment it is staged, unless the trust waits for every connector.
            KeyState::Pending if rec.pending_auth == PendingAuth::Delivered && !rec.delivered => {
                Err(AuthFailure::NotDelivered)
            }
            KeyState::Pending => Ok(()),
            KeyState::Revoked => Err(AuthFailure::Revoked),
            KeyState::Expired => Err(AuthFailure::Expired),
        }
    }

    /// Authenticates a provisioning key for `directory` and audits the attempt. The
    /// outer error means the attempt could not be audited (fail-closed: deny).
    pub async fn authenticate_provisioning(
        &self,
        directory: &str,
        presented: Option<&str>,
        meta: &RequestMeta,
    ) -> Result<Result<Principal, AuthFailure>, StoreError> {
        let (result, record) = self.authenticate_provisioning_early(directory, presented, meta).await?;
        record.wait().await?;
        Ok(result)
    }

    /// [`Store::authenticate_provisioning`], except that the record of a success is
    /// returned on its way to the log: the request's work can run while it is written,
    /// but nothing may be answered or committed before [`Pending::wait`] returns `Ok`. A
    /// refusal's record is waited for here (it is answered at once).
    pub async fn authenticate_provisioning_early(
        &self,
        directory: &str,
        presented: Option<&str>,
        meta: &RequestMeta,
    ) -> Result<(Result<Principal, AuthFailure>, Pending), StoreError> {
        let now = self.now();
        let (result, rec) = match presented {
            None => (Err(AuthFailure::Missing), None),
            Some(p) if token::parse(p).is_err() => (Err(AuthFailure::Malformed), None),
            Some(p) if token::parse(p) == Ok(TokenKind::Admin) => (Err(AuthFailure::WrongKind), None),
            Some(p) => match self.resolve_key(p).await? {
                None => (Err(AuthFailure::Unknown), None),
                Some(rec) => (Self::check_key(&rec, directory, now), Some(rec)),
            },
        };
        let actor = match &rec {
            Some(r) => format!("key:{}/{}#{}", r.principal.directory, r.principal.trust, r.principal.version),
            None => "anonymous".to_owned(),
        };
        let mut ev = self
            .event(&Actor::anonymous(actor, meta), "key.authenticate", Outcome::Success)
            .directory(directory.chars().take(64).collect::<String>());
        if let Some(r) = &rec {
            ev = ev.trust(r.principal.trust.clone()).key_version(r.principal.version);
        }
        match &result {
            Ok(()) => {}
            Err(f) => {
                ev.outcome = Outcome::Denied;
                let mut d = json!({"reason": f.as_str()});
                if let (Some(p), None) = (presented, &rec) {
                    // Lets an admin match a leaked or mistyped token without storing it.
                    d["presented"] = json!(self.install.fingerprint(p.as_bytes()));
                }
                if let Some(r) = &rec {
                    d["key_directory"] = json!(r.principal.directory);
                }
                ev.details = d;
            }
        }
        let touch = match (&result, &rec) {
            (Ok(()), Some(r)) => {
                Some(Touch::KeyVersion { trust_id: r.principal.trust_id.clone(), version: r.principal.version })
            }
            _ => None,
        };
        let outcome = if result.is_ok() { "success" } else { "denied" };
        metrics::counter!("fedkey_key_authentications_total", "outcome" => outcome).increment(1);
        if let Err(f) = &result {
            metrics::counter!("fedkey_auth_failures_total", "api" => "scim", "reason" => f.as_str()).increment(1);
        }
        let record = match result {
            Ok(()) => self.audit.submit(ev, touch).await?,
            Err(_) => self.record_auth_failure(ev).await?.map_or_else(Pending::summarized, Pending::durable),
        };
        Ok((result.and(rec.map(|r| r.principal).ok_or(AuthFailure::Unknown)), record))
    }

    /// The principal of a request authenticated by a federated assertion (a JWT signed by
    /// the trust's peer): the trust's scopes and its policy resolved as for its keys
    /// ([`Store::resolve_key`]), key version 0. The trust must be an
    /// active inbound trust.
    pub async fn federated_principal(&self, r: &TrustRef) -> Result<Result<Principal, AuthFailure>, StoreError> {
        let t = self.trust(r).await?;
        if t.direction != Direction::Inbound {
            return Ok(Err(AuthFailure::NotInbound));
        }
        if t.status != TrustStatus::Active {
            return Ok(Err(AuthFailure::TrustSuspended));
        }
        // The same directory-wide privileged patterns as a key of this trust gets.
        let mut policy = t.policy;
        self.add_directory_privileged_groups(&mut policy, &t.directory_id, &t.id).await?;
        Ok(Ok(Principal {
            directory_id: t.directory_id,
            directory: t.directory,
            trust_id: t.id,
            trust: t.name,
            peer_kind: t.peer_kind,
            version: 0,
            scopes: t.scopes,
            policy: Arc::new(policy),
        }))
    }

    /// Authenticates an admin token. Failures are audited; successes are recorded by the
    /// operation the token performs.
    pub async fn authenticate_admin(
        &self,
        presented: Option<&str>,
        meta: &RequestMeta,
    ) -> Result<Result<AdminPrincipal, AuthFailure>, StoreError> {
        let now = self.now();
        let result = match presented {
            None => Err(AuthFailure::Missing),
            Some(p) => match token::parse(p) {
                Err(_) => Err(AuthFailure::Malformed),
                Ok(TokenKind::Provisioning) => Err(AuthFailure::WrongKind),
                Ok(TokenKind::Admin) => match self.resolve_admin(p).await? {
                    None => Err(AuthFailure::Unknown),
                    Some(t) if t.revoked => Err(AuthFailure::Revoked),
                    Some(t) if t.expires_at.is_some_and(|e| e <= now) => Err(AuthFailure::Expired),
                    Some(t) => Ok(t.principal),
                },
            },
        };
        match &result {
            Ok(p) => {
                // last_used_at rides on the next audit batch; no record of its own.
                let _ = &p.id;
            }
            Err(f) => {
                metrics::counter!("fedkey_auth_failures_total", "api" => "admin", "reason" => f.as_str()).increment(1);
                let mut d = json!({"reason": f.as_str()});
                if let Some(p) = presented {
                    d["presented"] = json!(self.install.fingerprint(p.as_bytes()));
                }
                let actor = Actor::anonymous("anonymous".into(), meta);
                self.record_auth_failure(self.event(&actor, "admin.authenticate", Outcome::Denied).details(d)).await?;
            }
        }
        Ok(result)
    }

    /// The row `sql` (one `$1` placeholder, selecting a `verifier` column) finds for `v`, if
    /// its stored verifier equals `v`. The index found it; the bytes are compared again in
    /// constant time, so no code path depends on a variable-time comparison of
    /// secret-derived bytes.
    pub(crate) async fn row_by_verifier(
        &self,
        sql: &'static str,
        v: &Verifier,
    ) -> Result<Option<sqlx::any::AnyRow>, StoreError> {
        let row = sqlx::query(sql).bind(v.0.to_vec()).fetch_optional(self.db.pool()).await?;
        let Some(row) = row else { return Ok(None) };
        let stored: Vec<u8> = row.try_get("verifier")?;
        Ok(fedkey_crypto::ct_eq(&stored, &v.0).then_some(row))
    }

    async fn resolve_admin(&self, presented: &str) -> Result<Option<TokenRecord>, StoreError> {
        let v = Verifier::of(presented);
        let generation = self.generation();
        if let Some(Cached::Token(t)) = self.auth_cache.get(&v, generation) {
            return Ok(Some(t));
        }
        let row = self
            .row_by_verifier(
                "SELECT id, name, role, verifier, expires_at, revoked_at FROM admin_tokens WHERE verifier = $1",
                &v,
            )
            .await?;
        let Some(row) = row else { return Ok(None) };
        let role: String = row.try_get("role")?;
        let rec = TokenRecord {
            verifier: v,
            principal: AdminPrincipal {
                id: row.try_get("id")?,
                name: row.try_get("name")?,
                role: role.parse().map_err(|_| StoreError::Corrupt("admin_tokens.role".into()))?,
            },
            expires_at: row.try_get::<Option<i64>, _>("expires_at")?.map(Timestamp),
            revoked: row.try_get::<Option<i64>, _>("revoked_at")?.is_some(),
        };
        let _ = rec.verifier;
        self.auth_cache.put(&v, Cached::Token(rec.clone()), generation);
        Ok(Some(rec))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(id: &str) -> Cached {
        Cached::Token(TokenRecord {
            verifier: Verifier([0; 32]),
            principal: AdminPrincipal { id: id.into(), name: id.into(), role: Role::Admin },
            expires_at: None,
            revoked: false,
        })
    }

    /// An entry as old as `age`, without waiting for it to age.
    fn put_aged(c: &AuthCache, v: &Verifier, value: Cached, generation: u64, age: Duration) {
        let loaded = Instant::now().checked_sub(age).unwrap();
        c.map.lock().unwrap().insert(v.0, Entry { value, loaded, generation });
    }

    #[test]
    fn a_tighter_age_bound_rereads_sooner_never_later() {
        let c = AuthCache::new(Duration::from_secs(5));
        let v = Verifier([7; 32]);
        put_aged(&c, &v, token("a"), 3, Duration::from_millis(1500));
        assert!(c.get(&v, 3).is_some(), "within the TTL");
        assert!(c.get_within(&v, 3, Duration::from_secs(1)).is_none(), "older than the tighter bound");
        assert!(c.get_within(&v, 3, Duration::from_secs(2)).is_some());
        assert!(c.get_within(&v, 3, Duration::from_secs(60)).is_some());
        assert!(c.get(&v, 4).is_none(), "another generation");
        put_aged(&c, &v, token("a"), 3, Duration::from_secs(6));
        assert!(c.get_within(&v, 3, Duration::from_secs(60)).is_none(), "the TTL still bounds a looser request");
    }
}
