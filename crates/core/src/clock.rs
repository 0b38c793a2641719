//! Time is a parameter: everything that needs "now" receives a [`Clock`].

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

/// Microseconds since the Unix epoch, UTC. Stored as an integer in both backends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct Timestamp(pub i64);

impl Timestamp {
    pub fn micros(self) -> i64 {
        self.0
    }

    pub fn saturating_add(self, d: Duration) -> Timestamp {
        let us = i64::try_from(d.as_micros()).unwrap_or(i64::MAX);
        Timestamp(self.0.saturating_add(us))
    }

    pub fn saturating_sub(self, d: Duration) -> Timestamp {
        let us = i64::try_from(d.as_micros()).unwrap_or(i64::MAX);
        Timestamp(self.0.saturating_sub(us))
    }

    /// RFC 3339 with microseconds, e.g. `2026-11-28T19:20:00.123456Z`.
    pub fn to_rfc3339(self) -> String {
        let nanos = i128::from(self.0) * 1000;
        match time::OffsetDateTime::from_unix_timestamp_nanos(nanos) {
            Ok(t) => t.format(&time::format_description::well_known::Rfc3339).unwrap_or_else(|_| self.0.to_string()),
            Err(_) => self.0.to_string(),
        }
    }

    /// Parses RFC 3339 (`2026-11-28T19:20:00Z`).
    pub fn parse_rfc3339(s: &str) -> Option<Timestamp> {
        let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok()?;
        i64::try_from(t.unix_timestamp_nanos() / 1000).ok().map(Timestamp)
    }
}

pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> Timestamp;
}

/// The wall clock, optionally shifted by a settable offset. The offset exists so the
/// real binary can be driven through time in end-to-end tests (`--unsafe-test-clock`);
/// it is zero in production.
#[derive(Debug, Default, Clone)]
pub struct SystemClock {
    offset_us: Arc<AtomicI64>,
}

impl SystemClock {
    pub fn advance(&self, d: Duration) {
        let us = i64::try_from(d.as_micros()).unwrap_or(i64::MAX);
        self.offset_us.fetch_add(us, Ordering::SeqCst);
    }
}

impl Clock for SystemClock {
    #[allow(clippy::disallowed_methods)] // the one sanctioned read of the wall clock
    fn now(&self) -> Timestamp {
        let real = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
            .unwrap_or(0);
        Timestamp(real.saturating_add(self.offset_us.load(Ordering::SeqCst)))
    }
}

/// A clock that only moves when told to. For tests.
#[derive(Debug, Clone)]
pub struct ManualClock {
    now_us: Arc<AtomicI64>,
}

impl ManualClock {
    pub fn new(start: Timestamp) -> Self {
        Self { now_us: Arc::new(AtomicI64::new(start.0)) }
    }

    pub fn advance(&self, d: Duration) {
        let us = i64::try_from(d.as_micros()).unwrap_or(i64::MAX);
        self.now_us.fetch_add(us, Ordering::SeqCst);
    }

    pub fn set(&self, t: Timestamp) {
        self.now_us.store(t.0, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        Timestamp(self.now_us.load(Ordering::SeqCst))
    }
}

/// Serde helpers writing timestamps as RFC 3339 strings for people and API clients:
/// `#[serde(serialize_with = "fedkey_core::clock::rfc3339")]`, and
/// [`rfc3339_opt`] for `Option<Timestamp>`. (The audit log's canonical encoding keeps the
/// integer form.)
pub fn rfc3339<S: serde::Serializer>(t: &Timestamp, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&t.to_rfc3339())
}

pub fn rfc3339_opt<S: serde::Serializer>(t: &Option<Timestamp>, s: S) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => s.serialize_str(&t.to_rfc3339()),
        None => s.serialize_none(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_only_when_told() {
        let c = ManualClock::new(Timestamp(1_000_000));
        assert_eq!(c.now(), Timestamp(1_000_000));
        c.advance(Duration::from_secs(2));
        assert_eq!(c.now(), Timestamp(3_000_000));
    }

    #[test]
    fn rfc3339_round_trips() {
        let t = Timestamp(1_795_000_000_123_456);
        let s = t.to_rfc3339();
        assert!(s.ends_with('Z'), "{s}");
        assert_eq!(Timestamp::parse_rfc3339(&s), Some(t));
        assert_eq!(Timestamp::parse_rfc3339("yesterday"), None);
    }

    #[test]
    fn system_clock_offset_shifts_time() {
        let c = SystemClock::default();
        let before = c.now();
        c.advance(Duration::from_secs(3600));
        assert!(c.now().0 - before.0 >= 3_600_000_000);
    }
}
