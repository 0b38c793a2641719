//! RFC 8935 push delivery: a worker that leases due SETs of enabled push streams (across
//! nodes), POSTs each to its stream's endpoint through egress, and records the outcome.
//! 202 delivers; a 400 with an RFC 8935 error body drops the SET for good (audited);
//! anything else is retried with exponential back-off and jitter on the store's clock.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use fedkey_crypto::Secret;
use fedkey_egress::{Egress, Method, UrlRules, header};
use fedkey_store::ops::{Actor, EventStream, QueuedEvent};
use fedkey_store::{Store, StoreError};
use serde::Serialize;
use serde_json::Value;

use super::set;

/// Settings of a push worker.
#[derive(Debug, Clone)]
pub struct PushConfig {
    /// This node's name: leases carry it.
    pub owner: String,
    /// SETs leased per pass.
    pub batch: i64,
    /// How long a lease keeps other nodes off a SET.
    pub lease: Duration,
    /// Limit of each POST.
    pub timeout: Duration,
    /// First retry delay; it doubles per attempt up to `max_backoff`.
    pub base_backoff: Duration,
    pub max_backoff: Duration,
}

impl PushConfig {
    pub fn new(owner: String) -> PushConfig {
        PushConfig {
            owner,
            batch: 100,
            lease: Duration::from_secs(60),
            timeout: Duration::from_secs(10),
            base_backoff: Duration::from_secs(5),
            max_backoff: Duration::from_secs(3600),
        }
    }
}

/// What one pass did.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct PushReport {
    pub delivered: usize,
    pub retrying: usize,
    pub refused: usize,
}

pub struct Pusher {
    store: Arc<Store>,
    egress: Egress,
    public_url: String,
    cfg: PushConfig,
    /// One pass at a time in this process (the loop and the test endpoint).
    turn: tokio::sync::Mutex<()>,
}

/// How one POST ended.
enum Outcome {
    Delivered,
    Refused { err: String, description: String },
    Retry(String),
}

impl Pusher {
    pub fn new(store: Arc<Store>, egress: Egress, public_url: String, cfg: PushConfig) -> Pusher {
        Pusher { store, egress, public_url, cfg, turn: tokio::sync::Mutex::new(()) }
    }

    /// Runs passes until the task is aborted; a pass that found a full batch is followed
    /// by another at once.
    pub async fn run(self: Arc<Self>, interval: Duration) {
        loop {
            match self.tick().await {
                Ok(r) if r.delivered + r.retrying + r.refused >= usize::try_from(self.cfg.batch).unwrap_or(1) => {
                    tokio::task::yield_now().await;
                }
                Ok(_) => tokio::time::sleep(interval).await,
                Err(e) => {
                    tracing::warn!(error = %e, "security event push pass failed");
                    tokio::time::sleep(interval).await;
                }
            }
        }
    }

    /// One pass: leases due SETs and pushes each once.
    pub async fn tick(&self) -> Result<PushReport, StoreError> {
        let _turn = self.turn.lock().await;
        let mut report = PushReport::default();
        let events = self.store.claim_push_events(&self.cfg.owner, self.cfg.batch, self.cfg.lease).await?;
        if events.is_empty() {
            return Ok(report);
        }
        let Some(key) = self.store.install.oauth_signing.as_ref() else {
            return Err(StoreError::Config("no signing key for security events".into()));
        };
        // Streams and their Authorization values, read once per pass (each read audited).
        let mut streams: HashMap<String, Option<(EventStream, Option<Secret>)>> = HashMap::new();
        let actor = Actor::system("events.push");
        for e in &events {
            if !streams.contains_key(&e.stream_id) {
                let s = match self.store.event_stream(&e.stream_id).await? {
                    Some(s) => {
                        let auth = self.store.event_stream_authorization(&actor, &s).await?;
                        Some((s, auth))
                    }
                    None => None,
                };
                streams.insert(e.stream_id.clone(), s);
            }
            let Some(Some((s, auth))) = streams.get(&e.stream_id) else { continue };
            let token = set::sign(key, &set::claims(&self.public_url, s, e));
            match self.post(s, auth.as_ref(), token).await {
                Outcome::Delivered => {
                    self.store.finish_push_events(&self.cfg.owner, e).await?;
                    metrics::counter!("fedkey_security_event_pushes_total", "outcome" => "delivered").increment(1);
                    report.delivered += 1;
                }
                Outcome::Refused { err, description } => {
                    tracing::warn!(stream = %s.id, jti = %e.jti, %err, "receiver refused a SET; dropped");
                    self.store.refuse_push_event(&self.cfg.owner, e, &err, &description).await?;
                    metrics::counter!("fedkey_security_event_pushes_total", "outcome" => "refused").increment(1);
                    report.refused += 1;
                }
                Outcome::Retry(why) => {
                    self.retry(e, &why).await?;
                    metrics::counter!("fedkey_security_event_pushes_total", "outcome" => "retry").increment(1);
                    report.retrying += 1;
                }
            }
        }
        crate::metrics::invalidate().await;
        Ok(report)
    }

