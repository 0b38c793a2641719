//! `fedkey scan PATH…`: finds fedkey provisioning keys and admin tokens in files,
//! directories and (with `--git`) every commit of a repository's history. A candidate
//! matches the published scanner regex `\bfk[pa]_[0-9A-Za-z]{38}\b`, and only one whose
//! checksum is right counts, so look-alikes are never reported. Findings show where they
//! are and a shortened token, never the whole token; `--report URL` sends them to a
//! server's leak endpoint (generic format) with the admin token.
//!
//! Exit status: 0 nothing found, 1 something found, 2 the scan or the report failed.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use fedkey_crypto::token::{self, TOKEN_LEN, TokenKind};
use serde_json::{Value, json};

use crate::config::Settings;
use crate::output::{self, Output};

/// Files larger than this are skipped (and said so): keys live in text, not in disk images.
const MAX_FILE_BYTES: u64 = 64 * 1024 * 1024;
/// Findings sent per leak report (the server's limit).
const REPORT_BATCH: usize = 100;

#[derive(clap::Args)]
pub struct ScanArgs {
    /// Files and directories to scan (directories recursively; `.git` is skipped).
    #[arg(required = true)]
    paths: Vec<PathBuf>,
    /// Also scan every commit of the git repository at each PATH (all refs).
    #[arg(long)]
    git: bool,
    /// Skip paths containing this text (repeatable), e.g. `--exclude tests/fixtures`; a
    /// directory's path is matched with a trailing `/`, so `--exclude /target/` skips the
    /// directory `target` but not a file `target.rs`.
    #[arg(long = "exclude")]
    excludes: Vec<String>,
    /// Send the findings to this fedkey server's leak endpoint (`POST /api/v1/leaks`), with
    /// the admin token (operator role or higher); the server applies each trust's leak policy.
    #[arg(long)]
    report: Option<String>,
}

/// One token found: what kind, where, and the token itself (kept in memory only, for
/// `--report`).
struct Finding {
    kind: TokenKind,
    location: String,
    token: String,
}

impl Finding {
    fn json(&self) -> Value {
        json!({
            "kind": match self.kind { TokenKind::Provisioning => "provisioning_key", TokenKind::Admin => "admin_token" },
            "location": self.location,
            "token": shorten(&self.token),
        })
    }
}

/// `fkp_AbCd…`: enough to tell tokens apart, far too little to use one.
fn shorten(t: &str) -> String {
    format!("{}…", &t[..8.min(t.len())])
}

#[derive(Default)]
struct Scan {
    findings: Vec<Finding>,
    /// Candidates with a fedkey prefix whose checksum is wrong.
    ignored: usize,
    skipped: Vec<String>,
}

