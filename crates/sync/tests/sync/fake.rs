//! An in-process SCIM 2.0 target (axum on 127.0.0.1:0) built on the `scim` crate's schema
//! registry, filter evaluator and PATCH engine, shaped like RFC 7644 answers (status codes,
//! Error bodies, `Location`, `ETag`, ListResponse). It records every request, can switch
//! off PATCH, filtering and its discovery documents, can be told to answer the next
//! requests with canned responses, and serves an OAuth2 token endpoint.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use fedkey_scim::discovery::{BulkLimits, Capabilities, service_provider_config};
use fedkey_scim::schema::{self, ResourceTypeDef};
use fedkey_scim::{eval, filter, patch, resource};
use serde_json::{Value, json};

pub const BASE: &str = "/scim/v2";
pub const KEY: &str = "fkp_app_issued_secret_key_0123456789";
pub const CLIENT_ID: &str = "fedkey-client";
pub const CLIENT_SECRET: &str = "oauth-client-secret-value-xyz";

#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    /// Decoded query parameters.
    pub query: HashMap<String, String>,
    pub headers: HeaderMap,
    pub body: String,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap()
    }
}

/// A response to give instead of the normal behaviour.
pub struct Canned {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
}

impl Canned {
    pub fn scim_error(status: u16, scim_type: Option<&str>, detail: &str) -> Canned {
        let mut e = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:Error"], "status": status.to_string(), "detail": detail});
        if let Some(t) = scim_type {
            e["scimType"] = json!(t);
        }
        Canned {
            status,
            headers: vec![("content-type", "application/scim+json".into())],
            body: serde_json::to_vec(&e).unwrap(),
        }
    }

    pub fn header(mut self, name: &'static str, value: impl Into<String>) -> Canned {
        self.headers.push((name, value.into()));
        self
    }
}

pub struct Config {
    pub patch: bool,
    pub filter: bool,
    pub bulk: bool,
    pub resource_types: bool,
    pub schemas: bool,
    /// Answer PATCH with 204 and no body.
    pub patch_no_content: bool,
    /// Lifetime of issued OAuth2 tokens, in seconds.
    pub token_lifetime: u64,
    /// Whether tokens from the token endpoint are then accepted by the SCIM endpoints.
    pub accept_issued_tokens: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            patch: true,
            filter: true,
            bulk: false,
            resource_types: true,
            schemas: true,
            patch_no_content: false,
            token_lifetime: 3600,
            accept_issued_tokens: true,
        }
    }
}

#[derive(Default)]
pub struct Inner {
    pub config: Config,
    pub users: Vec<Value>,
    pub groups: Vec<Value>,
    pub requests: Vec<Recorded>,
    pub token_requests: Vec<HashMap<String, String>>,
    /// Accepted bearer credentials (the static key, issued OAuth2 tokens).
    pub tokens: Vec<String>,
    pub canned: Vec<Canned>,
    pub next_id: u64,
}

#[derive(Clone)]
pub struct Fake {
    pub inner: Arc<Mutex<Inner>>,
    pub base_url: String,
    pub token_url: String,
    task: Arc<tokio::task::JoinHandle<()>>,
}

impl Drop for Fake {
    fn drop(&mut self) {
        if Arc::strong_count(&self.task) == 1 {
            self.task.abort();
        }
    }
}

impl Fake {
    pub async fn start(config: Config) -> Fake {
        let inner = Arc::new(Mutex::new(Inner { config, tokens: vec![KEY.into()], ..Inner::default() }));
        let app =
            Router::new().route("/oauth/token", axum::routing::post(token)).fallback(scim).with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Fake {
            inner,
            base_url: format!("http://{addr}{BASE}"),
            token_url: format!("http://{addr}/oauth/token"),
            task: Arc::new(task),
        }
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.inner.lock().unwrap().requests.clone()
    }

    pub fn last(&self) -> Recorded {
        self.inner.lock().unwrap().requests.last().cloned().unwrap()
    }

    pub fn clear(&self) {
        self.inner.lock().unwrap().requests.clear();
    }

    pub fn push(&self, c: Canned) {
        self.inner.lock().unwrap().canned.push(c);
    }

    /// Stores a user directly, as if created earlier.
    pub fn seed_user(&self, body: Value) -> String {
        let mut g = self.inner.lock().unwrap();
        let id = g.fresh_id();
        let stored = stored(&schema::RESOURCE_TYPES[0], &id, body);
        g.users.push(stored);
        id
    }
}

impl Inner {
    fn fresh_id(&mut self) -> String {
        self.next_id += 1;
        format!("t-{}", self.next_id)
    }

    fn collection(&mut self, rt: &ResourceTypeDef) -> &mut Vec<Value> {
        if rt.id == "User" { &mut self.users } else { &mut self.groups }
    }
}

