//! Security Event Tokens (RFC 8417) as fedkey issues them: one event per SET, signed with
//! the install's Ed25519 key (the one that signs OAuth access tokens, published at
//! `/oauth/{directory}/jwks`), header `typ: secevent+jwt`.

use fedkey_crypto::signing::SigningKey;
use fedkey_store::ops::{EventStream, QueuedEvent, StreamKind};
use serde_json::{Value, json};

use crate::oauth::jws;

/// The JWS `typ` of a SET (RFC 8417 §2.3).
pub const SET_TYPE: &str = "secevent+jwt";

/// The `iss` of a directory's SETs: its SCIM base URL for RFC 9967 streams, its SSF
/// transmitter URL for SSF streams.
pub fn issuer(public_url: &str, kind: StreamKind, directory: &str) -> String {
    let base = public_url.trim_end_matches('/');
    match kind {
        StreamKind::Scim => format!("{base}/scim/v2/{directory}"),
        StreamKind::Ssf => format!("{base}/ssf/{directory}"),
    }
}

/// Where receivers find the keys that verify a directory's SETs.
pub fn jwks_uri(public_url: &str, directory: &str) -> String {
    format!("{}/oauth/{directory}/jwks", public_url.trim_end_matches('/'))
}

/// The claims of the SET for `e` on stream `s`: `iss`, `iat` (the event time), `jti`,
/// `aud`, `txn` when the change had one, the subject as `sub_id` (RFC 9493), and exactly
/// one event.
pub fn claims(public_url: &str, s: &EventStream, e: &QueuedEvent) -> Value {
    let mut c = json!({
        "iss": issuer(public_url, s.kind, &s.directory),
        "iat": e.created_at.0.div_euclid(1_000_000),
        "jti": e.jti,
        "aud": s.audience,
        "sub_id": e.subject,
        "events": {e.event_type.clone(): e.payload},
    });
    if let Some(t) = &e.txn {
        c["txn"] = json!(t);
    }
    c
}

/// The compact JWS of `claims`.
pub fn sign(key: &SigningKey, claims: &Value) -> String {
    jws::sign(key, SET_TYPE, claims)
}

#[cfg(test)]
mod tests {
    use super::*;
    use fedkey_core::Timestamp;
    use fedkey_store::ops::{Delivery, StreamStatus};

    fn stream(kind: StreamKind) -> EventStream {
        EventStream {
            id: "s1".into(),
            directory_id: "d".into(),
            directory: "acme".into(),
            kind,
            receiver_trust_id: None,
            delivery: Delivery::Push,
            endpoint_url: Some("https://rx.example/events".into()),
            allow_http: false,
            has_authorization: false,
            has_poll_secret: false,
            audience: json!(["https://rx.example"]),
            events_requested: vec![],
            status: StreamStatus::Enabled,
            status_reason: None,
            description: None,
            consecutive_failures: 0,
            last_error: None,
            last_delivered_at: None,
            pending: 0,
            created_at: Timestamp(0),
            updated_at: Timestamp(0),
            updated_by: "t".into(),
        }
    }

    fn queued() -> QueuedEvent {
        QueuedEvent {
            seq: 1,
            stream_id: "s1".into(),
            jti: "j1".into(),
            event_type: "urn:ietf:params:scim:event:prov:delete".into(),
            subject: json!({"format": "scim", "uri": "/Users/u1"}),
            payload: json!({}),
            txn: Some("d:7".into()),
            created_at: Timestamp(1_700_000_000_900_000),
            attempts: 0,
            last_error: None,
        }
    }

    #[test]
    fn claims_follow_rfc_8417_with_one_event() {
        let c = claims("https://fk.example/", &stream(StreamKind::Scim), &queued());
        assert_eq!(
            c,
            json!({
                "iss": "https://fk.example/scim/v2/acme", "iat": 1_700_000_000, "jti": "j1",
                "aud": ["https://rx.example"], "txn": "d:7",
                "sub_id": {"format": "scim", "uri": "/Users/u1"},
                "events": {"urn:ietf:params:scim:event:prov:delete": {}},
            })
        );
        let mut e = queued();
        e.txn = None;
        let c = claims("https://fk.example", &stream(StreamKind::Ssf), &e);
        assert_eq!(c["iss"], "https://fk.example/ssf/acme");
        assert!(c.get("txn").is_none());
        assert_eq!(jwks_uri("https://fk.example/", "acme"), "https://fk.example/oauth/acme/jwks");
    }

    #[test]
    fn sets_verify_against_the_published_key_with_their_type() {
        use base64::Engine;
        use base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let (key, _) = SigningKey::generate().unwrap();
        let c = claims("https://fk.example", &stream(StreamKind::Scim), &queued());
        let token = sign(&key, &c);
        let parts: Vec<&str> = token.split('.').collect();
        let header: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).unwrap()).unwrap();
        assert_eq!(header, json!({"alg": "EdDSA", "typ": SET_TYPE, "kid": jws::public_jwk(&key)["kid"]}));
        let payload: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
        assert_eq!(payload, c);
        // The signature verifies with the JWK's public key (`x`), and only with it.
        let x = URL_SAFE_NO_PAD.decode(jws::public_jwk(&key)["x"].as_str().unwrap()).unwrap();
        let input = format!("{}.{}", parts[0], parts[1]);
        let sig = URL_SAFE_NO_PAD.decode(parts[2]).unwrap();
        assert!(fedkey_crypto::signing::verify(&x, input.as_bytes(), &sig));
        let (other, _) = SigningKey::generate().unwrap();
        assert!(!fedkey_crypto::signing::verify(&other.public_key(), input.as_bytes(), &sig));
    }
}
