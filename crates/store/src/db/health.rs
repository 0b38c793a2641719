//! What the database layer knows about its connections' health: when a connection was
//! last found lost (so that pooled connections idle since then are checked before use),
//! whether writes are failing, and the readiness last reported (`/readyz` is cheap: one
//! check a second at most, and a write probe only while writes are failing).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use sqlx::error::DatabaseError;

/// A pooled PostgreSQL connection idle longer than this is pinged before it is used
/// (sooner when the server closes idle sessions sooner, see [`Health::set_idle_session_timeout`]).
const IDLE_PING_AFTER: Duration = Duration::from_secs(30);

/// Whether the store can read and write, as `/readyz` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Readiness {
    /// The database answers.
    pub database: bool,
    /// Writes, audit records included, go through.
    pub writes: bool,
}

impl Readiness {
    pub fn ready(self) -> bool {
        self.database && self.writes
    }
}

pub(crate) struct Health {
    origin: Instant,
    /// When a connection was last found lost, in ms after `origin` plus one (0: never).
    lost_at: AtomicU64,
    /// Pooled connections idle longer than this (ms) are pinged before use.
    ping_after: AtomicU64,
    /// A write failed for a reason of the database, not of the request, and none has
    /// succeeded since.
    writes_failing: AtomicBool,
    /// Such failures so far: a "ready" checked before the last one is not reused.
    failures: AtomicU64,
    /// The readiness last checked, when, and [`Health::failures`] then; the lock also
    /// makes concurrent callers wait for one check instead of each running their own.
    pub(crate) ready: tokio::sync::Mutex<Option<Checked>>,
}

/// A readiness check's result.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Checked {
    pub(crate) at: Instant,
    pub(crate) failures: u64,
    pub(crate) readiness: Readiness,
}

impl Default for Health {
    fn default() -> Self {
        Health {
            origin: Instant::now(),
            lost_at: AtomicU64::new(0),
            ping_after: AtomicU64::new(millis(IDLE_PING_AFTER)),
            writes_failing: AtomicBool::new(false),
            failures: AtomicU64::new(0),
            ready: tokio::sync::Mutex::new(None),
        }
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl Health {
    /// A connection was found broken: the database restarted, failed over, or closed it.
    /// Every pooled connection idle since may be broken too.
    pub(crate) fn connection_lost(&self) {
        self.lost_at.store(millis(self.origin.elapsed()) + 1, Ordering::Relaxed);
        self.write_failed();
    }

    /// Whether a pooled connection idle for `idle_for` must be pinged before use: it is
    /// idle since before a connection was found lost, or longer than the server may keep
    /// an idle session.
    pub(crate) fn should_ping(&self, idle_for: Duration) -> bool {
        let idle = millis(idle_for);
        if idle > self.ping_after.load(Ordering::Relaxed) {
            return true;
        }
        match self.lost_at.load(Ordering::Relaxed) {
            0 => false,
            at => millis(self.origin.elapsed()) < at.saturating_add(idle),
        }
    }

    /// PostgreSQL's `idle_session_timeout` (0: off): connections idle for half of it
    /// are pinged before use, so the pool does not lend out ones the server has closed.
    pub(crate) fn set_idle_session_timeout(&self, ms: u64) {
        let after = if ms == 0 { millis(IDLE_PING_AFTER) } else { (ms / 2).min(millis(IDLE_PING_AFTER)) };
        self.ping_after.store(after, Ordering::Relaxed);
    }

    pub(crate) fn write_failed(&self) {
        self.writes_failing.store(true, Ordering::Relaxed);
        self.failures.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }

    /// Whether `c`, checked no longer than `fresh` ago, still holds: a "not ready" for
    /// that long, a "ready" only while no write has failed since.
    pub(crate) fn still_holds(&self, c: &Checked, fresh: Duration) -> bool {
        c.at.elapsed() < fresh && (!c.readiness.ready() || c.failures == self.failures())
    }

    pub(crate) fn write_succeeded(&self) {
        self.writes_failing.store(false, Ordering::Relaxed);
    }

    pub(crate) fn writes_failing(&self) -> bool {
        self.writes_failing.load(Ordering::Relaxed)
    }
}

/// Whether `e` means the connection it came from is gone (the server shut down, crashed,
/// terminated the backend, closed an idle session, or the network failed), so that the
/// connection must be replaced rather than used again.
pub(crate) fn is_connection_lost(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_) | sqlx::Error::Tls(_) | sqlx::Error::Protocol(_) | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(d) => is_lost_code(d.as_ref()),
        _ => false,
    }
}

/// SQLSTATE class 08 (connection exception), admin / crash shutdown, "cannot connect
/// now", and the idle (in transaction) session timeouts.
fn is_lost_code(d: &dyn DatabaseError) -> bool {
    d.code()
        .is_some_and(|c| c.starts_with("08") || matches!(c.as_ref(), "57P01" | "57P02" | "57P03" | "57P05" | "25P03"))
}

/// A uniform sample in [0, 1) for back-off jitter.
pub(crate) fn jitter() -> f64 {
    let b = uuid::Uuid::new_v4().as_u128();
    (b >> 75) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pooled_connections_idle_since_a_loss_are_pinged() {
        let h = Health::default();
        assert!(!h.should_ping(Duration::from_secs(5)), "no loss seen, not idle long");
        assert!(h.should_ping(Duration::from_secs(31)));
        h.connection_lost();
        assert!(h.writes_failing());
        assert!(h.should_ping(Duration::from_secs(5)), "idle since before the loss");
        h.write_succeeded();
        assert!(!h.writes_failing());
    }

    #[test]
    fn a_ready_answer_is_reused_only_until_a_write_fails() {
        let h = Health::default();
        let ready = Readiness { database: true, writes: true };
        let c = Checked { at: Instant::now(), failures: h.failures(), readiness: ready };
        assert!(h.still_holds(&c, Duration::from_secs(1)));
        assert!(!h.still_holds(&c, Duration::ZERO), "stale");
        h.write_failed();
        assert!(!h.still_holds(&c, Duration::from_secs(1)), "a write failed since");
        let not = Checked { readiness: Readiness { database: true, writes: false }, ..c };
        assert!(h.still_holds(&not, Duration::from_secs(1)), "a refusal holds for its time");
    }

    #[test]
    fn a_short_idle_session_timeout_pings_sooner() {
        let h = Health::default();
        h.set_idle_session_timeout(2_000);
        assert!(h.should_ping(Duration::from_millis(1_500)));
        assert!(!h.should_ping(Duration::from_millis(500)));
        h.set_idle_session_timeout(0);
        assert!(!h.should_ping(Duration::from_millis(1_500)));
    }

    #[test]
    fn io_errors_lose_the_connection_and_constraint_errors_do_not() {
        let io = sqlx::Error::Io(std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset"));
        assert!(is_connection_lost(&io));
        assert!(!is_connection_lost(&sqlx::Error::RowNotFound));
        assert!(!is_connection_lost(&sqlx::Error::PoolTimedOut));
    }
}
