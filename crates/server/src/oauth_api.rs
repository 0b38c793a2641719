//! Admin API of a trust's OAuth client settings, at
//! `/api/v1/directories/{d}/trusts/{t}/oauth`: the JWKS its `private_key_jwt` assertions
//! are verified against and the lifetime of its access tokens.

use axum::extract::{Path, State};
use axum::routing::get;
use axum::{Json, Router};
use fedkey_core::Direction;
use fedkey_federation::{Limits, parse_jwks};
use fedkey_store::oauth::{DEFAULT_TOKEN_TTL_SECS, OauthClient};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::AppState;
use crate::admin::{Admin, Need, Target, parse_duration, trust_ref};
use crate::error::ApiError;
use crate::extract::ApiJson;
use crate::oauth::Urls;

/// The routes, with their full `/api/v1` path, behind the admin per-source limit and body
/// limit like the rest of the admin API.
pub fn routes(state: &AppState) -> Router<AppState> {
    let routes = Router::new().route("/api/v1/directories/{d}/trusts/{t}/oauth", get(show).put(set).delete(clear));
    crate::body_limit::limit(routes, crate::ADMIN_BODY_LIMIT)
        .layer(axum::middleware::from_fn_with_state(state.clone(), crate::source_limit::admin))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    /// A JWKS of public keys; `null` or absent: the trust's watched material.
    #[serde(default)]
    jwks: Option<Value>,
    /// e.g. `10m`; absent: the default.
    #[serde(default)]
    token_ttl: Option<String>,
}

fn client_json(s: &AppState, d: &str, t: &str, c: &OauthClient) -> Value {
    let u = Urls::new(&s.public_url, d);
    json!({
        "client_id": t,
        "issuer": u.issuer,
        "token_endpoint": u.token_endpoint,
        "jwks": c.jwks,
        "assertion_keys": if c.jwks.is_some() { "registered" } else { "material" },
        "token_ttl_secs": c.token_ttl_secs,
        "updated_at": crate::admin::ts(c.updated_at),
        "updated_by": c.updated_by,
    })
}

async fn show(
    a: Admin,
    State(s): State<AppState>,
    Path((d, t)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let st = &s.store;
    a.read(st, Need::Read, "trust.oauth.show", Target::trust(&d, &t), async {
        let c = st.oauth_client(&trust_ref(&d, &t)?).await?;
        Ok(client_json(&s, &d, &t, &c))
    })
    .await
}

async fn set(
    a: Admin,
    State(s): State<AppState>,
    Path((d, t)): Path<(String, String)>,
    ApiJson(body): ApiJson<Settings>,
) -> Result<Json<Value>, ApiError> {
    let st = &s.store;
    a.change(st, Need::Administer, "trust.oauth", Target::trust(&d, &t), async {
        let r = trust_ref(&d, &t)?;
        if st.trust(&r).await?.direction != Direction::Inbound {
            return Err(ApiError::invalid_value("only an inbound trust is an OAuth client of its directory"));
        }
        let jwks = match body.jwks {
            None | Some(Value::Null) => None,
            Some(j) => {
                let keys = parse_jwks(j.to_string().as_bytes(), &Limits::default())
                    .map_err(|e| ApiError::invalid_value(format!("jwks: {e}")))?;
                if keys.iter().all(|k| k.jwk.is_none()) {
                    return Err(ApiError::invalid_value("jwks: no usable public signing key"));
                }
                Some(j)
            }
        };
        let ttl = match &body.token_ttl {
            Some(v) => i64::try_from(parse_duration("token_ttl", v)?.as_secs()).unwrap_or(i64::MAX),
            None => DEFAULT_TOKEN_TTL_SECS,
        };
        let c = st.set_oauth_client(&a.actor(), &r, jwks, ttl).await?;
        Ok(Json(client_json(&s, &d, &t, &c)))
    })
    .await
}

async fn clear(
    a: Admin,
    State(s): State<AppState>,
    Path((d, t)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let st = &s.store;
    a.change(st, Need::Administer, "trust.oauth.clear", Target::trust(&d, &t), async {
        let r = trust_ref(&d, &t)?;
        st.clear_oauth_client(&a.actor(), &r).await?;
        Ok(Json(client_json(&s, &d, &t, &OauthClient::default())))
    })
    .await
}
