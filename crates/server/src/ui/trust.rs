//! A trust's page: key versions on a timeline, rotation policy and history (step by
//! step, with each connector's delivery), connectors, trust material, policy, its
//! provisioning target, and the forms of the actions the signed-in role may take.

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use fedkey_core::{Direction, KeyState, TrustStatus};
use serde::Deserialize;
use serde_json::Value;

use super::session::{Console, Need};
use super::view::{self, Nav, PageError, render, trust_href, when};
use crate::AppState;
use crate::admin::trust_ref;

pub struct KeyRow {
    pub version: i64,
    pub state: String,
    pub created: String,
    pub created_by: String,
    pub activated: String,
    pub expires: String,
    pub revoked: String,
    pub last_used: String,
    /// Current, previous or pending: a version an operator may revoke.
    pub usable: bool,
}

pub struct DeliveryView {
    pub connector: String,
    pub at: String,
    pub receipt: String,
}

pub struct RotationView {
    pub version: i64,
    pub kind: String,
    pub step: String,
    pub attempts: i64,
    pub started: String,
    pub started_by: String,
    pub finished: String,
    pub next_attempt: String,
    pub last_error: String,
    pub deliveries: Vec<DeliveryView>,
}

pub struct ConnectorView {
    pub name: String,
    pub kind: String,
    pub last_success: String,
    pub last_failure: String,
    pub last_error: String,
}

pub struct MaterialView {
    pub version: i64,
    pub status: String,
    pub digest: String,
    pub fetched: String,
    pub expires: String,
}

#[derive(Template)]
#[template(path = "ui/trust.html")]
struct TrustPage {
    nav: Nav,
    notice: Option<&'static str>,
    directory: String,
    name: String,
    href: String,
    direction: String,
    inbound: bool,
    status: String,
    active: bool,
    peer_kind: String,
    description: String,
    scopes: String,
    privileged_groups: String,
    allowed_sources: String,
    rate_limit: String,
    keys: Vec<KeyRow>,
    policy: Vec<(String, String)>,
    next_rotation: String,
    rotations: Vec<RotationView>,
    connectors: Vec<ConnectorView>,
    material: Vec<MaterialView>,
    pending_material: bool,
    target: Option<String>,
}

#[derive(Deserialize, Default)]
pub struct DoneQuery {
    #[serde(default)]
    pub done: Option<String>,
}

/// A JSON value as one table cell.
fn cell(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "—".to_owned(),
        other => other.to_string(),
    }
}

fn list_or_dash(items: &[String]) -> String {
    if items.is_empty() { "—".to_owned() } else { items.join(", ") }
}

pub async fn page(
    c: Console,
    State(s): State<AppState>,
    Path((d, t)): Path<(String, String)>,
    Query(q): Query<DoneQuery>,
) -> Result<Response, PageError> {
    let st = &s.store;
    let r = trust_ref(&d, &t)?;
    let trust = st.trust(&r).await?;
    let now = st.now();
    let keys = st
        .list_keys(&r)
        .await?
        .iter()
        .rev()
        .map(|k| {
            let state = k.state_at(now);
            KeyRow {
                version: k.version,
                state: state.to_string(),
                created: when(Some(k.created_at)),
                created_by: k.created_by.clone(),
                activated: when(k.activated_at),
                expires: when(k.expires_at),
                revoked: when(k.revoked_at),
                last_used: when(k.last_used_at),
                usable: matches!(state, KeyState::Current | KeyState::Previous | KeyState::Pending),
            }
        })
        .collect();
    let policy_row = st.rotation_policy(&r).await?;
    let policy = match policy_row.as_ref().map(|p| serde_json::to_value(&p.policy)) {
        Some(Ok(Value::Object(m))) => m.iter().map(|(k, v)| (k.replace('_', " "), cell(v))).collect(),
        _ => Vec::new(),
    };
    let connectors_rows = st.list_connectors(&r).await?;
    let connector_name =
        |id: &str| connectors_rows.iter().find(|c| c.id == id).map(|c| c.name.clone()).unwrap_or_else(|| id.to_owned());
    let rotations = st
        .rotations(&r, 10)
        .await?
        .iter()
        .map(|x| RotationView {
            version: x.version,
            kind: x.kind.to_string(),
            step: x.step.to_string(),
            attempts: x.attempts,
            started: when(Some(x.started_at)),
            started_by: x.started_by.clone(),
            finished: when(x.finished_at),
            next_attempt: if x.is_active() { when(Some(x.next_attempt_at)) } else { "—".to_owned() },
            last_error: x.last_error.clone().unwrap_or_default(),
            deliveries: x
                .deliveries
                .iter()
                .map(|dl| DeliveryView {
                    connector: connector_name(&dl.connector_id),
                    at: when(Some(dl.delivered_at)),
                    receipt: dl.receipt.clone(),
                })
                .collect(),
        })
        .collect();
    let connectors = connectors_rows
        .iter()
        .map(|c| ConnectorView {
            name: c.name.clone(),
            kind: c.kind.clone(),
            last_success: when(c.last_success_at),
            last_failure: when(c.last_failure_at),
            last_error: c.last_error.clone().unwrap_or_default(),
        })
        .collect();
    let material: Vec<MaterialView> = st
        .material_versions(&r, 20)
        .await?
        .into_iter()
        .filter(|m| m.status == "current" || m.status == "pending")
        .map(|m| MaterialView {
            version: m.version,
            status: m.status,
            digest: m.digest,
            fetched: when(Some(m.fetched_at)),
            expires: when(m.expires_at),
        })
        .collect();
    let pending_material = material.iter().any(|m| m.status == "pending");
    let target = st.sync_target(&r).await?.map(|x| x.base_url);
    render(&TrustPage {
        nav: c.nav("overview"),
        notice: view::notice(q.done.as_deref()),
        href: trust_href(&trust.directory, &trust.name),
        directory: trust.directory.clone(),
        name: trust.name.clone(),
        direction: trust.direction.to_string(),
        inbound: trust.direction == Direction::Inbound,
        status: trust.status.to_string(),
        active: trust.status == TrustStatus::Active,
        peer_kind: trust.peer_kind.to_string(),
        description: trust.description.clone().unwrap_or_default(),
        scopes: list_or_dash(&trust.scopes.to_vec().iter().map(ToString::to_string).collect::<Vec<_>>()),
        privileged_groups: list_or_dash(&trust.policy.privileged_groups),
        allowed_sources: list_or_dash(&trust.policy.sources()),
        rate_limit: if trust.policy.rate_limit > 0 {
            format!("{} requests/second", trust.policy.rate_limit)
        } else {
            "none".to_owned()
        },
        keys,
        policy,
        next_rotation: when(policy_row.and_then(|p| p.next_rotation_at)),
        rotations,
        connectors,
        material,
        pending_material: pending_material && c.can(Need::Administer),
        target,
    })
}
