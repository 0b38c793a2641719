//! The harness machinery itself: every target has seeds, and mutations do what they say.

use fedkey_fuzz::{Mutation, apply, corpus};

/// Every fuzz target of the workspace, including those whose harnesses live in the
/// federation test binary and the CLI's unit tests.
const TARGETS: [&str; 10] = ["bulk", "config", "filter", "import", "jwks", "jwt", "patch", "resource", "saml", "token"];

#[test]
fn fuzz_every_target_has_a_seed_corpus() {
    for t in TARGETS {
        let seeds = corpus(t).unwrap();
        assert!(seeds.iter().all(|s| !s.is_empty()), "{t} has an empty seed file");
    }
    assert!(corpus("no-such-target").is_err());
}

#[test]
fn fuzz_mutations_edit_within_the_input() {
    let (first, last) = (0, 3);
    let seeds = vec![b"XYZ".to_vec()];
    let dict = ["<tok>"];
    let cases: [(Mutation, &[u8]); 6] = [
        (Mutation::Flip(first, 0), b"`bc"),
        (Mutation::Token(last, 0), b"abc<tok>"),
        (Mutation::Delete(first, 2), b"c"),
        (Mutation::Duplicate(first, 2), b"ababc"),
        (Mutation::Splice { seed: 0, from: 0, at: first, len: 2 }, b"XYabc"),
        (Mutation::Byte(first, 0), b"\"abc"),
    ];
    for (m, want) in cases {
        assert_eq!(apply(b"abc", std::slice::from_ref(&m), &seeds, &dict), want, "{m:?}");
    }
    // Nothing to edit: no panic, only insertions apply.
    assert_eq!(
        apply(b"", &[Mutation::Delete(last, 9), Mutation::Flip(last, 7), Mutation::Duplicate(0, 3)], &seeds, &dict),
        b""
    );
}
