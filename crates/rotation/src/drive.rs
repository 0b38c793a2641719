//! Driving one rotation through its persisted steps. Each step commits before the next
//! starts; every external call is idempotent, so repeating a step after a crash is safe.

use std::time::Duration;

use fedkey_connectors::{Connector, ConnectorError, Delivery, Validation as Checked};
use fedkey_core::rotation::{RotationPolicy, retry_delay};
use fedkey_core::{RotationStep, Timestamp, Validation};
use fedkey_store::{ConnectorRow, Rotation, StoreError};
use serde_json::json;

use crate::alert::AlertKind;
use crate::engine::Engine;

pub(crate) enum Outcome {
    /// Moved forward, and is waiting for its next step to come due.
    Advanced,
    Finished,
    /// Waiting for the peer (first use); not a failure.
    Waiting,
    /// The step failed; the rotation retries later.
    Failed,
}

impl Engine {
    pub(crate) async fn drive(&self, mut rot: Rotation) -> Result<Outcome, StoreError> {
        let policy = self.store.rotation_policy(&rot.trust_ref()).await?.map(|p| p.policy).unwrap_or_default();
        let mut moved = false;
        loop {
            let result = match rot.step {
                RotationStep::Set => self.set(&rot).await?,
                RotationStep::Test => self.test(&rot, &policy).await?,
                RotationStep::Finish => {
                    let retire_now = policy.finish_on_first_use && self.used_since_start(&rot).await?;
                    self.store.finish_rotation(&self.actor, &rot, retire_now).await?;
                    tracing::info!(trust = %rot.trust_ref(), version = rot.version, "rotation finished");
                    self.failpoint("after-finish").await;
                    return Ok(Outcome::Finished);
                }
                RotationStep::Done | RotationStep::Canceled => return Ok(Outcome::Finished),
            };
            match result {
                StepResult::Next(to, details) => {
                    let from = rot.step;
                    self.store.advance_rotation(&self.actor, &rot, from, to, details).await?;
                    self.failpoint(&format!("after-{from}")).await;
                    rot = self.store.rotation_by_id(&rot.id).await?;
                    moved = true;
                }
                StepResult::Wait(until) => {
                    self.store.postpone_rotation(&rot, until).await?;
                    return Ok(if moved { Outcome::Advanced } else { Outcome::Waiting });
                }
                StepResult::Fail { error, retry_after } => {
                    self.fail(&rot, &error, retry_after).await?;
                    return Ok(Outcome::Failed);
                }
            }
        }
    }

    /// Step `set`: deliver the staged key through every connector that has not yet
    /// confirmed it.
    async fn set(&self, rot: &Rotation) -> Result<StepResult, StoreError> {
        let r = rot.trust_ref();
        let connectors = self.store.list_connectors(&r).await?;
        if connectors.is_empty() {
            return Ok(StepResult::fail(format!(
                "{r} has no connector to deliver version {} with; add one (`fedkey connector add`) or cancel the rotation",
                rot.version
            )));
        }
        let key = self.store.staged_key(&self.actor, rot).await?;
        let scim_base_url = self.scim_base_url(&r.directory);
        for c in connectors.iter().filter(|c| !rot.deliveries.iter().any(|d| d.connector_id == c.id)) {
            if c.kind == crate::wiring::WRAPPED_LINK {
                match self.deliver_wrapped(rot, c, &key).await? {
                    Ok(receipt) => {
                        self.store.record_delivery(&self.actor, rot, c, &receipt.to_string()).await?;
                        delivered(c);
                    }
                    Err(e) => return self.connector_failed(c, e, None).await,
                }
                continue;
            }
            let connector = match self.connector(c).await? {
                Ok(x) => x,
                Err(e) => return self.connector_failed(c, e, None).await,
            };
            let trust = r.to_string();
            let delivery =
                Delivery { trust: &trust, version: version_u32(rot.version), key: &key, scim_base_url: &scim_base_url };
            match connector.deliver(&delivery, self.store.now()).await {
                Ok(receipt) => {
                    self.failpoint("after-deliver").await;
                    let receipt = serde_json::to_string(&receipt).unwrap_or_default();
                    self.store.record_delivery(&self.actor, rot, c, &receipt).await?;
                    delivered(c);
                }
                Err(e) => return self.connector_error(c, e).await,
            }
        }
        Ok(StepResult::Next(
            RotationStep::Test,
            json!({"delivered_by": connectors.iter().map(|c| &c.name).collect::<Vec<_>>()}),
        ))
    }

