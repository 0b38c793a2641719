//! The watcher against a local IdP serving a rotating JWKS.

use std::time::Duration;

use fedkey_federation::{FetchError, KeyLookupError, Material, ParseError, RefreshError, Source, WatchEvent};

use crate::idp::{Idp, Mode, T0, clock, watcher, watcher_with_timeout};
use crate::keys::{TestKey, jwks};

fn kids(m: &Material) -> Vec<String> {
    m.keys.iter().filter_map(|k| k.kid.clone()).collect()
}

fn discovery(idp: &Idp) -> Source {
    Source::OidcDiscovery { url: idp.discovery_url(), expected_issuer: Some(idp.base.clone()) }
}

#[tokio::test]
async fn overlapping_rotation_is_accepted_and_a_disjoint_set_is_held_for_approval() {
    let idp = Idp::start().await;
    let (a, b, c, d) = (TestKey::rsa("a"), TestKey::ec("b"), TestKey::ed("c"), TestKey::ed("d"));
    idp.set_jwks(jwks(&[&a]));
    let clock = clock();
    let w = watcher(discovery(&idp), &clock, |_| {});

    // First fetch: nothing to compare with, accepted. Cache-Control max-age=600 → refresh at 450 s.
    let Some(WatchEvent::Accepted { material }) = w.refresh_if_due().await else { panic!("first fetch not accepted") };
    assert_eq!(kids(&material), ["a"]);
    assert_eq!(material.issuer.as_deref(), Some(idp.base.as_str()));
    assert_eq!(material.refresh_at, T0.saturating_add(Duration::from_secs(450)));
    assert_eq!(material.expires_at, T0.saturating_add(Duration::from_secs(24 * 3600)));
    assert_eq!((idp.discovery_hits(), idp.jwks_hits()), (1, 1));

    // Not due yet: no fetch.
    clock.advance(Duration::from_secs(449));
    assert_eq!(w.refresh_if_due().await, None);
    assert_eq!(idp.jwks_hits(), 1);

    // Rotation with overlap (a stays, b arrives): accepted automatically.
    idp.set_jwks(jwks(&[&a, &b]));
    clock.advance(Duration::from_secs(1));
    let Some(WatchEvent::Accepted { material }) = w.refresh_if_due().await else { panic!("overlap not accepted") };
    assert_eq!(kids(&material), ["a", "b"]);
    assert_eq!(w.valid_keys().len(), 2);

    // Same document again: unchanged, with refreshed times.
    clock.advance(Duration::from_secs(450));
    let Some(WatchEvent::Unchanged { material }) = w.refresh_if_due().await else { panic!("expected unchanged") };
    assert_eq!(material.fetched_at, clock_now(&clock));

    // No key in common: held, the current set stays in force.
    idp.set_jwks(jwks(&[&c]));
    clock.advance(Duration::from_secs(450));
    let Some(WatchEvent::Held { material }) = w.refresh_if_due().await else { panic!("disjoint set not held") };
    assert_eq!(kids(&material), ["c"]);
    assert_eq!(kids(&w.current().unwrap()), ["a", "b"]);
    assert_eq!(w.pending().map(|m| kids(&m)), Some(vec!["c".to_string()]));
    assert!(w.key_for_kid("a").await.is_ok());

    // Fetched again while waiting: reported as still held, not as a new hold.
    clock.advance(Duration::from_secs(450));
    assert!(matches!(w.refresh_if_due().await, Some(WatchEvent::StillHeld { .. })));

    // An operator approves: c becomes current, a and b are gone.
    let approved = w.approve_pending().unwrap();
    assert_eq!(kids(&approved), ["c"]);
    assert_eq!(kids(&w.current().unwrap()), ["c"]);
    assert_eq!(w.pending(), None);
    assert_eq!(w.valid_keys().len(), 1);

    // Another disjoint set, rejected this time: nothing changes.
    idp.set_jwks(jwks(&[&d]));
    clock.advance(Duration::from_secs(450));
    assert!(matches!(w.refresh_if_due().await, Some(WatchEvent::Held { .. })));
    assert_eq!(w.reject_pending().map(|m| kids(&m)), Some(vec!["d".to_string()]));
    assert_eq!(w.pending(), None);
    assert_eq!(kids(&w.current().unwrap()), ["c"]);
    assert_eq!(w.approve_pending(), None);

    // An operator's "refresh now" fetches whatever the schedule says.
    let hits = idp.jwks_hits();
    assert!(matches!(w.refresh_now().await, WatchEvent::StillHeld { .. } | WatchEvent::Held { .. }));
    assert_eq!(idp.jwks_hits(), hits + 1);
}

