//! Events that only time brings: a key version's expiry ahead, a rotation that does not end.

use std::time::Duration;

use fedkey_core::Timestamp;
use fedkey_store::ops::Rotation;
use serde_json::json;

use crate::event::{Event, EventKind};

/// The lead time whose notification is due for a key version expiring at `expires_at`:
/// the shortest lead that `now` has reached. `None` before the longest lead and once the
/// version has expired. A clock that jumps past several leads yields only the closest, so
/// one notification covers them.
pub fn due_lead(expires_at: Timestamp, now: Timestamp, leads: &[Duration]) -> Option<Duration> {
    let left = u128::try_from(expires_at.0.checked_sub(now.0)?).ok().filter(|l| *l > 0)?;
    leads.iter().copied().filter(|l| left <= l.as_micros()).min()
}

/// A rotation in progress for longer than `after`.
pub fn stalled(rot: &Rotation, after: Duration) -> Event {
    let trust = rot.trust_ref().to_string();
    Event::new(
        EventKind::RotationStalled,
        format!("rotation_stalled:{}", rot.id),
        format!(
            "rotation of {trust} to version {} is still at step {} after {}h (attempts: {})",
            rot.version,
            rot.step,
            after.as_secs() / 3600,
            rot.attempts
        ),
        json!({
            "trust": trust, "version": rot.version, "step": rot.step, "attempts": rot.attempts,
            "started_at": rot.started_at.to_rfc3339(), "last_error": rot.last_error,
        }),
    )
    .state("stalled")
    .once()
}

#[cfg(test)]
mod tests {
    use super::*;
    use fedkey_core::{Clock, ManualClock};

    const DAY: u64 = 86_400;

    #[test]
    fn lead_times_follow_the_clock() {
        let leads: Vec<Duration> = [14, 7, 1].iter().map(|d| Duration::from_secs(d * DAY)).collect();
        let clock = ManualClock::new(Timestamp(1_800_000_000_000_000));
        let expires = clock.now().saturating_add(Duration::from_secs(20 * DAY));
        let lead = |c: &ManualClock| due_lead(expires, c.now(), &leads).map(|d| d.as_secs() / DAY);
        assert_eq!(lead(&clock), None, "20 days ahead: no lead reached");
        clock.advance(Duration::from_secs(6 * DAY));
        assert_eq!(lead(&clock), Some(14), "exactly 14 days left");
        clock.advance(Duration::from_secs(6 * DAY));
        assert_eq!(lead(&clock), Some(14), "8 days left");
        clock.advance(Duration::from_secs(DAY));
        assert_eq!(lead(&clock), Some(7));
        clock.advance(Duration::from_secs(6 * DAY + 3600));
        assert_eq!(lead(&clock), Some(1), "23 hours left");
        clock.advance(Duration::from_secs(DAY));
        assert_eq!(lead(&clock), None, "expired: nothing ahead any more");
    }

    #[test]
    fn a_jump_past_several_leads_gives_the_closest() {
        let leads: Vec<Duration> = [14, 7, 1].iter().map(|d| Duration::from_secs(d * DAY)).collect();
        let now = Timestamp(1_800_000_000_000_000);
        let expires = now.saturating_add(Duration::from_secs(12 * 3600));
        assert_eq!(due_lead(expires, now, &leads), Some(Duration::from_secs(DAY)));
        assert_eq!(due_lead(expires, now, &[]), None);
    }
}
