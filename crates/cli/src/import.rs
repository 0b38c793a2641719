//! `fedkey import --directory D FILE`: users and groups from a CSV or JSON-lines file,
//! written through the admin API's import endpoint (the SCIM write path: validated,
//! audited, and fanned out by the outbox to every target).
//!
//! The file is read three times, streaming: a check (UTF-8, header and columns, size)
//! before anything is written, then the users, then the groups — so a group can name
//! members that come later in the file. Rows are sent in batches; the server writes the
//! new users of a batch in one transaction and every other row in its own, and one bad
//! row never stops the others.

mod columns;
#[cfg(test)]
mod fuzz;
mod read;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use fedkey_api::directories::{DirectoryDetail, ImportSummary};
use serde_json::{Value, json};

use crate::client::{Client, q};
use crate::config::Settings;
use crate::output::{self, Output};
use columns::Columns;
use read::{CsvRecords, Line, Lines, MAX_LINE};

/// Largest file accepted.
const MAX_FILE: u64 = 1024 * 1024 * 1024;
/// Rows per request the server accepts.
const MAX_BATCH: usize = 500;
/// A batch is sent once its rows reach this size (the server takes up to 16 MiB).
const BATCH_BYTES: usize = 8 * 1024 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Csv,
    Jsonl,
}

#[derive(clap::Args)]
pub struct ImportArgs {
    /// The directory to import into.
    #[arg(long)]
    directory: String,
    /// A CSV file (header of SCIM attribute paths) or JSON lines (one SCIM User or Group per line).
    file: PathBuf,
    /// The file's format; by default from its extension (.csv; .jsonl, .ndjson, .json).
    #[arg(long, value_enum)]
    format: Option<Format>,
    /// Rows per request (1–500).
    #[arg(long, default_value_t = 100)]
    batch: usize,
    /// Report what each row would do (created, updated, unchanged, error); change nothing.
    #[arg(long)]
    dry_run: bool,
}

/// One row of the file: its line and its resource, or why it cannot be read.
struct Row {
    line: u64,
    parsed: Result<(&'static str, Value), String>,
}

/// Rows of a file, one format or the other.
enum Rows {
    Csv(CsvRecords<BufReader<File>>, Columns),
    Jsonl(Lines<BufReader<File>>),
}

impl Rows {
    /// Opens the file and (CSV) reads and checks its header.
    fn open(path: &Path, format: Format) -> anyhow::Result<Rows> {
        let f = File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
        let r = BufReader::with_capacity(64 * 1024, f);
        Ok(match format {
            Format::Jsonl => Rows::Jsonl(Lines::new(r)),
            Format::Csv => {
                let mut recs = CsvRecords::new(r);
                let header = match recs.next_record()? {
                    None => anyhow::bail!("{} is empty: a CSV import needs a header row", path.display()),
                    Some(h) => h.fields.map_err(|e| anyhow::anyhow!("line {} (the header): {e}", h.line))?,
                };
                let cols = Columns::parse(&header).map_err(|e| anyhow::anyhow!("line 1 (the header): {e}"))?;
                Rows::Csv(recs, cols)
            }
        })
    }