    /// Step `test`: prove the new version works before it is promoted.
    async fn test(&self, rot: &Rotation, policy: &RotationPolicy) -> Result<StepResult, StoreError> {
        let mut how = policy.validation;
        if how == Validation::Connector {
            let r = rot.trust_ref();
            let key = self.store.staged_key(&self.actor, rot).await?;
            let scim_base_url = self.scim_base_url(&r.directory);
            let trust = r.to_string();
            let delivery =
                Delivery { trust: &trust, version: version_u32(rot.version), key: &key, scim_base_url: &scim_base_url };
            let mut verified = Vec::new();
            for c in self.store.list_connectors(&r).await? {
                if c.kind == crate::wiring::WRAPPED_LINK {
                    continue; // a person sets the key; the peer's first use proves it
                }
                let connector = match self.connector(&c).await? {
                    Ok(x) => x,
                    Err(e) => return self.connector_failed(&c, e, None).await,
                };
                match connector.validate(&delivery, self.store.now()).await {
                    Ok(Checked::Verified) => verified.push(c.name.clone()),
                    Ok(Checked::NotSupported) => {}
                    Err(e) => return self.connector_error(&c, e).await,
                }
            }
            if !verified.is_empty() {
                return Ok(StepResult::Next(RotationStep::Finish, json!({"validated_by": verified})));
            }
            // No connector can validate: the peer's first use is the proof.
            how = Validation::FirstUse;
        }
        match how {
            Validation::None => Ok(StepResult::Next(RotationStep::Finish, json!({"validation": "none"}))),
            Validation::FirstUse | Validation::Connector => {
                if self.used_since_start(rot).await? {
                    return Ok(StepResult::Next(RotationStep::Finish, json!({"validated_by": "first use"})));
                }
                let now = self.store.now();
                let deadline = rot.updated_at.saturating_add(policy.validation_timeout);
                if rot.attempts == 0 && now < deadline {
                    let poll = self.cfg.first_use_poll.min(policy.validation_timeout);
                    return Ok(StepResult::Wait(now.saturating_add(poll).min(deadline)));
                }
                Ok(StepResult::fail(format!(
                    "the peer has not used version {} within {}; check the connector's target, or cancel the rotation",
                    rot.version,
                    humanise(policy.validation_timeout)
                )))
            }
        }
    }

    /// Seals the key behind a single-use link and sends the link (signed) to the
    /// connector's `notify_url`.
    async fn deliver_wrapped(
        &self,
        rot: &Rotation,
        c: &ConnectorRow,
        key: &fedkey_crypto::Secret,
    ) -> Result<Result<serde_json::Value, String>, StoreError> {
        let spec = match crate::wiring::WrappedLinkSpec::parse(&c.spec, &self.egress) {
            Ok(s) => s,
            Err(e) => return Ok(Err(e)),
        };
        let creds = self.store.connector_credentials(&self.actor, c).await?;
        let (secret, ttl) = match (crate::wiring::WrappedLinkSpec::signing_secret(creds.as_ref()), spec.ttl()) {
            (Ok(s), Ok(t)) => (s, t),
            (Err(e), _) | (_, Err(e)) => return Ok(Err(e)),
        };
        let link = self.store.wrap_key(&self.actor, &rot.trust_ref(), rot.version, key, ttl).await?;
        let url = format!("{}/unwrap/{}", self.cfg.public_url.trim_end_matches('/'), link.token.expose());
        let now = self.store.now();
        let body = json!({
            "trust": rot.trust_ref().to_string(), "version": rot.version, "link": url,
            "expires_at": link.expires_at.to_rfc3339(), "single_use": true,
        })
        .to_string();
        let ts = now.0 / 1_000_000;
        let sig = fedkey_connectors::webhook::sign(secret.expose().as_bytes(), ts, body.as_bytes());
        let sent = match self.notify_request(&spec.notify_url) {
            Ok(req) => {
                let req = req
                    .header("content-type", "application/json")
                    .header(fedkey_connectors::webhook::TIMESTAMP_HEADER, ts.to_string())
                    .header(fedkey_connectors::webhook::SIGNATURE_HEADER, sig)
                    .body(body);
                self.egress.send(req, self.cfg.connector_timeout).await
            }
            Err(e) => Err(e),
        };
        let failed = match sent {
            Ok(r) if r.status().is_success() => {
                return Ok(Ok(json!({"kind": "wrapped_link", "expires_at": link.expires_at.to_rfc3339()})));
            }
            Ok(r) => format!("the notify_url answered HTTP {}", r.status().as_u16()),
            Err(fedkey_egress::EgressError::Timeout(_)) => "the notify_url did not answer in time".to_owned(),
            Err(e) => format!("the notify_url: {e}"),
        };
        // A link nobody received must not stay usable; the retry makes a new one.
        self.store.discard_wrap(&link.token).await?;
        Ok(Err(failed))
    }

