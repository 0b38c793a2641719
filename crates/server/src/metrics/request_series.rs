//! `fedkey_http_requests_total` and `fedkey_http_request_duration_seconds` on the request
//! path. The facade's `counter!`/`histogram!` with labels allocate the label strings and
//! hash them into the recorder's registry on every call (about 5,000 instructions a
//! request); here each route's series are looked up once and kept, so a request costs a
//! read lock, one map lookup by `&str` and a short scan.
//!
//! Cardinality stays bounded: routes are the router's templates (or `unmatched`), methods
//! outside the standard set count as `other`, and statuses are three digits.

use std::collections::HashMap;
use std::sync::{LazyLock, PoisonError, RwLock};
use std::time::Duration;

use metrics::{Counter, Histogram, counter, histogram};

const METHODS: [&str; 8] = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "other"];

/// One route's latency histogram and its request counters by (method, status).
struct RouteSeries {
    latency: Histogram,
    counts: Vec<(&'static str, u16, Counter)>,
}

/// Installs the recorder first: a handle taken before it exists would count nowhere, for good.
static SERIES: LazyLock<RwLock<HashMap<String, RouteSeries>>> = LazyLock::new(|| {
    super::handle();
    RwLock::default()
});

fn method_label(method: &str) -> &'static str {
    METHODS.iter().find(|m| **m == method).copied().unwrap_or("other")
}

pub(super) fn observe(method: &str, route: &str, status: u16, elapsed: Duration) {
    let method = method_label(method);
    {
        let series = SERIES.read().unwrap_or_else(PoisonError::into_inner);
        if let Some(r) = series.get(route) {
            r.latency.record(elapsed.as_secs_f64());
            if let Some((_, _, c)) = r.counts.iter().find(|(m, s, _)| *m == method && *s == status) {
                c.increment(1);
                return;
            }
        } else {
            drop(series);
            let mut series = SERIES.write().unwrap_or_else(PoisonError::into_inner);
            let r = series.entry(route.to_owned()).or_insert_with(|| RouteSeries {
                latency: histogram!("fedkey_http_request_duration_seconds", "route" => route.to_owned()),
                counts: Vec::new(),
            });
            r.latency.record(elapsed.as_secs_f64());
        }
    }
    // First request of this (route, method, status): register its counter.
    let mut series = SERIES.write().unwrap_or_else(PoisonError::into_inner);
    let Some(r) = series.get_mut(route) else { return };
    let c = match r.counts.iter().find(|(m, s, _)| *m == method && *s == status) {
        Some((_, _, c)) => c.clone(),
        None => {
            let labels = [("method", method.to_owned()), ("route", route.to_owned()), ("status", status.to_string())];
            let c = counter!("fedkey_http_requests_total", &labels);
            r.counts.push((method, status, c.clone()));
            c
        }
    };
    c.increment(1);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods_outside_the_standard_set_share_one_label() {
        assert_eq!(method_label("GET"), "GET");
        assert_eq!(method_label("PROPFIND"), "other");
        assert_eq!(method_label("get"), "other");
    }

    #[test]
    fn a_series_is_registered_once_and_counted_every_time() {
        let route = "/test/request-series";
        for _ in 0..3 {
            observe("GET", route, 200, Duration::from_millis(1));
        }
        observe("BREW", route, 418, Duration::from_millis(1));
        {
            let series = SERIES.read().unwrap_or_else(PoisonError::into_inner);
            let keys: Vec<(&str, u16)> = series[route].counts.iter().map(|(m, s, _)| (*m, *s)).collect();
            assert_eq!(keys, [("GET", 200), ("other", 418)]);
        }
        let page = super::super::render();
        assert!(
            page.contains(r#"fedkey_http_requests_total{method="GET",route="/test/request-series",status="200"} 3"#),
            "{page}"
        );
        assert!(
            page.contains(r#"fedkey_http_requests_total{method="other",route="/test/request-series",status="418"} 1"#)
        );
        assert!(page.contains(r#"fedkey_http_request_duration_seconds_count{route="/test/request-series"} 4"#));
    }
}
