//! The outbound SCIM 2.0 client: one target, one set of credentials. Every call has a
//! timeout, reads at most [`MAX_RESPONSE_BYTES`](crate::http::MAX_RESPONSE_BYTES), sends
//! `application/scim+json`, accepts it or `application/json` back, follows no redirects
//! (a redirect would carry the key elsewhere) and fails with a classified [`ClientError`].

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, RwLock};

use fedkey_core::clock::Clock;
use fedkey_egress::{Egress, UrlRules};
use fedkey_scim::eval;
use fedkey_scim::filter::{self, Filter};
use fedkey_scim::patch::PatchOp;
use fedkey_scim::schema::{self, ResourceTypeDef};
use reqwest::header::{self, HeaderMap};
use reqwest::{Method, Url};
use serde_json::Value;

use crate::auth::Authenticator;
use crate::diff::patch_request;
use crate::discovery::{Capabilities, list_items};
use crate::error::ClientError;
use crate::http::{egress_error, error_details, is_json_media_type, read_capped};
use crate::target::TargetConfig;

mod bulk;
pub use bulk::{BulkMethod, BulkOp, BulkOutcome, LOOKUP_CHUNK, remote_of};

/// Page size used when a lookup has to page through a target without filter support.
const FALLBACK_PAGE_SIZE: u64 = 100;
/// Upper bound on pages read by that fallback, so a target whose `totalResults` lies
/// cannot keep us paging forever.
const FALLBACK_MAX_PAGES: u64 = 1_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResourceKind {
    User,
    Group,
}

impl ResourceKind {
    /// fedkey's definition of the resource type (used for client-side matching).
    pub fn resource_type(self) -> &'static ResourceTypeDef {
        match self {
            ResourceKind::User => &schema::RESOURCE_TYPES[0],
            ResourceKind::Group => &schema::RESOURCE_TYPES[1],
        }
    }

    pub fn core_schema(self) -> &'static str {
        match self {
            ResourceKind::User => schema::USER,
            ResourceKind::Group => schema::GROUP,
        }
    }
}

/// A resource as the target holds it.
#[derive(Debug, Clone, PartialEq)]
pub struct Remote {
    pub id: String,
    /// The `ETag` header, else `meta.version`.
    pub etag: Option<String>,
    pub body: Value,
}

/// One page of a list (`GET /Users?startIndex=&count=`).
#[derive(Debug, Clone, PartialEq)]
pub struct ListPage {
    pub total_results: u64,
    pub start_index: u64,
    pub resources: Vec<Remote>,
}

pub struct ScimClient {
    egress: Egress,
    rules: UrlRules,
    timeout: std::time::Duration,
    base: Url,
    auth: Authenticator,
    clock: Arc<dyn Clock>,
    caps: RwLock<Option<Capabilities>>,
    /// The target rejected a `/Bulk` request as a whole: one request per change instead.
    bulk_broken: AtomicBool,
    /// The target rejected an `or`-joined lookup: one lookup per value instead.
    or_broken: AtomicBool,
}

