//! `fedkey doctor`: every trust whose key is near or past its policy age, whose last
//! rotation step failed, or whose connector is failing — with the action to take.

use fedkey_core::{Direction, KeyState, RotationKind, RotationStep, Timestamp, TrustStatus};
use fedkey_store::{Store, StoreError};
use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    Warning,
    Critical,
}

#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    pub trust: String,
    pub severity: Severity,
    /// Stable machine-readable code.
    pub code: &'static str,
    pub message: String,
    pub action: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct HealthReport {
    #[serde(serialize_with = "fedkey_core::clock::rfc3339")]
    pub generated_at: Timestamp,
    pub trusts_checked: usize,
    pub findings: Vec<Finding>,
}

impl HealthReport {
    /// The worst severity found; `None` when everything is healthy.
    pub fn worst(&self) -> Option<Severity> {
        self.findings.iter().map(|f| f.severity).max()
    }
}

pub async fn check(store: &Store) -> Result<HealthReport, StoreError> {
    let now = store.now();
    let trusts = store.list_trusts(None).await?;
    let active = store.active_rotations().await?;
    let sources = store.trust_sources().await?;
    let mut findings = Vec::new();
    for t in trusts.iter().filter(|t| t.status == TrustStatus::Active) {
        let r = fedkey_core::TrustRef { directory: t.directory.clone(), trust: t.name.clone() };
        let name = r.to_string();
        let mut push = |severity, code, message: String, action: String| {
            findings.push(Finding { trust: name.clone(), severity, code, message, action })
        };
        let keys = store.list_keys(&r).await?;
        let current = keys.iter().filter(|k| k.state_at(now) == KeyState::Current).max_by_key(|k| k.version);
        if current.is_none() {
            push(
                Severity::Critical,
                "no_current_key",
                "no key version is current: the peer cannot authenticate".into(),
                format!("rotate now: `fedkey key rotate {r}` (or `fedkey rotation start {r}` with a connector)"),
            );
        }
        for c in store.list_connectors(&r).await? {
            if c.last_failure_at.is_some() && c.last_failure_at > c.last_success_at {
                push(
                    Severity::Warning,
                    "connector_failing",
                    format!("connector {} ({}) failed: {}", c.name, c.kind, c.last_error.unwrap_or_default()),
                    format!("check the connector's target and credentials; `fedkey connector list {r}`"),
                );
            }
        }
        if let Some(rot) = active.iter().find(|x| x.trust_id == t.id)
            && rot.attempts > 0
        {
            push(
                Severity::Critical,
                "rotation_failing",
                format!(
                    "rotation to version {} is stuck at step {} after {} failed attempts: {}",
                    rot.version,
                    rot.step,
                    rot.attempts,
                    rot.last_error.clone().unwrap_or_default()
                ),
                format!("fix the cause, then `fedkey rotation retry {r}`; or `fedkey rotation cancel {r}`"),
            );
        }
        if let Some(rot) = active.iter().find(|x| x.trust_id == t.id)
            && rot.kind == RotationKind::Emergency
            && rot.step == RotationStep::Set
        {
            // The old versions are revoked: until the new one reaches the peer, it cannot
            // authenticate at all.
            push(
                Severity::Critical,
                "emergency_rotation_undelivered",
                format!(
                    "emergency rotation: every older version is revoked, and version {} is not yet confirmed by every connector",
                    rot.version
                ),
                format!(
                    "the peer cannot authenticate until it has the new version: fix any failing connector, then `fedkey rotation retry {r}`"
                ),
            );
        }
        if sources.iter().any(|s| s.trust_id == t.id) {
            material_findings(store, &r, now, &mut push).await?;
        }
        if t.direction != Direction::Inbound {
            continue;
        }
        let Some(policy) = store.rotation_policy(&r).await? else {
            if let Some(k) = current {
                let age_days = (now.0 - k.activated_at.unwrap_or(k.created_at).0) / 86_400_000_000;
                push(
                    Severity::Info,
                    "no_rotation_policy",
                    format!("no rotation policy: version {} is {age_days} days old and never rotates", k.version),
                    format!("set one: `fedkey rotation policy set {r} --period 30d --overlap 24h`"),
                );
            }
            continue;
        };
        let Some(k) = current else { continue };
        let due = policy.policy.due_at(k.activated_at.unwrap_or(k.created_at));
        if due <= now {
            push(
                Severity::Critical,
                "key_past_policy_age",
                format!("version {} passed its policy age at {}", k.version, due.to_rfc3339()),
                if policy.policy.enabled {
                    format!("the scheduler should rotate it; check `fedkey rotation show {r}`")
                } else {
                    format!("scheduled rotation is disabled: `fedkey rotation start {r}`")
                },
            );
        } else if due <= now.saturating_add(policy.policy.warn_before) {
            push(
                if policy.policy.enabled { Severity::Info } else { Severity::Warning },
                "key_near_policy_age",
                format!("version {} reaches its policy age at {}", k.version, due.to_rfc3339()),
                if policy.policy.enabled {
                    "none needed: the scheduler rotates it on time".into()
                } else {
                    format!("scheduled rotation is disabled: `fedkey rotation start {r}`")
                },
            );
        }
    }
    findings.sort_by(|a, b| b.severity.cmp(&a.severity).then_with(|| a.trust.cmp(&b.trust)));
    let checked = trusts.iter().filter(|t| t.status == TrustStatus::Active).count();
    Ok(HealthReport { generated_at: now, trusts_checked: checked, findings })
}

/// Trust material that is pending approval, expired, or not refreshed when due.
async fn material_findings(
    store: &Store,
    r: &fedkey_core::TrustRef,
    now: Timestamp,
    push: &mut impl FnMut(Severity, &'static str, String, String),
) -> Result<(), StoreError> {
    let versions = store.material_versions(r, 5).await?;
    if let Some(p) = versions.iter().find(|v| v.status == "pending") {
        push(
            Severity::Critical,
            "material_pending_approval",
            format!(
                "new trust material (version {}) shares no signing key with the current one and is held",
                p.version
            ),
            format!("check with the IdP that it rotated its keys, then `fedkey material approve {r}` (or reject)"),
        );
    }
    match versions.iter().find(|v| v.status == "current") {
        None if versions.iter().any(|v| v.status == "expired") => push(
            Severity::Critical,
            "material_expired",
            "the trust material expired without a successful refresh: federated sign-ins with this trust fail".into(),
            format!("check the source URL is reachable (`fedkey material show {r}`)"),
        ),
        None => push(
            Severity::Warning,
            "material_missing",
            "no trust material has been fetched yet".into(),
            format!("check the source URL (`fedkey material show {r}`)"),
        ),
        Some(c) => {
            let refresh = c.material.get("refresh_at").and_then(serde_json::Value::as_i64).map(Timestamp);
            if let Some(e) = c.expires_at
                && e <= now
            {
                push(
                    Severity::Critical,
                    "material_expired",
                    format!("trust material version {} expired at {}", c.version, e.to_rfc3339()),
                    format!("check the source URL is reachable (`fedkey material show {r}`)"),
                );
            } else if refresh.is_some_and(|t| t.saturating_add(std::time::Duration::from_secs(3600)) < now) {
                push(
                    Severity::Warning,
                    "material_stale",
                    format!("trust material version {} is past its refresh time; fetches are failing", c.version),
                    format!("check the source URL is reachable (`fedkey material show {r}`)"),
                );
            }
        }
    }
    Ok(())
}
