//! `fedkey audit export` (through the API with a token, else offline from the database)
//! and `fedkey audit tail`.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use fedkey_api::audit::AuditRecord;
use fedkey_core::Timestamp;
use fedkey_store::audit::AuditFilter;

use crate::client::{Client, q};
use crate::config::Settings;
use crate::output::Output;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ExportFormat {
    /// One JSON object per line.
    Jsonl,
    /// RFC 4180 CSV with a header line.
    Csv,
}

impl ExportFormat {
    fn as_str(self) -> &'static str {
        match self {
            ExportFormat::Jsonl => "jsonl",
            ExportFormat::Csv => "csv",
        }
    }
}

/// What to export: the filters as given on the command line.
pub struct ExportArgs {
    pub since: Option<String>,
    pub until: Option<String>,
    pub directory: Option<String>,
    pub trust: Option<String>,
    pub action: Option<String>,
    pub out: Option<PathBuf>,
    pub format: ExportFormat,
    pub offline: bool,
}

/// How long an export through the API may take in all.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(6 * 3600);

pub async fn export(s: &Settings, a: ExportArgs) -> anyhow::Result<ExitCode> {
    let now = fedkey_core::Clock::now(&fedkey_core::SystemClock::default());
    let time = |v: &Option<String>| v.as_deref().map(|v| crate::local::parse_since(v, now)).transpose();
    let (since, until) = (time(&a.since)?, time(&a.until)?);
    let api = s.token.is_some() && !a.offline;
    let n = if api {
        let mut query = vec![format!("format={}", a.format.as_str())];
        let mut add = |k: &str, v: Option<String>| {
            if let Some(v) = v {
                query.push(format!("{k}={}", q(&v)));
            }
        };
        add("since", since.map(Timestamp::to_rfc3339));
        add("until", until.map(Timestamp::to_rfc3339));
        add("directory", a.directory);
        add("trust", a.trust);
        add("action", a.action);
        // Ask before creating the output file: a refused export leaves none behind.
        let resp = Client::new(s)?.stream(&format!("/audit/export?{}", query.join("&")), EXPORT_TIMEOUT).await?;
        with_output(&a.out, |w| async move { copy(resp, w, a.format).await }).await?
    } else {
        let f = AuditFilter {
            since,
            until,
            directory: a.directory,
            trust: a.trust,
            action: a.action,
            ..Default::default()
        };
        // Refuse before creating the output file when there is no database.
        fedkey_store::Db::connect_existing(&s.database_url()).await?.close().await;
        let format = a.format;
        with_output(&a.out, |w| async move { crate::local::audit_export(s, f, format, w).await }).await?
    };
    eprintln!("exported {n} records");
    Ok(ExitCode::SUCCESS)
}

async fn with_output<F, Fut>(out: &Option<PathBuf>, f: F) -> anyhow::Result<u64>
where
    F: FnOnce(Box<dyn Write + Send>) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<u64>>,
{
    let w: Box<dyn Write + Send> = match out {
        Some(p) => Box::new(std::io::BufWriter::new(std::fs::File::create(p)?)),
        None => Box::new(std::io::BufWriter::new(std::io::stdout())),
    };
    f(w).await
}

/// Copies an export's body as it arrives; returns the number of records.
async fn copy(mut resp: reqwest::Response, mut w: Box<dyn Write + Send>, format: ExportFormat) -> anyhow::Result<u64> {
    let mut counter = RecordCounter::new(format);
    while let Some(chunk) =
        resp.chunk().await.map_err(|e| anyhow::anyhow!("the export was cut off: {}", e.without_url()))?
    {
        counter.feed(&chunk);
        w.write_all(&chunk)?;
    }
    w.flush()?;
    Ok(counter.records())
}

/// Counts records in JSON lines or CSV (line ends outside quoted fields, less the header).
struct RecordCounter {
    csv: bool,
    quoted: bool,
    lines: u64,
}

impl RecordCounter {
    fn new(format: ExportFormat) -> RecordCounter {
        RecordCounter { csv: format == ExportFormat::Csv, quoted: false, lines: 0 }
    }

