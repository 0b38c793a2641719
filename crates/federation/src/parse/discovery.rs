//! OpenID Connect discovery (`/.well-known/openid-configuration`): only what key fetching needs.

use crate::limits::Limits;

use super::{ParseError, parse_json_object};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Discovery {
    pub issuer: String,
    pub jwks_uri: String,
}

pub fn parse_oidc_discovery(bytes: &[u8], limits: &Limits) -> Result<Discovery, ParseError> {
    let doc = parse_json_object(bytes, limits)?;
    let issuer = doc.get("issuer").and_then(|v| v.as_str()).filter(|s| !s.is_empty());
    let issuer = issuer.ok_or(ParseError::MissingField("issuer"))?.to_owned();
    let jwks_uri = doc.get("jwks_uri").and_then(|v| v.as_str()).ok_or(ParseError::MissingField("jwks_uri"))?;
    if !(jwks_uri.starts_with("https://") || jwks_uri.starts_with("http://")) {
        return Err(ParseError::Invalid { field: "jwks_uri", reason: "not an http(s) URL".into() });
    }
    Ok(Discovery { issuer, jwks_uri: jwks_uri.to_owned() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_issuer_and_jwks_uri() {
        let d = parse_oidc_discovery(
            br#"{"issuer":"https://idp.test","jwks_uri":"https://idp.test/keys","response_types_supported":["code"]}"#,
            &Limits::default(),
        )
        .unwrap();
        assert_eq!(d.issuer, "https://idp.test");
        assert_eq!(d.jwks_uri, "https://idp.test/keys");
    }

    #[test]
    fn rejects_missing_or_odd_fields() {
        let l = Limits::default();
        assert_eq!(parse_oidc_discovery(br#"{"jwks_uri":"https://x"}"#, &l), Err(ParseError::MissingField("issuer")));
        assert_eq!(parse_oidc_discovery(br#"{"issuer":"x"}"#, &l), Err(ParseError::MissingField("jwks_uri")));
        assert!(matches!(
            parse_oidc_discovery(br#"{"issuer":"x","jwks_uri":"file:///etc/passwd"}"#, &l),
            Err(ParseError::Invalid { field: "jwks_uri", .. })
        ));
        assert!(matches!(parse_oidc_discovery(b"[]", &l), Err(ParseError::Json(_))));
    }
}
