//! The admin API's OpenAPI 3.1 document. It is generated: the paths from the routes
//! themselves (each handler's `#[utoipa::path]`, registered with `routes!`, so a route
//! cannot exist undocumented), the schemas from the types of `fedkey-api`. Served at
//! `GET /api/v1/openapi.json` without authentication (it holds no secrets) and committed
//! as `docs/openapi.json`; a test fails when the two differ.

use std::sync::OnceLock;

use axum::http::header;
use axum::response::IntoResponse;
use fedkey_api::{ErrorBody, ErrorCode};
use utoipa::OpenApi;
use utoipa::openapi::response::ResponseBuilder;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, RefOr};
use utoipa_axum::router::OpenApiRouter;

/// Where the admin API lives; the document's paths include it.
pub const PREFIX: &str = "/api/v1";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "fedkey admin API",
        description = "Directories, trusts and their keys, rotation, provisioning and the audit log. \
                       Every operation but this document needs `Authorization: Bearer <admin token>`; \
                       every error answers `{\"error\": {\"code\", \"message\"}}` (see ErrorCode)."
    ),
    components(schemas(ErrorBody, ErrorCode)),
    security(("bearer" = []))
)]
struct Base;

/// The document, built from the same route table as the router.
pub fn document() -> utoipa::openapi::OpenApi {
    let (_, mut api) =
        OpenApiRouter::with_openapi(Base::openapi()).nest(PREFIX, crate::admin::documented()).split_for_parts();
    let components = api.components.get_or_insert_with(Default::default);
    components.security_schemes.insert(
        "bearer".into(),
        RefOr::T(SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build())),
    );
    // One error answer shared by every operation, rather than a copy per status.
    let error = ResponseBuilder::new()
        .description("An error: `code` is one of ErrorCode, `message` is for people.")
        .content("application/json", ContentBuilder::new().schema(Some(Ref::from_schema_name("ErrorBody"))).build())
        .build();
    components.responses.insert("Error".into(), RefOr::T(error));
    for item in api.paths.paths.values_mut() {
        for op in [&mut item.get, &mut item.put, &mut item.post, &mut item.delete].into_iter().flatten() {
            op.responses
                .responses
                .entry("default".into())
                .or_insert_with(|| RefOr::Ref(Ref::from_response_name("Error")));
        }
    }
    api
}

/// The document as served and committed: pretty JSON and a final newline.
pub fn document_json() -> &'static str {
    static JSON: OnceLock<String> = OnceLock::new();
    JSON.get_or_init(|| match document().to_pretty_json() {
        Ok(s) => s + "\n",
        Err(e) => {
            tracing::error!(error = %e, "the OpenAPI document does not serialise");
            String::from("{}\n")
        }
    })
}

/// This document.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "meta",
    security(()),
    responses((status = 200, description = "The OpenAPI 3.1 document of this API", content_type = "application/json", body = Object))
)]
pub(crate) async fn serve() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], document_json())
}

#[cfg(test)]
mod tests;
