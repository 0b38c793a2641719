//! The overview (`/ui`): health at a glance from the health model (the same report as
//! `GET /api/v1/health`), the directories, and the trusts, searchable and paged.

use std::time::Duration;

use askama::Template;
use axum::extract::{Query, State};
use axum::response::Response;
use fedkey_rotation::health::{self, Finding, HealthReport};
use serde::Deserialize;

use super::session::Console;
use super::view::{self, Nav, PageError, render, seg, trust_href, when};
use crate::AppState;

/// Keys expiring this soon are listed on the overview.
const EXPIRY_HORIZON: Duration = Duration::from_secs(14 * 24 * 3600);
/// Trusts per page of the overview's table.
const PAGE_SIZE: usize = 50;
/// Entries shown per health panel (the rest are counted): a thousand trusts without a
/// rotation policy must not make the page a thousand entries longer.
const PANEL_ITEMS: usize = 10;

/// One entry of a health panel, linking to where it is acted on.
pub struct Item {
    pub href: String,
    pub label: String,
    pub detail: String,
    pub severity: &'static str,
}

pub struct DirRow {
    pub name: String,
    pub href: String,
    pub trusts: i64,
    pub users: i64,
    pub groups: i64,
    pub targets: i64,
}

pub struct TrustRow {
    pub href: String,
    pub name: String,
    pub direction: String,
    pub status: String,
    pub version: String,
    pub expires: String,
    pub step: String,
}

#[derive(Template)]
#[template(path = "ui/overview.html")]
struct OverviewPage {
    nav: Nav,
    notice: Option<&'static str>,
    status: &'static str,
    generated: String,
    panels: Vec<Panel>,
    directories: Vec<DirRow>,
    trusts: Vec<TrustRow>,
    q: String,
    total: usize,
    page: usize,
    pages: usize,
    prev_href: Option<String>,
    next_href: Option<String>,
}

#[derive(Deserialize, Default)]
pub struct OverviewQuery {
    #[serde(default)]
    q: String,
    #[serde(default)]
    page: Option<usize>,
    #[serde(default)]
    done: Option<String>,
}

/// Where a finding is acted on: its trust's page, or the provisioning page for targets.
fn finding_item(f: &Finding) -> Item {
    let href = match f.trust.split_once('/') {
        Some(_) if f.scope == health::scope::SYNC_TARGET => format!("/ui/provisioning#target-{}", seg(&f.trust)),
        Some((d, t)) => trust_href(d, t),
        None if f.scope == health::scope::AUDIT => "/ui/audit".to_owned(),
        None => "/ui".to_owned(),
    };
    Item { href, label: f.object.clone(), detail: f.message.clone(), severity: f.severity.as_str() }
}

/// One panel of health at a glance.
pub struct Panel {
    pub id: &'static str,
    pub title: &'static str,
    pub empty: &'static str,
    pub items: Vec<Item>,
    /// Entries beyond the ones shown.
    pub more: usize,
    pub total: usize,
}

impl Panels {
    fn into_vec(self) -> Vec<Panel> {
        let p = |id, title, empty, mut items: Vec<Item>| {
            let total = items.len();
            items.truncate(PANEL_ITEMS);
            Panel { id, title, empty, more: total - items.len(), total, items }
        };
        vec![
            p("expiring", "Keys expiring within 14 days", "No key expires within 14 days.", self.expiring),
            p("rotations", "Failed or stalled rotations", "No rotation is failing.", self.rotations),
            p("material", "Trust material awaiting approval", "Nothing awaits approval.", self.material),
            p("targets", "Failing targets", "Every target is delivering.", self.targets),
            p("dead-letters", "Dead letters", "No dead letters.", self.dead_letters),
            p("other", "Other findings", "No other findings.", self.other),
        ]
    }
}

