//! RFC 8414 authorization server metadata and the JWKS of the access-token signing key.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::{OauthError, Urls, jws};
use crate::AppState;

/// `GET /.well-known/oauth-authorization-server/oauth/{directory}` (RFC 8414 §3: the
/// well-known segment goes between the host and the issuer's path).
pub async fn metadata(State(s): State<AppState>, Path(directory): Path<String>) -> Result<Response, OauthError> {
    s.store.directory(&directory).await?;
    let u = Urls::new(&s.public_url, &directory);
    let body = json!({
        "issuer": u.issuer,
        "token_endpoint": u.token_endpoint,
        "jwks_uri": u.jwks_uri,
        "grant_types_supported": ["client_credentials"],
        "token_endpoint_auth_methods_supported": ["private_key_jwt", "client_secret_basic", "client_secret_post"],
        "token_endpoint_auth_signing_alg_values_supported": super::assertion::ALGORITHMS,
        "scopes_supported": super::access_token::scopes_supported(),
        "response_types_supported": [],
    });
    Ok(cacheable(Json(body)))
}

/// `GET /oauth/{directory}/jwks`: the public key access tokens are signed with.
pub async fn jwks(State(s): State<AppState>, Path(directory): Path<String>) -> Result<Response, OauthError> {
    s.store.directory(&directory).await?;
    let key = s.store.install.oauth_signing.as_ref().ok_or_else(|| OauthError::unavailable("no token signing key"))?;
    Ok(cacheable(Json(json!({"keys": [jws::public_jwk(key)]}))))
}

/// Public documents: resource servers may cache them for a few minutes.
fn cacheable(body: impl IntoResponse) -> Response {
    let mut resp = body.into_response();
    resp.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=300"));
    resp
}
