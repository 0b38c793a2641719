//! An OAuth 2.0 authorization server per directory, for SCIM clients that do not take a
//! static bearer key (IPSIE AL SCIM profile, Entra's OAuth client credentials):
//!
//! - issuer `{public_url}/oauth/{directory}`, RFC 8414 metadata at
//!   `/.well-known/oauth-authorization-server/oauth/{directory}`, the token signing key at
//!   `/oauth/{directory}/jwks`;
//! - `POST /oauth/{directory}/token`, grant `client_credentials` (RFC 6749 §4.4), the
//!   client being an inbound trust (`client_id` = its name), authenticated by
//!   `private_key_jwt` (RFC 7523) or by a version of its provisioning key
//!   (`client_secret_basic` / `client_secret_post`);
//! - RFC 9068 access tokens signed by fedkey, accepted as bearer tokens by the directory's
//!   SCIM endpoint ([`bearer`]).

pub mod access_token;
pub mod assertion;
pub mod bearer;
mod error;
pub mod jws;
mod metadata;
mod token;

use axum::Router;
use axum::routing::{get, post};

use crate::AppState;

pub use error::OauthError;

/// The public routes (no admin token): metadata, JWKS, token endpoint. Token requests
/// pass the per-source limit first, as SCIM requests do. A trust's OAuth client settings are
/// part of the admin API (`oauth_api`).
pub fn router(state: &AppState) -> Router<AppState> {
    let token = Router::new()
        .route("/oauth/{directory}/token", post(token::token))
        .layer(axum::extract::DefaultBodyLimit::max(TOKEN_BODY_LIMIT))
        .layer(axum::middleware::from_fn_with_state(state.clone(), crate::source_limit::admin));
    Router::new()
        .route("/.well-known/oauth-authorization-server/oauth/{directory}", get(metadata::metadata))
        .route("/oauth/{directory}/jwks", get(metadata::jwks))
        .merge(token)
}

/// Largest token request: a form with a client assertion of at most 16 KiB.
const TOKEN_BODY_LIMIT: usize = 32 * 1024;

/// A name from the request (path, assertion) as it may appear in an audit record:
/// shortened and without control characters, whatever the client sent.
pub(crate) fn bounded(s: &str) -> String {
    s.chars().filter(|c| !c.is_control()).take(64).collect()
}

/// The audit actor of a token request or token use: the client, if known.
pub(crate) fn actor_id(directory: &str, client: Option<&str>) -> String {
    match client {
        Some(c) => format!("oauth:{}/{}", bounded(directory), bounded(c)),
        None => "anonymous".to_owned(),
    }
}

/// The URLs of one directory's authorization server.
#[derive(Debug, Clone)]
pub struct Urls {
    pub issuer: String,
    pub token_endpoint: String,
    pub jwks_uri: String,
    /// The SCIM base URL: the audience (RFC 9068 `aud`) of the access tokens.
    pub resource: String,
}

impl Urls {
    /// From the configured public URL (`public_url`), so every node names the same issuer
    /// whatever Host header a client sent.
    pub fn new(public_url: &str, directory: &str) -> Urls {
        let base = public_url.trim_end_matches('/');
        let issuer = format!("{base}/oauth/{directory}");
        Urls {
            token_endpoint: format!("{issuer}/token"),
            jwks_uri: format!("{issuer}/jwks"),
            resource: format!("{base}/scim/v2/{directory}"),
            issuer,
        }
    }
}
