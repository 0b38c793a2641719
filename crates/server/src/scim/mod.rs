//! The SCIM 2.0 service of each directory, at `/scim/v2/{directory}`: discovery
//! (`/ServiceProviderConfig`, `/ResourceTypes`, `/Schemas`), Users and Groups
//! (create, read, replace, patch, delete), lists and `.search`, and `/Bulk`.
//!
//! Every endpoint authenticates a provisioning key of the directory ([`Provisioner`]);
//! resource endpoints also check the key's scopes (`users:read`, `users:write`,
//! `groups:read`, `groups:write`) and audit denials. Protocol rules live in
//! `fedkey-scim`; persistence in `fedkey-store`.

mod body;
mod bulk;
pub mod cursor;
mod discovery;
mod list;
pub mod policy;
mod present;
pub(crate) mod resources;

use std::sync::Arc;

use axum::Router;
use axum::extract::{FromRequestParts, Path};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header, request::Parts};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use fedkey_audit::Outcome;
use fedkey_core::{Scope, ScopeSet};
use fedkey_scim::discovery::{BulkLimits, Capabilities, Pagination, service_provider_config};
use fedkey_scim::{SCIM_MEDIA_TYPE, ScimError, ScimType};
use fedkey_store::audit::Pending;
use fedkey_store::auth::{Principal, RequestMeta};
use fedkey_store::{Actor, Directory, StoreError};
use serde_json::{Value, json};

use crate::AppState;

/// Largest SCIM request body.
pub const SCIM_BODY_LIMIT: usize = 1024 * 1024;
/// Largest page (`count`) and the default one.
pub const MAX_RESULTS: usize = 200;

pub fn router(state: &AppState) -> Router<AppState> {
    let routes = Router::new()
        .route("/{directory}/ServiceProviderConfig", get(discovery::spc))
        .route("/{directory}/ResourceTypes", get(discovery::resource_types))
        .route("/{directory}/ResourceTypes/{id}", get(discovery::resource_type))
        .route("/{directory}/Schemas", get(discovery::schemas))
        .route("/{directory}/Schemas/{id}", get(discovery::schema))
        .route("/{directory}/Users", get(list::list_users).post(resources::create_user))
        .route("/{directory}/Groups", get(list::list_groups).post(resources::create_group))
        .route("/{directory}/Users/.search", post(list::search_users))
        .route("/{directory}/Groups/.search", post(list::search_groups))
        .route("/{directory}/Bulk", post(bulk::bulk))
        .route("/{directory}/.search", post(list::search_root))
        .route(
            "/{directory}/Users/{id}",
            get(resources::get_user)
                .put(resources::replace_user)
                .patch(resources::patch_user)
                .delete(resources::delete_user),
        )
        .route(
            "/{directory}/Groups/{id}",
            get(resources::get_group)
                .put(resources::replace_group)
                .patch(resources::patch_group)
                .delete(resources::delete_group),
        )
        .fallback(unknown)
        .method_not_allowed_fallback(method_not_allowed);
    routes
        .layer(axum::extract::DefaultBodyLimit::max(SCIM_BODY_LIMIT))
        .layer(axum::middleware::from_fn_with_state(state.clone(), gate))
}

/// Every SCIM request passes here first, in one middleware because each layer costs
/// allocations on every request: the per-source limit before anything else (no key lookup,
/// no audit record when it refuses), a body declared longer than the limit refused before
/// any of it is read ([`crate::body_limit`]), and the answer held until the request's
/// access record is durable ([`AccessRecord`]).
async fn gate(
    axum::extract::State(s): axum::extract::State<AppState>,
    mut req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    if let Some(refused) = crate::source_limit::scim_refusal(&s, &req) {
        return refused;
    }
    crate::body_limit::refuse_declared_over(&mut req, SCIM_BODY_LIMIT);
    answer_when_audited(req, next).await
}

/// The authentication record of one SCIM request, on its way to the audit log while the
/// request is served: reads run while it is written instead of after (an fsync less in
/// every request's latency), yet nothing is answered before it is durable — this
/// middleware waits for it and answers 503 instead if it could not be written — and writes
/// wait for it before they commit ([`Ctx::audited`]).
#[derive(Clone, Default)]
pub(crate) struct AccessRecord(Arc<tokio::sync::Mutex<AccessState>>);

#[derive(Default)]
struct AccessState {
    /// Records not yet known durable (one per authentication of the request).
    pending: Vec<Pending>,
    /// Why one of them could not be written.
    failed: Option<String>,
}

