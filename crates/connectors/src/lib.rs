//! Connectors deliver a trust's new provisioning key version to the peer — Entra ID (Graph),
//! Okta, OpenBao/Vault KV v2, a local file, or a signed webhook — and, where the peer allows,
//! validate that it arrived. Errors are classified for the rotation engine's retry decisions
//! and never carry a key or credential.
//!
//! Use: build a [`Connector`] from a trust's stored [`ConnectorSpec`] (plain JSON) and
//! [`ConnectorCredentials`] (decrypted with [`ConnectorCredentials::from_secret_json`]) and a
//! shared [`fedkey_egress::Egress`] (every request goes through its policy), then call
//! [`Connector::deliver`] in the rotation's *set* step and [`Connector::validate`] in its *test*
//! step. On error, [`ConnectorError::retryable`] and [`ConnectorError::retry_after`] say
//! whether and when to try again.

mod bao;
pub mod connector;
pub mod delivery;
pub mod entra;
pub mod error;
pub mod file;
mod http;
pub mod kind;
pub mod okta;
pub mod openbao;
pub mod spec;
pub mod transit;
pub mod webhook;

pub use connector::Connector;
pub use delivery::{Delivery, Receipt, Validation};
pub use error::ConnectorError;
pub use file::DeliveryRoot;
pub use http::{DEFAULT_TIMEOUT, MAX_RESPONSE_BYTES};
pub use kind::ConnectorKind;
pub use spec::{ConnectorCredentials, ConnectorSpec, CredentialsError, EntraAuth};
pub use transit::TransitClient;
