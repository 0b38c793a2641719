//! SCIM PATCH on the real binary: RFC 7644 §3.5.2's SHALLs under a `generic` trust, the
//! departures Entra needs under an `entra` trust, Okta's shapes under an `okta` trust, and
//! PATCHes that change nothing: no write, so no new version, no new `lastModified`, no
//! outbox row, no `scim.replace` record — but an access record, like any request.

#[allow(unused_imports)]
use super::*;

use reqwest::Method as M;

/// A new inbound trust of `peer_kind` in directory `acme`; its provisioning key.
async fn trust_key(s: &Server, name: &str, peer_kind: &str) -> String {
    let body = json!({"name": name, "direction": "inbound", "peer_kind": peer_kind});
    let (st, v) = s.api(M::POST, "/api/v1/directories/acme/trusts", Some(&s.token), Some(body)).await;
    assert_eq!(st, 201, "{v}");
    v["key"].as_str().unwrap().to_owned()
}

/// How many audit records of `action` (with `outcome`, when given) there are.
async fn audit_count(s: &Server, action: &str, outcome: Option<&str>) -> usize {
    let (st, v) = s.api(M::GET, &format!("/api/v1/audit?action={action}&limit=1000"), Some(&s.token), None).await;
    assert_eq!(st, 200, "{v}");
    v["records"].as_array().unwrap().iter().filter(|r| outcome.is_none_or(|o| r["outcome"] == o)).count()
}

/// `meta.version`, `meta.lastModified` and the ETag header of a resource as read.
async fn stamp(c: &Scim<'_>, path: &str) -> (Value, Value, Option<String>) {
    let r = c.get(path).await;
    assert_eq!(r.status, 200, "{}", r.body);
    (r.body["meta"]["version"].clone(), r.body["meta"]["lastModified"].clone(), r.header("etag"))
}

