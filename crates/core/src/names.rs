//! Names of directories, trusts and admin tokens. They appear in URLs (`/scim/v2/{dir}`)
//! and in `DIRECTORY/TRUST` references, so the alphabet is deliberately narrow.

use crate::DomainError;

pub const MAX_NAME_LEN: usize = 63;

/// `^[a-z0-9][a-z0-9._-]{0,62}$`
pub fn validate(name: &str) -> Result<(), DomainError> {
    let bad = |reason| Err(DomainError::InvalidName { name: truncate(name), reason });
    if name.is_empty() {
        return bad("must not be empty");
    }
    if name.len() > MAX_NAME_LEN {
        return bad("must be at most 63 characters");
    }
    let first = name.as_bytes()[0];
    if !(first.is_ascii_lowercase() || first.is_ascii_digit()) {
        return bad("must start with a lowercase letter or a digit");
    }
    if !name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-')) {
        return bad("may contain only a-z, 0-9, '.', '_' and '-'");
    }
    Ok(())
}

/// Echoed names are cut short so a hostile megabyte name does not come back in full.
fn truncate(name: &str) -> String {
    name.chars().take(80).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_reasonable_names() {
        for n in ["acme", "a", "entra-prod", "okta_2", "x.y", "0abc"] {
            assert!(validate(n).is_ok(), "{n}");
        }
    }

    #[test]
    fn rejects_illegal_names() {
        for n in ["", "Acme", "-x", "a/b", "a b", "ä", "a%2f", &"a".repeat(64), "../etc"] {
            assert!(validate(n).is_err(), "{n:?}");
        }
    }
}
