//! The console's actions. Each one has passed the guard (same origin, live session, CSRF
//! token), checks the role through [`Console::change`], and calls the same store,
//! rotation or sync function as the admin API, which audits it with the change.

use std::time::Duration;

use askama::Template;
use axum::Form;
use axum::extract::{Path, State};
use axum::http::HeaderValue;
use axum::http::StatusCode;
use axum::http::header::CACHE_CONTROL;
use axum::response::Response;
use fedkey_core::{KeyState, RotationKind, TrustStatus};
use fedkey_crypto::Secret;
use fedkey_store::ops::{DeadLetterFilter, RotateKey};
use fedkey_sync::ReconcileError;
use serde::Deserialize;
use zeroize::Zeroizing;

use super::session::{Console, Need};
use super::view::{Nav, PageError, done, render, trust_href};
use crate::AppState;
use crate::admin::{parse_duration, trust_ref};

type FormResult<T> = Result<Form<T>, axum::extract::rejection::FormRejection>;

fn form<T>(f: FormResult<T>) -> Result<T, PageError> {
    f.map(|Form(v)| v).map_err(|e| PageError::bad_request(format!("invalid form: {}", e.body_text())))
}

/// A key shown once after a rotation, or a reconcile plan.
#[derive(Template)]
#[template(path = "ui/result.html")]
struct ResultPage {
    nav: Nav,
    title: String,
    back: String,
    key: Option<String>,
    version: Option<i64>,
    plan: Option<Plan>,
}

pub struct Plan {
    pub summary: String,
    pub actions: Vec<(String, String, String, String)>,
    pub orphans: Vec<(String, String, String)>,
    pub problems: Vec<(String, String, String)>,
}

#[derive(Deserialize)]
pub struct RotateForm {
    #[serde(default)]
    overlap: String,
    /// The app-issued key of an outbound trust (the peer issues it).
    #[serde(default)]
    key: Zeroizing<String>,
}

/// Rotate now. A trust with connectors rotates through the engine (which delivers the new
/// version); otherwise a version is made at once and an inbound key is shown once.
pub async fn rotate(
    c: Console,
    State(s): State<AppState>,
    Path((d, t)): Path<(String, String)>,
    f: FormResult<RotateForm>,
) -> Result<Response, PageError> {
    let st = &s.store;
    let back = trust_href(&d, &t);
    let scope = (Some(d.as_str()), Some(t.as_str()));
    let outcome = c
        .change(st, Need::Operate, "key.rotate", scope, async {
            let r = trust_ref(&d, &t)?;
            let f = form(f)?;
            let overlap = match f.overlap.trim() {
                "" => Duration::from_secs(24 * 3600),
                o => parse_duration("overlap", o)?,
            };
            fedkey_core::rotation::check_overlap(overlap).map_err(PageError::bad_request)?;
            let via_engine = s.engine.is_some() && !st.list_connectors(&r).await?.is_empty();
            if via_engine {
                st.start_rotation(&c.actor(), &r, RotationKind::Manual, Some(overlap)).await?;
                return Ok(None);
            }
            let outbound_key = Some(f.key.trim()).filter(|k| !k.is_empty()).map(|k| Secret::new(k.to_owned()));
            let (kv, key) = st.rotate_key(&c.actor(), &r, RotateKey { overlap, outbound_key }).await?;
            Ok(Some((kv.version, key)))
        })
        .await?;
    match outcome {
        None => Ok(done(&back, "rotation_started")),
        Some((_, None)) => Ok(done(&back, "rotated")),
        Some((version, Some(key))) => {
            let page = ResultPage {
                nav: c.nav("overview"),
                title: format!("New key for {d}/{t}"),
                back,
                key: Some(key.expose().to_owned()),
                version: Some(version),
                plan: None,
            };
            let mut resp = render(&page)?;
            resp.headers_mut().insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
            Ok(resp)
        }
    }
}

