//! fedkey's HTTP surface: the admin API (`/api/v1`), the SCIM base (`/scim/v2/{dir}`),
//! health and metrics, served over plain HTTP on loopback or TLS (rustls).

pub mod admin;
pub mod audit_api;
pub mod audit_stream;
pub mod body_limit;
mod conn;
pub mod error;
pub mod events;
pub mod events_api;
pub mod extract;
pub mod health;
pub mod import;
pub mod leaks;
pub mod metrics;
pub mod oauth;
pub mod oauth_api;
pub mod openapi;
pub mod ratelimit;
pub mod request;
pub mod rotation_api;
pub mod scim;
pub mod serve;
pub mod source_limit;
pub mod ssf;
pub mod state;
pub mod sync_api;
#[cfg(feature = "test-hooks")]
pub mod test_hooks;
pub mod ui;

pub use serve::{ConnLimits, ServeOptions, TlsFiles, serve};

/// Whether this build has the test hooks (the `test-hooks` feature): the `/api/v1/test/*`
/// routes, `--unsafe-test-clock` and the rotation engine's failpoints.
pub const TEST_HOOKS: bool = cfg!(feature = "test-hooks");
pub use state::AppState;

use axum::Router;

/// Largest admin API body; SCIM has its own, larger limit.
pub const ADMIN_BODY_LIMIT: usize = 64 * 1024;

/// The whole application router.
pub fn router(state: AppState) -> Router {
    use axum::middleware::from_fn_with_state;
    // The per-source limit runs before anything that authenticates; health and metrics
    // are not limited.
    let admin_limit = from_fn_with_state(state.clone(), source_limit::admin);
    Router::new()
        .nest("/api/v1", admin::router().layer(admin_limit.clone()))
        .nest("/scim/v2", scim::router(&state))
        .merge(health::router())
        .merge(metrics::router())
        .merge(oauth::router(&state))
        .merge(ssf::router(&state))
        .merge(events::router())
        .merge(rotation_api::unwrap_routes().layer(admin_limit.clone()))
        .nest("/ui", body_limit::limit_router(ui::router(&state), ADMIN_BODY_LIMIT).layer(admin_limit))
        .route("/", axum::routing::get(ui::root))
        .fallback(error::not_found)
        .method_not_allowed_fallback(error::method_not_allowed)
        .layer(from_fn_with_state(state.clone(), request::request_context))
        .with_state(state)
}
