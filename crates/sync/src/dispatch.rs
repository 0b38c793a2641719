//! The dispatcher: fans the transactional outbox out to every outbound trust with a
//! target, then delivers due work.
//!
//! - **Ordering**: one work row per (target, resource), leased by one node at a time, so a
//!   resource has at most one delivery in flight per target; the desired state is read
//!   from the directory when the delivery runs, so coalesced changes arrive as one.
//! - **Concurrency**: at most the target's `concurrency` rows in flight (across nodes).
//! - **Retries**: exponential backoff with jitter; a 429's `Retry-After` is honoured
//!   (and pauses the whole target); after `max_attempts`, or at once for an error that
//!   retrying cannot fix, the row becomes a dead letter for an operator.
//! - **Circuit breaker**: after [`DispatcherConfig::breaker_threshold`] consecutive
//!   outages (5xx, timeouts, network errors) a target is left alone for
//!   [`DispatcherConfig::breaker_open`], then tried with one request (half open).
//! - **Idempotence**: before a create, an existing account is matched by `externalId`, then
//!   `userName` (`displayName` for groups); a 409 on create adopts the existing account; the
//!   remote id is persisted; a 404 on update re-creates the account.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use fedkey_core::{Clock, Timestamp};
use fedkey_scim::patch::PatchOp;
use fedkey_scim::schema::{GROUP, USER};
use fedkey_store::ops::{Delivered, SyncTarget, SyncWork};
use fedkey_store::scim::StoredResource;
use fedkey_store::{Actor, Store, StoreError};
use serde::Serialize;
use serde_json::{Value, json};

use crate::client::{Remote, ResourceKind, ScimClient};
use crate::diff;
use crate::error::ClientError;
use crate::mapping::{Desired, GroupRef, LeaverPolicy, Mapping};
use crate::target::{Auth, TargetConfig};

mod bulk;

/// Operations per `/Bulk` request when the target's own limit is higher and the target
/// is configured `auto`: enough to make a request carry real work, small enough that one
/// timeout does not set many users back.
const AUTO_BULK_OPERATIONS: usize = 100;

/// Deliveries recorded per transaction.
const FINISH_CHUNK: usize = 100;

#[derive(Debug, Clone)]
pub struct DispatcherConfig {
    /// This node's lease owner name.
    pub node_id: String,
    /// How long a claimed work row stays leased (longer than a delivery takes).
    pub lease_ttl: Duration,
    /// Outbox rows consumed per fan-out transaction.
    pub fan_out_batch: i64,
    /// Claim-and-deliver rounds per tick at most.
    pub max_rounds: usize,
    pub breaker_threshold: i64,
    pub breaker_open: Duration,
    pub base_backoff: Duration,
    pub max_backoff: Duration,
    /// Upper limit for each request to a target (a target's own `timeout` may be lower).
    pub request_timeout: Duration,
    /// How long a target's client (credentials, discovered capabilities) is reused.
    pub client_ttl: Duration,
}

impl DispatcherConfig {
    pub fn new(node_id: String) -> DispatcherConfig {
        DispatcherConfig {
            node_id,
            lease_ttl: Duration::from_secs(120),
            fan_out_batch: 500,
            max_rounds: 1000,
            breaker_threshold: 5,
            breaker_open: Duration::from_secs(60),
            base_backoff: Duration::from_secs(2),
            max_backoff: Duration::from_secs(15 * 60),
            request_timeout: Duration::from_secs(600),
            client_ttl: Duration::from_secs(600),
        }
    }
}

/// What one tick did.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct TickReport {
    pub fanned_out: usize,
    pub delivered: usize,
    pub retried: usize,
    pub dead_letters: usize,
    /// Targets skipped because their circuit is open.
    pub circuits_open: usize,
}

struct CachedClient {
    updated_at: Timestamp,
    fetched_at: Timestamp,
    client: Arc<ScimClient>,
}

pub struct Dispatcher {
    pub(crate) store: Arc<Store>,
    cfg: DispatcherConfig,
    egress: fedkey_egress::Egress,
    clients: tokio::sync::Mutex<HashMap<String, CachedClient>>,
    /// One tick at a time in this process (the loop and the test endpoint).
    running: tokio::sync::Mutex<()>,
    /// One application-group creation at a time in this process.
    app_groups: tokio::sync::Mutex<()>,
    /// Told about dead letters (one event per target and round).
    notifier: Option<fedkey_notify::Notifier>,
}

/// How one delivery went.
type Outcome = Result<Delivered, Failure>;

/// What a batch's results mean for its target.
struct Outcomes {
    /// An outage message (counts for the circuit breaker).
    outage: Option<String>,
    /// The target refused our credentials (401).
    refused: Option<String>,
    /// The longest `Retry-After` of a 429.
    pause: Option<Duration>,
    /// At least one delivery succeeded.
    ok: bool,
}

/// Why a delivery failed.
#[derive(Debug)]
pub(crate) struct Failure {
    pub(crate) message: String,
    retryable: bool,
    retry_after: Option<Duration>,
    /// An outage of the target (counts for the circuit breaker).
    outage: bool,
    unauthorized: bool,
}