pub async fn scan(s: &Settings, out: Output, a: ScanArgs) -> anyhow::Result<ExitCode> {
    let mut scan = Scan::default();
    for p in &a.paths {
        if let Err(e) = scan.path(p, &a.excludes) {
            eprintln!("error: {}: {e}", p.display());
            return Ok(ExitCode::from(2));
        }
        if a.git
            && let Err(e) = scan.git_history(p, &a.excludes)
        {
            eprintln!("error: git history of {}: {e:#}", p.display());
            return Ok(ExitCode::from(2));
        }
    }
    let mut reported = Value::Null;
    if let Some(url) = &a.report
        && !scan.findings.is_empty()
    {
        match report(s, url, &scan.findings).await {
            Ok(v) => reported = v,
            Err(e) => {
                print(out, &scan, &reported);
                eprintln!("error: the report to {url} failed: {e:#}");
                return Ok(ExitCode::from(2));
            }
        }
    }
    print(out, &scan, &reported);
    Ok(if scan.findings.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

fn print(out: Output, scan: &Scan, reported: &Value) {
    let findings: Vec<Value> = scan.findings.iter().map(Finding::json).collect();
    match out {
        Output::Json => output::json(&json!({
            "findings": findings, "ignored_bad_checksum": scan.ignored, "skipped": scan.skipped,
            "reported": reported,
        })),
        Output::Table => {
            for f in &findings {
                outln!(
                    "{}  {}  {}",
                    f["kind"].as_str().unwrap_or(""),
                    f["token"].as_str().unwrap_or(""),
                    f["location"].as_str().unwrap_or("")
                );
            }
            for s in &scan.skipped {
                eprintln!("skipped: {s}");
            }
            if !reported.is_null() {
                outln!(
                    "reported: {} finding(s), {} of them live fedkey tokens of that server",
                    findings.len(),
                    reported["ours"]
                );
            }
            outln!("{} token(s) found; {} look-alike(s) with a bad checksum ignored", findings.len(), scan.ignored);
        }
    }
}

impl Scan {
    fn path(&mut self, p: &Path, excludes: &[String]) -> std::io::Result<()> {
        let shown = p.display().to_string();
        let meta = std::fs::symlink_metadata(p)?;
        let matched = if meta.is_dir() { format!("{shown}/") } else { shown.clone() };
        if meta.is_symlink() || excludes.iter().any(|x| matched.contains(x.as_str())) {
            return Ok(());
        }
        if meta.is_dir() {
            let mut entries: Vec<PathBuf> =
                std::fs::read_dir(p)?.map(|e| e.map(|e| e.path())).collect::<Result<_, _>>()?;
            entries.sort();
            for e in entries {
                if e.file_name().is_some_and(|n| n == ".git") {
                    continue;
                }
                self.path(&e, excludes)?;
            }
            return Ok(());
        }
        if meta.len() > MAX_FILE_BYTES {
            self.skipped.push(format!("{shown} (larger than {} MiB)", MAX_FILE_BYTES >> 20));
            return Ok(());
        }
        let bytes = std::fs::read(p)?;
        self.text(&bytes, |line| format!("{shown}:{line}"));
        Ok(())
    }

    /// Every commit's patch of the repository at `p`: a token in any added line of any
    /// commit on any ref, even one deleted since.
    fn git_history(&mut self, p: &Path, excludes: &[String]) -> anyhow::Result<()> {
        let dir = if p.is_dir() { p } else { p.parent().unwrap_or(Path::new(".")) };
        let out = std::process::Command::new("git")
            .arg("-C")
            .arg(dir)
            .args(["log", "--all", "-p", "--no-color", "--no-ext-diff", "--no-textconv", "--format=commit %H"])
            .output()
            .map_err(|e| anyhow::anyhow!("cannot run git: {e}"))?;
        if !out.status.success() {
            anyhow::bail!("{}", String::from_utf8_lossy(&out.stderr).trim());
        }
        let (mut commit, mut file, mut excluded) = (String::new(), String::new(), false);
        for line in out.stdout.split(|b| *b == b'\n') {
            if let Some(c) = line.strip_prefix(b"commit ") {
                commit = String::from_utf8_lossy(c).chars().take(12).collect();
            } else if let Some(f) = line.strip_prefix(b"+++ ") {
                let f = String::from_utf8_lossy(f);
                file = f.strip_prefix("b/").unwrap_or(&f).to_owned();
                excluded = excludes.iter().any(|x| file.contains(x.as_str()));
            } else if line.starts_with(b"+") && !excluded {
                let at = format!("git {commit}:{file}");
                self.text(line, |_| at.clone());
            }
        }
        Ok(())
    }

    /// Finds the candidates in `bytes`; `location` names a 1-based line.
    fn text(&mut self, bytes: &[u8], location: impl Fn(usize) -> String) {
        for (start, line) in candidates(bytes) {
            let t = String::from_utf8_lossy(&bytes[start..start + TOKEN_LEN]).into_owned();
            match token::parse(&t) {
                Ok(kind) => self.findings.push(Finding { kind, location: location(line), token: t }),
                Err(_) => self.ignored += 1,
            }
        }
    }
}

/// Offsets (and 1-based lines) of every match of `\bfk[pa]_[0-9A-Za-z]{38}\b`.
fn candidates(b: &[u8]) -> Vec<(usize, usize)> {
    let word = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    let mut out = Vec::new();
    let mut line = 1;
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\n' {
            line += 1;
        }
        let fits = i + TOKEN_LEN <= b.len();
        if fits
            && b[i] == b'f'
            && b[i + 1] == b'k'
            && matches!(b[i + 2], b'p' | b'a')
            && b[i + 3] == b'_'
            && (i == 0 || !word(b[i - 1]))
            && b[i + 4..i + TOKEN_LEN].iter().all(u8::is_ascii_alphanumeric)
            && b.get(i + TOKEN_LEN).is_none_or(|c| !word(*c))
        {
            out.push((i, line));
            i += TOKEN_LEN;
            continue;
        }
        i += 1;
    }
    out
}

/// Sends the findings, in batches, to `url`'s leak endpoint; the server's answers merged.
async fn report(s: &Settings, url: &str, findings: &[Finding]) -> anyhow::Result<Value> {
    let api = crate::client::Client::new(&Settings { url: url.to_owned(), ..s.clone() })?;
    let mut answers = Vec::new();
    let mut ours = 0;
    for batch in findings.chunks(REPORT_BATCH) {
        let body = json!({"findings": batch.iter().map(|f| json!({"token": f.token, "location": f.location})).collect::<Vec<_>>()});
        let v: fedkey_api::leaks::LeakReportResult = api.post_as("/leaks", &body).await?;
        ours += v.ours;
        answers.extend(v.findings);
    }
    Ok(json!({"ours": ours, "findings": answers}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_tokens_at_word_boundaries_only() {
        let k = token::generate(TokenKind::Provisioning).unwrap();
        let k = k.expose();
        let text = format!("a\nkey={k}\nx{k}\n{k}_more\n");
        assert_eq!(candidates(text.as_bytes()), vec![(6, 2)]);
        let mut s = Scan::default();
        s.text(text.as_bytes(), |l| format!("f:{l}"));
        assert_eq!(s.findings.len(), 1);
        assert_eq!(s.findings[0].location, "f:2");
        assert!(!s.findings[0].json().to_string().contains(k), "never the whole token");
    }

    #[test]
    fn a_bad_checksum_is_ignored() {
        let k = token::generate(TokenKind::Admin).unwrap();
        let mut bad = k.expose().to_owned();
        let last = if bad.ends_with('0') { '1' } else { '0' };
        bad.pop();
        bad.push(last);
        let mut s = Scan::default();
        s.text(format!("{bad} {}", k.expose()).as_bytes(), |l| l.to_string());
        assert_eq!((s.findings.len(), s.ignored), (1, 1));
        assert_eq!(s.findings[0].kind, TokenKind::Admin);
    }
}
