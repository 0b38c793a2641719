//! The OAuth2 client-credentials grant (RFC 6749 §4.4) with its token cache, shared by the
//! Entra connector and SCIM targets: the client authenticates in the form body
//! (`client_secret_post`), and the access token is kept until shortly before it expires.
//! Concurrent callers wait for one token request (single flight).

use std::time::Duration;

use fedkey_core::clock::Timestamp;
use reqwest::header::{ACCEPT, HeaderMap};
use reqwest::{Method, Url};
use serde_json::Value;
use zeroize::Zeroizing;

use crate::client::{Egress, read_capped};
use crate::error::EgressError;
use crate::policy::UrlRules;
use crate::redact::Redactor;

/// Lifetime assumed when a token response has no `expires_in`.
const DEFAULT_LIFETIME: Duration = Duration::from_secs(300);
/// Largest token response read.
const MAX_TOKEN_RESPONSE: usize = 64 * 1024;

/// Where and as whom to ask for a token.
pub struct ClientCredentials {
    pub token_url: Url,
    /// The token endpoint's lab opt-in (plain http), as its owner's configuration says.
    pub rules: UrlRules,
    pub client_id: String,
    pub client_secret: Zeroizing<String>,
    pub scope: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OAuthError {
    #[error(transparent)]
    Egress(#[from] EgressError),
    /// The token endpoint answered with an error status. `body` has the client secret
    /// redacted; callers classify it with their own rules.
    #[error("the token endpoint answered HTTP {status}")]
    Status { status: u16, headers: HeaderMap, body: String },
    /// A success status with an unusable body.
    #[error("unexpected token response: {message}")]
    Protocol { status: u16, message: String },
}

/// An access token and whether it came from the cache (a 401 to a cached token is worth
/// one retry with a fresh one).
pub struct Token {
    pub value: Zeroizing<String>,
    pub cached: bool,
}

struct Cached {
    token: Zeroizing<String>,
    renew_at: Timestamp,
}

pub struct TokenCache {
    creds: ClientCredentials,
    /// Renew this long before expiry (at most half the lifetime).
    margin: Duration,
    cache: tokio::sync::Mutex<Option<Cached>>,
}

impl TokenCache {
    pub fn new(creds: ClientCredentials, margin: Duration) -> TokenCache {
        TokenCache { creds, margin, cache: tokio::sync::Mutex::new(None) }
    }

    pub fn client_secret(&self) -> &str {
        &self.creds.client_secret
    }

    /// A cached token, or a new one when none is cached or it is due for renewal.
    pub async fn token(&self, egress: &Egress, now: Timestamp, timeout: Duration) -> Result<Token, OAuthError> {
        let mut cache = self.cache.lock().await;
        if let Some(c) = cache.as_ref().filter(|c| now < c.renew_at) {
            return Ok(Token { value: c.token.clone(), cached: true });
        }
        *cache = None;
        let fresh = self.fetch(egress, now, timeout).await?;
        let value = fresh.token.clone();
        *cache = Some(fresh);
        Ok(Token { value, cached: false })
    }

    /// Forgets the cached token (after the resource server answered 401 to it).
    pub async fn invalidate(&self) {
        *self.cache.lock().await = None;
    }

    async fn fetch(&self, egress: &Egress, now: Timestamp, timeout: Duration) -> Result<Cached, OAuthError> {
        let c = &self.creds;
        let mut form = vec![
            ("grant_type", "client_credentials"),
            ("client_id", c.client_id.as_str()),
            ("client_secret", c.client_secret.as_str()),
        ];
        if let Some(s) = &c.scope {
            form.push(("scope", s.as_str()));
        }
        let req = egress.request(Method::POST, &c.token_url, c.rules)?.header(ACCEPT, "application/json").form(&form);
        let resp = egress.send(req, timeout).await?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = read_capped(resp, MAX_TOKEN_RESPONSE, timeout).await?;
        let text = String::from_utf8_lossy(&body);
        if !(200..300).contains(&status) {
            let body = Redactor::new().with(&c.client_secret).limit(MAX_TOKEN_RESPONSE).clean(&text);
            return Err(OAuthError::Status { status, headers, body });
        }
        let protocol = |message: &str| OAuthError::Protocol { status, message: message.to_owned() };
        let json: Value = serde_json::from_str(&text).map_err(|_| protocol("the token response is not JSON"))?;
        let token = json
            .get("access_token")
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| protocol("the token response has no access_token"))?;
        if let Some(tt) = json.get("token_type").and_then(Value::as_str)
            && !tt.eq_ignore_ascii_case("bearer")
        {
            let shown = Redactor::new().with(&c.client_secret).with(token).limit(40).clean(tt);
            return Err(protocol(&format!("unsupported token_type {shown:?}")));
        }
        // Some servers (Entra ID v1) send expires_in as a string.
        let lifetime = match json.get("expires_in") {
            Some(Value::Number(n)) => n.as_u64().map(Duration::from_secs),
            Some(Value::String(s)) => s.trim().parse().ok().map(Duration::from_secs),
            _ => None,
        }
        .unwrap_or(DEFAULT_LIFETIME);
        let margin = self.margin.min(lifetime / 2);
        Ok(Cached { token: Zeroizing::new(token.to_owned()), renew_at: now.saturating_add(lifetime - margin) })
    }
}

/// `error` and `error_description` of an OAuth2 error body (RFC 6749 §5.2), if it is one.
pub fn error_fields(body: &str) -> (Option<String>, Option<String>) {
    let Ok(v) = serde_json::from_str::<Value>(body) else { return (None, None) };
    let s = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_owned);
    (s("error"), s("error_description"))
}
