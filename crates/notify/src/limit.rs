//! The per-channel rate limit: a token bucket. A notification over the limit waits for a
//! token (it is not dropped); the queue in front of the channel is bounded, so a flood
//! ends in dropped (and audited) notifications, never in unbounded memory.

use std::time::{Duration, Instant};

#[derive(Debug)]
pub struct Bucket {
    per_minute: u32,
    tokens: f64,
    at: Instant,
}

impl Bucket {
    /// `per_minute` sends a minute, with a burst of as many; 0 means no limit.
    pub fn new(per_minute: u32, now: Instant) -> Bucket {
        Bucket { per_minute, tokens: f64::from(per_minute), at: now }
    }

    /// Takes a token at `now`, or says how long to wait for one.
    pub fn take(&mut self, now: Instant) -> Result<(), Duration> {
        if self.per_minute == 0 {
            return Ok(());
        }
        let rate = f64::from(self.per_minute) / 60.0;
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * rate).min(f64::from(self.per_minute));
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - self.tokens) / rate))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_one_per_interval() {
        let t0 = Instant::now();
        let mut b = Bucket::new(6, t0);
        for _ in 0..6 {
            assert!(b.take(t0).is_ok());
        }
        let wait = b.take(t0).unwrap_err();
        assert!((9.9..=10.1).contains(&wait.as_secs_f64()), "{wait:?}");
        assert!(b.take(t0 + Duration::from_secs(5)).is_err());
        assert!(b.take(t0 + Duration::from_secs(10)).is_ok());
        assert!(b.take(t0 + Duration::from_secs(10)).is_err());
        // A long pause refills to the burst, not beyond.
        let later = t0 + Duration::from_secs(3600);
        for _ in 0..6 {
            assert!(b.take(later).is_ok());
        }
        assert!(b.take(later).is_err());
    }

    #[test]
    fn zero_means_unlimited() {
        let t0 = Instant::now();
        let mut b = Bucket::new(0, t0);
        assert!((0..1000).all(|_| b.take(t0).is_ok()));
    }
}