#[derive(Deserialize)]
pub struct RevokeForm {
    version: i64,
    /// The trust's name, typed by the operator.
    #[serde(default)]
    confirm: String,
    /// `on` when the "revoke even the last usable key" box is ticked.
    #[serde(default)]
    force: Option<String>,
}

/// Revokes a version after the operator typed the trust's name; the last usable version is
/// refused (409) unless forced.
pub async fn revoke(
    c: Console,
    State(s): State<AppState>,
    Path((d, t)): Path<(String, String)>,
    f: FormResult<RevokeForm>,
) -> Result<Response, PageError> {
    let st = &s.store;
    let scope = (Some(d.as_str()), Some(t.as_str()));
    let kv = c
        .change(st, Need::Operate, "key.revoke", scope, async {
            let r = trust_ref(&d, &t)?;
            let f = form(f)?;
            if f.confirm.trim() != t {
                return Err(PageError::bad_request(format!(
                    "type the trust's name ({t}) to confirm the revocation; nothing was revoked"
                )));
            }
            if f.version <= 0 {
                return Err(PageError::bad_request("version must be a positive integer"));
            }
            Ok(st.revoke_version(&c.actor(), &r, f.version, f.force.is_some()).await?)
        })
        .await?;
    let notice = if kv.state == KeyState::Expired { "unchanged" } else { "revoked" };
    Ok(done(&trust_href(&d, &t), notice))
}

async fn set_status(c: Console, s: AppState, d: String, t: String, status: TrustStatus) -> Result<Response, PageError> {
    let st = &s.store;
    let (action, notice) =
        if status == TrustStatus::Active { ("trust.resume", "resumed") } else { ("trust.suspend", "suspended") };
    c.change(st, Need::Operate, action, (Some(&d), Some(&t)), async {
        Ok(st.set_trust_status(&c.actor(), &trust_ref(&d, &t)?, status).await?)
    })
    .await?;
    Ok(done(&trust_href(&d, &t), notice))
}

pub async fn suspend(
    c: Console,
    State(s): State<AppState>,
    Path((d, t)): Path<(String, String)>,
) -> Result<Response, PageError> {
    set_status(c, s, d, t, TrustStatus::Suspended).await
}

pub async fn resume(
    c: Console,
    State(s): State<AppState>,
    Path((d, t)): Path<(String, String)>,
) -> Result<Response, PageError> {
    set_status(c, s, d, t, TrustStatus::Active).await
}

/// Approving or rejecting trust material is a trust decision: admin only, as in the API.
async fn decide(c: Console, s: AppState, d: String, t: String, approve: bool) -> Result<Response, PageError> {
    let st = &s.store;
    let (action, notice) = if approve { ("material.approve", "approved") } else { ("material.reject", "rejected") };
    c.change(st, Need::Administer, action, (Some(&d), Some(&t)), async {
        let r = trust_ref(&d, &t)?;
        let Some(w) = &s.watchers else {
            return Err(PageError::new(StatusCode::SERVICE_UNAVAILABLE, "the trust-material watchers are not running"));
        };
        Ok(if approve { w.approve(&c.actor(), &r).await? } else { w.reject(&c.actor(), &r).await? })
    })
    .await?;
    Ok(done(&trust_href(&d, &t), notice))
}

pub async fn approve_material(
    c: Console,
    State(s): State<AppState>,
    Path((d, t)): Path<(String, String)>,
) -> Result<Response, PageError> {
    decide(c, s, d, t, true).await
}

pub async fn reject_material(
    c: Console,
    State(s): State<AppState>,
    Path((d, t)): Path<(String, String)>,
) -> Result<Response, PageError> {
    decide(c, s, d, t, false).await
}

#[derive(Deserialize)]
pub struct DeadLetterForm {
    #[serde(default)]
    trust: String,
    #[serde(default)]
    resource_id: String,
}

