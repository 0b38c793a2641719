//! Alerts: a metric always, and a notification (fedkey-notify: the signed webhook, chat,
//! email) when channels are configured. Every alert also has an audit record, written by
//! the operation that raised it; the notification's outcome has its own.

use fedkey_notify::{Event, EventKind, Notifier};
use serde_json::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlertKind {
    RotationFailed,
    WrappedLinkReused,
    MaterialHeld,
    MaterialExpired,
    /// A leak report named one of fedkey's tokens.
    LeakReported,
}

impl AlertKind {
    pub fn as_str(self) -> &'static str {
        self.event().as_str()
    }

    fn event(self) -> EventKind {
        match self {
            AlertKind::RotationFailed => EventKind::RotationFailed,
            AlertKind::WrappedLinkReused => EventKind::WrappedLinkReused,
            AlertKind::MaterialHeld => EventKind::MaterialAwaitingApproval,
            AlertKind::MaterialExpired => EventKind::MaterialExpired,
            AlertKind::LeakReported => EventKind::LeakReported,
        }
    }
}

/// Where alerts go. Cheap to clone.
#[derive(Clone)]
pub struct Alerter {
    notifier: Notifier,
}

impl Alerter {
    pub fn new(notifier: Notifier) -> Alerter {
        Alerter { notifier }
    }

    pub fn notifier(&self) -> &Notifier {
        &self.notifier
    }

    /// Raises an alert. Never fails nor waits for the caller: sending happens in the
    /// background (the alert is already in the audit log and metrics).
    pub async fn raise(&self, kind: AlertKind, details: Value) {
        metrics::counter!("fedkey_alerts_total", "kind" => kind.as_str()).increment(1);
        self.notifier.notify(event(kind, details));
    }
}

/// The notification for an alert: keyed by what it is about, in a state that makes a
/// repeat of the same problem a duplicate and a new one news.
fn event(kind: AlertKind, details: Value) -> Event {
    let field = |k: &str| match &details[k] {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        v => v.to_string(),
    };
    let (trust, version) = (field("trust"), field("version"));
    let (key, state, summary) = match kind {
        AlertKind::RotationFailed => (
            format!("rotation_failed:{trust}:{version}"),
            field("step"),
            format!("rotation of {trust} to version {version} failed at step {}: {}", field("step"), field("error")),
        ),
        AlertKind::WrappedLinkReused => (
            format!("wrapped_link_reused:{trust}:{version}"),
            field("first_used_at"),
            format!("a wrapped link for key version {version} of {trust} was used a second time"),
        ),
        AlertKind::MaterialHeld => (
            format!("material_held:{trust}"),
            field("digest"),
            format!("new trust material for {trust} awaits approval (fedkey trust material approve)"),
        ),
        AlertKind::MaterialExpired => (
            format!("material_expired:{trust}"),
            field("expired_at"),
            format!("the trust material of {trust} expired without a successful refresh"),
        ),
        AlertKind::LeakReported => (
            format!("leak_reported:{}", field("fingerprint")),
            field("action"),
            format!("a leak report named a live token of {trust} (action: {})", field("action")),
        ),
    };
    Event::new(kind.event(), key, summary, details).state(state)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn alert_names_are_unchanged() {
        assert_eq!(AlertKind::RotationFailed.as_str(), "rotation_failed");
        assert_eq!(AlertKind::MaterialHeld.as_str(), "trust_material_held");
        assert_eq!(AlertKind::MaterialExpired.as_str(), "trust_material_expired");
        assert_eq!(AlertKind::WrappedLinkReused.as_str(), "wrapped_link_reused");
        assert_eq!(AlertKind::LeakReported.as_str(), "leak_reported");
    }

    #[test]
    fn a_repeated_failure_at_the_same_step_is_the_same_event() {
        let d = |attempt: i64| json!({"trust": "acme/okta", "version": 3, "step": "set", "attempt": attempt, "error": "boom"});
        let (a, b) = (event(AlertKind::RotationFailed, d(1)), event(AlertKind::RotationFailed, d(2)));
        assert_eq!((&a.key, &a.state), (&b.key, &b.state));
        assert_eq!(a.key, "rotation_failed:acme/okta:3");
        assert!(a.summary.contains("failed at step set: boom"), "{}", a.summary);
    }
}
