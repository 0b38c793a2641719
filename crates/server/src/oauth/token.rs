//! `POST /oauth/{directory}/token`: the `client_credentials` grant (RFC 6749 §4.4) for a
//! directory's inbound trusts. Every issuance and every refusal is audited (`oauth.token`),
//! with fingerprints instead of secrets; refusals aggregate per source like every failed
//! authentication.

use axum::Json;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use fedkey_audit::Outcome;
use fedkey_core::{Direction, ScopeSet, TrustRef, TrustStatus};
use fedkey_federation::{Limits, Material, MaterialKind, SigningKey, parse_jwks};
use fedkey_store::auth::{AuthFailure, RequestMeta};
use fedkey_store::{Actor, StoreError};
use serde_json::{Value, json};

use super::access_token::{self, Grant};
use super::assertion::{self, Audience};
use super::{OauthError, TOKEN_BODY_LIMIT, Urls};
use crate::AppState;

/// How the client authenticated, for the audit record and the metadata.
#[derive(Debug, Clone, Copy)]
enum Method {
    SecretBasic,
    SecretPost,
    PrivateKeyJwt,
}

impl Method {
    fn as_str(self) -> &'static str {
        match self {
            Method::SecretBasic => "client_secret_basic",
            Method::SecretPost => "client_secret_post",
            Method::PrivateKeyJwt => "private_key_jwt",
        }
    }
}

/// What the audit record of a refusal can say about the attempt.
#[derive(Default)]
struct Attempt {
    client_id: Option<String>,
    method: Option<Method>,
}

/// An authenticated client: its trust and the scopes its credential carries.
struct Client {
    trust_id: String,
    name: String,
    key_version: i64,
    scopes: ScopeSet,
}

pub async fn token(State(s): State<AppState>, Path(directory): Path<String>, req: Request) -> Response {
    let meta = req.extensions().get::<RequestMeta>().cloned().unwrap_or_default();
    let mut attempt = Attempt::default();
    let result = issue(&s, &directory, req, &meta, &mut attempt).await;
    let (ev, answer) = match result {
        Ok((ev, body)) => (Some(ev), Ok(body)),
        // A refusal of the client's request is audited; an outage (5xx) is only logged.
        Err(e) if e.status.is_client_error() => (Some(refusal_event(&s, &directory, &attempt, &e, &meta)), Err(e)),
        Err(e) => (None, Err(e)),
    };
    if let Some(ev) = &ev {
        let outcome = if ev.outcome == Outcome::Success { "issued" } else { "refused" };
        metrics::counter!("fedkey_oauth_tokens_total", "outcome" => outcome).increment(1);
    }
    let recorded = match (ev, &answer) {
        (Some(ev), Ok(_)) => s.store.audit.record(ev, None).await.map(|_| ()),
        (Some(ev), Err(_)) => s.store.record_auth_failure(ev).await.map(|_| ()),
        (None, _) => Ok(()),
    };
    if let Err(e) = recorded {
        return OauthError::from(e).into_response();
    }
    match answer {
        Ok(body) => {
            let mut resp = Json(body).into_response();
            let h = resp.headers_mut();
            h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
            resp
        }
        Err(e) => e.into_response(),
    }
}

fn refusal_event(
    s: &AppState,
    directory: &str,
    attempt: &Attempt,
    e: &OauthError,
    meta: &RequestMeta,
) -> fedkey_audit::Event {
    let actor = Actor::anonymous(super::actor_id(directory, attempt.client_id.as_deref()), meta);
    let mut ev =
        s.store.event(&actor, "oauth.token", Outcome::Denied).directory(super::bounded(directory)).details(json!({
            "error": e.error, "reason": e.description,
            "method": attempt.method.map(Method::as_str),
        }));
    if let Some(c) = &attempt.client_id {
        ev = ev.trust(super::bounded(c));
    }
    ev
}

