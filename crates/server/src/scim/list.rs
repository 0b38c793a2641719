//! Lists and searches (RFC 7644 §3.4.2, §3.4.3): `GET /Users`, `GET /Groups`,
//! `POST /Users/.search`, `POST /Groups/.search` and the root `POST /.search`.
//!
//! - `filter` is parsed and type-checked against the schema (400 `invalidFilter`), then
//!   translated to SQL; when the translator cannot express it (or `sortBy`), the
//!   directory's resources of that type are scanned and filtered, sorted and paged in
//!   memory with the same semantics (`fedkey_scim::eval`), up to [`SCAN_LIMIT`]
//!   resources (400 `tooMany` beyond). The root search always works in memory.
//! - `startIndex` is 1-based (values below 1 mean 1); `count` defaults to and is capped
//!   at [`MAX_RESULTS`], 0 returns only `totalResults`. Unknown parameters are ignored.
//! - Default order: creation time, then id (stable across pages).

use std::cmp::Ordering;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use fedkey_core::Scope;
use fedkey_scim::eval::{self, CompiledFilter};
use fedkey_scim::filter::{self, AttrPath, Filter};
use fedkey_scim::resource::{parse_attr_list, parse_attr_path, project};
use fedkey_scim::schema::ResourceTypeDef;
use fedkey_scim::{ScimError, ScimType};
use fedkey_store::scim::{ListQuery, StoredResource};
use fedkey_store::scim_sql;
use serde_json::{Value, json};

use super::body::ScimBody;
use super::discovery::LIST_RESPONSE;
use super::present::present;
use super::resources::kind;
use super::{Ctx, MAX_RESULTS, ScimResponse, scim_json};
use crate::AppState;

type Result<T> = std::result::Result<T, ScimResponse>;

/// Most resources an in-memory search scans.
pub const SCAN_LIMIT: i64 = 20_000;

#[derive(Debug, Default)]
struct ListParams {
    filter: Option<String>,
    sort_by: Option<String>,
    descending: bool,
    /// 1-based.
    start_index: i64,
    count: usize,
    attributes: Vec<AttrPath>,
    excluded: Vec<AttrPath>,
}

fn parse_int(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64().or_else(|| n.as_f64().map(|f| f as i64)),
        // Numbers too large for an i64 (and decimals) are clamped as JSON numbers are.
        Value::String(s) => {
            let s = s.trim();
            s.parse().ok().or_else(|| s.parse::<f64>().ok().filter(|f| f.is_finite()).map(|f| f as i64))
        }
        _ => None,
    }
}

impl ListParams {
    /// From `(name, value)` pairs, names case-insensitive; values are JSON (strings for
    /// a query string).
    fn from_pairs<'a>(pairs: impl Iterator<Item = (&'a str, &'a Value)>) -> ListParams {
        let mut p = ListParams { start_index: 1, count: MAX_RESULTS, ..Default::default() };
        for (k, v) in pairs {
            let list = |v: &Value| match v {
                Value::String(s) => parse_attr_list(s),
                Value::Array(a) => a.iter().filter_map(Value::as_str).flat_map(parse_attr_list).collect(),
                _ => Vec::new(),
            };
            match k.to_ascii_lowercase().as_str() {
                "filter" => p.filter = v.as_str().map(str::to_owned).filter(|f| !f.trim().is_empty()),
                "sortby" => p.sort_by = v.as_str().map(str::to_owned).filter(|f| !f.trim().is_empty()),
                "sortorder" => p.descending = v.as_str().is_some_and(|o| o.trim().eq_ignore_ascii_case("descending")),
                "startindex" => {
                    if let Some(n) = parse_int(v) {
                        p.start_index = n.max(1);
                    }
                }
                "count" => {
                    if let Some(n) = parse_int(v) {
                        p.count = usize::try_from(n.max(0)).unwrap_or(0).min(MAX_RESULTS);
                    }
                }
                "attributes" => p.attributes.extend(list(v)),
                "excludedattributes" => p.excluded.extend(list(v)),
                _ => {}
            }
        }
        p
    }

    fn from_query(q: &[(String, String)]) -> ListParams {
        let pairs: Vec<(&str, Value)> = q.iter().map(|(k, v)| (k.as_str(), Value::String(v.clone()))).collect();
        ListParams::from_pairs(pairs.iter().map(|(k, v)| (*k, v)))
    }

    fn from_body(b: &Value) -> ListParams {
        match b.as_object() {
            Some(m) => ListParams::from_pairs(m.iter().map(|(k, v)| (k.as_str(), v))),
            None => ListParams::from_pairs(std::iter::empty()),
        }
    }
}

