//! Requests on the wire (method, path, headers, body) and discovery.

use std::sync::Arc;
use std::time::Duration;

use fedkey_core::clock::{ManualClock, Timestamp};
use fedkey_crypto::Secret;
use fedkey_scim::schema::{ENTERPRISE_USER, USER};
use fedkey_sync::diff::{deactivate, group_members_patch, replacement_body, user_patch};
use fedkey_sync::mapping::{Desired, Mapping};
use fedkey_sync::{ClientError, ResourceKind, ScimClient, TargetConfig};
use serde_json::json;

use crate::fake::{BASE, Canned, Config, Fake, KEY};

/// The egress policy with nothing opened: the fakes listen on loopback, which a loopback URL may use.
pub fn egress() -> fedkey_egress::Egress {
    fedkey_egress::Egress::strict().unwrap()
}

pub fn clock() -> Arc<ManualClock> {
    Arc::new(ManualClock::new(Timestamp(1_700_000_000_000_000)))
}

pub fn client_for(fake: &Fake) -> ScimClient {
    let mut cfg = TargetConfig::bearer(fake.base_url.clone(), Secret::new(KEY.into()));
    cfg.timeout = Duration::from_secs(10);
    ScimClient::new(cfg, egress(), clock()).unwrap()
}

#[tokio::test]
async fn crud_requests_are_exact() {
    let fake = Fake::start(Config::default()).await;
    let c = client_for(&fake);
    let body = json!({"schemas": [USER], "externalId": "dir-1", "userName": "alice@x.com", "active": true});

    let created = c.create(ResourceKind::User, &body).await.unwrap();
    let r = fake.last();
    assert_eq!((r.method.as_str(), r.path.as_str()), ("POST", "/scim/v2/Users"));
    assert_eq!(r.header("content-type"), Some("application/scim+json"));
    assert_eq!(r.header("accept"), Some("application/scim+json, application/json"));
    assert_eq!(r.header("authorization"), Some(format!("Bearer {KEY}").as_str()));
    assert!(r.header("user-agent").unwrap().starts_with("fedkey/"));
    assert_eq!(r.json(), body);
    assert!(created.id.starts_with("t-"));
    assert_eq!(created.etag.as_deref(), Some("W/\"1\""));
    assert_eq!(created.body["userName"], "alice@x.com");

    let got = c.get(ResourceKind::User, &created.id).await.unwrap();
    let r = fake.last();
    assert_eq!(
        (r.method.as_str(), r.path.clone(), r.body.as_str()),
        ("GET", format!("{BASE}/Users/{}", created.id), "")
    );
    assert_eq!(r.header("content-type"), None);
    assert_eq!(got, created);

    // Lookup by externalId: the filter is a quoted, escaped SCIM string.
    assert_eq!(c.find_one(ResourceKind::User, "externalId", "dir-1").await.unwrap().unwrap().id, created.id);
    let weird = "we\"ird\\id";
    let other = c.create(ResourceKind::User, &json!({"externalId": weird, "userName": "bob"})).await.unwrap();
    fake.clear();
    let found = c.find_one(ResourceKind::User, "externalId", weird).await.unwrap().unwrap();
    assert_eq!(found.id, other.id);
    let r = fake.last();
    assert_eq!((r.method.as_str(), r.path.as_str()), ("GET", "/scim/v2/Users"));
    assert_eq!(r.query.get("filter").map(String::as_str), Some(r#"externalId eq "we\"ird\\id""#));
    assert!(c.find_one(ResourceKind::User, "externalId", "nobody").await.unwrap().is_none());
    // userName is caseExact=false at the target and in the client-side check.
    assert_eq!(c.find_one(ResourceKind::User, "userName", "ALICE@X.COM").await.unwrap().unwrap().id, created.id);

    // PATCH with If-Match: the body is an RFC 7644 PatchOp with lowercase ops.
    let desired = json!({"externalId": "dir-1", "userName": "alice@x.com", "active": false, "title": "CTO"});
    let m = Mapping::default().managed_user_attributes().unwrap();
    let ops = user_patch(&got.body, &desired, &m);
    let patched = c.patch(ResourceKind::User, &created.id, &ops, created.etag.as_deref()).await.unwrap().unwrap();
    let r = fake.last();
    assert_eq!((r.method.as_str(), r.path.clone()), ("PATCH", format!("{BASE}/Users/{}", created.id)));
    assert_eq!(r.header("if-match"), Some("W/\"1\""));
    assert_eq!(r.header("content-type"), Some("application/scim+json"));
    assert_eq!(
        r.json(),
        json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": [
            {"op": "add", "path": "title", "value": "CTO"},
            {"op": "replace", "path": "active", "value": false}]})
    );
    assert_eq!((patched.body["active"].clone(), patched.etag.as_deref()), (json!(false), Some("W/\"2\"")));
    // Nothing to change: nothing is sent.
    fake.clear();
    assert!(
        c.patch(ResourceKind::User, &created.id, &user_patch(&patched.body, &desired, &m), None)
            .await
            .unwrap()
            .is_none()
    );
    assert!(fake.requests().is_empty());

    // A stale version is a 412.
    let e = c.patch(ResourceKind::User, &created.id, &ops, Some("W/\"1\"")).await.unwrap_err();
    assert!(matches!(e, ClientError::PreconditionFailed { .. }), "{e:?}");

    // PUT for targets without PATCH.
    let replaced = c
        .replace(
            ResourceKind::User,
            &created.id,
            &json!({"externalId": "dir-1", "userName": "alice@x.com", "title": "CEO"}),
            Some("W/\"2\""),
        )
        .await
        .unwrap();
    let r = fake.last();
    assert_eq!((r.method.as_str(), r.header("if-match")), ("PUT", Some("W/\"2\"")));
    assert_eq!(r.json()["title"], "CEO");
    assert_eq!(replaced.body["title"], "CEO");

    // A duplicate create is a 409 uniqueness conflict.
    let e = c.create(ResourceKind::User, &json!({"userName": "ALICE@x.com"})).await.unwrap_err();
    assert_eq!(
        e,
        ClientError::Conflict { scim_type: Some("uniqueness".into()), detail: "userName is already taken".into() }
    );

    c.delete(ResourceKind::User, &created.id).await.unwrap();
    let r = fake.last();
    assert_eq!((r.method.as_str(), r.path.clone()), ("DELETE", format!("{BASE}/Users/{}", created.id)));
    assert!(matches!(c.get(ResourceKind::User, &created.id).await.unwrap_err(), ClientError::NotFound { .. }));
    assert!(matches!(c.delete(ResourceKind::User, &created.id).await.unwrap_err(), ClientError::NotFound { .. }));
}

