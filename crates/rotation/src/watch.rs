//! Trust-material watchers for every trust with a configured source, persisted and
//! audited through the store, and federated (JWT) authentication of inbound SCIM requests
//! against the watched keys.
//!
//! One node at a time fetches a trust's material (a lease); every node serves JWT
//! verification from the version the store holds, reloading it when another node records
//! a new one. An unknown `kid` triggers one refetch on the node that saw it.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use fedkey_audit::Outcome;
use fedkey_core::{Clock, Timestamp, TrustRef};
use fedkey_egress::{Egress, UrlRules};
use fedkey_federation::{
    FetchConfig, Fetcher, JwtError, JwtPolicy, Material, Source, WatchEvent, Watcher, WatcherConfig,
};
use fedkey_store::auth::{Principal, RequestMeta};
use fedkey_store::ops::{Arrival, NewMaterial, TrustSource};
use fedkey_store::{Actor, Store, StoreError};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::RwLock;

use crate::alert::{AlertKind, Alerter};

/// A trust's source as configured through the API (`material.source`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    /// OIDC discovery document (`…/.well-known/openid-configuration`); its `jwks_uri` is watched.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub discovery_url: Option<String>,
    /// A JWKS URL, watched directly.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks_url: Option<String>,
    /// SAML metadata (one EntityDescriptor).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub saml_metadata_url: Option<String>,
    /// The issuer / entityID the document must name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    /// Lab opt-in: plain http to a host that is not loopback. A `jwks_uri` named by an https
    /// discovery document is still never plain http.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_http: bool,
    /// Accept bearer JWTs signed by the watched keys on this inbound trust's SCIM endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwt: Option<JwtConfig>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtConfig {
    /// Exact `iss`.
    pub issuer: String,
    /// `aud` must contain one of these.
    pub audiences: Vec<String>,
    /// Allowed `alg` values (default RS256/384/512, PS256, ES256/384, EdDSA). `none` and HS*
    /// are never accepted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub algorithms: Option<Vec<String>>,
    /// Clock skew tolerated (default 60s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leeway: Option<String>,
    /// Longest accepted token lifetime (default 1h).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_lifetime: Option<String>,
    /// Accepted `sub` values (the IdP's provisioning identity); empty: any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subjects: Vec<String>,
    /// Accepted client applications (`azp`, Entra v1 `appid`, Okta `cid`); empty: any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub client_ids: Vec<String>,
    /// Required header `typ` (e.g. `JWT`, `at+jwt`); none: any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_type: Option<String>,
}

impl SourceConfig {
    /// Parses and checks a configuration; the error says what to fix. The URL must pass
    /// the egress policy (https unless loopback or `allow_http`, no denied address).
    pub fn parse(v: &Value, egress: &Egress) -> Result<SourceConfig, String> {
        let c: SourceConfig = serde_json::from_value(v.clone()).map_err(|e| format!("trust source: {e}"))?;
        c.source(egress)?;
        c.jwt_policy()?;
        Ok(c)
    }

    pub fn source(&self, egress: &Egress) -> Result<Source, String> {
        let rules = UrlRules { allow_http: self.allow_http };
        let check = |u: &str| -> Result<String, String> {
            egress.check_url(u, rules).map(|_| u.to_owned()).map_err(|e| format!("trust material source: {e}"))
        };
        match (&self.discovery_url, &self.jwks_url, &self.saml_metadata_url) {
            (Some(u), None, None) => Ok(Source::OidcDiscovery { url: check(u)?, expected_issuer: self.issuer.clone() }),
            (None, Some(u), None) => Ok(Source::Jwks { url: check(u)?, issuer: self.issuer.clone() }),
            (None, None, Some(u)) => {
                Ok(Source::SamlMetadata { url: check(u)?, expected_entity_id: self.issuer.clone() })
            }
            _ => Err("give exactly one of discovery_url, jwks_url, saml_metadata_url".into()),
        }
    }