fn clock_now(c: &fedkey_core::clock::ManualClock) -> fedkey_core::clock::Timestamp {
    use fedkey_core::clock::Clock;
    c.now()
}

#[tokio::test]
async fn cache_control_sets_the_cadence_within_bounds() {
    let idp = Idp::start().await;
    let a = TestKey::ed("a");
    idp.set_jwks(jwks(&[&a]));
    let clock = clock();
    let w = watcher(Source::Jwks { url: idp.jwks_url(), issuer: None }, &clock, |_| {});

    idp.set_cache_control(Some("no-store"));
    let Some(WatchEvent::Accepted { material }) = w.refresh_if_due().await else { panic!() };
    assert_eq!(material.refresh_at, T0.saturating_add(Duration::from_secs(30)), "no-store → the 30 s minimum");

    idp.set_cache_control(Some("max-age=86400"));
    clock.advance(Duration::from_secs(30));
    assert!(matches!(w.refresh_if_due().await, Some(WatchEvent::Unchanged { .. })));
    assert_eq!(w.next_fetch_at(), clock_now(&clock).saturating_add(Duration::from_secs(4 * 3600)), "clamped to 4 h");

    idp.set_cache_control(None);
    clock.advance(Duration::from_secs(4 * 3600));
    assert!(matches!(w.refresh_if_due().await, Some(WatchEvent::Unchanged { .. })));
    assert_eq!(w.next_fetch_at(), clock_now(&clock).saturating_add(Duration::from_secs(2700)), "default 1 h × 0.75");
    assert_eq!(idp.jwks_hits(), 3);
}

#[tokio::test]
async fn last_known_good_survives_500_and_timeouts_until_its_hard_expiry() {
    let idp = Idp::start().await;
    let (a, b) = (TestKey::rsa("a"), TestKey::ec("b"));
    idp.set_jwks(jwks(&[&a]));
    let clock = clock();
    let w = watcher_with_timeout(discovery(&idp), &clock, Duration::from_millis(300), |c| {
        c.refresh.max_stale = Duration::from_secs(2 * 3600);
    });
    assert!(matches!(w.refresh_if_due().await, Some(WatchEvent::Accepted { .. })));
    let expires_at = w.current().unwrap().expires_at;
    assert_eq!(w.next_wakeup(), T0.saturating_add(Duration::from_secs(450)), "the next fetch comes before expiry");

    // 500: the failure is reported, the last-known-good stays, retries back off.
    idp.set_mode(Mode::Status500);
    clock.advance(Duration::from_secs(450));
    let Some(WatchEvent::FetchFailed { error, kept_last_known_good, consecutive_failures, retry_at }) =
        w.refresh_if_due().await
    else {
        panic!("expected a failure")
    };
    assert!(matches!(error, RefreshError::Fetch(FetchError::Status { status: 500, .. })), "{error}");
    assert!(error.to_string().contains("500"), "{error}");
    assert!(kept_last_known_good);
    assert_eq!(consecutive_failures, 1);
    assert_eq!(retry_at, clock_now(&clock).saturating_add(Duration::from_secs(30)));
    assert_eq!(w.key_for_kid("a").await.unwrap().kid.as_deref(), Some("a"));

    clock.advance(Duration::from_secs(30));
    let Some(WatchEvent::FetchFailed { consecutive_failures: 2, retry_at, .. }) = w.refresh_if_due().await else {
        panic!()
    };
    assert_eq!(retry_at, clock_now(&clock).saturating_add(Duration::from_secs(60)), "backoff doubles");

    // A server that never answers: a timeout (300 ms real), still serving the old keys.
    idp.set_mode(Mode::Hang);
    clock.advance(Duration::from_secs(60));
    let Some(WatchEvent::FetchFailed { error, kept_last_known_good: true, consecutive_failures: 3, .. }) =
        w.refresh_if_due().await
    else {
        panic!("expected a timeout failure")
    };
    assert!(matches!(error, RefreshError::Fetch(FetchError::Timeout { .. })), "{error}");
    assert_eq!(w.valid_keys().len(), 1);

    // Past the hard expiry: reported once, and no key is valid any more (fail closed).
    idp.set_mode(Mode::Status500);
    assert!(w.next_wakeup() <= expires_at);
    clock.set(expires_at);
    let Some(WatchEvent::Expired { material }) = w.refresh_if_due().await else { panic!("expected expiry") };
    assert_eq!(kids(&material), ["a"]);
    assert!(w.valid_keys().is_empty());
    let Some(WatchEvent::FetchFailed { kept_last_known_good: false, .. }) = w.refresh_if_due().await else { panic!() };
    assert_eq!(w.key_for_kid("a").await, Err(KeyLookupError::NoValidMaterial));
    assert!(matches!(w.drain_events()[..], [WatchEvent::FetchFailed { kept_last_known_good: false, .. }]));

    // Expiry does not open the door: a disjoint set is still held, not accepted.
    idp.set_mode(Mode::Normal);
    idp.set_jwks(jwks(&[&b]));
    clock.advance(Duration::from_secs(3600));
    assert!(matches!(w.refresh_if_due().await, Some(WatchEvent::Held { .. })));
    assert!(w.valid_keys().is_empty());

    // The IdP publishes the known set again: good for another lifetime.
    idp.set_jwks(jwks(&[&a]));
    clock.advance(Duration::from_secs(3600));
    let Some(WatchEvent::Unchanged { material }) = w.refresh_if_due().await else { panic!("expected unchanged") };
    assert!(material.expires_at > clock_now(&clock));
    assert_eq!(w.valid_keys().len(), 1);
    assert_eq!(w.pending(), None, "the IdP no longer serves the held set");
    assert_eq!(w.consecutive_failures(), 0);
}