impl AccessRecord {
    async fn put(&self, p: Pending) {
        self.0.lock().await.pending.push(p);
    }

    /// Waits until the records are durable (at once if there are none or they already are).
    async fn durable(&self) -> Result<(), ScimResponse> {
        let mut state = self.0.lock().await;
        for p in std::mem::take(&mut state.pending) {
            if let Err(e) = p.wait().await {
                state.failed.get_or_insert(format!("{e:?}"));
            }
        }
        match &state.failed {
            Some(e) => {
                tracing::error!(error = %e, "audit unavailable; SCIM request refused");
                Err(ScimResponse(ScimError::new(503, None, "the audit log is unavailable; request refused")))
            }
            None => Ok(()),
        }
    }
}

async fn answer_when_audited(mut req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let record = AccessRecord::default();
    req.extensions_mut().insert(record.clone());
    let resp = next.run(req).await;
    match record.durable().await {
        Ok(()) => resp,
        Err(e) => e.into_response(),
    }
}

/// A SCIM error response with the SCIM media type.
pub struct ScimResponse(pub ScimError);

impl IntoResponse for ScimResponse {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.0.status_code()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut resp = (status, axum::Json(&self.0)).into_response();
        resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(SCIM_MEDIA_TYPE));
        if status == StatusCode::TOO_MANY_REQUESTS {
            // Rates are whole requests per second with a burst of the same size, so
            // the next token is never more than a second away.
            resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        if status == StatusCode::UNAUTHORIZED {
            resp.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"fedkey-scim\""));
        }
        resp
    }
}

impl From<ScimError> for ScimResponse {
    fn from(e: ScimError) -> Self {
        ScimResponse(e)
    }
}

impl From<StoreError> for ScimResponse {
    fn from(e: StoreError) -> Self {
        ScimResponse(store_error(e))
    }
}

/// A store error as a SCIM error. Internal details are logged, not sent.
pub fn store_error(e: StoreError) -> ScimError {
    match e {
        StoreError::NotFound(what) => ScimError::new(404, None, format!("{what} not found")),
        StoreError::Conflict(what) => ScimError::new(409, Some(ScimType::Uniqueness), format!("{what} already exists")),
        StoreError::Invalid(m) => ScimError::new(400, Some(ScimType::InvalidValue), m),
        StoreError::PreconditionFailed(m) => ScimError::new(412, None, format!("precondition failed: {m}")),
        e @ StoreError::AuditUnavailable(_) => {
            tracing::error!(error = ?e, "audit unavailable; SCIM request refused");
            ScimError::new(503, None, "the audit log could not record this request, so it was not performed")
        }
        e if e.is_unavailable() => {
            tracing::error!(error = ?e, "database unavailable; SCIM request refused");
            ScimError::new(503, None, "the database is unavailable; the request was not performed, retry later")
        }
        e => {
            tracing::error!(error = ?e, "internal error in SCIM request");
            ScimError::new(500, None, "internal error; see the server log")
        }
    }
}

/// An authenticated SCIM caller: a provisioning key of one of this directory's inbound
/// trusts, in its validity window, on an active trust.
pub struct Provisioner(pub Principal);

impl FromRequestParts<AppState> for Provisioner {
    type Rejection = ScimResponse;