    pub fn jwt_policy(&self) -> Result<Option<JwtPolicy>, String> {
        let Some(j) = &self.jwt else { return Ok(None) };
        if self.saml_metadata_url.is_some() {
            return Err("jwt needs a JWKS source (discovery_url or jwks_url), not SAML metadata".into());
        }
        if j.issuer.is_empty() || j.audiences.is_empty() {
            return Err("jwt: issuer and at least one audience are required".into());
        }
        let mut p = JwtPolicy::new(j.issuer.clone(), j.audiences.clone());
        if let Some(algs) = &j.algorithms {
            if let Some(a) =
                algs.iter().find(|a| a.eq_ignore_ascii_case("none") || a.to_ascii_uppercase().starts_with("HS"))
            {
                return Err(format!("jwt: algorithm {a:?} is never accepted (shared-secret or unsigned tokens)"));
            }
            p.allowed_algs = algs
                .iter()
                .map(|a| a.parse().map_err(|_| format!("jwt: unknown algorithm {a:?}")))
                .collect::<Result<_, String>>()?;
        }
        let dur = |field: &str, v: &Option<String>, default: Duration| -> Result<Duration, String> {
            v.as_deref()
                .map(|s| humantime_parse(s).ok_or_else(|| format!("jwt.{field}: {s:?} is not a duration")))
                .transpose()
                .map(|d| d.unwrap_or(default))
        };
        p.leeway = dur("leeway", &j.leeway, p.leeway)?;
        p.max_lifetime = dur("max_lifetime", &j.max_lifetime, p.max_lifetime)?;
        for (field, values) in [("subjects", &j.subjects), ("client_ids", &j.client_ids)] {
            if values.iter().any(|v| v.trim().is_empty() || v.len() > 256) {
                return Err(format!("jwt.{field}: each value is 1 to 256 characters"));
            }
        }
        if j.token_type.as_deref().is_some_and(|t| t.trim().is_empty() || t.len() > 64) {
            return Err("jwt.token_type: 1 to 64 characters".into());
        }
        p.subjects = j.subjects.clone();
        p.client_ids = j.client_ids.clone();
        p.token_type = j.token_type.clone();
        Ok(Some(p))
    }
}

fn humantime_parse(s: &str) -> Option<Duration> {
    humantime::parse_duration(s.trim()).ok()
}

struct Entry {
    trust: TrustRef,
    trust_id: String,
    config: SourceConfig,
    watcher: Watcher,
    jwt: Option<JwtPolicy>,
}

/// What one pass did.
#[derive(Debug, Default, Clone, Serialize)]
pub struct WatchReport {
    pub watched: usize,
    pub accepted: usize,
    pub held: usize,
    pub failed: usize,
    pub expired: usize,
}

pub struct Watchers {
    store: Arc<Store>,
    clock: Arc<dyn Clock>,
    alerts: Alerter,
    node_id: String,
    fetch: FetchConfig,
    egress: Egress,
    entries: RwLock<HashMap<String, Arc<Entry>>>,
    actor: Actor,
    /// One pass at a time in this process (background loop and explicit ticks).
    pass: tokio::sync::Mutex<()>,
}

impl Watchers {
    /// Every fetch goes through `egress`.
    pub fn new(store: Arc<Store>, clock: Arc<dyn Clock>, alerts: Alerter, node_id: String, egress: Egress) -> Watchers {
        Watchers {
            store,
            clock,
            alerts,
            node_id,
            fetch: FetchConfig::default(),
            egress,
            entries: RwLock::new(HashMap::new()),
            actor: Actor::system("material"),
            pass: tokio::sync::Mutex::new(()),
        }
    }

