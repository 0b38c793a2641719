//! The watcher against a local IdP serving SAML metadata through a certificate rollover.

use std::time::Duration;

use fedkey_federation::{MaterialKind, ParseError, RefreshError, Source, WatchEvent};

use crate::idp::{Idp, T0, clock, watcher};
use crate::keys::{cert_fingerprint, certificate, saml_metadata};

const ENTITY: &str = "https://idp.test/saml";

fn source(idp: &Idp) -> Source {
    Source::SamlMetadata { url: idp.saml_url(), expected_entity_id: Some(ENTITY.into()) }
}

#[tokio::test]
async fn certificate_rollover_with_overlap_is_accepted_and_a_new_set_held() {
    let idp = Idp::start().await;
    let (c1, c2, c3) = (certificate(), certificate(), certificate());
    let valid_until = T0.saturating_add(Duration::from_secs(7 * 86400));
    idp.set_saml(saml_metadata(ENTITY, &[&c1], Some(valid_until), Some("PT1H")));
    let clock = clock();
    let w = watcher(source(&idp), &clock, |_| {});

    let Some(WatchEvent::Accepted { material }) = w.refresh_if_due().await else { panic!("first fetch") };
    assert_eq!(material.kind, MaterialKind::SamlMetadata);
    assert_eq!(material.issuer.as_deref(), Some(ENTITY));
    assert_eq!(material.keys.len(), 1, "the encryption certificate is not a signing key");
    assert_eq!(material.keys[0].fingerprint, cert_fingerprint(&c1));
    assert_eq!(material.refresh_at, T0.saturating_add(Duration::from_secs(2700)), "0.75 × PT1H");
    assert_eq!(material.expires_at, valid_until, "validUntil is the hard expiry");

    // Rollover: both certificates published at once, then only the new one.
    for (certs, expected) in [(vec![&c1[..], &c2[..]], 2), (vec![&c2[..]], 1)] {
        idp.set_saml(saml_metadata(ENTITY, &certs, Some(valid_until), Some("PT1H")));
        clock.advance(Duration::from_secs(2700));
        let Some(WatchEvent::Accepted { material }) = w.refresh_if_due().await else {
            panic!("rollover step not accepted")
        };
        assert_eq!(material.keys.len(), expected);
    }
    assert_eq!(w.valid_keys()[0].fingerprint, cert_fingerprint(&c2));

    // A certificate never seen before, alone: held.
    idp.set_saml(saml_metadata(ENTITY, &[&c3], Some(valid_until), Some("PT1H")));
    clock.advance(Duration::from_secs(2700));
    assert!(matches!(w.refresh_if_due().await, Some(WatchEvent::Held { .. })));
    assert_eq!(w.valid_keys()[0].fingerprint, cert_fingerprint(&c2));
    assert_eq!(idp.saml_hits(), 4);
}

#[tokio::test]
async fn metadata_expires_at_valid_until_even_when_every_fetch_fails() {
    let idp = Idp::start().await;
    let c1 = certificate();
    let valid_until = T0.saturating_add(Duration::from_secs(2 * 3600));
    idp.set_saml(saml_metadata(ENTITY, &[&c1], Some(valid_until), Some("PT6H")));
    let clock = clock();
    let w = watcher(source(&idp), &clock, |_| {});
    let Some(WatchEvent::Accepted { material }) = w.refresh_if_due().await else { panic!() };
    // cacheDuration (6 h) is longer than what is left (2 h): refresh at 0.75 × 2 h.
    assert_eq!(material.refresh_at, T0.saturating_add(Duration::from_secs(5400)));

    idp.set_mode(crate::idp::Mode::Status500);
    clock.advance(Duration::from_secs(5400));
    assert!(matches!(w.refresh_if_due().await, Some(WatchEvent::FetchFailed { kept_last_known_good: true, .. })));
    assert_eq!(w.valid_keys().len(), 1);

    clock.set(valid_until);
    assert!(matches!(w.refresh_if_due().await, Some(WatchEvent::Expired { .. })));
    assert!(w.valid_keys().is_empty());
    // Reported once only.
    assert!(matches!(
        w.refresh_if_due().await,
        Some(WatchEvent::FetchFailed { kept_last_known_good: false, .. }) | None
    ));
    assert!(!matches!(w.refresh_if_due().await, Some(WatchEvent::Expired { .. })));

    // The IdP serves metadata whose validUntil has passed: rejected as expired.
    idp.set_mode(crate::idp::Mode::Normal);
    clock.advance(Duration::from_secs(3600));
    let Some(WatchEvent::FetchFailed { error, .. }) = w.refresh_if_due().await else { panic!() };
    assert!(matches!(error, RefreshError::Parse(ParseError::Expired { .. })), "{error}");
}