#[tokio::test]
async fn groups_and_members() {
    let fake = Fake::start(Config::default()).await;
    let c = client_for(&fake);
    c.discover().await.unwrap();
    let u1 = c.create(ResourceKind::User, &json!({"userName": "u1"})).await.unwrap();
    let u2 = c.create(ResourceKind::User, &json!({"userName": "u2"})).await.unwrap();
    let desired = Mapping::default().desired_group(&json!({"id": "dg-1", "displayName": "Engineering"})).unwrap();
    let g = c.create(ResourceKind::Group, &desired).await.unwrap();
    assert_eq!(fake.last().path, "/scim/v2/Groups");
    assert_eq!(
        fake.last().json(),
        json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "externalId": "dg-1", "displayName": "Engineering"})
    );
    let ops = group_members_patch(&[], &[u1.id.clone(), u2.id.clone()]);
    c.patch(ResourceKind::Group, &g.id, &ops, None).await.unwrap();
    let ops = group_members_patch(&[u1.id.clone(), u2.id.clone()], std::slice::from_ref(&u2.id));
    let after = c.patch(ResourceKind::Group, &g.id, &ops, None).await.unwrap().unwrap();
    assert_eq!(
        fake.last().json()["Operations"],
        json!([{"op": "remove", "path": format!("members[value eq \"{}\"]", u1.id)}])
    );
    assert_eq!(after.body["members"], json!([{"value": u2.id}]));
}

#[tokio::test]
async fn a_204_patch_answer_is_accepted() {
    let fake = Fake::start(Config { patch_no_content: true, ..Config::default() }).await;
    let c = client_for(&fake);
    let u = c.create(ResourceKind::User, &json!({"userName": "u1"})).await.unwrap();
    let ops = user_patch(
        &u.body,
        &json!({"userName": "u1", "title": "x"}),
        &Mapping::default().managed_user_attributes().unwrap(),
    );
    assert_eq!(c.patch(ResourceKind::User, &u.id, &ops, None).await.unwrap(), None);
    assert_eq!(c.get(ResourceKind::User, &u.id).await.unwrap().body["title"], "x");
}

