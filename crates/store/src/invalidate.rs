//! Invalidation of the authentication cache across nodes.
//!
//! A change that can affect authentication (a key revoked or rotated, a trust suspended,
//! changed or deleted, an admin token revoked) bumps the cache generation of the node that
//! made it. On PostgreSQL the same transaction also notifies channel `fedkey_auth`, which the
//! server delivers to every listening node when, and only if, the change commits; each node
//! keeps one connection listening and bumps its own generation on every other node's
//! notification (its own changes it has already applied). So a revocation is refused on
//! every node about one round trip after its commit, instead of after the cache TTL. The TTL
//! stays as the fallback for the time a listener is disconnected: after it reconnects it
//! bumps the generation, since it may have missed notifications. SQLite serves one node,
//! which invalidates in-process.

use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use sqlx::ConnectOptions;
use sqlx::postgres::{PgConnectOptions, PgListener, PgPoolOptions};

use crate::db::Tx;
use crate::{Backend, Db, StoreError};

/// The channel of `Backend::auth_change_notice`.
pub(crate) const CHANNEL: &str = "fedkey_auth";

/// How the listener's connection shows in `pg_stat_activity`.
pub const LISTENER_APPLICATION_NAME: &str = "fedkey auth listener";

/// Waits between attempts to reconnect a lost listener: doubling up to the maximum.
const RETRY_FIRST: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(5);

/// One store's side of the exchange: it names the notices it sends, and (PostgreSQL) runs
/// the task that listens for the others', stopped when dropped with its store.
pub(crate) struct Invalidation {
    /// Sent with each notice, so that the listener skips this store's own.
    node: String,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for Invalidation {
    fn drop(&mut self) {
        if let Some(t) = &self.task {
            t.abort();
        }
    }
}

impl Invalidation {
    /// Queues the notice of an authentication-relevant change in `tx`: it reaches the other
    /// nodes when `tx` commits, and never if it rolls back.
    pub(crate) async fn announce(&self, tx: &mut Tx, backend: Backend) -> Result<(), StoreError> {
        if let Some(notice) = backend.auth_change_notice() {
            sqlx::query(notice).bind(self.node.clone()).execute(&mut **tx).await?;
        }
        Ok(())
    }
}

/// Starts listening on PostgreSQL (no task on SQLite). The first connection is made before
/// this returns, so a node serves no request it could not hear revocations for; when it
/// cannot be made the task keeps trying, and the cache TTL bounds staleness meanwhile.
pub(crate) async fn start(db: &Db, generation: Arc<AtomicU64>) -> Invalidation {
    let node = uuid::Uuid::new_v4().simple().to_string();
    let task = listen(db, node.clone(), generation).await;
    Invalidation { node, task }
}

async fn listen(db: &Db, node: String, generation: Arc<AtomicU64>) -> Option<tokio::task::JoinHandle<()>> {
    db.backend.auth_change_notice()?;
    let opts = match PgConnectOptions::from_str(&db.url) {
        Ok(o) => o.application_name(LISTENER_APPLICATION_NAME).log_statements(tracing::log::LevelFilter::Trace),
        // The pool connected with the same URL, so this does not happen; the TTL still holds.
        Err(_) => {
            tracing::warn!("auth-cache listener: the database URL did not parse; relying on auth_cache_ttl");
            return None;
        }
    };
    let first = connect(&opts).await;
    if let Err(e) = &first {
        tracing::warn!(error = %e, "auth-cache listener could not connect; retrying, auth_cache_ttl applies meanwhile");
    }
    Some(tokio::spawn(run(opts, first.ok(), node, generation)))
}

async fn connect(opts: &PgConnectOptions) -> Result<PgListener, sqlx::Error> {
    // A pool of one, which PgListener uses to reconnect.
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(Duration::from_secs(10))
        .max_lifetime(None)
        .idle_timeout(None)
        .connect_lazy_with(opts.clone());
    let mut listener = PgListener::connect_with(&pool).await?;
    listener.listen(CHANNEL).await?;
    Ok(listener)
}

async fn run(opts: PgConnectOptions, mut listener: Option<PgListener>, node: String, generation: Arc<AtomicU64>) {
    let invalidate = || {
        generation.fetch_add(1, Ordering::AcqRel);
    };
    let mut wait = RETRY_FIRST;
    loop {
        let mut l = match listener.take() {
            // Connected before the store served anything: nothing cached to drop.
            Some(l) => l,
            None => match connect(&opts).await {
                Ok(l) => {
                    tracing::info!("auth-cache listener reconnected");
                    // Listening again; whatever changed meanwhile is re-read.
                    invalidate();
                    l
                }
                Err(e) => {
                    tracing::warn!(error = %e, retry_in = ?wait, "auth-cache listener could not connect");
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(RETRY_MAX);
                    continue;
                }
            },
        };
        let listening_since = std::time::Instant::now();
        loop {
            match l.try_recv().await {
                Ok(Some(n)) if n.payload() == node => {}
                Ok(Some(_)) => invalidate(),
                // The connection was lost and is listening again: notifications sent in
                // between were missed.
                Ok(None) => {
                    tracing::info!("auth-cache listener reconnected after a lost connection");
                    invalidate();
                }
                Err(e) => {
                    tracing::warn!(error = %e, "auth-cache listener lost its connection");
                    invalidate();
                    break;
                }
            }
        }
        // A connection that served a while (closed by the server's idle_session_timeout,
        // say) is retried promptly; one that keeps failing at once, with growing waits.
        if listening_since.elapsed() >= Duration::from_secs(1) {
            wait = RETRY_FIRST;
        }
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(RETRY_MAX);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_notice_names_the_channel_listened_to() {
        let notice = Backend::Postgres.auth_change_notice().unwrap_or_default();
        assert!(notice.starts_with(&format!("SELECT pg_notify('{CHANNEL}', $1)")), "{notice}");
        assert_eq!(Backend::Sqlite.auth_change_notice(), None);
    }
}
