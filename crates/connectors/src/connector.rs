//! [`Connector`]: one enum over the kinds, built from a spec and its credentials.

use std::time::Duration;

use fedkey_core::clock::Timestamp;
use fedkey_egress::Egress;

use crate::bao::BaoClient;
use crate::delivery::{Delivery, Receipt, Validation};
use crate::entra::EntraConnector;
use crate::error::ConnectorError;
use crate::file::{DeliveryRoot, FileConnector};
use crate::http::parse_base_url;
use crate::kind::ConnectorKind;
use crate::okta::OktaConnector;
use crate::openbao::OpenbaoConnector;
use crate::spec::{ConnectorCredentials, ConnectorSpec};
use crate::webhook::WebhookConnector;

pub enum Connector {
    Entra(EntraConnector),
    Okta(OktaConnector),
    Openbao(OpenbaoConnector),
    File(FileConnector),
    Webhook(WebhookConnector),
}

/// Names the kind only: the variants hold credentials.
impl std::fmt::Debug for Connector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Connector({})", self.kind())
    }
}

impl Connector {
    /// Checks that spec and credentials are of the same kind and that every URL is https
    /// (plain http only for loopback) and allowed by the egress policy. `egress` is shared; each call sets its own timeout
    /// ([`crate::DEFAULT_TIMEOUT`] unless changed with [`Connector::with_timeout`]).
    pub fn new(
        spec: ConnectorSpec,
        credentials: ConnectorCredentials,
        egress: Egress,
    ) -> Result<Connector, ConnectorError> {
        let kind = spec.kind();
        if credentials.kind() != kind {
            return Err(ConnectorError::config(
                kind,
                format!("credentials are for a {} connector, the spec is for {kind}", credentials.kind()),
            ));
        }
        match (spec, credentials) {
            (
                ConnectorSpec::Entra {
                    tenant_id,
                    client_id,
                    service_principal_id,
                    job_id,
                    graph_base_url,
                    login_base_url,
                    auth,
                },
                ConnectorCredentials::Entra { client_secret },
            ) => {
                for (field, value) in [
                    ("tenant_id", &tenant_id),
                    ("client_id", &client_id),
                    ("service_principal_id", &service_principal_id),
                ] {
                    if value.trim().is_empty() {
                        return Err(ConnectorError::config(kind, format!("{field} is empty")));
                    }
                }
                let graph = parse_base_url(kind, "graph_base_url", &graph_base_url, &egress)?;
                let login = parse_base_url(kind, "login_base_url", &login_base_url, &egress)?;
                Ok(Connector::Entra(EntraConnector::new(
                    tenant_id,
                    client_id,
                    service_principal_id,
                    job_id.filter(|j| !j.trim().is_empty()),
                    graph,
                    login,
                    client_secret,
                    egress,
                    auth,
                )))
            }
            (ConnectorSpec::Okta { org_url, app_id }, ConnectorCredentials::Okta { api_token }) => {
                if app_id.trim().is_empty() {
                    return Err(ConnectorError::config(kind, "app_id is empty"));
                }
                let org = parse_base_url(kind, "org_url", &org_url, &egress)?;
                Ok(Connector::Okta(OktaConnector::new(org, app_id, api_token, egress)))
            }
            (ConnectorSpec::Openbao { address, mount, path, namespace }, ConnectorCredentials::Openbao { token }) => {
                let client = BaoClient::new(&address, namespace, token, egress)?;
                Ok(Connector::Openbao(OpenbaoConnector::new(client, mount, path)?))
            }
            (ConnectorSpec::File { path }, ConnectorCredentials::File) => {
                Ok(Connector::File(FileConnector::new(path)?))
            }
            (ConnectorSpec::Webhook { url }, ConnectorCredentials::Webhook { signing_secret }) => {
                let url = parse_base_url(kind, "url", &url, &egress)?;
                Ok(Connector::Webhook(WebhookConnector::new(url, signing_secret, egress)))
            }
            _ => Err(ConnectorError::config(kind, "spec and credentials kinds differ")),
        }
    }

    /// The per-call timeout for every HTTP request this connector makes.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        match &mut self {
            Connector::Entra(c) => c.timeout = timeout,
            Connector::Okta(c) => c.timeout = timeout,
            Connector::Openbao(c) => c.set_timeout(timeout),
            Connector::File(_) => {}
            Connector::Webhook(c) => c.timeout = timeout,
        }
        self
    }

    /// Confines a file connector to `root` (its path must lie under it); without this a
    /// file connector refuses to deliver. Other kinds are unchanged.
    pub fn confine(self, root: &DeliveryRoot) -> Result<Self, ConnectorError> {
        match self {
            Connector::File(c) => c.confine(root).map(Connector::File),
            other => Ok(other),
        }
    }

    pub fn kind(&self) -> ConnectorKind {
        match self {
            Connector::Entra(_) => ConnectorKind::Entra,
            Connector::Okta(_) => ConnectorKind::Okta,
            Connector::Openbao(_) => ConnectorKind::Openbao,
            Connector::File(_) => ConnectorKind::File,
            Connector::Webhook(_) => ConnectorKind::Webhook,
        }
    }

    /// Delivers one key version. Safe to repeat after an error: every kind overwrites or
    /// appends, so a retried step converges.
    pub async fn deliver(&self, d: &Delivery<'_>, now: Timestamp) -> Result<Receipt, ConnectorError> {
        match self {
            Connector::Entra(c) => c.deliver(d, now).await,
            Connector::Okta(c) => c.deliver(d, now).await,
            Connector::Openbao(c) => c.deliver(d, now).await,
            Connector::File(c) => c.deliver(d).await,
            Connector::Webhook(c) => c.deliver(d, now).await,
        }
    }

    /// Asks the peer whether it holds (or accepts) the delivered key. `now` serves token
    /// caching and `Retry-After` dates.
    pub async fn validate(&self, d: &Delivery<'_>, now: Timestamp) -> Result<Validation, ConnectorError> {
        match self {
            Connector::Entra(c) => c.validate(d, now).await,
            Connector::Okta(c) => c.validate(d, now).await,
            Connector::Openbao(c) => c.validate(d, now).await,
            Connector::File(c) => c.validate(d).await,
            Connector::Webhook(c) => Ok(c.validate()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn send_sync<T: Send + Sync>(_: &T) {}
    fn send<T: Send>(_: T) {}

    /// The engine runs deliveries on a multi-threaded runtime: the connector and its
    /// futures must cross threads.
    #[test]
    fn connector_and_its_futures_are_send() {
        let c = Connector::new(
            ConnectorSpec::Webhook { url: "https://hooks.example/fedkey".into() },
            ConnectorCredentials::Webhook { signing_secret: fedkey_crypto::Secret::new("s3cr3t-value".into()) },
            Egress::strict().unwrap(),
        )
        .unwrap();
        send_sync(&c);
        assert_eq!(format!("{c:?}"), "Connector(webhook)");
        let key = fedkey_crypto::Secret::new("k".into());
        let d = Delivery { trust: "a/b", version: 1, key: &key, scim_base_url: "https://x.example" };
        send(c.deliver(&d, Timestamp(0)));
        send(c.validate(&d, Timestamp(0)));
    }
}
