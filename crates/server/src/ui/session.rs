//! Console sign-in, sessions and the protection of every change.
//!
//! - **Sign-in** takes an admin token (checked by [`Store::authenticate_admin`], which
//!   audits failures) and opens a server-side session ([`Store::open_console_session`]).
//!   The cookie is `HttpOnly`, `SameSite=Strict`, `Path=/ui`, `Secure` under TLS, and
//!   lives as long as the session's absolute limit.
//! - **Every POST** passes [`guard`]: the browser's `Sec-Fetch-Site` must say
//!   `same-origin` and `Origin`, when sent, must be this server; then (sign-in aside) the
//!   session must be live and the form's `csrf` field must equal the session's token
//!   (constant-time). Otherwise 403 and nothing runs.
//! - **Roles**: [`Console::change`] checks the role before a change and audits a refusal,
//!   as the admin API does; an auditor's pages render no action forms.

use askama::Template;
use axum::Form;
use axum::body::Body;
use axum::extract::{FromRequestParts, Request, State};
use axum::http::header::{HOST, ORIGIN, SET_COOKIE};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use fedkey_audit::Outcome;
use fedkey_store::audit::Touch;
use fedkey_store::auth::RequestMeta;
use fedkey_store::ops::console::{CONSOLE_ABSOLUTE, ConsoleSession};
use fedkey_store::{Actor, Store};
use serde::Deserialize;
use serde_json::{Value, json};
use zeroize::Zeroizing;

use super::view::{Nav, PageError, render};
use crate::AppState;

/// The session cookie's name.
pub const COOKIE: &str = "fedkey_console";
/// Largest console form body (sign-in, actions); the forms are a few fields.
const FORM_LIMIT: usize = 16 * 1024;

/// A signed-in operator, for a page or an action.
#[derive(Clone)]
pub struct Console {
    pub session: ConsoleSession,
    pub meta: RequestMeta,
}

/// What an action needs of the role.
#[derive(Clone, Copy)]
pub enum Need {
    Operate,
    Administer,
    Audit,
}

impl Console {
    pub fn actor(&self) -> Actor {
        Actor::token(&self.session.principal, &self.meta)
    }

    pub fn can(&self, need: Need) -> bool {
        let r = self.session.principal.role;
        match need {
            Need::Operate => r.can_operate(),
            Need::Administer => r.can_administer(),
            Need::Audit => r.can_audit(),
        }
    }

    pub fn nav(&self, active: &'static str) -> Nav {
        Nav {
            user: self.session.principal.name.clone(),
            role: self.session.principal.role.to_string(),
            csrf: self.session.csrf.clone(),
            can_operate: self.can(Need::Operate),
            can_administer: self.can(Need::Administer),
            can_audit: self.can(Need::Audit),
            active,
        }
    }

    /// Records an outcome of this operator's request through the group committer.
    pub async fn record(
        &self,
        store: &Store,
        action: &str,
        outcome: Outcome,
        scope: (Option<&str>, Option<&str>),
        details: Value,
    ) -> Result<(), PageError> {
        let mut ev = store.event(&self.actor(), action, outcome).details(details);
        ev.directory = scope.0.map(str::to_owned);
        ev.trust = scope.1.map(str::to_owned);
        store.audit.record(ev, Some(Touch::AdminToken { id: self.session.principal.id.clone() })).await?;
        Ok(())
    }

    /// A change from the console: the role is checked first (a refusal is audited and
    /// answered 403), then `op` runs; its success is audited by the store with the change,
    /// a refusal of the change itself (409, 400…) here as a failure.
    pub async fn change<T>(
        &self,
        store: &Store,
        need: Need,
        action: &str,
        scope: (Option<&str>, Option<&str>),
        op: impl Future<Output = Result<T, PageError>>,
    ) -> Result<T, PageError> {
        if !self.can(need) {
            let role = self.session.principal.role;
            let d = json!({"reason": "role", "role": role, "via": "console"});
            self.record(store, action, Outcome::Denied, scope, d).await?;
            return Err(PageError::forbidden(format!("role {role} may not {action}")));
        }
        let result = op.await;
        if let Err(e) = &result
            && e.status != StatusCode::SERVICE_UNAVAILABLE
        {
            let d = json!({"status": e.status.as_u16(), "message": e.message, "via": "console"});
            self.record(store, action, Outcome::Failure, scope, d).await?;
        }
        result
    }
}

/// The session id a request's cookie carries.
fn cookie_value(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v)
}

