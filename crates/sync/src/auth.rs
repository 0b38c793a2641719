//! The `Authorization` header for a target: the static bearer key, or an OAuth2 access
//! token from the client credentials grant ([`fedkey_egress::oauth::TokenCache`]).

use std::sync::Arc;
use std::time::Duration;

use fedkey_core::clock::Clock;
use fedkey_crypto::Secret;
use fedkey_egress::oauth::{ClientCredentials, OAuthError, TokenCache, error_fields};
use fedkey_egress::{Egress, UrlRules};
use zeroize::Zeroizing;

use crate::error::{ClientError, Scrubber, scrubber};
use crate::http::egress_error;
use crate::target::Auth;

/// A token is renewed this long before it expires (at most half its lifetime), so a
/// request never leaves with a token that dies on the way.
const RENEW_MARGIN: Duration = Duration::from_secs(60);

pub(crate) enum Authenticator {
    Bearer(Secret),
    OAuth2 { cache: Box<TokenCache>, clock: Arc<dyn Clock>, timeout: Duration },
}

/// The credential to send, and whether it came from the token cache (a 401 on a cached
/// token is worth one retry with a fresh one).
pub(crate) struct Credential {
    pub(crate) token: Secret,
    pub(crate) cached: bool,
}

impl Authenticator {
    /// Checks the token URL under the egress policy (the target's lab opt-in applies).
    pub(crate) fn new(
        auth: Auth,
        egress: &Egress,
        rules: UrlRules,
        clock: Arc<dyn Clock>,
        timeout: Duration,
    ) -> Result<Self, ClientError> {
        match auth {
            Auth::Bearer(k) => Ok(Authenticator::Bearer(k)),
            Auth::OAuth2 { token_url, client_id, client_secret, scope } => {
                let token_url = egress
                    .check_url(&token_url, rules)
                    .map_err(|e| ClientError::Config { message: format!("oauth.token_url: {e}") })?;
                let creds = ClientCredentials {
                    token_url,
                    rules,
                    client_id,
                    client_secret: Zeroizing::new(client_secret.expose().to_owned()),
                    scope,
                };
                Ok(Authenticator::OAuth2 { cache: Box::new(TokenCache::new(creds, RENEW_MARGIN)), clock, timeout })
            }
        }
    }

    /// Secrets of the configuration, for scrubbing messages.
    pub(crate) fn scrubber(&self) -> Scrubber<'_> {
        match self {
            Authenticator::Bearer(k) => scrubber().with(k.expose()),
            Authenticator::OAuth2 { cache, .. } => scrubber().with(cache.client_secret()),
        }
    }

    pub(crate) fn is_oauth2(&self) -> bool {
        matches!(self, Authenticator::OAuth2 { .. })
    }

    pub(crate) async fn credential(&self, egress: &Egress) -> Result<Credential, ClientError> {
        let (cache, clock, timeout) = match self {
            Authenticator::Bearer(key) => return Ok(Credential { token: key.clone(), cached: false }),
            Authenticator::OAuth2 { cache, clock, timeout } => (cache, clock, *timeout),
        };
        let scrub = self.scrubber();
        match cache.token(egress, clock.now(), timeout).await {
            Ok(t) => Ok(Credential { token: Secret::new(t.value.to_string()), cached: t.cached }),
            Err(OAuthError::Egress(e)) => Err(egress_error(e, &scrub)),
            Err(OAuthError::Protocol { message, .. }) => Err(ClientError::Protocol { message }),
            Err(OAuthError::Status { status, body, .. }) => {
                // RFC 6749 §5.2: {"error": "invalid_client", "error_description": "…"}.
                let (code, desc) = error_fields(&body);
                let detail = match (code, desc) {
                    (None, None) => "OAuth2 token request failed".to_owned(),
                    (c, d) => {
                        format!("OAuth2 token request failed: {} {}", c.unwrap_or_default(), d.unwrap_or_default())
                            .trim_end()
                            .to_owned()
                    }
                };
                let detail = scrub.clean(&detail);
                // A rejected client is a credentials problem whatever 4xx the server used.
                Err(match status {
                    400 | 401 | 403 => ClientError::Unauthorized { detail },
                    s => ClientError::from_status(s, None, detail, None),
                })
            }
        }
    }

    /// Forgets the cached token (after the target answered 401 to it).
    pub(crate) async fn invalidate(&self) {
        if let Authenticator::OAuth2 { cache, .. } = self {
            cache.invalidate().await;
        }
    }
}