/// Checks the request, authenticates the client, signs the token; returns the success
/// record (to be made durable before answering) and the response body.
async fn issue(
    s: &AppState,
    directory: &str,
    req: Request,
    meta: &RequestMeta,
    attempt: &mut Attempt,
) -> Result<(fedkey_audit::Event, Value), OauthError> {
    s.store.directory(directory).await?;
    let (parts, body) = req.into_parts();
    if !is_form(&parts.headers) {
        return Err(OauthError::invalid_request("the body must be application/x-www-form-urlencoded"));
    }
    let bytes = axum::body::to_bytes(body, TOKEN_BODY_LIMIT)
        .await
        .map_err(|_| OauthError::invalid_request(format!("the body must be at most {TOKEN_BODY_LIMIT} bytes")))?;
    let form = Form::parse(&bytes)?;
    match form.get("grant_type") {
        None => return Err(OauthError::invalid_request("grant_type is required")),
        Some("client_credentials") => {}
        Some(_) => return Err(OauthError::unsupported_grant_type("only client_credentials is supported")),
    }
    let urls = Urls::new(&s.public_url, directory);
    let client = authenticate(s, directory, &parts.headers, &form, &urls, meta, attempt).await?;
    let granted = access_token::granted(&client.scopes);
    let scopes = access_token::narrow(form.get("scope"), &granted)
        .map_err(|bad| OauthError::invalid_scope(format!("scope {bad:?} is not granted to this client")))?;
    let r = trust_ref(directory, &client.name, attempt)?;
    let ttl_secs = s.store.oauth_client(&r).await?.token_ttl_secs;
    let key = s.store.install.oauth_signing.as_ref().ok_or_else(|| OauthError::unavailable("no token signing key"))?;
    let grant = Grant {
        trust_id: client.trust_id,
        client_id: client.name.clone(),
        key_version: client.key_version,
        scopes: scopes.clone(),
        ttl_secs,
    };
    let issued = access_token::issue(key, &urls, &grant, s.store.now());
    let actor = Actor::anonymous(super::actor_id(directory, Some(&client.name)), meta);
    let ev = s
        .store
        .event(&actor, "oauth.token", Outcome::Success)
        .directory(directory)
        .trust(&client.name)
        .key_version(client.key_version)
        .details(json!({
            "method": attempt.method.map(Method::as_str), "jti": issued.jti, "scope": scopes.join(" "),
            "expires_at": issued.expires_at.to_rfc3339(),
        }));
    let body = json!({
        "access_token": issued.token, "token_type": "Bearer", "expires_in": ttl_secs, "scope": scopes.join(" "),
    });
    Ok((ev, body))
}

fn is_form(h: &HeaderMap) -> bool {
    h.get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/x-www-form-urlencoded"))
}

/// The request's parameters; each at most once (RFC 6749 §3.2).
struct Form(Vec<(String, String)>);

impl Form {
    fn parse(bytes: &[u8]) -> Result<Form, OauthError> {
        let mut pairs: Vec<(String, String)> = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for (k, v) in form_urlencoded::parse(bytes) {
            if !seen.insert(k.clone()) {
                let name: String = k.chars().filter(|c| !c.is_control()).take(64).collect();
                return Err(OauthError::invalid_request(format!("parameter {name:?} is repeated")));
            }
            pairs.push((k.into_owned(), v.into_owned()));
        }
        Ok(Form(pairs))
    }

    /// A parameter; an empty value counts as absent (RFC 6749 §3.1).
    fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str()).filter(|v| !v.is_empty())
    }
}

fn trust_ref(directory: &str, client_id: &str, attempt: &Attempt) -> Result<TrustRef, OauthError> {
    format!("{directory}/{client_id}")
        .parse::<TrustRef>()
        .map_err(|_| OauthError::invalid_client("unknown client", matches!(attempt.method, Some(Method::SecretBasic))))
}

