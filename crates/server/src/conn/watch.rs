//! Per-connection deadlines that hyper does not enforce on its own: a connection's first
//! request must arrive within the header timeout (hyper's HTTP/1.1 header timer starts
//! only once the protocol is known, so a client that sends nothing, or half an HTTP/2
//! preface, would otherwise hold its connection forever), and a connection with no
//! request in progress is closed after the idle timeout (HTTP/2 has no header timer at all).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

/// What is going on on one connection, updated as requests start and finish.
#[derive(Clone)]
pub(crate) struct Activity(Arc<Mutex<State>>);

struct State {
    in_flight: usize,
    any_request: bool,
    /// When the connection opened, or a request last started or finished.
    since: Instant,
}

/// Held while a request is being answered.
pub(crate) struct InFlight(Activity);

/// Why a connection's watch ended.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Expired {
    /// No request arrived within the header timeout.
    NoRequest,
    /// No request in progress for the idle timeout.
    Idle,
}

impl Activity {
    pub(crate) fn new() -> Activity {
        Activity(Arc::new(Mutex::new(State { in_flight: 0, any_request: false, since: Instant::now() })))
    }

    pub(crate) fn start(&self) -> InFlight {
        self.update(|s| {
            s.in_flight += 1;
            s.any_request = true;
        });
        InFlight(self.clone())
    }

    fn update(&self, f: impl FnOnce(&mut State)) {
        // A poisoned lock only means a panic elsewhere; the counters are still usable.
        let mut s = self.0.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut s);
        s.since = Instant::now();
    }

    /// When the connection expires if nothing changes, or `None` while a request is in progress.
    fn deadline(&self, header_timeout: Duration, idle_timeout: Duration) -> Option<(Instant, Expired)> {
        let s = self.0.lock().unwrap_or_else(|p| p.into_inner());
        match (s.in_flight, s.any_request) {
            (0, false) => Some((s.since + header_timeout, Expired::NoRequest)),
            (0, true) => Some((s.since + idle_timeout, Expired::Idle)),
            _ => None,
        }
    }

    /// Resolves when the connection has expired.
    pub(crate) async fn expired(&self, header_timeout: Duration, idle_timeout: Duration) -> Expired {
        loop {
            match self.deadline(header_timeout, idle_timeout) {
                Some((at, why)) if at <= Instant::now() => return why,
                Some((at, _)) => tokio::time::sleep_until(at).await,
                // Busy: look again later (a request's end moves the deadline anyway).
                None => tokio::time::sleep(idle_timeout).await,
            }
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.update(|s| s.in_flight = s.in_flight.saturating_sub(1));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: Duration = Duration::from_secs(10);
    const IDLE: Duration = Duration::from_secs(60);

    fn opened_at(a: &Activity) -> Instant {
        a.0.lock().unwrap().since
    }

    #[test]
    fn deadlines_follow_the_requests_of_the_connection() {
        let a = Activity::new();
        let t0 = opened_at(&a);
        assert_eq!(a.deadline(HEADER, IDLE), Some((t0 + HEADER, Expired::NoRequest)), "first request due");
        let first = a.start();
        let second = a.start();
        assert_eq!(a.deadline(HEADER, IDLE), None, "never idle while a request is answered");
        drop(first);
        assert_eq!(a.deadline(HEADER, IDLE), None, "one still in progress");
        drop(second);
        let t1 = opened_at(&a);
        assert!(t1 >= t0);
        assert_eq!(a.deadline(HEADER, IDLE), Some((t1 + IDLE, Expired::Idle)), "idle from the last request's end");
    }

    #[tokio::test]
    async fn an_expired_connection_is_reported_at_once() {
        let a = Activity::new();
        let t = Instant::now();
        assert_eq!(a.expired(Duration::ZERO, IDLE).await, Expired::NoRequest);
        drop(a.start());
        assert_eq!(a.expired(HEADER, Duration::ZERO).await, Expired::Idle);
        assert!(t.elapsed() < HEADER);
    }
}
