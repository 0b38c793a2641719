//! The token format (fedkey-crypto): shapes near a real token and mutated seeds. Only a
//! string of the published scanner shape is accepted, errors never echo the input, and
//! any single-character change to the random part or checksum of a valid token is
//! rejected.

use fedkey_crypto::token::{TOKEN_LEN, TokenKind, generate, parse};
use proptest::prelude::*;

use super::{check, mutated_text};

const DICT: &[&str] = &["fkp_", "fka_", "fk", "_", "0", "Z", "z", "é", " ", "\n", "-", "+"];

/// The scanner regex `\bfk[pa]_[0-9A-Za-z]{38}\b`, for a whole string.
fn scanner_shape(s: &str) -> bool {
    (s.starts_with("fkp_") || s.starts_with("fka_"))
        && s.len() == TOKEN_LEN
        && s.bytes().skip(4).all(|b| b.is_ascii_alphanumeric())
}

fn input() -> impl Strategy<Value = String> {
    let valid = prop_oneof![Just(TokenKind::Provisioning), Just(TokenKind::Admin)]
        .prop_map(|k| generate(k).unwrap().expose().to_owned().into_bytes());
    let seeds = fedkey_fuzz::corpus("token").unwrap();
    prop_oneof![
        fedkey_fuzz::mutate(valid, seeds, DICT).prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
        mutated_text("token", DICT),
        "fk[pa]_[0-9A-Za-z]{36,40}",
    ]
}

#[test]
fn fuzz_token_parser() {
    check("token", input(), |s| {
        match parse(&s) {
            Ok(kind) => {
                prop_assert!(scanner_shape(&s), "accepted {:?}", s);
                prop_assert!(s.starts_with(kind.prefix()));
            }
            Err(e) => {
                let msg = e.to_string();
                prop_assert!(s.len() < 4 || !msg.contains(s.as_str()), "{} echoes the input", msg);
            }
        }
        Ok(())
    });
}

#[test]
fn fuzz_token_single_changes_are_rejected() {
    let input = (any::<bool>(), 4..TOKEN_LEN, "[0-9A-Za-z]");
    check("token-checksum", input, |(admin, at, c)| {
        let kind = if admin { TokenKind::Admin } else { TokenKind::Provisioning };
        let token = generate(kind).unwrap().expose().to_owned();
        prop_assert_eq!(parse(&token), Ok(kind));
        let mut changed = token.clone();
        changed.replace_range(at..=at, &c);
        prop_assert_eq!(parse(&changed).is_ok(), changed == token, "{}", changed);
        Ok(())
    });
}
