//! Outbound provisioning commands: `sync target …`, `sync status`, `sync dead-letters …`,
//! `sync reconcile`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Subcommand;
use fedkey_api::sync::{
    DeadLetterFilter, DeadLetterList, DeadLettersDiscarded, DeadLettersRetried, ReconcileAction, ReconcileEnvelope,
    ReconcileRequest, ReconcileRun, SyncStatus, TargetEnvelope,
};
use fedkey_core::TrustRef;
use serde_json::{Value, json};

use crate::client::Client;
use crate::config::Settings;
use crate::output::{self, Output};

// Parsed once per process; the size difference between variants does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
pub enum SyncCmd {
    /// Where an outbound trust provisions to (SCIM base URL, mapping, leaver policy).
    #[command(subcommand)]
    Target(TargetCmd),
    /// Delivery and deprovisioning status of a directory: pending and failed targets,
    /// time to full deprovisioning, who still has an active account where.
    Status {
        /// DIRECTORY
        directory: String,
    },
    /// Deliveries that exhausted their attempts (or cannot succeed as they are).
    #[command(subcommand, name = "dead-letters")]
    DeadLetters(DeadLetterCmd),
    /// Compare the trust's target with the directory and repair the drift: create missing
    /// accounts, fix attributes and memberships, deprovision leavers, deactivate or report
    /// orphans (the mapping's `orphans` policy). Exits 1 when something is left undone.
    Reconcile {
        /// DIRECTORY/TRUST (an outbound trust with a target)
        trust: TrustRef,
        /// Print the plan; change nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

// Parsed once per process; the size difference between variants does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
pub enum TargetCmd {
    /// Set (create or replace) the target; the first time, every existing user and group
    /// of the directory is queued for delivery.
    Set {
        /// DIRECTORY/TRUST (an outbound trust)
        trust: TrustRef,
        /// The application's SCIM base URL, e.g. https://app.example/scim/v2
        #[arg(long)]
        url: String,
        /// Mapping JSON (scope, attributes, roles, leaver; see docs/provisioning.md).
        #[arg(long)]
        mapping_file: Option<PathBuf>,
        /// What happens to leavers at the target: deactivate (default) or delete.
        #[arg(long)]
        leaver: Option<String>,
        /// What reconciliation does with accounts fedkey does not know: report (default)
        /// or deactivate.
        #[arg(long)]
        orphans: Option<String>,
        /// Attempts before a delivery becomes a dead letter (default 10).
        #[arg(long)]
        max_attempts: Option<i64>,
        /// Deliveries in flight to this target at once (default 4).
        #[arg(long)]
        concurrency: Option<i64>,
        /// Limit for each request to the target, e.g. 10s (default 30s).
        #[arg(long)]
        timeout: Option<String>,
        /// SCIM /Bulk: auto (default: when the target supports it, as many operations per
        /// request as it allows), off, or the most operations per request.
        #[arg(long, value_name = "auto|off|N")]
        bulk: Option<String>,
        /// Reconcile the target on a schedule, e.g. 24h (at least 5m; off when absent).
        #[arg(long, value_name = "DURATION")]
        reconcile_every: Option<String>,
        /// Scheduled runs only report the drift (nothing changes at the target).
        #[arg(long, requires = "reconcile_every")]
        reconcile_dry_run: bool,
        /// OAuth2 client credentials instead of the trust's key: token endpoint…
        #[arg(long, requires_all = ["oauth_client_id", "oauth_secret_file"])]
        oauth_token_url: Option<String>,
        /// …client id…
        #[arg(long, requires = "oauth_token_url")]
        oauth_client_id: Option<String>,
        /// …and a file holding the client secret (never on the command line).
        #[arg(long, requires = "oauth_token_url")]
        oauth_secret_file: Option<PathBuf>,
        /// OAuth2 scope to request.
        #[arg(long, requires = "oauth_token_url")]
        oauth_scope: Option<String>,
        /// Lab only: allow plain http to a host that is not loopback (URL and token URL).
        /// Recorded in the audit log; never allows a private or other denied address.
        #[arg(long)]
        allow_http: bool,
    },
    /// Show the target (never the OAuth2 secret).
    Show {
        /// DIRECTORY/TRUST
        trust: TrustRef,
    },
}

#[derive(Subcommand)]
pub enum DeadLetterCmd {
    /// List the dead letters of a directory.
    List {
        /// DIRECTORY
        directory: String,
    },
    /// Deliver them again (attempts start over).
    Retry {
        /// DIRECTORY
        directory: String,
        /// Only this trust's.
        #[arg(long)]
        trust: Option<String>,
        /// Only this directory resource's.
        #[arg(long)]
        resource: Option<String>,
    },
    /// Drop them (the change is not delivered; a later change is).
    Discard {
        /// DIRECTORY
        directory: String,
        #[arg(long)]
        trust: Option<String>,
        #[arg(long)]
        resource: Option<String>,
    },
}

fn target_path(r: &TrustRef) -> String {
    format!("/directories/{}/trusts/{}/target", r.directory, r.trust)
}

pub async fn sync(s: &Settings, out: Output, c: SyncCmd) -> anyhow::Result<ExitCode> {
    let api = Client::new(s)?;
    match c {
        SyncCmd::Target(TargetCmd::Set {
            trust,
            url,
            mapping_file,
            leaver,
            orphans,
            max_attempts,
            concurrency,
            timeout,
            bulk,
            reconcile_every,
            reconcile_dry_run,
            oauth_token_url,
            oauth_client_id,
            oauth_secret_file,
            oauth_scope,
            allow_http,
        }) => {
            let mut body = json!({"url": url, "allow_http": allow_http});
            if let Some(f) = mapping_file {
                let text = std::fs::read_to_string(&f).with_context(|| format!("cannot read {}", f.display()))?;
                let v: Value =
                    serde_json::from_str(&text).with_context(|| format!("{} is not valid JSON", f.display()))?;
                body["mapping"] = v;
            }
            if let Some(l) = leaver {
                body["leaver"] = json!(l);
            }
            if let Some(o) = orphans {
                body["orphans"] = json!(o);
            }
            if let Some(n) = max_attempts {
                body["max_attempts"] = json!(n);
            }
            if let Some(n) = concurrency {
                body["concurrency"] = json!(n);
            }
            if let Some(t) = timeout {
                body["timeout"] = json!(t);
            }
            if let Some(b) = bulk {
                body["bulk"] = match b.parse::<i64>() {
                    Ok(n) => json!(n),
                    Err(_) => json!(b),
                };
            }
            if let Some(e) = reconcile_every {
                body["reconcile_every"] = json!(e);
                body["reconcile_dry_run"] = json!(reconcile_dry_run);
            }
            if let (Some(tu), Some(id), Some(f)) = (oauth_token_url, oauth_client_id, oauth_secret_file) {
                let secret = std::fs::read_to_string(&f).with_context(|| format!("cannot read {}", f.display()))?;
                body["oauth"] =
                    json!({"token_url": tu, "client_id": id, "client_secret": secret.trim(), "scope": oauth_scope});
            }
            let v: TargetEnvelope = api.put_as(&target_path(&trust), &body).await?;
            print_target(out, &v);
        }
        SyncCmd::Target(TargetCmd::Show { trust }) => {
            let v: TargetEnvelope = api.get_as(&target_path(&trust)).await?;
            print_target(out, &v);
        }
        SyncCmd::Status { directory } => {
            let v: SyncStatus = api.get_as(&format!("/directories/{directory}/sync/status")).await?;
            print_status(out, &v);
        }
        SyncCmd::Reconcile { trust, dry_run } => {
            let path = format!("/directories/{}/trusts/{}/reconcile", trust.directory, trust.trust);
            // The server does the work in one request: a spinner on a terminal meanwhile.
            let bar = (out == Output::Table && std::io::IsTerminal::is_terminal(&std::io::stderr())).then(|| {
                let b = indicatif::ProgressBar::new_spinner();
                b.set_message(if dry_run { "planning the reconciliation…" } else { "reconciling…" });
                b.enable_steady_tick(std::time::Duration::from_millis(120));
                b
            });
            let v = api.post_as::<ReconcileEnvelope>(&path, &ReconcileRequest { dry_run }).await;
            if let Some(b) = bar {
                b.finish_and_clear();
            }
            let v = v?;
            print_reconcile(out, &v);
            if v.reconcile.incomplete() {
                return Ok(ExitCode::from(1));
            }
        }
        SyncCmd::DeadLetters(DeadLetterCmd::List { directory }) => {
            let v: DeadLetterList = api.get_as(&format!("/directories/{directory}/sync/dead-letters")).await?;
            match out {
                Output::Json => output::json(&v),
                Output::Table => output::table(
                    &v.dead_letters,
                    &[
                        "trust",
                        "resource_type",
                        "+resource_id",
                        "display",
                        "attempts",
                        "last_error",
                        "+next_attempt_at",
                    ],
                ),
            }
        }
        SyncCmd::DeadLetters(DeadLetterCmd::Retry { directory, trust, resource }) => {
            let body = DeadLetterFilter { trust, resource_id: resource };
            let v: DeadLettersRetried =
                api.post_as(&format!("/directories/{directory}/sync/dead-letters/retry"), &body).await?;
            match out {
                Output::Json => output::json(&v),
                Output::Table => outln!("{} dead letter(s) queued again", v.retried),
            }
        }
        SyncCmd::DeadLetters(DeadLetterCmd::Discard { directory, trust, resource }) => {
            let body = DeadLetterFilter { trust, resource_id: resource };
            let v: DeadLettersDiscarded =
                api.post_as(&format!("/directories/{directory}/sync/dead-letters/discard"), &body).await?;
            match out {
                Output::Json => output::json(&v),
                Output::Table => outln!("{} dead letter(s) discarded", v.discarded),
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn print_target(out: Output, v: &TargetEnvelope) {
    match out {
        Output::Json => output::json(v),
        Output::Table => {
            let Some(t) = &v.target else {
                outln!("{}: no target configured", v.trust);
                return;
            };
            output::record(
                t,
                &[
                    "ref",
                    "base_url",
                    "auth",
                    "max_attempts",
                    "concurrency",
                    "consecutive_failures",
                    "last_error",
                    "updated_at",
                ],
            );
            outln!("{:<14} {}", "bulk:", bulk_text(t.bulk_max_operations));
            let schedule = Schedule {
                every_seconds: t.reconcile_every_seconds,
                dry_run: t.reconcile_dry_run,
                next_at: t.next_reconcile_at.as_deref(),
            };
            outln!("{:<14} {}", "reconcile:", schedule.text());
            outln!("{:<14} {}", "last run:", last_run_text(t.last_reconcile.as_ref()));
            outln!("{:<14} {}", "mapping:", t.mapping);
        }
    }
}

/// `auto`, `off` or `at most N operations per request`.
fn bulk_text(bulk_max_operations: Option<i64>) -> String {
    match bulk_max_operations {
        None => "auto".into(),
        Some(0) => "off".into(),
        Some(n) => format!("at most {n} operations per request"),
    }
}

/// A target's scheduled reconciliation.
struct Schedule<'a> {
    every_seconds: Option<i64>,
    dry_run: bool,
    next_at: Option<&'a str>,
}

impl Schedule<'_> {
    /// `every 1h (dry run), next 2026-…` or `off`.
    fn text(&self) -> String {
        let Some(secs) = self.every_seconds.and_then(|s| u64::try_from(s).ok()) else {
            return "off".into();
        };
        let every = humantime::format_duration(std::time::Duration::from_secs(secs));
        let dry = if self.dry_run { " (dry run: report only)" } else { "" };
        format!("every {every}{dry}, next {}", self.next_at.unwrap_or("-"))
    }
}

/// `succeeded at …: planned create=1 update=2, applied …` or the error of a failed run.
fn last_run_text(r: Option<&ReconcileRun>) -> String {
    let Some(r) = r else {
        return "-".into();
    };
    let kinds = |v: &std::collections::BTreeMap<String, u64>| {
        let parts: Vec<String> = v.iter().map(|(k, n)| format!("{k}={n}")).collect();
        if parts.is_empty() { "none".to_owned() } else { parts.join(" ") }
    };
    let outcome = r.outcome.as_str();
    let when = r.finished_at.as_deref().unwrap_or(&r.started_at);
    let c = r.counts.clone().unwrap_or_default();
    let mut text = format!("{outcome} at {when}");
    if outcome != "failed" && outcome != "running" {
        text.push_str(&format!("; planned {}", kinds(&c.planned)));
        if !c.dry_run {
            text.push_str(&format!("; applied {}", kinds(&c.applied)));
        }
        text.push_str(&format!("; orphans reported {}", c.orphans_reported));
    }
    if let Some(e) = &r.error {
        text.push_str(&format!("; {e}"));
    }
    text
}

fn print_reconcile(out: Output, v: &ReconcileEnvelope) {
    if out == Output::Json {
        output::json(v);
        return;
    }
    let r = &v.reconcile;
    let c = &r.counts;
    outln!(
        "{}{}: directory {} users, {} groups; target {} users, {} groups",
        r.trust,
        if r.dry_run { " (dry run: nothing changed)" } else { "" },
        c.directory_users,
        c.directory_groups,
        c.remote_users,
        c.remote_groups,
    );
    if r.actions.is_empty() {
        outln!("Nothing to do: the target agrees with the directory.");
    } else {
        // The detail, attribute by attribute, on one line.
        let rows: Vec<ReconcileAction> = r
            .actions
            .iter()
            .map(|a| {
                let detail = a.detail.as_object().map(|o| {
                    o.iter()
                        .map(|(k, v)| format!("{k}={}", v.as_str().map_or_else(|| v.to_string(), str::to_owned)))
                        .collect::<Vec<_>>()
                        .join(" ")
                });
                ReconcileAction { detail: json!(detail), ..a.clone() }
            })
            .collect();
        let mut cols = vec!["action", "resource_type", "display", "resource_id", "remote_id", "detail"];
        if !r.dry_run {
            cols.push("outcome");
        }
        output::table(&rows, &cols);
    }
    if !r.orphans.is_empty() {
        outln!("Orphans at the target (policy {}; left alone):", r.orphan_policy);
        output::table(&r.orphans, &["resource_type", "display", "remote_id", "active"]);
    }
    if !r.problems.is_empty() {
        outln!("Resources the mapping cannot produce:");
        output::table(&r.problems, &["resource_type", "resource_id", "message"]);
    }
    if let Some(d) = &r.delivery {
        outln!("Delivered: {}, retrying: {}, dead letters: {}", d.delivered, d.retried, d.dead_letters);
    }
}

fn print_status(out: Output, v: &SyncStatus) {
    if out == Output::Json {
        output::json(v);
        return;
    }
    outln!("Targets of {}:", v.directory);
    output::table(&v.targets, &["trust", "pending", "done", "dead_letters", "circuit", "last_error"]);
    let scheduled: Vec<Value> = v
        .targets
        .iter()
        .filter(|t| t.reconcile_every_seconds.is_some() || t.last_reconcile.is_some())
        .map(|t| {
            let schedule = Schedule {
                every_seconds: t.reconcile_every_seconds,
                dry_run: t.reconcile_dry_run,
                next_at: t.next_reconcile_at.as_deref(),
            };
            let last_run = last_run_text(t.last_reconcile.as_ref());
            json!({"trust": t.trust, "schedule": schedule.text(), "last_run": last_run})
        })
        .collect();
    if !scheduled.is_empty() {
        outln!("Scheduled reconciliation:");
        output::table(&scheduled, &["trust", "schedule", "last_run"]);
    }
    let d = &v.deprovisioning;
    outln!("Deprovisioning: {} complete, {} incomplete", d.complete, d.incomplete);
    let mut rows = Vec::new();
    for u in &d.users {
        for t in &u.targets {
            rows.push(json!({
                "user": u.user, "since": u.since, "trust": t.trust, "state": t.state,
                "confirmed_at": t.confirmed_at, "attempts": t.attempts, "last_error": t.last_error,
                "full_after_s": u.seconds_to_full_deprovisioning,
            }));
        }
    }
    output::table(
        &rows,
        &["user", "since", "trust", "state", "+confirmed_at", "attempts", "+full_after_s", "last_error"],
    );
    let active = &v.still_active;
    if active.is_empty() {
        outln!("No leaver has an account left to deprovision.");
    } else {
        outln!("Still to deprovision:");
        output::table(active, &["user", "trust", "state", "remote_id"]);
    }
}
