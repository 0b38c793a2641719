//! Console sessions (both backends): only the id's hash is stored; idle and absolute
//! limits follow the clock; revoking the admin token or signing out ends a session, and
//! another node sees the same sessions.

use std::sync::Arc;
use std::time::Duration;

use fedkey_core::Role;
use fedkey_store::auth::RequestMeta;
use fedkey_store::ops::console::{CONSOLE_ABSOLUTE, CONSOLE_IDLE};
use sqlx::Row;

use super::{Kind, TestDb, actor, env_on, open_store};

pub async fn console_sessions_end_on_time_and_on_revocation(kind: Kind) {
    let e = env_on(TestDb::new(kind).await).await;
    let s = &e.store;
    let meta = RequestMeta::default();
    let (_, token) = s.create_admin_token(&actor(), "ops", Role::Operator, None).await.unwrap();
    let who = s.authenticate_admin(Some(token.expose()), &meta).await.unwrap().unwrap();

    let opened = s.open_console_session(&who, &meta).await.unwrap();
    let id = opened.id.expose().to_owned();
    assert_eq!(id.len(), 64);
    // Only the hash is stored.
    let stored: Vec<u8> = sqlx::query("SELECT id_hash FROM console_sessions")
        .fetch_one(s.raw_for_tests().pool())
        .await
        .unwrap()
        .try_get("id_hash")
        .unwrap();
    assert_eq!(stored, fedkey_crypto::sha256(id.as_bytes()).to_vec());
    let live = s.console_session(&id).await.unwrap().expect("a live session");
    assert_eq!((live.principal.name.as_str(), live.principal.role), ("ops", Role::Operator));
    assert_eq!(live.csrf.len(), 64);
    assert!(s.console_session("not-a-session").await.unwrap().is_none());
    assert!(s.console_session(&"0".repeat(64)).await.unwrap().is_none());

    // Another node reads the same session.
    let other = Arc::new(open_store(&e.t.url, e.keyring.clone(), &e.clock, Duration::from_secs(60)).await);
    assert!(other.console_session(&id).await.unwrap().is_some());

    // Activity keeps it alive past the idle limit, up to the absolute limit.
    let step = CONSOLE_IDLE - Duration::from_secs(120);
    let mut elapsed = Duration::ZERO;
    while elapsed + step < CONSOLE_ABSOLUTE {
        e.clock.advance(step);
        elapsed += step;
        assert!(s.console_session(&id).await.unwrap().is_some(), "alive after {elapsed:?}");
    }
    e.clock.advance(CONSOLE_ABSOLUTE - elapsed);
    assert!(s.console_session(&id).await.unwrap().is_none(), "absolute limit");

    // Idle: an hour without a request ends it.
    let idle = s.open_console_session(&who, &meta).await.unwrap();
    e.clock.advance(CONSOLE_IDLE);
    assert!(s.console_session(idle.id.expose()).await.unwrap().is_none(), "idle limit");

    // Sign-out deletes it; a second sign-out finds nothing.
    let out = s.open_console_session(&who, &meta).await.unwrap();
    assert!(s.close_console_session(out.id.expose(), &actor()).await.unwrap());
    assert!(!s.close_console_session(out.id.expose(), &actor()).await.unwrap());
    assert!(s.console_session(out.id.expose()).await.unwrap().is_none());

    // Revoking the token ends its sessions at once.
    let rev = s.open_console_session(&who, &meta).await.unwrap();
    assert!(s.console_session(rev.id.expose()).await.unwrap().is_some());
    s.revoke_admin_token(&actor(), "ops").await.unwrap();
    assert!(s.console_session(rev.id.expose()).await.unwrap().is_none());
}
