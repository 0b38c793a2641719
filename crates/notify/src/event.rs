//! What is worth telling an operator, and how often.

use std::time::Duration;

use serde_json::{Value, json};

/// The kinds of notification. The names are stable: they are the webhook payload's
/// `alert` field, the audit records' `event` and the metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventKind {
    /// A key version stops working within one of the configured lead times.
    KeyExpiring,
    RotationFailed,
    /// A rotation has been in progress for longer than `rotation_stall_after`.
    RotationStalled,
    /// A provisioning delivery to a sync target gave up (dead letter).
    DeliveryDeadLettered,
    /// Fetched trust material is held until an operator approves it.
    MaterialAwaitingApproval,
    MaterialExpired,
    WrappedLinkReused,
    LeakReported,
    /// The audit log refused a record (fedkey fails closed: requests fail too).
    AuditWriteFailing,
}

impl EventKind {
    pub const ALL: [EventKind; 9] = [
        EventKind::KeyExpiring,
        EventKind::RotationFailed,
        EventKind::RotationStalled,
        EventKind::DeliveryDeadLettered,
        EventKind::MaterialAwaitingApproval,
        EventKind::MaterialExpired,
        EventKind::WrappedLinkReused,
        EventKind::LeakReported,
        EventKind::AuditWriteFailing,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::KeyExpiring => "key_expiring",
            EventKind::RotationFailed => "rotation_failed",
            EventKind::RotationStalled => "rotation_stalled",
            EventKind::DeliveryDeadLettered => "delivery_dead_lettered",
            // The alert webhook's name for it since before notifications existed.
            EventKind::MaterialAwaitingApproval => "trust_material_held",
            EventKind::MaterialExpired => "trust_material_expired",
            EventKind::WrappedLinkReused => "wrapped_link_reused",
            EventKind::LeakReported => "leak_reported",
            EventKind::AuditWriteFailing => "audit_write_failing",
        }
    }
}

/// How often the same event may be sent again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Repeat {
    /// Once per (key, state), ever: a key's lead times, a stalled rotation.
    Once,
    /// Again after the de-duplication window, or at once when the state changes.
    AfterWindow,
}

/// One notification to send.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub kind: EventKind,
    /// What the event is about, for de-duplication: `dead_letter:<trust id>`.
    pub key: String,
    /// The state of the thing: the same key in a new state is news.
    pub state: String,
    pub repeat: Repeat,
    /// One line for people (chat text, email subject). Never a secret.
    pub summary: String,
    /// Structured details (the webhook's `details`). Never a secret.
    pub details: Value,
}

impl Event {
    pub fn new(kind: EventKind, key: impl Into<String>, summary: impl Into<String>, details: Value) -> Event {
        Event {
            kind,
            key: key.into(),
            state: String::new(),
            repeat: Repeat::AfterWindow,
            summary: summary.into(),
            details,
        }
    }

    pub fn state(mut self, state: impl Into<String>) -> Event {
        self.state = state.into();
        self
    }

    pub fn once(mut self) -> Event {
        self.repeat = Repeat::Once;
        self
    }

    /// A delivery to `target` (`directory/trust`) that became a dead letter.
    pub fn dead_letter(trust_id: &str, target: &str, count: usize, cause: &str) -> Event {
        Event::new(
            EventKind::DeliveryDeadLettered,
            format!("dead_letter:{trust_id}"),
            format!("provisioning to {target} gave up on {count} change(s): {cause}"),
            json!({"target": target, "dead_letters": count, "cause": cause}),
        )
        // The kind of failure ("target answered 401"), not its variable details.
        .state(cause.split(':').next().unwrap_or(cause).trim().to_owned())
    }

    /// The key version `version` of `trust` stops working within `lead`.
    pub fn key_expiring(trust_id: &str, trust: &str, version: i64, expires_at: &str, lead: Duration) -> Event {
        let days = lead.as_secs() / 86_400;
        Event::new(
            EventKind::KeyExpiring,
            format!("key_expiry:{trust_id}:{version}"),
            format!("key version {version} of {trust} expires at {expires_at} (within {days} day(s))"),
            json!({"trust": trust, "version": version, "expires_at": expires_at, "lead_days": days}),
        )
        .state(format!("{days}d"))
        .once()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_stable() {
        let names: std::collections::HashSet<_> = EventKind::ALL.iter().map(|k| k.as_str()).collect();
        assert_eq!(names.len(), EventKind::ALL.len());
        assert_eq!(EventKind::RotationFailed.as_str(), "rotation_failed");
        assert_eq!(EventKind::MaterialAwaitingApproval.as_str(), "trust_material_held");
    }

    #[test]
    fn expiry_events_are_once_per_lead() {
        let e = Event::key_expiring("t1", "acme/okta", 3, "2026-12-20T00:00:00Z", Duration::from_secs(7 * 86_400));
        assert_eq!((e.key.as_str(), e.state.as_str(), e.repeat), ("key_expiry:t1:3", "7d", Repeat::Once));
        assert!(e.summary.contains("within 7 day(s)"), "{}", e.summary);
    }
}