#[tokio::test]
async fn hostile_metadata_is_rejected_without_harm() {
    let idp = Idp::start().await;
    let c1 = certificate();
    let good = saml_metadata(ENTITY, &[&c1], None, Some("PT1H"));
    idp.set_saml(good.clone());
    let clock = clock();
    let w = watcher(source(&idp), &clock, |_| {});
    assert!(matches!(w.refresh_if_due().await, Some(WatchEvent::Accepted { .. })));

    let laughs = format!(
        "<?xml version=\"1.0\"?>\n<!DOCTYPE lolz [<!ENTITY lol \"lol\"><!ENTITY lol2 \"&lol;&lol;&lol;&lol;&lol;\">]>\n{}",
        good.split_once("?>\n").unwrap().1.replace(ENTITY, "&lol2;")
    );
    let external =
        good.replacen("<md:EntityDescriptor", "<!DOCTYPE x SYSTEM \"file:///etc/passwd\">\n<md:EntityDescriptor", 1);
    let b64 = base64_of(&c1);
    let bad_b64 = good.replace(&b64[..64], "!!!! definitely not base64 !!!! definitely not base64 !!!!!!!!!");
    let not_a_cert = saml_metadata(ENTITY, &[b"this is not DER at all".as_slice()], None, Some("PT1H"));
    let deep = good
        .replace("<md:NameIDFormat>", &format!("{}<md:NameIDFormat>", "<x>".repeat(100)))
        .replace("</md:NameIDFormat>", &format!("</md:NameIDFormat>{}", "</x>".repeat(100)));
    let other_entity = saml_metadata("https://attacker.test/saml", &[&c1], None, Some("PT1H"));
    let no_validity = saml_metadata(ENTITY, &[&c1], None, None);
    let cases: Vec<(&str, String)> = vec![
        ("billion laughs", laughs),
        ("external entity", external),
        ("invalid base64", bad_b64),
        ("not a certificate", not_a_cert),
        ("deeply nested", deep),
        ("other entity", other_entity),
        ("no validity", no_validity),
        ("truncated", good[..good.len() / 2].to_string()),
        ("huge", format!("{good}<!--{}-->", "x".repeat(300 * 1024))),
    ];
    for (name, doc) in cases {
        idp.set_saml(doc);
        clock.advance(Duration::from_secs(3600));
        let Some(WatchEvent::FetchFailed { error, kept_last_known_good, .. }) = w.refresh_if_due().await else {
            panic!("{name}: not rejected")
        };
        assert!(kept_last_known_good, "{name}");
        let ok = match name {
            "billion laughs" | "external entity" => matches!(error, RefreshError::Parse(ParseError::DocType)),
            "invalid base64" | "not a certificate" => {
                matches!(error, RefreshError::Parse(ParseError::BadCertificate { .. }))
            }
            "deeply nested" => matches!(error, RefreshError::Parse(ParseError::TooDeep { limit: 64 })),
            "other entity" => matches!(error, RefreshError::IssuerMismatch { .. }),
            "no validity" => matches!(error, RefreshError::Parse(ParseError::MissingValidity)),
            "truncated" => matches!(error, RefreshError::Parse(ParseError::Xml(_))),
            "huge" => matches!(error, RefreshError::Fetch(fedkey_federation::FetchError::TooLarge { .. })),
            _ => false,
        };
        assert!(ok, "{name}: unexpected error {error}");
    }
    assert_eq!(w.current().unwrap().keys[0].fingerprint, cert_fingerprint(&c1));
}

fn base64_of(der: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(der)
}
