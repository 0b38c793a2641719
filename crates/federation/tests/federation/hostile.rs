//! Every parser and the JWT verifier return errors, never panic, on random bytes and on random
//! mutations of valid documents.

use fedkey_core::clock::Timestamp;
use fedkey_federation::{JwtPolicy, Limits, parse_jwks, parse_oidc_discovery, parse_saml_metadata, verify};
use proptest::prelude::*;

use crate::idp::T0;
use crate::keys::{TestKey, certificate, claims, jwks, saml_metadata};

fn limits() -> Limits {
    Limits { max_document_bytes: 64 * 1024, max_depth: 32, max_keys: 10 }
}

fn feed_all(bytes: &[u8]) {
    let _ = parse_jwks(bytes, &limits());
    let _ = parse_oidc_discovery(bytes, &limits());
    let _ = parse_saml_metadata(bytes, T0, &limits());
    if let Ok(s) = std::str::from_utf8(bytes) {
        let _ = verify(s, &JwtPolicy::new("i", vec!["a".into()]), &[], Timestamp(0));
    }
}

#[derive(Debug, Clone)]
enum Edit {
    Set(usize, u8),
    Insert(usize, Vec<u8>),
    Delete(usize, usize),
}

fn edits() -> impl Strategy<Value = Vec<Edit>> {
    let interesting = prop::sample::select(vec![
        b"<".to_vec(),
        b">".to_vec(),
        b"\"".to_vec(),
        b"{".to_vec(),
        b"[".to_vec(),
        b"&".to_vec(),
        b"&#13;".to_vec(),
        b"<!DOCTYPE x>".to_vec(),
        b"<![CDATA[".to_vec(),
        b"\\u0000".to_vec(),
        vec![0xff, 0xfe],
        b"=".to_vec(),
    ]);
    prop::collection::vec(
        prop_oneof![
            (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Edit::Set(i, b)),
            (any::<usize>(), prop_oneof![interesting, prop::collection::vec(any::<u8>(), 1..8)])
                .prop_map(|(i, v)| Edit::Insert(i, v)),
            (any::<usize>(), 1usize..64).prop_map(|(i, n)| Edit::Delete(i, n)),
        ],
        1..8,
    )
}

fn apply(doc: &[u8], edits: &[Edit]) -> Vec<u8> {
    let mut out = doc.to_vec();
    for e in edits {
        let len = out.len().max(1);
        match e {
            Edit::Set(i, b) => {
                if !out.is_empty() {
                    out[i % len] = *b;
                }
            }
            Edit::Insert(i, v) => {
                let at = i % (out.len() + 1);
                out.splice(at..at, v.iter().copied());
            }
            Edit::Delete(i, n) => {
                if !out.is_empty() {
                    let at = i % len;
                    let end = (at + n).min(out.len());
                    out.drain(at..end);
                }
            }
        }
    }
    out
}

struct Samples {
    jwks: Vec<u8>,
    discovery: Vec<u8>,
    saml: Vec<u8>,
    token: Vec<u8>,
}

fn samples() -> &'static Samples {
    static SAMPLES: std::sync::OnceLock<Samples> = std::sync::OnceLock::new();
    SAMPLES.get_or_init(|| {
        let (a, b) = (TestKey::ec("a"), TestKey::ed("b"));
        Samples {
            jwks: jwks(&[&a, &b]).into_bytes(),
            discovery: br#"{"issuer":"https://idp.test","jwks_uri":"https://idp.test/jwks"}"#.to_vec(),
            saml: saml_metadata("https://idp.test/saml", &[&certificate()], None, Some("PT1H")).into_bytes(),
            token: a.sign(&claims("i", "a", T0)).into_bytes(),
        }
    })
}

#[test]
fn samples_are_valid_before_mutation() {
    let s = samples();
    assert_eq!(parse_jwks(&s.jwks, &limits()).unwrap().len(), 2);
    assert!(parse_oidc_discovery(&s.discovery, &limits()).is_ok());
    assert_eq!(parse_saml_metadata(&s.saml, T0, &limits()).unwrap().keys.len(), 1);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
        feed_all(&bytes);
    }

    #[test]
    fn mutated_valid_documents_never_panic(edits in edits()) {
        let s = samples();
        for doc in [&s.jwks, &s.discovery, &s.saml, &s.token] {
            feed_all(&apply(doc, &edits));
        }
    }
}