/// Client authentication: exactly one method (RFC 6749 §2.3).
async fn authenticate(
    s: &AppState,
    directory: &str,
    headers: &HeaderMap,
    form: &Form,
    urls: &Urls,
    meta: &RequestMeta,
    attempt: &mut Attempt,
) -> Result<Client, OauthError> {
    let basic = basic_credentials(headers);
    let methods = [basic.is_some(), form.get("client_secret").is_some(), form.get("client_assertion").is_some()];
    if methods.iter().filter(|m| **m).count() > 1 {
        return Err(OauthError::invalid_request("use exactly one client authentication method"));
    }
    if let Some(b) = basic {
        attempt.method = Some(Method::SecretBasic);
        let (id, secret) = b.map_err(|m| OauthError::invalid_client(m, true))?;
        if form.get("client_id").is_some_and(|c| c != id) {
            return Err(OauthError::invalid_request("client_id differs from the Authorization header's"));
        }
        attempt.client_id = Some(id.clone());
        return by_secret(s, directory, &id, &secret, meta, true).await;
    }
    if let Some(secret) = form.get("client_secret") {
        attempt.method = Some(Method::SecretPost);
        let id = form.get("client_id").ok_or_else(|| OauthError::invalid_request("client_id is required"))?;
        attempt.client_id = Some(id.to_owned());
        return by_secret(s, directory, id, secret, meta, false).await;
    }
    if let Some(jwt) = form.get("client_assertion") {
        attempt.method = Some(Method::PrivateKeyJwt);
        if form.get("client_assertion_type") != Some(assertion::JWT_BEARER) {
            return Err(OauthError::invalid_client(
                format!("client_assertion_type must be {}", assertion::JWT_BEARER),
                false,
            ));
        }
        // The client is the assertion's issuer (RFC 7523 §3); a client_id parameter must agree.
        let iss = super::jws::unverified_claims(jwt)
            .and_then(|c| c.get("iss").and_then(Value::as_str).map(str::to_owned))
            .ok_or_else(|| OauthError::invalid_client("the client assertion is not a JWT with an iss", false))?;
        let id = form.get("client_id").unwrap_or(&iss).to_owned();
        attempt.client_id = Some(id.clone());
        return by_assertion(s, directory, &id, jwt, urls, attempt).await;
    }
    Err(OauthError::invalid_client("client authentication required", false))
}

/// `Authorization: Basic` credentials, form-decoded (RFC 6749 §2.3.1); `None` without the
/// header, the error when it is malformed.
fn basic_credentials(h: &HeaderMap) -> Option<Result<(String, String), &'static str>> {
    let v = h.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, b64) = v.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD.decode(b64.trim()).ok();
    let text = decoded.and_then(|d| String::from_utf8(d).ok());
    let Some((id, secret)) = text.as_deref().and_then(|t| t.split_once(':')) else {
        return Some(Err("malformed Basic credentials"));
    };
    let unescape = |s: &str| form_urlencoded::parse(format!("v={s}").as_bytes()).next().map(|(_, v)| v.into_owned());
    Some(match (unescape(id), unescape(secret)) {
        (Some(id), Some(secret)) if !id.is_empty() && !secret.is_empty() => Ok((id, secret)),
        _ => Err("malformed Basic credentials"),
    })
}

/// `client_secret_basic` / `client_secret_post`: the secret is a provisioning key version
/// of the client's trust, checked (and audited as `key.authenticate`) exactly as on the
/// SCIM endpoint, so rotation overlap, expiry and revocation apply unchanged.
async fn by_secret(
    s: &AppState,
    directory: &str,
    client_id: &str,
    secret: &str,
    meta: &RequestMeta,
    basic: bool,
) -> Result<Client, OauthError> {
    match s.store.authenticate_provisioning(directory, Some(secret), meta).await? {
        Ok(p) if p.trust == client_id => {
            Ok(Client { trust_id: p.trust_id, name: p.trust, key_version: p.version, scopes: p.scopes })
        }
        Ok(_) => Err(OauthError::invalid_client("the secret is not a key of this client", basic)),
        Err(AuthFailure::TrustSuspended) => Err(OauthError::invalid_grant("the client's trust is suspended")),
        Err(f) => Err(OauthError::invalid_client(format!("client authentication failed ({})", f.as_str()), basic)),
    }
}

