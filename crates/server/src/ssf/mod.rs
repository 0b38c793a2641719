//! An OpenID Shared Signals Framework 1.0 transmitter per directory, carrying CAEP 1.0 and
//! RISC 1.0 account events about the directory's users:
//!
//! - issuer `{public_url}/ssf/{directory}`; transmitter configuration metadata at
//!   `GET /.well-known/ssf-configuration/ssf/{directory}` (§7.2: the well-known segment
//!   goes between the host and the issuer's path), public;
//! - the stream management API (§8) under the issuer, for authenticated receivers
//!   ([`receiver`]): `{issuer}/streams` (POST create, GET read or list, PATCH update, PUT
//!   replace, DELETE), `{issuer}/status` (GET, POST), `{issuer}/verify` (POST);
//! - RFC 8936 poll delivery at `{issuer}/streams/{stream_id}/poll`, same authentication.
//!
//! Streams, their queue of SETs, the mapping from directory changes to CAEP/RISC events, SET
//! signing and RFC 8935 push delivery belong to the security-event pipeline
//! (`fedkey_store` `ops/events`, [`crate::events`]); this module is the SSF surface on it.

mod config;
mod control;
mod discovery;
mod error;
pub mod events;
mod poll;
mod receiver;
mod streams;

use std::time::Duration;

use axum::Router;
use axum::routing::{get, post};

use crate::AppState;

pub use error::SsfError;

/// Largest request body of the management API and the poll endpoint.
pub const SSF_BODY_LIMIT: usize = 64 * 1024;
/// Least time between two verification requests on one stream (`min_verification_interval`).
pub const MIN_VERIFICATION_INTERVAL: Duration = Duration::from_secs(30);
/// Most streams one receiver may hold in a directory; one more is answered 409.
pub const MAX_STREAMS_PER_RECEIVER: usize = 10;

pub fn router(state: &AppState) -> Router<AppState> {
    let api = Router::new()
        .route(
            "/ssf/{directory}/streams",
            get(streams::read)
                .post(streams::create)
                .patch(streams::update)
                .put(streams::replace)
                .delete(streams::delete),
        )
        .route("/ssf/{directory}/status", get(control::read_status).post(control::update_status))
        .route("/ssf/{directory}/verify", post(control::verify))
        .route("/ssf/{directory}/streams/{stream_id}/poll", post(poll::poll));
    let api = crate::body_limit::limit_router(api, SSF_BODY_LIMIT)
        .layer(axum::middleware::from_fn_with_state(state.clone(), crate::source_limit::admin));
    Router::new().route("/.well-known/ssf-configuration/ssf/{directory}", get(discovery::configuration)).merge(api)
}

/// The URLs of one directory's transmitter, from the configured public URL (every node names
/// the same issuer, whatever Host header a receiver sent).
#[derive(Debug, Clone)]
pub struct Urls {
    pub issuer: String,
    pub configuration_endpoint: String,
    pub status_endpoint: String,
    pub verification_endpoint: String,
}

impl Urls {
    pub fn new(public_url: &str, directory: &str) -> Urls {
        let issuer = format!("{}/ssf/{directory}", public_url.trim_end_matches('/'));
        Urls {
            configuration_endpoint: format!("{issuer}/streams"),
            status_endpoint: format!("{issuer}/status"),
            verification_endpoint: format!("{issuer}/verify"),
            issuer,
        }
    }

    /// Where the receiver of a poll stream fetches its SETs.
    pub fn poll_endpoint(&self, stream_id: &str) -> String {
        format!("{}/{stream_id}/poll", self.configuration_endpoint)
    }
}
