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
                sqlx::raw_sql(AssertSqlSafe(format!("CREATE DATABASE \"{name}\""))).execute(&mut c).await.unwrap();
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
    two_stores_one_chain,
    verify_while_appending,
    tamper_replaced_public_key,
    awkward_text_survives_the_batch_insert,
    scim_resources_round_trip,
);

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
    let t = TestDb::new(kind).await;
    let clock = ManualClock::new(T0);
    let keyring = static_keyring();
    let store = Arc::new(open_store(&t.url, keyring.clone(), &clock, Duration::from_secs(60)).await);
    assert_eq!(store.db.backend, if kind == Kind::Sqlite { Backend::Sqlite } else { Backend::Postgres });
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
        exec(&self.store.db, sql).await;
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
    audit::verify(&s.db, &s.install.id, &s.install.public_key).await.expect("verification could read the log")
}

async fn head_seq(s: &Store) -> i64 {
    audit::head(&s.db).await.unwrap().0
}

fn states(keys: &[KeyVersion]) -> Vec<(i64, KeyState)> {
    keys.iter().map(|k| (k.version, k.state)).collect()
}

async fn count_action(s: &Store, action: &str) -> usize {
    let f = AuditFilter { action: Some(action.into()), limit: 10_000, ..Default::default() };
    audit::query(&s.db, &f).await.unwrap().len()
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
        // The successful use is written down with its audit batch.
        assert_eq!(s.list_keys(&r).await.unwrap()[0].last_used_at, Some(T0));

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

        // Every attempt, allowed or denied, is in the log, and the log verifies.
        let n = e.auths.load(Ordering::SeqCst);
        assert_eq!(count_action(s, "key.authenticate").await, n);
        let denied = audit::query(
            &s.db,
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
        let all = audit::query(&s.db, &AuditFilter { limit: 10_000, ..Default::default() }).await.unwrap();
        assert_eq!(all.len() as i64, head_seq(s).await);
        assert!(all.iter().enumerate().all(|(i, r)| r.seq == i as i64 + 1));
        assert_eq!(all[0].action, "directory.create");
        assert_eq!(all.last().unwrap().action, "key.revoke");
        assert!(all.iter().any(|r| r.action == "key.read"));
        // The database refuses to change audit rows.
        let upd = sqlx::query("UPDATE audit_log SET actor = 'x' WHERE seq = 1").execute(s.db.pool()).await;
        assert!(upd.unwrap_err().to_string().contains("append-only"));
        let del = sqlx::query("DELETE FROM audit_log WHERE seq = 1").execute(s.db.pool()).await;
        assert!(del.unwrap_err().to_string().contains("append-only"));
        assert!(verify(s).await.is_ok());
        // A checkpoint of the current head verifies too, and is counted.
        let mut last = 0;
        let size = audit::checkpoint_if_new(&s.db, &s.install, &e.clock, &mut last, 1).await.unwrap();
        assert_eq!(size, Some(head_seq(s).await));
        assert_eq!(audit::checkpoint_if_new(&s.db, &s.install, &e.clock, &mut last, 1).await.unwrap(), None);
        // Checkpoints are append-only as well.
        let upd = sqlx::query("UPDATE audit_checkpoints SET ts = 0").execute(s.db.pool()).await;
        assert!(upd.unwrap_err().to_string().contains("append-only"));
        let del = sqlx::query("DELETE FROM audit_checkpoints").execute(s.db.pool()).await;
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
        let (size, hash) = audit::head(&s.db).await.unwrap();
        let ts = s.now();
        let signature = sign(s, size, hash);
        sqlx::query("INSERT INTO audit_checkpoints (size, head_hash, ts, signature) VALUES ($1, $2, $3, $4)")
            .bind(size)
            .bind(hash.to_vec())
            .bind(ts.0)
            .bind(signature)
            .execute(s.db.pool())
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
        let n = audit::checkpoint_if_new(&s.db, &s.install, &e.clock, &mut last, 1)
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
        let head = audit::head(&s.db).await.unwrap();

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
        assert_eq!(audit::head(&s.db).await.unwrap(), head);
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
        assert_eq!(total, 4, "two install secrets + two outbound key versions");
        let mut ticks = 0;
        let rep = s.rewrap_all(&a, &ring, |_| ticks += 1).await.unwrap();
        assert_eq!((rep.total, rep.rewrapped, rep.already_current), (total, total, 0));
        assert_eq!(ticks, total);
        let again = s.rewrap_all(&a, &ring, |_| {}).await.unwrap();
        assert_eq!((again.total, again.rewrapped, again.already_current), (total, 0, total));
        // Every envelope now names the new key.
        let envs = sqlx::query("SELECT envelope FROM key_versions WHERE envelope IS NOT NULL")
            .fetch_all(s.db.pool())
            .await
            .unwrap();
        let inst = sqlx::query("SELECT value AS envelope FROM install WHERE name IN ('signing_key', 'hmac_salt')")
            .fetch_all(s.db.pool())
            .await
            .unwrap();
        assert_eq!(envs.len() + inst.len(), 4);
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
        let inst = Install::load(&s.db, &only_new.keyring().unwrap()).await.unwrap().expect("install exists");
        assert_eq!((inst.id.as_str(), inst.public_key), (install_id.as_str(), public));
        let s2 = open_store(&t.url, Arc::new(only_new), &clock, Duration::from_secs(60)).await;
        assert_eq!(s2.install.id, install_id);
        assert_eq!(s2.outbound_key(&a, &tref("acme", "app")).await.unwrap().1.expose(), "app-key-2");
        let meta = RequestMeta::default();
        assert!(s2.authenticate_provisioning("acme", Some(inkey.unwrap().expose()), &meta).await.unwrap().is_ok());
        assert!(verify(&s2).await.is_ok());
        assert_eq!(count_action(&s2, "master_key.rotate").await, 2);
        // The retired key alone no longer opens anything.
        let old_only = Keyring::parse(&old_text).unwrap();
        assert!(matches!(Install::load(&s2.db, &old_only).await, Err(StoreError::Crypto(_))));
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
            &s.db,
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
        let recs =
            audit::query(&s.db, &AuditFilter { actor: Some(actor.id.clone()), limit: 100, ..Default::default() })
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
            .execute(e.store.db.pool())
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
            &other.db,
            &AuditFilter { action: Some("key.authenticate".into()), limit: 10_000, ..Default::default() },
        )
        .await
        .unwrap()
        .iter()
        .filter(|r| r.outcome == fedkey_audit::Outcome::Denied)
        .count();
        assert_eq!(denied, 20);
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