/// `private_key_jwt`: an assertion signed with a key of the trust's registered JWKS, or of
/// its watched IdP material when none is registered; each `jti` once.
async fn by_assertion(
    s: &AppState,
    directory: &str,
    client_id: &str,
    jwt: &str,
    urls: &Urls,
    attempt: &Attempt,
) -> Result<Client, OauthError> {
    let unknown = || OauthError::invalid_client("unknown client", false);
    let r = trust_ref(directory, client_id, attempt)?;
    let trust = match s.store.trust(&r).await {
        Ok(t) => t,
        Err(StoreError::NotFound(_)) => return Err(unknown()),
        Err(e) => return Err(e.into()),
    };
    if trust.direction != Direction::Inbound {
        return Err(unknown());
    }
    let keys = client_keys(s, &r).await?;
    if keys.is_empty() {
        return Err(OauthError::invalid_client("this client has no registered or watched JWKS", false));
    }
    let aud = Audience { token_endpoint: urls.token_endpoint.clone(), issuer: urls.issuer.clone() };
    let now = s.store.now();
    let claims = assertion::check(jwt, client_id, &aud, &keys, now)
        .map_err(|e| OauthError::invalid_client(format!("client assertion refused: {e}"), false))?;
    let jti = claims.jti.as_deref().unwrap_or_default();
    // Namespaced apart from the jtis of bearer assertions on the SCIM endpoint.
    if !s
        .store
        .remember_jti(&trust.id, &format!("client_assertion\0{jti}"), assertion::replay_window_end(&claims))
        .await?
    {
        return Err(OauthError::invalid_client("client assertion refused: already used (jti)", false));
    }
    if trust.status != TrustStatus::Active {
        return Err(OauthError::invalid_grant("the client's trust is suspended"));
    }
    Ok(Client { trust_id: trust.id, name: trust.name, key_version: 0, scopes: trust.scopes })
}

/// The keys a client's assertions may be signed with: its registered JWKS, else the
/// current, unexpired JWKS material watched for the trust.
async fn client_keys(s: &AppState, r: &TrustRef) -> Result<Vec<SigningKey>, OauthError> {
    if let Some(jwks) = s.store.oauth_client(r).await?.jwks {
        return parse_jwks(jwks.to_string().as_bytes(), &Limits::default()).map_err(|e| {
            tracing::error!(trust = %r, error = %e, "registered OAuth JWKS no longer parses");
            OauthError::invalid_client("the client's registered JWKS is invalid", false)
        });
    }
    let now = s.store.now();
    let versions = s.store.material_versions(r, 5).await?;
    let current = versions
        .into_iter()
        .filter(|v| v.status == "current")
        .filter_map(|v| serde_json::from_value::<Material>(v.material).ok())
        .find(|m| m.kind == MaterialKind::Jwks && !m.is_expired(now));
    Ok(current.map(|m| m.keys).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_parameters_are_single_and_empty_means_absent() {
        let f = Form::parse(b"grant_type=client_credentials&scope=&client_id=a%2Bb+c").unwrap();
        assert_eq!(f.get("grant_type"), Some("client_credentials"));
        assert_eq!(f.get("scope"), None);
        assert_eq!(f.get("client_id"), Some("a+b c"));
        let e = Form::parse(b"grant_type=a&grant_type=b").map(|_| ()).unwrap_err();
        assert_eq!((e.status.as_u16(), e.error), (400, "invalid_request"));
    }

    #[test]
    fn basic_credentials_are_form_decoded() {
        let with = |raw: &str| {
            let mut h = HeaderMap::new();
            h.insert(header::AUTHORIZATION, HeaderValue::from_str(raw).unwrap());
            basic_credentials(&h)
        };
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        assert_eq!(
            with(&format!("Basic {}", b64("en%3Atra:fk_a%2Bb"))),
            Some(Ok(("en:tra".to_owned(), "fk_a+b".to_owned())))
        );
        assert_eq!(with(&format!("basic {}", b64("entra:"))), Some(Err("malformed Basic credentials")));
        assert_eq!(with("Basic !!!"), Some(Err("malformed Basic credentials")));
        assert_eq!(with("Bearer abc"), None, "not Basic: not a client secret");
        assert_eq!(basic_credentials(&HeaderMap::new()), None);
    }

    #[test]
    fn only_form_bodies_are_read() {
        let with = |ct: &str| {
            let mut h = HeaderMap::new();
            h.insert(header::CONTENT_TYPE, HeaderValue::from_str(ct).unwrap());
            is_form(&h)
        };
        assert!(with("application/x-www-form-urlencoded"));
        assert!(with("Application/X-WWW-Form-Urlencoded; charset=UTF-8"));
        assert!(!with("application/json"));
        assert!(!is_form(&HeaderMap::new()));
    }
}