#[tokio::test]
async fn unknown_kid_refetches_once_for_concurrent_callers_then_cools_down() {
    let idp = Idp::start().await;
    let (a, b, c) = (TestKey::rsa("a"), TestKey::ec("b"), TestKey::ed("c"));
    idp.set_jwks(jwks(&[&a]));
    let clock = clock();
    let w = watcher(discovery(&idp), &clock, |_| {});
    assert!(matches!(w.refresh_if_due().await, Some(WatchEvent::Accepted { .. })));
    assert_eq!(idp.jwks_hits(), 1);

    // The IdP rotates b in; eight requests carrying kid b arrive at once: one fetch serves all.
    idp.set_jwks(jwks(&[&a, &b]));
    let lookups = (0..8).map(|_| w.key_for_kid("b"));
    let results = futures_util::future::join_all(lookups).await;
    assert!(results.iter().all(|r| r.as_ref().is_ok_and(|k| k.kid.as_deref() == Some("b"))), "{results:?}");
    assert_eq!(idp.jwks_hits(), 2, "single flight");
    let events = w.drain_events();
    assert_eq!(events.len(), 1);
    assert!(matches!(&events[0], WatchEvent::Accepted { material } if kids(material) == ["a", "b"]));
    assert!(w.drain_events().is_empty());

    // A kid nobody publishes: that refetch happened just now, so it is refused without a fetch.
    assert_eq!(w.key_for_kid("zz").await, Err(KeyLookupError::UnknownKid { kid: "zz".into() }));
    assert_eq!(idp.jwks_hits(), 2, "cooldown");

    // Past the cooldown, one refetch; then cooling down again, even for another kid.
    clock.advance(Duration::from_secs(5 * 60));
    assert!(matches!(w.key_for_kid("zz").await, Err(KeyLookupError::UnknownKid { .. })));
    assert_eq!(idp.jwks_hits(), 3);
    idp.set_jwks(jwks(&[&a, &b, &c]));
    clock.advance(Duration::from_secs(4 * 60));
    assert!(matches!(w.key_for_kid("c").await, Err(KeyLookupError::UnknownKid { .. })));
    assert_eq!(idp.jwks_hits(), 3);
    // Known kids never wait for anything.
    assert!(w.key_for_kid("a").await.is_ok());
    clock.advance(Duration::from_secs(60));
    assert_eq!(w.key_for_kid("c").await.unwrap().kid.as_deref(), Some("c"));
    assert_eq!(idp.jwks_hits(), 4);
}

