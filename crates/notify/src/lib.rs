//! Operator notifications. Whoever notices something worth telling (the rotation engine,
//! the watchers, the provisioning dispatcher, the audit writer) hands an [`Event`] to the
//! [`Notifier`], which never blocks the caller: events go through a bounded queue to a
//! background task that de-duplicates them (per event key and state, in the database so
//! that nodes and restarts agree), then to one task per channel that rate-limits, sends
//! with retries and back-off, and audits every outcome (`notify.sent`, `notify.failed`,
//! `notify.dropped`) without secrets.

pub mod channel;
pub mod event;
pub mod expiry;
pub mod limit;
pub mod smtp;
mod worker;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fedkey_core::Timestamp;
use fedkey_store::{Store, StoreError};
use tokio::sync::mpsc;

pub use channel::Channel;
pub use event::{Event, EventKind, Repeat};
pub use smtp::{Mailer, SmtpConfig, SmtpSecurity};

/// Events waiting for de-duplication at most; more are dropped (and counted).
const QUEUE: usize = 1024;
/// Remembered (key, state) pairs in memory before the memo starts over.
const MEMO: usize = 10_000;

/// What the notifier does, besides where it sends.
#[derive(Debug, Clone)]
pub struct NotifyPolicy {
    /// Notify this long before a key version expires (each once).
    pub expiry_leads: Vec<Duration>,
    /// The same event (key and state) is not sent again within this window.
    pub dedupe_window: Duration,
    /// Sends per channel and minute (a burst of as many); 0: no limit.
    pub rate_per_minute: u32,
    /// A rotation still unfinished this long after it started is stalled.
    pub rotation_stall_after: Duration,
    /// Attempts per notification and channel.
    pub attempts: u32,
    /// The first retry's delay; doubled each time.
    pub base_backoff: Duration,
}

impl Default for NotifyPolicy {
    fn default() -> Self {
        NotifyPolicy {
            expiry_leads: [14, 7, 1].iter().map(|d| Duration::from_secs(d * 86_400)).collect(),
            dedupe_window: Duration::from_secs(6 * 3600),
            rate_per_minute: 30,
            rotation_stall_after: Duration::from_secs(24 * 3600),
            attempts: 4,
            base_backoff: Duration::from_secs(2),
        }
    }
}

/// Where events go. Cheap to clone.
#[derive(Clone)]
pub struct Notifier {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<Store>,
    policy: NotifyPolicy,
    /// `None`: no channel is configured, events only count.
    tx: Option<mpsc::Sender<Event>>,
    /// (key → state, when) already handed on by this process: spares the database a claim
    /// for what a periodic scan finds again and again.
    memo: Mutex<HashMap<String, (String, Timestamp)>>,
    last_scan: Mutex<Option<Timestamp>>,
}

/// What one scan raised.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct ScanReport {
    pub expiring: usize,
    pub stalled: usize,
    pub audit_failing: bool,
}

impl Notifier {
    /// Starts the background tasks (needs a Tokio runtime) when there is a channel.
    pub fn new(
        store: Arc<Store>,
        channels: Vec<Channel>,
        policy: NotifyPolicy,
        egress: fedkey_egress::Egress,
    ) -> Notifier {
        let tx = (!channels.is_empty()).then(|| {
            let (tx, rx) = mpsc::channel(QUEUE);
            worker::start(store.clone(), channels, policy.clone(), egress, rx);
            tx
        });
        Notifier::with_sender(store, policy, tx)
    }

    /// Without channels: events are counted in the metric only.
    pub fn disabled(store: Arc<Store>) -> Notifier {
        Notifier::with_sender(store, NotifyPolicy::default(), None)
    }

    fn with_sender(store: Arc<Store>, policy: NotifyPolicy, tx: Option<mpsc::Sender<Event>>) -> Notifier {
        Notifier {
            inner: Arc::new(Inner { store, policy, tx, memo: Mutex::new(HashMap::new()), last_scan: Mutex::new(None) }),
        }
    }

    pub fn policy(&self) -> &NotifyPolicy {
        &self.inner.policy
    }

