//! Fuzz harnesses of the trust-material parsers and JWT verification (machinery:
//! fedkey-fuzz, docs/fuzzing.md). Inputs are real documents and tokens made with the test
//! keys, built from each format's grammar and then mutated, plus mutated seed files.

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use fedkey_federation::{JwtError, JwtPolicy, Limits, ParseError, SigningKey, parse_jwks, parse_saml_metadata, verify};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use serde_json::{Map, Value, json};

use crate::idp::T0;
use crate::keys::{TestKey, certificate, jwks, saml_metadata};

const ISS: &str = "https://idp.test";
const AUD: &str = "https://fedkey.test/scim/v2";

fn check<S>(target: &str, strategy: S, test: impl Fn(S::Value) -> Result<(), TestCaseError>)
where
    S: Strategy,
    S::Value: std::fmt::Debug,
{
    if let Err(e) = fedkey_fuzz::fuzz(target, strategy, test) {
        panic!("{e}");
    }
}

/// An error message fit for a log line: short, no control characters.
fn loggable(msg: &str) -> Result<(), TestCaseError> {
    prop_assert!(msg.len() <= 512, "{} bytes: {}", msg.len(), msg);
    prop_assert!(!msg.chars().any(char::is_control), "control characters in {:?}", msg);
    Ok(())
}

fn b64(v: &Value) -> String {
    URL_SAFE_NO_PAD.encode(v.to_string())
}

const JWT_DICT: &[&str] = &[".", "=", "-", "_", "eyJ", "AAAA", "e30", "eyJhbGciOiJub25lIn0", "\"", "%"];

/// A token and, when it is exactly what a published key signed, that token.
#[derive(Debug, Clone)]
struct Token {
    signed_by_published_key: bool,
    token: String,
}

fn claims() -> impl Strategy<Value = Value> {
    let now = T0.0 / 1_000_000;
    let iss = prop::sample::select(vec![json!(ISS), json!("https://evil.test"), json!(""), json!(1)]);
    let aud = prop::sample::select(vec![json!(AUD), json!([AUD, "x"]), json!(["x"]), json!([]), json!(1), Value::Null]);
    let time = prop::option::of(-7200i64..7200);
    let jti = prop::option::of(prop::sample::select(vec![json!("j1"), json!(""), json!(7)]));
    (iss, aud, time.clone(), time.clone(), time, jti).prop_map(move |(iss, aud, exp, nbf, iat, jti)| {
        let mut c = Map::new();
        c.insert("iss".into(), iss);
        if !aud.is_null() {
            c.insert("aud".into(), aud);
        }
        for (k, v) in [("exp", exp), ("nbf", nbf), ("iat", iat)] {
            if let Some(off) = v {
                c.insert(k.into(), json!(now + off));
            }
        }
        if let Some(j) = jti {
            c.insert("jti".into(), j);
        }
        Value::Object(c)
    })
}

fn headers() -> impl Strategy<Value = Value> {
    prop::sample::select(vec![
        json!({"alg": "none"}),
        json!({"alg": "HS256", "kid": "k1"}),
        json!({"alg": "ES256", "kid": "k1", "crit": ["exp"]}),
        json!({"alg": "ES256", "kid": 1}),
        json!({"alg": "RS256"}),
        json!({"alg": "EdDSA", "kid": "k2"}),
        json!({"alg": "es256"}),
        json!({"kid": "k1"}),
        json!([]),
    ])
}

fn tokens(keys: Arc<Vec<TestKey>>) -> impl Strategy<Value = Token> {
    // keys: [published ES256 k1, published EdDSA k2, unpublished ES256 k3]
    let signed = (claims(), 0..keys.len(), any::<bool>()).prop_map(move |(c, k, kid)| {
        let key = &keys[k];
        let token = if kid { key.sign(&c) } else { key.sign_without_kid(&c) };
        Token { signed_by_published_key: k < 2, token }
    });
    let crafted = (headers(), claims(), prop::collection::vec(any::<u8>(), 0..80)).prop_map(|(h, c, sig)| Token {
        signed_by_published_key: false,
        token: format!("{}.{}.{}", b64(&h), b64(&c), URL_SAFE_NO_PAD.encode(sig)),
    });
    let seeds = fedkey_fuzz::corpus("jwt").unwrap();
    let base = prop_oneof![3 => signed, 1 => crafted];
    let mutated = (base, prop::collection::vec(fedkey_fuzz::mutation(), 0..4)).prop_map(move |(t, ms)| {
        let bytes = fedkey_fuzz::apply(t.token.as_bytes(), &ms, &seeds, JWT_DICT);
        let token = String::from_utf8_lossy(&bytes).into_owned();
        Token { signed_by_published_key: t.signed_by_published_key && token == t.token, token }
    });
    let corpus = fedkey_fuzz::mutated_corpus(fedkey_fuzz::corpus("jwt").unwrap(), JWT_DICT)
        .prop_map(|b| Token { signed_by_published_key: false, token: String::from_utf8_lossy(&b).into_owned() });
    prop_oneof![4 => mutated, 1 => corpus]
}

