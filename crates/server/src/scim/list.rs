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
//! - RFC 9865 cursor pagination when the request has a `cursor` parameter (empty for the
//!   first page): each page resumes after the last resource of the previous one in the
//!   default order (keyset, see [`ListKey`]), so a walk neither skips nor repeats what
//!   exists throughout it, and a deep page costs what the first does. `count` must then
//!   be 1..=[`MAX_RESULTS`] (400 `invalidCount`); `startIndex`, `sortBy` and descending
//!   order are refused with it (400 `invalidValue`). Cursors are sealed ([`super::cursor`]).
//!   Index pagination stays the default. Every page is authenticated and authorized anew.

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
use fedkey_store::scim::{ListKey, ListQuery, StoredResource};
use serde_json::{Value, json};

use super::body::ScimBody;
use super::cursor::{CursorKey, QueryBinding};
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
    start_index_given: bool,
    count: usize,
    /// `count` as sent: `Some(None)` when it is not a number.
    count_given: Option<Option<i64>>,
    /// RFC 9865 `cursor`: `Some` selects cursor pagination (`Some(None)`: not a string).
    cursor: Option<Option<String>>,
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
                    p.start_index_given = true;
                    if let Some(n) = parse_int(v) {
                        p.start_index = n.max(1);
                    }
                }
                "count" => {
                    p.count_given = Some(parse_int(v));
                    if let Some(n) = parse_int(v) {
                        p.count = usize::try_from(n.max(0)).unwrap_or(0).min(MAX_RESULTS);
                    }
                }
                "cursor" => {
                    // `null` is an omitted value: the first page.
                    p.cursor = Some(if v.is_null() { Some(String::new()) } else { v.as_str().map(str::to_owned) })
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
    let mut out: Vec<StoredResource> = Vec::new();
    loop {
        // By key, not offset: a resource deleted meanwhile cannot shift another out of the scan.
        let q = ListQuery { after: out.last().map(ListKey::of), limit: 1000, ..Default::default() };
        let (total, page) = s.store.scim_list(directory_id, rt, &q).await?;
        if total > SCAN_LIMIT {
            return Err(ScimResponse(ScimError::new(
                400,
                Some(ScimType::TooMany),
                format!("this search would scan more than {SCAN_LIMIT} resources; narrow the filter"),
            )));
        }
        let done = page.len() < 1000;
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

/// A cursor-paged request (RFC 9865), validated: where to resume and how many to return.
struct CursorPage {
    binding: QueryBinding,
    after: Option<ListKey>,
    count: usize,
}

fn bad(scim_type: ScimType, detail: &str) -> ScimResponse {
    ScimResponse(ScimError::new(400, Some(scim_type), detail))
}

impl CursorPage {
    /// `None` for an index-paged request. `types` names what is listed (`User`, `Group`,
    /// `root`); the cursor is bound to it, the caller's trust and the query.
    fn from_params(s: &AppState, ctx: &Ctx, types: &str, p: &ListParams) -> Result<Option<CursorPage>> {
        let Some(cursor) = &p.cursor else {
            return Ok(None);
        };
        if p.start_index_given {
            return Err(bad(ScimType::InvalidValue, "startIndex and cursor are two pagination methods: send one"));
        }
        if p.sort_by.is_some() || p.descending {
            return Err(bad(
                ScimType::InvalidValue,
                "sortBy and descending sortOrder are not available with cursor pagination: \
                 cursor pages are in creation order; use startIndex to sort",
            ));
        }
        let count = match p.count_given {
            None => MAX_RESULTS,
            Some(Some(n)) if (1..=MAX_RESULTS as i64).contains(&n) => n as usize,
            Some(_) => {
                return Err(bad(
                    ScimType::InvalidCount,
                    &format!("count must be an integer from 1 to {MAX_RESULTS} (maxPageSize) with a cursor"),
                ));
            }
        };
        let list = |v: &[AttrPath]| v.iter().map(ToString::to_string).collect::<Vec<_>>().join(",");
        let binding = QueryBinding::for_list(
            &ctx.principal.directory_id,
            &ctx.principal.trust_id,
            types,
            p.filter.as_deref().unwrap_or(""),
            &list(&p.attributes),
            &list(&p.excluded),
        );
        let after = match cursor.as_deref() {
            Some("") => None,
            Some(token) => Some(CursorKey::for_install(&s.store.install).decode(token, &binding, s.store.now())?),
            None => return Err(bad(ScimType::InvalidCursor, "cursor must be a string")),
        };
        Ok(Some(CursorPage { binding, after, count }))
    }

    /// The response for `items` (up to `count + 1` in default order, the extra one only
    /// telling that a next page exists) out of `total` matches.
    fn respond(&self, s: &AppState, total: i64, mut items: Vec<(ListKey, Value)>) -> Response {
        let next = (items.len() > self.count).then(|| {
            items.truncate(self.count);
            items.last().map(|(k, _)| CursorKey::for_install(&s.store.install).encode(&self.binding, k, s.store.now()))
        });
        let resources: Vec<Value> = items.into_iter().map(|(_, v)| v).collect();
        let mut body = json!({
            "schemas": [LIST_RESPONSE],
            "totalResults": total,
            "itemsPerPage": resources.len(),
            "Resources": resources,
        });
        if let (Some(Some(c)), Some(obj)) = (next, body.as_object_mut()) {
            obj.insert("nextCursor".into(), Value::String(c));
        }
        scim_json(StatusCode::OK, &body)
    }

    /// One page of `rows` (filtered, in default order), in memory.
    fn page(&self, s: &AppState, rows: Vec<Row>, p: &ListParams) -> Response {
        let total = rows.len() as i64;
        let items = rows
            .into_iter()
            .map(|r| (ListKey { created: r.created, id: r.id }, r.rt, r.json))
            .filter(|(k, _, _)| self.after.as_ref().is_none_or(|a| k > a))
            .take(self.count + 1)
            .map(|(k, rt, json)| (k, project(rt, &json, &p.attributes, &p.excluded)))
            .collect();
        self.respond(s, total, items)
    }
}

async fn list(s: AppState, ctx: Ctx, rt_name: &str, p: ListParams) -> Result<Response> {
    let (rt, read, _) = kind(rt_name);
    ctx.require(&s, read, &format!("list {}s", rt.id)).await?;
    let cursor = CursorPage::from_params(&s, &ctx, rt.id, &p)?;
    let filter = p.filter.as_deref().map(parse_filter).transpose()?;
    let compiled: Option<CompiledFilter> =
        filter.as_ref().map(|f| eval::compile(rt, f)).transpose().map_err(invalid_filter)?;
    let sort = p.sort_by.as_deref().map(|x| sort_path(rt, x)).transpose()?;
    let sql_filter = filter.as_ref().map(|f| s.store.scim_filter_sql(rt, f)).transpose();
    let sql_order = sort.as_ref().map(|x| s.store.scim_order_sql(rt, x)).transpose();
    let dir_id = &ctx.principal.directory_id;
    if let (Some(c), Ok(filter)) = (&cursor, &sql_filter) {
        let q = ListQuery {
            filter: filter.clone(),
            after: c.after.clone(),
            limit: c.count as i64 + 1,
            ..Default::default()
        };
        let (total, rows) = s.store.scim_list(dir_id, rt.id, &q).await?;
        let items = rows
            .iter()
            .map(|r| (ListKey::of(r), project(rt, &present(rt, &ctx.base, r), &p.attributes, &p.excluded)))
            .collect();
        return Ok(c.respond(&s, total, items));
    }
    if let (None, Ok(filter), Ok(order)) = (&cursor, sql_filter, sql_order) {
        let q = ListQuery {
            filter,
            order,
            descending: p.descending,
            offset: p.start_index - 1,
            limit: p.count as i64,
            after: None,
        };
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
    if let Some(c) = cursor {
        return Ok(c.page(&s, rows, &p));
    }
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
    let cursor = CursorPage::from_params(&s, &ctx, "root", &p)?;
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
    if let Some(c) = cursor {
        return Ok(c.page(&s, rows, &p));
    }
    Ok(page(rows, &p))
}