impl From<ClientError> for Failure {
    fn from(e: ClientError) -> Failure {
        Failure {
            retryable: e.retryable(),
            retry_after: e.retry_after(),
            outage: matches!(e, ClientError::Unavailable { .. } | ClientError::Timeout | ClientError::Network { .. }),
            unauthorized: matches!(e, ClientError::Unauthorized { .. }),
            message: e.to_string(),
        }
    }
}

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Failure {
        Failure::fatal(format!("fedkey could not read the directory: {e}"), true)
    }
}

impl Failure {
    fn fatal(message: String, retryable: bool) -> Failure {
        Failure { message, retryable, retry_after: None, outage: false, unauthorized: false }
    }
}

fn actor() -> Actor {
    Actor::system("sync")
}

impl Dispatcher {
    /// Every request to a target goes through `egress`.
    pub fn new(store: Arc<Store>, cfg: DispatcherConfig, egress: fedkey_egress::Egress) -> Dispatcher {
        Dispatcher {
            store,
            cfg,
            egress,
            clients: tokio::sync::Mutex::new(HashMap::new()),
            running: tokio::sync::Mutex::new(()),
            app_groups: tokio::sync::Mutex::new(()),
            notifier: None,
        }
    }

    /// Dead letters are notified through `notifier`.
    pub fn with_notifier(mut self, notifier: fedkey_notify::Notifier) -> Dispatcher {
        self.notifier = Some(notifier);
        self
    }

    /// Ticks until the task is dropped; errors are logged and retried. A tick that moved
    /// work (fanned out or delivered) is followed by the next one at once, since more
    /// changes may have arrived meanwhile (or its rounds ran out); only an idle or failed
    /// tick waits `interval`, so a backlog drains at delivery speed, not one tick per interval.
    /// Retries and open circuits do not count as progress: their work is not due yet.
    pub async fn run(self: Arc<Self>, interval: Duration) {
        loop {
            let progressed = match self.tick().await {
                Ok(r) if r != TickReport::default() => {
                    tracing::info!(report = ?r, "sync tick");
                    r.fanned_out > 0 || r.delivered > 0
                }
                Ok(_) => false,
                Err(e) => {
                    tracing::warn!(error = %e, "sync tick failed");
                    false
                }
            };
            if progressed {
                // Let the HTTP handlers and other loops run between back-to-back ticks.
                tokio::task::yield_now().await;
            } else {
                tokio::time::sleep(interval).await;
            }
        }
    }

    fn now(&self) -> Timestamp {
        self.store.now()
    }

    /// Delivers everything due until nothing due is left, in rounds; each round first
    /// fans out what the outbox holds, so a change written during a long pass (a leaver
    /// during an initial load) waits for one round, not for the rest of the pass.
    pub async fn tick(&self) -> Result<TickReport, StoreError> {
        let _one = self.running.lock().await;
        let mut report = TickReport::default();
        let mut skipped: Vec<String> = Vec::new();
        for _ in 0..self.cfg.max_rounds {
            loop {
                let n = self.store.fan_out(self.cfg.fan_out_batch).await?;
                report.fanned_out += n;
                if n == 0 {
                    break;
                }
            }
            let mut claimed = Vec::new();
            for t in self.store.sync_targets(None).await? {
                if !t.active || skipped.contains(&t.trust_id) {
                    continue;
                }
                if t.circuit_open_until.is_some_and(|u| u > self.now()) {
                    report.circuits_open += 1;
                    skipped.push(t.trust_id.clone());
                    continue;
                }
                // Half open: one request decides whether the target is back.
                let half_open = t.consecutive_failures >= self.cfg.breaker_threshold;
                let conc = if half_open { 1 } else { t.concurrency };
                // With /Bulk, each of the `conc` requests in flight carries many users.
                let per_request = if half_open { 1 } else { self.bulk_claim(&t).await };
                let per_request = i64::try_from(per_request).unwrap_or(1);
                let batch = self
                    .store
                    .claim_sync_slots(&t.trust_id, &self.cfg.node_id, conc, per_request, self.cfg.lease_ttl)
                    .await?;
                if !batch.is_empty() {
                    claimed.push((t, batch));
                }
            }
            if claimed.is_empty() {
                break;
            }
            // Targets are independent: each round delivers to all of them at once, so a
            // slow application does not hold the others back.
            let rounds = futures_util::future::join_all(claimed.into_iter().map(|(t, batch)| async move {
                let mut part = TickReport::default();
                let keep = self.deliver_batch(&t, batch, &mut part).await;
                (t.trust_id, keep, part)
            }))
            .await;
            let mut failed = None;
            for (trust_id, keep, part) in rounds {
                report.delivered += part.delivered;
                report.retried += part.retried;
                report.dead_letters += part.dead_letters;
                match keep {
                    Ok(true) => {}
                    Ok(false) => skipped.push(trust_id),
                    Err(e) => failed = failed.or(Some(e)),
                }
            }
            if let Some(e) = failed {
                return Err(e);
            }
        }
        Ok(report)
    }

