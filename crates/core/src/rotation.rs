//! Rotation policy and the pure planning the rotation engine applies: what a finished
//! or emergency rotation does to the existing versions, and how failed steps back off.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::lifecycle::{self, Transition, VersionView, effective_state};
use crate::{DomainError, KeyState, Timestamp, Validation};

/// Shortest period accepted. Seconds are allowed so a rotation can be watched end to end
/// (the demo script rotates every few seconds); production periods are days.
pub const MIN_PERIOD: Duration = Duration::from_secs(1);
/// Longest period and validation timeout accepted (ten years).
pub const MAX_DURATION: Duration = Duration::from_secs(10 * 365 * 24 * 3600);
/// Longest overlap accepted on every path (a key rotation, a rotation start, a rotation
/// policy): a forgotten old key must not stay valid for months.
pub const MAX_OVERLAP: Duration = Duration::from_secs(90 * 24 * 3600);
/// [`MAX_OVERLAP`] as the message every refusal shows.
pub const MAX_OVERLAP_TEXT: &str = "overlap: at most 90 days";

/// Checks an overlap against [`MAX_OVERLAP`].
pub fn check_overlap(overlap: Duration) -> Result<(), &'static str> {
    if overlap > MAX_OVERLAP { Err(MAX_OVERLAP_TEXT) } else { Ok(()) }
}

/// A trust's rotation policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RotationPolicy {
    /// How often a scheduled rotation starts; also the key's maximum policy age.
    #[serde(with = "humantime_serde_compat")]
    pub period: Duration,
    /// How long the previous version keeps authenticating after the new one is promoted.
    #[serde(with = "humantime_serde_compat")]
    pub overlap: Duration,
    pub validation: Validation,
    /// How long `first_use` validation waits for the peer before the step counts as failed.
    #[serde(with = "humantime_serde_compat")]
    pub validation_timeout: Duration,
    /// Retire the previous version as soon as the peer has used the new one.
    pub finish_on_first_use: bool,
    /// Warn (doctor, metrics) this long before the key reaches its policy age.
    #[serde(with = "humantime_serde_compat")]
    pub warn_before: Duration,
    /// Rotate when the peer's trust material changes.
    pub rotate_on_material_change: bool,
    /// Scheduled rotations run only when enabled; manual ones always can.
    pub enabled: bool,
    /// A cron schedule (`minute hour day-of-month month day-of-week`, UTC) for scheduled
    /// rotations instead of "one period after the last start", e.g. `0 3 * * 1`. The period
    /// stays the key's policy age.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<String>,
}

impl Default for RotationPolicy {
    fn default() -> Self {
        RotationPolicy {
            period: Duration::from_secs(30 * 24 * 3600),
            overlap: Duration::from_secs(24 * 3600),
            validation: Validation::FirstUse,
            validation_timeout: Duration::from_secs(3600),
            finish_on_first_use: false,
            warn_before: Duration::from_secs(7 * 24 * 3600),
            rotate_on_material_change: false,
            enabled: true,
            schedule: None,
        }
    }
}

impl RotationPolicy {
    pub fn validate(&self) -> Result<(), DomainError> {
        let bad = |reason: &'static str| Err(DomainError::InvalidName { name: "rotation policy".into(), reason });
        if self.period < MIN_PERIOD {
            return bad("period must be at least 1s");
        }
        for d in [self.period, self.overlap, self.validation_timeout, self.warn_before] {
            if d > MAX_DURATION {
                return bad("durations must be at most 10 years");
            }
        }
        check_overlap(self.overlap).or_else(bad)?;
        if let Some(c) = &self.schedule {
            c.parse::<crate::cron::Cron>()?;
        }
        if self.overlap >= self.period {
            // A new rotation would start while the previous one's old key is still valid,
            // leaving three versions accepted at once.
            return bad("overlap must be shorter than the period");
        }
        Ok(())
    }

    /// When the key created at `activated` reaches its policy age.
    pub fn due_at(&self, activated: Timestamp) -> Timestamp {
        activated.saturating_add(self.period)
    }

