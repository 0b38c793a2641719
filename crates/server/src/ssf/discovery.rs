//! Transmitter configuration metadata (SSF 1.0 §7.1), public like any discovery document.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::{SsfError, Urls, events};
use crate::AppState;

/// `GET /.well-known/ssf-configuration/ssf/{directory}`.
pub async fn configuration(State(s): State<AppState>, Path(directory): Path<String>) -> Result<Response, SsfError> {
    s.store.directory(&directory).await.map_err(|e| match e {
        fedkey_store::StoreError::NotFound(_) => {
            SsfError::new(axum::http::StatusCode::NOT_FOUND, "not_found", "no such directory")
        }
        e => e.into(),
    })?;
    let mut resp = Json(metadata(&s.public_url, &directory)).into_response();
    resp.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=300"));
    Ok(resp)
}

/// The metadata of one directory's transmitter. No subject endpoints: every user of the
/// directory is in every stream (`default_subjects` `ALL`).
pub fn metadata(public_url: &str, directory: &str) -> Value {
    let u = Urls::new(public_url, directory);
    json!({
        "spec_version": "1_0",
        "issuer": u.issuer,
        "jwks_uri": crate::oauth::Urls::new(public_url, directory).jwks_uri,
        "delivery_methods_supported": [events::PUSH, events::POLL],
        "configuration_endpoint": u.configuration_endpoint,
        "status_endpoint": u.status_endpoint,
        "verification_endpoint": u.verification_endpoint,
        // RFC 6749 client credentials at /oauth/{directory}/token, or the trust's key as an
        // RFC 6750 bearer.
        "authorization_schemes": [{"spec_urn": "urn:ietf:rfc:6749"}, {"spec_urn": "urn:ietf:rfc:6750"}],
        "default_subjects": "ALL",
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_names_one_issuer_and_its_endpoints() {
        let m = metadata("https://fedkey.example/", "acme");
        assert_eq!(m["issuer"], "https://fedkey.example/ssf/acme");
        assert_eq!(m["configuration_endpoint"], "https://fedkey.example/ssf/acme/streams");
        assert_eq!(m["jwks_uri"], "https://fedkey.example/oauth/acme/jwks");
        assert_eq!(m["delivery_methods_supported"], json!(["urn:ietf:rfc:8935", "urn:ietf:rfc:8936"]));
        assert!(m.get("add_subject_endpoint").is_none(), "subjects are not managed per stream");
        // §7.1: claims with zero elements are omitted; none here is empty.
        assert!(m.as_object().unwrap().values().all(|v| v.as_array().is_none_or(|a| !a.is_empty())));
    }
}