fn stored(rt: &ResourceTypeDef, id: &str, body: Value) -> Value {
    let mut n = resource::normalize(rt, &body).unwrap();
    let schemas = resource::schemas_of(rt, &n);
    let o = n.as_object_mut().unwrap();
    o.insert("schemas".into(), Value::Array(schemas));
    o.insert("id".into(), json!(id));
    o.insert(
        "meta".into(),
        json!({"resourceType": rt.id, "version": "W/\"1\"", "location": format!("http://fake{BASE}{}/{id}", rt.endpoint)}),
    );
    n
}

fn bump_version(v: &mut Value) {
    let n: u64 =
        v["meta"]["version"].as_str().unwrap().trim_start_matches("W/\"").trim_end_matches('"').parse().unwrap();
    v["meta"]["version"] = json!(format!("W/\"{}\"", n + 1));
}

fn scim_json(status: u16, body: &Value) -> Response {
    let mut r = (StatusCode::from_u16(status).unwrap(), serde_json::to_vec(body).unwrap()).into_response();
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/scim+json"));
    if let Some(v) = body["meta"]["version"].as_str() {
        r.headers_mut().insert(header::ETAG, HeaderValue::from_str(v).unwrap());
    }
    r
}

fn error(status: u16, scim_type: Option<&str>, detail: &str) -> Response {
    let c = Canned::scim_error(status, scim_type, detail);
    canned(c)
}

fn canned(c: Canned) -> Response {
    let mut r = Response::builder().status(c.status);
    for (k, v) in c.headers {
        r = r.header(k, v);
    }
    r.body(Body::from(c.body)).unwrap()
}

async fn token(
    State(inner): State<Arc<Mutex<Inner>>>,
    axum::Form(form): axum::Form<HashMap<String, String>>,
) -> Response {
    let mut g = inner.lock().unwrap();
    g.token_requests.push(form.clone());
    if form.get("client_id").map(String::as_str) != Some(CLIENT_ID)
        || form.get("client_secret").map(String::as_str) != Some(CLIENT_SECRET)
        || form.get("grant_type").map(String::as_str) != Some("client_credentials")
    {
        // RFC 6749 §5.2. The description echoes the secret, as careless servers do.
        let d = format!("bad client secret {}", form.get("client_secret").cloned().unwrap_or_default());
        return (StatusCode::UNAUTHORIZED, axum::Json(json!({"error": "invalid_client", "error_description": d})))
            .into_response();
    }
    let t = format!("access-token-{}", g.token_requests.len());
    if g.config.accept_issued_tokens {
        g.tokens.push(t.clone());
    }
    let lifetime = g.config.token_lifetime;
    axum::Json(json!({"access_token": t, "token_type": "Bearer", "expires_in": lifetime})).into_response()
}

async fn scim(
    State(inner): State<Arc<Mutex<Inner>>>,
    method: Method,
    uri: Uri,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut g = inner.lock().unwrap();
    let body_text = String::from_utf8_lossy(&body).into_owned();
    g.requests.push(Recorded {
        method: method.to_string(),
        path: uri.path().to_owned(),
        query: query.clone(),
        headers: headers.clone(),
        body: body_text,
    });
    let auth = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).unwrap_or("");
    if !g.tokens.iter().any(|t| auth == format!("Bearer {t}")) {
        // Echo the credential back, as some targets do, to prove the client scrubs it.
        let mut r = error(401, None, &format!("credential not accepted: {auth}"));
        r.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        return r;
    }
    if !g.canned.is_empty() {
        let c = g.canned.remove(0);
        return canned(c);
    }
    let Some(rest) = uri.path().strip_prefix(BASE) else { return error(404, None, "unknown path") };
    let segs: Vec<&str> = rest.trim_start_matches('/').split('/').filter(|s| !s.is_empty()).collect();
    let base = format!("http://fake{BASE}");
    match (method.as_str(), segs.as_slice()) {
        ("GET", ["ServiceProviderConfig"]) => {
            let c = &g.config;
            let caps = Capabilities {
                patch: c.patch,
                bulk: c.bulk.then_some(BulkLimits { max_operations: 50, max_payload_size: 1_048_576 }),
                filter_max_results: c.filter.then_some(200),
                change_password: false,
                sort: false,
                etag: true,
                documentation_uri: None,
                pagination: None,
            };
            scim_json(200, &service_provider_config(&caps, &format!("{base}/ServiceProviderConfig")))
        }
        ("GET", ["ResourceTypes"]) if g.config.resource_types => {
            let items: Vec<Value> = schema::RESOURCE_TYPES.iter().map(|r| r.to_json(&base)).collect();
            scim_json(200, &list(items, 1))
        }
        ("GET", ["Schemas"]) if g.config.schemas => {
            let items: Vec<Value> = schema::SCHEMAS.iter().map(|s| s.to_json(&base)).collect();
            scim_json(200, &list(items, 1))
        }
        (m, [ep, tail @ ..]) => {
            let Some(rt) = schema::RESOURCE_TYPES.iter().find(|r| r.endpoint.trim_start_matches('/') == *ep) else {
                return error(404, None, "unknown endpoint");
            };
            resources(&mut g, rt, m, tail.first().copied(), &query, &headers, &body)
        }
        _ => error(404, None, "unknown path"),
    }
}