    /// When the next scheduled rotation starts, given the current version's activation (or
    /// the last rotation's start): the cron schedule's next time if there is one, else one
    /// period later. Never in the past; `None` when disabled or the schedule never fires.
    pub fn next_rotation(&self, since: Timestamp, now: Timestamp) -> Option<Timestamp> {
        if !self.enabled {
            return None;
        }
        match self.schedule.as_deref().map(str::parse::<crate::cron::Cron>) {
            Some(Ok(c)) => c.next_after(now),
            Some(Err(_)) => None,
            None => Some(self.due_at(since).max(now)),
        }
    }
}

/// Durations as humantime strings (`"30d"`, `"90s"`) in JSON and TOML.
mod humantime_serde_compat {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(*d).to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let s = String::deserialize(d)?;
        humantime::parse_duration(&s).map_err(|e| serde::de::Error::custom(format!("invalid duration {s:?}: {e}")))
    }
}

/// Promotion of the staged version `new`: it becomes current, the newest current
/// becomes previous for `overlap` (expired at once when the overlap is zero), and every
/// other live version is retired. At most two versions authenticate afterwards.
pub fn plan_finish(versions: &[VersionView], new: i64, overlap: Duration, now: Timestamp) -> Vec<Transition> {
    let others: Vec<VersionView> = versions.iter().copied().filter(|v| v.version != new).collect();
    let mut out = lifecycle::plan_rotation(&others, overlap, now).transitions;
    if let Some(v) = versions.iter().find(|v| v.version == new && v.state == KeyState::Pending) {
        out.push(Transition { version: v.version, from: v.state, to: KeyState::Current, expires_at: None });
    }
    out
}

/// An emergency rotation: every version that still authenticates is revoked at once.
pub fn plan_emergency(versions: &[VersionView], now: Timestamp) -> Vec<Transition> {
    versions
        .iter()
        .filter(|v| lifecycle::accepts(v.state, v.expires_at, now) || v.state == KeyState::Pending)
        .map(|v| Transition { version: v.version, from: v.state, to: KeyState::Revoked, expires_at: v.expires_at })
        .collect()
}

/// The version that is current at `now`, if any.
pub fn current_version(versions: &[VersionView], now: Timestamp) -> Option<i64> {
    versions
        .iter()
        .filter(|v| effective_state(v.state, v.expires_at, now) == KeyState::Current)
        .map(|v| v.version)
        .max()
}

