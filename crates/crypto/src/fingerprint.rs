//! HMAC-SHA256 fingerprints of secret-bearing values for the audit log: an admin who
//! holds a candidate value can check whether it appears, but the log never leaks it.

use aws_lc_rs::hmac;

/// `hmac-sha256:<hex>` of `value` under the per-install `salt`.
pub fn fingerprint(salt: &[u8], value: &[u8]) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, salt);
    format!("hmac-sha256:{}", hex::encode(hmac::sign(&key, value).as_ref()))
}

/// HMAC-SHA256 tag, for webhook signatures and the like.
pub fn hmac_sha256(key: &[u8], msg: &[u8]) -> [u8; 32] {
    let k = hmac::Key::new(hmac::HMAC_SHA256, key);
    let mut out = [0u8; 32];
    out.copy_from_slice(hmac::sign(&k, msg).as_ref());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_depends_on_salt_and_value() {
        let a = fingerprint(b"salt1", b"token");
        assert!(a.starts_with("hmac-sha256:"));
        assert_eq!(a, fingerprint(b"salt1", b"token"));
        assert_ne!(a, fingerprint(b"salt2", b"token"));
        assert_ne!(a, fingerprint(b"salt1", b"token2"));
        assert!(!a.contains("token"));
    }
}
