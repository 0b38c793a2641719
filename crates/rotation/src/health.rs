//! The health model: one pass over the store that `fedkey doctor`, `GET /api/v1/health`
//! (and `GET /api/v1/health/trusts`) and the `/metrics` gauges all read.
//!
//! - **Trusts**: key expiry, rotation state (failing, stalled), trust material (pending
//!   approval, expired, stale) — the findings carry the action to take.
//! - **Sync targets**: last success, consecutive failures, dead letters, queue lag.
//! - **Connectors**: last success and failure.
//! - **Audit log**: chain head, age of the last signed checkpoint, whether writes go through.
//!
//! Every finding has a stable `code`, a severity and a message that names its object.

use std::time::Duration;

use fedkey_core::{Direction, KeyState, RotationKind, RotationStep, Timestamp, TrustStatus};
use fedkey_store::ops::{AuditState, OutboxQueue, TargetQueue};
use fedkey_store::{Store, StoreError};
use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Ok,
    Info,
    Warning,
    Critical,
}

impl Severity {
    pub const ALL: [Severity; 4] = [Severity::Ok, Severity::Info, Severity::Warning, Severity::Critical];

    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Ok => "ok",
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }
}

/// What a finding is about.
pub mod scope {
    pub const TRUST: &str = "trust";
    pub const SYNC_TARGET: &str = "sync_target";
    pub const CONNECTOR: &str = "connector";
    pub const AUDIT: &str = "audit";
}

#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    pub severity: Severity,
    /// Stable machine-readable code.
    pub code: &'static str,
    /// `trust`, `sync_target`, `connector` or `audit`.
    pub scope: &'static str,
    /// The object by name: `directory/trust`, `directory/trust/connector`, `audit log`.
    pub object: String,
    /// The trust the object belongs to (empty for the audit log).
    pub trust: String,
    pub message: String,
    pub action: String,
}

/// Figures of one active trust.
#[derive(Debug, Clone, Serialize)]
pub struct TrustHealth {
    pub trust: String,
    pub direction: Direction,
    pub current_version: Option<i64>,
    /// When the current key stops authenticating (its expiry), or else when it reaches its
    /// rotation policy's age.
    #[serde(serialize_with = "fedkey_core::clock::rfc3339_opt")]
    pub key_expires_at: Option<Timestamp>,
    /// When the current trust material was fetched (trusts with a material source).
    #[serde(serialize_with = "fedkey_core::clock::rfc3339_opt")]
    pub material_fetched_at: Option<Timestamp>,
    /// The step of the rotation in progress, if any.
    pub rotation_step: Option<RotationStep>,
}

/// Figures of one sync target (outbound provisioning).
#[derive(Debug, Clone, Serialize)]
pub struct TargetHealth {
    pub target: String,
    pub active: bool,
    pub consecutive_failures: i64,
    pub circuit_open: bool,
    pub last_error: Option<String>,
    #[serde(flatten)]
    pub queue: TargetQueue,
}

/// Figures of one rotation connector.
#[derive(Debug, Clone, Serialize)]
pub struct ConnectorHealth {
    pub trust: String,
    pub connector: String,
    pub kind: String,
    #[serde(serialize_with = "fedkey_core::clock::rfc3339_opt")]
    pub last_success_at: Option<Timestamp>,
    #[serde(serialize_with = "fedkey_core::clock::rfc3339_opt")]
    pub last_failure_at: Option<Timestamp>,
}

#[derive(Debug, Clone, Serialize)]
pub struct AuditHealth {
    #[serde(flatten)]
    pub state: AuditState,
    /// Writes (and so audit records) go through.
    pub writable: bool,
    /// The streaming sinks' cursors, lag and last errors (docs/audit.md, streaming).
    pub sinks: Vec<fedkey_store::audit_sinks::SinkStatus>,
}

#[derive(Debug, Clone, Serialize)]
pub struct HealthReport {
    #[serde(serialize_with = "fedkey_core::clock::rfc3339")]
    pub generated_at: Timestamp,
    /// The worst severity found (`ok` without findings).
    pub status: Severity,
    pub trusts_checked: usize,
    pub findings: Vec<Finding>,
    pub trusts: Vec<TrustHealth>,
    pub targets: Vec<TargetHealth>,
    pub connectors: Vec<ConnectorHealth>,
    pub outbox: OutboxQueue,
    pub audit: AuditHealth,
}

