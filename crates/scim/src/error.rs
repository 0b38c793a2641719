//! SCIM error responses (RFC 7644 §3.12).

use serde::Serialize;

pub const ERROR_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:Error";

/// The `scimType` keywords of RFC 7644 table 9, and those RFC 9865 (cursor pagination) adds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum ScimType {
    InvalidFilter,
    TooMany,
    Uniqueness,
    Mutability,
    InvalidSyntax,
    InvalidPath,
    NoTarget,
    InvalidValue,
    InvalidVers,
    Sensitive,
    /// RFC 9865: the cursor was not issued for this query, or was altered.
    InvalidCursor,
    /// RFC 9865: the cursor is older than the advertised `cursorTimeout`.
    ExpiredCursor,
    /// RFC 9865: `count` is not an integer between 1 and `maxPageSize`.
    InvalidCount,
}

/// A SCIM Error body. `status` is a string on the wire, as the RFC requires.
#[derive(Debug, Clone, Serialize)]
pub struct ScimError {
    pub schemas: [&'static str; 1],
    pub status: String,
    #[serde(rename = "scimType", skip_serializing_if = "Option::is_none")]
    pub scim_type: Option<ScimType>,
    pub detail: String,
}

impl ScimError {
    pub fn new(status: u16, scim_type: Option<ScimType>, detail: impl Into<String>) -> Self {
        Self { schemas: [ERROR_SCHEMA], status: status.to_string(), scim_type, detail: detail.into() }
    }

    pub fn status_code(&self) -> u16 {
        self.status.parse().unwrap_or(500)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_body_has_string_status_and_camel_case_type() {
        let e = ScimError::new(400, Some(ScimType::InvalidFilter), "bad filter");
        let v = serde_json::to_value(&e).unwrap();
        assert_eq!(v["status"], "400");
        assert_eq!(v["scimType"], "invalidFilter");
        assert_eq!(v["schemas"][0], ERROR_SCHEMA);
        assert_eq!(e.status_code(), 400);
    }
}
