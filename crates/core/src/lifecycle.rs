//! The key-version state machine as pure functions: the store applies the plans these
//! return inside one transaction, with the audit record of the change.
//!
//! ```text
//! pending ──► current ──► previous ──► expired   (overlap window ended)
//!    │           │           │
//!    └───────────┴───────────┴───────► revoked   (explicit, immediate)
//! ```

use std::time::Duration;

use crate::{DomainError, KeyState, Timestamp};

/// What the planner needs to know about an existing version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VersionView {
    pub version: i64,
    pub state: KeyState,
    pub expires_at: Option<Timestamp>,
}

/// One state change to persist.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transition {
    pub version: i64,
    pub from: KeyState,
    pub to: KeyState,
    /// New `expires_at` (only set when entering `previous` or `expired`).
    pub expires_at: Option<Timestamp>,
}

/// The state a version is in at `now`: a `previous` version whose overlap has ended is
/// expired even before the sweeper has written that down.
pub fn effective_state(state: KeyState, expires_at: Option<Timestamp>, now: Timestamp) -> KeyState {
    match (state, expires_at) {
        (KeyState::Previous, Some(e)) if e <= now => KeyState::Expired,
        (KeyState::Current, Some(e)) if e <= now => KeyState::Expired,
        (s, _) => s,
    }
}