    async fn from_request_parts(parts: &mut Parts, s: &AppState) -> Result<Self, ScimResponse> {
        let Path(params) = Path::<Vec<(String, String)>>::from_request_parts(parts, s)
            .await
            .map_err(|_| ScimResponse(ScimError::new(404, None, "unknown directory")))?;
        let directory = params.iter().find(|(k, _)| k == "directory").map(|(_, v)| v.clone()).unwrap_or_default();
        let meta = parts.extensions.get::<RequestMeta>().cloned().unwrap_or_default();
        let token = bearer(&parts.headers);
        // A bearer JWT signed by the peer's watched keys (federated trusts) instead of a key.
        let attempt = match (token, &s.watchers) {
            // An access token of this directory's authorization server.
            (Some(t), _) if looks_like_jwt(t) && crate::oauth::bearer::is_access_token(s, &directory, t) => {
                crate::oauth::bearer::authenticate(s, &directory, t, &meta).await.map(|r| r.map_err(|_| ()))
            }
            (Some(t), Some(w)) if looks_like_jwt(t) => {
                w.authenticate(&directory, t, &meta).await.map(|r| r.map_err(|_| ()))
            }
            _ => match s.store.authenticate_provisioning_early(&directory, token, &meta).await {
                Ok((r, record)) => match parts.extensions.get::<AccessRecord>() {
                    Some(slot) => {
                        slot.put(record).await;
                        Ok(r.map_err(|_| ()))
                    }
                    // Not behind `answer_when_audited`: wait here.
                    None => record.wait().await.map(|_| r.map_err(|_| ())),
                },
                Err(e) => Err(e),
            },
        };
        match attempt {
            Ok(Ok(p)) => {
                policy::enforce(s, &p, &meta).await?;
                Ok(Provisioner(p))
            }
            Ok(Err(())) => Err(ScimResponse(ScimError::new(
                401,
                None,
                "authentication required: a valid provisioning key (or signed assertion) of this directory",
            ))),
            Err(e) => {
                tracing::error!(error = ?e, "audit unavailable; SCIM request refused");
                Err(ScimResponse(ScimError::new(503, None, "the audit log is unavailable; request refused")))
            }
        }
    }
}

/// The request context a SCIM handler needs: who, from where, and the URL base.
pub struct Ctx {
    pub principal: Principal,
    pub actor: Actor,
    /// `{scheme}://{host}/scim/v2/{directory}`.
    pub base: String,
    /// The request's authentication record, if still being written.
    access: AccessRecord,
}

/// The audit actor of an authenticated provisioner's request: its key version, or `jwt:` for
/// a signed assertion (version 0).
pub(crate) fn provisioner_actor(p: &Principal, parts: &Parts) -> Actor {
    let meta = parts.extensions.get::<RequestMeta>().cloned().unwrap_or_default();
    Actor {
        id: match p.version {
            0 => format!("jwt:{}/{}", p.directory, p.trust),
            v => format!("key:{}/{}#{v}", p.directory, p.trust),
        },
        role: None,
        source: meta.source,
        request_id: meta.request_id,
        token_id: None,
    }
}

impl FromRequestParts<AppState> for Ctx {
    type Rejection = ScimResponse;

    async fn from_request_parts(parts: &mut Parts, s: &AppState) -> Result<Self, ScimResponse> {
        let Provisioner(p) = Provisioner::from_request_parts(parts, s).await?;
        if !parts.uri.query().is_none_or(query_is_utf8) {
            return Err(ScimResponse(ScimError::new(
                400,
                Some(ScimType::InvalidSyntax),
                "malformed query string: percent-encoded bytes that are not UTF-8",
            )));
        }
        let actor = provisioner_actor(&p, parts);
        let base = base_url(s.scheme, &p.directory, &parts.headers);
        let access = parts.extensions.get::<AccessRecord>().cloned().unwrap_or_default();
        Ok(Ctx { principal: p, actor, base, access })
    }
}

impl Ctx {
    /// Checks that the key carries `scope`; a denial is audited and answered 403.
    pub async fn require(&self, s: &AppState, scope: Scope, action: &str) -> Result<(), ScimResponse> {
        if self.principal.scopes.contains(scope) {
            return Ok(());
        }
        let details =
            json!({"directory": self.principal.directory, "operation": action, "missing_scope": scope.as_str()});
        audit_denied(s, &self.actor, &self.principal, details).await?;
        Err(ScimResponse(ScimError::new(
            403,
            None,
            format!("this provisioning key lacks the {} scope needed to {action}", scope.as_str()),
        )))
    }
}

impl Ctx {
    /// An admin token acting on a directory through the admin API (import): every SCIM
    /// scope, no trust (so no trust policy). Its writes take the SCIM handlers' path and
    /// are audited with the admin actor.
    pub(crate) fn admin(dir: &Directory, actor: Actor, base: String) -> Ctx {
        let all: Vec<&str> = Scope::ALL.iter().map(|s| s.as_str()).collect();
        let principal = Principal {
            directory_id: dir.id.clone(),
            directory: dir.name.clone(),
            trust_id: String::new(),
            trust: String::new(),
            peer_kind: fedkey_core::PeerKind::Generic,
            version: 0,
            scopes: ScopeSet::parse_list(&all).unwrap_or_default(),
            policy: Default::default(),
        };
        Ctx { principal, actor, base, access: AccessRecord::default() }
    }

    /// Waits until the request's authentication record is durable: a write commits nothing
    /// before the access that makes it is in the log.
    pub async fn audited(&self) -> Result<(), ScimResponse> {
        self.access.durable().await
    }
}

