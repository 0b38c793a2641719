//! Failed authentications aggregated per source and window, through the store (both
//! backends; time moves only through the `ManualClock`).

use std::time::Duration;

use fedkey_store::StoreError;
use fedkey_store::audit::AuditFilter;
use fedkey_store::auth::RequestMeta;
use fedkey_store::auth_failures::SUMMARY_ACTION;
use serde_json::Value;

use super::{Env, Kind, actor, count_action, env, inbound, verify};

fn from(source: &str) -> RequestMeta {
    RequestMeta { source: Some(source.into()), request_id: None }
}

async fn summaries(e: &Env) -> Vec<Value> {
    let f = AuditFilter { action: Some(SUMMARY_ACTION.into()), limit: 1000, ..Default::default() };
    let recs = e.store.audit_records(&f).await.unwrap();
    recs.iter()
        .map(|r| {
            let mut v: Value = serde_json::from_str(&r.details).unwrap();
            v["source"] = r.source.clone().into();
            v
        })
        .collect()
}

fn total(v: &Value) -> u64 {
    v.as_object().unwrap().values().map(|n| n.as_u64().unwrap()).sum()
}

async fn block_audit(e: &Env, kind: Kind, on: bool) {
    match (kind, on) {
        (Kind::Sqlite, true) => {
            e.exec("CREATE TRIGGER block BEFORE INSERT ON audit_log BEGIN SELECT RAISE(ABORT, 'blocked'); END;").await
        }
        (Kind::Sqlite, false) => e.exec("DROP TRIGGER block").await,
        (Kind::Postgres, true) => {
            e.exec("CREATE FUNCTION block_audit() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'blocked'; END; $$").await;
            e.exec("CREATE TRIGGER block BEFORE INSERT ON audit_log FOR EACH ROW EXECUTE FUNCTION block_audit()").await;
        }
        (Kind::Postgres, false) => e.exec("DROP TRIGGER block ON audit_log").await,
    }
}

/// Per source and action, the first 10 failures of a 60 s window are recorded one each and
/// the rest summarized once the window has closed; successes are all recorded; the counts
/// add up; a summary that cannot be written is kept and written later; the chain verifies.
pub async fn failed_authentications_are_summarized_per_window(kind: Kind) {
    let e = env(kind).await;
    let s = &e.store;
    s.create_directory(&actor(), "acme").await.unwrap();
    let (_, _, key) = s.create_trust(&actor(), inbound("acme", "entra")).await.unwrap();
    let key = key.unwrap();
    let (a, b) = ("192.0.2.1", "192.0.2.2");
    for i in 0..20 {
        let junk = format!("fkp_bad{}", i % 4);
        assert!(s.authenticate_provisioning("acme", Some(&junk), &from(a)).await.unwrap().is_err());
    }
    for _ in 0..5 {
        assert!(s.authenticate_provisioning("acme", None, &from(a)).await.unwrap().is_err());
    }
    for _ in 0..3 {
        assert!(s.authenticate_provisioning("acme", Some("fkp_bad0"), &from(b)).await.unwrap().is_err());
    }
    for _ in 0..12 {
        assert!(s.authenticate_admin(Some("fka_bad"), &from(a)).await.unwrap().is_err());
    }
    for _ in 0..15 {
        assert!(s.authenticate_provisioning("acme", Some(key.expose()), &from(a)).await.unwrap().is_ok());
    }
    let f = AuditFilter { action: Some("key.authenticate".into()), limit: 1000, ..Default::default() };
    let auths = s.audit_records(&f).await.unwrap();
    let count = |src: &str, outcome: &str| {
        auths.iter().filter(|r| r.source.as_deref() == Some(src) && r.outcome.as_str() == outcome).count()
    };
    assert_eq!((count(a, "denied"), count(b, "denied"), count(a, "success")), (10, 3, 15));
    assert_eq!(count_action(s, "admin.authenticate").await, 10);

    // Nothing is summarized before the window's end (60 s after its first failure).
    e.clock.advance(Duration::from_secs(59));
    assert_eq!(s.flush_auth_failures(false).await.unwrap(), 0);
    assert!(summaries(&e).await.is_empty());
    e.clock.advance(Duration::from_secs(1));
    assert_eq!(s.flush_auth_failures(false).await.unwrap(), 15 + 2);
    let sums = summaries(&e).await;
    assert_eq!(sums.len(), 2, "one per action of source A, none for B: {sums:?}");
    let key_sum = sums.iter().find(|v| v["action"] == "key.authenticate").unwrap();
    assert_eq!((key_sum["source"].as_str(), key_sum["recorded"].as_u64()), (Some(a), Some(10)));
    assert_eq!(key_sum["summarized"].as_u64(), Some(15));
    assert_eq!(total(&key_sum["reasons"]), 15);
    let missing = key_sum["reasons"]["missing_credentials"].as_u64().unwrap_or(0);
    let listed = key_sum["credentials"].as_object().unwrap();
    assert!(listed.len() <= 4 && listed.keys().all(|k| k.starts_with("hmac-sha256:")), "{key_sum}");
    assert_eq!(total(&key_sum["credentials"]) + key_sum["credentials_other"].as_u64().unwrap() + missing, 15);
    let admin_sum = sums.iter().find(|v| v["action"] == "admin.authenticate").unwrap();
    assert_eq!((admin_sum["recorded"].as_u64(), admin_sum["summarized"].as_u64()), (Some(10), Some(2)));
    assert_eq!(s.flush_auth_failures(true).await.unwrap(), 0, "nothing left to write");

    // A summary that cannot be written is kept, and written once the log can be again. A
    // failure that cannot be recorded is refused and does not use up the window.
    for _ in 0..12 {
        assert!(s.authenticate_provisioning("acme", Some("fkp_bad0"), &from(a)).await.unwrap().is_err());
    }
    block_audit(&e, kind, true).await;
    e.clock.advance(Duration::from_secs(60));
    assert!(matches!(s.flush_auth_failures(false).await, Err(StoreError::AuditUnavailable(_))));
    assert!(matches!(
        s.authenticate_provisioning("acme", Some("fkp_bad0"), &from(a)).await,
        Err(StoreError::AuditUnavailable(_))
    ));
    block_audit(&e, kind, false).await;
    assert_eq!(s.flush_auth_failures(false).await.unwrap(), 2);
    assert_eq!(summaries(&e).await.len(), 3);
    for _ in 0..10 {
        assert!(s.authenticate_provisioning("acme", Some("fkp_bad0"), &from(a)).await.unwrap().is_err());
    }
    let denied = s.audit_records(&f).await.unwrap().iter().filter(|r| r.outcome.as_str() == "denied").count();
    assert_eq!(denied, 10 + 3 + 10 + 10, "the refused attempt left the new window 10 records");
    verify(s).await.unwrap();
}