/// Whether a version may authenticate at `now`: the current version, the previous one
/// inside its overlap window, and a pending one. A version is pending only while the
/// rotation engine delivers it, and the peer must be able to use it the moment it
/// arrives (before promotion), or the switch would drop requests.
pub fn accepts(state: KeyState, expires_at: Option<Timestamp>, now: Timestamp) -> bool {
    matches!(effective_state(state, expires_at, now), KeyState::Current | KeyState::Previous | KeyState::Pending)
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RotationPlan {
    /// Number of the version to create, in state `current`.
    pub new_version: i64,
    pub transitions: Vec<Transition>,
}

/// A manual (or emergency) rotation: a new current version; the old current becomes
/// `previous` until `now + overlap` (expired at once when `overlap` is zero); an older
/// previous version and any pending one are retired, so at most two versions ever
/// authenticate.
pub fn plan_rotation(versions: &[VersionView], overlap: Duration, now: Timestamp) -> RotationPlan {
    let new_version = versions.iter().map(|v| v.version).max().unwrap_or(0) + 1;
    // Only the newest current version is kept for the overlap; should the data ever hold
    // two current versions, the older one is retired too.
    let newest_current = versions
        .iter()
        .filter(|v| effective_state(v.state, v.expires_at, now) == KeyState::Current)
        .map(|v| v.version)
        .max();
    let mut transitions = Vec::new();
    for v in versions {
        let state = effective_state(v.state, v.expires_at, now);
        let t = match state {
            KeyState::Current if overlap.is_zero() || Some(v.version) != newest_current => {
                Transition { version: v.version, from: v.state, to: KeyState::Expired, expires_at: Some(now) }
            }
            KeyState::Current => Transition {
                version: v.version,
                from: v.state,
                to: KeyState::Previous,
                expires_at: Some(now.saturating_add(overlap)),
            },
            KeyState::Previous => {
                Transition { version: v.version, from: v.state, to: KeyState::Expired, expires_at: Some(now) }
            }
            KeyState::Pending => {
                Transition { version: v.version, from: v.state, to: KeyState::Revoked, expires_at: v.expires_at }
            }
            // Already expired by time but not yet written down: record it.
            KeyState::Expired if v.state != KeyState::Expired => {
                Transition { version: v.version, from: v.state, to: KeyState::Expired, expires_at: v.expires_at }
            }
            KeyState::Expired | KeyState::Revoked => continue,
        };
        transitions.push(t);
    }
    RotationPlan { new_version, transitions }
}

/// Immediate revocation of one version.
pub fn plan_revoke(v: &VersionView, now: Timestamp) -> Result<Transition, DomainError> {
    match effective_state(v.state, v.expires_at, now) {
        KeyState::Pending | KeyState::Current | KeyState::Previous => {
            Ok(Transition { version: v.version, from: v.state, to: KeyState::Revoked, expires_at: v.expires_at })
        }
        s @ (KeyState::Revoked | KeyState::Expired) => {
            Err(DomainError::InvalidTransition { version: v.version, state: s.as_str(), action: "revoked" })
        }
    }
}

/// Versions whose overlap has ended but whose stored state still says otherwise.
pub fn due_expiries(versions: &[VersionView], now: Timestamp) -> Vec<Transition> {
    versions
        .iter()
        .filter(|v| v.state != KeyState::Expired && effective_state(v.state, v.expires_at, now) == KeyState::Expired)
        .map(|v| Transition { version: v.version, from: v.state, to: KeyState::Expired, expires_at: v.expires_at })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const H: Duration = Duration::from_secs(3600);

    fn v(version: i64, state: KeyState, expires_at: Option<i64>) -> VersionView {
        VersionView { version, state, expires_at: expires_at.map(Timestamp) }
    }

    #[test]
    fn rotation_keeps_old_version_for_the_overlap() {
        let now = Timestamp(1_000);
        let plan = plan_rotation(&[v(1, KeyState::Current, None)], H, now);
        assert_eq!(plan.new_version, 2);
        assert_eq!(plan.transitions.len(), 1);
        let t = plan.transitions[0];
        assert_eq!((t.from, t.to), (KeyState::Current, KeyState::Previous));
        let exp = t.expires_at.unwrap();
        assert_eq!(exp, now.saturating_add(H));
        assert!(accepts(KeyState::Previous, Some(exp), Timestamp(exp.0 - 1)));
        assert!(!accepts(KeyState::Previous, Some(exp), exp));
    }

    #[test]
    fn zero_overlap_expires_at_once_and_only_two_versions_authenticate() {
        let now = Timestamp(10);
        let plan = plan_rotation(&[v(1, KeyState::Current, None)], Duration::ZERO, now);
        assert_eq!(plan.transitions[0].to, KeyState::Expired);

        let plan = plan_rotation(
            &[v(1, KeyState::Previous, Some(100)), v(2, KeyState::Current, None), v(3, KeyState::Pending, None)],
            H,
            now,
        );
        assert_eq!(plan.new_version, 4);
        let to: Vec<_> = plan.transitions.iter().map(|t| (t.version, t.to)).collect();
        assert_eq!(to, vec![(1, KeyState::Expired), (2, KeyState::Previous), (3, KeyState::Revoked)]);
    }

    #[test]
    fn revoke_only_live_versions() {
        let now = Timestamp(50);
        assert_eq!(plan_revoke(&v(1, KeyState::Current, None), now).unwrap().to, KeyState::Revoked);
        assert!(plan_revoke(&v(1, KeyState::Revoked, None), now).is_err());
        // a previous version past its overlap is expired, so it cannot be revoked
        assert!(plan_revoke(&v(1, KeyState::Previous, Some(40)), now).is_err());
    }

    #[test]
    fn due_expiries_finds_lapsed_previous_versions() {
        let d = due_expiries(&[v(1, KeyState::Previous, Some(5)), v(2, KeyState::Current, None)], Timestamp(6));
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].version, 1);
    }

    fn any_state() -> impl Strategy<Value = KeyState> {
        prop::sample::select(KeyState::ALL.to_vec())
    }

    proptest! {
        /// Whatever the history, after a rotation at most two versions authenticate, and the new one is
        /// never older than any existing version.
        #[test]
        fn rotation_never_leaves_more_than_two_valid(
            states in prop::collection::vec((any_state(), prop::option::of(0i64..200)), 0..8),
            overlap_s in 0u64..100,
            now in 0i64..200,
        ) {
            let versions: Vec<_> = states.iter().enumerate()
                .map(|(i, (s, e))| v(i as i64 + 1, *s, *e)).collect();
            let now = Timestamp(now);
            let plan = plan_rotation(&versions, Duration::from_micros(overlap_s), now);
            prop_assert_eq!(plan.new_version, versions.len() as i64 + 1);
            let mut after: Vec<VersionView> = versions.clone();
            for t in &plan.transitions {
                let x = &mut after[(t.version - 1) as usize];
                x.state = t.to;
                x.expires_at = t.expires_at;
            }
            let valid_old = after.iter().filter(|x| accepts(x.state, x.expires_at, now)).count();
            prop_assert!(valid_old <= 1, "old versions still valid: {valid_old}");
            prop_assert!(!after.iter().any(|x| x.state == KeyState::Pending));
        }
    }
}
