//! HTTP(S) fetching of trust material: timeouts on connect and on the whole exchange, a body
//! cap enforced while streaming, and errors sorted into kinds the watcher can report.

use std::time::Duration;

use reqwest::header::CACHE_CONTROL;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FetchConfig {
    pub connect_timeout: Duration,
    /// Bound on the whole exchange: connect, headers and body.
    pub total_timeout: Duration,
    pub max_body_bytes: usize,
}

impl Default for FetchConfig {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(5),
            total_timeout: Duration::from_secs(15),
            max_body_bytes: 1024 * 1024,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FetchError {
    #[error("HTTP client could not be set up: {0}")]
    Client(String),
    #[error("invalid URL {url}")]
    InvalidUrl { url: String },
    #[error("refusing to fetch {url}: only http and https are allowed")]
    UnsupportedScheme { url: String },
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
    client: reqwest::Client,
    config: FetchConfig,
}

impl Fetcher {
    pub fn new(config: FetchConfig) -> Result<Self, FetchError> {
        let client = reqwest::Client::builder()
            .connect_timeout(config.connect_timeout)
            .timeout(config.total_timeout)
            .redirect(redirect_policy())
            .user_agent(concat!("fedkey/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| FetchError::Client(e.to_string()))?;
        Ok(Self { client, config })
    }

    pub fn config(&self) -> &FetchConfig {
        &self.config
    }

    /// GETs `url`. Only a 200 is a document; anything else is a `Status` error.
    pub async fn get(&self, url: &str) -> Result<FetchedDocument, FetchError> {
        let shown = redact_url(url);
        let parsed = reqwest::Url::parse(url).map_err(|_| FetchError::InvalidUrl { url: shown.clone() })?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(FetchError::UnsupportedScheme { url: shown });
        }
        // The client's own timeout covers the exchange; this outer one also bounds a body that
        // trickles in without ever completing.
        match tokio::time::timeout(self.config.total_timeout, self.get_inner(parsed, &shown)).await {
            Ok(result) => result,
            Err(_) => Err(FetchError::Timeout { url: shown, timeout_ms: self.config.total_timeout.as_millis() }),
        }
    }

    async fn get_inner(&self, url: reqwest::Url, shown: &str) -> Result<FetchedDocument, FetchError> {
        let classify = |e: reqwest::Error| self.classify(e, shown);
        let mut response = self.client.get(url).send().await.map_err(classify)?;
        let status = response.status();
        if status != reqwest::StatusCode::OK {
            return Err(FetchError::Status { url: shown.to_owned(), status: status.as_u16() });
        }
        let limit = self.config.max_body_bytes;
        if response.content_length().is_some_and(|len| len > limit as u64) {
            return Err(FetchError::TooLarge { url: shown.to_owned(), limit });
        }
        let cache_control = response.headers().get(CACHE_CONTROL).and_then(|v| v.to_str().ok()).map(str::to_owned);
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(classify)? {
            if body.len() + chunk.len() > limit {
                return Err(FetchError::TooLarge { url: shown.to_owned(), limit });
            }
            body.extend_from_slice(&chunk);
        }
        Ok(FetchedDocument { body, cache_control })
    }

    fn classify(&self, e: reqwest::Error, shown: &str) -> FetchError {
        if e.is_timeout() {
            return FetchError::Timeout { url: shown.to_owned(), timeout_ms: self.config.total_timeout.as_millis() };
        }
        // reqwest's message names the failing step (connect, TLS, body) without the URL query.
        let mut causes = String::new();
        let mut source = std::error::Error::source(&e);
        while let Some(s) = source {
            causes.push_str(": ");
            causes.push_str(&s.to_string());
            source = s.source();
        }
        let message = format!("{}{causes}", e.without_url());
        FetchError::Network { url: shown.to_owned(), message }
    }
}

/// At most five redirects, and never from https down to http (a redirect there would hand
/// the trust decision to anyone on the path). A refused redirect surfaces as its 3xx status.
fn redirect_policy() -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(|attempt| {
        let downgrade = attempt.previous().iter().any(|u| u.scheme() == "https") && attempt.url().scheme() != "https";
        if attempt.previous().len() > 5 {
            attempt.error("more than 5 redirects")
        } else if downgrade {
            attempt.stop()
        } else {
            attempt.follow()
        }
    })
}

/// The URL as shown in errors and events: no credentials, no query (either may hold a secret).
fn redact_url(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut u) => {
            let _ = u.set_username("");
            let _ = u.set_password(None);
            u.set_query(None);
            u.set_fragment(None);
            u.to_string()
        }
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
        let f = Fetcher::new(FetchConfig::default()).unwrap();
        assert!(matches!(f.get("file:///etc/passwd").await, Err(FetchError::UnsupportedScheme { .. })));
        assert!(matches!(f.get("ftp://idp.test/x").await, Err(FetchError::UnsupportedScheme { .. })));
        assert!(matches!(f.get("not a url").await, Err(FetchError::InvalidUrl { .. })));
    }
}
