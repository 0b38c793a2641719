//! Watches one trust's published keys: fetches on the document's cadence, keeps the
//! last-known-good version through failed fetches until its hard expiry, holds non-overlapping
//! material for approval, and refetches once (single flight, with a cooldown) on an unknown kid.
//!
//! The watcher persists nothing: every change is reported as a [`WatchEvent`] that the caller
//! audits and stores, and [`Watcher::restore`] loads the stored version back at start-up.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use fedkey_core::clock::{Clock, Timestamp};

use crate::fetch::{FetchError, FetchedDocument, Fetcher};
use crate::jwt::{self, Claims, JwtError, JwtPolicy};
use crate::limits::Limits;
use crate::material::{Material, MaterialKind, SigningKey, digest_hex};
use crate::parse::{ParseError, parse_jwks, parse_oidc_discovery, parse_saml_metadata};
use crate::policy::{Decision, RefreshPolicy, decide};

/// Where a trust's keys are published.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// An OIDC discovery document (`…/.well-known/openid-configuration`); keys come from its
    /// `jwks_uri`. With `expected_issuer`, a document naming another issuer is refused.
    OidcDiscovery { url: String, expected_issuer: Option<String> },
    /// A JWKS URL used directly; `issuer` is recorded on the material.
    Jwks { url: String, issuer: Option<String> },
    /// A SAML 2.0 metadata URL. With `expected_entity_id`, other entities are refused.
    SamlMetadata { url: String, expected_entity_id: Option<String> },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatcherConfig {
    pub source: Source,
    pub refresh: RefreshPolicy,
    pub limits: Limits,
    /// No second unknown-kid refetch within this long of the previous one.
    pub unknown_kid_cooldown: Duration,
}

impl WatcherConfig {
    pub fn new(source: Source) -> Self {
        Self {
            source,
            refresh: RefreshPolicy::default(),
            limits: Limits::default(),
            unknown_kid_cooldown: Duration::from_secs(5 * 60),
        }
    }
}