fn parse_filter(f: &str) -> std::result::Result<Filter, ScimError> {
    filter::parse(f).map_err(|e| ScimError::new(400, Some(ScimType::InvalidFilter), e.to_string()))
}

fn invalid_filter(mut e: ScimError) -> ScimError {
    if e.status_code() == 400 && e.scim_type.is_none() {
        e.scim_type = Some(ScimType::InvalidFilter);
    }
    e
}

fn sort_path(rt: &ResourceTypeDef, s: &str) -> std::result::Result<AttrPath, ScimError> {
    let p = parse_attr_path(s)?;
    eval::sort_value(rt, &json!({}), &p)?;
    Ok(p)
}

/// Reads every resource of a type (for in-memory searches), in the default order.
async fn scan(s: &AppState, directory_id: &str, rt: &str) -> Result<Vec<StoredResource>> {
    let mut out = Vec::new();
    loop {
        let q = ListQuery { offset: out.len() as i64, limit: 1000, ..Default::default() };
        let (total, page) = s.store.scim_list(directory_id, rt, &q).await?;
        if total > SCAN_LIMIT {
            return Err(ScimResponse(ScimError::new(
                400,
                Some(ScimType::TooMany),
                format!("this search would scan more than {SCAN_LIMIT} resources; narrow the filter"),
            )));
        }
        let done = page.is_empty() || (out.len() + page.len()) as i64 >= total;
        out.extend(page);
        if done {
            return Ok(out);
        }
    }
}

/// A presented resource with what the default order needs.
struct Row {
    rt: &'static ResourceTypeDef,
    created: i64,
    id: String,
    json: Value,
}

fn sort_rows(rows: &mut [Row], sort: Option<&AttrPath>, descending: bool) {
    rows.sort_by(|a, b| {
        let primary = match sort {
            Some(p) => {
                let va = eval::sort_value(a.rt, &a.json, p).ok();
                let vb = eval::sort_value(b.rt, &b.json, p).ok();
                match (va, vb) {
                    (Some((def, x)), Some((_, y))) => eval::compare_values(def, x, y),
                    (Some(_), None) => Ordering::Less,
                    (None, Some(_)) => Ordering::Greater,
                    (None, None) => Ordering::Equal,
                }
            }
            None => Ordering::Equal,
        };
        let o = primary.then(a.created.cmp(&b.created)).then_with(|| a.id.cmp(&b.id));
        if descending { o.reverse() } else { o }
    });
}

fn list_response(total: i64, start_index: i64, resources: Vec<Value>) -> Response {
    scim_json(
        StatusCode::OK,
        &json!({
            "schemas": [LIST_RESPONSE],
            "totalResults": total,
            "startIndex": start_index,
            "itemsPerPage": resources.len(),
            "Resources": resources,
        }),
    )
}

/// One page of `rows` (already filtered and sorted).
fn page(rows: Vec<Row>, p: &ListParams) -> Response {
    let total = rows.len() as i64;
    let skip = usize::try_from(p.start_index - 1).unwrap_or(usize::MAX);
    let items =
        rows.into_iter().skip(skip).take(p.count).map(|r| project(r.rt, &r.json, &p.attributes, &p.excluded)).collect();
    list_response(total, p.start_index, items)
}