    /// Delivers one claimed batch; returns false when the target should be left alone
    /// for the rest of this tick (its circuit opened, or it is rate limiting us).
    async fn deliver_batch(
        &self,
        t: &SyncTarget,
        batch: Vec<SyncWork>,
        report: &mut TickReport,
    ) -> Result<bool, StoreError> {
        let setup = match serde_json::from_value::<Mapping>(t.mapping.clone()) {
            Ok(m) => match self.client(t).await {
                Ok(c) => Ok((m, c)),
                Err(f) => Err(f),
            },
            Err(e) => Err(Failure::fatal(format!("the stored mapping is invalid: {e}"), false)),
        };
        let results: Vec<Result<Delivered, Failure>> = match &setup {
            Ok((m, c)) => self.deliver_all(t, c, m, &batch).await,
            Err(f) => batch
                .iter()
                .map(|_| {
                    Err(Failure {
                        message: f.message.clone(),
                        retryable: f.retryable,
                        retry_after: f.retry_after,
                        outage: f.outage,
                        unauthorized: f.unauthorized,
                    })
                })
                .collect(),
        };
        let recorded = self.record_outcomes(t, &batch, results, report).await;
        let Outcomes { outage, refused, pause, ok } = match recorded {
            Ok(r) => r,
            Err(e) => {
                // A store error part way: give back the leases of the rows not recorded, so
                // the next pass retries them instead of waiting out the lease (2 minutes).
                // Recorded rows hold no lease any more, so this leaves them alone.
                let now = self.now();
                for w in &batch {
                    if let Err(e) = self.store.release_sync_work(w, &self.cfg.node_id, now).await {
                        tracing::warn!(error = %e, "could not give back sync leases after a store error");
                        break;
                    }
                }
                return Err(e);
            }
        };
        // Circuit breaker and rate limits.
        let now = self.now();
        if let Some(msg) = outage.filter(|_| !ok) {
            let opens = t.consecutive_failures + 1 >= self.cfg.breaker_threshold;
            let until = opens.then(|| now.saturating_add(self.cfg.breaker_open));
            self.store
                .sync_target_outcome(&t.trust_id, Some(&msg), until.or(pause.map(|p| now.saturating_add(p))))
                .await?;
            if opens {
                tracing::warn!(target = %t.trust, "sync circuit open: {msg}");
            }
            return Ok(false);
        }
        if let Some(p) = pause {
            self.store
                .sync_target_outcome(&t.trust_id, Some("rate limited by the target (429)"), Some(now.saturating_add(p)))
                .await?;
            return Ok(false);
        }
        if let Some(msg) = refused.filter(|_| !ok) {
            // The target refused our credentials: no outage (the circuit stays closed), but
            // the target is failing until a delivery succeeds; `sync status` and the health
            // model say so, with the error.
            self.store.sync_target_outcome(&t.trust_id, Some(&msg), None).await?;
            return Ok(false);
        }
        if ok && (t.consecutive_failures > 0 || t.circuit_open_until.is_some()) {
            self.store.sync_target_outcome(&t.trust_id, None, None).await?;
        }
        Ok(true)
    }

    /// Records each row's outcome (retries, dead letters, deliveries in chunks); returns the
    /// target-level signals: an outage message, a rate-limit pause, and whether anything
    /// succeeded.
    async fn record_outcomes(
        &self,
        t: &SyncTarget,
        batch: &[SyncWork],
        results: Vec<Result<Delivered, Failure>>,
        report: &mut TickReport,
    ) -> Result<Outcomes, StoreError> {
        let actor = actor();
        let mut outage: Option<String> = None;
        let mut refused: Option<String> = None;
        let mut pause: Option<Duration> = None;
        let mut ok = false;
        let mut delivered: Vec<(&SyncWork, Delivered)> = Vec::new();
        let mut dead: Option<(usize, String)> = None;
        for (w, r) in batch.iter().zip(results) {
            match r {
                Ok(done) => {
                    ok = true;
                    delivered.push((w, done));
                }
                Err(f) => {
                    if f.unauthorized {
                        self.clients.lock().await.remove(&t.trust_id);
                        refused = Some(f.message.clone());
                    }
                    if f.outage {
                        outage = Some(f.message.clone());
                    }
                    if let Some(d) = f.retry_after.filter(|_| f.retryable) {
                        pause = Some(pause.map_or(d, |p| p.max(d)));
                    }
                    let attempt = w.attempts + 1;
                    let retry_at = (f.retryable && attempt < t.max_attempts).then(|| {
                        let delay = f.retry_after.unwrap_or_else(|| self.backoff(attempt));
                        self.now().saturating_add(delay)
                    });
                    if self.store.fail_sync_work(&actor, w, &self.cfg.node_id, &f.message, retry_at).await? {
                        if retry_at.is_some() {
                            report.retried += 1;
                        } else {
                            report.dead_letters += 1;
                            let d = dead.get_or_insert_with(|| (0, f.message.clone()));
                            d.0 += 1;
                            // An operator must act: a change (perhaps a leaver's
                            // deprovisioning) will not arrive until the row is retried.
                            tracing::warn!(
                                target = %t.trust,
                                url = %t.base_url,
                                resource_type = %w.resource_type,
                                resource = %w.display.as_deref().unwrap_or(&w.resource_id),
                                resource_id = %w.resource_id,
                                attempts = attempt,
                                cause = %f.message,
                                "sync dead letter: {} {} will not be delivered to {}: {}",
                                w.resource_type,
                                w.display.as_deref().unwrap_or(&w.resource_id),
                                t.trust,
                                f.message
                            );
                        }
                    }
                }
            }
        }
        if let (Some((count, cause)), Some(n)) = (dead, &self.notifier) {
            n.notify(fedkey_notify::Event::dead_letter(&t.trust_id, &t.trust.to_string(), count, &cause));
        }
        // Successes are recorded together (one transaction per chunk). The groups to send
        // again are queued in the same transaction: a crash cannot record a delivery and
        // lose the group update it calls for.
        for chunk in delivered.chunks(FINISH_CHUNK) {
            let rows: Vec<(&SyncWork, &Delivered)> = chunk.iter().map(|(w, d)| (*w, d)).collect();
            let recorded = self.store.finish_sync_many(&actor, &self.cfg.node_id, &rows).await?;
            report.delivered += recorded.iter().filter(|r| **r).count();
        }
        Ok(Outcomes { outage, refused, pause, ok })
    }

