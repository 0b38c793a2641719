//! Fuzzing on the stable toolchain: proptest drives each harness with inputs from two
//! sources, generators biased toward the target's grammar and mutations (byte flips,
//! insertions of grammar tokens, deletions, duplications, splices) of a committed seed
//! corpus under `fuzz/corpus/<target>/`. A panic, a failed property or a case over the
//! time limit fails the harness, and proptest shrinks the input first.
//!
//! Budget (docs/fuzzing.md): [`DEFAULT_CASES`] cases per target, or `PROPTEST_CASES`;
//! with `FEDKEY_FUZZ_SECONDS=N`, batches of that many cases, freshly seeded, for N seconds
//! per target. `FEDKEY_FUZZ_CASE_MS` overrides [`DEFAULT_CASE_LIMIT`].

use std::fmt::Debug;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestError, TestRunner};

/// Cases per target when neither `FEDKEY_FUZZ_SECONDS` nor `PROPTEST_CASES` is set.
pub const DEFAULT_CASES: u32 = 256;
/// Longest one case may take before it counts as unbounded work. Generous: a case takes
/// microseconds to milliseconds, and the limit is there to catch blow-ups.
pub const DEFAULT_CASE_LIMIT: Duration = Duration::from_secs(2);

/// Bytes a mutation likes to put in: delimiters and escapes of JSON, XML, CSV, TOML and
/// the SCIM filter language, and bytes that break UTF-8.
const INTERESTING: &[u8] = b"\"\\{}[]()<>&;=,:.'\n\r\t \0\xff\xc3\x80";

/// How long and how much to fuzz, from the environment.
#[derive(Debug, Clone, Copy)]
pub struct Budget {
    /// Cases per batch.
    pub cases: u32,
    /// Keep running batches until this much time has passed (one batch otherwise).
    pub duration: Option<Duration>,
    /// Longest one case may take.
    pub case_limit: Duration,
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok())
}

impl Budget {
    pub fn from_env() -> Budget {
        let cases = if std::env::var_os("PROPTEST_CASES").is_some() { Config::default().cases } else { DEFAULT_CASES };
        Budget {
            cases,
            duration: env_u64("FEDKEY_FUZZ_SECONDS").map(Duration::from_secs),
            case_limit: env_u64("FEDKEY_FUZZ_CASE_MS").map_or(DEFAULT_CASE_LIMIT, Duration::from_millis),
        }
    }
}

/// The corpus directory of `target`.
pub fn corpus_dir(target: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus").join(target)
}

/// The seed files of `target`, in name order; an error if there are none.
pub fn corpus(target: &str) -> Result<Vec<Vec<u8>>, String> {
    let dir = corpus_dir(target);
    let entries = std::fs::read_dir(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.is_file()).collect();
    paths.sort();
    let seeds = paths
        .iter()
        .map(|p| std::fs::read(p).map_err(|e| format!("{}: {e}", p.display())))
        .collect::<Result<Vec<_>, _>>()?;
    if seeds.is_empty() {
        return Err(format!("{}: no seed files", dir.display()));
    }
    Ok(seeds)
}

/// One edit of a byte string. Positions and choices are raw numbers taken modulo the
/// length they index, so they fit any input and shrink toward the start.
#[derive(Debug, Clone)]
pub enum Mutation {
    /// Flip one bit of the byte at a position.
    Flip(usize, u8),
    /// Insert an interesting byte at a position.
    Byte(usize, usize),
    /// Insert a grammar token of the target's dictionary at a position.
    Token(usize, usize),
    /// Delete up to this many bytes from a position.
    Delete(usize, u8),
    /// Repeat a run of up to this many bytes in place.
    Duplicate(usize, u8),
    /// Insert, at a position, a run of up to this many bytes of a seed, from an offset.
    Splice { seed: usize, from: usize, at: usize, len: u8 },
}

pub fn mutation() -> impl Strategy<Value = Mutation> {
    let n = any::<usize>;
    prop_oneof![
        1 => (n(), 0u8..8).prop_map(|(at, bit)| Mutation::Flip(at, bit)),
        1 => (n(), n()).prop_map(|(at, b)| Mutation::Byte(at, b)),
        3 => (n(), n()).prop_map(|(at, t)| Mutation::Token(at, t)),
        1 => (n(), 1u8..32).prop_map(|(at, len)| Mutation::Delete(at, len)),
        1 => (n(), 1u8..64).prop_map(|(at, len)| Mutation::Duplicate(at, len)),
        1 => (n(), n(), n(), 1u8..64).prop_map(|(seed, from, at, len)| Mutation::Splice { seed, from, at, len }),
    ]
}

/// `items[i mod len]`; `None` when empty.
fn pick<T>(items: &[T], i: usize) -> Option<&T> {
    items.get(i.checked_rem(items.len())?)
}

