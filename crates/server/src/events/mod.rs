//! Security events out of fedkey: SETs built and signed ([`set`]), pushed to receivers
//! (RFC 8935, [`push`]) or polled by them (RFC 8936, [`poll`]). The queue and the
//! mapping from directory changes to events live in `fedkey_store::ops::events`.

pub mod poll;
pub mod push;
pub mod set;

use axum::Router;
use axum::routing::post;

use crate::AppState;

/// The RFC 8936 poll endpoint of RFC 9967 receivers.
pub fn router() -> Router<AppState> {
    Router::new().route("/events/{directory}/{stream}", post(poll::poll))
}
