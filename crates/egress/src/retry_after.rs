//! `Retry-After` (RFC 9110 §10.2.3), parsed once for every caller.

use std::time::{Duration, UNIX_EPOCH};

use fedkey_core::clock::Timestamp;
use reqwest::header::{HeaderMap, RETRY_AFTER};

/// Delay-seconds or an HTTP-date, relative to `now`. A date in the past means "now" (zero).
pub fn parse(value: &str, now: Timestamp) -> Option<Duration> {
    let v = value.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(v).ok()?;
    let at_us = i64::try_from(at.duration_since(UNIX_EPOCH).ok()?.as_micros()).ok()?;
    Some(until(at_us, now))
}

/// The `Retry-After` header of a response, if present and readable.
pub fn from_headers(headers: &HeaderMap, now: Timestamp) -> Option<Duration> {
    parse(headers.get(RETRY_AFTER)?.to_str().ok()?, now)
}

/// The time from `now` until `at_us` (epoch microseconds); zero if already past.
pub fn until(at_us: i64, now: Timestamp) -> Duration {
    let delta = at_us.saturating_sub(now.micros()).max(0);
    Duration::from_micros(u64::try_from(delta).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn seconds_and_dates() {
        let now = Timestamp(1_700_000_000_000_000);
        assert_eq!(parse(" 120 ", now), Some(Duration::from_secs(120)));
        // 1_700_000_000 is Tue, 14 Nov 2023 22:13:20 GMT.
        assert_eq!(parse("Tue, 14 Nov 2023 22:13:50 GMT", now), Some(Duration::from_secs(30)));
        assert_eq!(parse("Tue, 14 Nov 2023 22:00:00 GMT", now), Some(Duration::ZERO));
        assert_eq!(parse("soon", now), None);
        assert_eq!(parse("-5", now), None);
        let mut h = HeaderMap::new();
        assert_eq!(from_headers(&h, now), None);
        h.insert(RETRY_AFTER, HeaderValue::from_static("7"));
        assert_eq!(from_headers(&h, now), Some(Duration::from_secs(7)));
    }
}
