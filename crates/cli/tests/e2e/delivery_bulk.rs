//! Delivery through SCIM `/Bulk` to an application that supports it (a fedkey directory):
//! users travel many per request, and every way a bulk answer can go wrong — one
//! operation refused (409, 503), the whole request refused (503, 400), applied but never
//! answered — ends with each change applied once and no duplicate account.

use super::*;

/// Operations per `/Bulk` request in these tests.
const PER_REQUEST: usize = 20;

fn name(i: usize) -> String {
    format!("bulk{i:03}@acme.test")
}

/// Creates users `range` in the source directory (one `/Bulk` there); their ids.
async fn source_users(c: &Scim<'_>, range: std::ops::Range<usize>) -> Vec<String> {
    let ops: Vec<Value> = range
        .clone()
        .map(|i| json!({"method": "POST", "path": "/Users", "bulkId": format!("u{i}"), "data": user_body(&name(i), "Engineer")}))
        .collect();
    let ids = bulk(c, ops).await;
    range.map(|i| ids[&format!("u{i}")].clone()).collect()
}

/// `POST /Users` requests (creates sent on their own, not inside a `/Bulk`).
fn single_creates(p: &Proxy) -> usize {
    p.seen().iter().filter(|x| !x.bulk_op && x.method == "POST" && x.path == "/Users").count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn users_travel_in_bulk_and_every_answer_is_settled_once() {
    for b in backends() {
        bulk_delivery(b).await;
    }
}

async fn bulk_delivery(b: Backend) {
    let s = Server::start(b);
    let hr = directory_with_inbound(&s, "acme", "hr").await;
    let app_key = directory_with_inbound(&s, "app", "fedkey").await;
    outbound_trust(&s, "acme", "app", &app_key).await;
    let proxy = Proxy::start(format!("{}/scim/v2/app", s.url)).await;
    s.set_target("acme/app", &proxy.url, None, &["--bulk", &PER_REQUEST.to_string(), "--timeout", "1s"]);
    let v = s.cli_json(&["sync", "target", "show", "acme/app"]);
    assert_eq!(v["target"]["bulk_max_operations"], PER_REQUEST, "{v}");
    let app = Reader { base: format!("{}/scim/v2/app", s.url), token: app_key.clone() };
    let acme = Scim { s: &s, dir: "acme".into(), key: hr.clone() };
    // Three accounts exist at the application already (same userName, no externalId):
    // matched, not created again. Made through the proxy so its create count covers them.
    let http = reqwest::Client::new();
    for i in 0..3 {
        let r =
            http.post(format!("{}/Users", proxy.url)).bearer_auth(&app_key).json(&user_body(&name(i), "Old")).send();
        assert_eq!(r.await.unwrap().status(), 201);
    }

    // Joiners: 45 users and a group of ten of them, in one tick.
    let mut users = source_users(&acme, 0..45).await;
    let members: Vec<Value> = users[..10].iter().map(|id| json!({"value": id})).collect();
    let team = acme.post("/Groups", json!({"schemas": [GROUP_URN], "displayName": "Team", "members": members})).await;
    assert_eq!(team.status, 201, "{}", team.body);
    let team = team.body["id"].as_str().unwrap().to_owned();
    let before = proxy.requests();
    let r = s.sync_tick().await;
    // The group may be delivered twice: once with the members already there, again when
    // the others' accounts appear.
    assert!(r["delivered"].as_u64() >= Some(46) && r["retried"] == 0, "{r}");
    let sent = proxy.requests() - before;
    // One request per user would be 90 or more (one to three lookups, then a create):
    // here 3 discovery reads, 2 lookups and a /Bulk per 20 users, the group's few.
    assert!(sent <= 24, "{sent} requests for 45 users and a group");
    assert_eq!(proxy.count("POST", "/Bulk"), 3, "42 creates in requests of at most {PER_REQUEST}");
    assert_eq!(proxy.by_name("POST", "/Users", 201).len(), 45, "the 3 matched accounts were not created again");
    assert_eq!(single_creates(&proxy), 3, "only the test's own three creates went one by one");
    let matched = app.by_name("Users", "userName", &name(1)).await.unwrap();
    assert_eq!(
        (matched["externalId"].as_str(), matched["title"].as_str()),
        (Some(users[1].as_str()), Some("Engineer"))
    );

    // Movers: thirty title changes travel as PATCH operations inside /Bulk.
    let ops = users[..30]
        .iter()
        .map(|id| patch_op(&format!("/Users/{id}"), json!([{"op": "replace", "path": "title", "value": "Senior"}])))
        .collect();
    bulk(&acme, ops).await;
    let patches = proxy.count("PATCH", "/Users");
    let r = s.sync_tick().await;
    assert_eq!(r["delivered"], 30, "{r}");
    assert_eq!(proxy.count("PATCH", "/Users") - patches, 30, "one PATCH operation per changed user");
    let single_patches =
        proxy.seen().iter().filter(|x| !x.bulk_op && x.method == "PATCH" && x.path.starts_with("/Users")).count();
    assert_eq!(single_patches, 0, "no user PATCH went alone");
    assert_eq!(app.by_external_id("Users", &users[29]).await.unwrap()["title"], "Senior");

    // One create refused with 409 inside the bulk answer: that user is delivered on its
    // own (looked up, not found, created), the others are settled by the bulk answer.
    proxy.misbehave("POST", "/Bulk", Misbehave::FailLastBulkOp(409), 1);
    users.extend(source_users(&acme, 45..48).await);
    let r = s.sync_tick().await;
    assert_eq!((r["delivered"].as_u64(), r["retried"].as_u64()), (Some(3), Some(0)), "{r}");
    assert_eq!(single_creates(&proxy), 4, "the refused create was sent again on its own");

    // One operation answered 503: only that user is retried, after the backoff.
    proxy.misbehave("POST", "/Bulk", Misbehave::FailLastBulkOp(503), 1);
    users.extend(source_users(&acme, 48..51).await);
    let r = s.sync_tick().await;
    assert_eq!((r["delivered"].as_u64(), r["retried"].as_u64()), (Some(2), Some(1)), "{r}");
    s.advance("1h").await;
    let r = s.sync_tick().await;
    assert_eq!((r["delivered"].as_u64(), r["retried"].as_u64()), (Some(1), Some(0)), "{r}");
    assert_eq!(single_creates(&proxy), 5, "a lone retry needs no /Bulk");

    // The whole request answered 503: every user it carried is retried.
    proxy.misbehave("POST", "/Bulk", Misbehave::Refuse(503), 1);
    users.extend(source_users(&acme, 51..55).await);
    let r = s.sync_tick().await;
    assert_eq!((r["delivered"].as_u64(), r["retried"].as_u64()), (Some(0), Some(4)), "{r}");
    s.advance("1h").await;
    assert_eq!(s.sync_tick().await["delivered"], 4);

    // Applied but never answered (the 1 s timeout): the retry matches every account.
    proxy.misbehave("POST", "/Bulk", Misbehave::StallAfterForward, 1);
    users.extend(source_users(&acme, 55..60).await);
    let r = s.sync_tick().await;
    assert_eq!((r["delivered"].as_u64(), r["retried"].as_u64()), (Some(0), Some(5)), "{r}");
    s.advance("1h").await;
    let bulks = proxy.count("POST", "/Bulk");
    let r = s.sync_tick().await;
    assert_eq!(r["delivered"], 5, "{r}");
    assert_eq!(proxy.count("POST", "/Bulk"), bulks, "nothing left to write: all five matched");

    // Leavers: five deactivated, two deleted in the directory, deactivated at the
    // application in one bulk request; deprovisioning is confirmed for each.
    let mut ops: Vec<Value> = users[30..35]
        .iter()
        .map(|id| patch_op(&format!("/Users/{id}"), json!([{"op": "replace", "path": "active", "value": false}])))
        .collect();
    ops.extend(users[35..37].iter().map(|id| json!({"method": "DELETE", "path": format!("/Users/{id}")})));
    bulk(&acme, ops).await;
    let bulks = proxy.count("POST", "/Bulk");
    let r = s.sync_tick().await;
    assert_eq!(r["delivered"], 7, "{r}");
    assert_eq!(proxy.count("POST", "/Bulk"), bulks + 1);
    let st = s.sync_status("acme").await;
    assert_eq!(st["deprovisioning"]["complete"], 7, "{st}");

    // A target that refuses /Bulk as a whole (400) gets one request per change instead,
    // in the same tick.
    proxy.misbehave("POST", "/Bulk", Misbehave::Refuse(400), 1);
    users.extend(source_users(&acme, 60..63).await);
    let before = single_creates(&proxy);
    let r = s.sync_tick().await;
    assert_eq!((r["delivered"].as_u64(), r["retried"].as_u64()), (Some(3), Some(0)), "{r}");
    assert_eq!(single_creates(&proxy), before + 3, "the three creates went one by one");
    assert!(s.logs().contains("refused a bulk request"), "the fallback is logged");

    // With `--bulk off`, never /Bulk.
    s.set_target("acme/app", &proxy.url, None, &["--bulk", "off"]);
    let bulks = proxy.count("POST", "/Bulk");
    acme.patch(&format!("/Users/{}", users[40]), json!([{"op": "replace", "path": "title", "value": "Lead"}])).await;
    acme.patch(&format!("/Users/{}", users[41]), json!([{"op": "replace", "path": "title", "value": "Lead"}])).await;
    // Setting the target queues every resource again: most have nothing to change.
    let r = s.sync_tick().await;
    assert_eq!(r["retried"], 0, "{r}");
    assert_eq!(proxy.count("POST", "/Bulk"), bulks, "off means off");
    assert_eq!(app.by_external_id("Users", &users[41]).await.unwrap()["title"], "Lead");

    assert_target_matches(&s, &hr, &app, &proxy, &users, &[team]).await;
    let st = target_status(&s, "acme").await;
    assert_eq!((st["pending"].as_u64(), st["dead_letters"].as_u64()), (Some(0), Some(0)), "{st}");
    assert!(!s.logs().contains(&app_key), "no key in the logs");
}
