//! Gauges read from the health model at scrape time: per trust, per sync target, per
//! connector, the outbox and the audit log. Each family is written with HELP and TYPE even
//! when it has no sample (no trust yet), so the page always lists the same families.

use std::fmt::Write as _;

use fedkey_core::Timestamp;
use fedkey_rotation::health::{HealthReport, Severity};

use super::MAX_OBJECTS;

pub(super) fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// A label value as the text format wants it: `\`, `"` and newlines escaped.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

fn secs(t: Timestamp) -> f64 {
    t.0 as f64 / 1e6
}

fn age(now: Timestamp, t: Timestamp) -> f64 {
    ((now.0 - t.0).max(0) as f64) / 1e6
}

/// One labelled family: HELP, TYPE, then at most [`MAX_OBJECTS`] samples.
struct Family<'a> {
    out: &'a mut String,
    name: &'static str,
    written: usize,
    dropped: &'a mut usize,
}

impl<'a> Family<'a> {
    fn new(out: &'a mut String, dropped: &'a mut usize, name: &'static str, help: &str) -> Family<'a> {
        header(out, name, "gauge", help);
        Family { out, name, written: 0, dropped }
    }

    fn sample(&mut self, labels: &[(&str, &str)], value: f64) {
        if self.written >= MAX_OBJECTS {
            *self.dropped += 1;
            return;
        }
        self.written += 1;
        let labels: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{}\"", escape(v))).collect();
        let labels = if labels.is_empty() { String::new() } else { format!("{{{}}}", labels.join(",")) };
        let _ = writeln!(self.out, "{}{labels} {value}", self.name);
    }
}

