//! When to fetch again, how long a version stays usable, and whether new material may replace
//! the current one without a human.

use std::time::Duration;

use fedkey_core::clock::Timestamp;

use crate::material::Material;

/// Refresh cadence and lifetimes. Defaults follow the lifecycle doc: refresh at 0.75 of the
/// cache lifetime, clamped to [30 s, 4 h].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RefreshPolicy {
    pub min_interval: Duration,
    pub max_interval: Duration,
    /// Cache lifetime assumed when a JWKS response carries no `Cache-Control: max-age`.
    pub default_lifetime: Duration,
    /// How long a version stays usable after its last successful fetch when the document gives
    /// no hard expiry (every JWKS; SAML metadata with only cacheDuration).
    pub max_stale: Duration,
    /// First retry delay after a failed fetch; doubles per consecutive failure up to `max_backoff`.
    pub backoff_base: Duration,
    pub max_backoff: Duration,
}

impl Default for RefreshPolicy {
    fn default() -> Self {
        Self {
            min_interval: Duration::from_secs(30),
            max_interval: Duration::from_secs(4 * 3600),
            default_lifetime: Duration::from_secs(3600),
            max_stale: Duration::from_secs(24 * 3600),
            backoff_base: Duration::from_secs(30),
            max_backoff: Duration::from_secs(15 * 60),
        }
    }
}

impl RefreshPolicy {
    /// Delay before the next fetch for a document cached for `lifetime`.
    pub fn refresh_after(&self, lifetime: Duration) -> Duration {
        lifetime.mul_f64(0.75).clamp(self.min_interval, self.max_interval.max(self.min_interval))
    }

    /// Cache lifetime announced by a `Cache-Control` header. `no-store`/`no-cache` mean "ask
    /// again soon", i.e. the minimum interval; an absent or unparsable header the default.
    pub fn jwks_lifetime(&self, cache_control: Option<&str>) -> Duration {
        let Some(header) = cache_control else { return self.default_lifetime };
        let mut max_age = None;
        for directive in header.split(',').map(str::trim) {
            let lower = directive.to_ascii_lowercase();
            if lower == "no-store" || lower == "no-cache" {
                return Duration::ZERO;
            }
            if let Some(v) = lower.strip_prefix("max-age=") {
                max_age = v.trim_matches('"').parse::<u64>().ok().map(Duration::from_secs);
            }
        }
        max_age.unwrap_or(self.default_lifetime)
    }

    /// Cache lifetime of SAML metadata: `cacheDuration`, else the time left until `validUntil`,
    /// and never past `validUntil`.
    pub fn saml_lifetime(
        &self,
        now: Timestamp,
        cache_duration: Option<Duration>,
        valid_until: Option<Timestamp>,
    ) -> Duration {
        let until_expiry =
            valid_until.map(|v| Duration::from_micros(u64::try_from(v.0.saturating_sub(now.0)).unwrap_or(0)));
        match (cache_duration, until_expiry) {
            (Some(c), Some(u)) => c.min(u),
            (Some(c), None) => c,
            (None, Some(u)) => u,
            (None, None) => self.default_lifetime,
        }
    }

    /// Delay before retrying after `failures` consecutive failed fetches (bounded).
    pub fn backoff(&self, failures: u32) -> Duration {
        let factor = 2u32.saturating_pow(failures.saturating_sub(1).min(20));
        self.backoff_base.saturating_mul(factor).min(self.max_backoff).max(self.min_interval.min(self.max_backoff))
    }
}

/// What to do with freshly fetched material.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Same document as the current version.
    Unchanged,
    /// No current version, or the new one shares at least one signing key with it.
    Accept,
    /// No key in common (or a different issuer): a human must approve it.
    HoldForApproval,
}

