//! Per-request context: a request id (echoed as `X-Request-Id`) and the client address,
//! both recorded in audit records. The client address is the TCP peer's, or — only when
//! that peer is one of the `trusted_proxies` — the one its `X-Forwarded-For` names.

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::header::{self, HeaderName};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Version};
use axum::middleware::Next;
use axum::response::Response;
use fedkey_store::auth::RequestMeta;
use fedkey_store::policy::Cidr;

use crate::AppState;

pub static REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
pub static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

/// Entries of `X-Forwarded-For` looked at, from the right; a longer chain is cut there.
const MAX_FORWARDED_HOPS: usize = 32;

/// The client's address, as the per-source limits and the audit log see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddr(pub IpAddr);

/// The client address of a request from `peer`: `peer` itself unless it is a trusted
/// proxy. Then `X-Forwarded-For` is read from the right (each proxy appends the address
/// it received the request from), skipping trusted proxies: the first address that is not
/// one is the client. If every entry is trusted, the left-most one is; an entry that is
/// not an address stops the walk at the last address read (the proxy that sent it).
pub fn client_addr(peer: IpAddr, headers: &HeaderMap, trusted: &[Cidr]) -> IpAddr {
    let is_trusted = |ip: IpAddr| trusted.iter().any(|c| c.contains(ip));
    if !is_trusted(peer) {
        return peer;
    }
    // Several X-Forwarded-For headers form one list, in order.
    let entries: Vec<&str> =
        headers.get_all(&X_FORWARDED_FOR).iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(',')).collect();
    let mut client = peer;
    for entry in entries.iter().rev().take(MAX_FORWARDED_HOPS) {
        let Some(ip) = parse_forwarded(entry.trim()) else { return client };
        client = ip;
        if !is_trusted(ip) {
            return ip;
        }
    }
    client
}

/// An address, with or without a port (`192.0.2.1`, `192.0.2.1:443`, `[2001:db8::1]:443`).
fn parse_forwarded(s: &str) -> Option<IpAddr> {
    s.parse::<IpAddr>().ok().or_else(|| s.parse::<SocketAddr>().ok().map(|a| a.ip()))
}

pub async fn request_context(State(s): State<AppState>, mut req: Request, next: Next) -> Response {
    let id = req
        .headers()
        .get(&REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            !v.is_empty() && v.len() <= 64 && v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let client = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| client_addr(c.0.ip(), req.headers(), &s.trusted_proxies));
    if let Some(ip) = client {
        req.extensions_mut().insert(ClientAddr(ip));
    }
    let source = client.map(|ip| ip.to_string());
    let path = req.extensions().get::<axum::extract::MatchedPath>().map(|p| p.as_str().to_owned());
    let method = req.method().clone();
    let version = req.version();
    req.extensions_mut().insert(RequestMeta { source, request_id: Some(id.clone()) });
    let started = std::time::Instant::now();
    let mut resp = next.run(req).await;
    let status = resp.status().as_u16();
    crate::metrics::observe_request(method.as_str(), path.as_deref(), status, started.elapsed());
    // One line per request only at debug: at info it would cost more than the rest of a
    // `/healthz` answer, and what an operator needs per request is already in the audit log
    // (every authenticated call and failure) and the metrics. Server errors stay visible.
    let route = path.as_deref().unwrap_or("-");
    if status >= 500 {
        tracing::warn!(request_id = %id, %method, route, status, "request");
    } else {
        tracing::debug!(request_id = %id, %method, route, status, "request");
    }
    if let Ok(v) = HeaderValue::from_str(&id) {
        resp.headers_mut().insert(REQUEST_ID.clone(), v);
    }
    // The rest of a refused body is never read: say that the connection ends here
    // (HTTP/2 has no such header; a stream reset does it).
    if resp.status() == StatusCode::PAYLOAD_TOO_LARGE && version <= Version::HTTP_11 {
        resp.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn xff(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(&X_FORWARDED_FOR, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    fn cidrs(list: &[&str]) -> Vec<Cidr> {
        list.iter().map(|c| Cidr::parse(c).unwrap()).collect()
    }

    #[test]
    fn forwarded_for_from_an_untrusted_peer_is_ignored() {
        let trusted = cidrs(&["10.0.0.0/8"]);
        // A client spoofing the header, directly or with a trusted-looking chain.
        for h in [xff(&["198.51.100.7"]), xff(&["198.51.100.7, 10.0.0.1"]), xff(&["10.0.0.5"])] {
            assert_eq!(client_addr(ip("203.0.113.9"), &h, &trusted), ip("203.0.113.9"));
        }
        // No trusted proxies at all: the header never counts.
        assert_eq!(client_addr(ip("10.0.0.1"), &xff(&["198.51.100.7"]), &[]), ip("10.0.0.1"));
    }

    #[test]
    fn right_most_untrusted_address_is_the_client() {
        let trusted = cidrs(&["10.0.0.0/8", "2001:db8::/32"]);
        let peer = ip("10.0.0.1");
        // The client prepends a spoofed address; the proxy appends the real one.
        assert_eq!(client_addr(peer, &xff(&["6.6.6.6, 198.51.100.7"]), &trusted), ip("198.51.100.7"));
        // Two proxies in a row, and the list split over two headers.
        assert_eq!(client_addr(peer, &xff(&["6.6.6.6, 198.51.100.7", "10.1.1.1"]), &trusted), ip("198.51.100.7"));
        // Ports and IPv6 forms.
        assert_eq!(client_addr(peer, &xff(&["198.51.100.7:4711"]), &trusted), ip("198.51.100.7"));
        assert_eq!(client_addr(peer, &xff(&["[2001:db9::1]:443"]), &trusted), ip("2001:db9::1"));
        // Every entry trusted: the left-most. No header: the peer.
        assert_eq!(client_addr(peer, &xff(&["10.2.2.2, 10.3.3.3"]), &trusted), ip("10.2.2.2"));
        assert_eq!(client_addr(peer, &HeaderMap::new(), &trusted), peer);
        // Garbage from a trusted hop stops the walk at that hop.
        assert_eq!(client_addr(peer, &xff(&["198.51.100.7, junk, 10.3.3.3"]), &trusted), ip("10.3.3.3"));
        assert_eq!(client_addr(peer, &xff(&["unknown"]), &trusted), peer);
    }
}
