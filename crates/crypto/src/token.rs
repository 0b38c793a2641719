//! The key token format, shaped for leak scanners (after GitHub's 2021 token format):
//!
//! ```text
//! fkp_<32 base62 random chars><6 base62 chars of CRC32(random part)>
//! ```
//!
//! `fkp_` marks a provisioning key, `fka_` an admin token. 32 base62 characters carry
//! ~190 bits of randomness; the checksum lets a scanner reject look-alikes offline.
//! Regex for scanners: `\bfk[pa]_[0-9A-Za-z]{38}\b`.
//!
//! Only a [`Verifier`] — SHA-256 of the whole token — is ever stored. High-entropy
//! tokens need no slow KDF; lookups are by verifier through an index and the final
//! comparison is constant-time.

use std::fmt;

use thiserror::Error;

use crate::{Secret, ct_eq, sha256};

pub const RANDOM_LEN: usize = 32;
pub const CHECKSUM_LEN: usize = 6;
pub const TOKEN_LEN: usize = 4 + RANDOM_LEN + CHECKSUM_LEN;
/// Published for secret scanners (docs/keys.md).
pub const SCANNER_REGEX: &str = r"\bfk[pa]_[0-9A-Za-z]{38}\b";

const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    /// An inbound provisioning key presented by an IdP.
    Provisioning,
    /// An admin API token.
    Admin,
}

impl TokenKind {
    pub fn prefix(self) -> &'static str {
        match self {
            TokenKind::Provisioning => "fkp_",
            TokenKind::Admin => "fka_",
        }
    }
}

/// Why a presented string is not a well-formed token. Messages never echo the input.
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
pub enum TokenError {
    #[error("not a fedkey token (unknown prefix)")]
    Prefix,
    #[error("malformed token (expected {TOKEN_LEN} characters)")]
    Length,
    #[error("malformed token (characters outside base62)")]
    Alphabet,
    #[error("malformed token (checksum mismatch)")]
    Checksum,
    #[error("the system random number generator failed")]
    Random,
}

/// SHA-256 of a token: the only form in which tokens are stored.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Verifier(pub [u8; 32]);

impl Verifier {
    pub fn of(token: &str) -> Verifier {
        Verifier(sha256(token.as_bytes()))
    }

    pub fn ct_eq(&self, other: &Verifier) -> bool {
        ct_eq(&self.0, &other.0)
    }
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // A verifier is not secret, but a short form is all a log ever needs.
        write!(f, "Verifier({}…)", hex::encode(&self.0[..4]))
    }
}

/// Generates a new token of `kind`.
pub fn generate(kind: TokenKind) -> Result<Secret, TokenError> {
    let mut out = String::with_capacity(TOKEN_LEN);
    out.push_str(kind.prefix());
    // Rejection sampling keeps every base62 character uniform: bytes >= 248 are redrawn.
    while out.len() < 4 + RANDOM_LEN {
        let buf = crate::random::bytes::<64>().map_err(|_| TokenError::Random)?;
        for &b in buf.iter() {
            if b < 248 && out.len() < 4 + RANDOM_LEN {
                out.push(char::from(BASE62[usize::from(b % 62)]));
            }
        }
    }
    let sum = checksum(&out.as_bytes()[4..]);
    out.push_str(&sum);
    Ok(Secret::new(out))
}

/// Checks the shape of a presented token and returns its kind. Never panics, whatever
/// the input (property-tested).
pub fn parse(s: &str) -> Result<TokenKind, TokenError> {
    let kind = if s.starts_with("fkp_") {
        TokenKind::Provisioning
    } else if s.starts_with("fka_") {
        TokenKind::Admin
    } else {
        return Err(TokenError::Prefix);
    };
    if s.len() != TOKEN_LEN {
        return Err(TokenError::Length);
    }
    let body = &s.as_bytes()[4..];
    if !body.iter().all(u8::is_ascii_alphanumeric) {
        return Err(TokenError::Alphabet);
    }
    let (random, sum) = body.split_at(RANDOM_LEN);
    if !ct_eq(checksum(random).as_bytes(), sum) {
        return Err(TokenError::Checksum);
    }
    Ok(kind)
}

fn checksum(random: &[u8]) -> String {
    let mut n = crc32fast::hash(random);
    let mut digits = [b'0'; CHECKSUM_LEN];
    for d in digits.iter_mut().rev() {
        *d = BASE62[(n % 62) as usize];
        n /= 62;
    }
    // 62^6 > 2^32, so every CRC32 fits; the digits are ASCII.
    digits.iter().map(|&b| char::from(b)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn generated_tokens_parse_and_differ() {
        let a = generate(TokenKind::Provisioning).unwrap();
        let b = generate(TokenKind::Provisioning).unwrap();
        assert_ne!(a.expose(), b.expose());
        assert_eq!(a.expose().len(), TOKEN_LEN);
        assert_eq!(parse(a.expose()), Ok(TokenKind::Provisioning));
        let admin = generate(TokenKind::Admin).unwrap();
        assert_eq!(parse(admin.expose()), Ok(TokenKind::Admin));
        assert!(admin.expose().starts_with("fka_"));
    }

    #[test]
    fn a_flipped_character_fails_the_checksum() {
        let t = generate(TokenKind::Provisioning).unwrap();
        let mut s = t.expose().to_owned().into_bytes();
        s[10] = if s[10] == b'a' { b'b' } else { b'a' };
        let s = String::from_utf8(s).unwrap();
        assert_eq!(parse(&s), Err(TokenError::Checksum));
        assert_eq!(parse("fkp_short"), Err(TokenError::Length));
        assert_eq!(parse("ghp_abc"), Err(TokenError::Prefix));
        assert_eq!(parse(&format!("fkp_{}", "!".repeat(38))), Err(TokenError::Alphabet));
    }

    #[test]
    fn verifier_is_sha256_and_compares() {
        let a = Verifier::of("x");
        assert!(a.ct_eq(&Verifier::of("x")));
        assert!(!a.ct_eq(&Verifier::of("y")));
        assert!(!format!("{a:?}").contains(&hex::encode(a.0)));
    }

    proptest! {
        #[test]
        fn parse_never_panics_on_random_bytes(bytes in prop::collection::vec(any::<u8>(), 0..128)) {
            let s = String::from_utf8_lossy(&bytes);
            let _ = parse(&s);
        }

        #[test]
        fn parse_never_panics_on_prefixed_input(tail in "\\PC{0,60}") {
            let _ = parse(&format!("fkp_{tail}"));
            let _ = parse(&format!("fka_{tail}"));
        }
    }
}