    fn feed(&mut self, bytes: &[u8]) {
        for &b in bytes {
            match b {
                b'"' if self.csv => self.quoted = !self.quoted,
                b'\n' if !self.quoted => self.lines += 1,
                _ => {}
            }
        }
    }

    fn records(&self) -> u64 {
        if self.csv { self.lines.saturating_sub(1) } else { self.lines }
    }
}

/// `fedkey audit tail`: the last `lines` records, then (with `follow`) new ones as they
/// are committed, until interrupted.
pub async fn tail(
    s: &Settings,
    out: Output,
    lines: i64,
    follow: bool,
    action: Option<String>,
) -> anyhow::Result<ExitCode> {
    let api = Client::new(s)?;
    // Following with no lines starts at the head as it is now. Asking the server for "the
    // last 0" and reading the head only once that stream ends would skip what was committed
    // in between.
    let mut after: Option<i64> = if follow && lines == 0 { Some(log_head(&api).await?) } else { None };
    let filter = action.map(|a| format!("&action={}", q(&a))).unwrap_or_default();
    loop {
        let from = match after {
            None => format!("tail={lines}"),
            Some(seq) => format!("after={seq}"),
        };
        let path = format!("/audit/export?format=jsonl&follow={follow}&{from}{filter}");
        let timeout = fedkey_server::audit_api::FOLLOW_FOR * 2;
        let resp = match api.stream(&path, timeout).await {
            Ok(r) => r,
            // Reconnect after a dropped server when following; a refusal is final.
            Err(e) if follow && after.is_some() && !e.to_string().contains("HTTP 4") => {
                eprintln!("audit tail: {e:#}; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
            Err(e) => return Err(e),
        };
        let result = print_lines(resp, out, &mut after).await;
        if !follow {
            result?;
            return Ok(ExitCode::SUCCESS);
        }
        if let Err(e) = result {
            eprintln!("audit tail: {e:#}; reconnecting");
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        // A tail of nothing starts following from the head.
        if after.is_none() {
            after = Some(log_head(&api).await?);
        }
    }
}

/// The log's head: where following starts when there is nothing before it to show.
async fn log_head(api: &Client) -> anyhow::Result<i64> {
    // Same role as the export itself (auditor); a failure here is the export's failure too,
    // rather than a silent start from the beginning of the log.
    Ok(api.get_as::<fedkey_api::audit::AuditSinks>("/audit/sinks").await?.head)
}

async fn print_lines(mut resp: reqwest::Response, out: Output, after: &mut Option<i64>) -> anyhow::Result<()> {
    let mut buf: Vec<u8> = Vec::new();
    while let Some(chunk) =
        resp.chunk().await.map_err(|e| anyhow::anyhow!("the stream was cut off: {}", e.without_url()))?
    {
        buf.extend_from_slice(&chunk);
        while let Some(i) = buf.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = buf.drain(..=i).collect();
            let r: AuditRecord = serde_json::from_slice(&line)
                .map_err(|e| anyhow::anyhow!("the server sent a line that is not an audit record ({e})"))?;
            *after = Some(r.seq);
            print_record(&r, &line, out);
        }
    }
    Ok(())
}

/// A record: as the server sent it (`line`) for programs, one line for people.
fn print_record(r: &AuditRecord, line: &[u8], out: Output) {
    match out {
        Output::Json => outln!("{}", String::from_utf8_lossy(line).trim_end()),
        Output::Table => {
            let about = match (&r.directory, &r.trust) {
                (Some(d), Some(t)) => format!(" {d}/{t}"),
                (Some(d), None) => format!(" {d}"),
                _ => String::new(),
            };
            outln!("{:>6}  {}  {:<7}  {}  {}{about}", r.seq, r.ts, r.outcome, r.action, r.actor);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_are_counted_by_line_ends_outside_quotes() {
        let mut c = RecordCounter::new(ExportFormat::Csv);
        c.feed(b"seq,details\r\n1,\"{\"\"a\"\":\"\"x\ny\"\"}\"\r\n2,{}");
        c.feed(b"\r\n");
        assert_eq!(c.records(), 2);
        let mut j = RecordCounter::new(ExportFormat::Jsonl);
        j.feed(b"{\"seq\":1}\n{\"seq\":2}\n");
        assert_eq!(j.records(), 2);
    }
}