async fn list(s: AppState, ctx: Ctx, rt_name: &str, p: ListParams) -> Result<Response> {
    let (rt, read, _) = kind(rt_name);
    ctx.require(&s, read, &format!("list {}s", rt.id)).await?;
    let filter = p.filter.as_deref().map(parse_filter).transpose()?;
    let compiled: Option<CompiledFilter> =
        filter.as_ref().map(|f| eval::compile(rt, f)).transpose().map_err(invalid_filter)?;
    let sort = p.sort_by.as_deref().map(|x| sort_path(rt, x)).transpose()?;
    let backend = s.store.db.backend;
    let sql_filter = filter.as_ref().map(|f| scim_sql::translate(backend, rt, f)).transpose();
    let sql_order = sort.as_ref().map(|x| scim_sql::order_by(backend, rt, x)).transpose();
    let dir_id = &ctx.principal.directory_id;
    if let (Ok(filter), Ok(order)) = (sql_filter, sql_order) {
        let q = ListQuery { filter, order, descending: p.descending, offset: p.start_index - 1, limit: p.count as i64 };
        let (total, rows) = s.store.scim_list(dir_id, rt.id, &q).await?;
        let items = rows.iter().map(|r| project(rt, &present(rt, &ctx.base, r), &p.attributes, &p.excluded)).collect();
        return Ok(list_response(total, p.start_index, items));
    }
    // The translator cannot express this search: the same semantics, in memory.
    let mut rows: Vec<Row> = scan(&s, dir_id, rt.id)
        .await?
        .into_iter()
        .map(|r| Row { rt, created: r.created_at.0, id: r.id.clone(), json: present(rt, &ctx.base, &r) })
        .filter(|r| compiled.as_ref().is_none_or(|c| c.matches(&r.json)))
        .collect();
    if sort.is_some() || p.descending {
        sort_rows(&mut rows, sort.as_ref(), p.descending);
    }
    Ok(page(rows, &p))
}

type QueryList = std::result::Result<Query<Vec<(String, String)>>, axum::extract::rejection::QueryRejection>;

fn query_params(q: QueryList) -> Result<ListParams> {
    match q {
        Ok(Query(v)) => Ok(ListParams::from_query(&v)),
        Err(_) => Err(ScimResponse(ScimError::new(400, Some(ScimType::InvalidSyntax), "malformed query string"))),
    }
}

pub async fn list_users(State(s): State<AppState>, ctx: Ctx, q: QueryList) -> Result<Response> {
    list(s, ctx, "User", query_params(q)?).await
}

pub async fn list_groups(State(s): State<AppState>, ctx: Ctx, q: QueryList) -> Result<Response> {
    list(s, ctx, "Group", query_params(q)?).await
}

pub async fn search_users(State(s): State<AppState>, ctx: Ctx, ScimBody(b): ScimBody) -> Result<Response> {
    list(s, ctx, "User", ListParams::from_body(&b)).await
}

pub async fn search_groups(State(s): State<AppState>, ctx: Ctx, ScimBody(b): ScimBody) -> Result<Response> {
    list(s, ctx, "Group", ListParams::from_body(&b)).await
}

/// `POST /.search`: Users and Groups together, each type only when the key may read it.
/// A filter is applied to the types it is valid for; invalid for all is 400.
pub async fn search_root(State(s): State<AppState>, ctx: Ctx, ScimBody(b): ScimBody) -> Result<Response> {
    let p = ListParams::from_body(&b);
    let readable: Vec<&str> = [("User", Scope::UsersRead), ("Group", Scope::GroupsRead)]
        .into_iter()
        .filter(|(_, sc)| ctx.principal.scopes.contains(*sc))
        .map(|(t, _)| t)
        .collect();
    if readable.is_empty() {
        ctx.require(&s, Scope::UsersRead, "search resources").await?;
    }
    let filter = p.filter.as_deref().map(parse_filter).transpose()?;
    let mut rows = Vec::new();
    let mut first_error = None;
    let mut any_ok = false;
    let mut sort = None;
    for t in readable {
        let (rt, _, _) = kind(t);
        let compiled = match filter.as_ref().map(|f| eval::compile(rt, f)).transpose() {
            Ok(c) => c,
            Err(e) => {
                first_error.get_or_insert(invalid_filter(e));
                continue;
            }
        };
        if let Some(sb) = p.sort_by.as_deref()
            && let Ok(path) = sort_path(rt, sb)
        {
            sort = Some(path);
        }
        any_ok = true;
        rows.extend(
            scan(&s, &ctx.principal.directory_id, rt.id)
                .await?
                .into_iter()
                .map(|r| Row { rt, created: r.created_at.0, id: r.id.clone(), json: present(rt, &ctx.base, &r) })
                .filter(|r| compiled.as_ref().is_none_or(|c| c.matches(&r.json))),
        );
    }
    if !any_ok && let Some(e) = first_error {
        return Err(ScimResponse(e));
    }
    sort_rows(&mut rows, sort.as_ref(), p.descending);
    Ok(page(rows, &p))
}