    /// Delivers a claimed batch, one request (or request sequence) per lease at once: the
    /// users of a lease in `/Bulk` requests where the target takes them, everything else
    /// one by one.
    async fn deliver_all(&self, t: &SyncTarget, c: &ScimClient, m: &Mapping, batch: &[SyncWork]) -> Vec<Outcome> {
        let Some((max_ops, max_bytes)) = bulk_size(t, c) else {
            return futures_util::future::join_all(batch.iter().map(|w| self.deliver(t, c, m, w))).await;
        };
        let mut slots: Vec<Vec<usize>> = Vec::new();
        for (i, w) in batch.iter().enumerate() {
            match slots.iter_mut().find(|s| batch[s[0]].lease == w.lease && w.lease.is_some()) {
                Some(s) => s.push(i),
                None => slots.push(vec![i]),
            }
        }
        let done = futures_util::future::join_all(slots.into_iter().map(|slot| async move {
            let users = slot.len() > 1 && slot.iter().all(|i| batch[*i].resource_type == "User");
            let results = if users {
                let works: Vec<&SyncWork> = slot.iter().map(|i| &batch[*i]).collect();
                self.deliver_users_in_bulk(c, m, &works, max_ops, max_bytes).await
            } else {
                futures_util::future::join_all(slot.iter().map(|i| self.deliver(t, c, m, &batch[*i]))).await
            };
            (slot, results)
        }))
        .await;
        let mut out: Vec<Option<Outcome>> = batch.iter().map(|_| None).collect();
        for (slot, results) in done {
            for (i, r) in slot.into_iter().zip(results) {
                out[i] = Some(r);
            }
        }
        out.into_iter()
            .map(|r| r.unwrap_or_else(|| Err(Failure::fatal("the delivery did not run".into(), true))))
            .collect()
    }

    /// Operations per request to claim work for: what the target's client allows (its
    /// discovery runs here when the client is not cached; a failure leaves it to the
    /// delivery to report, with one request per change).
    async fn bulk_claim(&self, t: &SyncTarget) -> usize {
        match self.client(t).await {
            Ok(c) => bulk_size(t, &c).map_or(1, |(ops, _)| ops),
            Err(_) => 1,
        }
    }

    fn backoff(&self, attempt: i64) -> Duration {
        let r = fedkey_crypto::random::bytes::<8>().map(|b| u64::from_le_bytes(*b)).unwrap_or(0);
        backoff(self.cfg.base_backoff, self.cfg.max_backoff, attempt, r)
    }

    pub(crate) async fn client(&self, t: &SyncTarget) -> Result<Arc<ScimClient>, Failure> {
        let now = self.now();
        let mut cache = self.clients.lock().await;
        if let Some(c) = cache.get(&t.trust_id)
            && c.updated_at == t.updated_at
            && now < c.fetched_at.saturating_add(self.cfg.client_ttl)
        {
            return Ok(c.client.clone());
        }
        let auth = match &t.oauth {
            Some(o) => {
                let secret = self
                    .store
                    .sync_target_secret(&actor(), t)
                    .await?
                    .ok_or_else(|| Failure::fatal("the OAuth2 client secret is missing".into(), false))?;
                Auth::OAuth2 {
                    token_url: o.token_url.clone(),
                    client_id: o.client_id.clone(),
                    client_secret: secret,
                    scope: o.scope.clone(),
                }
            }
            None => Auth::Bearer(self.store.outbound_key(&actor(), &t.trust).await?.1),
        };
        let timeout = Duration::from_secs(u64::try_from(t.timeout_seconds).unwrap_or(30)).min(self.cfg.request_timeout);
        let cfg = TargetConfig { base_url: t.base_url.clone(), auth, timeout, allow_http: t.allow_http };
        let clock: Arc<dyn Clock> = self.store.clock.clone();
        let client = Arc::new(ScimClient::new(cfg, self.egress.clone(), clock)?);
        client.discover().await?;
        cache.insert(
            t.trust_id.clone(),
            CachedClient { updated_at: t.updated_at, fetched_at: now, client: client.clone() },
        );
        Ok(client)
    }

