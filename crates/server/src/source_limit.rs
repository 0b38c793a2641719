//! Per-source request limits, checked before authentication on every authenticated route
//! (the SCIM service, the admin API, wrapped links): one token bucket per client address
//! (IPv6 per /64, the block one host usually holds) in this process. Over the limit the
//! request is answered 429 with `Retry-After` and does no other work — no key lookup, no
//! audit record.
//!
//! Memory is bounded: a bucket that has refilled is forgotten (that changes nothing), and
//! the table holds at most [`MAX_SOURCES`] addresses. When it is full of active sources,
//! new ones share one overflow bucket until room is made.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use fedkey_scim::ScimError;

use crate::AppState;
use crate::error::{ApiError, ErrorCode};
use crate::ratelimit::{TokenBucket, retry_after_secs};
use crate::request::ClientAddr;

/// Addresses tracked at once.
pub const MAX_SOURCES: usize = 100_000;
/// How often refilled buckets are forgotten while the table is not full.
const SWEEP_EVERY: Duration = Duration::from_secs(60);
/// Least time between two sweeps of a full table (each one scans it).
const FULL_SWEEP_EVERY: Duration = Duration::from_secs(1);

/// Requests per second and burst allowed to one source; `rate` 0 turns the limit off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SourceLimits {
    pub rate: u32,
    pub burst: u32,
}

impl SourceLimits {
    pub const OFF: SourceLimits = SourceLimits { rate: 0, burst: 0 };
}

struct Table {
    buckets: HashMap<IpAddr, TokenBucket>,
    overflow: TokenBucket,
    swept: Instant,
}

pub struct SourceLimiter {
    limits: SourceLimits,
    table: Mutex<Table>,
}

impl SourceLimiter {
    pub fn new(limits: SourceLimits) -> SourceLimiter {
        let now = Instant::now();
        let burst = f64::from(limits.burst.max(1));
        SourceLimiter {
            limits,
            table: Mutex::new(Table { buckets: HashMap::new(), overflow: TokenBucket::full(burst, now), swept: now }),
        }
    }

    pub fn limits(&self) -> SourceLimits {
        self.limits
    }

    /// Takes one token from `ip`'s bucket; `Err(wait)` when it is empty.
    pub fn check(&self, ip: IpAddr) -> Result<(), Duration> {
        self.check_at(ip, Instant::now())
    }

    fn check_at(&self, ip: IpAddr, now: Instant) -> Result<(), Duration> {
        if self.limits.rate == 0 {
            return Ok(());
        }
        let (rate, burst) = (f64::from(self.limits.rate), f64::from(self.limits.burst.max(1)));
        let key = source_key(ip);
        // A poisoned lock only means a panic elsewhere mid-update; the buckets are usable.
        let mut t = self.table.lock().unwrap_or_else(|e| e.into_inner());
        let since = now.saturating_duration_since(t.swept);
        let full = t.buckets.len() >= MAX_SOURCES && !t.buckets.contains_key(&key);
        if since >= SWEEP_EVERY || (full && since >= FULL_SWEEP_EVERY) {
            t.buckets.retain(|_, b| !b.is_full(rate, burst, now));
            t.swept = now;
        }
        if t.buckets.len() >= MAX_SOURCES && !t.buckets.contains_key(&key) {
            metrics::counter!("fedkey_source_limit_overflow_total").increment(1);
            return t.overflow.take(rate, burst, now);
        }
        t.buckets.entry(key).or_insert_with(|| TokenBucket::full(burst, now)).take(rate, burst, now)
    }

    #[cfg(test)]
    fn tracked(&self) -> usize {
        self.table.lock().map(|t| t.buckets.len()).unwrap_or(0)
    }
}

/// The bucket an address counts against: IPv4 (also IPv4-mapped IPv6) as is, IPv6 by /64.
fn source_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6((u128::from(v6) & !u128::from(u64::MAX)).into()),
        },
        v4 => v4,
    }
}

/// For the SCIM service (its gate middleware): over the limit, the SCIM Error to answer.
pub fn scim_refusal(s: &AppState, req: &Request) -> Option<Response> {
    let wait = limited(s, req, "scim")?;
    let e = ScimError::new(429, None, message(s, wait));
    Some(with_retry_after(crate::scim::ScimResponse(e).into_response(), wait))
}

