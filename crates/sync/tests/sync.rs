#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Integration tests of the outbound SCIM client against in-process fake targets (axum on
//! 127.0.0.1:0) and, when installed, the reference Python server `scim2-server`.

#[path = "sync/fake.rs"]
mod fake;

#[path = "sync/client.rs"]
mod client;

#[path = "sync/errors.rs"]
mod errors;

#[path = "sync/oauth.rs"]
mod oauth;

#[path = "sync/reference.rs"]
mod reference;
