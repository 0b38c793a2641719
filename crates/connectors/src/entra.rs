//! Microsoft Entra ID: writes the provisioning secrets of an enterprise app through Graph
//! (`synchronization/secrets`) with an app-only token from the client-credentials grant.
//! The secrets are either a bearer `SecretToken` or, with [`EntraAuth::OauthClientCredentials`],
//! the OAuth client-credentials set with which Entra gets its tokens from fedkey.

use std::borrow::Cow;
use std::time::Duration;

use fedkey_core::clock::Timestamp;
use fedkey_crypto::Secret;
use fedkey_egress::Egress;
use fedkey_egress::oauth::{ClientCredentials, OAuthError, TokenCache};
use reqwest::{StatusCode, Url};
use serde::Serialize;
use zeroize::Zeroizing;

use crate::delivery::{Delivery, Receipt, Validation};
use crate::error::{ConnectorError, Redactor};
use crate::http;
use crate::kind::ConnectorKind;
use crate::spec::EntraAuth;

const KIND: ConnectorKind = ConnectorKind::Entra;
/// Refresh this long before the token expires (capped at half its lifetime), so a token
/// never expires between the check and Graph receiving the request.
const REFRESH_MARGIN: Duration = Duration::from_secs(300);
/// `AuthenticationType` for OAuth 2.0 client credentials, as Entra's provisioning
/// configuration names that method.
pub const OAUTH2_CLIENT_CREDENTIALS_GRANT: &str = "OAuth2ClientCredentialsGrant";

pub struct EntraConnector {
    pub(crate) service_principal_id: String,
    pub(crate) job_id: Option<String>,
    pub(crate) graph: Url,
    pub(crate) egress: Egress,
    pub(crate) timeout: Duration,
    auth: EntraAuth,
    /// Boxed: the cache is large next to the other connectors' fields.
    token: Box<TokenCache>,
}

/// One `synchronizationSecretKeyStringValuePair`.
#[derive(Serialize)]
struct KeyValue<'a> {
    key: &'static str,
    value: Cow<'a, str>,
}

fn pair<'a>(key: &'static str, value: impl Into<Cow<'a, str>>) -> KeyValue<'a> {
    KeyValue { key, value: value.into() }
}

#[derive(Serialize)]
struct SecretsBody<'a> {
    value: Vec<KeyValue<'a>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ValidateBody<'a> {
    use_saved_credentials: bool,
    credentials: Vec<KeyValue<'a>>,
}

/// The synchronization secrets that point Entra at fedkey with the delivered key version.
fn credentials<'a>(auth: EntraAuth, d: &Delivery<'a>) -> Result<Vec<KeyValue<'a>>, ConnectorError> {
    let base = pair("BaseAddress", d.scim_base_url);
    Ok(match auth {
        EntraAuth::Bearer => vec![base, pair("SecretToken", d.key.expose())],
        EntraAuth::OauthClientCredentials => {
            let (Some(client_id), Some(token_url)) = (d.trust_name(), d.oauth_token_url()) else {
                return Err(ConnectorError::config(
                    KIND,
                    format!(
                        "cannot derive the OAuth client id and token URL of trust {:?} from its SCIM URL {}",
                        d.trust, d.scim_base_url
                    ),
                ));
            };
            vec![
                base,
                pair("AuthenticationType", OAUTH2_CLIENT_CREDENTIALS_GRANT),
                pair("ClientIdentifier", client_id),
                pair("ClientSecret", d.key.expose()),
                pair("Oauth2TokenExchangeUri", token_url),
            ]
        }
    })
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
        egress: Egress,
        auth: EntraAuth,
    ) -> Self {
        let creds = ClientCredentials {
            token_url: http::join(&login, &[&tenant_id, "oauth2", "v2.0", "token"]),
            rules: fedkey_egress::UrlRules::HTTPS_ONLY,
            client_id,
            client_secret: Zeroizing::new(client_secret.expose().to_owned()),
            scope: Some(format!("{}/.default", graph.as_str().trim_end_matches('/'))),
        };
        EntraConnector {
            service_principal_id,
            job_id,
            graph,
            egress,
            timeout: http::DEFAULT_TIMEOUT,
            auth,
            token: Box::new(TokenCache::new(creds, REFRESH_MARGIN)),
        }
    }

    /// A cached Graph token, or a fresh one when the cached one is near expiry.
    async fn access_token(&self, now: Timestamp) -> Result<Secret, ConnectorError> {
        let redactor = Redactor::new().with(self.token.client_secret());
        match self.token.token(&self.egress, now, self.timeout).await {
            Ok(t) => Ok(Secret::new(t.value.to_string())),
            Err(OAuthError::Egress(e)) => Err(http::egress_error(KIND, e, &redactor)),
            Err(OAuthError::Status { status, headers, body }) => {
                let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
                Err(http::classify(KIND, status, &headers, &body, now, &redactor))
            }
            Err(OAuthError::Protocol { status, message }) => {
                Err(ConnectorError::Protocol { kind: KIND, status, detail: message })
            }
        }
    }

    async fn forget_token(&self) {
        self.token.invalidate().await;
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
        let redactor = Redactor::new().with(d.key.expose()).with(self.token.client_secret()).with(token.expose());
        let req = http::request(KIND, &self.egress, method, &url)?.bearer_auth(token.expose()).json(body);
        let resp = http::send(KIND, &self.egress, req, self.timeout, &redactor).await?;
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
        let body = SecretsBody { value: credentials(self.auth, d)? };
        let url = self.service_principal_url(&["secrets"]);
        let http_status = self.graph_call(reqwest::Method::PUT, url, &body, d, now).await?;
        Ok(Receipt::Entra { http_status })
    }

    /// Asks Entra to test the delivered credentials against fedkey's SCIM endpoint.
    pub async fn validate(&self, d: &Delivery<'_>, now: Timestamp) -> Result<Validation, ConnectorError> {
        let Some(job_id) = self.job_id.as_deref() else {
            return Ok(Validation::NotSupported);
        };
        let body = ValidateBody { use_saved_credentials: false, credentials: credentials(self.auth, d)? };
        let url = self.service_principal_url(&["jobs", job_id, "validateCredentials"]);
        self.graph_call(reqwest::Method::POST, url, &body, d, now).await?;
        Ok(Validation::Verified)
    }
}
