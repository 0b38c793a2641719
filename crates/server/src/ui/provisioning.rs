//! Outbound provisioning (`/ui/provisioning`): per target its state, outbox depth, lag
//! and dead letters with their cause, and the deprovisioning report (who was removed
//! where, and when).

use askama::Template;
use axum::extract::{Query, State};
use axum::response::Response;

use super::session::Console;
use super::trust::DoneQuery;
use super::view::{self, Nav, PageError, render, seg, trust_href, when};
use crate::AppState;

pub struct TargetView {
    pub anchor: String,
    pub trust: String,
    pub href: String,
    pub url: String,
    pub state: &'static str,
    pub failures: i64,
    pub last_error: String,
    pub pending: i64,
    pub dead: i64,
    pub lag: String,
    pub last_success: String,
}

pub struct DeadLetterView {
    pub trust: String,
    pub trust_name: String,
    pub resource: String,
    pub resource_id: String,
    pub attempts: i64,
    pub cause: String,
    pub since: String,
}

pub struct LeaverView {
    pub user: String,
    pub trust: String,
    pub since: String,
    pub removed: String,
    pub state: &'static str,
    pub last_error: String,
}

pub struct DirectorySection {
    pub name: String,
    pub targets: Vec<TargetView>,
    pub dead_letters: Vec<DeadLetterView>,
    pub leavers: Vec<LeaverView>,
}

#[derive(Template)]
#[template(path = "ui/provisioning.html")]
struct ProvisioningPage {
    nav: Nav,
    notice: Option<&'static str>,
    outbox: i64,
    directories: Vec<DirectorySection>,
}

/// "3m 20s" of a duration in microseconds.
fn age(micros: i64) -> String {
    let secs = (micros.max(0) / 1_000_000) as u64;
    humantime::format_duration(std::time::Duration::from_secs(secs)).to_string()
}

pub async fn page(c: Console, State(s): State<AppState>, Query(q): Query<DoneQuery>) -> Result<Response, PageError> {
    let st = &s.store;
    let now = st.now();
    let queues = st.target_queues().await?;
    let mut directories = Vec::new();
    for d in st.list_directories().await? {
        let targets = st.sync_targets(Some(&d.name)).await?;
        if targets.is_empty() {
            continue;
        }
        let targets = targets
            .iter()
            .map(|t| {
                let queue = queues.iter().find(|q| q.trust_id == t.trust_id);
                let state = match t.circuit_open_until {
                    _ if !t.active => "inactive",
                    Some(u) if u > now => "circuit open",
                    _ if t.consecutive_failures > 0 => "failing",
                    _ => "healthy",
                };
                let name = t.trust.to_string();
                TargetView {
                    anchor: format!("target-{}", seg(&name)),
                    href: trust_href(&t.trust.directory, &t.trust.trust),
                    trust: name,
                    url: t.base_url.clone(),
                    state,
                    failures: t.consecutive_failures,
                    last_error: t.last_error.clone().unwrap_or_default(),
                    pending: queue.map_or(0, |q| q.pending),
                    dead: queue.map_or(0, |q| q.dead_letters),
                    lag: queue
                        .and_then(|q| q.oldest_pending_since)
                        .map(|o| age(now.0 - o.0))
                        .unwrap_or_else(|| "—".to_owned()),
                    last_success: when(queue.and_then(|q| q.last_success_at)),
                }
            })
            .collect();
        let dead_letters = st
            .sync_work_of(&d.name, Some("dead"))
            .await?
            .into_iter()
            .map(|w| DeadLetterView {
                resource: format!("{} {}", w.resource_type, w.display.clone().unwrap_or_else(|| w.resource_id.clone())),
                trust: w.trust,
                trust_name: w.trust_name,
                resource_id: w.resource_id,
                attempts: w.attempts,
                cause: w.last_error.unwrap_or_else(|| "no error recorded".to_owned()),
                since: when(Some(w.next_attempt_at)),
            })
            .collect();
        let leavers = st
            .sync_leavers(&d.name)
            .await?
            .into_iter()
            .map(|w| LeaverView {
                user: w.display.clone().unwrap_or_else(|| w.resource_id.clone()),
                trust: w.trust.clone(),
                since: when(w.leaver_since),
                removed: when(w.deprovisioned_at),
                state: if w.deprovisioned_at.is_some() {
                    "removed"
                } else if w.status == "dead" {
                    "dead letter"
                } else {
                    "in progress"
                },
                last_error: if w.deprovisioned_at.is_none() { w.last_error.unwrap_or_default() } else { String::new() },
            })
            .collect();
        directories.push(DirectorySection { name: d.name, targets, dead_letters, leavers });
    }
    render(&ProvisioningPage {
        nav: c.nav("provisioning"),
        notice: view::notice(q.done.as_deref()),
        outbox: st.outbox_len().await?,
        directories,
    })
}
