//! Integration tests of `fedkey-store`, each run against both backends: SQLite (a file in
//! a fresh temp dir) and PostgreSQL (a fresh database per test on the server named by
//! `FEDKEY_TEST_PG_URL`, default `postgres://postgres@127.0.0.1:5432/test`).
//!
//! Every test exists twice, as `<name>::sqlite` and `<name>::postgres`. When PostgreSQL is
//! unreachable the `postgres` variants print a loud `*** SKIPPED ... ***` line and pass —
//! unless `CI=true`, where they fail. Time only moves through a `ManualClock`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use base64::Engine;
use fedkey_audit::{Checkpoint, Outcome, VerifyError, VerifyReport};
use fedkey_core::{Direction, DomainError, KeyState, ManualClock, PeerKind, Role, Timestamp, TrustRef, TrustStatus};
use fedkey_crypto::signing::SigningKey;
use fedkey_crypto::token::{self, TokenKind};
use fedkey_crypto::{Keyring, MasterKey, Secret};
use fedkey_store::audit::{self, AuditFilter, WriterConfig};
use fedkey_store::auth::{AuthFailure, Principal, RequestMeta};
use fedkey_store::install::Install;
use fedkey_store::keyfile::{KeyringFile, KeyringSource, StaticKeyring};
use fedkey_store::ops::{NewTrust, RotateKey};
use fedkey_store::{Actor, Backend, Db, KeyVersion, Store, StoreError};
use sqlx::{AssertSqlSafe, Connection, PgConnection, Row};

// ---------------------------------------------------------------------------------------
// Test databases
// ---------------------------------------------------------------------------------------

const DEFAULT_PG_URL: &str = "postgres://postgres@127.0.0.1:5432/test";
const T0: Timestamp = Timestamp(1_800_000_000_000_000);
const HOUR: Duration = Duration::from_secs(3600);
const US: Duration = Duration::from_micros(1);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Sqlite,
    Postgres,
}

/// `Some(admin url)` when PostgreSQL answers; probed once per test binary.
static PG: tokio::sync::OnceCell<Option<String>> = tokio::sync::OnceCell::const_new();

async fn pg_admin_url() -> Option<String> {
    PG.get_or_init(|| async {
        let url = std::env::var("FEDKEY_TEST_PG_URL").unwrap_or_else(|_| DEFAULT_PG_URL.to_owned());
        let why = match tokio::time::timeout(Duration::from_secs(5), PgConnection::connect(&url)).await {
            Ok(Ok(c)) => {
                let _ = c.close().await;
                return Some(url);
            }
            Ok(Err(e)) => e.to_string(),
            Err(_) => "connection timed out".to_owned(),
        };
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!(
                "CI=true requires PostgreSQL, but there is no server at {} ({why}); start one or set FEDKEY_TEST_PG_URL",
                redact(&url)
            );
        }
        loud(&format!(
            "\n*** SKIPPED PostgreSQL tests: no server at {} ({why}); set FEDKEY_TEST_PG_URL to run them ***\n",
            redact(&url)
        ));
        None
    })
    .await
    .clone()
}

/// Writes to the process's stderr directly: libtest captures `eprintln!` of passing
/// tests, and a skipped backend must not go unnoticed.
fn loud(msg: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr().lock(), "{msg}");
}

/// Hides a password in `scheme://user:password@host/...`.
fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    match rest.split_once('@') {
        Some((auth, host)) if auth.contains(':') => {
            let user = auth.split(':').next().unwrap_or("");
            format!("{scheme}://{user}:***@{host}")
        }
        _ => url.to_owned(),
    }
}

/// `url` with its database name replaced by `name` (query string kept).
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, format!("?{q}")),
        None => (url, String::new()),
    };
    let (scheme, rest) = base.split_once("://").expect("postgres URL has a scheme");
    let authority = rest.split('/').next().unwrap_or(rest);
    format!("{scheme}://{authority}/{name}{query}")
}

/// One empty database; PostgreSQL databases are dropped (best effort) on drop.
struct TestDb {
    kind: Kind,
    url: String,
    sqlite_path: Option<PathBuf>,
    _dir: Option<tempfile::TempDir>,
    pg: Option<(String, String)>,
}

impl TestDb {
    async fn new(kind: Kind) -> TestDb {
        TestDb::with_pg_options(kind, "").await
    }

    /// Like [`TestDb::new`], with `options` appended to PostgreSQL's `CREATE DATABASE`
    /// (a collation, say); without them if the server refuses, saying so loudly.
    async fn with_pg_options(kind: Kind, options: &str) -> TestDb {
        match kind {
            Kind::Sqlite => {
                let dir = tempfile::tempdir().unwrap();
                let path = dir.path().join("fedkey.db");
                TestDb {
                    kind,
                    url: format!("sqlite:{}", path.display()),
                    sqlite_path: Some(path),
                    _dir: Some(dir),
                    pg: None,
                }
            }
            Kind::Postgres => {
                let admin = pg_admin_url().await.expect("PostgreSQL variant run without a server");
                let name = format!("fedkey_t_{}", uuid::Uuid::new_v4().simple());
                let mut c = PgConnection::connect(&admin).await.unwrap();
                let create = format!("CREATE DATABASE \"{name}\"");
                if options.is_empty() {
                    sqlx::raw_sql(AssertSqlSafe(create)).execute(&mut c).await.unwrap();
                } else if let Err(e) = sqlx::raw_sql(AssertSqlSafe(format!("{create} {options}"))).execute(&mut c).await
                {
                    loud(&format!(
                        "*** PostgreSQL refused CREATE DATABASE ... {options} ({e}); using the defaults ***"
                    ));
                    sqlx::raw_sql(AssertSqlSafe(create)).execute(&mut c).await.unwrap();
                }
                let _ = c.close().await;
                TestDb {
                    kind,
                    url: with_database(&admin, &name),
                    sqlite_path: None,
                    _dir: None,
                    pg: Some((admin, name)),
                }
            }
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let Some((admin, name)) = self.pg.take() else {
            return;
        };
        // Drop runs inside a runtime; do the async work on a thread with its own.
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() else {
                return;
            };
            rt.block_on(async {
                if let Ok(mut c) = PgConnection::connect(&admin).await {
                    let sql = format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)");
                    if let Err(e) = sqlx::raw_sql(AssertSqlSafe(sql)).execute(&mut c).await {
                        loud(&format!("warning: could not drop test database {name}: {e}"));
                    }
                    let _ = c.close().await;
                }
            });
        })
        .join();
    }
}

/// Declares `mod $name { sqlite(), postgres() }`, each running `cases::$name(kind)`.
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::cases::$name(super::Kind::Sqlite).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                if super::pg_admin_url().await.is_none() {
                    super::loud(&format!("*** SKIPPED {}::postgres: no PostgreSQL server ***", stringify!($name)));
                    return;
                }
                super::cases::$name(super::Kind::Postgres).await;
            }
        }
    )*};
}

on_both_backends!(
    lifecycle,
    directory_password_policy,
    auth_cache_invalidation,
    audit_chain_verifies_and_append_only,
    tamper_update_row,
    tamper_delete_middle_row,
    tamper_reorder_rows,
    tamper_forged_checkpoint_random_signature,
    tamper_forged_checkpoint_other_key,
    tamper_truncate_tail_covered_by_checkpoint,
    secrets_at_rest,
    fail_closed_without_audit,
    master_key_rotation,
    concurrent_authentications_one_chain,
    audit_writer_follows_other_appenders,
    two_stores_one_chain,
    directories_are_found_by_every_store,
    verify_while_appending,
    tamper_replaced_public_key,
    awkward_text_survives_the_batch_insert,
    scim_resources_round_trip,
    scim_replace_writes_only_what_changed,
    scim_concurrent_replaces_lose_nothing,
    group_commit_keeps_each_writers_outcome,
    scim_filters_select_expected_resources,
    scim_filter_fast_paths_use_indexes,
    scim_filters_agree_with_the_evaluator,
    rotation_steps_persist_and_promote,
    rotation_cancel_and_emergency,
    leak_reports_and_pending_auth,
    leases_exclude_other_owners,
    wrapped_links_reveal_once,
    trust_material_versions_and_replay,
    trust_scopes_change_applies_to_live_keys,
    user_groups_lookup_uses_the_member_index,
    lookups_by_id_use_the_primary_key,
    outbox_rows_commit_with_their_change,
    outbox_claims_exclude_other_owners,
    outbox_slots_bound_requests_across_owners,
    outbox_slots_are_shared_with_a_waiting_node,
    outbox_claims_put_deprovisioning_first,
    outbox_memberships_reach_users_only_where_the_mapping_reads_them,
    reconcile_schedule_claims_once,
    sync_outcomes_need_one_connection,
    connection_settings_reach_every_session,
    failed_authentications_are_summarized_per_window,
    notifications_are_claimed_once_across_nodes,
    audit_sink_leases_exclude_other_nodes,
    migration_checksums_are_recorded_and_checked,
    oauth_clients_and_token_subjects,
    oauth_signing_key_is_added_to_an_older_install,
    keyset_walk_under_concurrent_writes,
    keyset_pages_are_in_the_default_order_only,
    keyset_pages_seek_the_creation_index,
    console_sessions_end_on_time_and_on_revocation,
    events_fan_out_per_stream_and_type,
    events_poll_acks_and_errors,
    events_push_leases_and_outcomes,
    events_stream_configuration,
    bulk_create_writes_each_row_with_its_record,
    bulk_create_is_all_or_nothing,
    bulk_create_crosses_the_statement_chunks,
    ssf_verification_slots_hold_across_nodes,
    audit_batches_cross_the_insert_limit,
    a_failing_audit_batch_loses_nothing,
);

#[path = "store/audit_batch.rs"]
mod audit_batch;
#[path = "store/audit_sinks.rs"]
mod audit_sinks;
#[path = "store/bulk_load.rs"]
mod bulk_load;
#[path = "store/connections.rs"]
mod connections;
#[path = "store/console.rs"]
mod console;
#[path = "store/events.rs"]
mod events;

#[path = "store/auth_failures.rs"]
mod auth_failures;

#[path = "store/keyset.rs"]
mod keyset;
#[path = "store/notify.rs"]
mod notify;
#[path = "store/oauth.rs"]
mod oauth;
#[path = "store/outbox.rs"]
mod outbox;
#[path = "store/reconcile_schedule.rs"]
mod reconcile_schedule;
#[path = "store/rotation.rs"]
mod rotation;
#[path = "store/ssf.rs"]
mod ssf;

#[path = "store/invalidation.rs"]
mod invalidation;
#[path = "store/migrations.rs"]
mod migrations;

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

fn test_cfg() -> WriterConfig {
    // Checkpoints every 25 group-committed records; the timer is out of the picture.
    WriterConfig { max_batch: 1024, checkpoint_every: 25, checkpoint_interval: Duration::from_secs(24 * 3600) }
}

fn static_keyring() -> Arc<dyn KeyringSource> {
    Arc::new(StaticKeyring(Arc::new(Keyring::new(MasterKey::generate().unwrap()))))
}

async fn open_store(url: &str, keyring: Arc<dyn KeyringSource>, clock: &ManualClock, ttl: Duration) -> Store {
    let db = Db::connect(url).await.unwrap_or_else(|e| panic!("connect {}: {e:?}", redact(url)));
    let (store, _created) = Store::open(db, keyring, Arc::new(clock.clone()), test_cfg(), ttl).await.unwrap();
    store
}

/// A store on a fresh database, plus a counter of authentication attempts.
struct Env {
    store: Arc<Store>,
    keyring: Arc<dyn KeyringSource>,
    clock: ManualClock,
    auths: AtomicUsize,
    t: TestDb,
}

async fn env(kind: Kind) -> Env {
    env_on(TestDb::new(kind).await).await
}

async fn env_on(t: TestDb) -> Env {
    let kind = t.kind;
    let clock = ManualClock::new(T0);
    let keyring = static_keyring();
    let store = Arc::new(open_store(&t.url, keyring.clone(), &clock, Duration::from_secs(60)).await);
    assert_eq!(store.raw_for_tests().backend, if kind == Kind::Sqlite { Backend::Sqlite } else { Backend::Postgres });
    Env { store, keyring, clock, auths: AtomicUsize::new(0), t }
}

impl Env {
    async fn auth(&self, dir: &str, key: Option<&str>) -> Result<Principal, AuthFailure> {
        self.auths.fetch_add(1, Ordering::SeqCst);
        self.store
            .authenticate_provisioning(dir, key, &RequestMeta { source: Some("192.0.2.1".into()), request_id: None })
            .await
            .expect("authentication attempt must be audited")
    }

    async fn auth_key(&self, dir: &str, key: &Secret) -> Result<Principal, AuthFailure> {
        self.auth(dir, Some(key.expose())).await
    }

    async fn exec(&self, sql: &str) {
        exec(self.store.raw_for_tests(), sql).await;
    }
}

async fn exec(db: &Db, sql: &str) {
    sqlx::raw_sql(AssertSqlSafe(sql.to_owned())).execute(db.pool()).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
}

fn actor() -> Actor {
    Actor::system("test")
}

fn tref(d: &str, t: &str) -> TrustRef {
    TrustRef { directory: d.into(), trust: t.into() }
}

fn inbound(dir: &str, name: &str) -> NewTrust {
    NewTrust {
        directory: dir.into(),
        name: name.into(),
        direction: Direction::Inbound,
        peer_kind: PeerKind::Entra,
        scopes: None,
        description: None,
        outbound_key: None,
    }
}

fn outbound(dir: &str, name: &str, key: &str) -> NewTrust {
    NewTrust {
        direction: Direction::Outbound,
        peer_kind: PeerKind::Okta,
        outbound_key: Some(Secret::new(key.to_owned())),
        ..inbound(dir, name)
    }
}

fn rotate(overlap: Duration) -> RotateKey {
    RotateKey { overlap, outbound_key: None }
}

async fn verify(s: &Store) -> Result<VerifyReport, VerifyError> {
    s.verify_audit().await.expect("verification could read the log")
}

async fn head_seq(s: &Store) -> i64 {
    s.audit_head().await.unwrap().0
}

fn states(keys: &[KeyVersion]) -> Vec<(i64, KeyState)> {
    keys.iter().map(|k| (k.version, k.state)).collect()
}

async fn count_action(s: &Store, action: &str) -> usize {
    let f = AuditFilter { action: Some(action.into()), limit: 10_000, ..Default::default() };
    s.audit_records(&f).await.unwrap().len()
}

async fn drop_append_only_triggers(e: &Env) {
    match e.t.kind {
        Kind::Sqlite => {
            e.exec(
                "DROP TRIGGER audit_log_no_update; DROP TRIGGER audit_log_no_delete; \
                 DROP TRIGGER audit_checkpoints_no_update; DROP TRIGGER audit_checkpoints_no_delete;",
            )
            .await
        }
        Kind::Postgres => {
            e.exec("DROP TRIGGER audit_log_no_update ON audit_log; DROP TRIGGER audit_checkpoints_no_update ON audit_checkpoints")
                .await
        }
    }
}

/// A store whose log holds a realistic mix of records and one writer checkpoint.
async fn populated(kind: Kind) -> Env {
    let e = env(kind).await;
    let s = &e.store;
    let a = actor();
    s.create_directory(&a, "acme").await.unwrap();
    s.create_directory(&a, "other").await.unwrap();
    let (_, _, k1) = s.create_trust(&a, inbound("acme", "entra")).await.unwrap();
    s.create_trust(&a, outbound("acme", "app", "app-key-1")).await.unwrap();
    e.clock.advance(Duration::from_secs(10));
    let (_, k2) = s.rotate_key(&a, &tref("acme", "entra"), rotate(HOUR)).await.unwrap();
    let (k1, k2) = (k1.unwrap(), k2.unwrap());
    for i in 0..30 {
        e.clock.advance(Duration::from_millis(5));
        let key = if i % 2 == 0 { &k1 } else { &k2 };
        let dir = if i % 7 == 3 { "other" } else { "acme" };
        let _ = e.auth_key(dir, key).await;
    }
    s.outbound_key(&a, &tref("acme", "app")).await.unwrap();
    s.set_trust_status(&a, &tref("acme", "entra"), TrustStatus::Suspended).await.unwrap();
    s.set_trust_status(&a, &tref("acme", "entra"), TrustStatus::Active).await.unwrap();
    s.revoke_key(&a, &tref("acme", "entra"), 1).await.unwrap();
    let rep = verify(s).await.unwrap();
    assert_eq!(rep.records, head_seq(s).await);
    assert!(rep.records >= 35, "{rep:?}");
    assert!(rep.checkpoints >= 1, "the writer should have signed a checkpoint: {rep:?}");
    e
}

// ---------------------------------------------------------------------------------------
// The cases
// ---------------------------------------------------------------------------------------

