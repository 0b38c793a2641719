//! Accept errors. When the process runs out of file descriptors (EMFILE, ENFILE) or
//! memory, every `accept` fails at once until something is freed: retrying immediately
//! spins a core and writes a log line per failure. So the loop pauses with exponential
//! back-off, and logs at most one line per [`LOG_EVERY`] with the number of failures.
//! Errors about one connection (aborted or reset before it was accepted) are not pauses.

use std::io;
use std::time::Duration;

use tokio::time::Instant;

const FIRST_PAUSE: Duration = Duration::from_millis(5);
const MAX_PAUSE: Duration = Duration::from_secs(1);
pub(crate) const LOG_EVERY: Duration = Duration::from_secs(10);

#[derive(Default)]
pub(crate) struct AcceptErrors {
    pause: Duration,
    last_log: Option<Instant>,
    unlogged: u64,
}

/// What to do after a failed accept.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Pause {
    pub(crate) wait: Duration,
    /// Log now: the number of failures since the last line.
    pub(crate) log: Option<u64>,
}

impl AcceptErrors {
    pub(crate) fn accepted(&mut self) {
        self.pause = Duration::ZERO;
    }

    pub(crate) fn failed(&mut self, e: &io::Error, now: Instant) -> Pause {
        if per_connection(e) {
            return Pause { wait: Duration::ZERO, log: None };
        }
        self.pause = (self.pause * 2).clamp(FIRST_PAUSE, MAX_PAUSE);
        self.unlogged += 1;
        let log = match self.last_log {
            Some(t) if now.duration_since(t) < LOG_EVERY => None,
            _ => {
                self.last_log = Some(now);
                Some(std::mem::take(&mut self.unlogged))
            }
        };
        Pause { wait: self.pause, log }
    }
}

fn per_connection(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionRefused
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn emfile() -> io::Error {
        io::Error::other("Too many open files (os error 24)")
    }

    #[test]
    fn pauses_double_up_to_a_second_and_log_lines_are_rate_limited() {
        let mut a = AcceptErrors::default();
        let t0 = Instant::now();
        let first = a.failed(&emfile(), t0);
        assert_eq!(first, Pause { wait: FIRST_PAUSE, log: Some(1) });
        let mut waits = Vec::new();
        let mut lines = 0;
        for i in 1..1000u32 {
            let p = a.failed(&emfile(), t0 + Duration::from_millis(u64::from(i)));
            waits.push(p.wait);
            lines += u32::from(p.log.is_some());
        }
        assert_eq!(waits[0], FIRST_PAUSE * 2);
        assert_eq!(waits.last(), Some(&MAX_PAUSE));
        assert_eq!(lines, 0, "no second line within {LOG_EVERY:?}");
        let later = a.failed(&emfile(), t0 + LOG_EVERY);
        assert_eq!(later.log, Some(1000), "the next line counts the failures it stood for");
        a.accepted();
        assert_eq!(a.failed(&emfile(), t0 + LOG_EVERY * 3).wait, FIRST_PAUSE);
    }

    #[test]
    fn a_connection_aborted_before_accept_is_no_reason_to_pause() {
        let mut a = AcceptErrors::default();
        let p = a.failed(&io::ErrorKind::ConnectionAborted.into(), Instant::now());
        assert_eq!(p, Pause { wait: Duration::ZERO, log: None });
    }
}