/// Writes every health-model family; with `report` absent (the store could not be read)
/// the families are empty and `fedkey_health_check_success` is 0.
pub(super) fn render(out: &mut String, report: Option<&HealthReport>, now: Timestamp) {
    let mut dropped = 0usize;
    let mut f = Family::new(out, &mut dropped, "fedkey_health_check_success", "1 when the health model could be read.");
    f.sample(&[], if report.is_some() { 1.0 } else { 0.0 });
    let (no_trusts, no_targets, no_connectors) = (Vec::new(), Vec::new(), Vec::new());
    let (trusts, targets, connectors) =
        report.map_or((&no_trusts, &no_targets, &no_connectors), |r| (&r.trusts, &r.targets, &r.connectors));

    let mut f = Family::new(
        out,
        &mut dropped,
        "fedkey_health_findings",
        "Health findings (what `fedkey doctor` lists), by severity.",
    );
    for s in Severity::ALL.into_iter().filter(|s| *s != Severity::Ok) {
        f.sample(&[("severity", s.as_str())], report.map_or(0, |r| r.count(s)) as f64);
    }

    let mut f = Family::new(
        out,
        &mut dropped,
        "fedkey_key_expiry_timestamp_seconds",
        "When the current key of a trust stops authenticating, or else reaches its rotation policy's age (Unix seconds).",
    );
    for t in trusts {
        if let Some(e) = t.key_expires_at {
            f.sample(&[("trust", &t.trust)], secs(e));
        }
    }
    let mut f = Family::new(
        out,
        &mut dropped,
        "fedkey_trust_material_age_seconds",
        "Age of a trust's current trust material (trusts with a material source).",
    );
    for t in trusts {
        if let Some(at) = t.material_fetched_at {
            f.sample(&[("trust", &t.trust)], age(now, at));
        }
    }

    let mut f = Family::new(
        out,
        &mut dropped,
        "fedkey_connector_last_success_timestamp_seconds",
        "Last successful key delivery through a rotation connector (Unix seconds); absent until the first.",
    );
    for c in connectors {
        if let Some(at) = c.last_success_at {
            f.sample(&[("trust", &c.trust), ("connector", &c.connector)], secs(at));
        }
    }

    let q = report.map(|r| &r.outbox);
    let mut f = Family::new(
        out,
        &mut dropped,
        "fedkey_outbox_pending",
        "Directory changes in the transactional outbox not yet fanned out to the sync targets.",
    );
    f.sample(&[], q.map_or(0, |q| q.pending) as f64);
    let mut f = Family::new(
        out,
        &mut dropped,
        "fedkey_outbox_oldest_age_seconds",
        "Age of the oldest change in the outbox (0 when empty).",
    );
    f.sample(&[], q.and_then(|q| q.oldest_at).map_or(0.0, |t| age(now, t)));

    let mut f = Family::new(
        out,
        &mut dropped,
        "fedkey_sync_pending",
        "Changes waiting for delivery to a sync target (due now or retrying later).",
    );
    for t in targets {
        f.sample(&[("target", &t.target)], t.queue.pending as f64);
    }
    let mut f = Family::new(
        out,
        &mut dropped,
        "fedkey_sync_oldest_pending_age_seconds",
        "Time since the oldest waiting change of a sync target was queued or last attempted (0 when none waits).",
    );
    for t in targets {
        f.sample(&[("target", &t.target)], t.queue.oldest_pending_since.map_or(0.0, |s| age(now, s)));
    }
    let mut f = Family::new(
        out,
        &mut dropped,
        "fedkey_dead_letters",
        "Dead letters of a sync target: changes that will not be delivered until an operator retries them.",
    );
    for t in targets {
        f.sample(&[("target", &t.target)], t.queue.dead_letters as f64);
    }
    let mut f = Family::new(
        out,
        &mut dropped,
        "fedkey_sync_last_success_timestamp_seconds",
        "Last confirmed delivery to a sync target (Unix seconds); absent until the first.",
    );
    for t in targets {
        if let Some(at) = t.queue.last_success_at {
            f.sample(&[("target", &t.target)], secs(at));
        }
    }
    let mut f = Family::new(
        out,
        &mut dropped,
        "fedkey_sync_consecutive_failures",
        "Consecutive failed delivery rounds of a sync target (outages; the circuit opens at the breaker threshold).",
    );
    for t in targets {
        f.sample(&[("target", &t.target)], t.consecutive_failures as f64);
    }

    let a = report.map(|r| &r.audit);
    let mut f = Family::new(out, &mut dropped, "fedkey_audit_chain_head", "Sequence number of the audit chain's head.");
    if let Some(a) = a {
        f.sample(&[], a.state.head_seq as f64);
    }
    let mut f = Family::new(
        out,
        &mut dropped,
        "fedkey_audit_checkpoint_age_seconds",
        "Age of the last signed audit checkpoint; absent before the first.",
    );
    if let Some(at) = a.and_then(|a| a.state.last_checkpoint_at) {
        f.sample(&[], age(now, at));
    }
    let mut f = Family::new(
        out,
        &mut dropped,
        "fedkey_audit_uncheckpointed_records",
        "Audit records after the last signed checkpoint.",
    );
    if let Some(a) = a {
        f.sample(&[], (a.state.head_seq - a.state.last_checkpoint_size.unwrap_or(0)).max(0) as f64);
    }

    let total = dropped;
    header(
        out,
        "fedkey_metrics_objects_dropped",
        "gauge",
        "Samples left out of this page because a family reached its object cap.",
    );
    let _ = writeln!(out, "fedkey_metrics_objects_dropped {total}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_family_has_help_and_type_without_a_report() {
        let mut out = String::new();
        render(&mut out, None, Timestamp(0));
        for name in ["fedkey_dead_letters", "fedkey_key_expiry_timestamp_seconds", "fedkey_outbox_pending"] {
            assert!(out.contains(&format!("# HELP {name} ")), "{out}");
            assert!(out.contains(&format!("# TYPE {name} gauge")), "{out}");
        }
        assert!(out.contains("fedkey_health_check_success 0\n"), "{out}");
        assert!(out.contains("fedkey_outbox_pending 0\n"));
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }

    #[test]
    fn a_family_stops_at_the_cap() {
        let mut out = String::new();
        let mut dropped = 0;
        let mut f = Family::new(&mut out, &mut dropped, "fedkey_x", "x");
        for i in 0..MAX_OBJECTS + 3 {
            f.sample(&[("trust", &i.to_string())], 1.0);
        }
        assert_eq!(dropped, 3);
        assert_eq!(out.lines().filter(|l| l.starts_with("fedkey_x{")).count(), MAX_OBJECTS);
    }
}
