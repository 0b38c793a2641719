//! fedkey's cryptography, all on aws-lc-rs: the key token format and its verifier hash,
//! envelope encryption under a rotatable master key, audit signing and HMAC
//! fingerprints. Secret types here never implement `Display` and redact `Debug`.

pub mod ecdsa;
pub mod envelope;
pub mod fingerprint;
pub mod random;
pub mod secret;
pub mod signing;
pub mod token;

pub use envelope::{EnvelopeError, Keyring, MasterKey};
pub use secret::Secret;
pub use token::{TokenError, TokenKind, Verifier};

/// SHA-256 of `data`.
pub fn sha256(data: &[u8]) -> [u8; 32] {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, data);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// SHA-256 of the concatenation of `parts`, without copying them into one buffer.
pub fn sha256_parts(parts: &[&[u8]]) -> [u8; 32] {
    let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    for p in parts {
        ctx.update(p);
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

/// Constant-time equality of two byte strings.
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    a.len() == b.len() && bool::from(a.ct_eq(b))
}
