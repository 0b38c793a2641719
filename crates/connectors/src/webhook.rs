//! Signed webhook: POSTs the key to a receiver, authenticated by an HMAC-SHA256 signature
//! over the timestamp and body. The same `sign`/`verify` serve receivers and fedkey's own
//! alert webhooks.

use std::time::Duration;

use aws_lc_rs::hmac;
use fedkey_core::clock::Timestamp;
use fedkey_crypto::{Secret, ct_eq};
use fedkey_egress::Egress;
use reqwest::{Method, Url};

use crate::delivery::{Delivery, Receipt, Validation};
use crate::error::{ConnectorError, Redactor};
use crate::http;
use crate::kind::ConnectorKind;

const KIND: ConnectorKind = ConnectorKind::Webhook;
pub const TIMESTAMP_HEADER: &str = "Fedkey-Timestamp";
pub const SIGNATURE_HEADER: &str = "Fedkey-Signature";

/// `v1=<hex HMAC-SHA256(secret, "<ts>.<body>")>`.
pub fn sign(secret: &[u8], ts: i64, body: &[u8]) -> String {
    format!("v1={}", hex::encode(mac(secret, ts, body)))
}

fn mac(secret: &[u8], ts: i64, body: &[u8]) -> Vec<u8> {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
    let mut ctx = hmac::Context::with_key(&key);
    ctx.update(ts.to_string().as_bytes());
    ctx.update(b".");
    ctx.update(body);
    ctx.sign().as_ref().to_vec()
}

/// Checks a `Fedkey-Signature` header value against the body and its `Fedkey-Timestamp`.
/// The header may list several comma-separated `v1=` signatures (a sender in the middle of
/// rotating its secret); one match suffices. `ts` must be within `tolerance` of `now`, in
/// either direction, which bounds replays.
pub fn verify(secret: &[u8], header_value: &str, ts: i64, body: &[u8], now: Timestamp, tolerance: Duration) -> bool {
    let now_s = now.micros().div_euclid(1_000_000);
    let tol = i64::try_from(tolerance.as_secs()).unwrap_or(i64::MAX);
    if now_s.abs_diff(ts) > tol.unsigned_abs() {
        return false;
    }
    let expected = mac(secret, ts, body);
    let mut ok = false;
    for part in header_value.split(',') {
        if let Some(sig) = part.trim().strip_prefix("v1=")
            && let Ok(bytes) = hex::decode(sig)
        {
            // Keep looping after a match so timing does not reveal which entry matched.
            ok |= ct_eq(&bytes, &expected);
        }
    }
    ok
}

pub struct WebhookConnector {
    pub(crate) url: Url,
    pub(crate) signing_secret: Secret,
    pub(crate) egress: Egress,
    pub(crate) timeout: Duration,
}

#[derive(serde::Serialize)]
struct Payload<'a> {
    trust: &'a str,
    version: u32,
    key: &'a str,
    scim_base_url: &'a str,
    delivered_at: String,
}

impl WebhookConnector {
    pub(crate) fn new(url: Url, signing_secret: Secret, egress: Egress) -> Self {
        WebhookConnector { url, signing_secret, egress, timeout: http::DEFAULT_TIMEOUT }
    }

    pub async fn deliver(&self, d: &Delivery<'_>, now: Timestamp) -> Result<Receipt, ConnectorError> {
        let payload = Payload {
            trust: d.trust,
            version: d.version,
            key: d.key.expose(),
            scim_base_url: d.scim_base_url,
            delivered_at: now.to_rfc3339(),
        };
        let body = zeroize::Zeroizing::new(
            serde_json::to_vec(&payload)
                .map_err(|_| ConnectorError::config(KIND, "the payload could not be serialised"))?,
        );
        let ts = now.micros().div_euclid(1_000_000);
        let signature = sign(self.signing_secret.expose().as_bytes(), ts, &body);
        let redactor = Redactor::new().with(d.key.expose()).with(self.signing_secret.expose());
        let req = http::request(KIND, &self.egress, Method::POST, &self.url)?
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(TIMESTAMP_HEADER, ts.to_string())
            .header(SIGNATURE_HEADER, signature)
            .body(body.to_vec());
        let resp = http::send(KIND, &self.egress, req, self.timeout, &redactor).await?;
        if !resp.status().is_success() {
            return Err(http::error_from_response(KIND, resp, self.timeout, now, &redactor).await);
        }
        Ok(Receipt::Webhook { http_status: resp.status().as_u16() })
    }

    pub fn validate(&self) -> Validation {
        Validation::NotSupported
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_answer() {
        // HMAC-SHA256("secret", "1700000000.{}") computed independently (Python hmac).
        let sig = sign(b"secret", 1_700_000_000, b"{}");
        assert_eq!(sig, "v1=b8569b78799ff9e3cbff0fc2d63a33a2b57f3282abd07c37ae5e8e7d79a5f163");
        let now = Timestamp(1_700_000_010_000_000);
        assert!(verify(b"secret", &sig, 1_700_000_000, b"{}", now, Duration::from_secs(300)));
        assert!(verify(b"secret", &format!("v1=00, {sig}"), 1_700_000_000, b"{}", now, Duration::from_secs(300)));
        assert!(!verify(b"secret", "v1=zz", 1_700_000_000, b"{}", now, Duration::from_secs(300)));
        assert!(!verify(b"secret", &sig, 1_700_000_000, b"{}", now, Duration::from_secs(5)));
    }
}