    async fn deliver(&self, t: &SyncTarget, c: &ScimClient, m: &Mapping, w: &SyncWork) -> Result<Delivered, Failure> {
        let r = match w.resource_type.as_str() {
            "User" => self.deliver_user(c, m, w).await,
            "Group" => self.deliver_group(t, c, m, w).await,
            other => Err(Failure::fatal(format!("unknown resource type {other}"), false)),
        };
        if let Err(f) = &r {
            tracing::debug!(target = %t.trust, resource = %w.resource_id, error = %f.message, "sync delivery failed");
        }
        r
    }

    async fn directory_resource(&self, w: &SyncWork) -> Result<Option<StoredResource>, Failure> {
        if w.deleted {
            return Ok(None);
        }
        match self.store.scim_get(&w.directory_id, &w.resource_type, &w.resource_id).await {
            Ok(r) => Ok(Some(r)),
            Err(StoreError::NotFound(_)) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    async fn deliver_user(&self, c: &ScimClient, m: &Mapping, w: &SyncWork) -> Result<Delivered, Failure> {
        let user = self.directory_resource(w).await?;
        let Some(body) = desired_user(c, m, user.as_ref())? else {
            return self.leaver(c, m, w).await;
        };
        let user_name = body.get("userName").and_then(Value::as_str).map(str::to_owned);
        let (remote, did) = self.upsert(c, ResourceKind::User, w, &body, "userName", user_name.as_deref()).await?;
        let managed = m.managed_user_attributes().map_err(|e| Failure::fatal(e.to_string(), false))?;
        let ops = diff::user_patch(&remote.body, &body, &managed);
        let remote = self.apply(c, ResourceKind::User, &remote, &ops, &body).await?;
        let mut did = vec![json!(did)];
        if !ops.is_empty() {
            did.push(patched(&ops));
        }
        self.user_delivered(c, m, w, user, &remote.id, &body, did).await
    }

    /// The rest of a user's delivery once the account holds the desired attributes: the
    /// application groups earned through role rules, and the record of what was done.
    #[allow(clippy::too_many_arguments)]
    async fn user_delivered(
        &self,
        c: &ScimClient,
        m: &Mapping,
        w: &SyncWork,
        user: Option<StoredResource>,
        remote_id: &str,
        body: &Value,
        mut did: Vec<Value>,
    ) -> Result<Delivered, Failure> {
        let groups: Vec<GroupRef> = user.as_ref().map(group_refs).unwrap_or_default();
        let want = m.app_groups(&groups);
        for name in m.managed_app_groups() {
            let should = want.contains(&name);
            let found = c.find_one(ResourceKind::Group, "displayName", &name).await?;
            let g = match found {
                Some(g) => g,
                None if should => self.create_app_group(c, &name).await?,
                None => continue,
            };
            let has = member_ids(&g.body).iter().any(|id| id == remote_id);
            if has != should {
                let me = [remote_id.to_owned()];
                let ops =
                    if should { diff::group_members_patch(&[], &me) } else { diff::group_members_patch(&me, &[]) };
                self.apply(c, ResourceKind::Group, &g, &ops, &g.body).await?;
                did.push(json!({if should { "app_group_add" } else { "app_group_remove" }: name}));
            }
        }
        let active = !matches!(body.get("active"), Some(Value::Bool(false)));
        let requeue = w.remote_id.as_deref() != Some(remote_id) || w.remote_active != Some(active);
        Ok(Delivered {
            remote_id: Some(remote_id.to_owned()),
            remote_active: Some(active),
            deprovisioned: false,
            summary: Value::Array(did),
            requeue_groups: if requeue {
                user.map(|u| u.groups.into_iter().map(|g| g.value).collect()).unwrap_or_default()
            } else {
                Vec::new()
            },
        })
    }

    /// Creates an application group that a lookup just did not find. The deliveries of a
    /// batch run at once and many users earn the same group: they create it one at a time
    /// (looking again under the lock), and a 409 (another node created it) adopts it.
    async fn create_app_group(&self, c: &ScimClient, name: &str) -> Result<Remote, Failure> {
        let _one = self.app_groups.lock().await;
        if let Some(g) = c.find_one(ResourceKind::Group, "displayName", name).await? {
            return Ok(g);
        }
        match c.create(ResourceKind::Group, &json!({"schemas": [GROUP], "displayName": name})).await {
            Ok(g) => Ok(g),
            Err(ClientError::Conflict { .. }) => {
                c.find_one(ResourceKind::Group, "displayName", name).await?.ok_or_else(|| {
                    Failure::fatal(
                        format!("the target answered 409 to creating the group {name:?} but does not list it"),
                        true,
                    )
                })
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Deactivates or deletes the user's account at the target, per the leaver policy.
    async fn leaver(&self, c: &ScimClient, m: &Mapping, w: &SyncWork) -> Result<Delivered, Failure> {
        let remote = self.locate(c, ResourceKind::User, w, "userName", None).await?;
        let Some(remote) = remote else {
            // Nothing to deprovision here: confirmed for a directory leaver.
            return Ok(Delivered {
                remote_id: None,
                remote_active: None,
                deprovisioned: w.leaver_since.is_some(),
                summary: json!(["absent"]),
                requeue_groups: Vec::new(),
            });
        };
        let groups = self.user_groups(w).await;
        match m.leaver {
            LeaverPolicy::Delete => {
                match c.delete(ResourceKind::User, &remote.id).await {
                    Ok(()) | Err(ClientError::NotFound { .. }) => {}
                    Err(e) => return Err(e.into()),
                }
                Ok(Delivered {
                    remote_id: None,
                    remote_active: None,
                    deprovisioned: true,
                    summary: json!(["delete"]),
                    requeue_groups: groups,
                })
            }
            LeaverPolicy::Deactivate => {
                let mut did = "already_inactive";
                if !matches!(remote.body.get("active"), Some(Value::Bool(false))) {
                    let mut body = remote.body.clone();
                    if let Some(o) = body.as_object_mut() {
                        o.insert("active".into(), Value::Bool(false));
                    }
                    self.apply(c, ResourceKind::User, &remote, &[diff::deactivate()], &body).await?;
                    did = "deactivate";
                }
                Ok(Delivered {
                    remote_id: Some(remote.id),
                    remote_active: Some(false),
                    deprovisioned: true,
                    summary: json!([did]),
                    requeue_groups: groups,
                })
            }
        }
    }

    async fn user_groups(&self, w: &SyncWork) -> Vec<String> {
        match self.store.scim_get(&w.directory_id, "User", &w.resource_id).await {
            Ok(u) => u.groups.into_iter().map(|g| g.value).collect(),
            Err(_) => Vec::new(),
        }
    }

    async fn deliver_group(
        &self,
        t: &SyncTarget,
        c: &ScimClient,
        m: &Mapping,
        w: &SyncWork,
    ) -> Result<Delivered, Failure> {
        let Some(group) = self.directory_resource(w).await? else {
            let remote = self.locate(c, ResourceKind::Group, w, "displayName", None).await?;
            if let Some(r) = &remote {
                match c.delete(ResourceKind::Group, &r.id).await {
                    Ok(()) | Err(ClientError::NotFound { .. }) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            return Ok(Delivered {
                remote_id: None,
                remote_active: None,
                deprovisioned: false,
                summary: json!([if remote.is_some() { "delete" } else { "absent" }]),
                requeue_groups: Vec::new(),
            });
        };
        let caps = c.capabilities().unwrap_or_else(default_caps);
        let mut body = m.desired_group(&wire(&group)).map_err(|e| Failure::fatal(e.to_string(), false))?;
        caps.restrict(GROUP, &mut body);
        let name = body.get("displayName").and_then(Value::as_str).map(str::to_owned);
        let (remote, did) = self.upsert(c, ResourceKind::Group, w, &body, "displayName", name.as_deref()).await?;
        let managed = m.managed_group_attributes().map_err(|e| Failure::fatal(e.to_string(), false))?;
        let mut ops = diff::group_patch(&remote.body, &body, &managed);
        // Members: those already at the target (active users, groups).
        let of_kind = |kind: &str| group.members.iter().filter(|m| m.kind == kind).map(|m| m.value.clone()).collect();
        let user_ids: Vec<String> = of_kind("User");
        let group_ids: Vec<String> = of_kind("Group");
        let users = self.store.sync_remote_ids(&t.trust_id, "User", &user_ids).await?;
        let groups = self.store.sync_remote_ids(&t.trust_id, "Group", &group_ids).await?;
        let mut want: Vec<String> = Vec::new();
        // A member with a change still to deliver may have a remote id that is about to
        // change (its account was deleted at the target and is being created again).
        let mut unsettled = false;
        for mem in &group.members {
            let hit = if mem.kind == "User" { users.get(&mem.value) } else { groups.get(&mem.value) };
            if let Some(r) = hit
                && r.active != Some(false)
            {
                want.push(r.id.clone());
                unsettled |= !r.settled;
            }
        }
        want.sort();
        let have = member_ids(&remote.body);
        let member_ops = diff::group_members_patch(&have, &want);
        let n_members = member_ops.len();
        ops.extend(member_ops);
        let mut full = body.clone();
        if let Some(o) = full.as_object_mut() {
            o.insert("members".into(), Value::Array(want.iter().map(|id| json!({"value": id})).collect()));
        }
        let remote = match self.apply(c, ResourceKind::Group, &remote, &ops, &full).await {
            Ok(r) => r,
            // The target refused a member id that is being replaced: try again after the
            // member's own delivery (which queues this group again when its id changes).
            Err(f) if unsettled && !f.retryable => {
                return Err(Failure {
                    message: format!("{} (a member's account is still being delivered; retrying)", f.message),
                    retryable: true,
                    ..f
                });
            }
            Err(f) => return Err(f),
        };
        Ok(Delivered {
            remote_id: Some(remote.id),
            remote_active: None,
            deprovisioned: false,
            summary: json!([did, {"operations": ops.len(), "member_operations": n_members}]),
            requeue_groups: Vec::new(),
        })
    }

    /// The target's account for `w`: by remembered remote id, else `externalId`, else
    /// `name_attr` (`userName` / `displayName`).
    async fn locate(
        &self,
        c: &ScimClient,
        kind: ResourceKind,
        w: &SyncWork,
        name_attr: &str,
        name: Option<&str>,
    ) -> Result<Option<Remote>, ClientError> {
        if let Some(rid) = &w.remote_id {
            match c.get(kind, rid).await {
                Ok(r) => return Ok(Some(r)),
                Err(ClientError::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        if let Some(r) = c.find_one(kind, "externalId", &w.resource_id).await? {
            return Ok(Some(r));
        }
        match name {
            Some(n) => c.find_one(kind, name_attr, n).await,
            None => Ok(None),
        }
    }

    /// The existing account (matched), or a new one; a 409 on create adopts the account
    /// that caused it.
    async fn upsert(
        &self,
        c: &ScimClient,
        kind: ResourceKind,
        w: &SyncWork,
        body: &Value,
        name_attr: &str,
        name: Option<&str>,
    ) -> Result<(Remote, &'static str), Failure> {
        if let Some(r) = self.locate(c, kind, w, name_attr, name).await? {
            let did = if w.remote_id.as_deref() == Some(r.id.as_str()) { "update" } else { "match" };
            return Ok((r, did));
        }
        match c.create(kind, body).await {
            Ok(r) => Ok((r, "create")),
            Err(ClientError::Conflict { .. }) => {
                let found = self.locate(c, kind, w, name_attr, name).await?;
                found.map(|r| (r, "adopt")).ok_or_else(|| {
                    Failure::fatal(
                        "the target answered 409 to the create but no matching account can be found".into(),
                        true,
                    )
                })
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Sends `ops` (PATCH, or PUT of the patched body when the target has no PATCH). A 404
    /// (deleted at the target meanwhile) re-creates the resource from `full`.
    async fn apply(
        &self,
        c: &ScimClient,
        kind: ResourceKind,
        remote: &Remote,
        ops: &[PatchOp],
        full: &Value,
    ) -> Result<Remote, Failure> {
        if ops.is_empty() {
            return Ok(remote.clone());
        }
        let patch = c.capabilities().is_none_or(|caps| caps.patch);
        // Where the target supports ETags, a change computed from a version applies only to
        // that version; a 412 (changed meanwhile) is retried from a fresh read. Not for a
        // group's PATCH: adding and removing members commute, and deliveries of many members
        // of one application group at once would otherwise keep failing each other.
        let guarded = kind == ResourceKind::User || !patch;
        let if_match =
            if guarded && c.capabilities().is_some_and(|caps| caps.etag) { remote.etag.as_deref() } else { None };
        let result = if patch {
            c.patch(kind, &remote.id, ops, if_match).await.map(|r| r.unwrap_or_else(|| remote.clone()))
        } else {
            let body = diff::replacement_body(kind.resource_type(), &remote.body, ops)
                .map_err(|e| Failure::fatal(format!("cannot build the replacement body: {}", e.detail), false))?;
            c.replace(kind, &remote.id, &body, if_match).await
        };
        match result {
            Ok(r) => Ok(r),
            Err(ClientError::NotFound { .. }) => {
                let mut body = full.clone();
                if let Some(o) = body.as_object_mut() {
                    o.remove("id");
                    o.remove("meta");
                }
                match c.create(kind, &body).await {
                    Ok(r) => Ok(r),
                    // Not deleted after all (or re-created meanwhile): the next attempt matches it.
                    Err(ClientError::Conflict { .. }) => Err(Failure::fatal(
                        "the target answered 404 to the update and 409 to the re-create; retrying".into(),
                        true,
                    )),
                    Err(e) => Err(e.into()),
                }
            }
            Err(e) => Err(e.into()),
        }
    }
}

/// Operations and bytes per `/Bulk` request to `t`, or `None` for one request per change:
/// the target's limits, the trust's `bulk_max_operations` and [`AUTO_BULK_OPERATIONS`].
fn bulk_size(t: &SyncTarget, c: &ScimClient) -> Option<(usize, usize)> {
    let (ops, bytes) = c.bulk_limit()?;
    let ours = match t.bulk_max_operations {
        None => AUTO_BULK_OPERATIONS,
        Some(n) => usize::try_from(n).unwrap_or(0),
    };
    let ops = ops.min(ours);
    (ops >= 2).then_some((ops, bytes))
}

/// What the target should hold for a directory user (`None`: nothing, the user is a
/// leaver or out of scope), restricted to what the target accepts.
fn desired_user(c: &ScimClient, m: &Mapping, user: Option<&StoredResource>) -> Result<Option<Value>, Failure> {
    let desired = match user {
        None => Desired::OutOfScope,
        Some(u) if matches!(u.body.get("active"), Some(Value::Bool(false))) => Desired::OutOfScope,
        Some(u) => m.desired_user(&wire(u), &group_refs(u)).map_err(|e| Failure::fatal(e.to_string(), false))?,
    };
    match desired {
        Desired::OutOfScope => Ok(None),
        Desired::User(mut b) => {
            c.capabilities().unwrap_or_else(default_caps).restrict(USER, &mut b);
            Ok(Some(b))
        }
    }
}

fn group_refs(u: &StoredResource) -> Vec<GroupRef> {
    u.groups
        .iter()
        .map(|g| GroupRef { id: g.value.clone(), display_name: g.display.clone().unwrap_or_default() })
        .collect()
}

/// The audit summary entry of a PATCH: the paths changed (never the values).
fn patched(ops: &[PatchOp]) -> Value {
    json!({"patched": ops.iter().filter_map(|o| o.path.as_ref().map(|p| p.to_string())).collect::<Vec<_>>()})
}

pub(crate) fn default_caps() -> crate::Capabilities {
    crate::Capabilities::from_documents(
        &json!({"patch": {"supported": true}, "filter": {"supported": true}}),
        None,
        None,
    )
}

/// A directory resource in wire layout (`id`, body, and for users their `groups`).
pub(crate) fn wire(r: &StoredResource) -> Value {
    let mut b = r.body.clone();
    if let Some(o) = b.as_object_mut() {
        o.insert("id".into(), Value::String(r.id.clone()));
        if r.resource_type == "User" && !r.groups.is_empty() {
            o.insert(
                "groups".into(),
                Value::Array(r.groups.iter().map(|g| json!({"value": g.value, "display": g.display})).collect()),
            );
        }
    }
    b
}

pub(crate) fn member_ids(group: &Value) -> Vec<String> {
    group
        .get("members")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(|m| m.get("value").and_then(Value::as_str).map(str::to_owned)).collect())
        .unwrap_or_default()
}

/// `base · 2^(attempt-1)`, capped at `max`, plus up to 25 % jitter drawn from `random`
/// (shared with the security-event pusher).
pub fn backoff(base: Duration, max: Duration, attempt: i64, random: u64) -> Duration {
    let exp = u32::try_from(attempt.clamp(1, 30) - 1).unwrap_or(0);
    let d = base.saturating_mul(2u32.saturating_pow(exp)).min(max);
    let jitter_ms = u64::try_from(d.as_millis() / 4).unwrap_or(0);
    d + Duration::from_millis(if jitter_ms == 0 { 0 } else { random % jitter_ms })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_bounded_jitter_and_a_cap() {
        let (base, max) = (Duration::from_secs(2), Duration::from_secs(900));
        assert_eq!(backoff(base, max, 1, 0), Duration::from_secs(2));
        assert_eq!(backoff(base, max, 2, 0), Duration::from_secs(4));
        assert_eq!(backoff(base, max, 5, 0), Duration::from_secs(32));
        assert_eq!(backoff(base, max, 40, 0), max, "capped");
        for r in [1u64, 499, 500, 12_345, u64::MAX] {
            let d = backoff(base, max, 3, r);
            assert!(d >= Duration::from_secs(8) && d < Duration::from_secs(10), "{d:?}");
        }
        assert_eq!(backoff(base, max, 0, 7), backoff(base, max, 1, 7), "attempt 0 counts as the first");
    }

    #[test]
    fn failures_are_classified_for_retries_and_the_breaker() {
        let f = Failure::from(ClientError::Unavailable {
            status: 503,
            retry_after: Some(Duration::from_secs(9)),
            detail: String::new(),
        });
        assert!(f.retryable && f.outage && f.retry_after == Some(Duration::from_secs(9)));
        let f = Failure::from(ClientError::RateLimited { retry_after: Some(Duration::from_secs(120)) });
        assert!(f.retryable && !f.outage && f.retry_after == Some(Duration::from_secs(120)));
        let f = Failure::from(ClientError::Timeout);
        assert!(f.retryable && f.outage);
        let f = Failure::from(ClientError::Unauthorized { detail: String::new() });
        assert!(!f.retryable && f.unauthorized);
        let f = Failure::from(ClientError::Rejected { status: 400, scim_type: None, detail: "bad".into() });
        assert!(!f.retryable && !f.outage);
    }
}