async fn lookup(s: &AppState, parts: &Parts) -> Result<Option<Console>, PageError> {
    let meta = parts.extensions.get::<RequestMeta>().cloned().unwrap_or_default();
    lookup_in(s, &parts.headers, meta).await
}

async fn lookup_in(s: &AppState, headers: &HeaderMap, meta: RequestMeta) -> Result<Option<Console>, PageError> {
    let Some(id) = cookie_value(headers) else { return Ok(None) };
    Ok(s.store.console_session(id).await?.map(|session| Console { session, meta }))
}

impl FromRequestParts<AppState> for Console {
    type Rejection = Response;

    /// The session the guard already checked (POST), or the cookie's; without one, the
    /// sign-in page.
    async fn from_request_parts(parts: &mut Parts, s: &AppState) -> Result<Self, Response> {
        if let Some(c) = parts.extensions.get::<Console>() {
            return Ok(c.clone());
        }
        match lookup(s, parts).await {
            Ok(Some(c)) => Ok(c),
            Ok(None) => Err(Redirect::to("/ui/login").into_response()),
            Err(e) => Err(e.into_response()),
        }
    }
}

/// Whether a state-changing request comes from this server's own pages: browsers send
/// `Sec-Fetch-Site` (must be `same-origin`) and `Origin` (its host must be the request's
/// `Host`, or the origin of `public_url`; the scheme is not compared, since TLS may end at a
/// proxy). A client that sends neither (not a browser) still needs the session's CSRF token.
fn same_origin(headers: &HeaderMap, public_url: &str) -> bool {
    if let Some(site) = headers.get("sec-fetch-site")
        && site.as_bytes() != b"same-origin"
    {
        return false;
    }
    let Some(origin) = headers.get(ORIGIN).and_then(|o| o.to_str().ok()) else { return headers.get(ORIGIN).is_none() };
    if origin.trim_end_matches('/') == public_url.trim_end_matches('/') {
        return true;
    }
    let authority = origin.split_once("://").map(|(_, a)| a);
    match (authority, headers.get(HOST).and_then(|h| h.to_str().ok())) {
        (Some(a), Some(host)) => !a.is_empty() && a.eq_ignore_ascii_case(host),
        _ => false,
    }
}

/// Checks every state-changing console request before its handler runs (see the module
/// documentation); passes the checked session on to the handler.
pub async fn guard(State(s): State<AppState>, req: Request, next: Next) -> Response {
    if matches!(*req.method(), Method::GET | Method::HEAD) {
        return next.run(req).await;
    }
    let (mut parts, body) = req.into_parts();
    if !same_origin(&parts.headers, &s.public_url) {
        return PageError::forbidden("cross-site request refused: submit the form from the console itself")
            .into_response();
    }
    let Ok(bytes) = axum::body::to_bytes(body, FORM_LIMIT).await else {
        return PageError::new(StatusCode::PAYLOAD_TOO_LARGE, format!("form body over {FORM_LIMIT} bytes"))
            .into_response();
    };
    // Sign-in has no session yet; the origin check above is what protects it.
    if matches!(parts.uri.path(), "/login" | "/ui/login") {
        return next.run(Request::from_parts(parts, Body::from(bytes))).await;
    }
    let console = match lookup(&s, &parts).await {
        Ok(Some(c)) => c,
        Ok(None) => return PageError::forbidden("your console session has ended; sign in again").into_response(),
        Err(e) => return e.into_response(),
    };
    let fields: Vec<(String, String)> = serde_urlencoded::from_bytes(&bytes).unwrap_or_default();
    let presented = fields.iter().find(|(k, _)| k == "csrf").map(|(_, v)| v.as_bytes());
    let valid = presented.is_some_and(|p| fedkey_crypto::ct_eq(p, console.session.csrf.as_bytes()));
    if !valid {
        let d = json!({"reason": "csrf", "path": parts.uri.path(), "via": "console"});
        if let Err(e) = console.record(&s.store, "console.request", Outcome::Denied, (None, None), d).await {
            return e.into_response();
        }
        return PageError::forbidden("the form's security token is missing or wrong; reload the page and try again")
            .into_response();
    }
    parts.extensions.insert(console);
    next.run(Request::from_parts(parts, Body::from(bytes))).await
}

#[derive(Template)]
#[template(path = "ui/login.html")]
struct LoginPage<'a> {
    message: Option<&'a str>,
}

#[derive(Deserialize, Default)]
pub struct LoginQuery {
    #[serde(default)]
    signed_out: Option<String>,
}