    /// Loads the configured sources: new ones get a watcher (restored from the store), removed
    /// ones are dropped, changed ones are rebuilt; a version another node recorded is loaded.
    pub async fn sync_sources(&self) -> Result<(), StoreError> {
        let sources = self.store.trust_sources().await?;
        let mut entries = self.entries.write().await;
        entries.retain(|id, _| sources.iter().any(|s| &s.trust_id == id));
        for src in sources {
            let Ok(config) = SourceConfig::parse(&src.config, &self.egress) else {
                tracing::warn!(trust = %src.trust, "stored trust source is invalid; not watched");
                continue;
            };
            let stale = entries.get(&src.trust_id).is_none_or(|e| e.config != config);
            if stale && let Some(e) = self.entry(&src, config)? {
                entries.insert(src.trust_id.clone(), Arc::new(e));
            }
            if let Some(e) = entries.get(&src.trust_id) {
                self.reload_if_changed(e).await?;
            }
        }
        Ok(())
    }

    fn entry(&self, src: &TrustSource, config: SourceConfig) -> Result<Option<Entry>, StoreError> {
        let (Ok(source), Ok(jwt)) = (config.source(&self.egress), config.jwt_policy()) else { return Ok(None) };
        let fetch = FetchConfig { allow_http: config.allow_http, ..self.fetch };
        let fetcher = Fetcher::new(self.egress.clone(), fetch);
        let watcher = Watcher::new(WatcherConfig::new(source), fetcher, self.clock.clone());
        Ok(Some(Entry { trust: src.trust.clone(), trust_id: src.trust_id.clone(), config, watcher, jwt }))
    }

    /// Brings a watcher in line with the store's current and pending versions.
    async fn reload_if_changed(&self, e: &Entry) -> Result<(), StoreError> {
        let versions = self.store.material_versions(&e.trust, 5).await?;
        let stored = |status: &str| {
            versions
                .iter()
                .find(|v| v.status == status)
                .and_then(|v| serde_json::from_value::<Material>(v.material.clone()).ok())
        };
        // An expired version stays the reference for the overlap rule after a restart, so
        // expiry never lets unrelated keys in without approval.
        let reference = stored("current").or_else(|| stored("expired"));
        if let Some(cur) = reference
            && e.watcher.current().is_none_or(|m| m.digest != cur.digest || m.expires_at != cur.expires_at)
        {
            e.watcher.restore(cur);
        }
        match stored("pending") {
            Some(p) if e.watcher.pending().is_none_or(|m| m.digest != p.digest) => e.watcher.restore_pending(p),
            None if e.watcher.pending().is_some() => {
                e.watcher.reject_pending();
            }
            _ => {}
        }
        Ok(())
    }

    /// One pass: sync sources, then refresh every due watcher this node holds the lease of.
    pub async fn tick(&self) -> Result<WatchReport, StoreError> {
        let _pass = self.pass.lock().await;
        self.sync_sources().await?;
        let entries: Vec<Arc<Entry>> = self.entries.read().await.values().cloned().collect();
        let mut report = WatchReport { watched: entries.len(), ..Default::default() };
        for e in entries {
            let lease = format!("material:{}", e.trust_id);
            if !self.store.acquire_lease(&lease, &self.node_id, Duration::from_secs(60)).await? {
                continue;
            }
            let mut events = e.watcher.drain_events();
            for _ in 0..4 {
                match e.watcher.refresh_if_due().await {
                    Some(ev) => events.push(ev),
                    None => break,
                }
            }
            for ev in events {
                self.handle(&e, ev, &mut report).await?;
            }
        }
        Ok(report)
    }

    /// Runs [`Watchers::tick`] every `every` until dropped.
    pub async fn run(self: Arc<Self>, every: Duration) {
        crate::engine::periodically(every, "trust material", || self.tick()).await
    }