/// A successful answer.
struct Answer {
    status: u16,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl ScimClient {
    /// Checks the base URL (and an OAuth2 token URL) under the egress policy: https unless
    /// loopback or the target's lab opt-in (`allow_http`), no denied address.
    pub fn new(config: TargetConfig, egress: Egress, clock: Arc<dyn Clock>) -> Result<ScimClient, ClientError> {
        let rules = UrlRules { allow_http: config.allow_http };
        let base = egress
            .check_url(config.base_url.trim_end_matches('/'), rules)
            .map_err(|e| ClientError::Config { message: format!("base URL: {e}") })?;
        if base.cannot_be_a_base() {
            return Err(ClientError::Config { message: "the base URL must be an http(s) URL".into() });
        }
        let auth = Authenticator::new(config.auth, &egress, rules, clock.clone(), config.timeout)?;
        Ok(ScimClient {
            egress,
            rules,
            timeout: config.timeout,
            base,
            auth,
            clock,
            caps: RwLock::new(None),
            bulk_broken: AtomicBool::new(false),
            or_broken: AtomicBool::new(false),
        })
    }

    /// The capabilities found by the last [`discover`](Self::discover), if any.
    pub fn capabilities(&self) -> Option<Capabilities> {
        self.caps.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Reads `/ServiceProviderConfig`, `/ResourceTypes` and `/Schemas`, remembers the
    /// result (endpoints, filter support) for later calls and returns it. The first is
    /// required; the other two may be missing (404, 405, 501, or not JSON), in which case
    /// defaults are used and listed in [`Capabilities::assumptions`].
    pub async fn discover(&self) -> Result<Capabilities, ClientError> {
        let spc = self.json(&self.call(Method::GET, &["ServiceProviderConfig"], &[], None, None).await?)?;
        let rts = self.optional_document("ResourceTypes").await?;
        let schemas = self.optional_document("Schemas").await?;
        let caps = Capabilities::from_documents(&spc, rts.as_ref(), schemas.as_ref());
        *self.caps.write().unwrap_or_else(|e| e.into_inner()) = Some(caps.clone());
        Ok(caps)
    }

    async fn optional_document(&self, name: &str) -> Result<Option<Value>, ClientError> {
        match self.call(Method::GET, &[name], &[], None, None).await {
            Ok(a) => Ok(self.json(&a).ok()),
            Err(ClientError::NotFound { .. }) | Err(ClientError::Protocol { .. }) => Ok(None),
            Err(ClientError::Rejected { status: 400 | 405 | 501, .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn endpoint(&self, kind: ResourceKind) -> Result<String, ClientError> {
        let caps = self.caps.read().unwrap_or_else(|e| e.into_inner());
        match (kind, caps.as_ref()) {
            (ResourceKind::User, Some(c)) => Ok(c.user_endpoint.clone()),
            (ResourceKind::Group, Some(c)) => c
                .group_endpoint
                .clone()
                .ok_or_else(|| ClientError::Config { message: "the target has no Group resource type".into() }),
            (ResourceKind::User, None) => Ok("Users".into()),
            (ResourceKind::Group, None) => Ok("Groups".into()),
        }
    }

    /// `POST /Users` (or `/Groups`): 201 with the created resource.
    pub async fn create(&self, kind: ResourceKind, body: &Value) -> Result<Remote, ClientError> {
        let ep = self.endpoint(kind)?;
        let a = self.call(Method::POST, &[&ep], &[], Some(body), None).await?;
        self.remote(&a)
    }

    /// `GET /Users/{id}`.
    pub async fn get(&self, kind: ResourceKind, id: &str) -> Result<Remote, ClientError> {
        let ep = self.endpoint(kind)?;
        let a = self.call(Method::GET, &[&ep, id], &[], None, None).await?;
        self.remote(&a)
    }

    /// `GET /Users?startIndex=&count=` (1-based `start_index`).
    pub async fn list_page(&self, kind: ResourceKind, start_index: u64, count: u64) -> Result<ListPage, ClientError> {
        let q = [("startIndex", start_index.max(1).to_string()), ("count", count.to_string())];
        self.list(kind, &q).await
    }

    async fn list(&self, kind: ResourceKind, query: &[(&str, String)]) -> Result<ListPage, ClientError> {
        let ep = self.endpoint(kind)?;
        let a = self.call(Method::GET, &[&ep], query, None, None).await?;
        let doc = self.json(&a)?;
        if !doc.is_object() {
            return Err(ClientError::Protocol { message: "a list answer must be a ListResponse object".into() });
        }
        let resources =
            list_items(&doc).into_iter().map(|r| remote_from(r.clone(), None)).collect::<Result<Vec<_>, _>>()?;
        let num = |k: &str| fedkey_scim::json::lookup(&doc, k).and_then(Value::as_u64);
        Ok(ListPage {
            total_results: num("totalResults").unwrap_or(resources.len() as u64),
            start_index: num("startIndex").unwrap_or(1),
            resources,
        })
    }

    /// The one resource whose `attr` equals `value` (`GET /Users?filter=attr eq "value"`),
    /// or `None`. The answer is checked client-side with fedkey's evaluator (a target that
    /// ignores the filter cannot make us adopt the wrong resource); when discovery said
    /// the target has no filter support, pages through all resources instead. Several
    /// matches are [`ClientError::Ambiguous`].
    pub async fn find_one(&self, kind: ResourceKind, attr: &str, value: &str) -> Result<Option<Remote>, ClientError> {
        let mut found = self.find_all(kind, attr, value).await?;
        match found.len() {
            0 => Ok(None),
            1 => Ok(found.pop()),
            count => {
                Err(ClientError::Ambiguous { filter: format!("{attr} eq {}", Value::String(value.to_owned())), count })
            }
        }
    }

    /// Every resource whose `attr` equals `value` (see [`find_one`](Self::find_one)).
    pub async fn find_all(&self, kind: ResourceKind, attr: &str, value: &str) -> Result<Vec<Remote>, ClientError> {
        // A JSON string literal is exactly a SCIM compValue: `"` and `\` escaped.
        let text = format!("{attr} eq {}", Value::String(value.to_owned()));
        let matcher = filter::parse(&text)
            .ok()
            .filter(|f| matches!(f, Filter::Compare(..)))
            .and_then(|f| eval::compile(kind.resource_type(), &f).ok())
            .ok_or_else(|| ClientError::Config { message: format!("cannot look resources up by {attr:?}") })?;
        let filter_supported = self.capabilities().is_none_or(|c| c.filter.supported);
        let mut found: Vec<Remote> = Vec::new();
        if filter_supported {
            let page = self.list(kind, &[("filter", text.clone())]).await?;
            found.extend(page.resources.into_iter().filter(|r| matcher.matches(&r.body)));
        } else {
            let size = match self.capabilities().map(|c| c.filter.max_results) {
                Some(n) if n > 0 => n.min(FALLBACK_PAGE_SIZE),
                _ => FALLBACK_PAGE_SIZE,
            };
            let mut start = 1;
            for _ in 0..FALLBACK_MAX_PAGES {
                let page = self.list_page(kind, start, size).await?;
                let n = page.resources.len() as u64;
                found.extend(page.resources.into_iter().filter(|r| matcher.matches(&r.body)));
                start += n;
                if n == 0 || start > page.total_results {
                    break;
                }
            }
        }
        Ok(found)
    }

    /// `PATCH /Users/{id}` with `ops` (RFC 7644 §3.5.2). The target may answer 200 with
    /// the resource or 204 without one (`None`). No operations: nothing is sent.
    pub async fn patch(
        &self,
        kind: ResourceKind,
        id: &str,
        ops: &[PatchOp],
        if_match: Option<&str>,
    ) -> Result<Option<Remote>, ClientError> {
        if ops.is_empty() {
            return Ok(None);
        }
        let ep = self.endpoint(kind)?;
        let body = patch_request(ops);
        let a = self.call(Method::PATCH, &[&ep, id], &[], Some(&body), if_match).await?;
        if a.status == 204 || a.body.iter().all(u8::is_ascii_whitespace) {
            return Ok(None);
        }
        self.remote(&a).map(Some)
    }

    /// `PUT /Users/{id}` with the whole resource, for targets without PATCH.
    pub async fn replace(
        &self,
        kind: ResourceKind,
        id: &str,
        body: &Value,
        if_match: Option<&str>,
    ) -> Result<Remote, ClientError> {
        let ep = self.endpoint(kind)?;
        let a = self.call(Method::PUT, &[&ep, id], &[], Some(body), if_match).await?;
        self.remote(&a)
    }

    /// `DELETE /Users/{id}`: 204.
    pub async fn delete(&self, kind: ResourceKind, id: &str) -> Result<(), ClientError> {
        let ep = self.endpoint(kind)?;
        self.call(Method::DELETE, &[&ep, id], &[], None, None).await.map(|_| ())
    }

    fn url(&self, segments: &[&str]) -> Result<Url, ClientError> {
        let mut url = self.base.clone();
        url.path_segments_mut()
            .map_err(|()| ClientError::Config { message: "the base URL cannot take a path".into() })?
            .pop_if_empty()
            .extend(segments);
        Ok(url)
    }

    /// One request with credentials. A 401 to a cached OAuth2 token is retried once with
    /// a new token (the authorisation server may have revoked it early).
    async fn call(
        &self,
        method: Method,
        segments: &[&str],
        query: &[(&str, String)],
        body: Option<&Value>,
        if_match: Option<&str>,
    ) -> Result<Answer, ClientError> {
        let url = self.url(segments)?;
        let payload = match body {
            Some(b) => Some(
                serde_json::to_vec(b)
                    .map_err(|e| ClientError::Config { message: format!("unserialisable body: {e}") })?,
            ),
            None => None,
        };
        let mut retried = false;
        loop {
            let cred = self.auth.credential(&self.egress).await?;
            let scrub = self.auth.scrubber().with(cred.token.expose());
            let mut req = self
                .egress
                .request(method.clone(), &url, self.rules)
                .map_err(|e| egress_error(e, &scrub))?
                .bearer_auth(cred.token.expose())
                .header(header::ACCEPT, "application/scim+json, application/json");
            if !query.is_empty() {
                req = req.query(query);
            }
            if let Some(p) = &payload {
                req = req.header(header::CONTENT_TYPE, fedkey_scim::SCIM_MEDIA_TYPE).body(p.clone());
            }
            if let Some(m) = if_match {
                req = req.header(header::IF_MATCH, m);
            }
            let resp = self.egress.send(req, self.timeout).await.map_err(|e| egress_error(e, &scrub))?;
            let status = resp.status().as_u16();
            let headers = resp.headers().clone();
            let bytes = read_capped(resp, self.timeout, &scrub).await?;
            if (200..300).contains(&status) {
                return Ok(Answer { status, headers, body: bytes });
            }
            if status == 401 && cred.cached && !retried && self.auth.is_oauth2() {
                self.auth.invalidate().await;
                retried = true;
                continue;
            }
            let (scim_type, detail) = error_details(&bytes, &scrub);
            let retry_after = fedkey_egress::retry_after::from_headers(&headers, self.clock.now());
            return Err(ClientError::from_status(status, scim_type, detail, retry_after));
        }
    }

    fn json(&self, a: &Answer) -> Result<Value, ClientError> {
        if let Some(ct) = a.headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok())
            && !is_json_media_type(ct)
        {
            let ct: String = ct.chars().take(64).collect();
            return Err(ClientError::Protocol { message: format!("unexpected content type {ct:?}") });
        }
        serde_json::from_slice(&a.body)
            .map_err(|e| ClientError::Protocol { message: format!("the response is not valid JSON: {e}") })
    }

    fn remote(&self, a: &Answer) -> Result<Remote, ClientError> {
        let etag = a.headers.get(header::ETAG).and_then(|v| v.to_str().ok()).map(str::to_owned);
        remote_from(self.json(a)?, etag)
    }
}

fn remote_from(body: Value, etag: Option<String>) -> Result<Remote, ClientError> {
    let id = fedkey_scim::json::lookup(&body, "id")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| ClientError::Protocol { message: "the resource has no id".into() })?
        .to_owned();
    let etag = etag.or_else(|| {
        fedkey_scim::json::lookup(&body, "meta")
            .and_then(|m| fedkey_scim::json::lookup(m, "version"))
            .and_then(Value::as_str)
            .map(str::to_owned)
    });
    Ok(Remote { id, etag, body })
}
