#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Connector tests against local peers: axum fakes that follow the documented Graph and Okta
//! request/response shapes, a real OpenBao dev server, a temp directory, a webhook receiver.

#[path = "connectors/common.rs"]
mod common;
#[path = "connectors/entra.rs"]
mod entra;
#[path = "connectors/file.rs"]
mod file;
#[path = "connectors/okta.rs"]
mod okta;
#[path = "connectors/openbao.rs"]
mod openbao;
#[path = "connectors/webhook.rs"]
mod webhook;