    async fn handle(&self, e: &Entry, ev: WatchEvent, report: &mut WatchReport) -> Result<(), StoreError> {
        let r = &e.trust;
        match ev {
            WatchEvent::Accepted { material } => {
                report.accepted += 1;
                let first = self.store.material_versions(r, 1).await?.is_empty();
                if !self.already_stored(r, &material, "current").await? {
                    self.record(r, Arrival::Accepted, &material).await?;
                }
                if !first {
                    self.maybe_rotate(r).await?;
                }
            }
            WatchEvent::Held { material } => {
                report.held += 1;
                if !self.already_stored(r, &material, "pending").await? {
                    self.record(r, Arrival::Held, &material).await?;
                }
                let d = json!({"trust": r.to_string(), "digest": material.digest, "keys": material.keys.len()});
                self.alerts.raise(AlertKind::MaterialHeld, d).await;
            }
            WatchEvent::Unchanged { material } => {
                // New refresh and expiry times for the same keys: other nodes and restarts
                // must not see the version as stale or expired.
                let value = serde_json::to_value(&material).map_err(|e| StoreError::Config(e.to_string()))?;
                self.store.touch_material(r, &material.digest, &value, Some(material.expires_at)).await?;
                // The IdP went back to the trusted keys: a held version is no longer on offer.
                if e.watcher.pending().is_none() && self.already_pending(r).await? {
                    self.store.reject_material(&self.actor, r).await?;
                }
            }
            WatchEvent::StillHeld { .. } => {}
            WatchEvent::FetchFailed { error, kept_last_known_good, consecutive_failures, retry_at } => {
                report.failed += 1;
                let ev = self
                    .store
                    .event(&self.actor, "material.fetch_failed", Outcome::Failure)
                    .directory(&r.directory)
                    .trust(&r.trust)
                    .details(json!({
                        "error": error.to_string(), "kept_last_known_good": kept_last_known_good,
                        "consecutive_failures": consecutive_failures, "retry_at": retry_at.to_rfc3339(),
                    }));
                self.store.audit.record(ev, None).await?;
            }
            WatchEvent::Expired { material } => {
                report.expired += 1;
                self.store.expire_material(&self.actor, r, "no successful refresh before the hard expiry").await?;
                let d = json!({"trust": r.to_string(), "expired_at": material.expires_at.to_rfc3339()});
                self.alerts.raise(AlertKind::MaterialExpired, d).await;
            }
        }
        Ok(())
    }

    async fn already_pending(&self, r: &TrustRef) -> Result<bool, StoreError> {
        Ok(self.store.material_versions(r, 5).await?.iter().any(|v| v.status == "pending"))
    }

    async fn already_stored(&self, r: &TrustRef, m: &Material, status: &str) -> Result<bool, StoreError> {
        let versions = self.store.material_versions(r, 5).await?;
        Ok(versions.iter().any(|v| v.status == status && v.digest == m.digest))
    }

    async fn record(&self, r: &TrustRef, arrival: Arrival, m: &Material) -> Result<(), StoreError> {
        let value = serde_json::to_value(m).map_err(|e| StoreError::Config(e.to_string()))?;
        let new = NewMaterial {
            arrival,
            digest: &m.digest,
            material: &value,
            fetched_at: m.fetched_at,
            expires_at: Some(m.expires_at),
        };
        self.store.record_material(&self.actor, r, new).await.map(|_| ())
    }