/// The run of up to `len` bytes of `bytes` from `i mod bytes.len()`, as a range.
fn run_at(bytes: &[u8], i: usize, len: u8) -> Option<std::ops::Range<usize>> {
    let start = i.checked_rem(bytes.len())?;
    Some(start..(start + usize::from(len)).min(bytes.len()))
}

/// Applies `mutations` to `input`; `seeds` feed splices and `dict` token insertions.
pub fn apply(input: &[u8], mutations: &[Mutation], seeds: &[Vec<u8>], dict: &[&str]) -> Vec<u8> {
    let mut out = input.to_vec();
    for m in mutations {
        // An insertion point: 0 ..= len.
        let at = |i: usize, out: &Vec<u8>| i % (out.len() + 1);
        match *m {
            Mutation::Flip(i, bit) => {
                if let Some(p) = i.checked_rem(out.len())
                    && let Some(b) = out.get_mut(p)
                {
                    *b ^= 1 << (bit % 8);
                }
            }
            Mutation::Byte(i, b) => {
                if let Some(&byte) = pick(INTERESTING, b) {
                    let p = at(i, &out);
                    out.insert(p, byte);
                }
            }
            Mutation::Token(i, t) => {
                if let Some(tok) = pick(dict, t) {
                    let p = at(i, &out);
                    out.splice(p..p, tok.bytes());
                }
            }
            Mutation::Delete(i, len) => {
                if let Some(r) = run_at(&out, i, len) {
                    out.drain(r);
                }
            }
            Mutation::Duplicate(i, len) => {
                if let Some(r) = run_at(&out, i, len) {
                    let end = r.end;
                    let copy: Vec<u8> = out.get(r).map(<[u8]>::to_vec).unwrap_or_default();
                    out.splice(end..end, copy);
                }
            }
            Mutation::Splice { seed, from, at: i, len } => {
                if let Some(other) = pick(seeds, seed)
                    && let Some(r) = run_at(other, from, len)
                {
                    let p = at(i, &out);
                    out.splice(p..p, other.get(r).unwrap_or_default().iter().copied());
                }
            }
        }
    }
    out
}

/// Inputs of `inputs`, each changed by up to eight mutations (none, sometimes).
pub fn mutate<S>(inputs: S, seeds: Vec<Vec<u8>>, dict: &'static [&'static str]) -> impl Strategy<Value = Vec<u8>>
where
    S: Strategy<Value = Vec<u8>>,
{
    let seeds = Arc::new(seeds);
    (inputs, prop::collection::vec(mutation(), 0..=8)).prop_map(move |(input, ms)| apply(&input, &ms, &seeds, dict))
}

/// The corpus seeds, each changed by up to eight mutations.
pub fn mutated_corpus(seeds: Vec<Vec<u8>>, dict: &'static [&'static str]) -> impl Strategy<Value = Vec<u8>> {
    let all = seeds.clone();
    let inputs = any::<usize>().prop_map(move |i| pick(&all, i).cloned().unwrap_or_default());
    mutate(inputs, seeds, dict)
}

/// Up to `max` tokens of `dict` glued together: grammar-shaped soup.
pub fn tokens(dict: &'static [&'static str], max: usize) -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(dict), 0..=max).prop_map(|ts| ts.concat())
}

/// Runs `test` on inputs drawn from `strategy` within the [`Budget`]. `Ok` carries the
/// number of cases run; `Err` the reason and the minimal failing input proptest found.
pub fn fuzz<S>(target: &str, strategy: S, test: impl Fn(S::Value) -> Result<(), TestCaseError>) -> Result<u64, String>
where
    S: Strategy,
    S::Value: Debug,
{
    let budget = Budget::from_env();
    let started = Instant::now();
    let mut total = 0u64;
    loop {
        let config = Config { cases: budget.cases, failure_persistence: None, ..Config::default() };
        let mut runner = TestRunner::new(config);
        let limit = budget.case_limit;
        let result = runner.run(&strategy, |input| {
            let t = Instant::now();
            test(input)?;
            let took = t.elapsed();
            if took > limit {
                return Err(TestCaseError::fail(format!("one case took {took:?}, over the {limit:?} limit")));
            }
            Ok(())
        });
        total += u64::from(budget.cases);
        match result {
            Ok(()) => {}
            Err(TestError::Fail(reason, input)) => {
                return Err(format!("fuzz target {target}: {reason}\nminimal input: {input:#?}"));
            }
            Err(TestError::Abort(reason)) => return Err(format!("fuzz target {target}: aborted: {reason}")),
        }
        match budget.duration {
            Some(d) if started.elapsed() < d => {}
            _ => break,
        }
    }
    eprintln!("fuzz target {target}: {total} cases in {:.1?}", started.elapsed());
    Ok(total)
}
