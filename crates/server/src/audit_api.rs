//! `GET /api/v1/audit/export` (JSON lines or CSV, streamed page by page, optionally
//! following new records) and `GET /api/v1/audit/sinks` (the streaming sinks' cursors).
//! Both for the `admin` and `auditor` roles.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use fedkey_api::audit::{AuditExportQuery, AuditSinks};
use fedkey_audit::{CSV_HEADER, Outcome, Record};
use fedkey_store::Store;
use fedkey_store::audit::AuditFilter;
use serde_json::json;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::admin::{Admin, Need, Target, doc, parse_time};
use crate::error::ApiError;

/// Records read per page of an export.
const PAGE: i64 = 1000;
/// How long one `follow` request stays open; the client asks again from its last record.
/// Kept under the default idle timeout, which ends a response still streaming after it.
pub const FOLLOW_FOR: Duration = Duration::from_secs(30);
/// How often a following export looks for new records.
const FOLLOW_POLL: Duration = Duration::from_millis(250);
/// Most records a `tail` may ask for.
const MAX_TAIL: i64 = 10_000;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(export)).routes(routes!(sinks))
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Format {
    Jsonl,
    Csv,
}

struct Export {
    filter: AuditFilter,
    format: Format,
    follow: bool,
}

async fn parse(store: &Store, q: AuditExportQuery) -> Result<Export, ApiError> {
    let format = match q.format.as_deref().unwrap_or("jsonl") {
        "jsonl" => Format::Jsonl,
        "csv" => Format::Csv,
        f => return Err(ApiError::invalid_value(format!("format {f:?} is not jsonl or csv"))),
    };
    let mut after = q.after.unwrap_or(0);
    if after < 0 {
        return Err(ApiError::invalid_value("after must not be negative"));
    }
    if let Some(n) = q.tail {
        if !(0..=MAX_TAIL).contains(&n) {
            return Err(ApiError::invalid_value(format!("tail must be between 0 and {MAX_TAIL}")));
        }
        let (head, _) = store.audit_head().await?;
        after = after.max(head - n);
    }
    let filter = AuditFilter {
        since: parse_time("since", &q.since)?,
        until: parse_time("until", &q.until)?,
        directory: q.directory,
        trust: q.trust,
        actor: q.actor,
        action: q.action,
        after_seq: Some(after),
        limit: PAGE,
    };
    Ok(Export { filter, format, follow: q.follow.unwrap_or(false) })
}

#[utoipa::path(get, path = "/audit/export", tag = "audit", params(AuditExportQuery), responses((status = 200, description = "the records as JSON lines or CSV", content((String = "application/x-ndjson"), (String = "text/csv")))))]
async fn export(
    a: Admin,
    State(s): State<AppState>,
    q: Result<Query<AuditExportQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let st = &s.store;
    let target = Target::default();
    a.require(st, Need::Audit, "audit.export", &target).await?;
    let parsed = match q {
        Ok(Query(q)) => parse(st, q).await,
        Err(e) => Err(ApiError::bad_request(e.body_text())),
    };
    let ex = match parsed {
        Ok(ex) => ex,
        Err(e) => {
            let d = json!({"code": e.code, "status": e.status.as_u16()});
            a.record(st, "audit.export", Outcome::Failure, &target, d).await?;
            return Err(e);
        }
    };
    // Without `follow`, the export is the log as it was when asked: up to the head now, so
    // its own `audit.export` record (and anything later) is not part of it.
    let upto = if ex.follow { None } else { Some(st.audit_head().await?.0) };
    let format = if ex.format == Format::Csv { "csv" } else { "jsonl" };
    // The read is on the record before any of it leaves.
    a.record(st, "audit.export", Outcome::Success, &target, json!({"format": format, "follow": ex.follow})).await?;
    let content_type = match ex.format {
        Format::Jsonl => "application/x-ndjson",
        Format::Csv => "text/csv; charset=utf-8",
    };
    let body = Body::from_stream(records(s.store.clone(), ex, upto));
    Ok(([(header::CONTENT_TYPE, content_type), (header::CACHE_CONTROL, "no-store")], body).into_response())
}

struct Cursor {
    store: Arc<Store>,
    ex: Export,
    header_sent: bool,
    /// The last record of an export that does not follow.
    upto: Option<i64>,
    /// When a following export stops.
    until: Option<tokio::time::Instant>,
}

/// The export's body, a page at a time. A database error mid-way aborts the response,
/// so a client never takes a cut export for a whole one.
fn records(
    store: Arc<Store>,
    ex: Export,
    upto: Option<i64>,
) -> impl futures_util::Stream<Item = Result<Bytes, std::io::Error>> {
    let until = ex.follow.then(|| tokio::time::Instant::now() + FOLLOW_FOR);
    let start = Cursor { store, ex, header_sent: false, upto, until };
    futures_util::stream::unfold(Some(start), |state| async move {
        let mut c = state?;
        if !c.header_sent && c.ex.format == Format::Csv {
            c.header_sent = true;
            return Some((Ok(Bytes::from_static(CSV_HEADER.as_bytes())), Some(c)));
        }
        loop {
            if c.upto.is_some_and(|u| c.ex.filter.after_seq.is_some_and(|a| a >= u)) {
                return None;
            }
            let page = match c.store.audit_records(&c.ex.filter).await {
                Ok(mut p) => {
                    if let Some(u) = c.upto {
                        p.retain(|r| r.seq <= u);
                        if p.is_empty() {
                            return None;
                        }
                    }
                    p
                }
                Err(e) => {
                    tracing::warn!(error = %e, "audit export stopped: the log could not be read");
                    return Some((Err(std::io::Error::other("the audit log could not be read")), None));
                }
            };
            if let Some(last) = page.last() {
                c.ex.filter.after_seq = Some(last.seq);
                let bytes = render(c.ex.format, &page);
                return Some((Ok(Bytes::from(bytes)), Some(c)));
            }
            match c.until {
                Some(t) if tokio::time::Instant::now() + FOLLOW_POLL < t => tokio::time::sleep(FOLLOW_POLL).await,
                _ => return None,
            }
        }
    })
}

fn render(format: Format, page: &[Record]) -> Vec<u8> {
    let mut out = Vec::with_capacity(page.len() * 400);
    for r in page {
        match format {
            Format::Jsonl => {
                out.extend_from_slice(r.to_json().to_string().as_bytes());
                out.push(b'\n');
            }
            Format::Csv => out.extend_from_slice(r.to_csv_row().as_bytes()),
        }
    }
    out
}

#[utoipa::path(get, path = "/audit/sinks", tag = "audit", responses((status = 200, body = AuditSinks)))]
async fn sinks(a: Admin, State(s): State<AppState>) -> Result<Json<AuditSinks>, ApiError> {
    let st = &s.store;
    a.read(st, Need::Audit, "audit.sinks", Target::default(), async {
        let (head, _) = st.audit_head().await?;
        let sinks = st.audit_sink_status().await?.iter().map(doc).collect::<Result<_, _>>()?;
        Ok(AuditSinks { head, sinks })
    })
    .await
}