    async fn retry(&self, e: &QueuedEvent, why: &str) -> Result<(), StoreError> {
        let r = fedkey_crypto::random::bytes::<8>().map(|b| u64::from_le_bytes(*b)).unwrap_or(0);
        let wait = fedkey_sync::backoff(self.cfg.base_backoff, self.cfg.max_backoff, e.attempts + 1, r);
        let at = self.store.now().saturating_add(wait);
        self.store.fail_push_events(&self.cfg.owner, e, at, why).await
    }

    async fn post(&self, s: &EventStream, auth: Option<&Secret>, token: String) -> Outcome {
        let Some(url) = &s.endpoint_url else { return Outcome::Retry("the stream has no endpoint URL".into()) };
        let rules = UrlRules { allow_http: s.allow_http };
        let url = match self.egress.check_url(url, rules) {
            Ok(u) => u,
            Err(e) => return Outcome::Retry(e.to_string()),
        };
        let mut req = match self.egress.request(Method::POST, &url, rules) {
            Ok(r) => r,
            Err(e) => return Outcome::Retry(e.to_string()),
        };
        req = req
            .header(header::CONTENT_TYPE, "application/secevent+jwt")
            .header(header::ACCEPT, "application/json")
            .body(token);
        if let Some(a) = auth {
            req = req.header(header::AUTHORIZATION, a.expose());
        }
        let resp = match self.egress.send(req, self.cfg.timeout).await {
            Ok(r) => r,
            Err(e) => return Outcome::Retry(e.to_string()),
        };
        let status = resp.status().as_u16();
        match status {
            202 => Outcome::Delivered,
            400 => {
                let body = fedkey_egress::read_text(resp, 4096, self.cfg.timeout).await.unwrap_or_default();
                match rfc8935_error(&body) {
                    Some((err, description)) => Outcome::Refused { err, description },
                    None => Outcome::Retry("answered 400 without an RFC 8935 error body".into()),
                }
            }
            _ => Outcome::Retry(format!("answered {status} (expected 202)")),
        }
    }
}

/// The `err` and `description` of an RFC 8935 §2.3 error response.
fn rfc8935_error(body: &str) -> Option<(String, String)> {
    let v: Value = serde_json::from_str(body).ok()?;
    let err = v.get("err")?.as_str()?.to_owned();
    let description = v.get("description").and_then(Value::as_str).unwrap_or_default().to_owned();
    Some((err, description))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_rfc_8935_bodies_are_permanent_errors() {
        assert_eq!(
            rfc8935_error(r#"{"err":"invalid_audience","description":"aud"}"#),
            Some(("invalid_audience".into(), "aud".into()))
        );
        assert_eq!(rfc8935_error(r#"{"err":"jwtParse"}"#), Some(("jwtParse".into(), String::new())));
        assert_eq!(rfc8935_error("bad request"), None);
        assert_eq!(rfc8935_error(r#"{"error":"x"}"#), None);
        assert_eq!(rfc8935_error(r#"{"err":7}"#), None);
    }
}