/// Delay before retrying a failed step: exponential from `base`, capped at `max`, with
/// "equal jitter" (half fixed, half random) so nodes retrying together spread out.
/// `jitter` is a uniform sample in `[0, 1)` supplied by the caller, keeping this pure.
pub fn retry_delay(attempts: u32, base: Duration, max: Duration, jitter: f64) -> Duration {
    let exp = base.saturating_mul(1u32 << attempts.saturating_sub(1).min(20));
    let capped = exp.min(max);
    let half = capped / 2;
    half + half.mul_f64(jitter.clamp(0.0, 1.0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn v(version: i64, state: KeyState, expires_at: Option<i64>) -> VersionView {
        VersionView { version, state, expires_at: expires_at.map(Timestamp) }
    }

    #[test]
    fn finish_promotes_pending_and_keeps_one_previous() {
        let now = Timestamp(1_000_000);
        let vs =
            [v(1, KeyState::Previous, Some(2_000_000)), v(2, KeyState::Current, None), v(3, KeyState::Pending, None)];
        let t = plan_finish(&vs, 3, Duration::from_secs(60), now);
        let to = |n| t.iter().find(|x| x.version == n).map(|x| x.to);
        assert_eq!(to(1), Some(KeyState::Expired));
        assert_eq!(to(2), Some(KeyState::Previous));
        assert_eq!(to(3), Some(KeyState::Current));
        let prev = t.iter().find(|x| x.version == 2).and_then(|x| x.expires_at);
        assert_eq!(prev, Some(Timestamp(61_000_000)));
    }

    #[test]
    fn finish_with_zero_overlap_expires_the_old_current() {
        let vs = [v(1, KeyState::Current, None), v(2, KeyState::Pending, None)];
        let t = plan_finish(&vs, 2, Duration::ZERO, Timestamp(5));
        assert!(t.contains(&Transition {
            version: 1,
            from: KeyState::Current,
            to: KeyState::Expired,
            expires_at: Some(Timestamp(5))
        }));
    }

    #[test]
    fn emergency_revokes_everything_that_authenticates() {
        let now = Timestamp(100);
        let vs =
            [v(1, KeyState::Previous, Some(50)), v(2, KeyState::Previous, Some(500)), v(3, KeyState::Current, None)];
        let t = plan_emergency(&vs, now);
        assert_eq!(t.iter().map(|x| x.version).collect::<Vec<_>>(), vec![2, 3]);
        assert!(t.iter().all(|x| x.to == KeyState::Revoked));
    }

    #[test]
    fn policy_validation() {
        assert!(RotationPolicy::default().validate().is_ok());
        let p =
            RotationPolicy { overlap: Duration::from_secs(10), period: Duration::from_secs(10), ..Default::default() };
        assert!(p.validate().is_err());
        let p = RotationPolicy { period: Duration::ZERO, overlap: Duration::ZERO, ..Default::default() };
        assert!(p.validate().is_err());
        let json = r#"{"period":"30d","overlap":"1h","validation":"first_use","validation_timeout":"1h",
            "finish_on_first_use":true,"warn_before":"7d","rotate_on_material_change":false,"enabled":true}"#;
        let p: RotationPolicy = serde_json::from_str(json).unwrap();
        assert_eq!(p.period, Duration::from_secs(30 * 86400));
        assert!(serde_json::from_str::<RotationPolicy>(&json.replace("30d", "soon")).is_err());
        assert!(serde_json::from_str::<RotationPolicy>(&json.replace("\"enabled\"", "\"enabeld\"")).is_err());
    }

    /// Issue 16, row 8: one overlap maximum for every path; a policy took up to ten years.
    #[test]
    fn overlap_is_capped_at_90_days_everywhere() {
        assert_eq!(check_overlap(MAX_OVERLAP), Ok(()));
        assert_eq!(check_overlap(MAX_OVERLAP + Duration::from_secs(1)), Err(MAX_OVERLAP_TEXT));
        let year = Duration::from_secs(365 * 86400);
        let p = RotationPolicy { period: 2 * year, overlap: year, ..Default::default() };
        assert!(p.validate().unwrap_err().to_string().contains("at most 90 days"));
        let p = RotationPolicy { period: 2 * year, overlap: MAX_OVERLAP, ..Default::default() };
        assert!(p.validate().is_ok());
    }

    #[test]
    fn retry_delay_grows_and_is_capped() {
        let b = Duration::from_secs(2);
        let m = Duration::from_secs(60);
        assert_eq!(retry_delay(1, b, m, 1.0), Duration::from_secs(2));
        assert_eq!(retry_delay(3, b, m, 1.0), Duration::from_secs(8));
        assert_eq!(retry_delay(30, b, m, 1.0), m);
        assert_eq!(retry_delay(3, b, m, 0.0), Duration::from_secs(4));
    }

    proptest! {
        #[test]
        fn finish_leaves_exactly_one_current(states in proptest::collection::vec(0u8..5, 0..6), overlap in 0u64..100) {
            let now = Timestamp(1_000);
            let mut vs: Vec<VersionView> = states.iter().enumerate().map(|(i, s)| {
                let state = [KeyState::Current, KeyState::Previous, KeyState::Expired, KeyState::Revoked, KeyState::Pending][*s as usize];
                v(i as i64 + 1, state, (state == KeyState::Previous).then_some(2_000))
            }).collect();
            let new = vs.len() as i64 + 1;
            vs.push(v(new, KeyState::Pending, None));
            let t = plan_finish(&vs, new, Duration::from_micros(overlap), now);
            let after: Vec<KeyState> = vs.iter().map(|x| t.iter().find(|y| y.version == x.version).map_or(x.state, |y| y.to)).collect();
            prop_assert_eq!(after.iter().filter(|s| **s == KeyState::Current).count(), 1);
            prop_assert!(after.iter().filter(|s| **s == KeyState::Previous).count() <= 1);
            prop_assert!(!after.contains(&KeyState::Pending));
        }
    }
}
