//! The directory browser (`/ui/directories/{d}`): a read-only, paged list of a
//! directory's users or groups with a SCIM filter box. The filter goes through the SCIM
//! crate's parser and the store's SQL translation, as `GET /scim/v2/{d}/Users?filter=`;
//! a filter the translation cannot express is refused with a clear message.

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use fedkey_scim::{filter, schema};
use fedkey_store::scim::ListQuery;
use serde::Deserialize;
use serde_json::Value;

use super::session::Console;
use super::view::{Nav, PageError, render, seg, trust_href, when};
use crate::AppState;

const PAGE_SIZE: i64 = 50;

#[derive(Deserialize, Default)]
pub struct BrowseQuery {
    #[serde(default, rename = "type")]
    kind: Option<String>,
    #[serde(default)]
    filter: String,
    #[serde(default)]
    page: Option<i64>,
}

pub struct ResourceRow {
    pub id: String,
    pub name: String,
    pub detail: String,
    pub active: String,
    pub groups: String,
    pub updated: String,
}

#[derive(Template)]
#[template(path = "ui/directory.html")]
struct DirectoryPage {
    nav: Nav,
    name: String,
    groups: bool,
    filter: String,
    error: Option<String>,
    rows: Vec<ResourceRow>,
    total: i64,
    page: i64,
    pages: i64,
    prev_href: Option<String>,
    next_href: Option<String>,
    users_href: String,
    groups_href: String,
    trusts: Vec<(String, String)>,
}

fn text(body: &Value, key: &str) -> String {
    body.get(key).and_then(Value::as_str).unwrap_or("").to_owned()
}

pub async fn page(
    c: Console,
    State(s): State<AppState>,
    Path(d): Path<String>,
    q: Result<Query<BrowseQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, PageError> {
    let Query(q) = q.map_err(|e| PageError::bad_request(e.body_text()))?;
    let st = &s.store;
    let dir = st.directory(&d).await?;
    let groups = q.kind.as_deref() == Some("Group");
    let rt_name = if groups { "Group" } else { "User" };
    let rt = schema::resource_type(rt_name)
        .ok_or_else(|| PageError::bad_request(format!("unknown resource type {rt_name}")))?;
    let page = q.page.unwrap_or(1).max(1);
    // A filter that does not parse or translate is shown as an error above an empty list.
    let sql_filter = match q.filter.trim() {
        "" => Ok(None),
        f => filter::parse(f)
            .map_err(|e| format!("invalid filter: {e}"))
            .and_then(|parsed| {
                st.scim_filter_sql(rt, &parsed)
                    .map_err(|e| format!("this filter cannot be used in the browser: {}", e.detail))
            })
            .map(Some),
    };
    let (error, total, rows) = match sql_filter {
        Err(e) => (Some(e), 0, Vec::new()),
        Ok(filter) => {
            let lq = ListQuery { filter, offset: (page - 1) * PAGE_SIZE, limit: PAGE_SIZE, ..Default::default() };
            let (total, rows) = st.scim_list(&dir.id, rt.id, &lq).await?;
            (None, total, rows)
        }
    };
    let rows = rows
        .iter()
        .map(|r| {
            let (name, detail) = if groups {
                (text(&r.body, "displayName"), format!("{} members", r.members.len()))
            } else {
                let display = text(&r.body, "displayName");
                (text(&r.body, "userName"), display)
            };
            ResourceRow {
                id: r.id.clone(),
                name,
                detail,
                active: match r.body.get("active").and_then(Value::as_bool) {
                    Some(true) => "yes".into(),
                    Some(false) => "no".into(),
                    None => "—".into(),
                },
                groups: r
                    .groups
                    .iter()
                    .map(|g| g.display.clone().unwrap_or_else(|| g.value.clone()))
                    .collect::<Vec<_>>()
                    .join(", "),
                updated: when(Some(r.updated_at)),
            }
        })
        .collect();
    let pages = ((total + PAGE_SIZE - 1) / PAGE_SIZE).max(1);
    let base = format!("/ui/directories/{}", seg(&d));
    let search = seg(q.filter.trim());
    let link = |p: i64| format!("{base}?type={rt_name}&filter={search}&page={p}");
    let trusts = st.list_trusts(Some(&d)).await?.iter().map(|t| (t.name.clone(), trust_href(&d, &t.name))).collect();
    render(&DirectoryPage {
        nav: c.nav("directories"),
        users_href: format!("{base}?type=User"),
        groups_href: format!("{base}?type=Group"),
        name: d,
        groups,
        filter: q.filter.clone(),
        error,
        rows,
        total,
        page,
        pages,
        prev_href: (page > 1).then(|| link(page - 1)),
        next_href: (page < pages).then(|| link(page + 1)),
        trusts,
    })
}
