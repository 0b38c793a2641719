//! The OpenBao/Vault HTTP API as both the KV v2 connector and the transit client use it:
//! `X-Vault-Token`, optional `X-Vault-Namespace`, JSON in and out, `{"errors":[…]}` on failure.

use std::time::Duration;

use fedkey_core::clock::Timestamp;
use fedkey_crypto::Secret;
use fedkey_egress::Egress;
use reqwest::{Method, StatusCode, Url};

use crate::error::{ConnectorError, Redactor};
use crate::http;
use crate::kind::ConnectorKind;

const KIND: ConnectorKind = ConnectorKind::Openbao;

pub(crate) struct BaoClient {
    pub(crate) address: Url,
    pub(crate) namespace: Option<String>,
    pub(crate) token: Secret,
    pub(crate) egress: Egress,
    pub(crate) timeout: Duration,
}

/// A response that is not an error: its status and parsed JSON body (`Null` when empty).
pub(crate) struct BaoResponse {
    pub(crate) status: StatusCode,
    pub(crate) json: serde_json::Value,
}

impl BaoClient {
    pub(crate) fn new(
        address: &str,
        namespace: Option<String>,
        token: Secret,
        egress: Egress,
    ) -> Result<Self, ConnectorError> {
        let address = http::parse_base_url(KIND, "address", address, &egress)?;
        Ok(BaoClient { address, namespace, token, egress, timeout: http::DEFAULT_TIMEOUT })
    }

    /// `/v1/<segments…>`; each segment may itself contain `/` (mounts and KV paths do), but
    /// never `..` or empty components.
    pub(crate) fn url(&self, segments: &[&str]) -> Url {
        let parts: Vec<&str> =
            std::iter::once("v1").chain(segments.iter().flat_map(|s| s.split('/')).filter(|p| !p.is_empty())).collect();
        http::join(&self.address, &parts)
    }

    /// Sends a call; 404 is returned as a response (callers decide whether it means "absent"),
    /// every other non-2xx is classified. `extra` are further secrets to redact (the key).
    pub(crate) async fn call(
        &self,
        method: Method,
        url: Url,
        body: Option<&serde_json::Value>,
        extra: &[&str],
        now: Timestamp,
    ) -> Result<BaoResponse, ConnectorError> {
        let mut redactor = Redactor::new().with(self.token.expose());
        for s in extra {
            redactor = redactor.with(s);
        }
        let mut req = http::request(KIND, &self.egress, method, &url)?.header("X-Vault-Token", self.token.expose());
        if let Some(ns) = &self.namespace {
            req = req.header("X-Vault-Namespace", ns);
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = http::send(KIND, &self.egress, req, self.timeout, &redactor).await?;
        let status = resp.status();
        if !status.is_success() && status != StatusCode::NOT_FOUND {
            let headers = resp.headers().clone();
            let text = http::body_text(KIND, resp, self.timeout, &redactor).await.unwrap_or_default();
            if status == StatusCode::BAD_REQUEST && text.contains("check-and-set") {
                let (_, msg) = http::peer_error(&text);
                return Err(ConnectorError::Conflict {
                    kind: KIND,
                    status: status.as_u16(),
                    detail: redactor.clean(msg.as_deref().unwrap_or("")),
                });
            }
            return Err(http::classify(KIND, status, &headers, &text, now, &redactor));
        }
        let text = http::body_text(KIND, resp, self.timeout, &redactor).await?;
        let json = if text.trim().is_empty() {
            serde_json::Value::Null
        } else {
            serde_json::from_str(&text).map_err(|_| ConnectorError::Protocol {
                kind: KIND,
                status: status.as_u16(),
                detail: "response body is not JSON".into(),
            })?
        };
        Ok(BaoResponse { status, json })
    }
}

/// What a lookup (and renewal) of the token found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TokenLife {
    /// Renewed; it now lives `ttl` seconds.
    Renewed { ttl: u64 },
    /// It expires in `ttl` seconds and cannot be renewed.
    Expiring { ttl: u64 },
    /// No expiry (a root token, or one created without a TTL).
    Unlimited,
    /// The token may not look itself up (or the peer does not say): used as it is.
    Unknown,
}

/// A token that cannot be renewed and expires within this is reported at every use.
const EXPIRY_WARNING: u64 = 7 * 24 * 3600;

impl BaoClient {
    /// Keeps the token alive across rare uses (one delivery per rotation): a renewable token
    /// with a TTL is renewed (`auth/token/renew-self`, to its own period or TTL) each time
    /// fedkey uses it, so a token used at least once per TTL never expires under fedkey —
    /// the default policy allows both calls. A token that cannot be renewed is reported
    /// when it has less than 7 days left. Never fails the use itself: a lookup or renewal
    /// that does not work leaves the token as it is, and the call that follows says
    /// whether it still works.
    pub(crate) async fn keep_token_alive(&self, now: Timestamp) {
        let (ttl, renewed) = match self.renew_if_renewable(now).await {
            Ok(TokenLife::Expiring { ttl }) => (ttl, false),
            Ok(TokenLife::Renewed { ttl }) => (ttl, true),
            _ => return,
        };
        if ttl < EXPIRY_WARNING {
            tracing::warn!(
                address = %self.address,
                expires_in_hours = ttl / 3600,
                renewed,
                "the OpenBao token fedkey uses can no longer be renewed and expires soon: replace it"
            );
        }
    }

    async fn renew_if_renewable(&self, now: Timestamp) -> Result<TokenLife, ConnectorError> {
        let resp = self.call(Method::GET, self.url(&["auth/token/lookup-self"]), None, &[], now).await?;
        let data = resp.json.get("data");
        let ttl = data.and_then(|d| d.get("ttl")).and_then(serde_json::Value::as_u64);
        let renewable = data.and_then(|d| d.get("renewable")).and_then(serde_json::Value::as_bool);
        match (ttl, renewable) {
            (Some(0), _) => Ok(TokenLife::Unlimited),
            (Some(ttl), Some(false)) => Ok(TokenLife::Expiring { ttl }),
            (Some(_), Some(true)) => {
                let body = serde_json::json!({});
                let resp = self.call(Method::POST, self.url(&["auth/token/renew-self"]), Some(&body), &[], now).await?;
                let ttl = resp.json.pointer("/auth/lease_duration").and_then(serde_json::Value::as_u64);
                Ok(ttl.map_or(TokenLife::Unknown, |ttl| TokenLife::Renewed { ttl }))
            }
            _ => Ok(TokenLife::Unknown),
        }
    }
}

pub(crate) fn protocol(status: StatusCode, detail: &str) -> ConnectorError {
    ConnectorError::Protocol { kind: KIND, status: status.as_u16(), detail: detail.to_owned() }
}
