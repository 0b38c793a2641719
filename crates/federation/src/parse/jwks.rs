//! JSON Web Key Sets (RFC 7517): public signing keys only.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value};

use crate::limits::Limits;
use crate::material::SigningKey;

use super::{ParseError, loggable, parse_json_object};

/// Members that only a private (or symmetric) JWK has (RFC 7518 §6.2.2, §6.3.2, §6.4).
const PRIVATE_MEMBERS: [&str; 8] = ["d", "p", "q", "dp", "dq", "qi", "oth", "k"];

const MIN_RSA_BITS: usize = 2048;
const MAX_RSA_BITS: usize = 16384;

/// Parses a JWKS and returns its signing keys. Keys marked `"use": "enc"` are skipped; a
/// private member, a symmetric, weak or unknown key type rejects the whole document, since a
/// peer that publishes those is misconfigured or compromised.
pub fn parse_jwks(bytes: &[u8], limits: &Limits) -> Result<Vec<SigningKey>, ParseError> {
    let doc = parse_json_object(bytes, limits)?;
    let keys = doc.get("keys").and_then(Value::as_array).ok_or(ParseError::MissingField("keys"))?;
    let mut out: Vec<SigningKey> = Vec::new();
    for (index, key) in keys.iter().enumerate() {
        let obj = key
            .as_object()
            .ok_or(ParseError::Invalid { field: "keys", reason: format!("#{index} is not an object") })?;
        if let Some(member) = PRIVATE_MEMBERS.iter().find(|m| obj.contains_key(**m)) {
            return Err(ParseError::PrivateKeyMember { index, member: (*member).to_owned() });
        }
        match obj.get("use") {
            None => {}
            Some(Value::String(u)) if u == "sig" => {}
            Some(Value::String(_)) => continue, // encryption keys are not ours to use
            Some(_) => return Err(ParseError::Invalid { field: "use", reason: format!("key #{index}: not a string") }),
        }
        let key = signing_key(index, obj)?;
        if !out.iter().any(|k| k.fingerprint == key.fingerprint) {
            if out.len() >= limits.max_keys {
                return Err(ParseError::TooManyKeys { limit: limits.max_keys });
            }
            out.push(key);
        }
    }
    if out.is_empty() {
        return Err(ParseError::NoSigningKeys);
    }
    Ok(out)
}

fn str_member<'a>(obj: &'a Map<String, Value>, name: &'static str) -> Result<Option<&'a str>, ParseError> {
    match obj.get(name) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(ParseError::Invalid { field: name, reason: "not a string".into() }),
    }
}

fn b64_member(index: usize, obj: &Map<String, Value>, name: &'static str) -> Result<(String, Vec<u8>), ParseError> {
    let s = str_member(obj, name)?.ok_or(ParseError::MissingField(name))?;
    let bytes = URL_SAFE_NO_PAD
        .decode(s)
        .map_err(|_| ParseError::Invalid { field: name, reason: format!("key #{index}: not base64url") })?;
    Ok((s.to_owned(), bytes))
}

