//! Microsoft Entra ID: writes the provisioning secret of an enterprise app through Graph
//! (`synchronization/secrets`) with an app-only token from the client-credentials grant.

use std::time::Duration;

use fedkey_core::clock::Timestamp;
use fedkey_crypto::Secret;
use reqwest::{Client, StatusCode, Url};
use serde::Serialize;
use tokio::sync::Mutex;

use crate::delivery::{Delivery, Receipt, Validation};
use crate::error::{ConnectorError, Redactor};
use crate::http;
use crate::kind::ConnectorKind;

const KIND: ConnectorKind = ConnectorKind::Entra;
/// Refresh this long before the token expires (capped at half its lifetime), so a token
/// never expires between the check and Graph receiving the request.
const REFRESH_MARGIN: Duration = Duration::from_secs(300);

pub struct EntraConnector {
    pub(crate) tenant_id: String,
    pub(crate) client_id: String,
    pub(crate) service_principal_id: String,
    pub(crate) job_id: Option<String>,
    pub(crate) graph: Url,
    pub(crate) login: Url,
    pub(crate) client_secret: Secret,
    pub(crate) http: Client,
    pub(crate) timeout: Duration,
    token: Mutex<Option<CachedToken>>,
}

struct CachedToken {
    access_token: Secret,
    refresh_at: Timestamp,
}

#[derive(serde::Deserialize)]
struct TokenResponse {
    access_token: String,
    /// Seconds. Entra sends a number; some OAuth servers send a string.
    expires_in: serde_json::Value,
}

#[derive(Serialize)]
struct KeyValue<'a> {
    key: &'static str,
    value: &'a str,
}

#[derive(Serialize)]
struct SecretsBody<'a> {
    value: [KeyValue<'a>; 2],
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ValidateBody<'a> {
    use_saved_credentials: bool,
    credentials: [KeyValue<'a>; 2],
}

fn credentials<'a>(d: &Delivery<'a>) -> [KeyValue<'a>; 2] {
    [KeyValue { key: "BaseAddress", value: d.scim_base_url }, KeyValue { key: "SecretToken", value: d.key.expose() }]
}

impl EntraConnector {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        tenant_id: String,
        client_id: String,
        service_principal_id: String,
        job_id: Option<String>,
        graph: Url,
        login: Url,
        client_secret: Secret,
        http: Client,
    ) -> Self {
        EntraConnector {
            tenant_id,
            client_id,
            service_principal_id,
            job_id,
            graph,
            login,
            client_secret,
            http,
            timeout: http::DEFAULT_TIMEOUT,
            token: Mutex::new(None),
        }
    }

    /// A cached Graph token, or a fresh one when the cached one is near expiry.
    async fn access_token(&self, now: Timestamp) -> Result<Secret, ConnectorError> {
        let mut cached = self.token.lock().await;
        if let Some(t) = cached.as_ref().filter(|t| now < t.refresh_at) {
            return Ok(t.access_token.clone());
        }
        let fresh = self.fetch_token(now).await?;
        let token = fresh.access_token.clone();
        *cached = Some(fresh);
        Ok(token)
    }

    async fn fetch_token(&self, now: Timestamp) -> Result<CachedToken, ConnectorError> {
        let url = http::join(&self.login, &[&self.tenant_id, "oauth2", "v2.0", "token"]);
        let scope = format!("{}/.default", self.graph.as_str().trim_end_matches('/'));
        let form = [
            ("grant_type", "client_credentials"),
            ("client_id", self.client_id.as_str()),
            ("client_secret", self.client_secret.expose()),
            ("scope", scope.as_str()),
        ];
        let redactor = Redactor::new().with(self.client_secret.expose());
        let resp = http::send(KIND, self.http.post(url).form(&form), self.timeout, &redactor).await?;
        if !resp.status().is_success() {
            return Err(http::error_from_response(KIND, resp, self.timeout, now, &redactor).await);
        }
        let status = resp.status().as_u16();
        let body = http::body_text(KIND, resp, self.timeout, &redactor).await?;
        let parsed: TokenResponse = serde_json::from_str(&body).map_err(|_| ConnectorError::Protocol {
            kind: KIND,
            status,
            detail: "token response is not {access_token, expires_in} JSON".into(),
        })?;
        let lifetime = match &parsed.expires_in {
            serde_json::Value::Number(n) => n.as_u64(),
            serde_json::Value::String(s) => s.parse().ok(),
            _ => None,
        }
        .map(Duration::from_secs)
        .ok_or_else(|| ConnectorError::Protocol {
            kind: KIND,
            status,
            detail: "token response lacks expires_in".into(),
        })?;
        let margin = REFRESH_MARGIN.min(lifetime / 2);
        Ok(CachedToken {
            access_token: Secret::new(parsed.access_token),
            refresh_at: now.saturating_add(lifetime.saturating_sub(margin)),
        })
    }

    async fn forget_token(&self) {
        *self.token.lock().await = None;
    }

    fn service_principal_url(&self, rest: &[&str]) -> Url {
        let mut segments = vec!["v1.0", "servicePrincipals", self.service_principal_id.as_str(), "synchronization"];
        segments.extend_from_slice(rest);
        http::join(&self.graph, &segments)
    }

    /// Sends an authenticated Graph call that answers 204 on success.
    async fn graph_call<B: Serialize>(
        &self,
        method: reqwest::Method,
        url: Url,
        body: &B,
        d: &Delivery<'_>,
        now: Timestamp,
    ) -> Result<u16, ConnectorError> {
        let token = self.access_token(now).await?;
        let redactor = Redactor::new().with(d.key.expose()).with(self.client_secret.expose()).with(token.expose());
        let req = self.http.request(method, url).bearer_auth(token.expose()).json(body);
        let resp = http::send(KIND, req, self.timeout, &redactor).await?;
        let status = resp.status();
        if status.is_success() {
            return Ok(status.as_u16());
        }
        if status == StatusCode::UNAUTHORIZED {
            // Revoked or rotated app credentials: do not keep presenting a rejected token.
            self.forget_token().await;
        }
        Err(http::error_from_response(KIND, resp, self.timeout, now, &redactor).await)
    }

    pub async fn deliver(&self, d: &Delivery<'_>, now: Timestamp) -> Result<Receipt, ConnectorError> {
        let body = SecretsBody { value: credentials(d) };
        let url = self.service_principal_url(&["secrets"]);
        let http_status = self.graph_call(reqwest::Method::PUT, url, &body, d, now).await?;
        Ok(Receipt::Entra { http_status })
    }

    /// Asks Entra to test the delivered credentials against fedkey's SCIM endpoint.
    pub async fn validate(&self, d: &Delivery<'_>, now: Timestamp) -> Result<Validation, ConnectorError> {
        let Some(job_id) = self.job_id.as_deref() else {
            return Ok(Validation::NotSupported);
        };
        let body = ValidateBody { use_saved_credentials: false, credentials: credentials(d) };
        let url = self.service_principal_url(&["jobs", job_id, "validateCredentials"]);
        self.graph_call(reqwest::Method::POST, url, &body, d, now).await?;
        Ok(Validation::Verified)
    }
}
