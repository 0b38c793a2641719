//! Failed authentications, aggregated per source address so that a flood of bad
//! credentials cannot grow the audit log at the flood's rate.
//!
//! The rule (documented in docs/audit.md): per source address and authentication action
//! (`key.authenticate`, `admin.authenticate`), a window opens at the first failure and
//! lasts [`FailurePolicy::window`]. Its first [`FailurePolicy::recorded_per_window`]
//! failures are recorded one each, as before. Later failures of the window are only
//! counted here; when the window has closed, one `auth.failure_summary` record holds their
//! count by reason and by credential (fingerprints, capped). Nothing is dropped: a summary
//! that cannot be written stays here and is retried, and the counts always add up
//! (`recorded + summarized` = failures of the window).

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::Duration;

use fedkey_audit::{Event, Outcome};
use fedkey_core::Timestamp;
use serde_json::{Value, json};

/// The audit action of a summary record.
pub const SUMMARY_ACTION: &str = "auth.failure_summary";
/// Distinct credentials listed in one summary; the rest are counted as `credentials_other`.
pub const MAX_LISTED_CREDENTIALS: usize = 20;
/// Windows tracked at once; failures from further sources share one overflow window per
/// action (its summary has no `source`).
pub const MAX_WINDOWS: usize = 10_000;

/// How failed authentications are aggregated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FailurePolicy {
    pub window: Duration,
    /// Failures recorded one each per source and window before they are summarized.
    pub recorded_per_window: u32,
}

impl Default for FailurePolicy {
    fn default() -> Self {
        FailurePolicy { window: Duration::from_secs(60), recorded_per_window: 10 }
    }
}

/// Whose failures a window counts.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    action: String,
    /// `None` for the overflow window (and for requests without a peer address).
    source: Option<String>,
    overflow: bool,
}

/// One source's failures of one window.
#[derive(Debug, Clone)]
struct Window {
    start: Timestamp,
    /// Failures recorded one each.
    recorded: u64,
    /// Failures counted for the summary.
    summarized: u64,
    reasons: BTreeMap<String, u64>,
    credentials: BTreeMap<String, u64>,
    credentials_other: u64,
}

impl Window {
    fn new(start: Timestamp) -> Window {
        Window {
            start,
            recorded: 0,
            summarized: 0,
            reasons: BTreeMap::new(),
            credentials: BTreeMap::new(),
            credentials_other: 0,
        }
    }

    fn count(&mut self, reason: &str, credential: Option<&str>) {
        self.summarized += 1;
        *self.reasons.entry(reason.to_owned()).or_default() += 1;
        self.count_credential(credential, 1);
    }

    fn count_credential(&mut self, credential: Option<&str>, n: u64) {
        let Some(c) = credential else { return };
        if let Some(v) = self.credentials.get_mut(c) {
            *v += n;
        } else if self.credentials.len() < MAX_LISTED_CREDENTIALS {
            self.credentials.insert(c.to_owned(), n);
        } else {
            self.credentials_other += n;
        }
    }

    /// Adds `other`'s counts (a later window of the same key, or one moved to overflow).
    fn absorb(&mut self, other: Window) {
        self.start = self.start.min(other.start);
        self.recorded += other.recorded;
        self.summarized += other.summarized;
        for (r, n) in other.reasons {
            *self.reasons.entry(r).or_default() += n;
        }
        for (c, n) in other.credentials {
            self.count_credential(Some(&c), n);
        }
        self.credentials_other += other.credentials_other;
    }
}

/// A window whose summary is due.
#[derive(Debug, Clone)]
struct Closed {
    key: Key,
    window: Window,
    end: Timestamp,
    /// Closed by a flush on shutdown, before its time was up.
    early: bool,
}

/// What to do with one failed authentication.
#[derive(Debug, PartialEq, Eq)]
pub enum Admit {
    /// Record it one each; pass the ticket to [`FailedAuths::unrecord`] if that fails.
    Record(Ticket),
    /// Counted for the window's summary: no record of its own.
    Counted,
}

