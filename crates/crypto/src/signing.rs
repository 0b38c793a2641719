//! Ed25519 signing of audit checkpoints.

use aws_lc_rs::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};
use zeroize::Zeroizing;

#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum SigningError {
    #[error("could not generate a signing key")]
    Generate,
    #[error("malformed signing key")]
    Malformed,
}

pub struct SigningKey(Ed25519KeyPair);

impl SigningKey {
    /// A new key and its PKCS#8 document (to be envelope-encrypted by the caller).
    pub fn generate() -> Result<(SigningKey, Zeroizing<Vec<u8>>), SigningError> {
        let doc = Ed25519KeyPair::generate_pkcs8(&aws_lc_rs::rand::SystemRandom::new())
            .map_err(|_| SigningError::Generate)?;
        let pkcs8 = Zeroizing::new(doc.as_ref().to_vec());
        Ok((SigningKey::from_pkcs8(&pkcs8)?, pkcs8))
    }

    pub fn from_pkcs8(pkcs8: &[u8]) -> Result<SigningKey, SigningError> {
        Ed25519KeyPair::from_pkcs8(pkcs8).map(SigningKey).map_err(|_| SigningError::Malformed)
    }

    pub fn public_key(&self) -> [u8; 32] {
        let mut out = [0u8; 32];
        out.copy_from_slice(self.0.public_key().as_ref());
        out
    }

    pub fn sign(&self, msg: &[u8]) -> [u8; 64] {
        let mut out = [0u8; 64];
        out.copy_from_slice(self.0.sign(msg).as_ref());
        out
    }
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SigningKey(public={})", hex::encode(self.public_key()))
    }
}

pub fn verify(public_key: &[u8], msg: &[u8], signature: &[u8]) -> bool {
    UnparsedPublicKey::new(&ED25519, public_key).verify(msg, signature).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_and_verify() {
        let (k, pkcs8) = SigningKey::generate().unwrap();
        let sig = k.sign(b"checkpoint");
        assert!(verify(&k.public_key(), b"checkpoint", &sig));
        assert!(!verify(&k.public_key(), b"checkpoinT", &sig));
        let again = SigningKey::from_pkcs8(&pkcs8).unwrap();
        assert_eq!(again.public_key(), k.public_key());
        assert!(SigningKey::from_pkcs8(b"junk").is_err());
    }
}