impl HealthReport {
    /// The worst severity found; `None` when everything is healthy.
    pub fn worst(&self) -> Option<Severity> {
        self.findings.iter().map(|f| f.severity).max()
    }

    /// Findings per severity.
    pub fn count(&self, s: Severity) -> usize {
        self.findings.iter().filter(|f| f.severity == s).count()
    }
}

/// A rotation whose next attempt is this overdue is stalled: no engine is running it.
const STALL_AFTER: Duration = Duration::from_secs(3600);
/// Records past a checkpoint older than this: the periodic checkpoint (every minute) fails.
const CHECKPOINT_STALE_AFTER: Duration = Duration::from_secs(24 * 3600);
/// Work waiting longer than this at a target is lag worth a warning.
const TARGET_LAG_WARN: Duration = Duration::from_secs(3600);

pub async fn check(store: &Store) -> Result<HealthReport, StoreError> {
    let now = store.now();
    let trusts = store.list_trusts(None).await?;
    let active = store.active_rotations().await?;
    let sources = store.trust_sources().await?;
    let figures = store.trust_figures().await?;
    let mut findings = Vec::new();
    let mut trust_rows = Vec::new();
    let mut connector_rows = Vec::new();
    for t in trusts.iter().filter(|t| t.status == TrustStatus::Active) {
        let r = fedkey_core::TrustRef { directory: t.directory.clone(), trust: t.name.clone() };
        let name = r.to_string();
        // A finding about this trust (the closure borrows only `name`, so `findings` stays free).
        let finding = |severity, code, message: String, action: String| Finding {
            severity,
            code,
            scope: scope::TRUST,
            object: name.clone(),
            trust: name.clone(),
            message: format!("trust {name}: {message}"),
            action,
        };
        let keys = figures.keys.get(&t.id).map_or(&[][..], Vec::as_slice);
        let current = keys.iter().filter(|k| k.state_at(now) == KeyState::Current).max_by_key(|k| k.version);
        let rotation = active.iter().find(|x| x.trust_id == t.id);
        let has_source = sources.iter().any(|s| s.trust_id == t.id);
        let mut row = TrustHealth {
            trust: name.clone(),
            direction: t.direction,
            current_version: current.map(|k| k.version),
            key_expires_at: current.and_then(|k| k.expires_at),
            material_fetched_at: None,
            rotation_step: rotation.map(|x| x.step),
        };
        if current.is_none() {
            findings.push(finding(
                Severity::Critical,
                "no_current_key",
                "no key version is current: the peer cannot authenticate".into(),
                format!("rotate now: `fedkey key rotate {r}` (or `fedkey rotation start {r}` with a connector)"),
            ));
        }
        for c in figures.connectors.get(&t.id).cloned().unwrap_or_default() {
            if c.last_failure_at.is_some() && c.last_failure_at > c.last_success_at {
                let object = format!("{name}/{}", c.name);
                findings.push(Finding {
                    severity: Severity::Warning,
                    code: "connector_failing",
                    scope: scope::CONNECTOR,
                    message: format!(
                        "connector {object} ({}) failed: {}",
                        c.kind,
                        c.last_error.clone().unwrap_or_default()
                    ),
                    object,
                    trust: name.clone(),
                    action: format!("check the connector's target and credentials; `fedkey connector list {r}`"),
                });
            }
            connector_rows.push(ConnectorHealth {
                trust: name.clone(),
                connector: c.name,
                kind: c.kind,
                last_success_at: c.last_success_at,
                last_failure_at: c.last_failure_at,
            });
        }
        if let Some(rot) = rotation
            && rot.attempts > 0
        {
            findings.push(finding(
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
            ));
        } else if let Some(rot) = rotation
            && rot.next_attempt_at.saturating_add(STALL_AFTER) < now
        {
            findings.push(finding(
                Severity::Warning,
                "rotation_stalled",
                format!(
                    "rotation to version {} has waited at step {} since {}: no engine has run it",
                    rot.version,
                    rot.step,
                    rot.next_attempt_at.to_rfc3339()
                ),
                "check that a node runs the rotation engine (`serve` logs, `engine_interval`)".into(),
            ));
        }
        if let Some(rot) = rotation
            && rot.kind == RotationKind::Emergency
            && rot.step == RotationStep::Set
        {
            // The old versions are revoked: until the new one reaches the peer, it cannot
            // authenticate at all.
            findings.push(finding(
                Severity::Critical,
                "emergency_rotation_undelivered",
                format!(
                    "emergency rotation: every older version is revoked, and version {} is not yet confirmed by every connector",
                    rot.version
                ),
                format!(
                    "the peer cannot authenticate until it has the new version: fix any failing connector, then `fedkey rotation retry {r}`"
                ),
            ));
        }
        let mut push = |severity, code, message, action| findings.push(finding(severity, code, message, action));
        if has_source {
            row.material_fetched_at = material_findings(store, &r, now, &mut push).await?;
        }
        if t.direction == Direction::Inbound {
            policy_findings(figures.policies.get(&t.id), &r, current, now, &mut row, &mut push);
        }
        trust_rows.push(row);
    }
    let targets = target_findings(store, now, &mut findings).await?;
    let outbox = store.outbox_queue().await?;
    let audit = audit_findings(store, now, &mut findings).await?;
    findings.sort_by(|a, b| b.severity.cmp(&a.severity).then_with(|| a.object.cmp(&b.object)));
    let checked = trusts.iter().filter(|t| t.status == TrustStatus::Active).count();
    let status = findings.iter().map(|f| f.severity).max().unwrap_or(Severity::Ok);
    Ok(HealthReport {
        generated_at: now,
        status,
        trusts_checked: checked,
        findings,
        trusts: trust_rows,
        targets,
        connectors: connector_rows,
        outbox,
        audit,
    })
}

