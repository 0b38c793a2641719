//! The SCIM 2.0 base of each directory. This issue serves the authenticated
//! `/ServiceProviderConfig`; the SCIM service issue fills in resources.

use axum::Router;
use axum::extract::{FromRequestParts, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header, request::Parts};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use fedkey_scim::discovery::{BulkLimits, Capabilities, service_provider_config};
use fedkey_scim::{SCIM_MEDIA_TYPE, ScimError};
use fedkey_store::auth::{Principal, RequestMeta};

use crate::AppState;

pub fn router() -> Router<AppState> {
    Router::new().route("/{directory}/ServiceProviderConfig", get(spc)).fallback(unknown)
}

/// A SCIM error response with the SCIM media type.
pub struct ScimResponse(pub ScimError);

impl IntoResponse for ScimResponse {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.0.status_code()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut resp = (status, axum::Json(&self.0)).into_response();
        resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(SCIM_MEDIA_TYPE));
        if status == StatusCode::UNAUTHORIZED {
            resp.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"fedkey-scim\""));
        }
        resp
    }
}

/// An authenticated SCIM caller: a provisioning key of one of this directory's inbound
/// trusts, in its validity window, on an active trust.
pub struct Provisioner(pub Principal);

impl FromRequestParts<AppState> for Provisioner {
    type Rejection = ScimResponse;

    async fn from_request_parts(parts: &mut Parts, s: &AppState) -> Result<Self, ScimResponse> {
        let Path(params) = Path::<Vec<(String, String)>>::from_request_parts(parts, s)
            .await
            .map_err(|_| ScimResponse(ScimError::new(404, None, "unknown directory")))?;
        let directory = params.iter().find(|(k, _)| k == "directory").map(|(_, v)| v.clone()).unwrap_or_default();
        let meta = parts.extensions.get::<RequestMeta>().cloned().unwrap_or_default();
        let token = bearer(&parts.headers);
        match s.store.authenticate_provisioning(&directory, token, &meta).await {
            Ok(Ok(p)) => Ok(Provisioner(p)),
            Ok(Err(_)) => Err(ScimResponse(ScimError::new(
                401,
                None,
                "authentication required: a valid provisioning key of this directory",
            ))),
            Err(e) => {
                tracing::error!(error = ?e, "audit unavailable; SCIM request refused");
                Err(ScimResponse(ScimError::new(503, None, "the audit log is unavailable; request refused")))
            }
        }
    }
}

/// The bearer token of an `Authorization` header, if well-formed.
pub fn bearer(h: &HeaderMap) -> Option<&str> {
    let v = h.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim()).filter(|t| !t.is_empty())
}

pub fn capabilities() -> Capabilities {
    Capabilities {
        patch: false,
        bulk: None::<BulkLimits>,
        filter_max_results: None,
        change_password: false,
        sort: false,
        etag: false,
        documentation_uri: None,
    }
}

async fn spc(Provisioner(p): Provisioner, State(s): State<AppState>, headers: HeaderMap) -> Response {
    render_spc(s.scheme, &p.directory, &headers)
}

/// The `/ServiceProviderConfig` response for `directory` (shared with the benchmark's
/// unauthenticated baseline, so both measure the same work).
pub fn render_spc(scheme: &str, directory: &str, headers: &HeaderMap) -> Response {
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("localhost");
    let location = format!("{scheme}://{host}/scim/v2/{directory}/ServiceProviderConfig");
    let mut resp = axum::Json(service_provider_config(&capabilities(), &location)).into_response();
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(SCIM_MEDIA_TYPE));
    resp
}

async fn unknown() -> ScimResponse {
    ScimResponse(ScimError::new(404, None, "no such SCIM endpoint"))
}
