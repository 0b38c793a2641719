//! Connection settings and what a database that cannot take a request says (both backends).

use std::time::Duration;

use fedkey_store::{Db, DbOptions, StoreError};
use sqlx::Row;

use super::{Kind, TestDb};

/// The pool size applies on both backends; on PostgreSQL every session gets the statement
/// timeout and TCP keepalive, and a statement cut off by the timeout is "unavailable" (a
/// 503 for its client), not an internal error.
pub async fn connection_settings_reach_every_session(kind: Kind) {
    let t = TestDb::new(kind).await;
    let options = DbOptions {
        pool_size: Some(3),
        connect_timeout: Some(Duration::from_secs(5)),
        statement_timeout: Some(Duration::from_millis(300)),
        tcp_keepalive: Some(Duration::from_secs(30)),
    };
    let db = Db::connect_with(&t.url, &options).await.unwrap();
    assert_eq!(db.pool().options().get_max_connections(), 3);
    assert_eq!(db.pool().options().get_acquire_timeout(), Duration::from_secs(5));
    if kind == Kind::Sqlite {
        return;
    }
    // Every connection of the pool at once, so each one's session is checked.
    let mut conns = Vec::new();
    for _ in 0..3 {
        conns.push(db.pool().acquire().await.unwrap());
    }
    for c in &mut conns {
        let show = |name: &'static str| sqlx::query(name);
        let timeout: String = show("SHOW statement_timeout").fetch_one(&mut **c).await.unwrap().get(0);
        let idle: String = show("SHOW tcp_keepalives_idle").fetch_one(&mut **c).await.unwrap().get(0);
        let count: String = show("SHOW tcp_keepalives_count").fetch_one(&mut **c).await.unwrap().get(0);
        assert_eq!((timeout.as_str(), idle.as_str(), count.as_str()), ("300ms", "30", "3"));
    }
    drop(conns);
    let slow = sqlx::query("SELECT pg_sleep(2)").execute(db.pool()).await.map_err(StoreError::from).unwrap_err();
    assert!(slow.is_unavailable(), "a statement timeout is a database unavailable now: {slow:?}");
    let conflict = StoreError::Conflict("user".into());
    assert!(!conflict.is_unavailable());
    db.close().await;
}