/// Key age against the rotation policy (inbound trusts); sets the row's expiry to the
/// policy's due time when the key itself does not expire.
fn policy_findings(
    policy: Option<&fedkey_store::PolicyRow>,
    r: &fedkey_core::TrustRef,
    current: Option<&fedkey_store::KeyVersion>,
    now: Timestamp,
    row: &mut TrustHealth,
    push: &mut impl FnMut(Severity, &'static str, String, String),
) {
    let Some(policy) = policy else {
        if let Some(k) = current {
            let age_days = (now.0 - k.activated_at.unwrap_or(k.created_at).0) / 86_400_000_000;
            push(
                Severity::Info,
                "no_rotation_policy",
                format!("no rotation policy: version {} is {age_days} days old and never rotates", k.version),
                format!("set one: `fedkey rotation policy set {r} --period 30d --overlap 24h`"),
            );
        }
        return;
    };
    let Some(k) = current else { return };
    let due = policy.policy.due_at(k.activated_at.unwrap_or(k.created_at));
    if row.key_expires_at.is_none() {
        row.key_expires_at = Some(due);
    }
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

/// Every sync target: dead letters (critical: a change, possibly a leaver's
/// deprovisioning, will not arrive), consecutive failures, an open circuit, and lag.
async fn target_findings(
    store: &Store,
    now: Timestamp,
    findings: &mut Vec<Finding>,
) -> Result<Vec<TargetHealth>, StoreError> {
    let queues = store.target_queues().await?;
    let mut out = Vec::new();
    for t in store.sync_targets(None).await? {
        let name = t.trust.to_string();
        let queue = queues
            .iter()
            .find(|q| q.trust_id == t.trust_id)
            .cloned()
            .unwrap_or_else(|| TargetQueue { trust_id: t.trust_id.clone(), ..TargetQueue::default() });
        let mut push = |severity, code, message: String, action: String| {
            findings.push(Finding {
                severity,
                code,
                scope: scope::SYNC_TARGET,
                object: name.clone(),
                trust: name.clone(),
                message: format!("sync target {name} ({}): {message}", t.base_url),
                action,
            })
        };
        if queue.dead_letters > 0 {
            let last = store.latest_dead_letter(&t.trust_id).await?;
            let what = last.as_ref().map_or_else(String::new, |d| {
                let who = d.display.clone().unwrap_or_else(|| d.resource_id.clone());
                format!("; latest: {} {who}: {}", d.resource_type, d.error.clone().unwrap_or_default())
            });
            push(
                Severity::Critical,
                "sync_dead_letters",
                format!("{} dead letter(s): changes that will not be delivered{what}", queue.dead_letters),
                format!(
                    "fix the cause (credentials, mapping, the target), then `fedkey sync dead-letters retry {}`",
                    t.trust.directory
                ),
            );
        }
        let circuit_open = t.circuit_open_until.is_some_and(|u| u > now);
        if t.active && (circuit_open || t.consecutive_failures > 0) {
            push(
                if circuit_open { Severity::Critical } else { Severity::Warning },
                "sync_target_failing",
                format!(
                    "{} failed delivery round(s) in a row{}: {}",
                    t.consecutive_failures,
                    if circuit_open { ", circuit open" } else { "" },
                    t.last_error.clone().unwrap_or_default()
                ),
                format!("check that the target answers; `fedkey sync status {}`", t.trust.directory),
            );
        }
        if t.active
            && let Some(since) = queue.oldest_pending_since
            && since.saturating_add(TARGET_LAG_WARN) < now
        {
            push(
                Severity::Warning,
                "sync_lagging",
                format!("{} change(s) waiting, the oldest since {}", queue.pending, since.to_rfc3339()),
                format!("check the target and the dispatcher; `fedkey sync status {}`", t.trust.directory),
            );
        }
        out.push(TargetHealth {
            target: name,
            active: t.active,
            consecutive_failures: t.consecutive_failures,
            circuit_open,
            last_error: t.last_error.clone(),
            queue,
        });
    }
    Ok(out)
}

/// The audit log: writes failing (critical), or records long past the last checkpoint.
async fn audit_findings(store: &Store, now: Timestamp, findings: &mut Vec<Finding>) -> Result<AuditHealth, StoreError> {
    let writable = store.readiness().await.writes;
    let state = store.audit_state().await?;
    let mut push = |severity, code, message: String, action: String| {
        findings.push(Finding {
            severity,
            code,
            scope: scope::AUDIT,
            object: "audit log".into(),
            trust: String::new(),
            message,
            action,
        })
    };
    if !writable {
        push(
            Severity::Critical,
            "audit_not_writable",
            "audit log: records cannot be written, so changes are refused".into(),
            "check the database (disk space, connectivity); `/readyz` shows when writes resume".into(),
        );
    }
    let uncovered = state.head_seq - state.last_checkpoint_size.unwrap_or(0);
    if let Some(at) = state.last_checkpoint_at
        && uncovered > 0
        && at.saturating_add(CHECKPOINT_STALE_AFTER) < now
    {
        push(
            Severity::Warning,
            "audit_checkpoint_stale",
            format!(
                "audit log: {uncovered} record(s) past the last signed checkpoint, which is from {}",
                at.to_rfc3339()
            ),
            "check the server log for `periodic audit checkpoint failed`".into(),
        );
    }
    let sinks = store.audit_sink_status().await?;
    for sink in sinks.iter().filter(|k| k.failures > 0) {
        push(
            Severity::Warning,
            "audit_sink_failing",
            format!(
                "audit sink {}: {} send(s) failed in a row, {} record(s) waiting; last error: {}",
                sink.sink,
                sink.failures,
                sink.lag,
                sink.last_error.as_deref().unwrap_or("-")
            ),
            "check the collector; records are kept and sent from the sink's cursor once it answers".into(),
        );
    }
    Ok(AuditHealth { state, writable, sinks })
}

/// Trust material that is pending approval, expired, or not refreshed when due.
async fn material_findings(
    store: &Store,
    r: &fedkey_core::TrustRef,
    now: Timestamp,
    push: &mut impl FnMut(Severity, &'static str, String, String),
) -> Result<Option<Timestamp>, StoreError> {
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
    let mut fetched = None;
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
            fetched = Some(c.fetched_at);
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
    Ok(fetched)
}
