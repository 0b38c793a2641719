//! The `Authorization` header for a target: the static bearer key, or an OAuth2 access
//! token from the client credentials grant, cached until shortly before it expires.

use std::sync::Arc;
use std::time::Duration;

use fedkey_core::clock::{Clock, Timestamp};
use fedkey_crypto::Secret;
use serde_json::Value;

use crate::error::{ClientError, Scrubber};
use crate::http;
use crate::target::Auth;

/// Lifetime assumed when a token response has no `expires_in`.
const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(300);
/// A token is renewed this long before it expires (at most half its lifetime), so a
/// request never leaves with a token that dies on the way.
const RENEW_MARGIN: Duration = Duration::from_secs(60);

struct CachedToken {
    token: Secret,
    renew_at: Timestamp,
}

pub(crate) struct Authenticator {
    auth: Auth,
    clock: Arc<dyn Clock>,
    // A tokio mutex so concurrent requests wait for one token request (single flight).
    cache: tokio::sync::Mutex<Option<CachedToken>>,
}

/// The credential to send, and whether it came from the token cache (a 401 on a cached
/// token is worth one retry with a fresh one).
pub(crate) struct Credential {
    pub(crate) token: Secret,
    pub(crate) cached: bool,
}

impl Authenticator {
    pub(crate) fn new(auth: Auth, clock: Arc<dyn Clock>) -> Self {
        Authenticator { auth, clock, cache: tokio::sync::Mutex::new(None) }
    }

    /// Secrets of the configuration, for scrubbing messages.
    pub(crate) fn scrubber(&self) -> Scrubber<'_> {
        match &self.auth {
            Auth::Bearer(k) => Scrubber::new().with(k.expose()),
            Auth::OAuth2 { client_secret, .. } => Scrubber::new().with(client_secret.expose()),
        }
    }

    pub(crate) fn is_oauth2(&self) -> bool {
        matches!(self.auth, Auth::OAuth2 { .. })
    }

    pub(crate) async fn credential(&self, http: &reqwest::Client) -> Result<Credential, ClientError> {
        let (token_url, client_id, client_secret, scope) = match &self.auth {
            Auth::Bearer(key) => return Ok(Credential { token: key.clone(), cached: false }),
            Auth::OAuth2 { token_url, client_id, client_secret, scope } => (token_url, client_id, client_secret, scope),
        };
        let mut cache = self.cache.lock().await;
        let now = self.clock.now();
        if let Some(c) = cache.as_ref()
            && now < c.renew_at
        {
            return Ok(Credential { token: c.token.clone(), cached: true });
        }
        *cache = None;
        let fresh = self.fetch(http, token_url, client_id, client_secret, scope.as_deref()).await?;
        let token = fresh.token.clone();
        *cache = Some(fresh);
        Ok(Credential { token, cached: false })
    }

    /// Forgets the cached token (after the target answered 401 to it).
    pub(crate) async fn invalidate(&self) {
        *self.cache.lock().await = None;
    }

    async fn fetch(
        &self,
        http: &reqwest::Client,
        token_url: &str,
        client_id: &str,
        client_secret: &Secret,
        scope: Option<&str>,
    ) -> Result<CachedToken, ClientError> {
        let scrub = Scrubber::new().with(client_secret.expose());
        let mut form = vec![
            ("grant_type", "client_credentials"),
            ("client_id", client_id),
            ("client_secret", client_secret.expose()),
        ];
        if let Some(s) = scope {
            form.push(("scope", s));
        }
        let issued = self.clock.now();
        let resp = http
            .post(token_url)
            .header(reqwest::header::ACCEPT, "application/json")
            .form(&form)
            .send()
            .await
            .map_err(|e| http::transport_error(&e, &scrub))?;
        let status = resp.status().as_u16();
        let body = http::read_capped(resp, &scrub).await?;
        let json: Option<Value> = serde_json::from_slice(&body).ok();
        if !(200..300).contains(&status) {
            // RFC 6749 §5.2: {"error": "invalid_client", "error_description": "…"}.
            let detail = json
                .as_ref()
                .map(|j| {
                    let code = j.get("error").and_then(Value::as_str).unwrap_or("");
                    let desc = j.get("error_description").and_then(Value::as_str).unwrap_or("");
                    format!("OAuth2 token request failed: {code} {desc}").trim_end().to_owned()
                })
                .unwrap_or_else(|| "OAuth2 token request failed".to_owned());
            let detail = scrub.clean(&detail);
            // A rejected client is a credentials problem whatever 4xx the server used.
            return Err(match status {
                400 | 401 | 403 => ClientError::Unauthorized { detail },
                s => ClientError::from_status(s, None, detail, None),
            });
        }
        let json = json.ok_or_else(|| ClientError::Protocol { message: "the token response is not JSON".into() })?;
        let token = json
            .get("access_token")
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| ClientError::Protocol { message: "the token response has no access_token".into() })?;
        if let Some(tt) = json.get("token_type").and_then(Value::as_str)
            && !tt.eq_ignore_ascii_case("bearer")
        {
            return Err(ClientError::Protocol { message: format!("unsupported token_type {:?}", scrub.clean(tt)) });
        }
        // Some servers (Entra ID v1) send expires_in as a string.
        let lifetime = match json.get("expires_in") {
            Some(Value::Number(n)) => n.as_u64().map(Duration::from_secs),
            Some(Value::String(s)) => s.trim().parse().ok().map(Duration::from_secs),
            _ => None,
        }
        .unwrap_or(DEFAULT_TOKEN_LIFETIME);
        let margin = RENEW_MARGIN.min(lifetime / 2);
        Ok(CachedToken { token: Secret::new(token.to_owned()), renew_at: issued.saturating_add(lifetime - margin) })
    }
}