/// Middleware for the admin API and wrapped links: over the limit, the admin JSON error.
pub async fn admin(State(s): State<AppState>, req: Request, next: Next) -> Response {
    match limited(&s, &req, "admin") {
        None => next.run(req).await,
        Some(wait) => {
            let e = ApiError::new(StatusCode::TOO_MANY_REQUESTS, ErrorCode::RateLimited, message(&s, wait));
            with_retry_after(e.into_response(), wait)
        }
    }
}

/// `Some(wait)` when the request's source is over its limit.
fn limited(s: &AppState, req: &Request, api: &'static str) -> Option<Duration> {
    let ip = req.extensions().get::<ClientAddr>()?.0;
    let wait = s.source_limiter.check(ip).err()?;
    metrics::counter!("fedkey_source_rate_limited_total", "api" => api).increment(1);
    Some(wait)
}

fn message(s: &AppState, wait: Duration) -> String {
    format!(
        "too many requests from this address (limit {} per second); retry in {} s",
        s.source_limiter.limits().rate,
        retry_after_secs(wait)
    )
}

fn with_retry_after(mut resp: Response, wait: Duration) -> Response {
    resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs(wait)));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn burst_then_refill_per_source() {
        let l = SourceLimiter::new(SourceLimits { rate: 2, burst: 4 });
        let t0 = Instant::now();
        for _ in 0..4 {
            l.check_at(ip("192.0.2.1"), t0).unwrap();
        }
        let wait = l.check_at(ip("192.0.2.1"), t0).unwrap_err();
        assert!(!wait.is_zero() && wait <= Duration::from_millis(500), "{wait:?}");
        assert!(l.check_at(ip("192.0.2.2"), t0).is_ok(), "another source has its own bucket");
        assert!(l.check_at(ip("192.0.2.1"), t0 + Duration::from_millis(500)).is_ok(), "refilled at the rate");
        assert!(l.check_at(ip("192.0.2.1"), t0 + Duration::from_millis(500)).is_err());
    }

    #[test]
    fn off_never_limits() {
        let l = SourceLimiter::new(SourceLimits::OFF);
        let t0 = Instant::now();
        assert!((0..10_000).all(|_| l.check_at(ip("192.0.2.1"), t0).is_ok()));
        assert_eq!(l.tracked(), 0);
    }

    #[test]
    fn ipv6_counts_per_64_and_mapped_ipv4_as_ipv4() {
        let l = SourceLimiter::new(SourceLimits { rate: 1, burst: 1 });
        let t0 = Instant::now();
        l.check_at(ip("2001:db8:1:2::1"), t0).unwrap();
        assert!(l.check_at(ip("2001:db8:1:2:ffff::9"), t0).is_err(), "same /64");
        assert!(l.check_at(ip("2001:db8:1:3::1"), t0).is_ok(), "another /64");
        l.check_at(ip("192.0.2.7"), t0).unwrap();
        assert!(l.check_at(ip("::ffff:192.0.2.7"), t0).is_err());
    }

    #[test]
    fn idle_sources_are_forgotten_and_the_table_is_capped() {
        let l = SourceLimiter::new(SourceLimits { rate: 10, burst: 10 });
        let t0 = Instant::now();
        for i in 0..MAX_SOURCES as u32 {
            l.check_at(IpAddr::V4((0x0a00_0000 + i).into()), t0).unwrap();
        }
        assert_eq!(l.tracked(), MAX_SOURCES);
        // Full of active sources: a new one shares the overflow bucket (burst 10), the
        // table does not grow.
        for _ in 0..10 {
            l.check_at(ip("192.0.2.1"), t0).unwrap();
        }
        assert!(l.check_at(ip("192.0.2.2"), t0).is_err(), "overflow bucket shared and empty");
        assert_eq!(l.tracked(), MAX_SOURCES);
        // Once their buckets have refilled they are forgotten and new sources get their own.
        let later = t0 + Duration::from_secs(2);
        l.check_at(ip("192.0.2.2"), later).unwrap();
        assert_eq!(l.tracked(), 1);
        // A source that has not refilled is kept by the periodic sweep: drained just before
        // it, it has one token (0.15 s × 10/s) and then none, not a fresh burst.
        let before = later + SWEEP_EVERY - Duration::from_millis(150);
        while l.check_at(ip("192.0.2.2"), before).is_ok() {}
        let sweep = later + SWEEP_EVERY;
        assert!(l.check_at(ip("192.0.2.2"), sweep).is_ok());
        assert!(l.check_at(ip("192.0.2.2"), sweep).is_err());
    }
}
