//! Readiness, as `/readyz` reports it: cheap enough for a load balancer to ask often, and
//! true to what a request would meet.
//!
//! The database is asked `SELECT 1`, and the answer kept for [`READY_FOR`], so probes
//! cost one query a second at most, whatever their number (a "ready" is dropped at once
//! when a write fails). The write path is trusted
//! while writes succeed; once one failed for a reason of the database (the audit log
//! refused a record, the write connection was lost, a commit failed), a probe audit
//! record is appended in a transaction that is rolled back (the chain-head lock and
//! triggers are exercised, nothing remains) and a write that changes nothing is
//! committed (so is the disk), until that goes through.

use std::time::{Duration, Instant};

use fedkey_audit::{Event, Outcome};

use crate::db::{Checked, Readiness};
use crate::{Store, StoreError};

/// How long a readiness answer is reused.
const READY_FOR: Duration = Duration::from_secs(1);
/// A check that takes longer says "not ready" (the pool may otherwise wait for a
/// connection to a server that is down for its whole connect timeout).
const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

impl Store {
    /// Whether the database answers and writes go through; checked at most once per
    /// [`READY_FOR`].
    pub async fn readiness(&self) -> Readiness {
        let health = &self.db.health;
        let mut last = health.ready.lock().await;
        if let Some(c) = *last
            && health.still_holds(&c, READY_FOR)
        {
            return c.readiness;
        }
        let failures = health.failures();
        let readiness = self.check_readiness().await;
        *last = Some(Checked { at: Instant::now(), failures, readiness });
        readiness
    }

    async fn check_readiness(&self) -> Readiness {
        let database = match tokio::time::timeout(CHECK_TIMEOUT, self.db.ping()).await {
            Ok(Ok(())) => true,
            Ok(Err(e)) => {
                tracing::warn!(error = ?e, "readiness: database");
                false
            }
            Err(_) => {
                tracing::warn!("readiness: the database did not answer within {CHECK_TIMEOUT:?}");
                false
            }
        };
        if !database {
            return Readiness { database, writes: false };
        }
        if !self.db.health.writes_failing() {
            return Readiness { database, writes: true };
        }
        let writes = match tokio::time::timeout(CHECK_TIMEOUT, self.probe_write()).await {
            Ok(Ok(())) => {
                self.db.health.write_succeeded();
                true
            }
            Ok(Err(e)) => {
                tracing::warn!(error = ?e, "readiness: audit log");
                false
            }
            Err(_) => {
                tracing::warn!("readiness: the audit probe did not finish within {CHECK_TIMEOUT:?}");
                false
            }
        };
        Readiness { database, writes }
    }

    /// Appends a probe record inside a transaction and rolls it back (locks, triggers),
    /// then commits a write that changes nothing (the commit needs the disk, as every
    /// write's does).
    async fn probe_write(&self) -> Result<(), StoreError> {
        let mut tx = self.db.begin().await?;
        let ev = Event::new(self.now(), "system:readyz", "readiness.probe", Outcome::Success);
        crate::audit::append_in_tx(&mut tx, &self.db, vec![ev]).await?;
        tx.rollback().await?;
        let mut tx = self.db.begin().await?;
        sqlx::query("UPDATE audit_head SET seq = seq WHERE id = 1").execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(())
    }
}
