use std::sync::Arc;

use fedkey_core::SystemClock;
use fedkey_store::Store;

use fedkey_store::policy::Cidr;

use crate::ratelimit::RateLimiter;
use crate::source_limit::SourceLimiter;

/// What every handler and middleware layer reads. axum clones the state for each layer and
/// handler of every request, so it is one reference-counted pointer: a clone is one atomic
/// increment, not a copy of every field (and of `public_url`'s string).
#[derive(Clone)]
pub struct AppState(Arc<AppParts>);

impl From<AppParts> for AppState {
    fn from(parts: AppParts) -> AppState {
        AppState(Arc::new(parts))
    }
}

impl std::ops::Deref for AppState {
    type Target = AppParts;

    fn deref(&self) -> &AppParts {
        &self.0
    }
}

/// The parts of [`AppState`].
pub struct AppParts {
    pub store: Arc<Store>,
    /// Set only with `--unsafe-test-clock`: lets an admin move the server's clock
    /// forward, for end-to-end tests of expiry. Never enable in production.
    pub test_clock: Option<SystemClock>,
    /// `https` when serving TLS; used in the URLs fedkey puts in documents.
    pub scheme: &'static str,
    /// Per-trust SCIM rate limits (token buckets in this process).
    pub limiter: Arc<RateLimiter>,
    /// Per-source limits checked before authentication.
    pub source_limiter: Arc<SourceLimiter>,
    /// Peers whose `X-Forwarded-For` names the client (see [`crate::request::client_addr`]).
    pub trusted_proxies: Arc<[Cidr]>,
    /// The rotation engine (absent in benchmarks that only serve requests).
    pub engine: Option<Arc<fedkey_rotation::Engine>>,
    /// Trust-material watchers, which also verify federated (JWT) SCIM authentication.
    pub watchers: Option<Arc<fedkey_rotation::Watchers>>,
    /// The outbound provisioning dispatcher (absent in benchmarks that only serve requests).
    pub sync: Option<Arc<fedkey_sync::Dispatcher>>,
    /// Scheduled reconciliation of the targets (absent in benchmarks).
    pub reconcile_schedule: Option<Arc<fedkey_sync::Scheduler>>,
    /// The RFC 8935 security-event pusher (absent in benchmarks).
    pub events: Option<Arc<crate::events::push::Pusher>>,
    /// Where peers and people reach this server, e.g. `https://fedkey.example.com`; used
    /// in wrapped links and the SCIM base URL connectors deliver.
    pub public_url: String,
    /// The egress policy, for checking outbound URLs when they are configured.
    pub egress: fedkey_egress::Egress,
    /// The leak endpoint's GitHub keys and rate limit.
    pub leaks: Arc<crate::leaks::LeakIntake>,
    /// SHA-256 of the bearer token `/metrics` requires; `None` leaves it open.
    pub metrics_token: Option<[u8; 32]>,
}
