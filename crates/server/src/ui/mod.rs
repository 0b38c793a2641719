//! The operator console at `/ui`: server-rendered pages (askama templates compiled into
//! the binary), one stylesheet and one small script for progressive enhancement. Pages
//! read the store, the health model and the provisioning state directly, as the admin API
//! does; every change goes through the same store, rotation and sync functions, so it is
//! audited the same way. See docs/console.md.

mod actions;
mod assets;
mod audit;
mod directory;
mod overview;
mod provisioning;
mod security;
pub mod session;
mod trust;
pub mod view;

use axum::Router;
use axum::middleware::{from_fn, from_fn_with_state};
use axum::response::Redirect;
use axum::routing::{get, post};

use crate::AppState;

pub use security::CSP;

/// The console's routes, to nest under `/ui`.
pub fn router(state: &AppState) -> Router<AppState> {
    Router::new()
        .route("/", get(overview::page))
        .route("/login", get(session::login_page).post(session::sign_in))
        .route("/logout", post(session::sign_out))
        .route("/trusts/{d}/{t}", get(trust::page))
        .route("/trusts/{d}/{t}/rotate", post(actions::rotate))
        .route("/trusts/{d}/{t}/revoke", post(actions::revoke))
        .route("/trusts/{d}/{t}/suspend", post(actions::suspend))
        .route("/trusts/{d}/{t}/resume", post(actions::resume))
        .route("/trusts/{d}/{t}/material/approve", post(actions::approve_material))
        .route("/trusts/{d}/{t}/material/reject", post(actions::reject_material))
        .route("/trusts/{d}/{t}/reconcile", post(actions::reconcile_dry_run))
        .route("/provisioning", get(provisioning::page))
        .route("/directories/{d}", get(directory::page))
        .route("/directories/{d}/dead-letters/retry", post(actions::retry_dead_letters))
        .route("/directories/{d}/dead-letters/discard", post(actions::discard_dead_letters))
        .route("/audit", get(audit::page))
        .route("/audit/export", get(audit::export))
        .route("/assets/console.css", get(assets::css))
        .route("/assets/console.js", get(assets::js))
        .fallback(view::not_found)
        .layer(from_fn_with_state(state.clone(), session::guard))
        .layer(from_fn(security::headers))
}

/// `GET /`: the console.
pub async fn root() -> Redirect {
    Redirect::to("/ui")
}
