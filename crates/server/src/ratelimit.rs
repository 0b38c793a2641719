//! Per-trust SCIM rate limits: one token bucket per trust in this process (burst = the
//! rate). With several nodes each enforces the limit on its own share of traffic.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Buckets kept before the map is cleared (a clear only forgives, it never denies).
const MAX_BUCKETS: usize = 100_000;

struct Bucket {
    tokens: TokenBucket,
    rate: i64,
}

/// A token bucket: `burst` tokens at most, refilled at `rate` per second. Shared by the
/// per-trust limits here and the per-source limits of [`crate::source_limit`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct TokenBucket {
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket.
    pub(crate) fn full(burst: f64, now: Instant) -> TokenBucket {
        TokenBucket { tokens: burst, last: now }
    }

    /// Takes one token; `Err(wait)` when empty, with the time until one is available.
    pub(crate) fn take(&mut self, rate: f64, burst: f64, now: Instant) -> Result<(), Duration> {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * rate).min(burst);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64(((1.0 - self.tokens) / rate).clamp(0.0, 1.0)))
        }
    }

    /// Whether the bucket has refilled to `burst` by `now`: forgetting it changes nothing.
    pub(crate) fn is_full(&self, rate: f64, burst: f64, now: Instant) -> bool {
        self.tokens + now.saturating_duration_since(self.last).as_secs_f64() * rate >= burst
    }
}

#[derive(Default)]
pub struct RateLimiter {
    buckets: Mutex<HashMap<String, Bucket>>,
}

impl RateLimiter {
    pub fn new() -> RateLimiter {
        RateLimiter::default()
    }

    /// Takes one token from `trust_id`'s bucket; `Err(wait)` when it is empty, with the
    /// time until a token is available. `rate` ≤ 0 means unlimited.
    pub fn check(&self, trust_id: &str, rate: i64) -> Result<(), Duration> {
        self.check_at(trust_id, rate, Instant::now())
    }

    fn check_at(&self, trust_id: &str, rate: i64, now: Instant) -> Result<(), Duration> {
        if rate <= 0 {
            return Ok(());
        }
        // A poisoned lock only means another request panicked mid-update; the counts
        // are still usable.
        let mut map = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= MAX_BUCKETS && !map.contains_key(trust_id) {
            map.clear();
        }
        let r = rate as f64;
        let b = map.entry(trust_id.to_owned()).or_insert(Bucket { tokens: TokenBucket::full(r, now), rate });
        if b.rate != rate {
            // The policy changed: start from the new burst size, never above it.
            b.tokens.tokens = b.tokens.tokens.min(r);
            b.rate = rate;
        }
        b.tokens.take(r, r, now)
    }
}

/// The `Retry-After` value (whole seconds, at least 1) for a wait.
pub fn retry_after_secs(wait: Duration) -> u64 {
    u64::try_from(wait.as_nanos().div_ceil(1_000_000_000)).unwrap_or(u64::MAX).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_allows_burst_then_refills() {
        let l = RateLimiter::new();
        let t0 = Instant::now();
        assert!(l.check_at("t", 2, t0).is_ok());
        assert!(l.check_at("t", 2, t0).is_ok());
        let wait = l.check_at("t", 2, t0).unwrap_err();
        assert!(wait <= Duration::from_millis(500) && !wait.is_zero(), "{wait:?}");
        assert_eq!(retry_after_secs(wait), 1);
        assert!(l.check_at("t", 2, t0 + Duration::from_millis(500)).is_ok());
        assert!(l.check_at("other", 2, t0).is_ok(), "buckets are per trust");
        assert!(l.check_at("t", 0, t0).is_ok(), "0 is unlimited");
        // A lowered limit takes effect at once.
        let l = RateLimiter::new();
        for _ in 0..10 {
            l.check_at("t", 10, t0).unwrap();
        }
        l.check_at("t", 1, t0 + Duration::from_secs(5)).unwrap();
        assert!(l.check_at("t", 1, t0 + Duration::from_secs(5)).is_err());
    }

    #[test]
    fn retry_after_rounds_up() {
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1)), 1);
        assert_eq!(retry_after_secs(Duration::from_secs(1)), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1001)), 2);
    }
}