    /// A change of the peer's keys can rotate the provisioning key too (policy option).
    async fn maybe_rotate(&self, r: &TrustRef) -> Result<(), StoreError> {
        let Some(p) = self.store.rotation_policy(r).await? else { return Ok(()) };
        if !p.policy.rotate_on_material_change {
            return Ok(());
        }
        match self.store.start_rotation(&self.actor, r, fedkey_core::RotationKind::Material, None).await {
            Ok(_) | Err(StoreError::InvalidState(_)) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Approves held material: it becomes current here and in the store.
    pub async fn approve(&self, actor: &Actor, r: &TrustRef) -> Result<fedkey_store::ops::MaterialVersion, StoreError> {
        let v = self.store.approve_material(actor, r).await?;
        self.sync_sources().await?;
        self.maybe_rotate(r).await?;
        Ok(v)
    }

    pub async fn reject(&self, actor: &Actor, r: &TrustRef) -> Result<fedkey_store::ops::MaterialVersion, StoreError> {
        let v = self.store.reject_material(actor, r).await?;
        self.sync_sources().await?;
        Ok(v)
    }

    /// Authenticates a bearer JWT for `directory` against the trusts that accept them.
    /// Every attempt is audited (`key.authenticate`, method `jwt`). The outer error means
    /// the attempt could not be audited (deny).
    pub async fn authenticate(
        &self,
        directory: &str,
        token: &str,
        meta: &RequestMeta,
    ) -> Result<Result<Principal, String>, StoreError> {
        let candidates: Vec<Arc<Entry>> = self
            .entries
            .read()
            .await
            .values()
            .filter(|e| e.trust.directory == directory && e.jwt.is_some())
            .cloned()
            .collect();
        let mut last: Option<(Arc<Entry>, JwtError)> = None;
        for e in candidates {
            let Some(policy) = &e.jwt else { continue };
            match e.watcher.verify_jwt(token, policy).await {
                Ok(claims) => {
                    // Kept until the token is unusable: its expiry plus the tolerated skew.
                    let exp = Timestamp(claims.exp.saturating_mul(1_000_000)).saturating_add(policy.leeway);
                    let fresh = match &claims.jti {
                        Some(jti) => self.store.remember_jti(&e.trust_id, jti, exp).await?,
                        None => true,
                    };
                    let details = json!({
                        "method": "jwt", "iss": claims.iss, "sub": claims.sub, "kid": claims.kid,
                        "jti": claims.jti.as_deref().map(|j| self.store.install.fingerprint(j.as_bytes())),
                    });
                    if !fresh {
                        self.audit_auth(directory, Some(&e.trust), Err("jwt_replayed"), details, meta).await?;
                        return Ok(Err(JwtError::Replayed.to_string()));
                    }
                    return match self.store.federated_principal(&e.trust).await? {
                        Ok(p) => {
                            self.audit_auth(directory, Some(&e.trust), Ok(()), details, meta).await?;
                            Ok(Ok(p))
                        }
                        Err(f) => {
                            self.audit_auth(directory, Some(&e.trust), Err(f.as_str()), details, meta).await?;
                            Ok(Err(f.as_str().to_owned()))
                        }
                    };
                }
                Err(err) => {
                    // A token for another trust's issuer fails there with BadIssuer; keep the
                    // most telling error.
                    if last.as_ref().is_none_or(|(_, l)| matches!(l, JwtError::BadIssuer { .. })) {
                        last = Some((e.clone(), err));
                    }
                }
            }
        }
        let (trust, reason) = match &last {
            Some((e, err)) => (Some(&e.trust), err.to_string()),
            None => (None, "no trust of this directory accepts JWT assertions".to_owned()),
        };
        let details =
            json!({"method": "jwt", "error": reason, "presented": self.store.install.fingerprint(token.as_bytes())});
        self.audit_auth(directory, trust, Err("jwt_rejected"), details, meta).await?;
        Ok(Err(reason))
    }

    async fn audit_auth(
        &self,
        directory: &str,
        trust: Option<&TrustRef>,
        result: Result<(), &str>,
        mut details: Value,
        meta: &RequestMeta,
    ) -> Result<(), StoreError> {
        let actor_id = trust.map_or_else(|| "anonymous".to_owned(), |t| format!("jwt:{t}"));
        let actor = Actor::anonymous(actor_id, meta);
        let outcome = if result.is_ok() { Outcome::Success } else { Outcome::Denied };
        if let Err(reason) = result {
            details["reason"] = json!(reason);
        }
        let mut ev = self
            .store
            .event(&actor, "key.authenticate", outcome)
            .directory(directory.chars().take(64).collect::<String>())
            .details(details);
        if let Some(t) = trust {
            ev = ev.trust(t.trust.clone());
        }
        let o = if result.is_ok() { "success" } else { "denied" };
        metrics::counter!("fedkey_jwt_authentications_total", "outcome" => o).increment(1);
        if result.is_err() {
            metrics::counter!("fedkey_auth_failures_total", "api" => "scim", "reason" => "assertion_rejected")
                .increment(1);
        }
        match result {
            Ok(()) => self.store.audit.record(ev, None).await.map(|_| ()),
            Err(_) => self.store.record_auth_failure(ev).await.map(|_| ()),
        }
    }
}