#[tokio::test]
async fn discovery_of_a_full_target() {
    let fake = Fake::start(Config { bulk: true, ..Config::default() }).await;
    let c = client_for(&fake);
    let caps = c.discover().await.unwrap();
    assert!(caps.patch && caps.filter.supported && caps.etag && caps.bulk.supported);
    assert_eq!((caps.bulk.max_operations, caps.bulk.max_payload_size, caps.filter.max_results), (50, 1_048_576, 200));
    assert_eq!((caps.user_endpoint.as_str(), caps.group_endpoint.as_deref()), ("Users", Some("Groups")));
    assert!(caps.enterprise_user && caps.assumptions.is_empty());
    assert!(caps.declares(ENTERPRISE_USER, "department") && caps.declares(USER, "userName"));
    let paths: Vec<String> = fake.requests().iter().map(|r| format!("{} {}", r.method, r.path)).collect();
    assert_eq!(paths, ["GET /scim/v2/ServiceProviderConfig", "GET /scim/v2/ResourceTypes", "GET /scim/v2/Schemas"]);
    assert_eq!(c.capabilities(), Some(caps));
}

#[tokio::test]
async fn discovery_of_a_minimal_target_and_lookup_without_filters() {
    let fake =
        Fake::start(Config { patch: false, filter: false, resource_types: false, schemas: false, ..Config::default() })
            .await;
    let c = client_for(&fake);
    let caps = c.discover().await.unwrap();
    assert!(!caps.patch && !caps.filter.supported && !caps.bulk.supported);
    assert_eq!(caps.user_endpoint, "Users");
    assert!(caps.schemas.is_none());
    assert_eq!(caps.assumptions.len(), 2, "{:?}", caps.assumptions);
    for i in 0..230 {
        fake.seed_user(json!({"userName": format!("user{i}"), "externalId": format!("ext-{i}")}));
    }
    fake.clear();
    let found = c.find_one(ResourceKind::User, "externalId", "ext-205").await.unwrap().unwrap();
    assert_eq!(found.body["userName"], "user205");
    let pages: Vec<(Option<String>, Option<String>, bool)> = fake
        .requests()
        .iter()
        .map(|r| (r.query.get("startIndex").cloned(), r.query.get("count").cloned(), r.query.contains_key("filter")))
        .collect();
    let s = |x: &str| Some(x.to_owned());
    assert_eq!(pages, [(s("1"), s("100"), false), (s("101"), s("100"), false), (s("201"), s("100"), false)]);
    assert!(c.find_one(ResourceKind::User, "externalId", "missing").await.unwrap().is_none());
    // Two resources with the same value are ambiguous, never a guess.
    fake.seed_user(json!({"userName": "dup", "externalId": "ext-7"}));
    let e = c.find_one(ResourceKind::User, "externalId", "ext-7").await.unwrap_err();
    assert!(matches!(e, ClientError::Ambiguous { count: 2, .. }), "{e:?}");
    // This target has no PATCH: 501, which is final (use replace instead).
    let managed = Mapping::default().managed_user_attributes().unwrap();
    let ops = user_patch(&found.body, &json!({"userName": "user205", "title": "x"}), &managed);
    let e = c.patch(ResourceKind::User, &found.id, &ops, None).await.unwrap_err();
    assert!(matches!(e, ClientError::Rejected { status: 501, .. }) && !e.retryable(), "{e:?}");
}

#[tokio::test]
async fn mapping_to_target_end_to_end() {
    let fake = Fake::start(Config::default()).await;
    let c = client_for(&fake);
    c.discover().await.unwrap();
    let m: Mapping = serde_json::from_value(json!({"scopeFilter": "active eq true"})).unwrap();
    let dir_user = json!({"id": "dir-5", "userName": "eve@x.com", "active": true, "name": {"givenName": "Eve"},
        ENTERPRISE_USER: {"department": "Sales"}});
    let Desired::User(desired) = m.desired_user(&dir_user, &[]).unwrap() else { panic!("in scope") };
    let created = c.create(ResourceKind::User, &desired).await.unwrap();
    let mut changed = dir_user.clone();
    changed["name"]["givenName"] = json!("Evelyn");
    changed[ENTERPRISE_USER]["department"] = json!("Ops");
    let Desired::User(desired) = m.desired_user(&changed, &[]).unwrap() else { panic!("in scope") };
    let remote = c.find_one(ResourceKind::User, "externalId", "dir-5").await.unwrap().unwrap();
    assert_eq!(remote.id, created.id);
    let managed = m.managed_user_attributes().unwrap();
    let ops = user_patch(&remote.body, &desired, &managed);
    assert_eq!(ops.len(), 2, "{ops:?}");
    let after = c.patch(ResourceKind::User, &remote.id, &ops, remote.etag.as_deref()).await.unwrap().unwrap();
    assert!(user_patch(&after.body, &desired, &managed).is_empty());
    assert_eq!(after.body[ENTERPRISE_USER]["department"], "Ops");
}