/// A compact JWS: three base64url parts, the header starting `{"` (`eyJ`).
fn looks_like_jwt(t: &str) -> bool {
    t.starts_with("eyJ") && t.bytes().filter(|b| *b == b'.').count() == 2
}

/// Audits a refused SCIM request (`scim.authorize`, denied) with the trust and key version
/// it was made with; fail-closed like every audit write.
pub(crate) async fn audit_denied(
    s: &AppState,
    actor: &Actor,
    p: &Principal,
    details: Value,
) -> Result<(), ScimResponse> {
    let ev = s
        .store
        .event(actor, "scim.authorize", Outcome::Denied)
        .directory(&p.directory)
        .trust(&p.trust)
        .key_version(p.version)
        .details(details);
    s.store.audit.record(ev, None).await.map(|_| ()).map_err(|e| ScimResponse(store_error(e)))
}

/// Whether a query string percent-decodes to UTF-8. The query extractor would silently
/// replace invalid sequences with U+FFFD, changing what a filter or attribute names.
fn query_is_utf8(q: &str) -> bool {
    if !q.contains('%') {
        return true;
    }
    let hex = |c: Option<u8>| c.and_then(|c| char::from(c).to_digit(16));
    let mut bytes = Vec::with_capacity(q.len());
    let mut it = q.bytes();
    while let Some(b) = it.next() {
        if b == b'%' {
            let mut look = it.clone();
            if let (Some(h), Some(l)) = (hex(look.next()), hex(look.next())) {
                bytes.push((h * 16 + l) as u8);
                it = look;
                continue;
            }
        }
        bytes.push(b);
    }
    std::str::from_utf8(&bytes).is_ok()
}

/// The SCIM base URL of `directory` as the client addressed it.
pub fn base_url(scheme: &str, directory: &str, headers: &HeaderMap) -> String {
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("localhost");
    format!("{scheme}://{host}/scim/v2/{directory}")
}

/// The bearer token of an `Authorization` header, if well-formed.
pub fn bearer(h: &HeaderMap) -> Option<&str> {
    let v = h.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim()).filter(|t| !t.is_empty())
}

/// What `/ServiceProviderConfig` advertises: exactly what this module enforces.
pub fn capabilities() -> Capabilities {
    Capabilities {
        patch: true,
        bulk: Some(BulkLimits {
            max_operations: bulk::MAX_OPERATIONS as u32,
            max_payload_size: bulk::MAX_PAYLOAD_SIZE as u64,
        }),
        filter_max_results: Some(MAX_RESULTS as u32),
        change_password: false,
        sort: true,
        etag: true,
        documentation_uri: None,
        // RFC 9865: both methods; index stays the default so existing clients see no change.
        pagination: Some(Pagination {
            cursor: true,
            index: true,
            default_method: "index",
            default_page_size: MAX_RESULTS as u32,
            max_page_size: MAX_RESULTS as u32,
            cursor_timeout: cursor::CURSOR_TIMEOUT_SECS,
        }),
    }
}

/// The `/ServiceProviderConfig` response for `directory` (shared with the benchmark's
/// unauthenticated baseline, so both measure the same work).
pub fn render_spc(scheme: &str, directory: &str, headers: &HeaderMap) -> Response {
    let location = format!("{}/ServiceProviderConfig", base_url(scheme, directory, headers));
    let mut spc = service_provider_config(&capabilities(), &location);
    // RFC 9967 §4: the SET event types fedkey can deliver to receivers of this directory
    // (streams are registered through the admin API); no asynchronous requests.
    spc["securityEvents"] = serde_json::json!({
        "asyncRequest": "none",
        "eventUris": fedkey_store::ops::events::SCIM_EVENT_TYPES,
    });
    scim_json(StatusCode::OK, &spc)
}

/// A JSON body with the SCIM media type.
pub fn scim_json(status: StatusCode, body: &serde_json::Value) -> Response {
    let mut resp = (status, axum::Json(body)).into_response();
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(SCIM_MEDIA_TYPE));
    resp
}

async fn unknown() -> ScimResponse {
    ScimResponse(ScimError::new(404, None, "no such SCIM endpoint"))
}

async fn method_not_allowed(_p: Provisioner) -> ScimResponse {
    ScimResponse(ScimError::new(405, None, "this SCIM endpoint does not support that method"))
}
