//! Parsers for the peer's documents. Each one bounds size and nesting before it builds anything,
//! and returns an error (never panics) on any input.

mod der;
mod discovery;
pub mod duration;
mod jwks;
mod saml;

pub use discovery::{Discovery, parse_oidc_discovery};
pub use jwks::{jwk_thumbprint, parse_jwks};
pub use saml::{SamlMetadata, parse_saml_metadata};

use crate::limits::Limits;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("document is {size} bytes, over the {limit}-byte limit")]
    TooLarge { size: usize, limit: usize },
    #[error("document nests deeper than {limit} levels")]
    TooDeep { limit: usize },
    #[error("document is not valid UTF-8")]
    NotUtf8,
    #[error("invalid JSON: {0}")]
    Json(String),
    #[error("invalid XML: {0}")]
    Xml(String),
    #[error("XML DOCTYPE declarations are not accepted")]
    DocType,
    #[error("missing or invalid `{0}`")]
    MissingField(&'static str),
    #[error("invalid `{field}`: {reason}")]
    Invalid { field: &'static str, reason: String },
    #[error("key #{index} carries the private key member `{member}`")]
    PrivateKeyMember { index: usize, member: String },
    #[error("key #{index} is not supported: {detail}")]
    UnsupportedKey { index: usize, detail: String },
    #[error("key #{index} is too weak: {detail}")]
    WeakKey { index: usize, detail: String },
    #[error("document holds more than {limit} signing keys")]
    TooManyKeys { limit: usize },
    #[error("document holds no signing key")]
    NoSigningKeys,
    #[error("signing certificate #{index} is invalid: {reason}")]
    BadCertificate { index: usize, reason: String },
    #[error("metadata expired (validUntil {valid_until})")]
    Expired { valid_until: String },
    #[error("metadata carries neither validUntil nor cacheDuration")]
    MissingValidity,
    #[error("root element is `{found}`, expected a SAML 2.0 md:EntityDescriptor")]
    UnexpectedRoot { found: String },
}

/// Most bytes of a parser's message kept in an error. XML parsers quote the document,
/// which is the peer's text, and the error goes to logs and the admin API.
const MAX_MESSAGE: usize = 200;

/// A parser's message fit for a log line: control characters (line breaks) become spaces
/// and it is cut at [`MAX_MESSAGE`] bytes.
pub(crate) fn loggable(msg: &str) -> String {
    let mut out = String::with_capacity(msg.len().min(MAX_MESSAGE + 3));
    for c in msg.chars() {
        if out.len() + c.len_utf8() > MAX_MESSAGE {
            out.push('…');
            break;
        }
        out.push(if c.is_control() { ' ' } else { c });
    }
    out
}

pub(crate) fn check_size(bytes: &[u8], limits: &Limits) -> Result<(), ParseError> {
    if bytes.len() > limits.max_document_bytes {
        return Err(ParseError::TooLarge { size: bytes.len(), limit: limits.max_document_bytes });
    }
    Ok(())
}

/// Rejects JSON nested deeper than the limit before serde_json builds anything: a scan over the
/// bytes that skips string contents.
pub(crate) fn check_json_depth(bytes: &[u8], limits: &Limits) -> Result<(), ParseError> {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for &b in bytes {
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'{' | b'[' => {
                depth += 1;
                if depth > limits.max_depth {
                    return Err(ParseError::TooDeep { limit: limits.max_depth });
                }
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

/// Size, depth, then JSON: the order that keeps hostile input cheap.
pub(crate) fn parse_json_object(
    bytes: &[u8],
    limits: &Limits,
) -> Result<serde_json::Map<String, serde_json::Value>, ParseError> {
    check_size(bytes, limits)?;
    check_json_depth(bytes, limits)?;
    match serde_json::from_slice::<serde_json::Value>(bytes) {
        Ok(serde_json::Value::Object(map)) => Ok(map),
        Ok(_) => Err(ParseError::Json("top level is not an object".into())),
        Err(e) => Err(ParseError::Json(e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depth_scan_ignores_brackets_in_strings() {
        let limits = Limits { max_depth: 2, ..Limits::default() };
        assert!(check_json_depth(br#"{"a":"[[[[[[\"[[["}"#, &limits).is_ok());
        assert_eq!(check_json_depth(b"[[[1]]]", &limits), Err(ParseError::TooDeep { limit: 2 }));
    }

    #[test]
    fn size_limit_applies() {
        let limits = Limits { max_document_bytes: 4, ..Limits::default() };
        assert_eq!(check_size(b"12345", &limits), Err(ParseError::TooLarge { size: 5, limit: 4 }));
        assert!(check_size(b"1234", &limits).is_ok());
    }
}