#[test]
fn fuzz_jwt_verification() {
    let keys = Arc::new(vec![TestKey::ec("k1"), TestKey::ed("k2"), TestKey::ec("k3")]);
    let published: Vec<SigningKey> = parse_jwks(jwks(&[&keys[0], &keys[1]]).as_bytes(), &Limits::default()).unwrap();
    let policy = JwtPolicy::new(ISS, vec![AUD.into()]);
    let now_s = T0.0 / 1_000_000;
    check("jwt", tokens(keys), |t| {
        match verify(&t.token, &policy, &published, T0) {
            Ok(c) => {
                prop_assert!(t.signed_by_published_key, "accepted a token no published key signed");
                prop_assert_eq!(c.iss.as_str(), ISS);
                prop_assert!(c.aud.iter().any(|a| a == AUD));
                prop_assert!(c.exp + 60 > now_s, "expired at {}", c.exp);
                prop_assert!(c.nbf.is_none_or(|nbf| nbf - 60 <= now_s));
            }
            Err(e) => {
                loggable(&e.to_string())?;
                if let JwtError::BadSignature = e {
                    prop_assert!(!t.signed_by_published_key, "a published key's own signature failed");
                }
            }
        }
        Ok(())
    });
}

const JWKS_DICT: &[&str] = &[
    "\"kty\":\"RSA\",",
    "\"kty\":\"EC\",",
    "\"kty\":\"OKP\",",
    "\"kty\":\"oct\",",
    "\"crv\":\"P-384\",",
    "\"use\":\"enc\",",
    "\"alg\":\"HS256\",",
    "\"d\":\"AA\",",
    "\"e\":\"AQAB\",",
    "{\"keys\":[",
    "[[[[[[[[",
    "\"",
    "\\u0000",
    ",",
    "}",
];

