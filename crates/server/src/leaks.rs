//! `POST /api/v1/leaks`: someone saw a token where it should not be. Two formats:
//!
//! - GitHub's secret-scanning partner format: a JSON array of `{token, type, url, source}`,
//!   signed by GitHub (`Github-Public-Key-Identifier`, `Github-Public-Key-Signature`: base64
//!   of a DER ECDSA P-256 / SHA-256 signature over the raw body) with one of the keys GitHub
//!   publishes, which fedkey reads from a configured file. Answered in the partner protocol's
//!   shape, `[{token_hash, token_type, label}]`, so no candidate is ever echoed.
//! - A generic format for scanners and people, `{"findings": [{token, location}]}`,
//!   authenticated by an admin token with at least the operator role.
//!
//! Each candidate goes through [`Store::report_leak`] (lookup by verifier, the trust's leak
//! policy, an audit record). The endpoint has one rate limit per process, checked before
//! anything else.
//!
//! Also `PUT /api/v1/directories/{d}/trusts/{t}/leak-settings`: a trust's leak policy and
//! pending-version rule.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use fedkey_api::leaks::{GithubLabel, GithubMatch, LeakReport, LeakReportResult};
use fedkey_api::trusts::{LeakSettingsRequest, TrustEnvelope};
use fedkey_audit::Outcome;
use fedkey_crypto::ecdsa::P256PublicKey;
use fedkey_store::auth::RequestMeta;
use fedkey_store::ops::{LeakAction, LeakCandidate, LeakFinding};
use fedkey_store::{Actor, Store};
use serde::Deserialize;
use serde_json::json;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::admin::{Admin, Need, Target, doc, trust_envelope, trust_ref};
use crate::error::{ApiError, ErrorCode};
use crate::extract::ApiJson;
use crate::ratelimit::{RateLimiter, retry_after_secs};
use fedkey_api::TrustPath;
use fedkey_api::leaks::{LeakReportAnswer, LeakReportBody};

pub const GITHUB_KEY_ID_HEADER: &str = "github-public-key-identifier";
pub const GITHUB_SIGNATURE_HEADER: &str = "github-public-key-signature";
/// Most candidates in one report.
pub const MAX_CANDIDATES: usize = 100;
/// Reports per second this process accepts (burst the same), whatever their format.
pub const REPORTS_PER_SECOND: i64 = 10;
/// Longest candidate token considered; a fedkey token has 42 characters.
const MAX_TOKEN_CHARS: usize = 1024;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(report)).routes(routes!(set_leak_settings))
}

/// The leak endpoint's configuration and rate limit.
pub struct LeakIntake {
    github_keys: Vec<(String, P256PublicKey)>,
    limiter: RateLimiter,
}

impl LeakIntake {
    /// No GitHub keys: GitHub-format reports are refused (401); the generic format works.
    pub fn new() -> LeakIntake {
        LeakIntake { github_keys: Vec::new(), limiter: RateLimiter::new() }
    }

    /// Reads GitHub's key document (the shape of
    /// `https://api.github.com/meta/public_keys/secret_scanning`). Every listed key is
    /// accepted, current or not, as GitHub may still sign with the one it is retiring.
    pub fn with_github_keys(document: &str) -> Result<LeakIntake, String> {
        #[derive(Deserialize)]
        struct Doc {
            public_keys: Vec<Key>,
        }
        #[derive(Deserialize)]
        struct Key {
            key_identifier: String,
            key: String,
        }
        let doc: Doc = serde_json::from_str(document)
            .map_err(|e| format!("not GitHub's secret-scanning key document ({{\"public_keys\": [...]}}): {e}"))?;
        let mut keys = Vec::with_capacity(doc.public_keys.len());
        for k in doc.public_keys {
            let parsed = P256PublicKey::from_pem(&k.key).map_err(|e| format!("key {}: {e}", k.key_identifier))?;
            keys.push((k.key_identifier, parsed));
        }
        if keys.is_empty() {
            return Err("the document lists no public keys".into());
        }
        Ok(LeakIntake { github_keys: keys, limiter: RateLimiter::new() })
    }

    fn github_key(&self, id: &str) -> Option<&P256PublicKey> {
        self.github_keys.iter().find(|(k, _)| fedkey_crypto::ct_eq(k.as_bytes(), id.as_bytes())).map(|(_, k)| k)
    }
}

impl Default for LeakIntake {
    fn default() -> Self {
        LeakIntake::new()
    }
}

#[utoipa::path(post, path = "/leaks", tag = "leaks", request_body = LeakReportBody, responses((status = 200, body = LeakReportAnswer)))]
async fn report(State(s): State<AppState>, request: axum::extract::Request) -> Result<Response, ApiError> {
    let meta = request.extensions().get::<RequestMeta>().cloned().unwrap_or_default();
    let headers = request.headers().clone();
    if let Err(wait) = s.leaks.limiter.check("leaks", REPORTS_PER_SECOND) {
        let mut resp =
            ApiError::new(StatusCode::TOO_MANY_REQUESTS, ErrorCode::RateLimited, "too many leak reports; retry later")
                .into_response();
        if let Ok(v) = axum::http::HeaderValue::from_str(&retry_after_secs(wait).to_string()) {
            resp.headers_mut().insert(axum::http::header::RETRY_AFTER, v);
        }
        return Ok(resp);
    }
    let body: Bytes = axum::body::to_bytes(request.into_body(), crate::ADMIN_BODY_LIMIT)
        .await
        .map_err(|_| ApiError::bad_request(format!("the body must be at most {} bytes", crate::ADMIN_BODY_LIMIT)))?;
    if headers.contains_key(GITHUB_SIGNATURE_HEADER) || headers.contains_key(GITHUB_KEY_ID_HEADER) {
        github_report(&s, &meta, &headers, &body).await.map(IntoResponse::into_response)
    } else {
        generic_report(&s, meta, &headers, &body).await.map(IntoResponse::into_response)
    }
}