    fn next_row(&mut self) -> anyhow::Result<Option<Row>> {
        match self {
            Rows::Csv(recs, cols) => {
                Ok(recs.next_record()?.map(|r| Row { line: r.line, parsed: r.fields.and_then(|f| cols.resource(&f)) }))
            }
            Rows::Jsonl(lines) => loop {
                let Some((n, line)) = lines.next_line()? else { return Ok(None) };
                let parsed = match line {
                    Line::NotUtf8 => anyhow::bail!("line {n} is not UTF-8: save the file as UTF-8 and import again"),
                    Line::TooLong => Err(format!("the line is longer than {MAX_LINE} bytes")),
                    Line::Text(t) if t.trim().is_empty() => continue,
                    Line::Text(t) => json_row(&t),
                };
                return Ok(Some(Row { line: n, parsed }));
            },
        }
    }
}

/// One JSON line: a SCIM resource; its type from `"type"`, else `schemas`, else
/// `userName` (a User) or `displayName` (a Group).
fn json_row(text: &str) -> Result<(&'static str, Value), String> {
    let mut v: Value = serde_json::from_str(text).map_err(|e| format!("invalid JSON: {e}"))?;
    let Some(obj) = v.as_object_mut() else { return Err("a line must be a JSON object (one User or Group)".into()) };
    let hint = match obj.remove("type") {
        None => None,
        Some(Value::String(t)) => Some(t),
        Some(_) => return Err("type must be \"User\" or \"Group\"".into()),
    };
    let schemas: Vec<String> = obj
        .get("schemas")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(str::to_ascii_lowercase)
        .collect();
    let has = |urn: &str| schemas.iter().any(|s| s.eq_ignore_ascii_case(urn));
    let rt = match hint.as_deref() {
        Some(t) if t.eq_ignore_ascii_case("user") => "User",
        Some(t) if t.eq_ignore_ascii_case("group") => "Group",
        Some(t) => return Err(format!("type {:?} is neither User nor Group", t.chars().take(40).collect::<String>())),
        None if has(fedkey_scim::schema::GROUP) => "Group",
        None if has(fedkey_scim::schema::USER) => "User",
        None if obj.contains_key("userName") => "User",
        None if obj.contains_key("displayName") => "Group",
        None => return Err("cannot tell a User from a Group: add \"schemas\" or \"type\"".into()),
    };
    Ok((rt, v))
}

fn format_of(path: &Path, given: Option<Format>) -> anyhow::Result<Format> {
    if let Some(f) = given {
        return Ok(f);
    }
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
    match ext.as_str() {
        "csv" => Ok(Format::Csv),
        "jsonl" | "ndjson" | "json" => Ok(Format::Jsonl),
        _ => anyhow::bail!(
            "cannot tell the format of {} from its name: pass --format csv or --format jsonl",
            path.display()
        ),
    }
}

/// Counts of what happened, and every row error by line.
#[derive(Default)]
struct Tally {
    rows: u64,
    created: u64,
    updated: u64,
    unchanged: u64,
    errors: Vec<(u64, String)>,
}

impl Tally {
    fn json(&self) -> Value {
        let mut errors = self.errors.clone();
        errors.sort_by_key(|(l, _)| *l);
        json!({
            "rows": self.rows,
            "created": self.created,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "failed": self.errors.len(),
            "errors": errors.iter().map(|(l, e)| json!({"line": l, "error": e})).collect::<Vec<_>>(),
        })
    }
}

/// Sends rows in batches and tallies the per-row results.
struct Sender<'a> {
    api: &'a Client,
    path: String,
    dry_run: bool,
    max_rows: usize,
    rows: Vec<Value>,
    bytes: usize,
    tally: Tally,
    bar: Option<indicatif::ProgressBar>,
    /// Dry run: the `userName` and `externalId` of each user row in the batch…
    user_keys: HashMap<u64, Vec<String>>,
    /// …those of the users the dry run would create (lower-cased)…
    planned: HashSet<String>,
    /// …and the ones this batch's groups name, sent so they count as members.
    batch_planned: BTreeSet<String>,
}

impl Sender<'_> {
    async fn push(&mut self, line: u64, rt: &str, resource: Value) -> anyhow::Result<()> {
        let row = json!({"line": line, "type": rt, "resource": resource});
        let size = row.to_string().len();
        if !self.rows.is_empty() && self.bytes + size > BATCH_BYTES {
            self.flush().await?;
        }
        if self.dry_run {
            self.plan(line, rt, &row["resource"]);
        }
        self.rows.push(row);
        self.bytes += size;
        if self.rows.len() >= self.max_rows {
            self.flush().await?;
        }
        Ok(())
    }

    /// A dry run writes no users, so groups could not name the ones the file creates:
    /// remember them, and tell the server which members of a group are such users.
    fn plan(&mut self, line: u64, rt: &str, resource: &Value) {
        if rt == "User" {
            let keys = ["userName", "externalId"].iter().filter_map(|k| resource[*k].as_str()).map(str::to_owned);
            self.user_keys.insert(line, keys.collect());
            return;
        }
        for m in resource["members"].as_array().map(Vec::as_slice).unwrap_or_default() {
            if let Some(v) = m.as_str().or_else(|| m["value"].as_str())
                && self.planned.contains(&v.to_lowercase())
            {
                self.batch_planned.insert(v.to_owned());
            }
        }
    }

    fn error(&mut self, line: u64, e: String) {
        self.tally.rows += 1;
        self.tally.errors.push((line, e));
        self.tick(1);
    }

    fn tick(&self, n: u64) {
        if let Some(b) = &self.bar {
            b.inc(n);
        }
    }

    async fn flush(&mut self) -> anyhow::Result<()> {
        if self.rows.is_empty() {
            return Ok(());
        }
        let rows = std::mem::take(&mut self.rows);
        self.bytes = 0;
        let (first, n) = (rows[0]["line"].as_u64().unwrap_or(0), rows.len() as u64);
        let mut body = json!({"rows": rows, "dry_run": self.dry_run});
        if !self.batch_planned.is_empty() {
            body["planned"] = json!(std::mem::take(&mut self.batch_planned));
        }
        let v: ImportSummary = self
            .api
            .post_as(&self.path, &body)
            .await
            .with_context(|| format!("the import stopped at the batch starting on line {first}"))?;
        let mut user_keys = std::mem::take(&mut self.user_keys);
        for r in v.results {
            self.tally.rows += 1;
            match r.status.as_str() {
                "created" => {
                    self.tally.created += 1;
                    let keys = user_keys.remove(&r.line).unwrap_or_default();
                    self.planned.extend(keys.iter().map(|k| k.to_lowercase()));
                }
                "updated" => self.tally.updated += 1,
                "unchanged" => self.tally.unchanged += 1,
                _ => self.tally.errors.push((r.line, r.error.unwrap_or_else(|| "rejected by the server".to_owned()))),
            }
        }
        self.tick(n);
        Ok(())
    }
}