mod cases {
    pub use super::audit_batch::{a_failing_audit_batch_loses_nothing, audit_batches_cross_the_insert_limit};
    pub use super::audit_sinks::audit_sink_leases_exclude_other_nodes;
    pub use super::auth_failures::failed_authentications_are_summarized_per_window;
    pub use super::bulk_load::{
        bulk_create_crosses_the_statement_chunks, bulk_create_is_all_or_nothing,
        bulk_create_writes_each_row_with_its_record,
    };
    pub use super::connections::connection_settings_reach_every_session;
    pub use super::console::console_sessions_end_on_time_and_on_revocation;
    pub use super::events::{
        events_fan_out_per_stream_and_type, events_poll_acks_and_errors, events_push_leases_and_outcomes,
        events_stream_configuration,
    };
    pub use super::keyset::{
        keyset_pages_are_in_the_default_order_only, keyset_pages_seek_the_creation_index,
        keyset_walk_under_concurrent_writes,
    };
    pub use super::migrations::migration_checksums_are_recorded_and_checked;
    pub use super::notify::notifications_are_claimed_once_across_nodes;
    pub use super::oauth::{oauth_clients_and_token_subjects, oauth_signing_key_is_added_to_an_older_install};
    pub use super::outbox::{
        outbox_claims_exclude_other_owners, outbox_claims_put_deprovisioning_first,
        outbox_memberships_reach_users_only_where_the_mapping_reads_them, outbox_rows_commit_with_their_change,
        outbox_slots_are_shared_with_a_waiting_node, outbox_slots_bound_requests_across_owners,
        sync_outcomes_need_one_connection,
    };
    pub use super::reconcile_schedule::reconcile_schedule_claims_once;
    pub use super::rotation::{
        leak_reports_and_pending_auth, leases_exclude_other_owners, lookups_by_id_use_the_primary_key,
        rotation_cancel_and_emergency, rotation_steps_persist_and_promote, trust_material_versions_and_replay,
        trust_scopes_change_applies_to_live_keys, user_groups_lookup_uses_the_member_index, wrapped_links_reveal_once,
    };
    pub use super::ssf::ssf_verification_slots_hold_across_nodes;
    use super::*;