/// The acceptance rule (Google Workforce Identity Federation's): new material replaces the
/// current one automatically only if both share a signing key, so a rotation with overlap goes
/// through and a wholesale replacement (which is what a hijacked endpoint looks like) waits.
/// An expired current version still counts as the reference: expiry must not open the door.
pub fn decide(current: Option<&Material>, new: &Material) -> Decision {
    let Some(current) = current else { return Decision::Accept };
    if current.kind != new.kind || current.issuer != new.issuer {
        return Decision::HoldForApproval;
    }
    if current.digest == new.digest {
        return Decision::Unchanged;
    }
    if current.shares_key_with(new) { Decision::Accept } else { Decision::HoldForApproval }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::material::{MaterialKind, SigningKey};

    fn material(digest: &str, fps: &[&str]) -> Material {
        Material {
            kind: MaterialKind::Jwks,
            keys: fps
                .iter()
                .map(|f| SigningKey { kid: Some((*f).into()), alg: None, fingerprint: (*f).into(), jwk: None })
                .collect(),
            digest: digest.into(),
            fetched_at: Timestamp(0),
            refresh_at: Timestamp(0),
            expires_at: Timestamp(1),
            issuer: Some("https://idp.test".into()),
        }
    }

    #[test]
    fn decide_follows_the_overlap_rule() {
        let cur = material("d1", &["a", "b"]);
        assert_eq!(decide(None, &cur), Decision::Accept);
        assert_eq!(decide(Some(&cur), &material("d1", &["a", "b"])), Decision::Unchanged);
        assert_eq!(decide(Some(&cur), &material("d2", &["b", "c"])), Decision::Accept);
        assert_eq!(decide(Some(&cur), &material("d3", &["c"])), Decision::HoldForApproval);
        let mut other_issuer = material("d4", &["a"]);
        other_issuer.issuer = Some("https://evil.test".into());
        assert_eq!(decide(Some(&cur), &other_issuer), Decision::HoldForApproval);
    }

    #[test]
    fn refresh_is_three_quarters_of_the_lifetime_clamped() {
        let p = RefreshPolicy::default();
        assert_eq!(p.refresh_after(Duration::from_secs(3600)), Duration::from_secs(2700));
        assert_eq!(p.refresh_after(Duration::ZERO), Duration::from_secs(30));
        assert_eq!(p.refresh_after(Duration::from_secs(86400)), Duration::from_secs(4 * 3600));
    }

    #[test]
    fn cache_control_is_read() {
        let p = RefreshPolicy::default();
        assert_eq!(p.jwks_lifetime(Some("public, max-age=600")), Duration::from_secs(600));
        assert_eq!(p.jwks_lifetime(Some("no-store")), Duration::ZERO);
        assert_eq!(p.jwks_lifetime(Some("max-age=600, no-cache")), Duration::ZERO);
        assert_eq!(p.jwks_lifetime(Some("max-age=abc")), p.default_lifetime);
        assert_eq!(p.jwks_lifetime(None), p.default_lifetime);
    }

    #[test]
    fn saml_lifetime_never_outlives_valid_until() {
        let p = RefreshPolicy::default();
        let now = Timestamp(0);
        let until = now.saturating_add(Duration::from_secs(600));
        assert_eq!(p.saml_lifetime(now, Some(Duration::from_secs(3600)), Some(until)), Duration::from_secs(600));
        assert_eq!(p.saml_lifetime(now, Some(Duration::from_secs(60)), Some(until)), Duration::from_secs(60));
        assert_eq!(p.saml_lifetime(now, None, Some(until)), Duration::from_secs(600));
    }

    #[test]
    fn backoff_doubles_and_is_bounded() {
        let p = RefreshPolicy::default();
        assert_eq!(p.backoff(1), Duration::from_secs(30));
        assert_eq!(p.backoff(2), Duration::from_secs(60));
        assert_eq!(p.backoff(3), Duration::from_secs(120));
        assert_eq!(p.backoff(100), Duration::from_secs(900));
    }
}