/// Identifies the window a failure was recorded in.
#[derive(Debug, PartialEq, Eq)]
pub struct Ticket {
    key: Key,
    start: Timestamp,
}

#[derive(Default)]
struct State {
    open: HashMap<Key, Window>,
    closed: Vec<Closed>,
}

/// The per-source windows of one process.
pub struct FailedAuths {
    policy: FailurePolicy,
    state: Mutex<State>,
}

impl FailedAuths {
    pub fn new(policy: FailurePolicy) -> FailedAuths {
        FailedAuths { policy, state: Mutex::new(State::default()) }
    }

    pub fn policy(&self) -> FailurePolicy {
        self.policy
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A poisoned lock only means a panic elsewhere mid-update; the counts are usable.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn ends(&self, w: &Window) -> Timestamp {
        w.start.saturating_add(self.policy.window)
    }

    /// Decides whether the failure `ev` (a denied authentication record) is recorded one
    /// each or counted, at `now`.
    pub fn admit(&self, ev: &Event, now: Timestamp) -> Admit {
        let mut st = self.lock();
        let mut key = Key { action: ev.action.clone(), source: ev.source.clone(), overflow: false };
        if let Some(w) = st.open.get(&key)
            && now >= self.ends(w)
            && let Some(w) = st.open.remove(&key)
        {
            self.close(&mut st, key.clone(), w, false);
        }
        // Expired windows are cleared by the periodic flush ([`FailedAuths::take_due`]), not
        // here: a flood from many sources must not cost a scan per request.
        if !st.open.contains_key(&key) && st.open.len() >= MAX_WINDOWS {
            key = Key { action: ev.action.clone(), source: None, overflow: true };
            if let Some(w) = st.open.get(&key)
                && now >= self.ends(w)
                && let Some(w) = st.open.remove(&key)
            {
                self.close(&mut st, key.clone(), w, false);
            }
        }
        let n = u64::from(self.policy.recorded_per_window);
        let w = st.open.entry(key.clone()).or_insert_with(|| Window::new(now));
        if w.recorded < n {
            w.recorded += 1;
            return Admit::Record(Ticket { key, start: w.start });
        }
        let reason = ev.details.get("reason").and_then(Value::as_str).unwrap_or("unknown");
        w.count(reason, credential(ev).as_deref());
        Admit::Counted
    }

    /// The failure admitted with `t` could not be recorded (it was refused with 503 instead).
    pub fn unrecord(&self, t: Ticket) {
        let mut st = self.lock();
        if let Some(w) = st.open.get_mut(&t.key)
            && w.start == t.start
        {
            w.recorded = w.recorded.saturating_sub(1);
        }
    }

    fn close(&self, st: &mut State, key: Key, w: Window, early: bool) {
        if w.summarized == 0 {
            // Every failure of the window was recorded one each: nothing to summarize.
            return;
        }
        let end = if early { Timestamp(0) } else { self.ends(&w) };
        st.closed.push(Closed { key, window: w, end, early });
    }

    fn close_expired(&self, st: &mut State, now: Timestamp) {
        let expired: Vec<Key> = st.open.iter().filter(|(_, w)| now >= self.ends(w)).map(|(k, _)| k.clone()).collect();
        for k in expired {
            if let Some(w) = st.open.remove(&k) {
                self.close(st, k, w, false);
            }
        }
    }

    /// Takes the summaries due at `now` (every open window too with `all`, on shutdown) as
    /// audit events. Those that cannot be written go back with [`FailedAuths::restore`].
    pub fn take_due(&self, now: Timestamp, all: bool) -> Vec<Summary> {
        let mut st = self.lock();
        self.close_expired(&mut st, now);
        if all {
            let open: Vec<(Key, Window)> = st.open.drain().collect();
            for (k, w) in open {
                self.close(&mut st, k, w, true);
            }
        }
        std::mem::take(&mut st.closed)
            .into_iter()
            .map(|mut c| {
                if c.early {
                    c.end = now;
                }
                Summary(c)
            })
            .collect()
    }

    /// Puts back summaries that could not be written, to be retried. Several of one key
    /// are merged, so a long audit outage cannot grow this list without bound.
    pub fn restore(&self, summaries: Vec<Summary>) {
        let mut st = self.lock();
        for Summary(mut c) in summaries {
            if !st.closed.iter().any(|x| x.key == c.key) && st.closed.len() >= MAX_WINDOWS {
                c.key = Key { action: c.key.action.clone(), source: None, overflow: true };
            }
            match st.closed.iter_mut().find(|x| x.key == c.key) {
                Some(x) => {
                    x.end = x.end.max(c.end);
                    x.window.absorb(c.window);
                }
                None => st.closed.push(c),
            }
        }
    }
}

/// The credential a failure presented, as the audit names it: the fingerprint of a
/// value that matched nothing, else the key or token it matched (`key:DIR/TRUST#V`).
fn credential(ev: &Event) -> Option<String> {
    match ev.details.get("presented").and_then(Value::as_str) {
        Some(fp) => Some(fp.to_owned()),
        None => (ev.actor != "anonymous").then(|| ev.actor.clone()),
    }
}

/// One window's summary, on its way to the log.
#[derive(Debug, Clone)]
pub struct Summary(Closed);

impl Summary {
    /// The `auth.failure_summary` record, stamped `now`.
    pub fn event(&self, now: Timestamp) -> Event {
        let Closed { key, window: w, end, early } = &self.0;
        let details = json!({
            "action": key.action,
            "window_start": w.start.to_rfc3339(),
            "window_end": end.to_rfc3339(),
            "closed_by": if *early { "shutdown" } else { "window" },
            "recorded": w.recorded,
            "summarized": w.summarized,
            "reasons": w.reasons,
            "credentials": w.credentials,
            "credentials_other": w.credentials_other,
            "overflow": key.overflow,
        });
        Event::new(now, "anonymous", SUMMARY_ACTION, Outcome::Denied).source(key.source.clone()).details(details)
    }