pub async fn login_page(
    State(s): State<AppState>,
    headers: HeaderMap,
    axum::extract::Query(q): axum::extract::Query<LoginQuery>,
) -> Result<Response, PageError> {
    if lookup_in(&s, &headers, RequestMeta::default()).await?.is_some() {
        return Ok(Redirect::to("/ui").into_response());
    }
    let signed_out = q.signed_out.is_some();
    render(&LoginPage { message: signed_out.then_some("You are signed out.") })
}

#[derive(Deserialize)]
pub struct SignIn {
    token: Zeroizing<String>,
}

/// Opens a session for a valid admin token. A wrong token is answered 401 with the form
/// again; the failure is audited by the authentication itself.
pub async fn sign_in(
    State(s): State<AppState>,
    meta: Option<axum::Extension<RequestMeta>>,
    form: Result<Form<SignIn>, axum::extract::rejection::FormRejection>,
) -> Result<Response, PageError> {
    let meta = meta.map(|m| m.0).unwrap_or_default();
    let Ok(Form(f)) = form else { return Err(PageError::bad_request("the sign-in form needs a token field")) };
    let token = f.token.trim();
    let who = match s.store.authenticate_admin(Some(token), &meta).await? {
        Ok(who) => who,
        Err(_) => {
            let page = LoginPage { message: Some("That token is not valid: unknown, expired or revoked.") };
            let mut resp = render(&page)?;
            *resp.status_mut() = StatusCode::UNAUTHORIZED;
            return Ok(resp);
        }
    };
    let opened = s.store.open_console_session(&who, &meta).await?;
    let secure = if s.scheme == "https" { "; Secure" } else { "" };
    let cookie = format!(
        "{COOKIE}={}; Path=/ui; HttpOnly; SameSite=Strict; Max-Age={}{secure}",
        opened.id.expose(),
        CONSOLE_ABSOLUTE.as_secs()
    );
    let mut resp = Redirect::to("/ui").into_response();
    let v = HeaderValue::from_str(&cookie).map_err(|_| PageError::bad_request("session cookie"))?;
    resp.headers_mut().insert(SET_COOKIE, v);
    Ok(resp)
}

/// Ends the session on the server (audited) and clears the cookie.
pub async fn sign_out(State(s): State<AppState>, c: Console, headers: HeaderMap) -> Result<Response, PageError> {
    if let Some(id) = cookie_value(&headers) {
        s.store.close_console_session(id, &c.actor()).await?;
    }
    let secure = if s.scheme == "https" { "; Secure" } else { "" };
    let cookie = format!("{COOKIE}=; Path=/ui; HttpOnly; SameSite=Strict; Max-Age=0{secure}");
    let mut resp = Redirect::to("/ui/login?signed_out=1").into_response();
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        resp.headers_mut().insert(SET_COOKIE, v);
    }
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_str(v).unwrap_or(HeaderValue::from_static("")));
        }
        h
    }

    #[test]
    fn the_session_cookie_is_found_among_others() {
        let h = headers(&[("cookie", "a=1; fedkey_console=abc; b=2")]);
        assert_eq!(cookie_value(&h), Some("abc"));
        assert_eq!(cookie_value(&headers(&[("cookie", "fedkey_console_x=1")])), None);
    }

    #[test]
    fn cross_site_posts_are_refused() {
        let public = "https://fedkey.example.com";
        assert!(same_origin(&headers(&[]), public));
        assert!(same_origin(&headers(&[("sec-fetch-site", "same-origin")]), public));
        assert!(!same_origin(&headers(&[("sec-fetch-site", "cross-site")]), public));
        assert!(!same_origin(&headers(&[("sec-fetch-site", "same-site")]), public));
        let ok = headers(&[("origin", "http://127.0.0.1:8080"), ("host", "127.0.0.1:8080")]);
        assert!(same_origin(&ok, public));
        let proxied = headers(&[("origin", "https://fedkey.example.com"), ("host", "10.0.0.5:8080")]);
        assert!(same_origin(&proxied, public));
        let evil = headers(&[("origin", "http://evil.example"), ("host", "127.0.0.1:8080")]);
        assert!(!same_origin(&evil, public));
        assert!(!same_origin(&headers(&[("origin", "null"), ("host", "127.0.0.1:8080")]), public));
        assert!(!same_origin(&headers(&[("origin", "http://127.0.0.1:8080")]), public), "no Host");
    }
}
