//! Alerts: a metric always, and a signed webhook when one is configured. Every alert
//! also has an audit record, written by the operation that raised it.

use std::time::Duration;

use fedkey_core::Clock;
use fedkey_crypto::Secret;
use serde_json::{Value, json};
use std::sync::Arc;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlertKind {
    RotationFailed,
    WrappedLinkReused,
    MaterialHeld,
    MaterialExpired,
    /// A leak report named one of fedkey's tokens.
    LeakReported,
}

impl AlertKind {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertKind::RotationFailed => "rotation_failed",
            AlertKind::WrappedLinkReused => "wrapped_link_reused",
            AlertKind::MaterialHeld => "trust_material_held",
            AlertKind::MaterialExpired => "trust_material_expired",
            AlertKind::LeakReported => "leak_reported",
        }
    }
}

/// Where alerts go. Cheap to clone.
#[derive(Clone)]
pub struct Alerter {
    webhook: Option<Arc<(String, Secret)>>,
    http: reqwest::Client,
    clock: Arc<dyn Clock>,
}

impl Alerter {
    /// `webhook`: URL and HMAC signing secret; `None` leaves metrics and the audit log.
    pub fn new(webhook: Option<(String, Secret)>, clock: Arc<dyn Clock>) -> Result<Alerter, reqwest::Error> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(Alerter { webhook: webhook.map(Arc::new), http, clock })
    }

    /// Raises an alert. Never fails the caller: a webhook that cannot be reached is
    /// logged (the alert is already in the audit log and metrics).
    pub async fn raise(&self, kind: AlertKind, details: Value) {
        metrics::counter!("fedkey_alerts_total", "kind" => kind.as_str()).increment(1);
        let Some(hook) = &self.webhook else {
            return;
        };
        let (url, secret) = (&hook.0, &hook.1);
        let now = self.clock.now();
        let body = json!({"alert": kind.as_str(), "at": now.to_rfc3339(), "details": details}).to_string();
        let ts = now.0 / 1_000_000;
        let signature = fedkey_connectors::webhook::sign(secret.expose().as_bytes(), ts, body.as_bytes());
        let sent = self
            .http
            .post(url.as_str())
            .header("content-type", "application/json")
            .header(fedkey_connectors::webhook::TIMESTAMP_HEADER, ts.to_string())
            .header(fedkey_connectors::webhook::SIGNATURE_HEADER, signature)
            .body(body)
            .send()
            .await;
        match sent {
            Ok(r) if r.status().is_success() => {}
            Ok(r) => {
                tracing::warn!(alert = kind.as_str(), status = r.status().as_u16(), "alert webhook refused the alert")
            }
            Err(e) => tracing::warn!(alert = kind.as_str(), error = %e.without_url(), "alert webhook unreachable"),
        }
    }
}