    /// Key lifecycle as authentication sees it, through a warm auth cache.
    pub async fn lifecycle(kind: Kind) {
        let e = env(kind).await;
        let s = &e.store;
        let a = actor();
        let r = tref("acme", "entra");
        s.create_directory(&a, "acme").await.unwrap();
        s.create_directory(&a, "other").await.unwrap();
        let (trust, kv1, key1) = s.create_trust(&a, inbound("acme", "entra")).await.unwrap();
        let key1 = key1.expect("an inbound trust returns its generated key");
        assert_eq!((kv1.version, kv1.state), (1, KeyState::Current));
        assert_eq!(token::parse(key1.expose()), Ok(TokenKind::Provisioning));

        // The key works for its directory only.
        let p = e.auth_key("acme", &key1).await.unwrap();
        assert_eq!((p.directory.as_str(), p.trust.as_str(), p.version), ("acme", "entra", 1));
        assert_eq!(p.trust_id, trust.id);
        assert_eq!(e.auth_key("other", &key1).await.unwrap_err(), AuthFailure::WrongDirectory);
        assert_eq!(e.auth_key("no-such-dir", &key1).await.unwrap_err(), AuthFailure::WrongDirectory);
        // The successful use is written down with its audit batch; then at most once a
        // second (every use is in the audit log regardless).
        assert_eq!(s.list_keys(&r).await.unwrap()[0].last_used_at, Some(T0));
        let audited = count_action(s, "key.authenticate").await;
        e.clock.advance(Duration::from_millis(600));
        e.auth_key("acme", &key1).await.unwrap();
        assert_eq!(s.list_keys(&r).await.unwrap()[0].last_used_at, Some(T0), "0.6 s later: not rewritten");
        e.clock.advance(Duration::from_millis(600));
        e.auth_key("acme", &key1).await.unwrap();
        assert_eq!(s.list_keys(&r).await.unwrap()[0].last_used_at, Some(s.now()), "1.2 s later: rewritten");
        assert_eq!(count_action(s, "key.authenticate").await, audited + 2, "every use is audited");

        // Rotation with a one-hour overlap: both versions authenticate.
        e.clock.advance(Duration::from_secs(60));
        let rotated_at = s.now();
        let (kv2, key2) = s.rotate_key(&a, &r, rotate(HOUR)).await.unwrap();
        let key2 = key2.unwrap();
        assert_eq!((kv2.version, kv2.state), (2, KeyState::Current));
        assert_ne!(key1.expose(), key2.expose());
        assert_eq!(e.auth_key("acme", &key1).await.unwrap().version, 1);
        assert_eq!(e.auth_key("acme", &key2).await.unwrap().version, 2);
        let keys = s.list_keys(&r).await.unwrap();
        assert_eq!(states(&keys), vec![(1, KeyState::Previous), (2, KeyState::Current)]);
        assert_eq!(keys[0].expires_at, Some(rotated_at.saturating_add(HOUR)));

        // The overlap ends exactly on time, although v1 is cached as "previous".
        e.clock.advance(HOUR - US);
        assert_eq!(e.auth_key("acme", &key1).await.unwrap().version, 1, "one microsecond before the end");
        e.clock.advance(US);
        assert_eq!(e.auth_key("acme", &key1).await.unwrap_err(), AuthFailure::Expired);
        assert_eq!(e.auth_key("acme", &key2).await.unwrap().version, 2);

        // The sweeper writes the expiry down, once.
        assert_eq!(states(&s.list_keys(&r).await.unwrap())[0], (1, KeyState::Previous));
        assert_eq!(s.expire_due().await.unwrap(), 1);
        assert_eq!(states(&s.list_keys(&r).await.unwrap()), vec![(1, KeyState::Expired), (2, KeyState::Current)]);
        assert_eq!(s.expire_due().await.unwrap(), 0);
        assert_eq!(e.auth_key("acme", &key1).await.unwrap_err(), AuthFailure::Expired);
        assert_eq!(count_action(s, "key.expire").await, 1);

        // Revocation takes effect at once, although v2 is warm in the cache.
        assert!(e.auth_key("acme", &key2).await.is_ok());
        let rv = s.revoke_key(&a, &r, 2).await.unwrap();
        assert_eq!(rv.state, KeyState::Revoked);
        assert_eq!(e.auth_key("acme", &key2).await.unwrap_err(), AuthFailure::Revoked);
        assert!(matches!(
            s.revoke_key(&a, &r, 2).await,
            Err(StoreError::Domain(DomainError::InvalidTransition { .. }))
        ));
        assert!(matches!(s.revoke_key(&a, &r, 99).await, Err(StoreError::NotFound(_))));

        // A new key; suspension and resumption of the trust.
        let (kv3, key3) = s.rotate_key(&a, &r, rotate(Duration::ZERO)).await.unwrap();
        let key3 = key3.unwrap();
        assert_eq!(kv3.version, 3);
        assert_eq!(e.auth_key("acme", &key3).await.unwrap().version, 3);
        let t = s.set_trust_status(&a, &r, TrustStatus::Suspended).await.unwrap();
        assert_eq!(t.status, TrustStatus::Suspended);
        assert_eq!(e.auth_key("acme", &key3).await.unwrap_err(), AuthFailure::TrustSuspended);
        s.set_trust_status(&a, &r, TrustStatus::Active).await.unwrap();
        assert_eq!(e.auth_key("acme", &key3).await.unwrap().version, 3);
        assert_eq!(e.auth_key("acme", &key2).await.unwrap_err(), AuthFailure::Revoked);
        assert_eq!(e.auth_key("acme", &key1).await.unwrap_err(), AuthFailure::Expired);

        // Malformed, unknown, missing and wrong-kind credentials.
        let k3 = key3.expose();
        let mut bad_checksum = k3.to_owned();
        let last = bad_checksum.pop().unwrap();
        bad_checksum.push(if last == 'a' { 'b' } else { 'a' });
        let bads = [
            "".to_owned(),
            "fkp_".into(),
            "Bearer x".into(),
            k3[..k3.len() - 1].into(),
            format!("{k3}x"),
            bad_checksum,
            k3.replacen("fkp_", "fkx_", 1),
        ];
        for bad in &bads {
            assert_eq!(e.auth("acme", Some(bad)).await.unwrap_err(), AuthFailure::Malformed, "{bad:?}");
        }
        let unknown = token::generate(TokenKind::Provisioning).unwrap();
        assert_eq!(e.auth_key("acme", &unknown).await.unwrap_err(), AuthFailure::Unknown);
        assert_eq!(e.auth("acme", None).await.unwrap_err(), AuthFailure::Missing);
        let (_, admin) = s.create_admin_token(&a, "ops", Role::Operator, None).await.unwrap();
        assert_eq!(e.auth_key("acme", &admin).await.unwrap_err(), AuthFailure::WrongKind);

        // Every attempt, allowed or denied, is in the log — a record each, or, past the first
        // 10 denials of a source's minute, counted in a summary — and the log verifies.
        let n = e.auths.load(Ordering::SeqCst);
        s.flush_auth_failures(true).await.unwrap();
        let f = AuditFilter { action: Some("auth.failure_summary".into()), limit: 1000, ..Default::default() };
        let summarized: usize = s
            .audit_records(&f)
            .await
            .unwrap()
            .iter()
            .map(|r| serde_json::from_str::<serde_json::Value>(&r.details).unwrap()["summarized"].as_u64().unwrap())
            .sum::<u64>() as usize;
        assert!(summarized > 0, "this test makes more than 10 denials in a minute");
        assert_eq!(count_action(s, "key.authenticate").await + summarized, n);
        let denied = audit::query(
            s.raw_for_tests(),
            &AuditFilter { action: Some("key.authenticate".into()), limit: 10_000, ..Default::default() },
        )
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.details.contains("wrong_directory"))
        .count();
        assert_eq!(denied, 2);
        let rep = verify(s).await.unwrap();
        assert_eq!(rep.records, head_seq(s).await);
    }

    /// A directory's password policy: `fingerprint` by default, changed and audited with
    /// its before and after, kept across a restart, and refused for an unknown directory.
    pub async fn directory_password_policy(kind: Kind) {
        use fedkey_core::PasswordPolicy;
        let e = env(kind).await;
        let (s, a) = (&e.store, actor());
        let d = s.create_directory(&a, "acme").await.unwrap();
        assert_eq!(d.password_policy, PasswordPolicy::Fingerprint);
        assert_eq!(s.directory("acme").await.unwrap().password_policy, PasswordPolicy::Fingerprint);
        let d = s.set_password_policy(&a, "acme", PasswordPolicy::Refuse).await.unwrap();
        assert_eq!(d.password_policy, PasswordPolicy::Refuse);
        // Seen at once through this store's cache, and by a store opened afresh.
        assert_eq!(s.directory("acme").await.unwrap().password_policy, PasswordPolicy::Refuse);
        let fresh = open_store(&e.t.url, e.keyring.clone(), &e.clock, Duration::ZERO).await;
        assert_eq!(fresh.directory("acme").await.unwrap().password_policy, PasswordPolicy::Refuse);
        assert_eq!(fresh.list_directories().await.unwrap()[0].password_policy, PasswordPolicy::Refuse);
        let f = AuditFilter { action: Some("directory.settings".into()), limit: 10, ..Default::default() };
        let recs = s.audit_records(&f).await.unwrap();
        assert_eq!(recs.len(), 1);
        assert!(recs[0].details.contains(r#""before":{"password_policy":"fingerprint"}"#), "{}", recs[0].details);
        assert!(recs[0].details.contains(r#""after":{"password_policy":"refuse"}"#), "{}", recs[0].details);
        assert!(matches!(
            s.set_password_policy(&a, "nosuch", PasswordPolicy::Ignore).await,
            Err(StoreError::NotFound(_))
        ));
        assert_eq!(count_action(s, "directory.settings").await, 1, "nothing written for the refusal");
    }

    /// The cache really caches, and every change through the store invalidates it.
    pub async fn auth_cache_invalidation(kind: Kind) {
        let e = env(kind).await;
        let s = &e.store;
        let a = actor();
        s.create_directory(&a, "acme").await.unwrap();
        let (_, _, key) = s.create_trust(&a, inbound("acme", "entra")).await.unwrap();
        let (_, _, other) = s.create_trust(&a, inbound("acme", "okta")).await.unwrap();
        let (key, other) = (key.unwrap(), other.unwrap());
        assert!(e.auth_key("acme", &key).await.is_ok());
        assert!(e.auth_key("acme", &other).await.is_ok());

        // Revoke behind the store's back: the warm entry still answers (within its TTL)...
        e.exec("UPDATE key_versions SET state = 'revoked'").await;
        assert!(e.auth_key("acme", &key).await.is_ok(), "the auth cache should serve warm entries");
        // ...while a store without a cache sees the database.
        let uncached = open_store(&e.t.url, e.keyring.clone(), &e.clock, Duration::ZERO).await;
        let meta = RequestMeta::default();
        assert_eq!(
            uncached.authenticate_provisioning("acme", Some(key.expose()), &meta).await.unwrap().unwrap_err(),
            AuthFailure::Revoked
        );
        e.exec("UPDATE key_versions SET state = 'current'").await;

        // Any key change through the store drops every cached entry (here: another trust's).
        assert!(e.auth_key("acme", &key).await.is_ok());
        let entra = "trust_id IN (SELECT id FROM trusts WHERE name = 'entra')";
        e.exec(&format!("UPDATE key_versions SET state = 'revoked' WHERE {entra}")).await;
        s.rotate_key(&a, &tref("acme", "okta"), rotate(HOUR)).await.unwrap();
        assert_eq!(e.auth_key("acme", &key).await.unwrap_err(), AuthFailure::Revoked);
        e.exec(&format!("UPDATE key_versions SET state = 'current' WHERE {entra}")).await;
        // Suspension through the store is seen at once (and re-reads the restored row).
        s.set_trust_status(&a, &tref("acme", "entra"), TrustStatus::Suspended).await.unwrap();
        assert_eq!(e.auth_key("acme", &key).await.unwrap_err(), AuthFailure::TrustSuspended);
        s.set_trust_status(&a, &tref("acme", "entra"), TrustStatus::Active).await.unwrap();
        assert!(e.auth_key("acme", &key).await.is_ok());
        assert!(e.auth_key("acme", &other).await.is_ok(), "v1 of the rotated trust is in its overlap");
        // Deleting the trust makes its key unknown at once.
        s.delete_trust(&a, &tref("acme", "entra")).await.unwrap();
        assert_eq!(e.auth_key("acme", &key).await.unwrap_err(), AuthFailure::Unknown);

        // Admin tokens: cached, and revocation is seen at once.
        let (_, tok) = s.create_admin_token(&a, "ops", Role::Operator, Some(HOUR)).await.unwrap();
        let p = s.authenticate_admin(Some(tok.expose()), &meta).await.unwrap().unwrap();
        assert_eq!((p.name.as_str(), p.role), ("ops", Role::Operator));
        s.revoke_admin_token(&a, "ops").await.unwrap();
        assert_eq!(s.authenticate_admin(Some(tok.expose()), &meta).await.unwrap().unwrap_err(), AuthFailure::Revoked);
        let (_, tok2) = s.create_admin_token(&a, "ops2", Role::Auditor, Some(HOUR)).await.unwrap();
        assert!(s.authenticate_admin(Some(tok2.expose()), &meta).await.unwrap().is_ok());
        e.clock.advance(HOUR);
        assert_eq!(s.authenticate_admin(Some(tok2.expose()), &meta).await.unwrap().unwrap_err(), AuthFailure::Expired);
        assert_eq!(s.authenticate_admin(Some(key.expose()), &meta).await.unwrap().unwrap_err(), AuthFailure::WrongKind);
        assert!(verify(s).await.is_ok());
    }

    pub async fn audit_chain_verifies_and_append_only(kind: Kind) {
        let e = populated(kind).await;
        let s = &e.store;
        // The records are what happened, in order.
        let all = s.audit_records(&AuditFilter { limit: 10_000, ..Default::default() }).await.unwrap();
        assert_eq!(all.len() as i64, head_seq(s).await);
        assert!(all.iter().enumerate().all(|(i, r)| r.seq == i as i64 + 1));
        assert_eq!(all[0].action, "directory.create");
        assert_eq!(all.last().unwrap().action, "key.revoke");
        assert!(all.iter().any(|r| r.action == "key.read"));
        // The database refuses to change audit rows.
        let upd = sqlx::query("UPDATE audit_log SET actor = 'x' WHERE seq = 1").execute(s.raw_for_tests().pool()).await;
        assert!(upd.unwrap_err().to_string().contains("append-only"));
        let del = sqlx::query("DELETE FROM audit_log WHERE seq = 1").execute(s.raw_for_tests().pool()).await;
        assert!(del.unwrap_err().to_string().contains("append-only"));
        assert!(verify(s).await.is_ok());
        // A checkpoint of the current head verifies too, and is counted.
        let mut last = 0;
        let size = audit::checkpoint_if_new(s.raw_for_tests(), &s.install, &e.clock, &mut last, 1).await.unwrap();
        assert_eq!(size, Some(head_seq(s).await));
        assert_eq!(
            audit::checkpoint_if_new(s.raw_for_tests(), &s.install, &e.clock, &mut last, 1).await.unwrap(),
            None
        );
        // Checkpoints are append-only as well.
        let upd = sqlx::query("UPDATE audit_checkpoints SET ts = 0").execute(s.raw_for_tests().pool()).await;
        assert!(upd.unwrap_err().to_string().contains("append-only"));
        let del = sqlx::query("DELETE FROM audit_checkpoints").execute(s.raw_for_tests().pool()).await;
        assert!(del.unwrap_err().to_string().contains("append-only"));
        let rep = verify(s).await.unwrap();
        assert!(rep.checkpoints >= 2, "{rep:?}");
    }

    /// Runs `statements` directly against a populated store's database (triggers
    /// dropped) and returns what verification says.
    async fn tampered(kind: Kind, statements: &[&str]) -> VerifyError {
        let e = populated(kind).await;
        drop_append_only_triggers(&e).await;
        for sql in statements {
            e.exec(sql).await;
        }
        verify(&e.store).await.unwrap_err()
    }

    pub async fn tamper_update_row(kind: Kind) {
        let err = tampered(kind, &["UPDATE audit_log SET actor = 'token:mallory' WHERE seq = 7"]).await;
        assert_eq!(err.seq, 7, "{err}");
        assert!(err.reason.contains("altered"), "{err}");
    }

    pub async fn tamper_delete_middle_row(kind: Kind) {
        let err = tampered(kind, &["DELETE FROM audit_log WHERE seq = 12"]).await;
        assert_eq!(err.seq, 12, "{err}");
        assert!(err.reason.contains("missing"), "{err}");
    }

    pub async fn tamper_reorder_rows(kind: Kind) {
        // Rows 5 and 6 trade places: each keeps its contents and hashes, seq swapped.
        let err = tampered(
            kind,
            &[
                "UPDATE audit_log SET seq = CASE seq WHEN 5 THEN -6 ELSE -5 END WHERE seq IN (5, 6)",
                "UPDATE audit_log SET seq = -seq WHERE seq < 0",
            ],
        )
        .await;
        assert_eq!(err.seq, 5, "{err}");
    }

    async fn forged_checkpoint_case(kind: Kind, sign: impl FnOnce(&Store, i64, [u8; 32]) -> Vec<u8>) {
        let e = populated(kind).await;
        let s = &e.store;
        let (size, hash) = s.audit_head().await.unwrap();
        let ts = s.now();
        let signature = sign(s, size, hash);
        sqlx::query("INSERT INTO audit_checkpoints (size, head_hash, ts, signature) VALUES ($1, $2, $3, $4)")
            .bind(size)
            .bind(hash.to_vec())
            .bind(ts.0)
            .bind(signature)
            .execute(s.raw_for_tests().pool())
            .await
            .unwrap();
        let err = verify(s).await.unwrap_err();
        assert_eq!(err.seq, size, "{err}");
        assert!(err.reason.contains("signature"), "{err}");
    }

    pub async fn tamper_forged_checkpoint_random_signature(kind: Kind) {
        forged_checkpoint_case(kind, |_, _, _| fedkey_crypto::random::bytes::<64>().unwrap().to_vec()).await;
    }

    pub async fn tamper_forged_checkpoint_other_key(kind: Kind) {
        forged_checkpoint_case(kind, |s, size, hash| {
            let (other, _) = SigningKey::generate().unwrap();
            let cp = Checkpoint::sign(&s.install.id, size, hash, s.now(), &other);
            // Sanity: the same checkpoint under the install's key would verify.
            assert!(
                Checkpoint::sign(&s.install.id, size, hash, s.now(), &s.install.signing)
                    .verify(&s.install.id, &s.install.public_key)
            );
            cp.signature
        })
        .await;
    }

    pub async fn tamper_truncate_tail_covered_by_checkpoint(kind: Kind) {
        let e = populated(kind).await;
        let s = &e.store;
        let mut last = 0;
        let n = audit::checkpoint_if_new(s.raw_for_tests(), &s.install, &e.clock, &mut last, 1)
            .await
            .unwrap()
            .expect("a new checkpoint");
        assert_eq!(n, head_seq(s).await);
        drop_append_only_triggers(&e).await;
        e.exec(&format!("DELETE FROM audit_log WHERE seq > {}", n - 2)).await;
        let err = verify(s).await.unwrap_err();
        assert_eq!(err.seq, n - 1, "{err}");
        assert!(err.reason.contains("covered by a signed checkpoint"), "{err}");
        // Head "fixed" to the new last record: the signed checkpoint still knows.
        e.exec(&format!(
            "UPDATE audit_head SET seq = {0}, hash = (SELECT hash FROM audit_log WHERE seq = {0}) WHERE id = 1",
            n - 2
        ))
        .await;
        let err = verify(s).await.unwrap_err();
        assert_eq!(err.seq, n - 1, "{err}");
        assert!(err.reason.contains("covered by a signed checkpoint"), "{err}");
        // Control: without that checkpoint the truncated log with a fixed head is
        // self-consistent, which is exactly the window that checkpoints close...
        e.exec(&format!("DELETE FROM audit_checkpoints WHERE size > {}", n - 2)).await;
        assert_eq!(verify(s).await.unwrap().records, n - 2);
        // ...while an unfixed head alone gives a truncation away.
        e.exec(&format!("UPDATE audit_head SET seq = {n} WHERE id = 1")).await;
        let err = verify(s).await.unwrap_err();
        assert!(err.reason.contains("chain head"), "{err}");
    }

    /// No plaintext key, in any common encoding, in the database files or a dump.
    pub async fn secrets_at_rest(kind: Kind) {
        let e = env(kind).await;
        let s = &e.store;
        let a = actor();
        let marker = format!("marker-{}", uuid::Uuid::new_v4().simple());
        let app1 = format!("app-secret-{}", uuid::Uuid::new_v4().simple());
        let app2 = format!("app-secret-{}", uuid::Uuid::new_v4().simple());
        s.create_directory(&a, &marker).await.unwrap();
        let (_, _, in1) = s.create_trust(&a, inbound(&marker, "entra")).await.unwrap();
        s.create_trust(&a, outbound(&marker, "app", &app1)).await.unwrap();
        let in1 = in1.unwrap();
        assert!(e.auth_key(&marker, &in1).await.is_ok());
        let (_, in2) = s.rotate_key(&a, &tref(&marker, "entra"), rotate(HOUR)).await.unwrap();
        let in2 = in2.unwrap();
        let req = RotateKey { overlap: HOUR, outbound_key: Some(Secret::new(app2.clone())) };
        s.rotate_key(&a, &tref(&marker, "app"), req).await.unwrap();
        assert!(e.auth_key(&marker, &in2).await.is_ok());
        // A presented-but-unknown token and an admin token must not be stored either.
        let unknown = token::generate(TokenKind::Provisioning).unwrap();
        assert_eq!(e.auth_key(&marker, &unknown).await.unwrap_err(), AuthFailure::Unknown);
        let (_, admin) = s.create_admin_token(&a, "ops", Role::Admin, None).await.unwrap();

        // Stored, just encrypted: the current outbound key comes back in clear.
        let (v, got) = s.outbound_key(&a, &tref(&marker, "app")).await.unwrap();
        assert_eq!((v, got.expose()), (2, app2.as_str()));

        let secrets = [in1.expose(), in2.expose(), app1.as_str(), app2.as_str(), unknown.expose(), admin.expose()];
        let haystacks: Vec<(String, Vec<u8>)> = match kind {
            Kind::Sqlite => {
                let path = e.t.sqlite_path.clone().unwrap();
                let mut files = vec![(path.display().to_string(), std::fs::read(&path).unwrap())];
                let wal = PathBuf::from(format!("{}-wal", path.display()));
                if let Ok(b) = std::fs::read(&wal) {
                    files.push((wal.display().to_string(), b));
                }
                files
            }
            Kind::Postgres => vec![("pg_dump".into(), pg_dump(&e.t.url))],
        };
        // Positive control: the scan sees real data (the directory name is stored in clear).
        assert!(
            haystacks.iter().any(|(_, h)| contains(h, marker.as_bytes())),
            "the scanned bytes do not even contain the directory name"
        );
        for secret in secrets {
            for needle in encodings(secret.as_bytes()) {
                for (name, hay) in &haystacks {
                    assert!(
                        !contains(hay, &needle),
                        "a secret (as {:?}) is stored in clear in {name}",
                        String::from_utf8_lossy(&needle)
                    );
                }
            }
        }
    }

    /// With the audit log unwritable, nothing happens and nothing authenticates.
    pub async fn fail_closed_without_audit(kind: Kind) {
        let e = env(kind).await;
        let s = &e.store;
        let a = actor();
        let r = tref("acme", "entra");
        s.create_directory(&a, "acme").await.unwrap();
        let (_, _, key) = s.create_trust(&a, inbound("acme", "entra")).await.unwrap();
        s.create_trust(&a, outbound("acme", "app", "app-key")).await.unwrap();
        let key = key.unwrap();
        let (_, key2) = s.rotate_key(&a, &r, rotate(HOUR)).await.unwrap();
        let key2 = key2.unwrap();
        assert!(e.auth_key("acme", &key).await.is_ok());
        assert!(e.auth_key("acme", &key2).await.is_ok());

        let dirs = s.list_directories().await.unwrap().len();
        let trusts = s.list_trusts(None).await.unwrap().len();
        let keys = s.list_keys(&r).await.unwrap();
        let head = s.audit_head().await.unwrap();

        match kind {
            Kind::Sqlite => {
                e.exec("CREATE TRIGGER block BEFORE INSERT ON audit_log BEGIN SELECT RAISE(ABORT, 'blocked'); END;")
                    .await
            }
            Kind::Postgres => {
                e.exec("CREATE FUNCTION block_audit() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'blocked'; END; $$").await;
                e.exec("CREATE TRIGGER block BEFORE INSERT ON audit_log FOR EACH ROW EXECUTE FUNCTION block_audit()")
                    .await;
            }
        }
        e.clock.advance(Duration::from_secs(1));

        fn unavailable<T: std::fmt::Debug>(what: &str, r: Result<T, StoreError>) {
            match r {
                Err(StoreError::AuditUnavailable(_)) => {}
                other => panic!("{what}: expected AuditUnavailable, got {other:?}"),
            }
        }
        unavailable("create_directory", s.create_directory(&a, "blocked").await);
        unavailable("create_trust", s.create_trust(&a, inbound("acme", "blocked")).await);
        unavailable("rotate_key", s.rotate_key(&a, &r, rotate(HOUR)).await);
        unavailable("revoke_key", s.revoke_key(&a, &r, 2).await);
        unavailable("set_trust_status", s.set_trust_status(&a, &r, TrustStatus::Suspended).await);
        unavailable("delete_trust", s.delete_trust(&a, &tref("acme", "app")).await);
        unavailable("create_admin_token", s.create_admin_token(&a, "ops", Role::Admin, None).await);
        // No key is released unaudited, and no authentication succeeds unaudited.
        unavailable("outbound_key", s.outbound_key(&a, &tref("acme", "app")).await);
        let meta = RequestMeta::default();
        unavailable("authenticate (valid key)", s.authenticate_provisioning("acme", Some(key2.expose()), &meta).await);
        unavailable("authenticate (wrong dir)", s.authenticate_provisioning("nope", Some(key2.expose()), &meta).await);
        unavailable("authenticate (garbage)", s.authenticate_provisioning("acme", Some("garbage"), &meta).await);

        // Nothing changed.
        assert_eq!(s.list_directories().await.unwrap().len(), dirs);
        assert_eq!(s.list_trusts(None).await.unwrap().len(), trusts);
        let after = s.list_keys(&r).await.unwrap();
        assert_eq!(states(&after), states(&keys));
        assert_eq!(
            after.iter().map(|k| k.last_used_at).collect::<Vec<_>>(),
            keys.iter().map(|k| k.last_used_at).collect::<Vec<_>>()
        );
        assert_eq!(s.trust(&r).await.unwrap().status, TrustStatus::Active);
        assert_eq!(s.audit_head().await.unwrap(), head);
        assert!(s.list_admin_tokens().await.unwrap().is_empty());

        // Unblocked, everything works again and the chain is whole.
        match kind {
            Kind::Sqlite => e.exec("DROP TRIGGER block").await,
            Kind::Postgres => e.exec("DROP TRIGGER block ON audit_log").await,
        }
        s.create_directory(&a, "unblocked").await.unwrap();
        let (_, key3) = s.rotate_key(&a, &r, rotate(HOUR)).await.unwrap();
        s.revoke_key(&a, &r, 2).await.unwrap();
        assert_eq!(e.auth_key("acme", &key3.unwrap()).await.unwrap().version, 3);
        assert_eq!(e.auth_key("acme", &key2).await.unwrap_err(), AuthFailure::Revoked);
        assert_eq!(s.outbound_key(&a, &tref("acme", "app")).await.unwrap().1.expose(), "app-key");
        let rep = verify(s).await.unwrap();
        assert_eq!(rep.records, head.0 + 6);
    }

    pub async fn master_key_rotation(kind: Kind) {
        let t = TestDb::new(kind).await;
        let kdir = tempfile::tempdir().unwrap();
        let kpath = kdir.path().join("master.key");
        let file = Arc::new(KeyringFile::create(&kpath).unwrap());
        let old_text = std::fs::read_to_string(&kpath).unwrap();
        let old_id = file.keyring().unwrap().active().id().to_owned();
        let clock = ManualClock::new(T0);
        let s = open_store(&t.url, file.clone(), &clock, Duration::from_secs(60)).await;
        let a = actor();
        s.create_directory(&a, "acme").await.unwrap();
        s.create_trust(&a, outbound("acme", "app", "app-key-1")).await.unwrap();
        let (_, _, inkey) = s.create_trust(&a, inbound("acme", "entra")).await.unwrap();
        let req = RotateKey { overlap: HOUR, outbound_key: Some(Secret::new("app-key-2".into())) };
        s.rotate_key(&a, &tref("acme", "app"), req).await.unwrap();
        let install_id = s.install.id.clone();
        let public = s.install.public_key;

        // New active key; the old one stays to open what is not rewrapped yet.
        let mut ring = Keyring::parse(&std::fs::read_to_string(&kpath).unwrap()).unwrap();
        ring.push_active(MasterKey::generate().unwrap());
        let new_id = ring.active().id().to_owned();
        file.store(&ring).unwrap();
        assert_eq!(s.keyring().unwrap().ids(), vec![new_id.as_str(), old_id.as_str()]);

        let total = s.envelope_count().await.unwrap();
        assert_eq!(
            total, 5,
            "three install secrets (checkpoint key, salt, OAuth token key) + two outbound key versions"
        );
        let mut ticks = 0;
        let rep = s.rewrap_all(&a, &ring, |_| ticks += 1).await.unwrap();
        assert_eq!((rep.total, rep.rewrapped, rep.already_current), (total, total, 0));
        assert_eq!(ticks, total);
        let again = s.rewrap_all(&a, &ring, |_| {}).await.unwrap();
        assert_eq!((again.total, again.rewrapped, again.already_current), (total, 0, total));
        // Every envelope now names the new key.
        let envs = sqlx::query("SELECT envelope FROM key_versions WHERE envelope IS NOT NULL")
            .fetch_all(s.raw_for_tests().pool())
            .await
            .unwrap();
        let inst = sqlx::query(
            "SELECT value AS envelope FROM install WHERE name IN ('signing_key', 'hmac_salt', 'oauth_signing_key')",
        )
        .fetch_all(s.raw_for_tests().pool())
        .await
        .unwrap();
        assert_eq!(envs.len() + inst.len(), 5);
        for row in envs.iter().chain(&inst) {
            let env: Vec<u8> = row.try_get("envelope").unwrap();
            assert_eq!(fedkey_crypto::envelope::kek_id(&env).unwrap(), new_id);
        }

        // Drop the old key: everything still opens.
        ring.retain_active_only();
        file.store(&ring).unwrap();
        assert_eq!(s.keyring().unwrap().ids(), vec![new_id.as_str()]);
        assert_eq!(s.outbound_key(&a, &tref("acme", "app")).await.unwrap().1.expose(), "app-key-2");

        // Reopen with only the new key (a fresh process): same install, same data.
        let only_new = KeyringFile::open(&kpath).unwrap();
        let inst =
            Install::load(s.raw_for_tests(), &only_new.keyring().unwrap()).await.unwrap().expect("install exists");
        assert_eq!((inst.id.as_str(), inst.public_key), (install_id.as_str(), public));
        assert!(inst.oauth_signing.is_some(), "the OAuth token key opens under the new master key");
        let s2 = open_store(&t.url, Arc::new(only_new), &clock, Duration::from_secs(60)).await;
        assert_eq!(s2.install.id, install_id);
        assert_eq!(s2.outbound_key(&a, &tref("acme", "app")).await.unwrap().1.expose(), "app-key-2");
        let meta = RequestMeta::default();
        assert!(s2.authenticate_provisioning("acme", Some(inkey.unwrap().expose()), &meta).await.unwrap().is_ok());
        assert!(verify(&s2).await.is_ok());
        assert_eq!(count_action(&s2, "master_key.rotate").await, 2);
        // The retired key alone no longer opens anything.
        let old_only = Keyring::parse(&old_text).unwrap();
        assert!(matches!(Install::load(s2.raw_for_tests(), &old_only).await, Err(StoreError::Crypto(_))));
    }

    /// Many concurrent authentications (group commit) interleaved with domain changes
    /// (their own transactions) still form exactly one chain.
    pub async fn concurrent_authentications_one_chain(kind: Kind) {
        let e = env(kind).await;
        let s = &e.store;
        let a = actor();
        s.create_directory(&a, "acme").await.unwrap();
        let (_, _, key) = s.create_trust(&a, inbound("acme", "entra")).await.unwrap();
        let key = Arc::new(key.unwrap());
        let before = head_seq(s).await;
        let auths_before = count_action(s, "key.authenticate").await;

        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..200 {
            let (s, key) = (s.clone(), key.clone());
            tasks.spawn(async move {
                let meta = RequestMeta { source: None, request_id: Some(format!("req-{i}")) };
                let p = s.authenticate_provisioning("acme", Some(key.expose()), &meta).await.expect("audited");
                assert_eq!(p.expect("authenticates").version, 1);
            });
        }
        for i in 0..10 {
            let s = s.clone();
            tasks.spawn(async move {
                s.create_directory(&actor(), &format!("dir-{i}")).await.unwrap();
            });
        }
        while let Some(r) = tasks.join_next().await {
            r.unwrap();
        }
        assert_eq!(head_seq(s).await, before + 210);
        assert_eq!(count_action(s, "key.authenticate").await, auths_before + 200);
        let rep = verify(s).await.unwrap();
        assert_eq!(rep.records, before + 210);
        assert!(rep.checkpoints >= 1, "{rep:?}");
        // Each request is recorded exactly once.
        let recs = audit::query(
            s.raw_for_tests(),
            &AuditFilter { action: Some("key.authenticate".into()), limit: 10_000, ..Default::default() },
        )
        .await
        .unwrap();
        let mut ids: Vec<_> = recs.iter().filter_map(|r| r.request_id.clone()).collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), 200);
        assert_eq!(s.list_directories().await.unwrap().len(), 11);
    }

    /// Group-commit batches interleaved with appends made inside other transactions and by
    /// another store on the same database form one chain: each append follows the head the
    /// others left, in order, and the key's `last_used_at` moves with the batch.
    pub async fn audit_writer_follows_other_appenders(kind: Kind) {
        let e = env(kind).await;
        let s = &e.store;
        let a = actor();
        s.create_directory(&a, "acme").await.unwrap();
        let (_, _, key) = s.create_trust(&a, inbound("acme", "entra")).await.unwrap();
        let key = key.unwrap();
        let other = open_store(&e.t.url, e.keyring.clone(), &e.clock, Duration::from_secs(60)).await;
        let before = head_seq(s).await;
        for i in 0..6 {
            let meta = RequestMeta { source: None, request_id: Some(format!("req-{i}")) };
            s.authenticate_provisioning("acme", Some(key.expose()), &meta).await.unwrap().unwrap();
            match i % 3 {
                0 => s.create_directory(&a, &format!("in-tx-{i}")).await.map(|_| ()).unwrap(),
                1 => other.record(&a, "test.other.store", Outcome::Success, serde_json::json!({})).await.unwrap(),
                _ => {}
            }
        }
        assert_eq!(head_seq(s).await, before + 10);
        let rep = verify(s).await.unwrap();
        assert_eq!(rep.records, before + 10);
        let auths = audit::query(
            s.raw_for_tests(),
            &AuditFilter {
                action: Some("key.authenticate".into()),
                after_seq: Some(before),
                limit: 100,
                ..Default::default()
            },
        )
        .await
        .unwrap();
        let ids: Vec<_> = auths.iter().filter_map(|r| r.request_id.clone()).collect();
        assert_eq!(ids, (0..6).map(|i| format!("req-{i}")).collect::<Vec<_>>());
        let used = s.list_keys(&tref("acme", "entra")).await.unwrap();
        assert_eq!(used[0].last_used_at, Some(s.now()));
    }

    /// Concurrent writers (SQLite: one group commit): the ones that fail (a uniqueness
    /// conflict, a transaction dropped unfinished) leave no trace, the others all land,
    /// and the audit chain holds exactly the successful writes.
    pub async fn group_commit_keeps_each_writers_outcome(kind: Kind) {
        let e = env(kind).await;
        let s = e.store.clone();
        let a = actor();
        let dir = s.create_directory(&a, "acme").await.unwrap();
        s.scim_create(&a, &dir, user_write(&json!({"userName": "taken"}))).await.unwrap();
        let before = count_action(&s, "scim.create").await;
        let counts = s.raw_for_tests().group_commit_counts();
        let mut tasks = Vec::new();
        for i in 0..40 {
            let (s, dir, a) = (s.clone(), dir.clone(), a.clone());
            tasks.push(tokio::spawn(async move {
                match i % 4 {
                    // A conflict: refused, nothing written.
                    0 => {
                        let r = s.scim_create(&a, &dir, user_write(&json!({"userName": "TAKEN"}))).await;
                        assert!(matches!(r, Err(StoreError::Conflict(_))), "{r:?}");
                    }
                    // A transaction dropped after writing: undone.
                    1 => {
                        let mut tx = s.raw_for_tests().begin().await.unwrap();
                        sqlx::query("INSERT INTO install (name, value) VALUES ($1, $2)")
                            .bind(format!("dropped-{i}"))
                            .bind(vec![1u8])
                            .execute(&mut *tx)
                            .await
                            .unwrap();
                        drop(tx);
                    }
                    _ => {
                        s.scim_create(&a, &dir, user_write(&json!({"userName": format!("ok{i}")}))).await.unwrap();
                    }
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        let dropped: i64 = sqlx::query("SELECT COUNT(*) AS n FROM install WHERE name LIKE 'dropped-%'")
            .fetch_one(s.raw_for_tests().pool())
            .await
            .unwrap()
            .try_get("n")
            .unwrap();
        assert_eq!(dropped, 0, "dropped transactions are undone");
        let (_, all) = s.scim_list(&dir.id, "User", &ListQuery { limit: 100, ..Default::default() }).await.unwrap();
        let mut names: Vec<String> =
            all.iter().filter_map(|u| u.body["userName"].as_str().map(str::to_owned)).collect();
        names.sort();
        let mut want: Vec<String> = (0..40).filter(|i| i % 4 >= 2).map(|i| format!("ok{i}")).collect();
        want.push("taken".into());
        want.sort();
        assert_eq!(names, want, "every successful create landed, nothing else");
        assert_eq!(count_action(&s, "scim.create").await, before + 20, "one record per successful create");
        if let (Some((c0, w0)), Some((c1, w1))) = (counts, s.raw_for_tests().group_commit_counts()) {
            // 20 creates (and the audit writer's batches) in fewer commits than writers.
            assert!(w1 - w0 >= 20 && c1 - c0 < w1 - w0, "{} commits for {} writers", c1 - c0, w1 - w0);
        }
        verify(&s).await.unwrap();
    }

    /// Concurrent replaces of one group (as concurrent membership PATCHes do: read, change,
    /// replace at the version read, retry on 412) never lose each other's change.
    pub async fn scim_concurrent_replaces_lose_nothing(kind: Kind) {
        let e = env(kind).await;
        let s = e.store.clone();
        let a = actor();
        let dir = s.create_directory(&a, "acme").await.unwrap();
        let mut users = Vec::new();
        for i in 0..12 {
            users.push(s.scim_create(&a, &dir, user_write(&json!({"userName": format!("u{i}")}))).await.unwrap().id);
        }
        let g = s.scim_create(&a, &dir, group_write("Team", &[], None)).await.unwrap();
        let mut tasks = Vec::new();
        for u in users.clone() {
            let (s, dir, gid, a) = (s.clone(), dir.clone(), g.id.clone(), a.clone());
            tasks.push(tokio::spawn(async move {
                for attempt in 1..=50 {
                    let cur = s.scim_get(&dir.id, "Group", &gid).await.unwrap();
                    let mut members: Vec<String> = cur.members.iter().map(|m| m.value.clone()).collect();
                    members.push(u.clone());
                    match s.scim_replace(&a, &dir, &gid, Some(cur.version), group_write("Team", &members, None)).await {
                        Ok(_) => return attempt,
                        Err(StoreError::PreconditionFailed(_)) => continue,
                        Err(e) => panic!("{e}"),
                    }
                }
                panic!("no turn in 50 attempts");
            }));
        }
        for t in tasks {
            // A 412 answers only once the version it found is visible (SQLite: committed), so
            // each failed attempt lost to another task's success, and no task fails more
            // often than there are other tasks.
            let attempts = t.await.unwrap();
            assert!(attempts <= users.len(), "{attempts} attempts for {} writers", users.len());
        }
        let g = s.scim_get(&dir.id, "Group", &g.id).await.unwrap();
        let mut got: Vec<String> = g.members.iter().map(|m| m.value.clone()).collect();
        got.sort();
        users.sort();
        assert_eq!(got, users, "every concurrent replace kept");
        assert_eq!(g.version, 1 + users.len() as i64);
    }

    /// Verifying a live log: records appended while the verifier reads are not tampering.
    /// SCIM resources: uniqueness per directory and type, members referencing existing
    /// resources, `groups` derived from memberships, optimistic versions, paging with a
    /// stable order, deletion cleaning memberships — each change audited.
    pub async fn scim_resources_round_trip(kind: Kind) {
        use fedkey_store::scim::{ListQuery, ResourceWrite, SqlFragment, SqlValue};
        let e = env(kind).await;
        let s = &e.store;
        let a = actor();
        let dir = s.create_directory(&a, "acme").await.unwrap();
        let other = s.create_directory(&a, "globex").await.unwrap();
        let user = |name: &str| ResourceWrite {
            resource_type: "User",
            name_key: name.to_lowercase(),
            external_id: Some(format!("ext-{name}")),
            body: serde_json::json!({"userName": name, "emails": [{"value": format!("{name}@x.test")}]}),
            members: None,
            indexed: vec![("emails.value".into(), format!("{}@x.test", name.to_lowercase()))],
            changed: vec!["userName".into(), "emails".into()],
            known: None,
        };
        let alice = s.scim_create(&a, &dir, user("Alice")).await.unwrap();
        assert_eq!(alice.version, 1);
        // Unique per directory, case-insensitively (the protocol layer lower-cases the key) …
        assert!(matches!(s.scim_create(&a, &dir, user("ALICE")).await, Err(StoreError::Conflict(_))));
        // … but another directory is another namespace.
        s.scim_create(&a, &other, user("Alice")).await.unwrap();
        let bob = s.scim_create(&a, &dir, user("Bob")).await.unwrap();
        e.clock.advance(Duration::from_secs(1));
        let group = |members: Vec<String>| ResourceWrite {
            resource_type: "Group",
            name_key: "admins".into(),
            external_id: None,
            body: serde_json::json!({"displayName": "Admins"}),
            members: Some(members),
            indexed: vec![],
            changed: vec!["displayName".into(), "members".into()],
            known: None,
        };
        let g = s.scim_create(&a, &dir, group(vec![alice.id.clone(), bob.id.clone()])).await.unwrap();
        assert_eq!(g.members.len(), 2);
        assert!(g.members.iter().all(|m| m.kind == "User" && m.display.is_some()));
        let alice_now = s.scim_get(&dir.id, "User", &alice.id).await.unwrap();
        assert_eq!(alice_now.groups.len(), 1);
        assert_eq!(alice_now.groups[0].display.as_deref(), Some("Admins"));
        // A member that does not exist (or lives in another directory) is refused, and nothing changes.
        let foreign = s.scim_list(&other.id, "User", &ListQuery { limit: 10, ..Default::default() }).await.unwrap().1;
        let err = s.scim_replace(&a, &dir, &g.id, None, group(vec![foreign[0].id.clone()])).await.unwrap_err();
        assert!(matches!(err, StoreError::Invalid(_)), "{err:?}");
        assert_eq!(s.scim_get(&dir.id, "Group", &g.id).await.unwrap().members.len(), 2);
        // Optimistic versions.
        let err = s.scim_replace(&a, &dir, &g.id, Some(7), group(vec![bob.id.clone()])).await.unwrap_err();
        assert!(matches!(err, StoreError::PreconditionFailed(_)), "{err:?}");
        let g2 = s.scim_replace(&a, &dir, &g.id, Some(1), group(vec![bob.id.clone()])).await.unwrap();
        assert_eq!((g2.version, g2.members.len()), (2, 1));
        // Lists: total, paging, stable order, a translator-style filter fragment.
        for i in 0..5 {
            s.scim_create(&a, &dir, user(&format!("user{i}"))).await.unwrap();
        }
        let page = |offset, limit| ListQuery { offset, limit, ..Default::default() };
        let (total, first) = s.scim_list(&dir.id, "User", &page(0, 3)).await.unwrap();
        let (_, second) = s.scim_list(&dir.id, "User", &page(3, 3)).await.unwrap();
        let (_, all) = s.scim_list(&dir.id, "User", &page(0, 100)).await.unwrap();
        assert_eq!(total, 7);
        assert_eq!(first.len() + second.len(), 6);
        let ids: Vec<_> = first.iter().chain(&second).map(|r| r.id.clone()).collect();
        assert_eq!(ids, all.iter().take(6).map(|r| r.id.clone()).collect::<Vec<_>>());
        let by_email = ListQuery {
            filter: Some(SqlFragment {
                sql: "EXISTS (SELECT 1 FROM scim_values v WHERE v.directory_id = r.directory_id AND v.resource_id = r.id AND v.attr = $1 AND v.value_key = $2)".into(),
                binds: vec![SqlValue::Text("emails.value".into()), SqlValue::Text("bob@x.test".into())],
                pins_id: false,
            }),
            limit: 10,
            ..Default::default()
        };
        let (n, found) = s.scim_list(&dir.id, "User", &by_email).await.unwrap();
        assert_eq!((n, found[0].id.as_str()), (1, bob.id.as_str()));
        // Deleting a user removes its memberships.
        s.scim_delete(&a, &dir, "User", &bob.id, None).await.unwrap();
        assert!(s.scim_get(&dir.id, "Group", &g.id).await.unwrap().members.is_empty());
        assert!(matches!(s.scim_get(&dir.id, "User", &bob.id).await, Err(StoreError::NotFound(_))));
        assert!(matches!(s.scim_delete(&a, &dir, "User", &bob.id, None).await, Err(StoreError::NotFound(_))));
        assert!(count_action(s, "scim.create").await >= 9);
        assert!(verify(s).await.is_ok());
    }

    /// A replace that knows what is stored at the version it expects writes only the
    /// differences (memberships, indexed values) and ends where a full rewrite would; a
    /// `Known` of another version is not trusted.
    pub async fn scim_replace_writes_only_what_changed(kind: Kind) {
        use fedkey_store::scim::{Known, ListQuery, ResourceWrite, SqlFragment, SqlValue, StoredResource};
        let e = env(kind).await;
        let s = &e.store;
        let a = actor();
        let dir = s.create_directory(&a, "acme").await.unwrap();
        let user = |name: &str, email: &str, known: Option<Known>| ResourceWrite {
            resource_type: "User",
            name_key: name.to_lowercase(),
            external_id: None,
            body: serde_json::json!({"userName": name, "emails": [{"value": email}]}),
            members: None,
            indexed: vec![("emails.value".into(), email.to_lowercase())],
            changed: vec!["emails".into()],
            known,
        };
        let group = |members: &[&String], known: Option<Known>| ResourceWrite {
            resource_type: "Group",
            name_key: "eng".into(),
            external_id: None,
            body: serde_json::json!({"displayName": "eng"}),
            members: Some(members.iter().map(|m| (*m).clone()).collect()),
            indexed: vec![],
            changed: vec!["members".into()],
            known,
        };
        let known = |r: &StoredResource, indexed: Vec<(String, String)>| Known { resource: r.clone(), indexed };
        let ids = |r: &StoredResource| {
            let mut v: Vec<String> = r.members.iter().map(|m| m.value.clone()).collect();
            v.sort();
            v
        };
        let sorted = |v: &[&String]| {
            let mut v: Vec<String> = v.iter().map(|s| (*s).clone()).collect();
            v.sort();
            v
        };
        // What a replace answers is what a read afterwards finds.
        let dir_id = dir.id.clone();
        let same_as_read = |r: &StoredResource| {
            let (r, dir_id) = (r.clone(), dir_id.clone());
            async move {
                let got = s.scim_get(&dir_id, &r.resource_type, &r.id).await.unwrap();
                let view = |x: &StoredResource| {
                    let groups: Vec<String> = x.groups.iter().map(|g| g.value.clone()).collect();
                    (x.version, x.updated_at, x.body.clone(), ids(x), groups)
                };
                assert_eq!(view(&got), view(&r), "the answer of a replace is what is stored");
            }
        };
        let u1 = s.scim_create(&a, &dir, user("u1", "u1@x.test", None)).await.unwrap();
        let u2 = s.scim_create(&a, &dir, user("u2", "u2@x.test", None)).await.unwrap();
        let u3 = s.scim_create(&a, &dir, user("u3", "u3@x.test", None)).await.unwrap();
        let g = s.scim_create(&a, &dir, group(&[&u1.id, &u2.id], None)).await.unwrap();

        // One member out, one in.
        let g2 = s.scim_replace(&a, &dir, &g.id, Some(g.version), group(&[&u2.id, &u3.id], Some(known(&g, vec![]))));
        let g2 = g2.await.unwrap();
        assert_eq!(ids(&g2), sorted(&[&u2.id, &u3.id]));
        assert!(s.scim_get(&dir.id, "User", &u1.id).await.unwrap().groups.is_empty());
        assert_eq!(s.scim_get(&dir.id, "User", &u3.id).await.unwrap().groups.len(), 1);
        // An added member that does not exist is refused, and nothing changes.
        let nope = "nope".to_owned();
        let bad = group(&[&u2.id, &u3.id, &nope], Some(known(&g2, vec![])));
        let err = s.scim_replace(&a, &dir, &g.id, Some(g2.version), bad).await.unwrap_err();
        assert!(matches!(err, StoreError::Invalid(_)), "{err:?}");
        assert_eq!(ids(&s.scim_get(&dir.id, "Group", &g.id).await.unwrap()), ids(&g2));
        // A Known of an older version claims no members: trusted, u2 and u3 would stay.
        let stale = StoredResource { version: g2.version - 1, members: vec![], ..g2.clone() };
        let stale = Known { resource: stale, indexed: vec![] };
        let g3 = s.scim_replace(&a, &dir, &g.id, Some(g2.version), group(&[&u1.id], Some(stale))).await.unwrap();
        assert_eq!(ids(&g3), vec![u1.id.clone()]);
        same_as_read(&g3).await;
        // A removal only is answered from what was written (no read back); so is an add, by a read.
        let g4 = s.scim_replace(&a, &dir, &g.id, Some(g3.version), group(&[&u1.id, &u2.id], Some(known(&g3, vec![]))));
        let g4 = g4.await.unwrap();
        same_as_read(&g4).await;
        e.clock.advance(Duration::from_secs(1));
        let g5 = s.scim_replace(&a, &dir, &g.id, Some(g4.version), group(&[&u2.id], Some(known(&g4, vec![]))));
        let g5 = g5.await.unwrap();
        assert_eq!((ids(&g5), g5.version), (vec![u2.id.clone()], g4.version + 1));
        assert!(g5.updated_at > g4.updated_at);
        same_as_read(&g5).await;

        // Indexed values: kept when unchanged, replaced when changed.
        let by_email = |email: &str| {
            ListQuery {
            filter: Some(SqlFragment {
                sql: "EXISTS (SELECT 1 FROM scim_values v WHERE v.directory_id = r.directory_id AND v.resource_id = r.id AND v.attr = $1 AND v.value_key = $2)".into(),
                binds: vec![SqlValue::Text("emails.value".into()), SqlValue::Text(email.into())],
                pins_id: false,
            }),
            limit: 10,
            ..Default::default()
        }
        };
        let dir_id = dir.id.clone();
        let found = |q: ListQuery| {
            let dir_id = dir_id.clone();
            async move { s.scim_list(&dir_id, "User", &q).await.unwrap().1 }
        };
        let same = vec![("emails.value".to_owned(), "u1@x.test".to_owned())];
        let u1b = s.scim_replace(&a, &dir, &u1.id, Some(1), user("u1", "U1@x.test", Some(known(&u1, same.clone()))));
        let u1b = u1b.await.unwrap();
        same_as_read(&u1b).await;
        // A user's answer carries its groups.
        let u2_now = s.scim_get(&dir.id, "User", &u2.id).await.unwrap();
        let u2_values = vec![("emails.value".to_owned(), "u2@x.test".to_owned())];
        let u2b = user("u2", "u2@x.test", Some(known(&u2_now, u2_values)));
        let u2b = s.scim_replace(&a, &dir, &u2.id, Some(u2_now.version), u2b).await.unwrap();
        assert_eq!(u2b.groups.len(), 1, "u2 is in the group");
        same_as_read(&u2b).await;
        assert_eq!(found(by_email("u1@x.test")).await.len(), 1);
        let u1c = user("u1", "new@x.test", Some(known(&u1b, same)));
        s.scim_replace(&a, &dir, &u1.id, Some(u1b.version), u1c).await.unwrap();
        assert!(found(by_email("u1@x.test")).await.is_empty(), "the old value is gone");
        assert_eq!(found(by_email("new@x.test")).await[0].id, u1.id);
        assert!(verify(s).await.is_ok());
    }

    /// Audit batches travel to the database as one JSON document; every byte of every
    /// field must come back exactly as hashed, whatever characters it holds.
    pub async fn awkward_text_survives_the_batch_insert(kind: Kind) {
        let e = env(kind).await;
        let s = &e.store;
        let nasty = "quote\" backslash\\ nl\n tab\t ctl\u{1} nul-free é 𝄞 \u{2028} {\"json\":[1]} '; DROP TABLE x; --";
        let actor = Actor {
            id: format!("token:{nasty}"),
            role: None,
            source: Some(nasty.into()),
            request_id: Some(nasty.into()),
            token_id: None,
        };
        let details = serde_json::json!({"text": nasty, "n": i64::MAX, "neg": -1, "f": 1.5, "nested": {"k": [nasty, null, true]}});
        // Several concurrent records so they share one batch.
        let mut set = tokio::task::JoinSet::new();
        for i in 0..20 {
            let (s, actor, details) = (s.clone(), actor.clone(), details.clone());
            set.spawn(async move {
                s.record(&actor, &format!("test.awkward.{i}"), Outcome::Success, details).await.unwrap()
            });
        }
        while set.join_next().await.is_some() {}
        let recs = s
            .audit_records(&AuditFilter { actor: Some(actor.id.clone()), limit: 100, ..Default::default() })
            .await
            .unwrap();
        assert_eq!(recs.len(), 20);
        for r in &recs {
            assert_eq!(r.source.as_deref(), Some(nasty));
            assert_eq!(r.request_id.as_deref(), Some(nasty));
            assert_eq!(serde_json::from_str::<serde_json::Value>(&r.details).unwrap(), details);
            assert_eq!(r.compute_hash(), r.hash);
        }
        assert!(verify(s).await.is_ok());
    }

    pub async fn verify_while_appending(kind: Kind) {
        let e = env(kind).await;
        let s = &e.store;
        let a = actor();
        s.create_directory(&a, "acme").await.unwrap();
        let (_, _, key) = s.create_trust(&a, inbound("acme", "entra")).await.unwrap();
        let key = Arc::new(key.unwrap());
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut appenders = tokio::task::JoinSet::new();
        for _ in 0..8 {
            let (s, key, stop) = (s.clone(), key.clone(), stop.clone());
            appenders.spawn(async move {
                let mut n = 0u64;
                while !stop.load(Ordering::SeqCst) {
                    let meta = RequestMeta::default();
                    let r = s.authenticate_provisioning("acme", Some(key.expose()), &meta).await;
                    assert!(r.expect("audited").is_ok());
                    n += 1;
                }
                n
            });
        }
        let mut failures = Vec::new();
        for _ in 0..30 {
            if let Err(err) = verify(s).await {
                failures.push(err.to_string());
            }
        }
        stop.store(true, Ordering::SeqCst);
        let mut appended = 0;
        while let Some(n) = appenders.join_next().await {
            appended += n.unwrap();
        }
        assert!(appended > 0);
        assert!(failures.is_empty(), "verification of an intact, growing log failed: {failures:?}");
        assert_eq!(verify(s).await.unwrap().records, head_seq(s).await);
    }

    /// Swapping in another public key (to pass off self-signed checkpoints) is refused.
    pub async fn tamper_replaced_public_key(kind: Kind) {
        let e = populated(kind).await;
        let (other, _) = SigningKey::generate().unwrap();
        sqlx::query("UPDATE install SET value = $1 WHERE name = 'signing_public'")
            .bind(other.public_key().to_vec())
            .execute(e.store.raw_for_tests().pool())
            .await
            .unwrap();
        let db = Db::connect(&e.t.url).await.unwrap();
        let r = Store::open(db, e.keyring.clone(), Arc::new(e.clock.clone()), test_cfg(), HOUR).await;
        match r {
            Err(StoreError::Corrupt(what)) => assert!(what.contains("signing_public"), "{what}"),
            Err(other) => panic!("expected Corrupt, got {other:?}"),
            Ok(_) => panic!("a store opened with a replaced checkpoint public key"),
        }
    }

    /// Directory lookups are cached per store: a name another node creates later is found
    /// (a miss is not remembered), and a found one keeps its id.
    pub async fn directories_are_found_by_every_store(kind: Kind) {
        let e = env(kind).await;
        let other = open_store(&e.t.url, e.keyring.clone(), &e.clock, Duration::from_secs(60)).await;
        assert!(matches!(other.directory("beta").await, Err(StoreError::NotFound(_))));
        let created = e.store.create_directory(&actor(), "beta").await.unwrap();
        for _ in 0..2 {
            let found = other.directory("beta").await.unwrap();
            assert_eq!(
                (found.id, found.name, found.created_at),
                (created.id.clone(), created.name.clone(), created.created_at)
            );
        }
        assert!(matches!(other.directory("gamma").await, Err(StoreError::NotFound(_))));
        assert!(other.directory("no such/name").await.is_err(), "names are still validated");
    }

    /// Two store instances (two nodes, or server + CLI) appending to one database.
    pub async fn two_stores_one_chain(kind: Kind) {
        let e = env(kind).await;
        let a = actor();
        e.store.create_directory(&a, "acme").await.unwrap();
        let (_, _, key) = e.store.create_trust(&a, inbound("acme", "entra")).await.unwrap();
        let key = Arc::new(key.unwrap());
        let other = Arc::new(open_store(&e.t.url, e.keyring.clone(), &e.clock, Duration::from_secs(60)).await);
        assert_eq!(other.install.id, e.store.install.id, "both nodes settle on one install");
        let before = head_seq(&e.store).await;

        let mut tasks = tokio::task::JoinSet::new();
        for (n, s) in [e.store.clone(), other.clone()].into_iter().enumerate() {
            for i in 0..100 {
                let (s, key) = (s.clone(), key.clone());
                tasks.spawn(async move {
                    let meta = RequestMeta { source: None, request_id: Some(format!("node{n}-{i}")) };
                    let dir = if i % 10 == 0 { "other" } else { "acme" };
                    let _ = s.authenticate_provisioning(dir, Some(key.expose()), &meta).await.expect("audited");
                });
            }
            for i in 0..5 {
                let s = s.clone();
                tasks.spawn(async move {
                    s.create_directory(&actor(), &format!("n{n}-dir-{i}")).await.unwrap();
                });
            }
        }
        while let Some(r) = tasks.join_next().await {
            r.unwrap();
        }
        let expected = before + 210;
        assert_eq!(head_seq(&e.store).await, expected);
        for s in [&e.store, &other] {
            let rep = verify(s).await.unwrap();
            assert_eq!(rep.records, expected);
        }
        let denied = audit::query(
            other.raw_for_tests(),
            &AuditFilter { action: Some("key.authenticate".into()), limit: 10_000, ..Default::default() },
        )
        .await
        .unwrap()
        .iter()
        .filter(|r| r.outcome == fedkey_audit::Outcome::Denied)
        .count();
        assert_eq!(denied, 20);
    }

    /// Filters as Entra ID, Okta and RFC 7644 write them select exactly the expected
    /// resources through the SQL translator, and the `eq` fast paths use indexes.
    pub async fn scim_filters_select_expected_resources(kind: Kind) {
        use fedkey_scim::schema::ENTERPRISE_USER;
        let e = env(kind).await;
        let s = &e.store;
        let a = actor();
        let dir = s.create_directory(&a, "acme").await.unwrap();
        let other = s.create_directory(&a, "globex").await.unwrap();
        let mut ids = std::collections::BTreeMap::new();
        let users = [
            (
                "entra",
                serde_json::json!({
                    "schemas": [USER_SCHEMA, ENTERPRISE_USER],
                    "externalId": "0a21f0f2-8d2a-4f8e-bf98-7363c4aed4ef",
                    "userName": "Test_User_00aa00aa@testuser.com", "active": true,
                    "emails": [{"primary": true, "type": "work", "value": "Test_User_11bb11bb@testuser.com"}],
                    "meta": {"resourceType": "User"},
                    "name": {"formatted": "givenName familyName", "familyName": "familyName", "givenName": "givenName"},
                    "roles": [], "addresses": null, "phoneNumbers": null, "title": null, "preferredLanguage": null,
                    ENTERPRISE_USER: {"department": "Retail", "manager": {"value": "2c2f6fb8-254f-492e-b7fe-c09c5a61c8a2"}}
                }),
            ),
            (
                "okta",
                serde_json::json!({
                    "schemas": [USER_SCHEMA], "externalId": "jyoung", "userName": "test.user@okta.local",
                    "name": {"givenName": "Test", "familyName": "User"},
                    "emails": [{"value": "test.user@okta.local", "type": "work"}, {"value": "tu@alt.example"}],
                    "displayName": "Test User", "active": "False", "password": "hunter2",
                    "roles": [{"primary": false, "type": "WindowsAzureActiveDirectoryRole", "value": "Member", "display": "Member"}]
                }),
            ),
            (
                "elodie",
                serde_json::json!({"userName": "ÉLODIE", "title": "50%_off", "active": "True",
                    "emails": [{"value": "Élodie@Exemple.FR", "type": "home"}]}),
            ),
            (
                "percent",
                serde_json::json!({"userName": "percent", "title": "50% off", "emails": [{"value": "p_c@x.example", "type": "work"}]}),
            ),
            ("underscore", serde_json::json!({"userName": "under", "title": "50x_off", "active": false})),
            ("sigma", serde_json::json!({"userName": "ΟΔΥΣΣΕΥΣ", "title": "a\\b"})),
            (
                "keys",
                serde_json::json!({"userName": "keys", "Title": "Boss", "EMAILS": [{"VALUE": "k@x.example", "Type": "WORK"}],
                    "urn:ietf:params:scim:schemas:extension:enterprise:2.0:user": {"DEPARTMENT": "R&D"}}),
            ),
        ];
        for (label, body) in users {
            let r = s.scim_create(&a, &dir, user_write(&body)).await.unwrap();
            ids.insert(label, r.id);
            e.clock.advance(Duration::from_secs(60));
        }
        // Same names in another directory never show.
        s.scim_create(&a, &other, user_write(&serde_json::json!({"userName": "ÉLODIE"}))).await.unwrap();
        let users_by_label = ids.clone();
        let id = |label: &str| users_by_label[label].clone();
        let eng = s
            .scim_create(
                &a,
                &dir,
                group_write("Engineering", &[id("entra"), id("okta")], Some("8aa1a0c0-c4c3-4bc0-b4a5-2ef676900159")),
            )
            .await
            .unwrap();
        let sigma = s.scim_create(&a, &dir, group_write("Σ Group", &[id("elodie")], None)).await.unwrap();
        let empty = s.scim_create(&a, &dir, group_write("Empty", &[], None)).await.unwrap();
        let parent = s.scim_create(&a, &dir, group_write("Parent", std::slice::from_ref(&eng.id), None)).await.unwrap();
        for (label, g) in [("eng", &eng), ("sigma_group", &sigma), ("empty", &empty), ("parent", &parent)] {
            ids.insert(label, g.id.clone());
        }
        let id = |label: &str| ids[label].clone();
        // An hour later Okta PUTs its user again: version 2, a later lastModified.
        let mid = Timestamp(fedkey_core::Clock::now(&e.clock).0 + 1).to_rfc3339();
        e.clock.advance(HOUR);
        let okta_body = serde_json::json!({"schemas": [USER_SCHEMA], "externalId": "jyoung", "userName": "test.user@okta.local",
            "emails": [{"value": "test.user@okta.local", "type": "work"}, {"value": "tu@alt.example"}],
            "active": "False", "displayName": "Test User", "password": "hunter2",
            "roles": [{"primary": false, "type": "WindowsAzureActiveDirectoryRole", "value": "Member", "display": "Member"}]});
        let okta_modified =
            s.scim_replace(&a, &dir, &id("okta"), Some(1), user_write(&okta_body)).await.unwrap().updated_at;

        let all_users = ["entra", "okta", "elodie", "percent", "underscore", "sigma", "keys"];
        let without = |skip: &[&str]| all_users.iter().copied().filter(|u| !skip.contains(u)).collect::<Vec<_>>();
        let user_cases: Vec<(String, Vec<&str>)> = vec![
            // Entra: test connection, matching, the work email, the manager.
            (r#"userName eq "Test_User_00aa00aa@testuser.com""#.into(), vec!["entra"]),
            (r#"userName eq "b1c2d3e4-0000-4000-8000-000000000000""#.into(), vec![]),
            (r#"externalId eq "0a21f0f2-8d2a-4f8e-bf98-7363c4aed4ef""#.into(), vec!["entra"]),
            (r#"emails[type eq "work"].value eq "TEST_USER_11BB11BB@testuser.com""#.into(), vec!["entra"]),
            (r#"emails[type eq "home"].value eq "Test_User_11bb11bb@testuser.com""#.into(), vec![]),
            (r#"manager eq "2c2f6fb8-254f-492e-b7fe-c09c5a61c8a2""#.into(), vec!["entra"]),
            (format!("{ENTERPRISE_USER}:department eq \"retail\""), vec!["entra"]),
            (r#"department eq "r&d""#.into(), vec!["keys"]),
            // Okta: the upper-cased userName, unquoted values (older Entra too), "False".
            (r#"userName eq "TEST.USER@OKTA.LOCAL""#.into(), vec!["okta"]),
            ("externalId eq jyoung".into(), vec!["okta"]),
            (r#"externalId eq "JYOUNG""#.into(), vec![]),
            ("active eq false".into(), vec!["okta", "underscore"]),
            ("active eq true".into(), vec!["entra", "elodie"]),
            ("active ne true".into(), without(&["entra", "elodie"])),
            (r#"roles[type eq "WindowsAzureActiveDirectoryRole" and value eq "member"]"#.into(), vec!["okta"]),
            // Unicode case folding, character by character as the evaluator does (so a
            // final capital sigma folds to σ, not ς).
            (r#"userName eq "élodie""#.into(), vec!["elodie"]),
            (r#"userName co "LOD""#.into(), vec!["elodie"]),
            (r#"userName eq "οδυσσευσ""#.into(), vec!["sigma"]),
            (r#"userName eq "ΟΔΥΣΣΕΥΣ""#.into(), vec!["sigma"]),
            (r#"userName eq "οδυσσευς""#.into(), vec![]),
            (r#"emails eq "élodie@exemple.fr""#.into(), vec!["elodie"]),
            (r#"emails.value eq "TU@ALT.EXAMPLE""#.into(), vec!["okta"]),
            // LIKE metacharacters are plain characters.
            (r#"title co "50%_off""#.into(), vec!["elodie"]),
            (r#"title sw "50%""#.into(), vec!["elodie", "percent"]),
            (r#"title ew "_off""#.into(), vec!["elodie", "underscore"]),
            (r#"title co "\\""#.into(), vec!["sigma"]),
            (r#"title co "%""#.into(), vec!["elodie", "percent"]),
            // Attribute names in any case; keys stored in any case.
            (r#"TITLE eq "boss""#.into(), vec!["keys"]),
            (r#"emails[type eq "work" and value co "@X.EXAMPLE"]"#.into(), vec!["percent", "keys"]),
            ("title pr".into(), vec!["elodie", "percent", "underscore", "sigma", "keys"]),
            ("title eq null".into(), vec!["entra", "okta"]),
            ("not (emails pr)".into(), vec!["underscore", "sigma"]),
            ("roles pr".into(), vec!["okta"]),
            // RFC 7644 shapes.
            (r#"userType eq "Employee" and (emails co "example.com" or emails.value co "example.org")"#.into(), vec![]),
            (r#"title pr and (emails co "alt.example" or emails.value co "exemple")"#.into(), vec!["elodie"]),
            (r#"emails co "alt.example" or emails.value co "exemple""#.into(), vec!["okta", "elodie"]),
            (r#"userName sw "t" and not (userName ew ".local")"#.into(), vec!["entra"]),
            // Metadata.
            (format!("meta.lastModified gt \"{mid}\""), vec!["okta"]),
            (format!("meta.lastModified le \"{mid}\""), without(&["okta"])),
            // Stored times are microseconds; a literal between two never equals either.
            (format!("meta.lastModified eq \"{}\"", okta_modified.to_rfc3339()), vec!["okta"]),
            (format!("meta.lastModified eq \"{}\"", okta_modified.to_rfc3339().replace('Z', "+00:00")), vec!["okta"]),
            (format!("meta.lastModified eq \"{}\"", half_microsecond_after(okta_modified)), vec![]),
            (format!("meta.lastModified ge \"{}\"", half_microsecond_after(okta_modified)), vec![]),
            (
                format!("meta.lastModified gt \"{}\"", half_microsecond_after(Timestamp(okta_modified.0 - 1))),
                vec!["okta"],
            ),
            (
                format!("meta.lastModified le \"{}\"", half_microsecond_after(Timestamp(okta_modified.0 - 1))),
                without(&["okta"]),
            ),
            (
                format!(
                    "meta[lastModified lt \"{}\" and resourceType eq \"USER\"]",
                    half_microsecond_after(okta_modified)
                ),
                all_users.to_vec(),
            ),
            (r#"meta.version eq "W/\"2\"""#.into(), vec!["okta"]),
            (r#"meta.resourceType eq "user""#.into(), all_users.to_vec()),
            (format!("id eq \"{}\"", id("percent")), vec!["percent"]),
            (format!("groups eq \"{}\"", id("eng")), vec!["entra", "okta"]),
            (r#"groups[display eq "σ group"]"#.into(), vec!["elodie"]),
            // Never returned, never matched.
            ("password pr".into(), vec![]),
            (r#"password eq "hunter2""#.into(), vec![]),
        ];
        let group_cases: Vec<(String, Vec<&str>)> = vec![
            (r#"displayName eq "engineering""#.into(), vec!["eng"]),
            (r#"displayName eq "σ GROUP""#.into(), vec!["sigma_group"]),
            (format!("members eq \"{}\"", id("entra")), vec!["eng"]),
            (format!("members.value eq \"{}\"", id("elodie").to_uppercase()), vec!["sigma_group"]),
            (format!("id eq \"{}\" and members eq \"{}\"", id("eng"), id("entra")), vec!["eng"]),
            (format!("id eq \"{}\" and members eq \"{}\"", id("eng"), id("elodie")), vec![]),
            (format!("members[value eq \"{}\"]", id("elodie")), vec!["sigma_group"]),
            (format!("members[value eq \"{}\" and type eq \"group\"]", id("eng")), vec!["parent"]),
            ("members pr".into(), vec!["eng", "sigma_group", "parent"]),
            ("members eq null".into(), vec!["empty"]),
            (r#"members.display eq "ÉLODIE""#.into(), vec!["sigma_group"]),
            (r#"members.type eq "Group""#.into(), vec!["parent"]),
            ("externalId eq 8aa1a0c0-c4c3-4bc0-b4a5-2ef676900159".into(), vec!["eng"]),
            ("externalId pr".into(), vec!["eng"]),
        ];
        let label = |v: &[String]| {
            let mut labels: Vec<&str> = v.iter().map(|i| *ids.iter().find(|(_, x)| *x == i).unwrap().0).collect();
            labels.sort();
            labels
        };
        for (rt_name, cases) in [("User", user_cases), ("Group", group_cases)] {
            let rt = fedkey_scim::schema::resource_type(rt_name).unwrap();
            let presented: Vec<(String, Value)> = list_all(s, &dir.id, rt_name)
                .await
                .iter()
                .map(|r| (r.id.clone(), present(r, r.body.get("externalId").and_then(Value::as_str))))
                .collect();
            for (filter, want) in cases {
                let f = fedkey_scim::filter::parse(&filter).unwrap_or_else(|e| panic!("{filter}: {e}"));
                let frag = s.scim_filter_sql(rt, &f).unwrap_or_else(|e| panic!("{filter}: {e:?}"));
                let got = list_ids(s, &dir.id, rt_name, Some(frag.clone()), None, false).await;
                let mut want: Vec<&str> = want;
                want.sort();
                assert_eq!(label(&got), want, "{filter}\n{}", frag.sql);
                // The expectation is the evaluator's too.
                let compiled = fedkey_scim::eval::compile(rt, &f).unwrap();
                let by_eval: Vec<String> =
                    presented.iter().filter(|(_, json)| compiled.matches(json)).map(|(id, _)| id.clone()).collect();
                assert_eq!(label(&by_eval), want, "eval: {filter}");
            }
        }
        // Malformed and ill-typed filters are the evaluator's 400s.
        let rt = fedkey_scim::schema::resource_type("User").unwrap();
        for bad in [r#"userName[value eq "x"]"#, r#"members eq "x""#, "active gt true", r#"meta.created eq "2011""#] {
            let f = fedkey_scim::filter::parse(bad).unwrap();
            let err = s.scim_filter_sql(rt, &f).unwrap_err();
            assert_eq!((err.status_code(), err.scim_type), (400, Some(fedkey_scim::ScimType::InvalidFilter)), "{bad}");
        }
    }

    /// The `eq` fast paths are index lookups: on a directory of a few thousand resources
    /// with statistics, each plan looks its key up in an index (SQLite: probes per row of
    /// the directory for the side tables, parsing no JSON; PostgreSQL: a semi-join driven
    /// by the index).
    pub async fn scim_filter_fast_paths_use_indexes(kind: Kind) {
        let e = env(kind).await;
        let s = &e.store;
        let a = actor();
        let dir = s.create_directory(&a, "acme").await.unwrap();
        let alice = s
            .scim_create(
                &a,
                &dir,
                user_write(
                    &json!({"userName": "Alice", "externalId": "ext-alice", "emails": [{"value": "Alice@X.example", "type": "work"}]}),
                ),
            )
            .await
            .unwrap();
        let g = s.scim_create(&a, &dir, group_write("Admins", std::slice::from_ref(&alice.id), None)).await.unwrap();
        let d = &dir.id;
        let filler = match kind {
            Kind::Sqlite => format!(
                "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 3000) \
                 INSERT INTO scim_resources SELECT '{d}', 'u' || i, CASE WHEN i % 10 = 0 THEN 'Group' ELSE 'User' END, 1, 0, 0, \
                 'n' || i, 'x' || i, '{{}}', '{{}}' FROM n; \
                 WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 3000) \
                 INSERT INTO scim_values SELECT '{d}', 'u' || i, 'emails.value', 'e' || i || '@x.example' FROM n; \
                 WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 3000) \
                 INSERT INTO scim_members SELECT '{d}', 'u' || (10 * (i % 300)), 'u' || i, 'User' FROM n WHERE i % 10 <> 0;"
            ),
            Kind::Postgres => format!(
                "INSERT INTO scim_resources SELECT '{d}', 'u' || i, CASE WHEN i % 10 = 0 THEN 'Group' ELSE 'User' END, 1, 0, 0, \
                 'n' || i, 'x' || i, '{{}}', '{{}}' FROM generate_series(1, 3000) i; \
                 INSERT INTO scim_values SELECT '{d}', 'u' || i, 'emails.value', 'e' || i || '@x.example' FROM generate_series(1, 3000) i; \
                 INSERT INTO scim_members SELECT '{d}', 'u' || (10 * (i % 300)), 'u' || i, 'User' FROM generate_series(1, 3000) i WHERE i % 10 <> 0; \
                 ANALYZE;"
            ),
        };
        e.exec(&filler).await;
        let cases = [
            ("User", r#"userName eq "ALICE""#.to_owned(), alice.id.clone(), ["name_key=?", "(name_key = "]),
            ("User", format!("id eq \"{}\"", alice.id), alice.id.clone(), ["AND id=?)", "(id = "]),
            ("User", "externalId eq ext-alice".to_owned(), alice.id.clone(), ["external_id=?", "(external_id = "]),
            (
                "User",
                r#"emails.value eq "alice@x.EXAMPLE""#.to_owned(),
                alice.id.clone(),
                ["value_key=?", "(value_key = "],
            ),
            (
                "User",
                r#"emails[value eq "alice@x.example"]"#.to_owned(),
                alice.id.clone(),
                ["value_key=?", "(value_key = "],
            ),
            (
                "User",
                r#"emails[type eq "work"].value eq "alice@x.example""#.to_owned(),
                alice.id.clone(),
                ["value_key=?", "(value_key = "],
            ),
            ("User", format!("groups eq \"{}\"", g.id), alice.id.clone(), ["group_id=?", "(group_id = "]),
            ("Group", format!("members eq \"{}\"", alice.id), g.id.clone(), ["member_id=?", "(member_id = "]),
            (
                "Group",
                format!("id eq \"{}\" and members eq \"{}\"", g.id, alice.id),
                g.id.clone(),
                ["AND id=?)", "(id = "],
            ),
        ];
        for (rt_name, filter, want, [sqlite_key, pg_key]) in cases {
            let rt = fedkey_scim::schema::resource_type(rt_name).unwrap();
            let f = fedkey_scim::filter::parse(&filter).unwrap();
            let frag = s.scim_filter_sql(rt, &f).unwrap();
            assert_eq!(list_ids(s, d, rt_name, Some(frag.clone()), None, false).await, [want], "{filter}");
            let plan = explain_list(s, d, rt_name, &frag).await;
            let ok = match kind {
                // No ANALYZE on SQLite: the statistics pinned by migration 0010 must be enough to
                // keep the planner from walking the directory (a SCAN, or a SEARCH on the
                // directory and type alone).
                Kind::Sqlite => {
                    plan.lines().any(|l| l.starts_with("SEARCH") && l.contains(sqlite_key))
                        && !plan
                            .lines()
                            .any(|l| l.contains("SCAN r") || l.ends_with("(directory_id=? AND resource_type=?)"))
                }
                Kind::Postgres => {
                    plan.lines().any(|l| l.contains("Index Cond") && l.contains(pg_key))
                        && !plan.contains("Seq Scan on scim_resources")
                }
            };
            assert!(ok, "{filter}: expected an index lookup by {sqlite_key:?} / {pg_key:?} in\n{plan}");
        }
    }

    /// The translator agrees with the in-memory evaluator: on a random directory, random
    /// filters select through SQL exactly the resources `eval` matches in their presented
    /// form, reject exactly the filters `eval` rejects, and `sortBy` orders as
    /// `eval::compare_values` does. The seed is printed; `FEDKEY_SCIM_SEED` replays one.
    pub async fn scim_filters_agree_with_the_evaluator(kind: Kind) {
        let seed = std::env::var("FEDKEY_SCIM_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(0x5c1f_0001_u64);
        loud(&format!("scim_filters_agree_with_the_evaluator::{kind:?}: seed {seed} (FEDKEY_SCIM_SEED)"));
        let mut rng = Rng(seed);
        // A linguistic default collation, so that string order must come from the SQL.
        let icu = "TEMPLATE template0 LOCALE_PROVIDER icu ICU_LOCALE 'en-US' LOCALE 'C.UTF-8'";
        let e = env_on(TestDb::with_pg_options(kind, icu).await).await;
        if kind == Kind::Postgres {
            let row = sqlx::query("SELECT CASE WHEN 'a' < 'B' THEN 'linguistic' ELSE 'code point' END AS o")
                .fetch_one(e.store.raw_for_tests().pool())
                .await
                .unwrap();
            loud(&format!("default string order of the test database: {}", row.try_get::<String, _>("o").unwrap()));
        }
        let s = &e.store;
        let a = actor();
        let dir = s.create_directory(&a, "acme").await.unwrap();
        let other = s.create_directory(&a, "globex").await.unwrap();
        let started = std::time::Instant::now();

        // The data set: 30 users, 8 groups, some replaced later; a few in another directory.
        let mut external = std::collections::HashMap::new();
        let mut user_ids = Vec::new();
        for i in 0..30 {
            let body = random_user(&mut rng, i, &user_ids);
            let w = user_write(&body);
            let r = s.scim_create(&a, &dir, w.clone()).await.unwrap();
            external.insert(r.id.clone(), w.external_id.clone());
            user_ids.push(r.id);
            e.clock.advance(Duration::from_micros(1 + rng.below(3_000_000) as u64));
        }
        for i in 0..3 {
            let body = random_user(&mut rng, i, &[]);
            let r = s.scim_create(&a, &other, user_write(&body)).await.unwrap();
            s.scim_create(&a, &other, group_write(&format!("Engineering{i}"), &[r.id], None)).await.unwrap();
        }
        let mut group_ids: Vec<String> = Vec::new();
        let group_names = ["Engineering", "engineering team", "Σ Group", "Admins", "50%_club", "Ünits", "group_x"];
        for i in 0..8 {
            let mut members: Vec<String> = user_ids.iter().filter(|_| rng.chance(30)).cloned().collect();
            if !group_ids.is_empty() && rng.chance(40) {
                members.push(rng.pick(&group_ids).clone());
            }
            let ext = rng.chance(50).then(|| format!("G-{}", rng.below(4)));
            let name = format!("{}{i}", rng.pick(&group_names));
            let w = group_write(&name, &members, ext.as_deref());
            let r = s.scim_create(&a, &dir, w.clone()).await.unwrap();
            external.insert(r.id.clone(), w.external_id.clone());
            group_ids.push(r.id);
            e.clock.advance(Duration::from_micros(1 + rng.below(3_000_000) as u64));
        }
        for i in 0..10 {
            let id = user_ids[rng.below(user_ids.len())].clone();
            let body = random_user(&mut rng, 100 + i, &user_ids);
            let w = user_write(&body);
            s.scim_replace(&a, &dir, &id, None, w.clone()).await.unwrap();
            external.insert(id, w.external_id.clone());
            e.clock.advance(Duration::from_micros(1 + rng.below(3_000_000) as u64));
        }
        for _ in 0..3 {
            let id = group_ids[rng.below(group_ids.len())].clone();
            let current = s.scim_get(&dir.id, "Group", &id).await.unwrap();
            let members: Vec<String> = user_ids.iter().filter(|_| rng.chance(50)).cloned().collect();
            let name = current.body["displayName"].as_str().unwrap().to_owned();
            let w = group_write(&name, &members, external[&id].as_deref());
            s.scim_replace(&a, &dir, &id, None, w).await.unwrap();
            e.clock.advance(Duration::from_micros(1 + rng.below(3_000_000) as u64));
        }

        // Every resource as the server presents it, and the literals to draw from.
        let mut presented: std::collections::BTreeMap<&str, Vec<(String, serde_json::Value)>> = Default::default();
        let mut vocab = Vocabulary::default();
        for rt_name in ["User", "Group"] {
            let rows = list_all(s, &dir.id, rt_name).await;
            assert_eq!(rows.len(), if rt_name == "User" { 30 } else { 8 });
            for r in rows {
                let json = present(&r, external[&r.id].as_deref());
                vocab.collect(&json);
                vocab.times.extend([r.created_at, r.updated_at]);
                presented.entry(rt_name).or_default().push((r.id.clone(), json));
            }
        }

        // Filters.
        let (mut errors, mut some, mut none, mut partial, mut valid) = (0, 0, 0, 0, 0);
        // `FEDKEY_SCIM_FILTERS` runs more, for a longer soak.
        let filters: usize = std::env::var("FEDKEY_SCIM_FILTERS").ok().and_then(|n| n.parse().ok()).unwrap_or(700);
        for n in 0..filters {
            let rt_name = if n % 5 < 3 { "User" } else { "Group" };
            let f = vocab.filter(&mut rng, fedkey_scim::schema::resource_type(rt_name).unwrap(), 3);
            let context = format!("seed {seed}, #{n}");
            match agree(s, &dir.id, rt_name, &presented[rt_name], &f, &context).await {
                None => errors += 1,
                Some(matched) => {
                    valid += 1;
                    match matched {
                        0 => none += 1,
                        n if n == presented[rt_name].len() => some += 1,
                        _ => {
                            some += 1;
                            partial += 1;
                        }
                    }
                }
            }
        }
        // Times: stored microseconds against literals on and between them, every operator.
        let mut date_filters = 0;
        for (rt_name, resources) in &presented {
            for (_, json) in resources.iter().step_by(5) {
                for field in ["created", "lastModified"] {
                    let t = Timestamp::parse_rfc3339(json["meta"][field].as_str().unwrap()).unwrap();
                    let literals = [
                        t.to_rfc3339(),
                        t.to_rfc3339().replace('Z', "+00:00"),
                        Timestamp(t.0 + 1).to_rfc3339(),
                        Timestamp(t.0 - 1).to_rfc3339(),
                        half_microsecond_after(t),
                        half_microsecond_after(Timestamp(t.0 - 1)),
                    ];
                    for literal in literals {
                        for op in ["eq", "ne", "gt", "ge", "lt", "le"] {
                            let f = fedkey_scim::filter::parse(&format!("meta.{field} {op} \"{literal}\"")).unwrap();
                            assert!(agree(s, &dir.id, rt_name, resources, &f, "date sweep").await.is_some());
                            date_filters += 1;
                        }
                    }
                }
            }
        }
        assert!(date_filters >= 300, "{date_filters}");
        loud(&format!(
            "scim filters on {kind:?}: {filters} random filters; {errors} rejected by both; {valid} valid: \
             {some} matched >= 1 resource ({partial} some but not all), {none} matched none; \
             and {date_filters} time comparisons; all agreeing with eval"
        ));
        assert!(valid >= 300, "only {valid} valid filters");
        assert!(some >= 100 && partial >= 60 && none >= 50, "too trivial: {some} / {partial} / {none}");
        assert!(errors >= 20, "only {errors} rejected filters");

        // sortBy: every path of both resource types, both directions.
        let mut orders = 0;
        for rt_name in ["User", "Group"] {
            let rt = fedkey_scim::schema::resource_type(rt_name).unwrap();
            let resources = &presented[rt_name];
            for path in sort_paths(rt) {
                let expected = fedkey_scim::eval::sort_value(rt, &serde_json::Value::Null, &path);
                let frag = s.scim_order_sql(rt, &path);
                let frag = match (expected, frag) {
                    (Err(want), Err(got)) => {
                        assert_eq!((got.scim_type, got.detail), (want.scim_type, want.detail), "sortBy {path}");
                        continue;
                    }
                    (Ok(_), Ok(frag)) => frag,
                    (want, got) => panic!("sortBy {path}: eval {:?} but order_by {:?}", want.err(), got.err()),
                };
                for descending in [false, true] {
                    let mut want: Vec<&(String, serde_json::Value)> = resources.iter().collect();
                    want.sort_by(|x, y| {
                        let (def, vx) = fedkey_scim::eval::sort_value(rt, &x.1, &path).unwrap();
                        let (_, vy) = fedkey_scim::eval::sort_value(rt, &y.1, &path).unwrap();
                        fedkey_scim::eval::compare_values(def, vx, vy).then_with(|| x.0.cmp(&y.0))
                    });
                    if descending {
                        want.reverse();
                    }
                    let want: Vec<&str> = want.iter().map(|(id, _)| id.as_str()).collect();
                    let got = list_ids(s, &dir.id, rt_name, None, Some(frag.clone()), descending).await;
                    let keys = |ids: &[&str]| {
                        ids.iter()
                            .map(|id| {
                                let json = &resources.iter().find(|(x, _)| x == id).unwrap().1;
                                fedkey_scim::eval::sort_value(rt, json, &path).unwrap().1.to_string()
                            })
                            .collect::<Vec<_>>()
                    };
                    let got_ref: Vec<&str> = got.iter().map(String::as_str).collect();
                    assert_eq!(keys(&got_ref), keys(&want), "sortBy {path} descending={descending}: {}", frag.sql);
                    assert_eq!(got_ref, want, "sortBy {path} descending={descending} (ties by id)");
                    orders += 1;
                }
            }
        }
        assert!(orders >= 100, "only {orders} orderings checked");
        loud(&format!("scim sortBy on {kind:?}: {orders} orderings agree; {:?} in all", started.elapsed()));
    }
}

// ---------------------------------------------------------------------------------------
// Scanning helpers
// ---------------------------------------------------------------------------------------

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle)
}

/// The secret as raw bytes, hex (both cases) and base64 (standard and URL-safe). For
/// base64 the interior of the encoding at each of the three byte alignments is used, so
/// the secret is found even when it sits inside a larger base64 blob.
fn encodings(secret: &[u8]) -> Vec<Vec<u8>> {
    let mut out = vec![secret.to_vec(), hex::encode(secret).into_bytes(), hex::encode_upper(secret).into_bytes()];
    for engine in [base64::engine::general_purpose::STANDARD, base64::engine::general_purpose::URL_SAFE] {
        for pad in 0..3 {
            let mut b = vec![0u8; pad];
            b.extend_from_slice(secret);
            let enc = engine.encode(&b);
            out.push(enc.as_bytes()[4..enc.len() - 4].to_vec());
        }
    }
    out
}

fn pg_dump(url: &str) -> Vec<u8> {
    let bin = find_pg_dump().expect("pg_dump not found (/usr/bin/pg_dump or /usr/lib/postgresql/*/bin/pg_dump)");
    let out = std::process::Command::new(&bin).arg("--no-owner").arg(format!("--dbname={url}")).output().unwrap();
    assert!(out.status.success(), "pg_dump failed: {}", String::from_utf8_lossy(&out.stderr));
    out.stdout
}

fn find_pg_dump() -> Option<PathBuf> {
    let mut candidates: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|d| d.path().join("bin/pg_dump"))
        .filter(|p| p.exists())
        .collect();
    // Newest version first; a newer pg_dump can dump older servers.
    candidates.sort_by_key(|p| std::cmp::Reverse(version_of(p)));
    candidates.push(PathBuf::from("/usr/bin/pg_dump"));
    candidates.into_iter().find(|p| p.exists())
}

fn version_of(p: &Path) -> u32 {
    p.components().rev().nth(2).and_then(|c| c.as_os_str().to_str()).and_then(|s| s.parse().ok()).unwrap_or(0)
}

// ---------------------------------------------------------------------------------------
// SCIM filter helpers
// ---------------------------------------------------------------------------------------

use fedkey_scim::filter::{AttrPath, CompValue, CompareOp, Filter};
use fedkey_store::scim::{ListQuery, ResourceWrite, SqlFragment, StoredResource};
use fedkey_store::scim_sql;
use serde_json::{Value, json};

const USER_SCHEMA: &str = fedkey_scim::schema::USER;

/// A user as the protocol layer would hand it to the store: `name_key` and the indexed
/// `emails.value` keys folded with `scim_sql::fold`, `externalId` mirrored.
fn user_write(body: &Value) -> ResourceWrite {
    let rt = fedkey_scim::schema::resource_type("User").unwrap();
    let doc = scim_sql::case_folded(rt, body);
    let indexed = doc
        .get("emails")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|e| e.get("value").and_then(Value::as_array))
        .flatten()
        .filter_map(Value::as_str)
        .map(|v| ("emails.value".to_owned(), v.to_owned()))
        .collect();
    ResourceWrite {
        resource_type: "User",
        name_key: scim_sql::fold(body["userName"].as_str().unwrap()),
        external_id: body.get("externalId").and_then(Value::as_str).map(str::to_owned),
        body: body.clone(),
        members: None,
        indexed,
        changed: vec![],
        known: None,
    }
}

fn group_write(name: &str, members: &[String], external_id: Option<&str>) -> ResourceWrite {
    let mut body = json!({"schemas": [fedkey_scim::schema::GROUP], "displayName": name});
    if let Some(x) = external_id {
        body["externalId"] = json!(x);
    }
    ResourceWrite {
        resource_type: "Group",
        name_key: scim_sql::fold(name),
        external_id: external_id.map(str::to_owned),
        body,
        members: Some(members.to_vec()),
        indexed: vec![],
        changed: vec![],
        known: None,
    }
}

/// The resource as the server presents it: the body without never-returned attributes,
/// with `id`, `externalId`, `meta` and memberships.
fn present(r: &StoredResource, external_id: Option<&str>) -> Value {
    let mut v = r.body.clone();
    let obj = v.as_object_mut().unwrap();
    obj.retain(|k, _| !k.eq_ignore_ascii_case("password"));
    obj.remove("externalId");
    obj.insert("id".into(), json!(r.id));
    if let Some(x) = external_id {
        obj.insert("externalId".into(), json!(x));
    }
    obj.insert(
        "meta".into(),
        json!({
            "resourceType": r.resource_type,
            "created": r.created_at.to_rfc3339(),
            "lastModified": r.updated_at.to_rfc3339(),
            "version": format!("W/\"{}\"", r.version),
        }),
    );
    let refs = |refs: &[fedkey_store::scim::MemberRef], kind: Option<&str>| {
        refs.iter()
            .map(|m| {
                let mut e = json!({"value": m.value, "type": kind.unwrap_or(&m.kind)});
                if let Some(d) = &m.display {
                    e["display"] = json!(d);
                }
                e
            })
            .collect::<Vec<_>>()
    };
    if r.resource_type == "Group" {
        obj.insert("members".into(), json!(refs(&r.members, None)));
    } else {
        obj.insert("groups".into(), json!(refs(&r.groups, Some("direct"))));
    }
    v
}

async fn list_all(s: &Store, dir: &str, rt: &str) -> Vec<StoredResource> {
    s.scim_list(dir, rt, &ListQuery { limit: 10_000, ..Default::default() }).await.unwrap().1
}

async fn list_ids(
    s: &Store,
    dir: &str,
    rt: &str,
    filter: Option<SqlFragment>,
    order: Option<SqlFragment>,
    descending: bool,
) -> Vec<String> {
    let q = ListQuery { filter, order, descending, limit: 10_000, ..Default::default() };
    let (total, rows) = s.scim_list(dir, rt, &q).await.unwrap_or_else(|e| panic!("{q:?}: {e}"));
    assert_eq!(total as usize, rows.len());
    rows.into_iter().map(|r| r.id).collect()
}

/// Runs `f` through the translator and `scim_list`, and through the evaluator over the
/// presented `resources`; both must reject it alike or select the same ids. Returns the
/// number selected (`None`: rejected).
async fn agree(
    s: &Store,
    dir: &str,
    rt_name: &str,
    resources: &[(String, Value)],
    f: &Filter,
    context: &str,
) -> Option<usize> {
    use std::collections::BTreeSet;
    let rt = fedkey_scim::schema::resource_type(rt_name).unwrap();
    let kind = s.raw_for_tests().backend;
    let (compiled, frag) = match (fedkey_scim::eval::compile(rt, f), scim_sql::translate(kind, rt, f)) {
        (Err(want), Err(got)) => {
            assert_eq!((got.scim_type, &got.detail), (want.scim_type, &want.detail), "{f}");
            return None;
        }
        (Ok(c), Ok(frag)) => (c, frag),
        (want, got) => panic!("{f}: eval {:?} but translate {:?}", want.err(), got.err()),
    };
    let want: BTreeSet<&str> =
        resources.iter().filter(|(_, json)| compiled.matches(json)).map(|(id, _)| id.as_str()).collect();
    let query = ListQuery { filter: Some(frag.clone()), limit: 1000, ..Default::default() };
    let (total, rows) = s
        .scim_list(dir, rt_name, &query)
        .await
        .unwrap_or_else(|err| panic!("{f} on {kind:?}: {err}\n{}\n{:?}", frag.sql, frag.binds));
    let got: BTreeSet<&str> = rows.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(total as usize, got.len(), "{f}");
    if got != want {
        let show = |ids: BTreeSet<&str>| {
            ids.into_iter().map(|id| resources.iter().find(|(x, _)| x == id).unwrap().1.to_string()).collect::<Vec<_>>()
        };
        panic!(
            "filter {f} on {kind:?} ({context}):\nSQL selects but eval does not: {:#?}\neval matches but SQL does not: {:#?}\nSQL: {}\nbinds: {:?}",
            show(got.difference(&want).copied().collect()),
            show(want.difference(&got).copied().collect()),
            frag.sql,
            frag.binds
        );
    }
    Some(got.len())
}

/// The plan of the list query for `frag`.
/// The plan of the real list statements (page and count) for `frag`.
async fn explain_list(s: &Store, dir: &str, rt: &str, frag: &SqlFragment) -> String {
    let q = ListQuery { filter: Some(frag.clone()), limit: 100, ..Default::default() };
    s.scim_list_plan(dir, rt, &q).await.unwrap().join("\n")
}

/// SplitMix64: a small seeded generator, so a failing run replays from its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }

    fn pick<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
        &xs[self.below(xs.len())]
    }
}

/// An attribute key, sometimes in another case (the evaluator matches keys ignoring case).
fn some_case(rng: &mut Rng, key: &str) -> String {
    if rng.chance(8) { key.to_ascii_uppercase() } else { key.to_owned() }
}

/// A user body with the shapes real clients send, some odd ones, and some missing parts.
fn random_user(rng: &mut Rng, i: usize, others: &[String]) -> Value {
    use fedkey_scim::schema::ENTERPRISE_USER;
    let names = [
        "alice",
        "Bob",
        "ÉLODIE",
        "élodie",
        "ZOË",
        "Straße",
        "ΟΔΥΣΣΕΥΣ",
        "o'malley",
        "50%_off",
        "under_score",
        "back\\slash",
        "İnci",
        "TEST.User",
        "Test_User_",
    ];
    let domains = ["@Example.com", "@x.example", "", "@ÉCOLE.fr", "@testuser.com"];
    let mut u = serde_json::Map::new();
    u.insert("userName".into(), json!(format!("{}{i}{}", rng.pick(&names), rng.pick(&domains))));
    let schemas = match rng.below(3) {
        0 => json!([USER_SCHEMA]),
        1 => json!([USER_SCHEMA, ENTERPRISE_USER]),
        _ => json!([USER_SCHEMA.to_uppercase(), ENTERPRISE_USER]),
    };
    u.insert("schemas".into(), schemas);
    if rng.chance(60) {
        let k = some_case(rng, "displayName");
        u.insert(k, json!(rng.pick(&["Test User", "test user", "Élodie B", "", "Ünïcode", "ZOË"])));
    }
    if rng.chance(70) {
        let titles = [
            json!(""),
            json!("Vice President"),
            json!("vice president"),
            json!("50%_off"),
            json!("50x_off"),
            json!("50% off"),
            json!("a_b"),
            json!("a\\b"),
            json!("Ünïcödé"),
            json!(42),
            Value::Null,
            json!(["Lead", "Chief"]),
        ];
        let k = some_case(rng, "title");
        u.insert(k, rng.pick(&titles).clone());
        if rng.chance(5) {
            u.insert("TITLE".into(), json!("Shadowed"));
        }
    }
    if rng.chance(80) {
        let v = [json!(true), json!(false), json!("True"), json!("False"), json!("TRUE"), json!("yes"), Value::Null];
        u.insert(some_case(rng, "active"), rng.pick(&v).clone());
    }
    if rng.chance(80) {
        let locals = ["Test_User", "test.user", "Élodie", "p_c", "50%off", "zoë", "ΣΙΣ"];
        let mail_domains = ["@testuser.com", "@Example.COM", "@x.example", "@exemple.fr"];
        let n = rng.below(4);
        let mut items = Vec::new();
        for j in 0..n {
            match rng.below(20) {
                0 => items.push(Value::Null),
                1 => items.push(json!("loose@x.example")),
                _ => {
                    let mut m = serde_json::Map::new();
                    if rng.chance(90) {
                        let value = format!("{}{j}{}", rng.pick(&locals), rng.pick(&mail_domains));
                        m.insert(some_case(rng, "value"), json!(value));
                    }
                    if rng.chance(70) {
                        m.insert(some_case(rng, "type"), json!(rng.pick(&["work", "home", "Work", "other", ""])));
                    }
                    if rng.chance(50) {
                        m.insert(
                            "primary".into(),
                            rng.pick(&[json!(true), json!(false), json!("True"), json!("false")]).clone(),
                        );
                    }
                    if rng.chance(20) {
                        m.insert("display".into(), json!(rng.pick(&["Work Mail", "work mail"])));
                    }
                    items.push(Value::Object(m));
                }
            }
        }
        // A lone object where an array belongs counts as a one-element array.
        let emails = if items.len() == 1 && items[0].is_object() && rng.chance(20) {
            items.pop().unwrap()
        } else {
            Value::Array(items)
        };
        u.insert(some_case(rng, "emails"), emails);
    }
    if rng.chance(70) {
        let mut name = serde_json::Map::new();
        if rng.chance(80) {
            name.insert(some_case(rng, "givenName"), json!(rng.pick(&["Test", "test", "", "Élodie", "givenName"])));
        }
        if rng.chance(80) {
            name.insert("familyName".into(), json!(rng.pick(&["User", "O'Malley", "Ö", "familyName"])));
        }
        u.insert("name".into(), Value::Object(name));
    }
    if rng.chance(15) {
        u.insert("nickName".into(), rng.pick(&[json!(["a", "b"]), json!("nick"), json!({"value": "x"})]).clone());
    }
    if rng.chance(30) {
        u.insert("userType".into(), json!(rng.pick(&["Employee", "Intern", "employee"])));
    }
    if rng.chance(30) {
        u.insert("phoneNumbers".into(), json!([{"type": "mobile", "value": rng.pick(&["", "+1 555 0100"])}]));
    }
    if rng.chance(35) {
        let role = json!({"primary": false, "type": "WindowsAzureActiveDirectoryRole", "value": rng.pick(&["Member", "Admin"]), "display": "Member"});
        u.insert("roles".into(), if rng.chance(30) { json!([]) } else { json!([role]) });
    }
    if rng.chance(15) {
        u.insert("x509Certificates".into(), json!([{"value": rng.pick(&["MIIabc", "miiABC"])}]));
    }
    if rng.chance(15) {
        u.insert("password".into(), json!("hunter2"));
    }
    if rng.chance(60) {
        let ext = if rng.chance(10) { ENTERPRISE_USER.to_ascii_uppercase() } else { ENTERPRISE_USER.to_owned() };
        let mut x = serde_json::Map::new();
        if rng.chance(70) {
            x.insert(some_case(rng, "department"), json!(rng.pick(&["Retail", "retail", "R&D", "Sales", ""])));
        }
        if rng.chance(40) {
            x.insert("employeeNumber".into(), json!(rng.pick(&["701984", "42"])));
        }
        if rng.chance(50) {
            let id = if others.is_empty() || rng.chance(30) {
                "2c2f6fb8-254f-492e-b7fe-c09c5a61c8a2".to_owned()
            } else {
                rng.pick(others).clone()
            };
            let manager = match rng.below(4) {
                0 => json!(id),
                1 => json!({"value": id}),
                _ => json!({"value": id, "displayName": rng.pick(&["The Boss", "the boss"])}),
            };
            x.insert("manager".into(), manager);
        }
        u.insert(ext, Value::Object(x));
    }
    if rng.chance(60) {
        let ext = rng.pick(&["jyoung", "JYoung", "0a21f0f2-8d2a-4f8e-bf98-7363c4aed4ef", "ext-1", ""]);
        u.insert("externalId".into(), json!(ext));
    }
    Value::Object(u)
}

/// Literals drawn from the data set, by the key they were found under, and the filters
/// built from them.
#[derive(Default)]
struct Vocabulary {
    by_key: std::collections::HashMap<String, Vec<String>>,
    all: Vec<String>,
    times: Vec<Timestamp>,
}

const META_SUBS: [&str; 5] = ["resourceType", "created", "lastModified", "location", "version"];

impl Vocabulary {
    fn collect(&mut self, v: &Value) {
        self.walk(None, v);
    }

    fn walk(&mut self, key: Option<&str>, v: &Value) {
        match v {
            Value::String(s) => {
                if let Some(k) = key {
                    self.by_key.entry(k.to_ascii_lowercase()).or_default().push(s.clone());
                }
                self.all.push(s.clone());
            }
            Value::Array(items) => items.iter().for_each(|i| self.walk(key, i)),
            Value::Object(m) => m.iter().for_each(|(k, x)| self.walk(Some(k), x)),
            _ => {}
        }
    }

    fn filter(&self, rng: &mut Rng, rt: &fedkey_scim::schema::ResourceTypeDef, depth: u32) -> Filter {
        if depth > 0 && rng.chance(45) {
            let which = rng.below(3);
            let a = Box::new(self.filter(rng, rt, depth - 1));
            return match which {
                0 => Filter::And(a, Box::new(self.filter(rng, rt, depth - 1))),
                1 => Filter::Or(a, Box::new(self.filter(rng, rt, depth - 1))),
                _ => Filter::Not(a),
            };
        }
        if rng.chance(18) {
            return self.value_path(rng, rt);
        }
        let (path, key) = random_path(rng, rt);
        self.leaf(rng, path, &key)
    }

    fn leaf(&self, rng: &mut Rng, path: AttrPath, key: &str) -> Filter {
        if rng.chance(12) {
            return Filter::Present(path);
        }
        use CompareOp::*;
        let op = *rng.pick(&[Eq, Eq, Eq, Ne, Ne, Co, Sw, Ew, Gt, Ge, Lt, Le]);
        Filter::Compare(path, op, self.value(rng, key))
    }

    fn value(&self, rng: &mut Rng, key: &str) -> CompValue {
        let dates = key == "created" || key == "lastmodified";
        let pool = self.by_key.get(key).filter(|p| !p.is_empty()).unwrap_or(&self.all);
        match rng.below(100) {
            _ if dates && rng.chance(70) => CompValue::Str(self.date(rng)),
            0..=64 => {
                let s = rng.pick(pool).clone();
                CompValue::Str(variant(rng, s))
            }
            65..=74 => {
                let s = rng.pick(&self.all).clone();
                CompValue::Str(variant(rng, s))
            }
            75..=79 => CompValue::Str((*rng.pick(&["", "%", "_", "50%_off", "é", "Σ", "\\", "σ"])).to_owned()),
            80..=85 => CompValue::Bool(rng.chance(50)),
            86..=88 => CompValue::Num(serde_json::Number::from(*rng.pick(&[42, 701984, 0]))),
            89..=92 => CompValue::Null,
            _ => CompValue::Str(self.date(rng)),
        }
    }

    /// A time near one in the data: exact, a microsecond either side, half a
    /// microsecond after, with a numeric offset; or a fixed far one; or not RFC 3339.
    fn date(&self, rng: &mut Rng) -> String {
        let t = *rng.pick(&self.times);
        match rng.below(10) {
            0 => Timestamp(t.0 + 1).to_rfc3339(),
            1 => Timestamp(t.0 - 1).to_rfc3339(),
            2..=4 => half_microsecond_after(Timestamp(t.0 - rng.below(2) as i64)),
            5 => t.to_rfc3339().replace('Z', "+00:00"),
            6 => (*rng.pick(&["2000-01-01T00:00:00Z", "2999-01-01T00:00:00Z", "2011-05-13"])).to_owned(),
            _ => t.to_rfc3339(),
        }
    }

    fn value_path(&self, rng: &mut Rng, rt: &fedkey_scim::schema::ResourceTypeDef) -> Filter {
        let mut complex: Vec<(Option<&str>, &str, Vec<&str>)> = vec![(None, "meta", META_SUBS.to_vec())];
        for sch in rt.schemas() {
            let uri = (sch.id != rt.schema).then_some(sch.id);
            for a in sch.attributes.iter().filter(|a| !a.sub_attributes.is_empty()) {
                complex.push((uri, a.name, a.sub_attributes.iter().map(|s| s.name).collect()));
            }
        }
        // A simple attribute cannot take a value filter.
        complex.push((None, "displayName", vec!["value"]));
        let (uri, name, subs) = rng.pick(&complex).clone();
        let uri = uri.filter(|_| rng.chance(30)).map(str::to_owned);
        let name = some_case(rng, name);
        let inner = self.inner(rng, &subs, 2);
        Filter::ValuePath(AttrPath { uri, name, sub: None }, Box::new(inner))
    }

    fn inner(&self, rng: &mut Rng, subs: &[&str], depth: u32) -> Filter {
        if depth > 0 && rng.chance(40) {
            let which = rng.below(3);
            let a = Box::new(self.inner(rng, subs, depth - 1));
            return match which {
                0 => Filter::And(a, Box::new(self.inner(rng, subs, depth - 1))),
                1 => Filter::Or(a, Box::new(self.inner(rng, subs, depth - 1))),
                _ => Filter::Not(a),
            };
        }
        let name = if rng.chance(4) { "bogus" } else { *rng.pick(subs) };
        let key = name.to_ascii_lowercase();
        let name = some_case(rng, name);
        self.leaf(rng, AttrPath { uri: None, name, sub: None }, &key)
    }
}

/// `t` and a half microsecond, in RFC 3339.
fn half_microsecond_after(t: Timestamp) -> String {
    let s = t.to_rfc3339();
    let body = s.trim_end_matches('Z');
    match body.split_once('.') {
        Some((whole, frac)) => format!("{whole}.{frac:0<6}5Z"),
        None => format!("{body}.0000005Z"),
    }
}

/// The string, or its other-case, prefix, suffix or middle.
fn variant(rng: &mut Rng, s: String) -> String {
    let chars: Vec<char> = s.chars().collect();
    let n = chars.len();
    match rng.below(10) {
        4 => s.to_uppercase(),
        5 => s.to_lowercase(),
        6 => chars[..rng.below(n + 1)].iter().collect(),
        7 => chars[rng.below(n + 1)..].iter().collect(),
        8 => {
            let i = rng.below(n + 1);
            chars[i..i + rng.below(n - i + 1)].iter().collect()
        }
        9 => chars
            .iter()
            .map(|c| if c.is_uppercase() { c.to_lowercase().next().unwrap() } else { c.to_uppercase().next().unwrap() })
            .collect(),
        _ => s,
    }
}

/// A path of the resource type (sometimes URN-qualified, in any case), a common attribute,
/// or a bogus one; and the key its literals are drawn from.
fn random_path(rng: &mut Rng, rt: &fedkey_scim::schema::ResourceTypeDef) -> (AttrPath, String) {
    let (uri, name, sub): (Option<String>, String, Option<String>) = match rng.below(100) {
        0..=69 => {
            let schemas: Vec<_> = rt.schemas().collect();
            let sch = if rng.chance(70) { schemas[0] } else { *rng.pick(&schemas) };
            let attr = rng.pick(sch.attributes);
            let sub = (!attr.sub_attributes.is_empty() && rng.chance(60))
                .then(|| rng.pick(attr.sub_attributes).name.to_owned());
            let uri = rng.chance(20).then(|| if rng.chance(20) { sch.id.to_uppercase() } else { sch.id.to_owned() });
            (uri, attr.name.to_owned(), sub)
        }
        70..=92 => {
            let (name, sub) = *rng.pick(&[
                ("id", None),
                ("externalId", None),
                ("schemas", None),
                ("meta", None),
                ("meta", Some("created")),
                ("meta", Some("created")),
                ("meta", Some("lastModified")),
                ("meta", Some("lastModified")),
                ("meta", Some("lastModified")),
                ("meta", Some("version")),
                ("meta", Some("resourceType")),
                ("meta", Some("location")),
            ]);
            (rng.chance(10).then(|| rt.schema.to_owned()), name.to_owned(), sub.map(str::to_owned))
        }
        _ => {
            let (uri, name, sub) = *rng.pick(&[
                (None, "bogus", None),
                (None, "emails", Some("nope")),
                (None, "members", None),
                (None, "userName", None),
                (None, "meta", Some("etag")),
                (None, "id", Some("value")),
                (Some("urn:example:other"), "id", None),
                (None, "name", None),
                (Some(fedkey_scim::schema::GROUP), "displayName", None),
            ]);
            (uri.map(str::to_owned), name.to_owned(), sub.map(str::to_owned))
        }
    };
    let complex_value = rt
        .resolve(&AttrPath { uri: None, name: name.clone(), sub: None })
        .is_some_and(|r| r.attribute.sub_attributes.iter().any(|s| s.name == "value"));
    let key = match &sub {
        Some(s) => s.to_ascii_lowercase(),
        None if complex_value => "value".to_owned(),
        None => name.to_ascii_lowercase(),
    };
    let name = some_case(rng, &name);
    (AttrPath { uri, name, sub }, key)
}

/// Every path `sortBy` may name on `rt`, and a few it may not.
fn sort_paths(rt: &fedkey_scim::schema::ResourceTypeDef) -> Vec<AttrPath> {
    let path = |uri: Option<&str>, name: &str, sub: Option<&str>| AttrPath {
        uri: uri.map(str::to_owned),
        name: name.to_owned(),
        sub: sub.map(str::to_owned),
    };
    let mut out = Vec::new();
    for sch in rt.schemas() {
        let uri = (sch.id != rt.schema).then_some(sch.id);
        for a in sch.attributes {
            out.push(path(uri, a.name, None));
            for s in a.sub_attributes {
                out.push(path(uri, a.name, Some(s.name)));
            }
        }
    }
    for (name, sub) in [("id", None), ("externalId", None), ("schemas", None), ("meta", None), ("bogus", None)] {
        out.push(path(None, name, sub));
    }
    for sub in META_SUBS.iter().chain(&["etag"]) {
        out.push(path(None, "meta", Some(sub)));
    }
    out
}