/// Why a refresh produced no usable material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RefreshError {
    #[error("fetch failed: {0}")]
    Fetch(#[from] FetchError),
    #[error("document rejected: {0}")]
    Parse(#[from] ParseError),
    #[error("document names {found:?}, expected {expected:?}")]
    IssuerMismatch { expected: String, found: String },
}

/// What a refresh did; the caller audits it and persists material versions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchEvent {
    /// New material became current (first fetch, or it overlaps the previous version).
    Accepted { material: Material },
    /// New material shares no key with the current version: held until approved or rejected.
    Held { material: Material },
    /// The same held material was fetched again (still waiting for a decision).
    StillHeld { material: Material },
    /// The document did not change; `material` is the current version with refreshed times.
    Unchanged { material: Material },
    /// The fetch failed; the last-known-good version (if any, and unexpired) stays in use.
    FetchFailed { error: RefreshError, kept_last_known_good: bool, consecutive_failures: u32, retry_at: Timestamp },
    /// The current version passed its hard expiry: no key is valid until new material arrives.
    Expired { material: Material },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyLookupError {
    #[error("no published signing key has kid {kid:?}")]
    UnknownKid { kid: String },
    #[error("no valid trust material (none fetched yet, or the last one expired)")]
    NoValidMaterial,
}

#[derive(Debug)]
struct State {
    current: Option<Material>,
    pending: Option<Material>,
    next_fetch_at: Timestamp,
    consecutive_failures: u32,
    last_unknown_kid_fetch: Option<Timestamp>,
    expiry_reported: bool,
    /// Events from fetches the caller did not start itself (unknown-kid refetches).
    side_events: Vec<WatchEvent>,
}

pub struct Watcher {
    config: WatcherConfig,
    fetcher: Fetcher,
    clock: Arc<dyn Clock>,
    state: Mutex<State>,
    /// Single flight: every fetch holds this, so concurrent callers share one.
    fetch_lock: tokio::sync::Mutex<()>,
}

impl Watcher {
    /// A watcher with no material yet; its first `refresh_if_due` fetches at once.
    pub fn new(config: WatcherConfig, fetcher: Fetcher, clock: Arc<dyn Clock>) -> Self {
        let next_fetch_at = clock.now();
        Self {
            config,
            fetcher,
            clock,
            state: Mutex::new(State {
                current: None,
                pending: None,
                next_fetch_at,
                consecutive_failures: 0,
                last_unknown_kid_fetch: None,
                expiry_reported: false,
                side_events: Vec::new(),
            }),
            fetch_lock: tokio::sync::Mutex::new(()),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic elsewhere while holding the lock leaves the state consistent (every update is
        // a plain assignment), so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub fn config(&self) -> &WatcherConfig {
        &self.config
    }

    /// Loads the stored current version (at start-up). The next refresh is due at once.
    pub fn restore(&self, material: Material) {
        let now = self.clock.now();
        let mut s = self.state();
        s.expiry_reported = false;
        s.current = Some(material);
        s.next_fetch_at = now;
    }

    /// Loads a stored version that was held for approval.
    pub fn restore_pending(&self, material: Material) {
        self.state().pending = Some(material);
    }

    /// The last-known-good version, even if expired (it stays the reference for the overlap rule).
    pub fn current(&self) -> Option<Material> {
        self.state().current.clone()
    }

    pub fn pending(&self) -> Option<Material> {
        self.state().pending.clone()
    }

    pub fn next_fetch_at(&self) -> Timestamp {
        self.state().next_fetch_at
    }

    pub fn consecutive_failures(&self) -> u32 {
        self.state().consecutive_failures
    }

    /// When the scheduler should call [`Self::refresh_if_due`] next: the next fetch, or the
    /// current version's expiry if that comes first.
    pub fn next_wakeup(&self) -> Timestamp {
        let s = self.state();
        match &s.current {
            Some(c) if !s.expiry_reported => s.next_fetch_at.min(c.expires_at),
            _ => s.next_fetch_at,
        }
    }

    /// Keys valid now: the current version's, or none once it has expired (fail closed).
    pub fn valid_keys(&self) -> Vec<SigningKey> {
        let now = self.clock.now();
        match &self.state().current {
            Some(c) if !c.is_expired(now) => c.keys.clone(),
            _ => Vec::new(),
        }
    }

    /// Takes the events of fetches that [`Self::key_for_kid`] triggered.
    pub fn drain_events(&self) -> Vec<WatchEvent> {
        std::mem::take(&mut self.state().side_events)
    }

    /// Called by the scheduler loop. Reports expiry first (once), then fetches if due. Returns
    /// `None` when nothing was due; call again until it does.
    pub async fn refresh_if_due(&self) -> Option<WatchEvent> {
        if let Some(expired) = self.take_expiry(self.clock.now()) {
            return Some(expired);
        }
        if self.clock.now() < self.next_fetch_at() {
            return None;
        }
        let _flight = self.fetch_lock.lock().await;
        // Another caller may have fetched while we waited.
        if self.clock.now() < self.next_fetch_at() {
            return None;
        }
        Some(self.fetch_and_apply().await)
    }

    /// Fetches now, whatever the schedule (an operator's "refresh now").
    pub async fn refresh_now(&self) -> WatchEvent {
        let _flight = self.fetch_lock.lock().await;
        self.fetch_and_apply().await
    }

    /// The valid key with this kid. On a miss, refetches once (concurrent callers share the
    /// fetch), unless the previous unknown-kid refetch is younger than the cooldown.
    pub async fn key_for_kid(&self, kid: &str) -> Result<SigningKey, KeyLookupError> {
        if let Some(key) = self.valid_key(kid) {
            return Ok(key);
        }
        let _flight = self.fetch_lock.lock().await;
        if let Some(key) = self.valid_key(kid) {
            return Ok(key);
        }
        let now = self.clock.now();
        let cooling = {
            let mut s = self.state();
            let cooling = s
                .last_unknown_kid_fetch
                .is_some_and(|last| now < last.saturating_add(self.config.unknown_kid_cooldown));
            if !cooling {
                s.last_unknown_kid_fetch = Some(now);
            }
            cooling
        };
        if !cooling {
            let event = self.fetch_and_apply().await;
            self.state().side_events.push(event);
        }
        self.valid_key(kid).ok_or_else(|| self.miss(kid))
    }

    /// Verifies a JWT assertion against the valid keys. A kid that is not (yet) known triggers
    /// [`Self::key_for_kid`] (one refetch, single flight, cooldown) and one more verification,
    /// so a key the IdP has just rotated in is accepted as soon as it is published.
    pub async fn verify_jwt(&self, token: &str, policy: &JwtPolicy) -> Result<Claims, JwtError> {
        match jwt::verify(token, policy, &self.valid_keys(), self.clock.now()) {
            Err(JwtError::UnknownKid(kid)) => {
                // The error is re-derived below; the lookup only matters for its refetch.
                let _ = self.key_for_kid(&kid).await;
                jwt::verify(token, policy, &self.valid_keys(), self.clock.now())
            }
            other => other,
        }
    }

    /// Makes the held material current. Returns it, or `None` if nothing was held.
    pub fn approve_pending(&self) -> Option<Material> {
        let mut s = self.state();
        let approved = s.pending.take()?;
        s.current = Some(approved.clone());
        s.expiry_reported = false;
        Some(approved)
    }

    /// Drops the held material. Returns it, or `None` if nothing was held.
    pub fn reject_pending(&self) -> Option<Material> {
        self.state().pending.take()
    }

    fn valid_key(&self, kid: &str) -> Option<SigningKey> {
        let now = self.clock.now();
        let s = self.state();
        s.current.as_ref().filter(|c| !c.is_expired(now)).and_then(|c| c.key_by_kid(kid)).cloned()
    }

    fn miss(&self, kid: &str) -> KeyLookupError {
        let now = self.clock.now();
        match &self.state().current {
            Some(c) if !c.is_expired(now) => KeyLookupError::UnknownKid { kid: kid.to_owned() },
            _ => KeyLookupError::NoValidMaterial,
        }
    }

    fn take_expiry(&self, now: Timestamp) -> Option<WatchEvent> {
        let mut s = self.state();
        let expired = s.current.as_ref().filter(|c| c.is_expired(now))?.clone();
        if s.expiry_reported {
            return None;
        }
        s.expiry_reported = true;
        tracing::warn!(issuer = ?expired.issuer, "trust material expired; no key is valid until new material is accepted");
        Some(WatchEvent::Expired { material: expired })
    }

    async fn fetch_and_apply(&self) -> WatchEvent {
        let now = self.clock.now();
        match self.fetch_material(now).await {
            Ok(material) => self.apply(material),
            Err(error) => self.fail(error, now),
        }
    }

    fn apply(&self, new: Material) -> WatchEvent {
        let mut s = self.state();
        s.consecutive_failures = 0;
        s.next_fetch_at = new.refresh_at;
        match decide(s.current.as_ref(), &new) {
            Decision::Unchanged => {
                // The IdP still publishes this version: it stays good for another lifetime,
                // and anything held is no longer what the IdP serves.
                s.pending = None;
                s.expiry_reported = false;
                let Some(current) = s.current.as_mut() else { return WatchEvent::Accepted { material: new } };
                current.fetched_at = new.fetched_at;
                current.refresh_at = new.refresh_at;
                current.expires_at = new.expires_at;
                WatchEvent::Unchanged { material: current.clone() }
            }
            Decision::Accept => {
                s.current = Some(new.clone());
                s.pending = None;
                s.expiry_reported = false;
                WatchEvent::Accepted { material: new }
            }
            Decision::HoldForApproval => {
                if s.pending.as_ref().is_some_and(|p| p.digest == new.digest) {
                    s.pending = Some(new.clone());
                    return WatchEvent::StillHeld { material: new };
                }
                tracing::warn!(issuer = ?new.issuer, "new trust material shares no key with the current version; held for approval");
                s.pending = Some(new.clone());
                WatchEvent::Held { material: new }
            }
        }
    }

    fn fail(&self, error: RefreshError, now: Timestamp) -> WatchEvent {
        let mut s = self.state();
        s.consecutive_failures = s.consecutive_failures.saturating_add(1);
        let retry_at = now.saturating_add(self.config.refresh.backoff(s.consecutive_failures));
        s.next_fetch_at = retry_at;
        let kept_last_known_good = s.current.as_ref().is_some_and(|c| !c.is_expired(now));
        tracing::warn!(%error, kept_last_known_good, failures = s.consecutive_failures, "trust material refresh failed");
        WatchEvent::FetchFailed { error, kept_last_known_good, consecutive_failures: s.consecutive_failures, retry_at }
    }

    async fn fetch_material(&self, now: Timestamp) -> Result<Material, RefreshError> {
        let limits = &self.config.limits;
        let policy = &self.config.refresh;
        match &self.config.source {
            Source::OidcDiscovery { url, expected_issuer } => {
                let doc = self.fetcher.get(url).await?;
                let discovery = parse_oidc_discovery(&doc.body, limits)?;
                if let Some(expected) = expected_issuer
                    && *expected != discovery.issuer
                {
                    return Err(RefreshError::IssuerMismatch { expected: expected.clone(), found: discovery.issuer });
                }
                // The document names where the keys are: that URL must be as safe as its own.
                let doc = self.fetcher.get_derived(url, &discovery.jwks_uri).await?;
                self.jwks_material(doc, Some(discovery.issuer), now)
            }
            Source::Jwks { url, issuer } => {
                let doc = self.fetcher.get(url).await?;
                self.jwks_material(doc, issuer.clone(), now)
            }
            Source::SamlMetadata { url, expected_entity_id } => {
                let doc = self.fetcher.get(url).await?;
                let meta = parse_saml_metadata(&doc.body, now, limits)?;
                if let Some(expected) = expected_entity_id
                    && *expected != meta.entity_id
                {
                    return Err(RefreshError::IssuerMismatch { expected: expected.clone(), found: meta.entity_id });
                }
                let lifetime = policy.saml_lifetime(now, meta.cache_duration, meta.valid_until);
                let expires_at = meta.valid_until.unwrap_or_else(|| now.saturating_add(policy.max_stale));
                let refresh_at = now.saturating_add(policy.refresh_after(lifetime)).min(expires_at);
                Ok(Material {
                    kind: MaterialKind::SamlMetadata,
                    keys: meta.keys,
                    digest: digest_hex(&doc.body),
                    fetched_at: now,
                    refresh_at,
                    expires_at,
                    issuer: Some(meta.entity_id),
                })
            }
        }
    }

    fn jwks_material(
        &self,
        doc: FetchedDocument,
        issuer: Option<String>,
        now: Timestamp,
    ) -> Result<Material, RefreshError> {
        let policy = &self.config.refresh;
        let keys = parse_jwks(&doc.body, &self.config.limits)?;
        let lifetime = policy.jwks_lifetime(doc.cache_control.as_deref());
        Ok(Material {
            kind: MaterialKind::Jwks,
            keys,
            digest: digest_hex(&doc.body),
            fetched_at: now,
            refresh_at: now.saturating_add(policy.refresh_after(lifetime)),
            expires_at: now.saturating_add(policy.max_stale),
            issuer,
        })
    }
}