    /// Failures counted in this summary.
    pub fn summarized(&self) -> u64 {
        self.0.window.summarized
    }
}

impl crate::Store {
    /// Audits a failed authentication under the aggregation rule: recorded one each (and
    /// durable when this returns, `Some(seq)`), or counted for its window's summary
    /// (`None`). The error means it had to be recorded and could not be (deny with 503).
    pub async fn record_auth_failure(&self, ev: Event) -> Result<Option<i64>, crate::StoreError> {
        match self.auth_failures.admit(&ev, self.now()) {
            Admit::Counted => {
                metrics::counter!("fedkey_auth_failures_summarized_total").increment(1);
                Ok(None)
            }
            Admit::Record(ticket) => match self.audit.record(ev, None).await {
                Ok(seq) => Ok(Some(seq)),
                Err(e) => {
                    self.auth_failures.unrecord(ticket);
                    Err(e)
                }
            },
        }
    }

    /// Writes the summaries that are due (with `all`, of every open window too: on
    /// shutdown). Returns how many failures they summarized. Summaries that could not be
    /// written are kept and retried by the next flush.
    pub async fn flush_auth_failures(&self, all: bool) -> Result<u64, crate::StoreError> {
        let now = self.now();
        let due = self.auth_failures.take_due(now, all);
        let mut submitted = Vec::with_capacity(due.len());
        for s in due {
            let p = self.audit.submit(s.event(now), None).await;
            submitted.push((s, p));
        }
        let (mut written, mut failed, mut error) = (0, Vec::new(), None);
        for (s, p) in submitted {
            let result = match p {
                Ok(p) => p.wait().await,
                Err(e) => Err(e),
            };
            match result {
                Ok(_) => written += s.summarized(),
                Err(e) => {
                    failed.push(s);
                    error.get_or_insert(e);
                }
            }
        }
        self.auth_failures.restore(failed);
        match error {
            Some(e) => Err(e),
            None => Ok(written),
        }
    }

