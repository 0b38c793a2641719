//! Audit streaming: committed audit records sent to syslog collectors (RFC 5424 over TCP
//! with octet counting, RFC 6587, or TLS, RFC 5425) and HTTP collectors (a JSON batch or
//! the Splunk HEC shape), each from its persisted cursor.
//!
//! Delivery is at-least-once and never on a request's path: one task per sink reads the
//! records after the sink's cursor (in `seq` order), sends them, and only then moves the
//! cursor (`fedkey_store::audit_sinks`). A sink that is down is retried with back-off while
//! records keep committing; when it is back it gets every record from the cursor on. After
//! a crash, the records sent but not yet acknowledged (after the cursor) are sent again.

mod http;
mod settings;
mod syslog;

use std::sync::Arc;
use std::time::Duration;

use fedkey_audit::Record;
use fedkey_store::Store;
use fedkey_store::audit::AuditFilter;

pub use settings::{SinkSettings, SinkSpec};

/// How long a node holds a sink's lease without renewing it. A node that dies leaves its
/// sinks to another node (or to itself restarted under another `node_id`) this much later.
pub const LEASE_TTL: Duration = Duration::from_secs(30);
/// The lease is renewed when it is this old.
const RENEW_AFTER: Duration = Duration::from_secs(10);
/// How often an idle sink looks for new records.
const POLL: Duration = Duration::from_millis(500);
/// First wait after a failed send; doubled on each further failure up to the sink's
/// `max_backoff`.
const FIRST_BACKOFF: Duration = Duration::from_millis(500);

/// One destination.
pub(crate) enum Sink {
    Syslog(syslog::SyslogSink),
    Http(http::HttpSink),
}

impl Sink {
    async fn send(&mut self, records: &[Record]) -> Result<(), String> {
        match self {
            Sink::Syslog(s) => s.send(records).await,
            Sink::Http(h) => h.send(records).await,
        }
    }

    /// Drops a connection that may be broken (after a failure).
    fn reset(&mut self) {
        if let Sink::Syslog(s) = self {
            s.reset();
        }
    }
}

/// Streams every configured sink from this node.
pub struct Streamer {
    store: Arc<Store>,
    node: String,
    specs: Vec<SinkSpec>,
}

impl Streamer {
    pub fn new(store: Arc<Store>, node: String, specs: Vec<SinkSpec>) -> Streamer {
        Streamer { store, node, specs }
    }

    /// One task per sink.
    pub fn spawn(&self) -> Vec<tokio::task::JoinHandle<()>> {
        self.specs
            .iter()
            .map(|spec| {
                let run = SinkRun { store: self.store.clone(), node: self.node.clone(), spec: spec.clone() };
                tokio::spawn(run.run())
            })
            .collect()
    }

    /// Gives up this node's leases (clean shutdown), so another node takes over at once.
    pub async fn release(&self) {
        for s in &self.specs {
            if let Err(e) = self.store.audit_sink_release(&s.name, &self.node).await {
                tracing::warn!(sink = %s.name, error = %e, "audit sink lease could not be released");
            }
        }
    }
}

struct SinkRun {
    store: Arc<Store>,
    node: String,
    spec: SinkSpec,
}

impl SinkRun {
    async fn run(self) {
        let name = self.spec.name.clone();
        let mut sink = self.spec.connect();
        // The cursor while this node holds the lease, and when the lease was last renewed.
        let mut held: Option<(i64, tokio::time::Instant)> = None;
        let mut backoff = FIRST_BACKOFF;
        loop {
            let cursor = match held {
                Some((c, at)) if at.elapsed() < RENEW_AFTER => c,
                _ => match self.store.audit_sink_claim(&name, &self.node, LEASE_TTL).await {
                    Ok(Some(c)) => {
                        if held.is_none() {
                            tracing::info!(sink = %name, cursor = c, "streaming audit records");
                        }
                        // Another node may have moved it meanwhile: take the stored one.
                        held = Some((c, tokio::time::Instant::now()));
                        c
                    }
                    Ok(None) => {
                        held = None;
                        tokio::time::sleep(RENEW_AFTER).await;
                        continue;
                    }
                    Err(e) => {
                        tracing::warn!(sink = %name, error = %e, "audit sink cursor could not be read");
                        held = None;
                        tokio::time::sleep(POLL).await;
                        continue;
                    }
                },
            };
            let filter =
                AuditFilter { after_seq: Some(cursor), limit: self.spec.batch_size as i64, ..Default::default() };
            let records = match self.store.audit_records(&filter).await {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(sink = %name, error = %e, "audit records could not be read for streaming");
                    tokio::time::sleep(POLL).await;
                    continue;
                }
            };
            let Some(last) = records.last().map(|r| r.seq) else {
                metrics::gauge!("fedkey_audit_sink_lag", "sink" => name.clone()).set(0.0);
                tokio::time::sleep(POLL).await;
                continue;
            };
            match sink.send(&records).await {
                Ok(()) => {
                    backoff = FIRST_BACKOFF;
                    metrics::counter!("fedkey_audit_sink_records_total", "sink" => name.clone())
                        .increment(records.len() as u64);
                    match self.store.audit_sink_advance(&name, &self.node, last).await {
                        Ok(true) => {
                            held = held.map(|(_, at)| (last, at));
                            if let Ok((head, _)) = self.store.audit_head().await {
                                metrics::gauge!("fedkey_audit_sink_lag", "sink" => name.clone())
                                    .set((head - last).max(0) as f64);
                            }
                        }
                        // The lease went to another node (this one stalled past it).
                        Ok(false) => held = None,
                        Err(e) => {
                            // Sent but not recorded: they go again (at-least-once).
                            tracing::warn!(sink = %name, error = %e, "audit sink cursor could not be moved");
                            held = None;
                            tokio::time::sleep(POLL).await;
                        }
                    }
                }
                Err(e) => {
                    sink.reset();
                    metrics::counter!("fedkey_audit_sink_failures_total", "sink" => name.clone()).increment(1);
                    tracing::warn!(sink = %name, error = %e, retry_in_ms = backoff.as_millis() as u64,
                        first_seq = records.first().map_or(0, |r| r.seq), "audit sink send failed; records stay queued");
                    if let Err(e) = self.store.audit_sink_failed(&name, &self.node, &e).await {
                        tracing::warn!(sink = %name, error = %e, "audit sink failure could not be recorded");
                    }
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(self.spec.max_backoff);
                }
            }
        }
    }
}