async fn act_on_dead_letters(
    c: Console,
    s: AppState,
    d: String,
    f: FormResult<DeadLetterForm>,
    retry: bool,
) -> Result<Response, PageError> {
    let st = &s.store;
    let (action, notice) =
        if retry { ("sync.dead_letter.retry", "retried") } else { ("sync.dead_letter.discard", "discarded") };
    c.change(st, Need::Operate, action, (Some(&d), None), async {
        let f = form(f)?;
        let trust = Some(f.trust.trim().to_owned()).filter(|x| !x.is_empty());
        if let Some(t) = &trust {
            trust_ref(&d, t)?;
        }
        let resource_id = Some(f.resource_id.trim().to_owned()).filter(|x| !x.is_empty());
        let filter = DeadLetterFilter { trust, resource_id };
        Ok(if retry {
            st.retry_dead_letters(&c.actor(), &d, &filter).await?
        } else {
            st.discard_dead_letters(&c.actor(), &d, &filter).await?
        })
    })
    .await?;
    Ok(done("/ui/provisioning", notice))
}

pub async fn retry_dead_letters(
    c: Console,
    State(s): State<AppState>,
    Path(d): Path<String>,
    f: FormResult<DeadLetterForm>,
) -> Result<Response, PageError> {
    act_on_dead_letters(c, s, d, f, true).await
}

pub async fn discard_dead_letters(
    c: Console,
    State(s): State<AppState>,
    Path(d): Path<String>,
    f: FormResult<DeadLetterForm>,
) -> Result<Response, PageError> {
    act_on_dead_letters(c, s, d, f, false).await
}

/// A reconcile dry run: what a real run would change at the target, nothing changed.
pub async fn reconcile_dry_run(
    c: Console,
    State(s): State<AppState>,
    Path((d, t)): Path<(String, String)>,
) -> Result<Response, PageError> {
    let st = &s.store;
    let Some(sync) = &s.sync else {
        return Err(PageError::new(StatusCode::SERVICE_UNAVAILABLE, "provisioning is not running"));
    };
    let report = c
        .change(st, Need::Operate, "sync.reconcile", (Some(&d), Some(&t)), async {
            let r = trust_ref(&d, &t)?;
            sync.reconcile(&c.actor(), &r, true).await.map_err(|e| match e {
                ReconcileError::NoTarget(_) => PageError::new(StatusCode::NOT_FOUND, e.to_string()),
                ReconcileError::Target(_) => PageError::new(StatusCode::BAD_GATEWAY, e.to_string()),
                ReconcileError::Suspended(_) => PageError::new(StatusCode::CONFLICT, e.to_string()),
                ReconcileError::Store(e) => e.into(),
            })
        })
        .await?;
    let opt = |v: &Option<String>| v.clone().unwrap_or_else(|| "—".to_owned());
    let n = &report.counts;
    let plan = Plan {
        summary: format!(
            "directory: {} users, {} groups · target: {} users, {} groups · {} changes, {} orphans, {} problems",
            n.directory_users,
            n.directory_groups,
            n.remote_users,
            n.remote_groups,
            report.actions.len(),
            report.orphans.len(),
            report.problems.len()
        ),
        actions: report
            .actions
            .iter()
            .map(|a| (a.action.to_owned(), a.resource_type.to_owned(), opt(&a.display), a.detail.to_string()))
            .collect(),
        orphans: report
            .orphans
            .iter()
            .map(|o| (o.resource_type.to_owned(), o.remote_id.clone(), opt(&o.display)))
            .collect(),
        problems: report
            .problems
            .iter()
            .map(|p| (p.resource_type.to_owned(), p.resource_id.clone(), p.message.clone()))
            .collect(),
    };
    render(&ResultPage {
        nav: c.nav("provisioning"),
        title: format!("Reconcile dry run for {d}/{t}"),
        back: trust_href(&d, &t),
        key: None,
        version: None,
        plan: Some(plan),
    })
}