/// One member edit of a JWK.
#[derive(Debug, Clone)]
enum Edit {
    Remove(&'static str),
    Set(&'static str, Value),
}

fn jwk_docs(base: Vec<Value>) -> impl Strategy<Value = Vec<u8>> {
    let member = prop::sample::select(vec!["kty", "crv", "x", "y", "n", "e", "use", "alg", "kid", "d", "k", "key_ops"]);
    let junk = prop::sample::select(vec![
        json!("AAAA"),
        json!("AQAB"),
        json!("sig"),
        json!("enc"),
        json!("RS256"),
        json!("P-256"),
        json!("Ed448"),
        json!("!!"),
        json!(""),
        json!(1),
        Value::Null,
        json!(["x"]),
    ]);
    let edit = prop_oneof![member.clone().prop_map(Edit::Remove), (member, junk).prop_map(|(m, v)| Edit::Set(m, v)),];
    let key = (any::<prop::sample::Index>(), prop::collection::vec(edit, 0..3)).prop_map(move |(i, edits)| {
        let mut k = i.get(&base).clone();
        for e in edits {
            match e {
                Edit::Remove(m) => {
                    k.as_object_mut().map(|o| o.remove(m));
                }
                Edit::Set(m, v) => k[m] = v,
            }
        }
        k
    });
    prop::collection::vec(key, 0..5).prop_map(|keys| json!({"keys": keys}).to_string().into_bytes())
}

#[test]
fn fuzz_jwks_parser() {
    let seeds = fedkey_fuzz::corpus("jwks").unwrap();
    let mut base: Vec<Value> = vec![TestKey::ec("k1").jwk, TestKey::ed("k2").jwk];
    for s in &seeds {
        if let Ok(v) = serde_json::from_slice::<Value>(s)
            && let Some(keys) = v["keys"].as_array()
        {
            base.extend(keys.iter().cloned());
        }
    }
    let tight = Limits { max_document_bytes: 2048, max_depth: 6, max_keys: 2 };
    let input = (
        prop_oneof![
            2 => fedkey_fuzz::mutate(jwk_docs(base.clone()), seeds.clone(), JWKS_DICT),
            1 => fedkey_fuzz::mutated_corpus(seeds, JWKS_DICT),
        ],
        any::<bool>(),
    );
    check("jwks", input, |(doc, use_tight)| {
        let limits = if use_tight { tight } else { Limits::default() };
        match parse_jwks(&doc, &limits) {
            Ok(keys) => {
                prop_assert!(doc.len() <= limits.max_document_bytes);
                prop_assert!(!keys.is_empty() && keys.len() <= limits.max_keys, "{} keys", keys.len());
                for (i, k) in keys.iter().enumerate() {
                    prop_assert!(!k.fingerprint.is_empty());
                    prop_assert!(keys[..i].iter().all(|o| o.fingerprint != k.fingerprint), "duplicate key");
                    let jwk = k.jwk.as_ref().and_then(Value::as_object);
                    prop_assert!(jwk.is_some_and(|m| !["d", "p", "q", "k"].iter().any(|p| m.contains_key(*p))));
                }
                // What was kept parses again to the same keys.
                let again: Vec<Value> = keys.iter().filter_map(|k| k.jwk.clone()).collect();
                let reparsed = parse_jwks(json!({"keys": again}).to_string().as_bytes(), &Limits::default());
                prop_assert_eq!(reparsed.as_ref(), Ok(&keys));
            }
            Err(e) => {
                loggable(&e.to_string())?;
                if doc.len() > limits.max_document_bytes {
                    prop_assert!(matches!(e, ParseError::TooLarge { .. }), "{:?}", e);
                }
            }
        }
        Ok(())
    });
}

const SAML_DICT: &[&str] = &[
    "<md:KeyDescriptor use=\"signing\"><ds:KeyInfo><ds:X509Data><ds:X509Certificate>",
    "</ds:X509Certificate></ds:X509Data></ds:KeyInfo></md:KeyDescriptor>",
    "<md:EntityDescriptor xmlns:md=\"urn:oasis:names:tc:SAML:2.0:metadata\" entityID=\"e\" cacheDuration=\"PT1H\">",
    "</md:EntityDescriptor>",
    " validUntil=\"2020-01-01T00:00:00Z\"",
    " validUntil=\"2099-01-01T00:00:00Z\"",
    " cacheDuration=\"P1Y2M3DT4H5M6.5S\"",
    " cacheDuration=\"PT99999999999999999999H\"",
    "<!DOCTYPE x>",
    "<![CDATA[",
    "]]>",
    "&amp;",
    "&#0;",
    "<?xml version=\"1.0\"?>",
    "xmlns:ds=\"http://www.w3.org/2000/09/xmldsig#\"",
    "MIIB",
    "====",
    "</",
    "<",
    ">",
    "\"",
];

#[test]
fn fuzz_saml_metadata_parser() {
    let certs = Arc::new([certificate(), certificate()]);
    let seeds = fedkey_fuzz::corpus("saml").unwrap();
    let validity = prop::sample::select(vec![
        (Some(T0.saturating_add(std::time::Duration::from_secs(86_400))), Some("PT6H")),
        (None, Some("P1D")),
        (Some(T0.saturating_sub(std::time::Duration::from_secs(1))), None),
        (None, None),
    ]);
    let built = {
        let certs = Arc::clone(&certs);
        (0usize..3, validity).prop_map(move |(n, (until, cache))| {
            let signing: Vec<&[u8]> = certs.iter().take(n).map(Vec::as_slice).collect();
            saml_metadata("https://idp.test/metadata", &signing, until, cache).into_bytes()
        })
    };
    let tight = Limits { max_document_bytes: 4096, max_depth: 6, max_keys: 1 };
    let input = (
        prop_oneof![
            2 => fedkey_fuzz::mutate(built, seeds.clone(), SAML_DICT),
            1 => fedkey_fuzz::mutated_corpus(seeds, SAML_DICT),
        ],
        any::<bool>(),
    );
    check("saml", input, |(doc, use_tight)| {
        let limits = if use_tight { tight } else { Limits::default() };
        match parse_saml_metadata(&doc, T0, &limits) {
            Ok(m) => {
                prop_assert!(doc.len() <= limits.max_document_bytes);
                prop_assert!(!doc.windows(9).any(|w| w.eq_ignore_ascii_case(b"<!DOCTYPE")), "accepted a DOCTYPE");
                prop_assert!(m.keys.len() <= limits.max_keys);
                prop_assert!(m.valid_until.is_some() || m.cache_duration.is_some());
                prop_assert!(m.valid_until.is_none_or(|v| v > T0), "expired metadata accepted");
                for k in &m.keys {
                    prop_assert!(k.fingerprint.len() == 64 && k.fingerprint.bytes().all(|b| b.is_ascii_hexdigit()));
                }
            }
            Err(e) => loggable(&e.to_string())?,
        }
        Ok(())
    });
}
