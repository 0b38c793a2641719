//! Verification of ECDSA P-256 / SHA-256 signatures made by others, such as the signed
//! alerts of GitHub's secret-scanning partner program. Public keys come as PEM
//! `SubjectPublicKeyInfo` ("BEGIN PUBLIC KEY"), signatures as DER (ASN.1), base64-encoded.

use aws_lc_rs::signature::{ECDSA_P256_SHA256_ASN1, ParsedPublicKey};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use thiserror::Error;

#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
pub enum EcdsaKeyError {
    #[error("not a PEM public key (expected -----BEGIN PUBLIC KEY-----)")]
    NotPem,
    #[error("the PEM body is not base64")]
    Base64,
    #[error("not an ECDSA P-256 public key")]
    NotP256,
}

/// A P-256 public key, checked when it is loaded so a bad key fails at start, not per request.
#[derive(Clone)]
pub struct P256PublicKey {
    spki: Vec<u8>,
    parsed: ParsedPublicKey,
}

impl P256PublicKey {
    /// Parses a PEM `SubjectPublicKeyInfo`.
    pub fn from_pem(pem: &str) -> Result<P256PublicKey, EcdsaKeyError> {
        let body = pem
            .trim()
            .strip_prefix("-----BEGIN PUBLIC KEY-----")
            .and_then(|s| s.strip_suffix("-----END PUBLIC KEY-----"))
            .ok_or(EcdsaKeyError::NotPem)?;
        let b64: String = body.chars().filter(|c| !c.is_whitespace()).collect();
        let spki = B64.decode(b64).map_err(|_| EcdsaKeyError::Base64)?;
        let parsed = ParsedPublicKey::new(&ECDSA_P256_SHA256_ASN1, &spki).map_err(|_| EcdsaKeyError::NotP256)?;
        Ok(P256PublicKey { spki, parsed })
    }

    /// Whether `signature` (DER) is this key's signature of `message`.
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        self.parsed.verify_sig(message, signature).is_ok()
    }

    /// Whether `signature_b64` (base64 of DER) is this key's signature of `message`.
    pub fn verify_b64(&self, message: &[u8], signature_b64: &str) -> bool {
        match B64.decode(signature_b64.trim()) {
            Ok(sig) => self.verify(message, &sig),
            Err(_) => false,
        }
    }
}

impl std::fmt::Debug for P256PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "P256PublicKey({}…)", hex::encode(&crate::sha256(&self.spki)[..4]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lc_rs::encoding::AsDer;
    use aws_lc_rs::rand::SystemRandom;
    use aws_lc_rs::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair, KeyPair};

    fn pem_of(spki: &[u8]) -> String {
        format!("-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n", B64.encode(spki))
    }

    #[test]
    fn verifies_a_signature_and_refuses_a_tampered_one() {
        let rng = SystemRandom::new();
        let pair = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_ASN1_SIGNING).unwrap();
        let spki = pair.public_key().as_der().unwrap();
        let key = P256PublicKey::from_pem(&pem_of(spki.as_ref())).unwrap();
        let body = br#"[{"token":"x","type":"fedkey_provisioning_key","url":"u","source":"content"}]"#;
        let sig = pair.sign(&rng, body).unwrap();
        assert!(key.verify(body, sig.as_ref()));
        assert!(key.verify_b64(body, &B64.encode(sig.as_ref())));
        assert!(!key.verify(b"[]", sig.as_ref()), "another body");
        let mut bad = sig.as_ref().to_vec();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert!(!key.verify(body, &bad), "a flipped bit");
        assert!(!key.verify_b64(body, "not base64!"));
    }

    #[test]
    fn bad_keys_are_refused_at_load() {
        assert_eq!(P256PublicKey::from_pem("hello").unwrap_err(), EcdsaKeyError::NotPem);
        assert_eq!(
            P256PublicKey::from_pem("-----BEGIN PUBLIC KEY-----\n!!\n-----END PUBLIC KEY-----").unwrap_err(),
            EcdsaKeyError::Base64
        );
        assert_eq!(
            P256PublicKey::from_pem("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----").unwrap_err(),
            EcdsaKeyError::NotP256
        );
    }
}