/// Sorts the report's findings into the overview's panels.
struct Panels {
    expiring: Vec<Item>,
    rotations: Vec<Item>,
    material: Vec<Item>,
    targets: Vec<Item>,
    dead_letters: Vec<Item>,
    other: Vec<Item>,
}

fn panels(report: &HealthReport) -> Panels {
    let horizon = report.generated_at.saturating_add(EXPIRY_HORIZON);
    let mut p = Panels {
        expiring: Vec::new(),
        rotations: Vec::new(),
        material: Vec::new(),
        targets: Vec::new(),
        dead_letters: Vec::new(),
        other: Vec::new(),
    };
    for t in &report.trusts {
        if let (Some(e), Some((d, n))) = (t.key_expires_at, t.trust.split_once('/'))
            && e <= horizon
        {
            let v = t.current_version.map(|v| format!("v{v}")).unwrap_or_default();
            let severity = if e <= report.generated_at { "critical" } else { "warning" };
            let detail = format!("key {v} expires {}", when(Some(e)));
            p.expiring.push(Item { href: trust_href(d, n), label: t.trust.clone(), detail, severity });
        }
    }
    for f in &report.findings {
        let item = finding_item(f);
        match f.code {
            "rotation_failing" | "rotation_stalled" | "emergency_rotation_undelivered" => p.rotations.push(item),
            "material_pending_approval" => p.material.push(item),
            "sync_target_failing" | "sync_lagging" => p.targets.push(item),
            "sync_dead_letters" => p.dead_letters.push(item),
            _ => p.other.push(item),
        }
    }
    p
}

pub async fn page(
    c: Console,
    State(s): State<AppState>,
    q: Result<Query<OverviewQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, PageError> {
    let Query(q) = q.map_err(|e| PageError::bad_request(e.body_text()))?;
    let st = &s.store;
    let report = health::check(st).await?;
    let mut directories = Vec::new();
    for d in st.list_directories().await? {
        let (_, n) = st.directory_contents(&d.name).await?;
        let href = format!("/ui/directories/{}", seg(&d.name));
        directories.push(DirRow {
            name: d.name,
            href,
            trusts: n.trusts,
            users: n.users,
            groups: n.groups,
            targets: n.targets,
        });
    }
    let needle = q.q.trim().to_lowercase();
    let all: Vec<_> = st
        .list_trusts(None)
        .await?
        .into_iter()
        .filter(|t| needle.is_empty() || format!("{}/{}", t.directory, t.name).to_lowercase().contains(&needle))
        .collect();
    let total = all.len();
    let pages = total.div_ceil(PAGE_SIZE).max(1);
    let page = q.page.unwrap_or(1).clamp(1, pages);
    let trusts = all
        .iter()
        .skip((page - 1) * PAGE_SIZE)
        .take(PAGE_SIZE)
        .map(|t| {
            let name = format!("{}/{}", t.directory, t.name);
            let h = report.trusts.iter().find(|h| h.trust == name);
            TrustRow {
                href: trust_href(&t.directory, &t.name),
                direction: t.direction.to_string(),
                status: t.status.to_string(),
                version: h.and_then(|h| h.current_version).map(|v| format!("v{v}")).unwrap_or_else(|| "—".into()),
                expires: when(h.and_then(|h| h.key_expires_at)),
                step: h.and_then(|h| h.rotation_step).map(|x| x.to_string()).unwrap_or_else(|| "—".into()),
                name,
            }
        })
        .collect();
    let search = seg(q.q.trim());
    let link = |p: usize| format!("/ui?q={search}&page={p}");
    let p = panels(&report);
    render(&OverviewPage {
        nav: c.nav("overview"),
        notice: view::notice(q.done.as_deref()),
        status: report.status.as_str(),
        generated: when(Some(report.generated_at)),
        panels: p.into_vec(),
        directories,
        trusts,
        q: q.q.clone(),
        total,
        page,
        pages,
        prev_href: (page > 1).then(|| link(page - 1)),
        next_href: (page < pages).then(|| link(page + 1)),
    })
}