#[tokio::test]
async fn targets_without_patch_get_a_put_that_keeps_their_own_attributes() {
    let fake = Fake::start(Config { patch: false, ..Config::default() }).await;
    let c = client_for(&fake);
    assert!(!c.discover().await.unwrap().patch);
    let m: Mapping = serde_json::from_value(json!({"userAttributes": [
        {"target": "userName", "source": {"copy": "userName"}},
        {"target": "title", "source": {"copy": "title"}}
    ]}))
    .unwrap();
    let id = fake.seed_user(json!({"externalId": "dir-3", "userName": "carol", "title": "Dev", "nickName": "theirs"}));
    let Desired::User(desired) =
        m.desired_user(&json!({"id": "dir-3", "userName": "carol", "title": "Lead"}), &[]).unwrap()
    else {
        panic!("in scope")
    };
    let remote = c.find_one(ResourceKind::User, "externalId", "dir-3").await.unwrap().unwrap();
    let ops = user_patch(&remote.body, &desired, &m.managed_user_attributes().unwrap());
    let body = replacement_body(ResourceKind::User.resource_type(), &remote.body, &ops).unwrap();
    let after = c.replace(ResourceKind::User, &id, &body, remote.etag.as_deref()).await.unwrap();
    let sent = fake.last().json();
    assert!(sent.get("meta").is_none());
    assert_eq!((sent["title"].clone(), sent["nickName"].clone()), (json!("Lead"), json!("theirs")));
    assert_eq!((after.body["title"].clone(), after.body["nickName"].clone()), (json!("Lead"), json!("theirs")));
    // The leaver policy's deactivation, through PUT as well.
    let body = replacement_body(ResourceKind::User.resource_type(), &after.body, &[deactivate()]).unwrap();
    let after = c.replace(ResourceKind::User, &id, &body, None).await.unwrap();
    assert_eq!(after.body["active"], false);
}

/// Lookups of many values: one `or`-joined filter per chunk, checked client-side; one by
/// one where the target rejects such a filter (remembered) or cannot filter at all.
#[tokio::test]
async fn many_lookups_share_one_filter_and_fall_back_one_by_one() {
    let fake = Fake::start(Config::default()).await;
    let c = client_for(&fake);
    c.discover().await.unwrap();
    let mut ids = Vec::new();
    for i in 0..60 {
        ids.push(fake.seed_user(json!({"userName": format!("u{i}@x.com"), "externalId": format!("dir-{i}")})));
    }
    // Two accounts share an externalId: ambiguous, reported as two matches.
    fake.seed_user(json!({"userName": "dup@x.com", "externalId": "dir-7"}));
    let wanted: Vec<String> = (0..60).map(|i| format!("dir-{i}")).chain(["dir-none".to_owned()]).collect();
    fake.clear();
    let found = c.find_many(ResourceKind::User, "externalId", &wanted).await.unwrap();
    let reqs = fake.requests();
    assert_eq!(reqs.len(), 2, "60 values in chunks of 50: two requests");
    assert!(reqs[0].query["filter"].starts_with("externalId eq \"dir-0\" or externalId eq \"dir-1\""));
    assert_eq!(found["dir-3"].len(), 1);
    assert_eq!(found["dir-3"][0].id, ids[3]);
    assert_eq!(found["dir-7"].len(), 2, "ambiguous");
    assert!(!found.contains_key("dir-none"));
    let by_id = c.find_many(ResourceKind::User, "id", &[ids[0].clone(), ids[59].clone()]).await.unwrap();
    assert_eq!(by_id.len(), 2);

    // A target that rejects `or` filters: one lookup per value from then on.
    fake.push(Canned::scim_error(400, Some("invalidFilter"), "or is not supported"));
    fake.clear();
    let three: Vec<String> = wanted[..3].to_vec();
    let found = c.find_many(ResourceKind::User, "externalId", &three).await.unwrap();
    assert_eq!((found.len(), fake.requests().len()), (3, 4), "the rejected filter, then three single lookups");
    fake.clear();
    c.find_many(ResourceKind::User, "externalId", &three).await.unwrap();
    assert_eq!(fake.requests().len(), 3, "remembered: no second try");
    assert!(fake.requests().iter().all(|r| !r.query["filter"].contains(" or ")));

    // Without filter support: paged reads, matched client-side.
    let nofilter = Fake::start(Config { filter: false, ..Config::default() }).await;
    let c = client_for(&nofilter);
    c.discover().await.unwrap();
    let a = nofilter.seed_user(json!({"userName": "a@x.com", "externalId": "e-a"}));
    nofilter.seed_user(json!({"userName": "b@x.com", "externalId": "e-b"}));
    let found = c.find_many(ResourceKind::User, "externalId", &["e-a".into(), "e-z".into()]).await.unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found["e-a"][0].id, a);
    assert!(nofilter.requests().iter().all(|r| !r.query.contains_key("filter")));
}
