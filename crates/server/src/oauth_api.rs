//! Admin API of a trust's OAuth client settings, at
//! `/api/v1/directories/{d}/trusts/{t}/oauth`: the JWKS its `private_key_jwt` assertions
//! are verified against and the lifetime of its access tokens.

use axum::Json;
use axum::extract::{Path, State};
use fedkey_api::TrustPath;
use fedkey_api::oauth::{OauthClient as OauthClientView, OauthClientSettings};
use fedkey_core::Direction;
use fedkey_federation::{Limits, parse_jwks};
use fedkey_store::oauth::{DEFAULT_TOKEN_TTL_SECS, OauthClient};
use serde_json::Value;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::admin::{Admin, Need, Target, parse_duration, trust_ref};
use crate::error::ApiError;
use crate::extract::ApiJson;
use crate::oauth::Urls;

/// The routes, part of the admin API's route table.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(show, set, clear))
}

fn client_view(s: &AppState, d: &str, t: &str, c: &OauthClient) -> OauthClientView {
    let u = Urls::new(&s.public_url, d);
    OauthClientView {
        client_id: t.to_owned(),
        issuer: u.issuer,
        token_endpoint: u.token_endpoint,
        jwks: c.jwks.clone(),
        assertion_keys: if c.jwks.is_some() { "registered" } else { "material" }.to_owned(),
        token_ttl_secs: c.token_ttl_secs,
        updated_at: crate::admin::ts(c.updated_at),
        updated_by: c.updated_by.clone(),
    }
}

#[utoipa::path(get, path = "/directories/{d}/trusts/{t}/oauth", tag = "trusts", params(TrustPath), responses((status = 200, body = OauthClientView)))]
async fn show(
    a: Admin,
    State(s): State<AppState>,
    Path((d, t)): Path<(String, String)>,
) -> Result<Json<OauthClientView>, ApiError> {
    let st = &s.store;
    a.read(st, Need::Read, "trust.oauth.show", Target::trust(&d, &t), async {
        let c = st.oauth_client(&trust_ref(&d, &t)?).await?;
        Ok(client_view(&s, &d, &t, &c))
    })
    .await
}

#[utoipa::path(put, path = "/directories/{d}/trusts/{t}/oauth", tag = "trusts", params(TrustPath), request_body = OauthClientSettings, responses((status = 200, body = OauthClientView)))]
async fn set(
    a: Admin,
    State(s): State<AppState>,
    Path((d, t)): Path<(String, String)>,
    ApiJson(body): ApiJson<OauthClientSettings>,
) -> Result<Json<OauthClientView>, ApiError> {
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
        Ok(Json(client_view(&s, &d, &t, &c)))
    })
    .await
}

#[utoipa::path(delete, path = "/directories/{d}/trusts/{t}/oauth", tag = "trusts", params(TrustPath), responses((status = 200, body = OauthClientView)))]
async fn clear(
    a: Admin,
    State(s): State<AppState>,
    Path((d, t)): Path<(String, String)>,
) -> Result<Json<OauthClientView>, ApiError> {
    let st = &s.store;
    a.change(st, Need::Administer, "trust.oauth.clear", Target::trust(&d, &t), async {
        let r = trust_ref(&d, &t)?;
        st.clear_oauth_client(&a.actor(), &r).await?;
        Ok(Json(client_view(&s, &d, &t, &OauthClient::default())))
    })
    .await
}