async fn github_report(
    s: &AppState,
    meta: &RequestMeta,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Json<Vec<GithubLabel>>, ApiError> {
    let actor = Actor::anonymous("github-secret-scanning".into(), meta);
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("");
    let key_id = header(GITHUB_KEY_ID_HEADER);
    let refusal = match s.leaks.github_key(key_id) {
        None => Some("unknown_key_identifier"),
        Some(k) if !k.verify_b64(body, header(GITHUB_SIGNATURE_HEADER)) => Some("bad_signature"),
        Some(_) => None,
    };
    if let Some(reason) = refusal {
        let shown: String = key_id.chars().take(80).collect();
        let ev = s
            .store
            .event(&actor, "leak.report", Outcome::Denied)
            .details(json!({"reporter": "github", "reason": reason, "key_identifier": shown}));
        s.store.audit.record(ev, None).await?;
        return Err(ApiError::unauthorized());
    }
    let matches: Vec<GithubMatch> = serde_json::from_slice(body)
        .map_err(|_| ApiError::bad_request("expected a JSON array of {token, type, url, source}"))?;
    check_count(matches.len())?;
    let mut out = Vec::with_capacity(matches.len());
    for m in &matches {
        let location = if m.source.is_empty() { m.url.clone() } else { format!("{} ({})", m.url, m.source) };
        let f = handle(s, &actor, &m.token, &location, "github").await?;
        out.push(GithubLabel {
            token_hash: token_hash(&m.token),
            token_type: m.token_type.clone(),
            label: if f.ours { "true_positive" } else { "false_positive" }.into(),
        });
    }
    Ok(Json(out))
}

async fn generic_report(
    s: &AppState,
    meta: RequestMeta,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Json<LeakReportResult>, ApiError> {
    let admin = Admin::authenticate(&s.store, headers, meta).await?;
    admin.require(&s.store, Need::Operate, "leak.report", &Target::default()).await?;
    let r: LeakReport = serde_json::from_slice(body)
        .map_err(|_| ApiError::bad_request("expected {\"findings\": [{\"token\": …, \"location\": …}]}"))?;
    check_count(r.findings.len())?;
    let actor = admin.actor();
    let mut out = Vec::with_capacity(r.findings.len());
    let mut ours = 0;
    for f in &r.findings {
        let found = handle(s, &actor, &f.token, &f.location, "report").await?;
        ours += u64::from(found.ours);
        let mut v = doc(&found)?;
        v["token_hash"] = json!(token_hash(&f.token));
        out.push(v);
    }
    Ok(Json(LeakReportResult { findings: out, ours }))
}

fn check_count(n: usize) -> Result<(), ApiError> {
    if n == 0 || n > MAX_CANDIDATES {
        return Err(ApiError::bad_request(format!("a report holds 1 to {MAX_CANDIDATES} candidates")));
    }
    Ok(())
}

/// One candidate: matched, acted on, audited; an alert for every one of ours.
async fn handle(
    s: &AppState,
    actor: &Actor,
    token: &str,
    location: &str,
    reporter: &str,
) -> Result<LeakFinding, ApiError> {
    // A candidate longer than any token cannot be ours; it is judged on a prefix only so
    // the audit fingerprint stays cheap.
    let token = if token.len() > MAX_TOKEN_CHARS { &token[..floor(token, MAX_TOKEN_CHARS)] } else { token };
    let f = s.store.report_leak(actor, &LeakCandidate { token, location, reporter }).await?;
    if f.ours
        && f.action != LeakAction::AlreadyDead
        && let Some(engine) = &s.engine
    {
        let details = json!({
            "trust": f.trust, "version": f.version, "admin_token": f.admin_token, "action": f.action,
            "location": location.chars().take(500).collect::<String>(), "fingerprint": f.fingerprint,
            "reporter": reporter,
        });
        engine.alerts().raise(fedkey_rotation::AlertKind::LeakReported, details).await;
    }
    Ok(f)
}

/// The largest char boundary at or below `max`.
fn floor(s: &str, max: usize) -> usize {
    (0..=max).rev().find(|i| s.is_char_boundary(*i)).unwrap_or(0)
}

/// The partner protocol's `token_hash`: hex SHA-256 of the candidate (what fedkey stores).
fn token_hash(token: &str) -> String {
    hex::encode(fedkey_crypto::sha256(token.as_bytes()))
}

/// Changes how a trust answers a leak and when its pending versions authenticate; only the
/// fields given change. Admin only, like the trust policy.
#[utoipa::path(put, path = "/directories/{d}/trusts/{t}/leak-settings", tag = "trusts", params(TrustPath), request_body = LeakSettingsRequest, responses((status = 200, body = TrustEnvelope)))]
async fn set_leak_settings(
    a: Admin,
    State(s): State<AppState>,
    Path((d, t)): Path<(String, String)>,
    body: Result<ApiJson<LeakSettingsRequest>, ApiError>,
) -> Result<Json<TrustEnvelope>, ApiError> {
    let st: &Store = &s.store;
    let trust = a
        .change(st, Need::Administer, "trust.leak_settings", Target::trust(&d, &t), async {
            let r = trust_ref(&d, &t)?;
            let ApiJson(b) = body?;
            Ok(st.set_trust_leak_settings(&a.actor(), &r, b.leak_policy, b.pending_auth).await?)
        })
        .await?;
    Ok(trust_envelope(&trust))
}
