//! Where an outbound trust provisions to and how it authenticates there.

use std::time::Duration;

use fedkey_crypto::Secret;

/// One SCIM target: the application's SCIM base URL (the part before `/Users`) and the
/// credentials it issued.
#[derive(Debug, Clone)]
pub struct TargetConfig {
    /// e.g. `https://app.example/scim/v2`; a trailing `/` is ignored.
    pub base_url: String,
    pub auth: Auth,
    /// Limit for each whole request (connect, send, read the answer), token requests included.
    pub timeout: Duration,
    /// Lab opt-in: plain http to a host that is not loopback (base URL and token URL).
    pub allow_http: bool,
}

impl TargetConfig {
    /// A target using the bearer key the application issued, with a 30 s timeout.
    pub fn bearer(base_url: impl Into<String>, key: Secret) -> Self {
        TargetConfig {
            base_url: base_url.into(),
            auth: Auth::Bearer(key),
            timeout: Duration::from_secs(30),
            allow_http: false,
        }
    }
}

#[derive(Debug, Clone)]
pub enum Auth {
    /// `Authorization: Bearer <key>` with the application's long-lived key.
    Bearer(Secret),
    /// OAuth2 client credentials grant (RFC 6749 §4.4); the client authenticates in the
    /// form body (`client_secret_post`), which Entra ID, Okta and most others accept. The
    /// access token is cached until shortly before it expires.
    OAuth2 { token_url: String, client_id: String, client_secret: Secret, scope: Option<String> },
}