#[tokio::test]
async fn discovery_naming_another_issuer_is_refused() {
    let idp = Idp::start().await;
    idp.set_jwks(jwks(&[&TestKey::ed("a")]));
    idp.set_issuer("https://attacker.test");
    let clock = clock();
    let w = watcher(discovery(&idp), &clock, |_| {});
    let Some(WatchEvent::FetchFailed { error, kept_last_known_good: false, .. }) = w.refresh_if_due().await else {
        panic!()
    };
    assert!(
        matches!(&error, RefreshError::IssuerMismatch { found, .. } if found == "https://attacker.test"),
        "{error}"
    );
    assert_eq!(idp.jwks_hits(), 0, "keys are not even fetched");
    assert_eq!(w.current(), None);
}

#[tokio::test]
async fn restored_material_is_the_reference_for_the_overlap_rule() {
    let idp = Idp::start().await;
    let (a, b) = (TestKey::rsa("a"), TestKey::ec("b"));
    idp.set_jwks(jwks(&[&a]));
    let clock = clock();
    let first = watcher(discovery(&idp), &clock, |_| {});
    let Some(WatchEvent::Accepted { material }) = first.refresh_if_due().await else { panic!() };
    // The store keeps versions as JSON.
    let stored = serde_json::to_string(&material).unwrap();
    drop(first);

    // After a restart the IdP serves a disjoint set: held, because the restored set is current.
    idp.set_jwks(jwks(&[&b]));
    clock.advance(Duration::from_secs(60));
    let second = watcher(discovery(&idp), &clock, |_| {});
    second.restore(serde_json::from_str::<Material>(&stored).unwrap());
    assert_eq!(second.valid_keys().len(), 1, "restored keys are usable at once");
    assert!(matches!(second.refresh_if_due().await, Some(WatchEvent::Held { .. })), "fetched at once after restore");
    assert_eq!(kids(&second.current().unwrap()), ["a"]);
}

#[tokio::test]
async fn hostile_jwks_documents_are_rejected_and_the_last_known_good_kept() {
    let idp = Idp::start().await;
    let a = TestKey::rsa("a");
    idp.set_jwks(jwks(&[&a]));
    let clock = clock();
    let w = watcher(Source::Jwks { url: idp.jwks_url(), issuer: Some("https://idp.test".into()) }, &clock, |_| {});
    assert!(matches!(w.refresh_if_due().await, Some(WatchEvent::Accepted { .. })));

    let mut private = a.jwk.clone();
    private["d"] = serde_json::Value::String("cHJpdmF0ZS1leHBvbmVudA".into());
    let cases: Vec<(&str, String)> = vec![
        ("deeply nested", format!("{{\"keys\":{}{}}}", "[".repeat(10_000), "]".repeat(10_000))),
        ("private key", serde_json::json!({ "keys": [private] }).to_string()),
        ("symmetric key", r#"{"keys":[{"kty":"oct","k":"c2VjcmV0"}]}"#.into()),
        ("not json", "<html>maintenance</html>".into()),
        ("huge", format!("{{\"keys\":[],\"pad\":\"{}\"}}", "x".repeat(300 * 1024))),
    ];
    for (name, doc) in cases {
        idp.set_jwks(doc);
        clock.advance(Duration::from_secs(3600));
        let Some(WatchEvent::FetchFailed { error, kept_last_known_good, .. }) = w.refresh_if_due().await else {
            panic!("{name}: not rejected")
        };
        assert!(kept_last_known_good, "{name}");
        match name {
            "deeply nested" => assert!(matches!(error, RefreshError::Parse(ParseError::TooDeep { .. })), "{error}"),
            "private key" => {
                assert!(matches!(error, RefreshError::Parse(ParseError::PrivateKeyMember { .. })), "{error}");
                assert!(!error.to_string().contains("cHJpdmF0ZS"), "the private value must not leak: {error}");
            }
            "symmetric key" => {
                assert!(matches!(error, RefreshError::Parse(ParseError::PrivateKeyMember { .. })), "{error}")
            }
            "not json" => assert!(matches!(error, RefreshError::Parse(ParseError::Json(_))), "{error}"),
            "huge" => assert!(matches!(error, RefreshError::Fetch(FetchError::TooLarge { .. })), "{error}"),
            _ => unreachable!(),
        }
    }
    // A body that never ends is cut at the cap while streaming, not buffered.
    idp.set_mode(Mode::Endless);
    clock.advance(Duration::from_secs(3600));
    let Some(WatchEvent::FetchFailed { error, .. }) = w.refresh_if_due().await else { panic!() };
    assert!(matches!(error, RefreshError::Fetch(FetchError::TooLarge { limit: 262_144, .. })), "{error}");
    assert_eq!(kids(&w.current().unwrap()), ["a"]);
}