    /// Flushes due summaries every `every` until the store is dropped.
    pub fn spawn_auth_failure_flush(self: &std::sync::Arc<Self>, every: Duration) -> tokio::task::JoinHandle<()> {
        let store = std::sync::Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(store) = store.upgrade() else { return };
                if let Err(e) = store.flush_auth_failures(false).await {
                    tracing::warn!(error = %e, "failed-authentication summaries not written yet; retrying");
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: Timestamp = Timestamp(1_800_000_000_000_000);
    const SEC: Duration = Duration::from_secs(1);

    fn failure(source: &str, presented: &str) -> Event {
        Event::new(T0, "anonymous", "key.authenticate", Outcome::Denied)
            .source(Some(source.to_owned()))
            .details(json!({"reason": "unknown_token", "presented": presented}))
    }

    fn policy(n: u32) -> FailedAuths {
        FailedAuths::new(FailurePolicy { window: Duration::from_secs(60), recorded_per_window: n })
    }

    fn at(s: u64) -> Timestamp {
        T0.saturating_add(SEC * u32::try_from(s).unwrap())
    }

    fn detail(s: &Summary, k: &str) -> Value {
        s.event(T0).details[k].clone()
    }

    #[test]
    fn first_n_per_window_are_recorded_then_counted() {
        let f = policy(3);
        let ev = failure("192.0.2.1", "fp1");
        let got: Vec<bool> = (0..5).map(|_| matches!(f.admit(&ev, at(0)), Admit::Record(_))).collect();
        assert_eq!(got, [true, true, true, false, false]);
        // Another source and another action have windows of their own.
        assert!(matches!(f.admit(&failure("192.0.2.2", "fp1"), at(1)), Admit::Record(_)));
        let mut admin = failure("192.0.2.1", "fp1");
        admin.action = "admin.authenticate".into();
        assert!(matches!(f.admit(&admin, at(1)), Admit::Record(_)));
        // Nothing is due before the window closes.
        assert!(f.take_due(at(59), false).is_empty());
    }

    #[test]
    fn window_boundaries_and_counts_add_up() {
        let f = policy(2);
        let ev = failure("192.0.2.1", "fp");
        let mut recorded = 0;
        // 7 failures in [0 s, 60 s): 2 recorded, 5 summarized. The one at exactly 60 s opens
        // the next window.
        for s in [0, 10, 20, 30, 40, 50, 59] {
            recorded += u64::from(matches!(f.admit(&ev, at(s)), Admit::Record(_)));
        }
        assert_eq!(recorded, 2);
        assert!(matches!(f.admit(&ev, at(60)), Admit::Record(_)), "a new window starts at the boundary");
        let due = f.take_due(at(60), false);
        assert_eq!(due.len(), 1, "the closed window's summary is due");
        let s = &due[0];
        assert_eq!((detail(s, "recorded"), detail(s, "summarized")), (json!(2), json!(5)));
        assert_eq!(detail(s, "reasons"), json!({"unknown_token": 5}));
        assert_eq!(detail(s, "window_start").as_str(), Some(at(0).to_rfc3339().as_str()));
        assert_eq!(detail(s, "window_end").as_str(), Some(at(60).to_rfc3339().as_str()));
        assert_eq!(detail(s, "closed_by"), "window");
        let e = s.event(at(61));
        assert_eq!(
            (e.action.as_str(), e.source.as_deref(), e.outcome),
            (SUMMARY_ACTION, Some("192.0.2.1"), Outcome::Denied)
        );
        // A window whose failures were all recorded has no summary.
        assert!(f.take_due(at(200), false).is_empty());
    }

    #[test]
    fn credentials_are_distinct_and_capped() {
        let f = policy(0);
        let n = MAX_LISTED_CREDENTIALS + 5;
        for i in 0..n {
            // Each credential twice; the missing-credential failure has none.
            f.admit(&failure("192.0.2.1", &format!("fp{i}")), at(1));
            f.admit(&failure("192.0.2.1", &format!("fp{i}")), at(2));
        }
        let missing = Event::new(T0, "anonymous", "key.authenticate", Outcome::Denied)
            .source(Some("192.0.2.1".into()))
            .details(json!({"reason": "missing_credentials"}));
        f.admit(&missing, at(3));
        let matched = Event::new(T0, "key:acme/entra#1", "key.authenticate", Outcome::Denied)
            .source(Some("192.0.2.1".into()))
            .details(json!({"reason": "key_revoked"}));
        f.admit(&matched, at(3));
        let due = f.take_due(at(61), false);
        let s = &due[0];
        let creds = detail(s, "credentials");
        let listed = creds.as_object().unwrap();
        assert_eq!(listed.len(), MAX_LISTED_CREDENTIALS);
        assert!(listed.values().all(|v| v == 2), "each listed once, with its count: {creds}");
        let other = detail(s, "credentials_other").as_u64().unwrap();
        // The key that matched a version comes after the cap too.
        assert_eq!(other, 2 * 5 + 1);
        let total = detail(s, "summarized").as_u64().unwrap();
        assert_eq!(total, 2 * n as u64 + 2);
        let listed_sum: u64 = listed.values().map(|v| v.as_u64().unwrap()).sum();
        assert_eq!(listed_sum + other + 1, total, "credentials + other + missing = summarized");
        let reasons: u64 = detail(s, "reasons").as_object().unwrap().values().map(|v| v.as_u64().unwrap()).sum();
        assert_eq!(reasons, total);
    }

    #[test]
    fn shutdown_flush_takes_open_windows_and_restore_merges() {
        let f = policy(1);
        let ev = failure("192.0.2.1", "fp");
        for _ in 0..4 {
            f.admit(&ev, at(5));
        }
        assert!(f.take_due(at(10), false).is_empty(), "still open");
        let due = f.take_due(at(10), true);
        assert_eq!(due.len(), 1);
        assert_eq!(detail(&due[0], "closed_by"), "shutdown");
        assert_eq!(detail(&due[0], "window_end").as_str(), Some(at(10).to_rfc3339().as_str()));
        assert_eq!(detail(&due[0], "summarized"), json!(3));
        // A failed write puts it back; a later summary of the same source merges into it.
        f.restore(due);
        for _ in 0..3 {
            f.admit(&ev, at(20));
        }
        f.restore(f.take_due(at(100), false));
        let due = f.take_due(at(100), false);
        assert_eq!(due.len(), 1);
        assert_eq!((detail(&due[0], "recorded"), detail(&due[0], "summarized")), (json!(2), json!(5)));
        assert!(f.take_due(at(100), true).is_empty(), "nothing left after it is taken");
    }

    #[test]
    fn unrecord_gives_the_slot_back() {
        let f = policy(1);
        let ev = failure("192.0.2.1", "fp");
        let Admit::Record(t) = f.admit(&ev, at(0)) else { panic!("first is recorded") };
        f.unrecord(t);
        assert!(matches!(f.admit(&ev, at(1)), Admit::Record(_)), "a failed write does not use up the window");
        assert_eq!(f.admit(&ev, at(2)), Admit::Counted);
    }

    #[test]
    fn sources_beyond_the_cap_share_an_overflow_window() {
        let f = policy(1);
        for i in 0..MAX_WINDOWS {
            f.admit(&failure(&format!("10.0.{}.{}", i / 256, i % 256), "fp"), at(0));
        }
        // A new source: tracked in the overflow window, first one recorded, then counted.
        assert!(matches!(f.admit(&failure("192.0.2.9", "fp"), at(1)), Admit::Record(_)));
        assert_eq!(f.admit(&failure("192.0.2.10", "fp"), at(1)), Admit::Counted);
        let due = f.take_due(at(61), false);
        let overflow: Vec<_> = due.iter().filter(|s| detail(s, "overflow") == true).collect();
        assert_eq!(overflow.len(), 1);
        assert_eq!(overflow[0].event(at(1)).source, None);
        assert_eq!(detail(overflow[0], "summarized"), json!(1));
        // The flush cleared the closed windows: new sources get their own again.
        assert!(matches!(f.admit(&failure("192.0.2.11", "fp"), at(120)), Admit::Record(_)));
        assert!(matches!(f.admit(&failure("192.0.2.12", "fp"), at(120)), Admit::Record(_)));
    }
}
