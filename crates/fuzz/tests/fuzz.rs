#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! One integration binary: the fuzz harnesses of the protocol crates (SCIM filter, PATCH,
//! resource JSON, Bulk planning; the token format). See docs/fuzzing.md for how to run
//! them longer.

#[path = "fuzz/bulk.rs"]
mod bulk;
#[path = "fuzz/filter.rs"]
mod filter;
#[path = "fuzz/machinery.rs"]
mod machinery;
#[path = "fuzz/patch.rs"]
mod patch;
#[path = "fuzz/resource.rs"]
mod resource;
#[path = "fuzz/token.rs"]
mod token;

use std::fmt::Debug;

use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

/// Runs a harness within the budget; fails the test with the minimal failing input.
fn check<S>(target: &str, strategy: S, test: impl Fn(S::Value) -> Result<(), TestCaseError>)
where
    S: Strategy,
    S::Value: Debug,
{
    if let Err(e) = fedkey_fuzz::fuzz(target, strategy, test) {
        panic!("{e}");
    }
}

/// The corpus of `target`, mutated, as text (invalid UTF-8 replaced).
fn mutated_text(target: &str, dict: &'static [&'static str]) -> impl Strategy<Value = String> + use<> {
    let seeds = fedkey_fuzz::corpus(target).unwrap();
    fedkey_fuzz::mutated_corpus(seeds, dict).prop_map(|b| String::from_utf8_lossy(&b).into_owned())
}