fn signing_key(index: usize, obj: &Map<String, Value>) -> Result<SigningKey, ParseError> {
    let kty = str_member(obj, "kty")?.ok_or(ParseError::MissingField("kty"))?;
    let kid = str_member(obj, "kid")?.map(str::to_owned);
    let alg = str_member(obj, "alg")?.map(str::to_owned);
    let unsupported = |detail: String| ParseError::UnsupportedKey { index, detail };

    // Public members in RFC 7638 order (lexicographic), which is also the thumbprint input.
    let members: Vec<(&'static str, String)> = match kty {
        "RSA" => {
            let (n, n_bytes) = b64_member(index, obj, "n")?;
            let (e, e_bytes) = b64_member(index, obj, "e")?;
            let bits = bit_length(&n_bytes);
            if bits < MIN_RSA_BITS {
                return Err(ParseError::WeakKey {
                    index,
                    detail: format!("RSA modulus of {bits} bits (minimum {MIN_RSA_BITS})"),
                });
            }
            if bits > MAX_RSA_BITS {
                return Err(unsupported(format!("RSA modulus of {bits} bits")));
            }
            let e_ok =
                bit_length(&e_bytes) <= 64 && e_bytes.last().is_some_and(|b| b & 1 == 1) && bit_length(&e_bytes) > 1;
            if !e_ok {
                return Err(ParseError::WeakKey {
                    index,
                    detail: "RSA public exponent is not an odd number > 1".into(),
                });
            }
            check_alg(index, alg.as_deref(), &["RS256", "RS384", "RS512", "PS256", "PS384", "PS512"])?;
            vec![("e", e), ("kty", kty.to_owned()), ("n", n)]
        }
        "EC" => {
            let crv = str_member(obj, "crv")?.ok_or(ParseError::MissingField("crv"))?;
            let (size, algs): (usize, &[&str]) = match crv {
                "P-256" => (32, &["ES256"]),
                "P-384" => (48, &["ES384"]),
                other => return Err(unsupported(format!("EC curve {}", loggable(other)))),
            };
            let (x, x_bytes) = b64_member(index, obj, "x")?;
            let (y, y_bytes) = b64_member(index, obj, "y")?;
            if x_bytes.len() != size || y_bytes.len() != size {
                return Err(ParseError::Invalid {
                    field: "x",
                    reason: format!("key #{index}: wrong coordinate length for {crv}"),
                });
            }
            check_alg(index, alg.as_deref(), algs)?;
            vec![("crv", crv.to_owned()), ("kty", kty.to_owned()), ("x", x), ("y", y)]
        }
        "OKP" => {
            let crv = str_member(obj, "crv")?.ok_or(ParseError::MissingField("crv"))?;
            if crv != "Ed25519" {
                return Err(unsupported(format!("OKP curve {}", loggable(crv))));
            }
            let (x, x_bytes) = b64_member(index, obj, "x")?;
            if x_bytes.len() != 32 {
                return Err(ParseError::Invalid {
                    field: "x",
                    reason: format!("key #{index}: Ed25519 keys are 32 bytes"),
                });
            }
            check_alg(index, alg.as_deref(), &["EdDSA", "Ed25519"])?;
            vec![("crv", crv.to_owned()), ("kty", kty.to_owned()), ("x", x)]
        }
        "oct" => return Err(unsupported("symmetric (oct) keys cannot be published".into())),
        other => return Err(unsupported(format!("key type {}", loggable(other)))),
    };

    let fingerprint = jwk_thumbprint(&members);
    let mut public = Map::new();
    for (name, value) in members {
        public.insert(name.to_owned(), Value::String(value));
    }
    if let Some(kid) = &kid {
        public.insert("kid".into(), Value::String(kid.clone()));
    }
    if let Some(alg) = &alg {
        public.insert("alg".into(), Value::String(alg.clone()));
    }
    public.insert("use".into(), Value::String("sig".into()));
    Ok(SigningKey { kid, alg, fingerprint, jwk: Some(Value::Object(public)) })
}

fn check_alg(index: usize, alg: Option<&str>, allowed: &[&str]) -> Result<(), ParseError> {
    match alg {
        Some(a) if !allowed.contains(&a) => Err(ParseError::UnsupportedKey {
            index,
            detail: format!("algorithm {} does not fit this key type", loggable(a)),
        }),
        _ => Ok(()),
    }
}

/// Bits in a big-endian unsigned integer, ignoring leading zero bytes.
fn bit_length(bytes: &[u8]) -> usize {
    let mut it = bytes.iter().skip_while(|b| **b == 0);
    match it.next() {
        None => 0,
        Some(first) => 8 - first.leading_zeros() as usize + 8 * it.count(),
    }
}

