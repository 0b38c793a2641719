//! Leak reports: a candidate token seen somewhere it should not be is matched against the
//! stored verifiers (token shape and checksum first, so look-alikes cost no query), and the
//! trust's leak policy is applied to a match. The candidate itself is never stored or
//! logged: the audit record carries its keyed fingerprint and where it was found.

use fedkey_audit::Outcome;
use fedkey_core::{KeyState, LeakPolicy, RotationKind, Timestamp, TrustRef, lifecycle};
use fedkey_crypto::token::{self, TokenKind, Verifier};
use serde::Serialize;
use serde_json::json;
use sqlx::Row;

use super::{Actor, Store};
use crate::StoreError;

/// Longest location (URL, path) kept in the audit record, in characters.
const MAX_LOCATION_CHARS: usize = 500;

/// One candidate of a report: the token and where it was found.
pub struct LeakCandidate<'a> {
    pub token: &'a str,
    pub location: &'a str,
    /// Who reported it: `github` or `report` (the generic format).
    pub reporter: &'a str,
}

/// What fedkey did about one candidate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LeakAction {
    /// Not a fedkey token, or one fedkey does not know.
    None,
    /// Ours, but it no longer authenticates (revoked or expired).
    AlreadyDead,
    /// Reported only (policy `report`, or an admin token): an alert is raised.
    Alerted,
    /// That version was revoked (policy `revoke`).
    Revoked,
    /// An emergency rotation started (policy `rotate`).
    Rotated,
}

/// The outcome for one candidate, safe to return: names and numbers, never the token.
#[derive(Debug, Clone, Serialize)]
pub struct LeakFinding {
    /// Whether the token is one of ours (a true positive).
    pub ours: bool,
    pub action: LeakAction,
    /// `fkp` or `fka` for a token of ours.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trust: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub admin_token: Option<String>,
    /// The keyed fingerprint of the candidate, as in the audit log.
    pub fingerprint: String,
}

impl Store {
    /// Matches one leak candidate and applies the trust's leak policy. Every candidate,
    /// ours or not, leaves a `leak.report` audit record with its fingerprint and location;
    /// the revocation or emergency rotation it causes leaves its own records.
    pub async fn report_leak(&self, actor: &Actor, c: &LeakCandidate<'_>) -> Result<LeakFinding, StoreError> {
        let fingerprint = self.install.fingerprint(c.token.as_bytes());
        let location: String = c.location.chars().take(MAX_LOCATION_CHARS).collect();
        let mut finding = LeakFinding {
            ours: false,
            action: LeakAction::None,
            kind: None,
            trust: None,
            version: None,
            admin_token: None,
            fingerprint: fingerprint.clone(),
        };
        let mut ev = self.event(actor, "leak.report", Outcome::Success);
        let mut matched: Option<(TrustRef, i64)> = None;
        match token::parse(c.token) {
            Ok(TokenKind::Provisioning) => {
                if let Some((r, version, state, expires_at)) = self.key_by_verifier(c.token).await? {
                    ev = ev.directory(&r.directory).trust(&r.trust).key_version(version);
                    finding.ours = true;
                    finding.kind = Some("fkp");
                    finding.trust = Some(r.to_string());
                    finding.version = Some(version);
                    let trust = self.trust(&r).await?;
                    matched = Some((r, version));
                    let policy = trust.leak_policy();
                    let live = lifecycle::accepts(state, expires_at, self.now());
                    finding.action = match (live, policy) {
                        (false, _) => LeakAction::AlreadyDead,
                        (true, LeakPolicy::Report) => LeakAction::Alerted,
                        (true, LeakPolicy::Revoke) => LeakAction::Revoked,
                        (true, LeakPolicy::Rotate) => LeakAction::Rotated,
                    };
                    ev = ev.details(json!({"policy": policy}));
                }
            }
            Ok(TokenKind::Admin) => {
                if let Some(name) = self.admin_token_by_verifier(c.token).await? {
                    finding.ours = true;
                    finding.kind = Some("fka");
                    finding.action = LeakAction::Alerted;
                    finding.admin_token = Some(name);
                }
            }
            // Wrong prefix, length or checksum: not ours, and no lookup.
            Err(_) => {}
        }
        let mut details = ev.details.take();
        if !details.is_object() {
            details = json!({});
        }
        details["reporter"] = json!(c.reporter);
        details["location"] = json!(location);
        details["fingerprint"] = json!(fingerprint);
        details["ours"] = json!(finding.ours);
        details["action"] = json!(finding.action);
        if let Some(name) = &finding.admin_token {
            details["admin_token"] = json!(name);
        }
        ev.details = details;
        if !finding.ours {
            ev.outcome = Outcome::Failure;
        }
        self.audit.record(ev, None).await?;
        metrics::counter!("fedkey_leak_reports_total", "ours" => if finding.ours { "true" } else { "false" })
            .increment(1);
        if let Some((r, v)) = matched {
            match finding.action {
                LeakAction::Revoked => {
                    self.revoke_key(actor, &r, v).await?;
                }
                LeakAction::Rotated => {
                    self.start_rotation(actor, &r, RotationKind::Emergency, None).await?;
                }
                _ => {}
            }
        }
        Ok(finding)
    }

    /// (trust, version, state, expires_at) of the key version whose verifier matches.
    async fn key_by_verifier(
        &self,
        presented: &str,
    ) -> Result<Option<(TrustRef, i64, KeyState, Option<Timestamp>)>, StoreError> {
        let v = Verifier::of(presented);
        let row = self
            .row_by_verifier(
                "SELECT k.verifier, k.version, k.state, k.expires_at, t.name AS trust, d.name AS directory \
                 FROM key_versions k JOIN trusts t ON t.id = k.trust_id JOIN directories d ON d.id = t.directory_id \
                 WHERE k.verifier = $1",
                &v,
            )
            .await?;
        let Some(row) = row else { return Ok(None) };
        let state: String = row.try_get("state")?;
        Ok(Some((
            TrustRef { directory: row.try_get("directory")?, trust: row.try_get("trust")? },
            row.try_get("version")?,
            state.parse().map_err(|_| StoreError::Corrupt("key_versions.state".into()))?,
            row.try_get::<Option<i64>, _>("expires_at")?.map(Timestamp),
        )))
    }

    /// The name of the admin token whose verifier matches.
    async fn admin_token_by_verifier(&self, presented: &str) -> Result<Option<String>, StoreError> {
        let v = Verifier::of(presented);
        let row = self.row_by_verifier("SELECT verifier, name FROM admin_tokens WHERE verifier = $1", &v).await?;
        row.map(|r| r.try_get("name")).transpose().map_err(Into::into)
    }
}
