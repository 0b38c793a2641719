//! The audit log (`/ui/audit`): paged and filtered by actor, action, trust and time, the
//! chain head with the latest signed checkpoint, a chain verification on request, and an
//! export of the filtered records as JSON lines. Auditors and admins only, as in the API;
//! every read is itself audited (`audit.read`, `audit.verify`, `audit.export`).

use askama::Template;
use axum::extract::{Query, State};
use axum::http::HeaderValue;
use axum::http::header::{CONTENT_DISPOSITION, CONTENT_TYPE};
use axum::response::{IntoResponse, Response};
use fedkey_audit::Outcome;
use fedkey_core::Timestamp;
use fedkey_store::audit::AuditFilter;
use serde::Deserialize;
use serde_json::json;

use super::session::{Console, Need};
use super::view::{Nav, PageError, render, seg, when};
use crate::AppState;

const PAGE_SIZE: i64 = 50;
/// Most records one export holds; narrow the filter for more.
const EXPORT_LIMIT: usize = 100_000;

#[derive(Deserialize, Default, Clone)]
pub struct AuditQuery {
    #[serde(default)]
    actor: String,
    #[serde(default)]
    action: String,
    #[serde(default)]
    trust: String,
    #[serde(default)]
    since: String,
    #[serde(default)]
    until: String,
    #[serde(default)]
    after: Option<i64>,
    #[serde(default)]
    verify: Option<String>,
}

impl AuditQuery {
    /// The filter fields as a query string (without the cursor).
    fn query_string(&self) -> String {
        [
            ("actor", &self.actor),
            ("action", &self.action),
            ("trust", &self.trust),
            ("since", &self.since),
            ("until", &self.until),
        ]
        .iter()
        .filter(|(_, v)| !v.trim().is_empty())
        .map(|(k, v)| format!("{k}={}", seg(v.trim())))
        .collect::<Vec<_>>()
        .join("&")
    }
}

pub struct RecordRow {
    pub seq: i64,
    pub ts: String,
    pub actor: String,
    pub action: String,
    pub outcome: String,
    pub failed: bool,
    pub object: String,
    pub details: String,
}

pub struct ChainView {
    pub ok: bool,
    pub text: String,
}

#[derive(Template)]
#[template(path = "ui/audit.html")]
struct AuditPage {
    nav: Nav,
    q: AuditQuery,
    rows: Vec<RecordRow>,
    head_seq: i64,
    head_hash: String,
    checkpoint: String,
    chain: Option<ChainView>,
    next_href: Option<String>,
    latest_href: String,
    export_href: String,
    verify_href: String,
}

/// A time filter: RFC 3339, or what a `datetime-local` input sends (`2026-12-07T20:53`,
/// read as UTC).
fn parse_time(field: &str, s: &str) -> Result<Option<Timestamp>, PageError> {
    let s = s.trim();
    if s.is_empty() {
        return Ok(None);
    }
    Timestamp::parse_rfc3339(s)
        .or_else(|| Timestamp::parse_rfc3339(&format!("{s}:00Z")))
        .or_else(|| Timestamp::parse_rfc3339(&format!("{s}Z")))
        .map(Some)
        .ok_or_else(|| PageError::bad_request(format!("{field}: expected a time such as 2026-12-07T20:53 (UTC)")))
}

fn filter(q: &AuditQuery, limit: i64) -> Result<AuditFilter, PageError> {
    let opt = |s: &str| Some(s.trim().to_owned()).filter(|s| !s.is_empty());
    // `DIRECTORY/TRUST` or a trust name alone.
    let (directory, trust) = match q.trust.trim().split_once('/') {
        Some((d, t)) => (opt(d), opt(t)),
        None => (None, opt(&q.trust)),
    };
    Ok(AuditFilter {
        directory,
        trust,
        actor: opt(&q.actor),
        action: opt(&q.action),
        since: parse_time("since", &q.since)?,
        until: parse_time("until", &q.until)?,
        after_seq: q.after,
        limit,
    })
}