fn list(items: Vec<Value>, start: usize) -> Value {
    json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:ListResponse"], "totalResults": items.len(),
        "startIndex": start, "itemsPerPage": items.len(), "Resources": items})
}

fn resources(
    g: &mut Inner,
    rt: &'static ResourceTypeDef,
    method: &str,
    id: Option<&str>,
    query: &HashMap<String, String>,
    headers: &HeaderMap,
    body: &[u8],
) -> Response {
    let json_body = || serde_json::from_slice::<Value>(body);
    match (method, id) {
        ("POST", None) => {
            let Ok(b) = json_body() else { return error(400, Some("invalidSyntax"), "not JSON") };
            let Ok(n) = resource::normalize(rt, &b) else { return error(400, Some("invalidValue"), "bad resource") };
            let key = if rt.id == "User" { "userName" } else { "displayName" };
            let taken = n[key].as_str().unwrap_or("").to_lowercase();
            if g.collection(rt).iter().any(|r| r[key].as_str().unwrap_or("").to_lowercase() == taken) {
                return error(409, Some("uniqueness"), &format!("{key} is already taken"));
            }
            let id = g.fresh_id();
            let s = stored(rt, &id, b);
            g.collection(rt).push(s.clone());
            let mut r = scim_json(201, &s);
            r.headers_mut()
                .insert(header::LOCATION, HeaderValue::from_str(s["meta"]["location"].as_str().unwrap()).unwrap());
            r
        }
        ("GET", None) => {
            let all = g.collection(rt).clone();
            let matched: Vec<Value> = match query.get("filter") {
                Some(_) if !g.config.filter => return error(400, Some("invalidFilter"), "filtering is not supported"),
                Some(f) => {
                    let Ok(parsed) = filter::parse(f) else { return error(400, Some("invalidFilter"), "bad filter") };
                    let Ok(c) = eval::compile(rt, &parsed) else {
                        return error(400, Some("invalidFilter"), "bad filter");
                    };
                    all.into_iter().filter(|r| c.matches(r)).collect()
                }
                None => all,
            };
            let start: usize = query.get("startIndex").and_then(|s| s.parse().ok()).unwrap_or(1).max(1);
            let count: usize = query.get("count").and_then(|s| s.parse().ok()).unwrap_or(200);
            let total = matched.len();
            let page: Vec<Value> = matched.into_iter().skip(start - 1).take(count).collect();
            let mut l = list(page, start);
            l["totalResults"] = json!(total);
            scim_json(200, &l)
        }
        (m, Some(id)) => {
            let Some(pos) = g.collection(rt).iter().position(|r| r["id"] == id) else {
                return error(404, None, &format!("{} {id} not found", rt.name));
            };
            let current = g.collection(rt)[pos].clone();
            if let Some(want) = headers.get(header::IF_MATCH).and_then(|v| v.to_str().ok())
                && want != "*"
                && current["meta"]["version"].as_str() != Some(want)
            {
                return error(412, None, "version mismatch");
            }
            match m {
                "GET" => scim_json(200, &current),
                "DELETE" => {
                    g.collection(rt).remove(pos);
                    StatusCode::NO_CONTENT.into_response()
                }
                "PUT" => {
                    let Ok(b) = json_body() else { return error(400, Some("invalidSyntax"), "not JSON") };
                    if resource::normalize(rt, &b).is_err() {
                        return error(400, Some("invalidValue"), "bad resource");
                    }
                    let mut s = stored(rt, id, b);
                    s["meta"] = current["meta"].clone();
                    bump_version(&mut s);
                    g.collection(rt)[pos] = s.clone();
                    scim_json(200, &s)
                }
                "PATCH" if !g.config.patch => error(501, None, "PATCH is not supported"),
                "PATCH" => {
                    let Ok(b) = json_body() else { return error(400, Some("invalidSyntax"), "not JSON") };
                    let ops = match patch::parse_request(&b, &fedkey_scim::Profile::RFC) {
                        Ok(o) => o,
                        Err(e) => return error(400, e.scim_type.map(|_| "invalidSyntax"), &e.detail),
                    };
                    let mut s = current.clone();
                    if let Err(e) = patch::apply(rt, &mut s, &ops, &fedkey_scim::Profile::RFC) {
                        return error(400, Some("invalidValue"), &e.detail);
                    }
                    bump_version(&mut s);
                    g.collection(rt)[pos] = s.clone();
                    if g.config.patch_no_content { StatusCode::NO_CONTENT.into_response() } else { scim_json(200, &s) }
                }
                _ => error(405, None, "method not allowed"),
            }
        }
        _ => error(405, None, "method not allowed"),
    }
}