    /// Hands `event` on without waiting; never fails the caller.
    pub fn notify(&self, event: Event) {
        metrics::counter!("fedkey_notify_events_total", "event" => event.kind.as_str()).increment(1);
        let Some(tx) = &self.inner.tx else { return };
        let now = self.inner.store.now();
        if !self.remember(&event, now) {
            return;
        }
        if let Err(e) = tx.try_send(event) {
            let event = match e {
                mpsc::error::TrySendError::Full(ev) | mpsc::error::TrySendError::Closed(ev) => ev,
            };
            metrics::counter!("fedkey_notifications_total", "channel" => "all", "result" => "dropped").increment(1);
            tracing::warn!(event = event.kind.as_str(), key = %event.key, "notification queue full: event dropped");
        }
    }

    /// Whether `event` is news to this process (and remembers it).
    fn remember(&self, event: &Event, now: Timestamp) -> bool {
        let Ok(mut memo) = self.inner.memo.lock() else { return true };
        let prev = memo.get(&event.key).map(|(s, at)| (s.as_str(), *at));
        if !is_news(prev, &event.state, event.repeat, now, self.inner.policy.dedupe_window) {
            return false;
        }
        if memo.len() >= MEMO {
            memo.clear();
        }
        memo.insert(event.key.clone(), (event.state.clone(), now));
        true
    }

    /// Looks for what only time brings: key versions within a lead time of their expiry,
    /// and stalled rotations. At most once a minute (by the store's clock).
    pub async fn scan(&self) -> Result<ScanReport, StoreError> {
        let store = &self.inner.store;
        let now = store.now();
        {
            let Ok(mut last) = self.inner.last_scan.lock() else { return Ok(ScanReport::default()) };
            if last.is_some_and(|l| now.0.saturating_sub(l.0) < 60_000_000) {
                return Ok(ScanReport::default());
            }
            *last = Some(now);
        }
        let mut report = ScanReport::default();
        // First: the queries below fail the same way when the database does.
        if store.writes_failing() {
            report.audit_failing = true;
            self.notify(Event::new(
                EventKind::AuditWriteFailing,
                "audit_write_failing",
                "audit records cannot be written: changes and authenticated requests fail until the database accepts writes",
                serde_json::json!({}),
            ));
        }
        let leads = &self.inner.policy.expiry_leads;
        if let Some(max) = leads.iter().max() {
            for k in store.expiring_keys(now.saturating_add(*max)).await? {
                if let Some(lead) = expiry::due_lead(k.expires_at, now, leads) {
                    report.expiring += 1;
                    self.notify(Event::key_expiring(
                        &k.trust_id,
                        &k.trust,
                        k.version,
                        &k.expires_at.to_rfc3339(),
                        lead,
                    ));
                }
            }
        }
        let stall = self.inner.policy.rotation_stall_after;
        for rot in store.active_rotations().await? {
            if rot.started_at.saturating_add(stall).0 <= now.0 {
                report.stalled += 1;
                self.notify(expiry::stalled(&rot, stall));
            }
        }
        Ok(report)
    }
}

/// Whether an event (in `state`, at `now`) is news after the last one sent for its key
/// (`prev`: state and time): a new key or state always is; the same state only when it
/// repeats and the window has passed.
pub fn is_news(prev: Option<(&str, Timestamp)>, state: &str, repeat: Repeat, now: Timestamp, window: Duration) -> bool {
    match prev {
        None => true,
        Some((s, _)) if s != state => true,
        Some((_, at)) => repeat == Repeat::AfterWindow && at.saturating_add(window).0 <= now.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dedupe_by_key_state_and_window() {
        let w = Duration::from_secs(3600);
        let t = Timestamp(1_000_000_000_000);
        let later = |s: u64| t.saturating_add(Duration::from_secs(s));
        assert!(is_news(None, "x", Repeat::AfterWindow, t, w));
        // The same state within the window is a duplicate; after it, news again.
        assert!(!is_news(Some(("x", t)), "x", Repeat::AfterWindow, later(3599), w));
        assert!(is_news(Some(("x", t)), "x", Repeat::AfterWindow, later(3600), w));
        // A changed state is news at once.
        assert!(is_news(Some(("x", t)), "y", Repeat::AfterWindow, later(1), w));
        // Once: never again in the same state, whatever the window.
        assert!(!is_news(Some(("7d", t)), "7d", Repeat::Once, later(86_400 * 30), w));
        assert!(is_news(Some(("7d", t)), "1d", Repeat::Once, later(1), w));
    }
}
