//! Alerts: a metric always, and a signed webhook when one is configured. Every alert
//! also has an audit record, written by the operation that raised it.

use std::time::Duration;

use fedkey_core::Clock;
use fedkey_crypto::Secret;
use fedkey_egress::{Egress, Method, Url, UrlRules};
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

/// Each alert webhook call's overall timeout.
const ALERT_TIMEOUT: Duration = Duration::from_secs(5);

/// Where alerts go. Cheap to clone.
#[derive(Clone)]
pub struct Alerter {
    webhook: Option<Arc<(Url, Secret)>>,
    egress: Egress,
    clock: Arc<dyn Clock>,
}

impl Alerter {
    /// `webhook`: URL and HMAC signing secret; `None` leaves metrics and the audit log. The
    /// URL must pass the egress policy (https unless loopback, no denied address).
    pub fn new(webhook: Option<(String, Secret)>, clock: Arc<dyn Clock>, egress: Egress) -> Result<Alerter, String> {
        let webhook = match webhook {
            Some((url, secret)) => {
                let url =
                    egress.check_url(&url, UrlRules::HTTPS_ONLY).map_err(|e| format!("alert_webhook_url: {e}"))?;
                Some(Arc::new((url, secret)))
            }
            None => None,
        };
        Ok(Alerter { webhook, egress, clock })
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
        let req = match self.egress.request(Method::POST, url, UrlRules::HTTPS_ONLY) {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(alert = kind.as_str(), error = %e, "alert webhook refused");
                return;
            }
        };
        let sent = req
            .header("content-type", "application/json")
            .header(fedkey_connectors::webhook::TIMESTAMP_HEADER, ts.to_string())
            .header(fedkey_connectors::webhook::SIGNATURE_HEADER, signature)
            .body(body);
        match self.egress.send(sent, ALERT_TIMEOUT).await {
            Ok(r) if r.status().is_success() => {}
            Ok(r) => {
                tracing::warn!(alert = kind.as_str(), status = r.status().as_u16(), "alert webhook refused the alert")
            }
            Err(e) => tracing::warn!(alert = kind.as_str(), error = %e, "alert webhook unreachable"),
        }
    }
}
