//! The audit batch insert: one multi-row statement per batch, split only at the backend's
//! bound-parameter limit, and all or nothing (both backends).

use fedkey_audit::{Event, Outcome};
use fedkey_store::StoreError;
use fedkey_store::audit::{self, AuditFilter, Pending};
use sqlx::Row;

use super::{Env, Kind, T0, actor, env, head_seq, verify};

/// More records than one INSERT takes on either backend (2,048 rows on SQLite, 4,096 on
/// PostgreSQL), so the append is split.
const ACROSS_THE_LIMIT: usize = 4_100 + 7;

fn event(action: &str, i: usize) -> Event {
    Event::new(T0, "test", action, Outcome::Success)
        .request_id(Some(format!("req-{i}")))
        .details(serde_json::json!({ "i": i }))
}

async fn rows(e: &Env) -> i64 {
    let row =
        sqlx::query("SELECT COUNT(*) AS n FROM audit_log").fetch_one(e.store.raw_for_tests().pool()).await.unwrap();
    row.try_get("n").unwrap()
}

/// Hands every event to the writer before waiting for any, so that they share batches.
async fn submit_all(e: &Env, events: Vec<Event>) -> Vec<Result<i64, StoreError>> {
    let mut pending: Vec<Pending> = Vec::new();
    for ev in events {
        pending.push(e.store.audit.submit(ev, None).await.unwrap());
    }
    let mut out = Vec::new();
    for p in pending {
        out.push(p.wait().await);
    }
    out
}

pub async fn audit_batches_cross_the_insert_limit(kind: Kind) {
    let e = env(kind).await;
    let s = &e.store;
    s.create_directory(&actor(), "acme").await.unwrap();
    let before = head_seq(s).await;

    // One append larger than one statement takes.
    let mut tx = s.raw_for_tests().begin().await.unwrap();
    let events = (0..ACROSS_THE_LIMIT).map(|i| event("test.bulk", i)).collect();
    let appended = audit::append_in_tx(&mut tx, s.raw_for_tests(), events).await.unwrap();
    tx.commit().await.unwrap();
    let n = ACROSS_THE_LIMIT as i64;
    assert_eq!((appended.first_seq, appended.last_seq), (before + 1, before + n));

    // Through the group-commit writer: batches of every size, padded to their shape.
    let results = submit_all(&e, (0..777).map(|i| event("test.writer", i)).collect()).await;
    let seqs: Vec<i64> = results.into_iter().map(|r| r.unwrap()).collect();
    let last = before + n + 777;
    assert_eq!(seqs, ((before + n + 1)..=last).collect::<Vec<_>>(), "each waiter gets its own record, in order");

    // Exactly the records, none of the padding rows, and the chain verifies.
    assert_eq!(head_seq(s).await, last);
    assert!(rows(&e).await == last, "rows {} != head {last}", rows(&e).await);
    let rep = verify(s).await.unwrap();
    assert_eq!(rep.records, last);
    // What went in comes back, at both ends of a split.
    let f = AuditFilter { after_seq: Some(before + 2047), limit: 3, ..Default::default() };
    let got = s.audit_records(&f).await.unwrap();
    let ids: Vec<_> = got.iter().map(|r| (r.seq, r.request_id.clone().unwrap(), r.details.clone())).collect();
    assert_eq!(
        ids,
        [2047, 2048, 2049].map(|i| (before + 1 + i as i64, format!("req-{i}"), format!("{{\"i\":{i}}}"))).to_vec()
    );
}

pub async fn a_failing_audit_batch_loses_nothing(kind: Kind) {
    let e = env(kind).await;
    let s = &e.store;
    s.create_directory(&actor(), "acme").await.unwrap();
    let before = head_seq(s).await;

    // Every insert fails: every waiter of every batch hears of it; nothing is written.
    match kind {
        Kind::Sqlite => {
            e.exec("CREATE TRIGGER block BEFORE INSERT ON audit_log BEGIN SELECT RAISE(ABORT, 'blocked'); END;").await
        }
        Kind::Postgres => {
            e.exec("CREATE FUNCTION block_audit() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'blocked'; END; $$").await;
            e.exec("CREATE TRIGGER block BEFORE INSERT ON audit_log FOR EACH ROW EXECUTE FUNCTION block_audit()").await;
        }
    }
    let results = submit_all(&e, (0..50).map(|i| event("test.blocked", i)).collect()).await;
    for (i, r) in results.iter().enumerate() {
        match r {
            // The database's own message goes to the server log, not to callers.
            Err(StoreError::AuditUnavailable(why)) => assert_eq!(why.to_string(), "configuration: database error"),
            other => panic!("record {i}: expected AuditUnavailable, got {other:?}"),
        }
    }
    assert_eq!((head_seq(s).await, rows(&e).await), (before, before), "nothing of the failed batches remains");

    // One poisoned record fails its whole batch, and only the records reported written are.
    match kind {
        Kind::Sqlite => {
            e.exec("DROP TRIGGER block; CREATE TRIGGER poison BEFORE INSERT ON audit_log WHEN NEW.action = 'test.poison' BEGIN SELECT RAISE(ABORT, 'poisoned'); END;").await
        }
        Kind::Postgres => {
            e.exec("DROP TRIGGER block ON audit_log").await;
            e.exec("CREATE FUNCTION poison_audit() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN IF NEW.action = 'test.poison' THEN RAISE EXCEPTION 'poisoned'; END IF; RETURN NEW; END; $$").await;
            e.exec("CREATE TRIGGER poison BEFORE INSERT ON audit_log FOR EACH ROW EXECUTE FUNCTION poison_audit()")
                .await;
        }
    }
    let events = (0..60).map(|i| event(if i == 30 { "test.poison" } else { "test.mixed" }, i)).collect();
    let results = submit_all(&e, events).await;
    assert!(matches!(results[30], Err(StoreError::AuditUnavailable(_))), "{:?}", results[30]);
    let written: Vec<(usize, i64)> =
        results.iter().enumerate().filter_map(|(i, r)| r.as_ref().ok().map(|seq| (i, *seq))).collect();
    let head = head_seq(s).await;
    assert_eq!(head - before, written.len() as i64, "as many records as waiters were told");
    let f =
        AuditFilter { action: Some("test.mixed".into()), after_seq: Some(before), limit: 100, ..Default::default() };
    let stored: Vec<(usize, i64)> = s
        .audit_records(&f)
        .await
        .unwrap()
        .iter()
        .map(|r| (r.request_id.as_deref().unwrap()["req-".len()..].parse().unwrap(), r.seq))
        .collect();
    assert_eq!(stored, written, "each reported record at its reported place, and nothing else");

    // The writer carries on once the cause is gone.
    match kind {
        Kind::Sqlite => e.exec("DROP TRIGGER poison").await,
        Kind::Postgres => e.exec("DROP TRIGGER poison ON audit_log").await,
    }
    let results = submit_all(&e, (0..10).map(|i| event("test.after", i)).collect()).await;
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    let rep = verify(s).await.unwrap();
    assert_eq!(rep.records, head + 10);
    assert_eq!(rows(&e).await, head + 10);
}