async fn create(c: &Scim<'_>, endpoint: &str, body: Value) -> String {
    let r = c.post(endpoint, body).await;
    assert_eq!(r.status, 201, "{}", r.body);
    r.body["id"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_op_patches_leave_version_last_modified_and_outbox_untouched() {
    for b in backends() {
        let (s, key) = scim_server(b, None).await;
        let c = Scim { s: &s, dir: "acme".into(), key };
        let ann = create(&c, "/Users", json!({"userName": "ann@x.com"})).await;
        let bob = create(&c, "/Users", json!({"userName": "bob@x.com"})).await;
        let user = create(
            &c,
            "/Users",
            json!({"userName": "cy@x.com", "displayName": "Cy", "active": true, "name": {"givenName": "Cy"},
                   "emails": [{"value": "cy@x.com", "type": "work", "primary": true}]}),
        )
        .await;
        let group = create(&c, "/Groups", json!({"displayName": "eng", "members": [{"value": ann}]})).await;
        let (up, gp) = (format!("/Users/{user}"), format!("/Groups/{group}"));
        let (user0, group0) = (stamp(&c, &up).await, stamp(&c, &gp).await);
        let outbox0 = s.sync_status("acme").await["outbox"].clone();
        assert!(outbox0.as_i64().unwrap() > 0, "the creates are in the outbox: {outbox0}");
        let (replaces0, access0) =
            (audit_count(&s, "scim.replace", None).await, audit_count(&s, "key.authenticate", Some("success")).await);
        // Any write from now on would carry a later lastModified.
        s.advance("1h").await;

        let no_ops: [(&str, Value); 9] = [
            // RFC 7644 §3.5.2.1: adding what the group already has (as Entra re-sends it).
            (&gp, json!([{"op": "add", "path": "members", "value": [{"value": ann}]}])),
            (&gp, json!([{"op": "add", "path": "members", "value": [{"$ref": null, "value": ann, "type": "User"}]}])),
            (&gp, json!([{"op": "replace", "path": "displayName", "value": "eng"}])),
            // A replace with the same value, with and without a path.
            (&up, json!([{"op": "replace", "path": "active", "value": true}])),
            (&up, json!([{"op": "replace", "value": {"displayName": "Cy", "name": {"givenName": "Cy"}}}])),
            (&up, json!([{"op": "add", "path": "emails", "value": [{"value": "CY@x.com", "type": "work"}]}])),
            // Removing what is absent, without a filter.
            (&up, json!([{"op": "remove", "path": "title"}])),
            (&up, json!([{"op": "remove", "path": "name.middleName"}])),
            (
                &up,
                json!([{"op": "remove", "path": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager"}]),
            ),
        ];
        for (path, ops) in &no_ops {
            let before = if *path == up { &user0 } else { &group0 };
            let r = c.patch(path, ops.clone()).await;
            assert_eq!(r.status, 200, "{b:?} {ops}: {}", r.body);
            assert_eq!(
                (&r.body["meta"]["version"], &r.body["meta"]["lastModified"], r.header("etag").as_ref()),
                (&before.0, &before.1, before.2.as_ref()),
                "{b:?} {ops}"
            );
        }
        assert_eq!(stamp(&c, &up).await, user0, "{b:?}");
        assert_eq!(stamp(&c, &gp).await, group0, "{b:?}");
        let g = c.get(&gp).await.body;
        assert_eq!(g["members"].as_array().unwrap().len(), 1, "{g}");
        assert_eq!(s.sync_status("acme").await["outbox"], outbox0, "{b:?}: no outbox row");
        assert_eq!(audit_count(&s, "scim.replace", None).await, replaces0, "{b:?}: no resource write");
        // Each no-op was still authenticated and recorded as an access.
        let access = audit_count(&s, "key.authenticate", Some("success")).await;
        assert!(access >= access0 + no_ops.len(), "{b:?}: {access0} then {access}");

        // A PATCH that does change something moves all three (so the checks above can fail).
        let r =
            c.patch(&gp, json!([{"op": "add", "path": "members", "value": [{"value": ann}, {"value": bob}]}])).await;
        assert_eq!(r.status, 200, "{}", r.body);
        let group1 = stamp(&c, &gp).await;
        assert_ne!(group1.0, group0.0, "{b:?}: a new version");
        assert_ne!(group1.1, group0.1, "{b:?}: a new lastModified");
        assert_ne!(group1.2, group0.2, "{b:?}: a new ETag");
        assert_ne!(s.sync_status("acme").await["outbox"], outbox0, "{b:?}: an outbox row");
        assert_eq!(audit_count(&s, "scim.replace", None).await, replaces0 + 1, "{b:?}");
    }
}

/// The three cases where fedkey departed from a SHALL for every client, now RFC 7644 under
/// `generic`, and each of Entra's departures: refused under `generic` (and `okta`) with
/// the RFC's scimType and nothing written, accepted under `entra`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generic_trusts_get_rfc_7644_and_entra_trusts_their_departures() {
    const ENTERPRISE: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
    for b in backends() {
        let (s, key) = scim_server(b, None).await;
        let generic = Scim { s: &s, dir: "acme".into(), key };
        let entra = Scim { s: &s, dir: "acme".into(), key: trust_key(&s, "entra", "entra").await };
        let okta = Scim { s: &s, dir: "acme".into(), key: trust_key(&s, "okta", "okta").await };
        let boss = create(&generic, "/Users", json!({"userName": "boss@x.com"})).await;
        let ann = create(&generic, "/Users", json!({"userName": "ann@x.com"})).await;
        let user = create(
            &generic,
            "/Users",
            json!({"userName": "cy@x.com", "active": true,
                   "emails": [{"value": "cy@x.com", "type": "work", "primary": true}]}),
        )
        .await;
        let group = create(&generic, "/Groups", json!({"displayName": "eng", "members": [{"value": ann}]})).await;
        let (up, gp) = (format!("/Users/{user}"), format!("/Groups/{group}"));

        // §3.5.2.3: an unmatched value filter on replace is 400 noTarget.
        let fax = json!([{"op": "replace", "path": "emails[type eq \"fax\"].value", "value": "+1 555 0100"}]);
        // §3.5.2.2: removing a required attribute is 400 mutability.
        let no_name = json!([{"op": "remove", "path": "userName"}]);
        let refused: Vec<(&str, Value, &str)> = vec![
            (&up, fax.clone(), "noTarget"),
            (&up, no_name.clone(), "mutability"),
            (&gp, json!([{"op": "remove", "path": "displayName"}]), "mutability"),
            // Entra's departures.
            (&up, json!([{"op": "Replace", "path": "active", "value": false}]), "invalidSyntax"),
            (&up, json!([{"op": "replace", "path": "active", "value": "False"}]), "invalidValue"),
            (&gp, json!([{"op": "remove", "path": "members", "value": [{"value": ann}]}]), "invalidSyntax"),
            (&up, json!([{"op": "add", "path": "manager", "value": {"value": boss}}]), "invalidPath"),
            (&up, json!([{"op": "add", "path": format!("{ENTERPRISE}:manager"), "value": boss}]), "invalidValue"),
        ];
        let (user0, group0) = (stamp(&generic, &up).await, stamp(&generic, &gp).await);
        for (path, ops, scim_type) in &refused {
            for c in [&generic, &okta] {
                assert_scim_error(&c.patch(path, ops.clone()).await, 400, Some(*scim_type));
            }
        }
        assert_eq!((stamp(&generic, &up).await, stamp(&generic, &gp).await), (user0, group0), "{b:?}: nothing written");
        let u = generic.get(&up).await.body;
        assert_eq!((u["emails"].as_array().unwrap().len(), &u["active"]), (1, &json!(true)), "{u}");

        // Under `entra`, the departures are taken; removing userName stays refused.
        assert_scim_error(&entra.patch(&up, no_name).await, 400, Some("mutability"));
        let r = entra.patch(&up, fax).await;
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(r.body["emails"][1], json!({"type": "fax", "value": "+1 555 0100"}), "{}", r.body);
        let r = entra.patch(&up, json!([{"op": "Replace", "path": "active", "value": "False"}])).await;
        assert_eq!((r.status, &r.body["active"]), (200, &json!(false)), "{}", r.body);
        let r = entra.patch(&up, json!([{"op": "Add", "path": "manager", "value": boss}])).await;
        assert_eq!((r.status, &r.body[ENTERPRISE]["manager"]["value"]), (200, &json!(boss)), "{}", r.body);
        let r = entra.patch(&gp, json!([{"op": "Remove", "path": "members", "value": [{"value": ann}]}])).await;
        assert_eq!(r.status, 200, "{}", r.body);
        assert!(r.body.get("members").is_none(), "only the named member, the only one, is gone: {}", r.body);

        // Okta's shapes are RFC requests: they pass under `okta` (and `generic`).
        for c in [&okta, &generic] {
            let r = c
                .patch(
                    &gp,
                    json!([{"op": "replace", "value": {"id": group, "displayName": "eng"}},
                           {"op": "remove", "path": format!("members[value eq \"{boss}\"]")},
                           {"op": "add", "path": "members", "value": [{"value": ann, "display": "ann@x.com"}]}]),
                )
                .await;
            assert_eq!(r.status, 200, "{}", r.body);
            assert_eq!(r.body["members"][0]["value"], ann.as_str(), "{}", r.body);
            let r = c.patch(&gp, json!([{"op": "replace", "path": "members", "value": []}])).await;
            assert_eq!(r.status, 200, "{}", r.body);
            assert!(r.body.get("members").is_none(), "{}", r.body);
            let r = c.patch(&up, json!([{"op": "replace", "value": {"active": true}}])).await;
            assert_eq!((r.status, &r.body["active"]), (200, &json!(true)), "{}", r.body);
        }
    }
}
