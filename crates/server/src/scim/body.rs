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

/// A SCIM body before JSON parsing (content type and size checked), for handlers that
/// parse large bodies off the async workers.
pub struct ScimBytes(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for ScimBytes {
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
        Ok(ScimBytes(bytes))
    }
}

/// Parses a body that must be a JSON object.
pub fn json_object(bytes: &[u8]) -> Result<Value, ScimResponse> {
    let v: Value = serde_json::from_slice(bytes).map_err(|e| {
        ScimResponse(ScimError::new(400, Some(ScimType::InvalidSyntax), format!("malformed JSON: {e}")))
    })?;
    if !v.is_object() {
        return Err(ScimResponse(ScimError::new(
            400,
            Some(ScimType::InvalidSyntax),
            "the request body must be a JSON object",
        )));
    }
    Ok(v)
}

impl<S: Send + Sync> FromRequest<S> for ScimBody {
    type Rejection = ScimResponse;

    async fn from_request(req: Request, state: &S) -> Result<Self, ScimResponse> {
        let ScimBytes(bytes) = ScimBytes::from_request(req, state).await?;
        json_object(&bytes).map(ScimBody)
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

/// What an `If-Match` header (or a Bulk operation's `version`) asks of the current version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IfMatch {
    /// No header, or `*`.
    Any,
    /// One of these versions; an empty list (tags that are not fedkey's, an unreadable
    /// header) matches none.
    OneOf(Vec<i64>),
}

impl IfMatch {
    /// The version to write against when the current one is `current`: `Some(None)` with no
    /// condition, `Some(Some(current))` when it is listed, `None` when it is not (412).
    pub fn expect(&self, current: i64) -> Option<Option<i64>> {
        match self {
            IfMatch::Any => Some(None),
            IfMatch::OneOf(vs) => vs.contains(&current).then_some(Some(current)),
        }
    }

    pub fn is_any(&self) -> bool {
        *self == IfMatch::Any
    }
}

/// `If-Match`: any of the entity tags it lists (RFC 9110 §13.1.1).
pub fn if_match(h: &HeaderMap) -> IfMatch {
    let Some(v) = h.get(header::IF_MATCH) else { return IfMatch::Any };
    match v.to_str().ok().map(tag_versions) {
        Some(None) => IfMatch::Any,
        Some(Some(vs)) => IfMatch::OneOf(vs),
        None => IfMatch::OneOf(Vec::new()),
    }
}

/// Whether `If-None-Match` matches `version` (so a GET answers 304).
pub fn if_none_match(h: &HeaderMap, version: i64) -> bool {
    let Some(v) = h.get(header::IF_NONE_MATCH).and_then(|v| v.to_str().ok()) else { return false };
    match tag_versions(v) {
        None => true,
        Some(vs) => vs.contains(&version),
    }
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn with(v: &[u8]) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::IF_MATCH, HeaderValue::from_bytes(v).unwrap());
        h
    }

    #[test]
    fn if_match_lists_match_any_of_their_tags() {
        assert_eq!(if_match(&HeaderMap::new()), IfMatch::Any);
        assert_eq!(if_match(&with(b"*")), IfMatch::Any);
        let list = if_match(&with(br#"W/"3", "5" ,W/"x""#));
        assert_eq!(list, IfMatch::OneOf(vec![3, 5]));
        assert_eq!(list.expect(5), Some(Some(5)));
        assert_eq!(list.expect(3), Some(Some(3)));
        assert_eq!(list.expect(4), None);
        assert_eq!(IfMatch::Any.expect(4), Some(None));
        // Tags fedkey never issued, and bytes that are not text, match nothing.
        assert_eq!(if_match(&with(br#""abc""#)).expect(1), None);
        assert_eq!(if_match(&with(b"W/\"1\xff\"")).expect(1), None);
    }
}
