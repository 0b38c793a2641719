//! Scheduling and leasing: which rotations start, and which node drives them.

use std::sync::Arc;
use std::time::Duration;

use fedkey_core::RotationKind;
use fedkey_store::{Actor, Store, StoreError};
use serde::Serialize;

use crate::alert::Alerter;

#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// This node's name in leases. Stable across restarts of one node, so a restarted
    /// node takes its own leases back at once instead of waiting for them to lapse.
    pub node_id: String,
    /// The URL peers reach fedkey at; connectors deliver `{public_url}/scim/v2/{directory}`.
    pub public_url: String,
    /// How long a lease on a rotation lasts; renewed at every step.
    pub lease_ttl: Duration,
    /// First retry delay after a failed step; doubles up to `max_backoff`.
    pub base_backoff: Duration,
    pub max_backoff: Duration,
    /// How often a rotation waiting for the peer's first use looks again.
    pub first_use_poll: Duration,
    /// Per-call timeout of connector requests.
    pub connector_timeout: Duration,
    /// Test-only: stop (hang) the process at this named point so a test can SIGKILL it.
    /// Ignored unless built with the `test-hooks` feature ([`crate::TEST_HOOKS`]).
    pub failpoint: Option<String>,
    /// Where file connectors may write; without one they are refused.
    pub delivery_root: Option<fedkey_connectors::DeliveryRoot>,
}

impl EngineConfig {
    pub fn new(node_id: String, public_url: String) -> EngineConfig {
        EngineConfig {
            node_id,
            public_url,
            lease_ttl: Duration::from_secs(60),
            base_backoff: Duration::from_secs(2),
            max_backoff: Duration::from_secs(3600),
            first_use_poll: Duration::from_secs(2),
            connector_timeout: Duration::from_secs(10),
            failpoint: None,
            delivery_root: None,
        }
    }
}

/// What one pass of the engine did.
#[derive(Debug, Default, Clone, Serialize)]
pub struct TickReport {
    /// Scheduled rotations started.
    pub started: usize,
    /// Rotations moved at least one step forward.
    pub advanced: usize,
    /// Rotations finished (promoted).
    pub finished: usize,
    /// Steps that failed (and will be retried).
    pub failed: usize,
    /// Rotations skipped because another node holds their lease.
    pub leased_elsewhere: usize,
}

pub struct Engine {
    pub(crate) store: Arc<Store>,
    pub(crate) cfg: EngineConfig,
    pub(crate) egress: fedkey_egress::Egress,
    pub(crate) alerts: Alerter,
    pub(crate) actor: Actor,
    /// One pass at a time in this process: the background loop and an explicit tick share a
    /// node id, so the database lease alone would let both drive the same rotation.
    pass: tokio::sync::Mutex<()>,
}

impl Engine {
    /// Every connector call goes through `egress` with `cfg.connector_timeout`.
    pub fn new(store: Arc<Store>, cfg: EngineConfig, alerts: Alerter, egress: fedkey_egress::Egress) -> Engine {
        Engine { store, cfg, egress, alerts, actor: Actor::system("rotation"), pass: tokio::sync::Mutex::new(()) }
    }

    pub fn egress(&self) -> &fedkey_egress::Egress {
        &self.egress
    }

    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    pub fn alerts(&self) -> &Alerter {
        &self.alerts
    }

    pub fn node_id(&self) -> &str {
        &self.cfg.node_id
    }

    pub fn delivery_root(&self) -> Option<&fedkey_connectors::DeliveryRoot> {
        self.cfg.delivery_root.as_ref()
    }

    /// One pass: start due scheduled rotations, then drive every rotation whose next
    /// attempt is due and whose lease this node can take.
    pub async fn tick(&self) -> Result<TickReport, StoreError> {
        let _pass = self.pass.lock().await;
        let mut report = TickReport::default();
        // Key expiry ahead, stalled rotations, failing audit writes: found by time, so on the
        // engine's beat; first, so that a database failing the queries below is still told.
        if let Err(e) = self.alerts.notifier().scan().await {
            tracing::warn!(error = %e, "notification scan failed");
        }
        for r in self.store.due_schedules(100).await? {
            match self.store.start_rotation(&Actor::system("scheduler"), &r, RotationKind::Scheduled, None).await {
                Ok(rot) => {
                    report.started += 1;
                    tracing::info!(trust = %r, version = rot.version, "scheduled rotation started");
                    self.failpoint("after-create").await;
                }
                // Another node started it between the query and now.
                Err(StoreError::InvalidState(_) | StoreError::Conflict(_)) => {}
                Err(e) => tracing::warn!(trust = %r, error = %e, "could not start a scheduled rotation"),
            }
        }
        for rot in self.store.due_rotations(100).await? {
            let lease = format!("rotation:{}", rot.trust_id);
            if !self.store.acquire_lease(&lease, &self.cfg.node_id, self.cfg.lease_ttl).await? {
                report.leased_elsewhere += 1;
                continue;
            }
            let outcome = self.drive(rot).await;
            self.store.release_lease(&lease, &self.cfg.node_id).await?;
            let outcome = match outcome {
                // Another node moved it on between our read and our write: nothing to do.
                Err(StoreError::InvalidState(_)) => continue,
                other => other?,
            };
            match outcome {
                crate::drive::Outcome::Finished => {
                    report.advanced += 1;
                    report.finished += 1;
                }
                crate::drive::Outcome::Advanced => report.advanced += 1,
                crate::drive::Outcome::Failed => report.failed += 1,
                crate::drive::Outcome::Waiting => {}
            }
        }
        Ok(report)
    }

    /// Runs [`Engine::tick`] every `every` until the task is dropped.
    pub async fn run(self: Arc<Self>, every: Duration) {
        periodically(every, "rotation engine", || self.tick()).await
    }

    /// Test hook: announce the point on stderr and hang, so a crash test can kill the
    /// process exactly here. Only in builds with the `test-hooks` feature.
    #[cfg(feature = "test-hooks")]
    pub(crate) async fn failpoint(&self, name: &str) {
        if self.cfg.failpoint.as_deref() == Some(name) {
            eprintln!("FAILPOINT {name}");
            std::future::pending::<()>().await;
        }
    }

    /// Without the `test-hooks` feature there are no failpoints.
    #[cfg(not(feature = "test-hooks"))]
    pub(crate) async fn failpoint(&self, _name: &str) {}
}

/// Calls `pass` every `every` (a slow pass delays the next, never stacks), logging failures;
/// runs until the task is dropped.
pub(crate) async fn periodically<T, F, Fut>(every: Duration, what: &str, mut pass: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, StoreError>>,
{
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if let Err(e) = pass().await {
            tracing::warn!(error = %e, "{what} pass failed");
        }
    }
}
