//! HTTP(S) fetching of trust material through the egress policy: https unless loopback or
//! the source's lab opt-in, a URL named by a document (`jwks_uri`) never downgrades to http
//! nor points at loopback from elsewhere, no denied address, redirects only on the same
//! origin, an overall timeout, a body cap enforced while streaming, and errors sorted into
//! kinds the watcher can report.

use std::time::Duration;

use fedkey_egress::{Egress, EgressError, Method, Url, UrlRules, shown};
use reqwest::header::CACHE_CONTROL;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FetchConfig {
    /// Bound on the whole exchange: connect, headers and body.
    pub total_timeout: Duration,
    pub max_body_bytes: usize,
    /// Lab opt-in: plain http to a host that is not loopback.
    pub allow_http: bool,
}

impl Default for FetchConfig {
    fn default() -> Self {
        Self { total_timeout: Duration::from_secs(15), max_body_bytes: 1024 * 1024, allow_http: false }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FetchError {
    #[error("invalid URL {url}")]
    InvalidUrl { url: String },
    #[error("refusing to fetch {url}: only http and https are allowed")]
    UnsupportedScheme { url: String },
    /// The egress policy refused the URL, an address it resolves to, or a redirect.
    #[error("refused to fetch {url}: {reason}")]
    Refused { url: String, reason: String },
    #[error("{url} answered HTTP {status}")]
    Status { url: String, status: u16 },
    #[error("{url} did not answer within {timeout_ms} ms")]
    Timeout { url: String, timeout_ms: u128 },
    #[error("{url} sent more than {limit} bytes")]
    TooLarge { url: String, limit: usize },
    #[error("could not reach {url}: {message}")]
    Network { url: String, message: String },
}

/// A fetched document and the cache headers that set the refresh cadence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchedDocument {
    pub body: Vec<u8>,
    pub cache_control: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Fetcher {
    egress: Egress,
    config: FetchConfig,
}

impl Fetcher {
    pub fn new(egress: Egress, config: FetchConfig) -> Self {
        Self { egress, config }
    }

    pub fn config(&self) -> &FetchConfig {
        &self.config
    }

    fn rules(&self) -> UrlRules {
        UrlRules { allow_http: self.config.allow_http }
    }

    /// GETs a configured `url`. Only a 200 is a document; anything else is a `Status` error.
    pub async fn get(&self, url: &str) -> Result<FetchedDocument, FetchError> {
        let parsed = precheck(url)?;
        let checked = self.egress.check_url(parsed.as_str(), self.rules()).map_err(|e| refused(&parsed, e))?;
        self.fetch(checked).await
    }

    /// GETs a `url` that the document at `parent` named: it may not downgrade https to
    /// http, nor reach loopback unless `parent` is loopback.
    pub async fn get_derived(&self, parent: &str, url: &str) -> Result<FetchedDocument, FetchError> {
        let parsed = precheck(url)?;
        let parent = precheck(parent)?;
        let checked = self
            .egress
            .policy()
            .check_derived(&parent, parsed.as_str(), self.rules())
            .map_err(|r| refused(&parsed, r.into()))?;
        self.fetch(checked).await
    }

    async fn fetch(&self, url: Url) -> Result<FetchedDocument, FetchError> {
        let shown = shown(&url);
        // The request's own timeout covers the exchange; this outer one also bounds a body that
        // trickles in without ever completing.
        match tokio::time::timeout(self.config.total_timeout, self.get_inner(url, &shown)).await {
            Ok(result) => result,
            Err(_) => Err(FetchError::Timeout { url: shown, timeout_ms: self.config.total_timeout.as_millis() }),
        }
    }

    async fn get_inner(&self, url: Url, shown: &str) -> Result<FetchedDocument, FetchError> {
        let timeout = self.config.total_timeout;
        let classify = |e: EgressError| self.classify(e, shown);
        let req = self.egress.request(Method::GET, &url, self.rules()).map_err(classify)?;
        let response = self.egress.send(req, timeout).await.map_err(classify)?;
        let status = response.status();
        if status != reqwest::StatusCode::OK {
            return Err(FetchError::Status { url: shown.to_owned(), status: status.as_u16() });
        }
        let cache_control = response.headers().get(CACHE_CONTROL).and_then(|v| v.to_str().ok()).map(str::to_owned);
        let body = fedkey_egress::read_capped(response, self.config.max_body_bytes, timeout).await.map_err(classify)?;
        Ok(FetchedDocument { body, cache_control })
    }

    fn classify(&self, e: EgressError, shown: &str) -> FetchError {
        let url = shown.to_owned();
        match e {
            EgressError::Refused(reason) => FetchError::Refused { url, reason },
            EgressError::Timeout(_) => FetchError::Timeout { url, timeout_ms: self.config.total_timeout.as_millis() },
            EgressError::TooLarge(limit) => FetchError::TooLarge { url, limit },
            EgressError::Network(message) | EgressError::Setup(message) => FetchError::Network { url, message },
        }
    }
}

fn refused(url: &Url, e: EgressError) -> FetchError {
    let reason = match e {
        EgressError::Refused(r) => r,
        other => other.to_string(),
    };
    FetchError::Refused { url: shown(url), reason }
}

/// Parses and checks the scheme, with errors that never repeat credentials or a query.
fn precheck(url: &str) -> Result<Url, FetchError> {
    let parsed = Url::parse(url).map_err(|_| FetchError::InvalidUrl { url: redact_url(url) })?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(FetchError::UnsupportedScheme { url: shown(&parsed) });
    }
    Ok(parsed)
}

/// The URL as shown in errors and events: no credentials, no query (either may hold a secret).
fn redact_url(url: &str) -> String {
    match Url::parse(url) {
        Ok(u) => shown(&u),
        Err(_) => url.chars().take(80).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_in_errors_drop_credentials_and_query() {
        assert_eq!(redact_url("https://user:pw@idp.test/keys?token=abc#x"), "https://idp.test/keys");
    }

    #[tokio::test]
    async fn only_http_and_https_are_fetched() {
        let f = Fetcher::new(Egress::strict().unwrap(), FetchConfig::default());
        assert!(matches!(f.get("file:///etc/passwd").await, Err(FetchError::UnsupportedScheme { .. })));
        assert!(matches!(f.get("ftp://idp.test/x").await, Err(FetchError::UnsupportedScheme { .. })));
        assert!(matches!(f.get("not a url").await, Err(FetchError::InvalidUrl { .. })));
    }
}
