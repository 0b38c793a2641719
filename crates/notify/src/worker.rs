//! The background side: one task de-duplicates (a claim in the database), one task per
//! channel rate-limits, sends with retries and audits the outcome.

use std::sync::Arc;
use std::time::{Duration, Instant};

use fedkey_audit::Outcome;
use fedkey_store::{Actor, Store};
use serde_json::json;
use tokio::sync::mpsc;

use crate::channel::Channel;
use crate::event::{Event, Repeat};
use crate::limit::Bucket;
use crate::{NotifyPolicy, QUEUE};

/// The longest wait between two attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(300);

pub(crate) fn start(
    store: Arc<Store>,
    channels: Vec<Channel>,
    policy: NotifyPolicy,
    egress: fedkey_egress::Egress,
    mut rx: mpsc::Receiver<Event>,
) {
    let mut queues = Vec::new();
    for channel in channels {
        let (tx, rx) = mpsc::channel::<Arc<Event>>(QUEUE);
        let name = channel.name();
        tokio::spawn(deliver(store.clone(), channel, policy.clone(), egress.clone(), rx));
        queues.push((name, tx));
    }
    tokio::spawn(async move {
        while let Some(event) = rx.recv().await {
            if !claim(&store, &event, &policy).await {
                metrics::counter!("fedkey_notifications_total", "channel" => "all", "result" => "duplicate")
                    .increment(1);
                continue;
            }
            let event = Arc::new(event);
            for (name, tx) in &queues {
                if tx.try_send(event.clone()).is_err() {
                    let details = json!({"channel": name, "reason": "queue full"});
                    audit(&store, "notify.dropped", Outcome::Failure, &event, details).await;
                    metrics::counter!("fedkey_notifications_total", "channel" => *name, "result" => "dropped")
                        .increment(1);
                }
            }
        }
    });
}

/// Claims the event in the database (other nodes, earlier runs). A database that cannot
/// answer does not silence a notification: better twice than never.
async fn claim(store: &Store, event: &Event, policy: &NotifyPolicy) -> bool {
    let resend_before = match event.repeat {
        Repeat::Once => None,
        Repeat::AfterWindow => Some(store.now().saturating_sub(policy.dedupe_window)),
    };
    match store.claim_notification(&event.key, &event.state, resend_before).await {
        Ok(claimed) => claimed,
        Err(e) => {
            tracing::warn!(event = event.kind.as_str(), error = %e, "notification de-duplication unavailable; sending");
            true
        }
    }
}

async fn deliver(
    store: Arc<Store>,
    channel: Channel,
    policy: NotifyPolicy,
    egress: fedkey_egress::Egress,
    mut rx: mpsc::Receiver<Arc<Event>>,
) {
    let name = channel.name();
    let mut bucket = Bucket::new(policy.rate_per_minute, Instant::now());
    while let Some(event) = rx.recv().await {
        while let Err(wait) = bucket.take(Instant::now()) {
            metrics::counter!("fedkey_notifications_total", "channel" => name, "result" => "delayed").increment(1);
            tokio::time::sleep(wait).await;
        }
        let mut attempt = 0;
        let result = loop {
            attempt += 1;
            match channel.send(&egress, &event, store.now()).await {
                Ok(()) => break Ok(()),
                Err(e) if e.retryable && attempt < policy.attempts.max(1) => {
                    tracing::info!(channel = name, event = event.kind.as_str(), attempt, error = %e.message, "notification failed; retrying");
                    tokio::time::sleep(backoff(policy.base_backoff, attempt)).await;
                }
                Err(e) => break Err(e),
            }
        };
        match result {
            Ok(()) => {
                metrics::counter!("fedkey_notifications_total", "channel" => name, "result" => "sent").increment(1);
                let details = json!({"channel": name, "attempts": attempt});
                audit(&store, "notify.sent", Outcome::Success, &event, details).await;
            }
            Err(e) => {
                metrics::counter!("fedkey_notifications_total", "channel" => name, "result" => "failed").increment(1);
                tracing::warn!(channel = name, event = event.kind.as_str(), attempts = attempt, error = %e.message, "notification not delivered");
                let details = json!({"channel": name, "attempts": attempt, "error": e.message});
                audit(&store, "notify.failed", Outcome::Failure, &event, details).await;
            }
        }
    }
}

fn backoff(base: Duration, attempt: u32) -> Duration {
    base.saturating_mul(1u32 << attempt.saturating_sub(1).min(16)).min(MAX_BACKOFF)
}

/// The audit record of one notification: what, about what, through which channel, how it
/// went; never a URL, an address book or a secret.
async fn audit(store: &Store, action: &str, outcome: Outcome, event: &Event, mut details: serde_json::Value) {
    details["event"] = json!(event.kind.as_str());
    details["key"] = json!(event.key);
    details["summary"] = json!(event.summary);
    if let Err(e) = store.record(&Actor::system("notify"), action, outcome, details).await {
        tracing::warn!(action, event = event.kind.as_str(), error = %e, "notification outcome not audited");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_is_capped() {
        let b = Duration::from_secs(2);
        assert_eq!([1, 2, 3].map(|a| backoff(b, a).as_secs()), [2, 4, 8]);
        assert_eq!(backoff(b, 40), MAX_BACKOFF);
    }
}