/// RFC 7638 JWK thumbprint: SHA-256 over the required members, sorted, without whitespace.
/// `members` must already be sorted by name.
pub fn jwk_thumbprint(members: &[(&str, String)]) -> String {
    let body: Vec<String> = members
        .iter()
        .map(|(k, v)| format!("{}:{}", Value::String((*k).to_owned()), Value::String(v.clone())))
        .collect();
    let canonical = format!("{{{}}}", body.join(","));
    URL_SAFE_NO_PAD.encode(fedkey_crypto::sha256(canonical.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    // RFC 7638 §3.1 example key and its thumbprint.
    const RFC7638_N: &str = "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw";

    #[test]
    fn thumbprint_matches_rfc7638_example() {
        let doc =
            format!(r#"{{"keys":[{{"kty":"RSA","n":"{RFC7638_N}","e":"AQAB","alg":"RS256","kid":"2011-04-29"}}]}}"#);
        let keys = parse_jwks(doc.as_bytes(), &Limits::default()).unwrap();
        assert_eq!(keys.len(), 1);
        assert_eq!(keys[0].fingerprint, "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs");
        assert_eq!(keys[0].kid.as_deref(), Some("2011-04-29"));
        let jwk = keys[0].jwk.as_ref().unwrap();
        assert_eq!(jwk["e"], "AQAB");
    }

    #[test]
    fn private_members_reject_the_document_without_echoing_them() {
        let doc = format!(r#"{{"keys":[{{"kty":"RSA","n":"{RFC7638_N}","e":"AQAB","d":"c2VjcmV0LXZhbHVl"}}]}}"#);
        let err = parse_jwks(doc.as_bytes(), &Limits::default()).unwrap_err();
        assert_eq!(err, ParseError::PrivateKeyMember { index: 0, member: "d".into() });
        assert!(!err.to_string().contains("c2VjcmV0"));
    }

    #[test]
    fn weak_symmetric_and_unknown_keys_are_rejected() {
        let l = Limits::default();
        let short = URL_SAFE_NO_PAD.encode([0xffu8; 128]); // 1024-bit modulus
        let doc = format!(r#"{{"keys":[{{"kty":"RSA","n":"{short}","e":"AQAB"}}]}}"#);
        assert!(matches!(parse_jwks(doc.as_bytes(), &l), Err(ParseError::WeakKey { .. })));
        assert!(matches!(
            parse_jwks(br#"{"keys":[{"kty":"oct","kid":"x"}]}"#, &l),
            Err(ParseError::UnsupportedKey { .. })
        ));
        assert!(matches!(parse_jwks(br#"{"keys":[{"kty":"XYZ"}]}"#, &l), Err(ParseError::UnsupportedKey { .. })));
        let x = URL_SAFE_NO_PAD.encode([1u8; 32]);
        let doc = format!(r#"{{"keys":[{{"kty":"OKP","crv":"Ed25519","x":"{x}","alg":"HS256"}}]}}"#);
        assert!(matches!(parse_jwks(doc.as_bytes(), &l), Err(ParseError::UnsupportedKey { .. })));
    }

    #[test]
    fn encryption_keys_are_skipped_and_an_empty_set_is_an_error() {
        let l = Limits::default();
        let doc = format!(r#"{{"keys":[{{"kty":"RSA","use":"enc","n":"{RFC7638_N}","e":"AQAB"}}]}}"#);
        assert_eq!(parse_jwks(doc.as_bytes(), &l), Err(ParseError::NoSigningKeys));
        assert_eq!(parse_jwks(br#"{"keys":[]}"#, &l), Err(ParseError::NoSigningKeys));
        assert_eq!(parse_jwks(br#"{"nokeys":1}"#, &l), Err(ParseError::MissingField("keys")));
    }

    #[test]
    fn key_count_is_bounded() {
        let l = Limits { max_keys: 2, ..Limits::default() };
        let keys: Vec<String> = (1u8..=3)
            .map(|i| format!(r#"{{"kty":"OKP","crv":"Ed25519","x":"{}"}}"#, URL_SAFE_NO_PAD.encode([i; 32])))
            .collect();
        let doc = format!(r#"{{"keys":[{}]}}"#, keys.join(","));
        assert_eq!(parse_jwks(doc.as_bytes(), &l), Err(ParseError::TooManyKeys { limit: 2 }));
    }

    #[test]
    fn bit_length_ignores_leading_zeros() {
        assert_eq!(bit_length(&[0, 0, 1]), 1);
        assert_eq!(bit_length(&[0x80, 0]), 16);
        assert_eq!(bit_length(&[]), 0);
    }

    /// Found by the `jwks` fuzz harness: the peer's `alg`, `kty` and `crv` went into
    /// errors as they were, control characters and any length included.
    #[test]
    fn errors_show_peer_strings_short_and_printable() {
        let long = "x".repeat(5000);
        let ed = r#""crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo""#;
        for doc in [
            format!(r#"{{"keys":[{{"kty":"OKP",{ed},"alg":"\u0000RS256\n{long}"}}]}}"#),
            format!(r#"{{"keys":[{{"kty":"\u001b[31m{long}"}}]}}"#),
            format!(r#"{{"keys":[{{"kty":"OKP","crv":"\r\n{long}","x":"AA"}}]}}"#),
            format!(r#"{{"keys":[{{"kty":"EC","crv":"\r\n{long}","x":"AA","y":"AA"}}]}}"#),
        ] {
            let e = parse_jwks(doc.as_bytes(), &Limits::default()).unwrap_err();
            let msg = e.to_string();
            assert!(matches!(e, ParseError::UnsupportedKey { .. }), "{msg}");
            assert!(msg.len() <= 300 && !msg.chars().any(char::is_control), "{msg:?}");
        }
    }
}
