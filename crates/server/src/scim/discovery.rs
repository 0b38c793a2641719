//! Discovery (RFC 7644 §4): `/ServiceProviderConfig`, `/ResourceTypes`, `/Schemas`,
//! generated from the schema registry so what is advertised is what is enforced.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use fedkey_scim::ScimError;
use fedkey_scim::schema::{RESOURCE_TYPES, SCHEMAS};
use serde_json::{Value, json};

use super::{Ctx, Provisioner, ScimResponse, scim_json};
use crate::AppState;

pub const LIST_RESPONSE: &str = "urn:ietf:params:scim:api:messages:2.0:ListResponse";

pub async fn spc(Provisioner(p): Provisioner, State(s): State<AppState>, headers: HeaderMap) -> Response {
    super::render_spc(s.scheme, &p.directory, &headers)
}

/// A complete (unpaged) ListResponse.
pub fn list_response(items: Vec<Value>) -> Value {
    json!({
        "schemas": [LIST_RESPONSE],
        "totalResults": items.len(),
        "startIndex": 1,
        "itemsPerPage": items.len(),
        "Resources": items,
    })
}

pub async fn resource_types(ctx: Ctx) -> Response {
    let items = RESOURCE_TYPES.iter().map(|r| r.to_json(&ctx.base)).collect();
    scim_json(StatusCode::OK, &list_response(items))
}

pub async fn resource_type(ctx: Ctx, Path((_, id)): Path<(String, String)>) -> Result<Response, ScimResponse> {
    let rt = RESOURCE_TYPES
        .iter()
        .find(|r| r.id == id)
        .ok_or_else(|| ScimResponse(ScimError::new(404, None, format!("no resource type {:?}", clip(&id)))))?;
    Ok(scim_json(StatusCode::OK, &rt.to_json(&ctx.base)))
}

pub async fn schemas(ctx: Ctx) -> Response {
    let items = SCHEMAS.iter().map(|s| s.to_json(&ctx.base)).collect();
    scim_json(StatusCode::OK, &list_response(items))
}

pub async fn schema(ctx: Ctx, Path((_, id)): Path<(String, String)>) -> Result<Response, ScimResponse> {
    let sch = SCHEMAS
        .iter()
        .find(|s| s.id.eq_ignore_ascii_case(&id))
        .ok_or_else(|| ScimResponse(ScimError::new(404, None, format!("no schema {:?}", clip(&id)))))?;
    Ok(scim_json(StatusCode::OK, &sch.to_json(&ctx.base)))
}

pub fn clip(s: &str) -> String {
    s.chars().take(64).collect()
}
