//! SCIM request bodies and precondition headers.
//!
//! Bodies: `application/scim+json` or `application/json` (a missing content type is
//! tolerated), at most [`super::SCIM_BODY_LIMIT`] bytes (413), a JSON object (400
//! `invalidSyntax`). Preconditions: `ETag`s are `W/"N"` where N is the resource version.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{HeaderMap, StatusCode, header};
use fedkey_scim::{ScimError, ScimType};
use serde_json::Value;

use super::{SCIM_BODY_LIMIT, ScimResponse};

/// A SCIM JSON object body.
pub struct ScimBody(pub Value);

impl<S: Send + Sync> FromRequest<S> for ScimBody {
    type Rejection = ScimResponse;

    async fn from_request(req: Request, state: &S) -> Result<Self, ScimResponse> {
        if let Some(ct) = req.headers().get(header::CONTENT_TYPE) {
            let ct = ct.to_str().unwrap_or("").split(';').next().unwrap_or("").trim().to_ascii_lowercase();
            if ct != "application/json" && ct != "application/scim+json" {
                return Err(ScimResponse(ScimError::new(
                    415,
                    None,
                    "expected Content-Type: application/scim+json or application/json",
                )));
            }
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|r| {
            if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ScimResponse(ScimError::new(413, None, format!("request body exceeds {SCIM_BODY_LIMIT} bytes")))
            } else {
                ScimResponse(ScimError::new(400, Some(ScimType::InvalidSyntax), "could not read the request body"))
            }
        })?;
        let v: Value = serde_json::from_slice(&bytes).map_err(|e| {
            ScimResponse(ScimError::new(400, Some(ScimType::InvalidSyntax), format!("malformed JSON: {e}")))
        })?;
        if !v.is_object() {
            return Err(ScimResponse(ScimError::new(
                400,
                Some(ScimType::InvalidSyntax),
                "the request body must be a JSON object",
            )));
        }
        Ok(ScimBody(v))
    }
}

/// The weak ETag of a resource version.
pub fn etag(version: i64) -> String {
    format!("W/\"{version}\"")
}

/// The versions an entity-tag list names; `None` for `*`. Tags that are not fedkey's
/// match nothing.
fn tag_versions(value: &str) -> Option<Vec<i64>> {
    let mut out = Vec::new();
    for tag in value.split(',').map(str::trim).filter(|t| !t.is_empty()) {
        if tag == "*" {
            return None;
        }
        let t = tag.strip_prefix("W/").unwrap_or(tag);
        if let Some(v) = t.strip_prefix('"').and_then(|t| t.strip_suffix('"')).and_then(|t| t.parse().ok()) {
            out.push(v);
        }
    }
    Some(out)
}

/// `If-Match`: `Ok(None)` when absent or `*`; `Ok(Some(v))` for the version it names.
/// A list naming several versions matches the first; one naming none can never match,
/// which the store reports as 412 (or 404 when the resource is gone).
pub fn if_match(h: &HeaderMap) -> Option<i64> {
    let v = h.get(header::IF_MATCH)?.to_str().unwrap_or("\"\"");
    tag_versions(v).map(|vs| vs.first().copied().unwrap_or(-1))
}

/// Whether `If-None-Match` matches `version` (so a GET answers 304).
pub fn if_none_match(h: &HeaderMap, version: i64) -> bool {
    let Some(v) = h.get(header::IF_NONE_MATCH).and_then(|v| v.to_str().ok()) else { return false };
    match tag_versions(v) {
        None => true,
        Some(vs) => vs.contains(&version),
    }
}
