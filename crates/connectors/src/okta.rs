//! Okta: sets the token of an app's default provisioning connection and activates it
//! (Application Connections API, SSWS API-token auth).

use std::time::Duration;

use fedkey_core::clock::Timestamp;
use fedkey_crypto::Secret;
use fedkey_egress::Egress;
use reqwest::{Method, Url};
use serde::Serialize;

use crate::delivery::{Delivery, Receipt, Validation};
use crate::error::{ConnectorError, Redactor};
use crate::http;
use crate::kind::ConnectorKind;

const KIND: ConnectorKind = ConnectorKind::Okta;

pub struct OktaConnector {
    pub(crate) org: Url,
    pub(crate) app_id: String,
    pub(crate) api_token: Secret,
    pub(crate) egress: Egress,
    pub(crate) timeout: Duration,
}

/// Okta's documented request: `{"profile":{"authScheme":"TOKEN","token":"…"}}`.
#[derive(Serialize)]
struct ConnectionRequest<'a> {
    profile: Profile<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Profile<'a> {
    auth_scheme: &'static str,
    token: &'a str,
}

/// `ProvisioningConnection`: `authScheme` (TOKEN | UNKNOWN), `status` (ENABLED | DISABLED | UNKNOWN).
#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct Connection {
    auth_scheme: Option<String>,
    status: Option<String>,
}

impl OktaConnector {
    pub(crate) fn new(org: Url, app_id: String, api_token: Secret, egress: Egress) -> Self {
        OktaConnector { org, app_id, api_token, egress, timeout: http::DEFAULT_TIMEOUT }
    }

    fn connection_url(&self) -> Url {
        http::join(&self.org, &["api", "v1", "apps", &self.app_id, "connections", "default"])
    }

    fn auth(&self) -> String {
        format!("SSWS {}", self.api_token.expose())
    }

    async fn read_connection(
        &self,
        resp: reqwest::Response,
        redactor: &Redactor<'_>,
    ) -> Result<(u16, Connection), ConnectorError> {
        let status = resp.status().as_u16();
        let body = http::body_text(KIND, resp, self.timeout, redactor).await?;
        let conn = serde_json::from_str(&body).map_err(|_| ConnectorError::Protocol {
            kind: KIND,
            status,
            detail: "response is not a ProvisioningConnection object".into(),
        })?;
        Ok((status, conn))
    }

    pub async fn deliver(&self, d: &Delivery<'_>, now: Timestamp) -> Result<Receipt, ConnectorError> {
        let redactor = Redactor::new().with(d.key.expose()).with(self.api_token.expose());
        let mut url = self.connection_url();
        url.set_query(Some("activate=true"));
        let body = ConnectionRequest { profile: Profile { auth_scheme: "TOKEN", token: d.key.expose() } };
        let req = http::request(KIND, &self.egress, Method::POST, &url)?
            .header(reqwest::header::AUTHORIZATION, self.auth())
            .header(reqwest::header::ACCEPT, "application/json")
            .json(&body);
        let resp = http::send(KIND, &self.egress, req, self.timeout, &redactor).await?;
        if !resp.status().is_success() {
            return Err(http::error_from_response(KIND, resp, self.timeout, now, &redactor).await);
        }
        let (http_status, conn) = self.read_connection(resp, &redactor).await?;
        Ok(Receipt::Okta { http_status, connection_status: conn.status.map(|s| redactor.clean(&s)) })
    }

    /// Okta cannot test the token itself; it can say whether the connection uses a token
    /// and is enabled, which is what a failed or half-applied activation breaks.
    pub async fn validate(&self, d: &Delivery<'_>, now: Timestamp) -> Result<Validation, ConnectorError> {
        let redactor = Redactor::new().with(d.key.expose()).with(self.api_token.expose());
        let req = http::request(KIND, &self.egress, Method::GET, &self.connection_url())?
            .header(reqwest::header::AUTHORIZATION, self.auth())
            .header(reqwest::header::ACCEPT, "application/json");
        let resp = http::send(KIND, &self.egress, req, self.timeout, &redactor).await?;
        if !resp.status().is_success() {
            return Err(http::error_from_response(KIND, resp, self.timeout, now, &redactor).await);
        }
        let (_, conn) = self.read_connection(resp, &redactor).await?;
        let status = conn.status.as_deref().unwrap_or("missing");
        let scheme = conn.auth_scheme.as_deref().unwrap_or("missing");
        if status == "ENABLED" && scheme == "TOKEN" {
            Ok(Validation::Verified)
        } else {
            Err(ConnectorError::ValidationFailed {
                kind: KIND,
                detail: redactor.clean(&format!(
                    "default provisioning connection has status {status} and authScheme {scheme}, \
                     expected ENABLED and TOKEN"
                )),
            })
        }
    }
}
