//! The channels a notification goes to, and what each one is sent.

use std::time::Duration;

use fedkey_core::Timestamp;
use fedkey_crypto::Secret;
use fedkey_egress::{Egress, EgressError, Method, Url, UrlRules};
use serde_json::{Value, json};

use crate::event::Event;
use crate::smtp::Mailer;

/// Each webhook call's overall timeout.
const WEBHOOK_TIMEOUT: Duration = Duration::from_secs(5);

/// Where notifications go; several at once.
pub enum Channel {
    /// The signed alert webhook (the connectors' signature scheme).
    Webhook {
        url: Url,
        secret: Secret,
    },
    /// A Slack incoming webhook or a Teams workflow/connector URL: `{"text": …}`. The URL
    /// itself is a credential (it carries the token), so it is never shown.
    Chat {
        url: Secret,
    },
    Email(Box<Mailer>),
}

/// Why one send failed: the text is safe to log and audit (no URL path, no secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendError {
    pub message: String,
    /// Whether trying again later may help.
    pub retryable: bool,
}

impl Channel {
    /// The channel's name in audit records, metrics and logs.
    pub fn name(&self) -> &'static str {
        match self {
            Channel::Webhook { .. } => "webhook",
            Channel::Chat { .. } => "chat",
            Channel::Email(_) => "email",
        }
    }

    pub async fn send(&self, egress: &Egress, event: &Event, now: Timestamp) -> Result<(), SendError> {
        match self {
            Channel::Webhook { url, secret } => {
                let body = webhook_payload(event, now).to_string();
                let ts = now.0 / 1_000_000;
                let signature = fedkey_connectors::webhook::sign(secret.expose().as_bytes(), ts, body.as_bytes());
                let req = egress
                    .request(Method::POST, url, UrlRules::HTTPS_ONLY)
                    .map_err(|e| http_error(&e))?
                    .header("content-type", "application/json")
                    .header(fedkey_connectors::webhook::TIMESTAMP_HEADER, ts.to_string())
                    .header(fedkey_connectors::webhook::SIGNATURE_HEADER, signature)
                    .body(body);
                post(egress, req).await
            }
            Channel::Chat { url } => {
                let url = egress.check_url(url.expose(), UrlRules::HTTPS_ONLY).map_err(|_| SendError {
                    message: "chat_webhook_url is refused by the egress policy".into(),
                    retryable: false,
                })?;
                let req = egress
                    .request(Method::POST, &url, UrlRules::HTTPS_ONLY)
                    .map_err(|e| http_error(&e))?
                    .header("content-type", "application/json")
                    .body(chat_payload(event).to_string());
                post(egress, req).await
            }
            Channel::Email(m) => m.send(event, now).await,
        }
    }
}

/// The signed webhook's body: `alert` and `details` as the alert webhook always sent,
/// plus a readable `summary`.
pub fn webhook_payload(event: &Event, now: Timestamp) -> Value {
    json!({"alert": event.kind.as_str(), "at": now.to_rfc3339(), "summary": event.summary, "details": event.details})
}

/// A Slack incoming-webhook message; Teams (Workflows and the legacy connectors) takes
/// the same `text`.
pub fn chat_payload(event: &Event) -> Value {
    json!({"text": format!("[fedkey] {}: {}", event.kind.as_str(), event.summary)})
}

async fn post(egress: &Egress, req: fedkey_egress::RequestBuilder) -> Result<(), SendError> {
    match egress.send(req, WEBHOOK_TIMEOUT).await {
        Ok(r) if r.status().is_success() => Ok(()),
        Ok(r) => {
            let s = r.status();
            Err(SendError {
                message: format!("answered {}", s.as_u16()),
                retryable: s.is_server_error() || s.as_u16() == 429 || s.as_u16() == 408,
            })
        }
        Err(e) => Err(http_error(&e)),
    }
}

fn http_error(e: &EgressError) -> SendError {
    // Egress texts carry no credentials or query; the path is left out too (a chat URL's
    // path is its token).
    let message = match e {
        EgressError::Refused(_) => "refused by the egress policy".to_owned(),
        other => other.to_string(),
    };
    SendError { message, retryable: e.retryable() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::EventKind;

    #[test]
    fn chat_payload_is_slack_text_only() {
        let e = Event::dead_letter("t1", "acme/scim", 2, "target answered 401");
        let p = chat_payload(&e);
        let obj = p.as_object().unwrap();
        assert_eq!(obj.len(), 1, "{p}");
        let text = obj["text"].as_str().unwrap();
        assert_eq!(
            text,
            "[fedkey] delivery_dead_lettered: provisioning to acme/scim gave up on 2 change(s): target answered 401"
        );
    }

    #[test]
    fn webhook_payload_keeps_the_alert_shape() {
        let e = Event::new(EventKind::RotationFailed, "k", "s", json!({"trust": "a/b"}));
        let p = webhook_payload(&e, Timestamp(1_700_000_000_000_000));
        assert_eq!(p["alert"], "rotation_failed");
        assert_eq!(p["details"]["trust"], "a/b");
        assert_eq!(p["at"], Timestamp(1_700_000_000_000_000).to_rfc3339());
    }
}