    fn notify_request(&self, url: &str) -> Result<fedkey_egress::RequestBuilder, fedkey_egress::EgressError> {
        let url = self.egress.check_url(url, fedkey_egress::UrlRules::HTTPS_ONLY)?;
        self.egress.request(fedkey_egress::Method::POST, &url, fedkey_egress::UrlRules::HTTPS_ONLY)
    }

    async fn used_since_start(&self, rot: &Rotation) -> Result<bool, StoreError> {
        let keys = self.store.list_keys(&rot.trust_ref()).await?;
        Ok(keys.iter().any(|k| k.version == rot.version && k.last_used_at.is_some_and(|t| t >= rot.started_at)))
    }

    async fn connector(&self, c: &ConnectorRow) -> Result<Result<Connector, String>, StoreError> {
        let creds = self.store.connector_credentials(&self.actor, c).await?;
        let root = self.cfg.delivery_root.as_ref();
        Ok(crate::wiring::build(c, creds.as_ref(), self.egress.clone(), self.cfg.connector_timeout, root))
    }

    /// A retryable error (429, 5xx, timeouts) backs off as usual; one that repeating cannot
    /// fix (401, 403, a rejected request) waits the longest backoff — an operator fixes the
    /// cause and retries — instead of hammering the peer.
    async fn connector_error(&self, c: &ConnectorRow, e: ConnectorError) -> Result<StepResult, StoreError> {
        let wait = if e.retryable() { e.retry_after() } else { Some(self.cfg.max_backoff) };
        self.connector_failed(c, e.to_string(), wait).await
    }

    async fn connector_failed(
        &self,
        c: &ConnectorRow,
        error: String,
        retry_after: Option<Duration>,
    ) -> Result<StepResult, StoreError> {
        metrics::counter!("fedkey_connector_deliveries_total", "kind" => crate::wiring::kind_label(&c.kind), "result" => "failure")
            .increment(1);
        let msg = format!("connector {} ({}): {error}", c.name, c.kind);
        self.store.connector_outcome(&c.id, Some(&msg)).await?;
        Ok(StepResult::Fail { error: msg, retry_after })
    }

    async fn fail(&self, rot: &Rotation, error: &str, retry_after: Option<Duration>) -> Result<(), StoreError> {
        let attempts = u32::try_from(rot.attempts + 1).unwrap_or(u32::MAX);
        let backoff = retry_delay(attempts, self.cfg.base_backoff, self.cfg.max_backoff, jitter());
        let delay = retry_after.map_or(backoff, |ra| ra.max(backoff));
        let retry_at: Timestamp = self.store.now().saturating_add(delay);
        self.store.fail_rotation_step(&self.actor, rot, error, retry_at).await?;
        tracing::warn!(trust = %rot.trust_ref(), version = rot.version, step = %rot.step, attempt = attempts, error, "rotation step failed");
        self.alerts
            .raise(
                AlertKind::RotationFailed,
                json!({
                    "trust": rot.trust_ref().to_string(), "version": rot.version, "step": rot.step,
                    "attempt": attempts, "error": error, "retry_at": retry_at.to_rfc3339(),
                }),
            )
            .await;
        Ok(())
    }

    fn scim_base_url(&self, directory: &str) -> String {
        format!("{}/scim/v2/{directory}", self.cfg.public_url.trim_end_matches('/'))
    }
}

enum StepResult {
    Next(RotationStep, serde_json::Value),
    Wait(Timestamp),
    Fail { error: String, retry_after: Option<Duration> },
}

impl StepResult {
    fn fail(error: String) -> StepResult {
        StepResult::Fail { error, retry_after: None }
    }
}

fn version_u32(v: i64) -> u32 {
    u32::try_from(v).unwrap_or(u32::MAX)
}

/// A uniform sample in [0, 1) for backoff jitter.
fn jitter() -> f64 {
    let b = uuid::Uuid::new_v4().as_u128();
    (b >> 75) as f64 / (1u64 << 53) as f64
}

fn humanise(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        s if s % 86400 == 0 && s > 0 => format!("{}d", s / 86400),
        s if s % 3600 == 0 && s > 0 => format!("{}h", s / 3600),
        s if s % 60 == 0 && s > 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

fn delivered(c: &ConnectorRow) {
    metrics::counter!("fedkey_connector_deliveries_total", "kind" => crate::wiring::kind_label(&c.kind), "result" => "success")
        .increment(1);
}
