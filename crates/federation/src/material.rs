//! One fetched, validated version of a peer's trust material.

use std::collections::BTreeSet;

use fedkey_core::clock::Timestamp;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MaterialKind {
    Jwks,
    SamlMetadata,
}

/// A public signing key of the peer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SigningKey {
    pub kid: Option<String>,
    pub alg: Option<String>,
    /// JWKs: RFC 7638 thumbprint (SHA-256, base64url without padding).
    /// SAML certificates: SHA-256 of the certificate DER, lowercase hex.
    pub fingerprint: String,
    /// The JWK's public members only; `None` for keys that came from SAML metadata.
    pub jwk: Option<serde_json::Value>,
}

/// A validated version of a peer's published keys. Serialisable so the store can keep versions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Material {
    pub kind: MaterialKind,
    pub keys: Vec<SigningKey>,
    /// SHA-256 of the raw key document (the JWKS or the SAML metadata), lowercase hex.
    pub digest: String,
    pub fetched_at: Timestamp,
    /// When the watcher should fetch again.
    pub refresh_at: Timestamp,
    /// Hard expiry: past it no key of this version is valid, even if every fetch fails.
    pub expires_at: Timestamp,
    /// The OIDC issuer or the SAML entityID.
    pub issuer: Option<String>,
}

impl Material {
    pub fn is_expired(&self, now: Timestamp) -> bool {
        now >= self.expires_at
    }

    pub fn fingerprints(&self) -> BTreeSet<&str> {
        self.keys.iter().map(|k| k.fingerprint.as_str()).collect()
    }

    /// True when both versions share at least one signing key.
    pub fn shares_key_with(&self, other: &Material) -> bool {
        let mine = self.fingerprints();
        other.keys.iter().any(|k| mine.contains(k.fingerprint.as_str()))
    }

    pub fn key_by_kid(&self, kid: &str) -> Option<&SigningKey> {
        self.keys.iter().find(|k| k.kid.as_deref() == Some(kid))
    }
}

/// SHA-256 of a document, lowercase hex.
pub(crate) fn digest_hex(bytes: &[u8]) -> String {
    hex::encode(fedkey_crypto::sha256(bytes))
}