fn row(r: &fedkey_audit::Record) -> RecordRow {
    let object = match (&r.directory, &r.trust) {
        (Some(d), Some(t)) => format!("{d}/{t}"),
        (Some(d), None) => d.clone(),
        _ => String::new(),
    };
    let mut details = r.details.clone();
    if details.len() > 300 {
        let cut = (0..=300).rev().find(|i| details.is_char_boundary(*i)).unwrap_or(0);
        details.truncate(cut);
        details.push('…');
    }
    RecordRow {
        seq: r.seq,
        ts: when(Some(r.ts)),
        actor: r.actor.clone(),
        action: r.action.clone(),
        outcome: format!("{:?}", r.outcome).to_lowercase(),
        failed: r.outcome != Outcome::Success,
        object,
        details,
    }
}

/// Refuses (and audits) a read by a role that may not read the audit log.
async fn require_audit(c: &Console, s: &AppState, action: &str) -> Result<(), PageError> {
    if c.can(Need::Audit) {
        return Ok(());
    }
    let role = c.session.principal.role;
    c.record(
        &s.store,
        action,
        Outcome::Denied,
        (None, None),
        json!({"reason": "role", "role": role, "via": "console"}),
    )
    .await?;
    Err(PageError::forbidden(format!("role {role} may not read the audit log")))
}

pub async fn page(
    c: Console,
    State(s): State<AppState>,
    q: Result<Query<AuditQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, PageError> {
    require_audit(&c, &s, "audit.read").await?;
    let Query(q) = q.map_err(|e| PageError::bad_request(e.body_text()))?;
    let st = &s.store;
    let records = st.audit_records(&filter(&q, PAGE_SIZE)?).await?;
    c.record(st, "audit.read", Outcome::Success, (None, None), json!({"via": "console"})).await?;
    let state = st.audit_state().await?;
    let chain = if q.verify.is_some() {
        c.record(st, "audit.verify", Outcome::Success, (None, None), json!({"via": "console"})).await?;
        Some(match st.verify_audit().await? {
            Ok(rep) => ChainView {
                ok: true,
                text: format!("{} records and {} signed checkpoints verified", rep.records, rep.checkpoints),
            },
            Err(e) => ChainView { ok: false, text: format!("verification failed at record {}: {e}", e.seq) },
        })
    } else {
        None
    };
    let qs = q.query_string();
    let amp = if qs.is_empty() { "" } else { "&" };
    let next_href = (records.len() as i64 == PAGE_SIZE)
        .then(|| records.last().map(|r| format!("/ui/audit?{qs}{amp}after={}", r.seq)))
        .flatten();
    let latest_href = format!("/ui/audit?{qs}{amp}after={}", (state.head_seq - PAGE_SIZE).max(0));
    render(&AuditPage {
        nav: c.nav("audit"),
        rows: records.iter().map(row).collect(),
        head_seq: state.head_seq,
        head_hash: state.head_hash.clone(),
        checkpoint: match (state.last_checkpoint_size, state.last_checkpoint_at) {
            (Some(n), at) => format!("covers records 1–{n}, signed {}", when(at)),
            (None, _) => "no signed checkpoint yet".to_owned(),
        },
        chain,
        next_href,
        latest_href,
        export_href: format!("/ui/audit/export?{qs}"),
        verify_href: format!("/ui/audit?{qs}{amp}verify=1"),
        q,
    })
}

/// The filtered records as JSON lines (the export form of `fedkey audit export`).
pub async fn export(
    c: Console,
    State(s): State<AppState>,
    q: Result<Query<AuditQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, PageError> {
    require_audit(&c, &s, "audit.export").await?;
    let Query(mut q) = q.map_err(|e| PageError::bad_request(e.body_text()))?;
    let st = &s.store;
    let mut out = String::new();
    let mut n = 0;
    loop {
        let page = st.audit_records(&filter(&q, 1000)?).await?;
        for r in &page {
            out.push_str(&r.to_json().to_string());
            out.push('\n');
        }
        n += page.len();
        match page.last() {
            Some(last) if page.len() == 1000 && n < EXPORT_LIMIT => q.after = Some(last.seq),
            _ => break,
        }
    }
    c.record(st, "audit.export", Outcome::Success, (None, None), json!({"records": n, "via": "console"})).await?;
    let mut resp = out.into_response();
    let h = resp.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static("application/x-ndjson"));
    h.insert(CONTENT_DISPOSITION, HeaderValue::from_static("attachment; filename=\"fedkey-audit.jsonl\""));
    Ok(resp)
}