pub async fn import(s: &Settings, out: Output, a: ImportArgs) -> anyhow::Result<ExitCode> {
    if !(1..=MAX_BATCH).contains(&a.batch) {
        anyhow::bail!("--batch must be between 1 and {MAX_BATCH}");
    }
    let format = format_of(&a.file, a.format)?;
    let meta = std::fs::metadata(&a.file).with_context(|| format!("cannot read {}", a.file.display()))?;
    if !meta.is_file() {
        anyhow::bail!("{} is not a regular file", a.file.display());
    }
    if meta.len() > MAX_FILE {
        anyhow::bail!("{} is larger than {MAX_FILE} bytes; split it", a.file.display());
    }
    let api = Client::new(s)?;
    // First pass: file-level problems stop the import before anything is written.
    let (mut users, mut groups) = (0u64, 0u64);
    let mut rows = Rows::open(&a.file, format)?;
    while let Some(r) = rows.next_row()? {
        match r.parsed {
            Ok(("Group", _)) => groups += 1,
            _ => users += 1,
        }
    }
    // The directory must exist (a clear error now, not one per batch).
    api.get_as::<DirectoryDetail>(&format!("/directories/{}", q(&a.directory))).await?;
    let bar = (out == Output::Table && std::io::IsTerminal::is_terminal(&std::io::stderr())).then(|| {
        let b = indicatif::ProgressBar::new(users + groups);
        b.set_style(
            indicatif::ProgressStyle::with_template("importing {bar:40} {pos}/{len} rows {eta}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        b
    });
    let mut send = Sender {
        api: &api,
        path: format!("/directories/{}/import", q(&a.directory)),
        dry_run: a.dry_run,
        max_rows: a.batch,
        rows: Vec::new(),
        bytes: 0,
        tally: Tally::default(),
        bar,
        user_keys: HashMap::new(),
        planned: HashSet::new(),
        batch_planned: BTreeSet::new(),
    };
    // Users (and unreadable rows) first, then groups, whose members name users.
    let mut result = Ok(());
    for groups_pass in [false, true] {
        result = pass(&a.file, format, groups_pass, &mut send).await;
        if result.is_err() {
            break;
        }
    }
    if let Some(b) = &send.bar {
        b.finish_and_clear();
    }
    let mut summary = send.tally.json();
    summary["directory"] = json!(a.directory);
    summary["file"] = json!(a.file);
    summary["dry_run"] = json!(a.dry_run);
    if let Err(e) = &result {
        summary["stopped"] = json!(format!("{e:#}"));
    }
    report(out, &summary);
    if let Err(e) = result {
        return Err(e.context(format!(
            "{} row(s) were processed before the import stopped (see above); re-running the import is safe",
            send.tally.rows
        )));
    }
    Ok(if send.tally.errors.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

async fn pass(path: &Path, format: Format, groups_pass: bool, send: &mut Sender<'_>) -> anyhow::Result<()> {
    let mut rows = Rows::open(path, format)?;
    while let Some(r) = rows.next_row()? {
        match (r.parsed, groups_pass) {
            (Err(e), false) => send.error(r.line, e),
            (Ok((rt, v)), g) if (rt == "Group") == g => send.push(r.line, rt, v).await?,
            _ => {}
        }
    }
    send.flush().await
}

fn report(out: Output, v: &Value) {
    if out == Output::Json {
        output::json(v);
        return;
    }
    for e in v["errors"].as_array().map(Vec::as_slice).unwrap_or_default() {
        eprintln!("line {}: {}", e["line"], e["error"].as_str().unwrap_or(""));
    }
    outln!(
        "{}{}: {} rows: {} created, {} updated, {} unchanged, {} failed",
        v["directory"].as_str().unwrap_or(""),
        if v["dry_run"] == true { " (dry run: nothing changed)" } else { "" },
        v["rows"],
        v["created"],
        v["updated"],
        v["unchanged"],
        v["failed"],
    );
}
