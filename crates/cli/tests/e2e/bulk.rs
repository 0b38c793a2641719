//! End-to-end tests of SCIM /Bulk (see ../e2e.rs for the harness).

use super::*;

const BULK_REQUEST: &str = "urn:ietf:params:scim:api:messages:2.0:BulkRequest";
const BULK_RESPONSE: &str = "urn:ietf:params:scim:api:messages:2.0:BulkResponse";
pub(crate) const GROUP_URN: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";

impl Scim<'_> {
    /// `POST /Bulk` with `Operations` (and `failOnErrors` when given).
    pub(crate) async fn bulk(&self, fail_on_errors: Option<u64>, ops: Value) -> ScimResp {
        let mut body = json!({"schemas": [BULK_REQUEST], "Operations": ops});
        if let Some(n) = fail_on_errors {
            body["failOnErrors"] = json!(n);
        }
        self.post("/Bulk", body).await
    }
}

/// The `Operations` of a 200 BulkResponse.
pub(crate) fn bulk_ops(r: &ScimResp) -> Vec<Value> {
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["schemas"][0], BULK_RESPONSE, "{}", r.body);
    r.body["Operations"].as_array().unwrap().clone()
}

/// The statuses of a BulkResponse's operations, in order.
fn statuses(ops: &[Value]) -> Vec<&str> {
    ops.iter().map(|o| o["status"].as_str().unwrap()).collect()
}

/// Checks a failed operation's status and the SCIM error in its `response`.
fn assert_op_error(op: &Value, status: u16, scim_type: Option<&str>) {
    assert_eq!(op["status"], status.to_string(), "{op}");
    assert_eq!(op["response"]["schemas"][0], ERROR_URN, "{op}");
    assert_eq!(op["response"]["status"], status.to_string(), "{op}");
    assert!(!op["response"]["detail"].as_str().unwrap_or("").is_empty(), "{op}");
    if let Some(t) = scim_type {
        assert_eq!(op["response"]["scimType"], t, "{op}");
    }
}

/// The id at the end of an operation's `location`.
pub(crate) fn id_of(op: &Value) -> String {
    op["location"].as_str().unwrap().rsplit('/').next().unwrap().to_owned()
}

pub(crate) fn member_ids(group: &Value) -> Vec<String> {
    let mut v: Vec<String> = group["members"]
        .as_array()
        .map(|m| m.iter().map(|m| m["value"].as_str().unwrap().to_owned()).collect())
        .unwrap_or_default();
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scim_bulk_rfc_example_and_bulk_id_references() {
    for b in backends() {
        let (s, key) = scim_server(b, None).await;
        let c = Scim { s: &s, dir: "acme".into(), key };
        let spc = c.get("/ServiceProviderConfig").await;
        assert_eq!(
            (&spc.body["bulk"]["supported"], &spc.body["bulk"]["maxOperations"], &spc.body["bulk"]["maxPayloadSize"]),
            (&json!(true), &json!(1000), &json!(1_048_576)),
            "{}",
            spc.body
        );

        // RFC 7644 §3.7.2: a user and a group that has it as a member, by bulkId.
        let r = c
            .bulk(
                None,
                json!([
                    {"method": "POST", "path": "/Users", "bulkId": "qwerty",
                     "data": {"schemas": [USER_URN], "userName": "Alice"}},
                    {"method": "POST", "path": "/Groups", "bulkId": "ytrewq",
                     "data": {"schemas": [GROUP_URN], "displayName": "Tour Guides",
                              "members": [{"type": "User", "value": "bulkId:qwerty"}]}}
                ]),
            )
            .await;
        assert!(r.header("content-type").unwrap().starts_with("application/scim+json"));
        let ops = bulk_ops(&r);
        assert_eq!(statuses(&ops), ["201", "201"], "{}", r.body);
        assert_eq!((&ops[0]["method"], &ops[0]["bulkId"]), (&json!("POST"), &json!("qwerty")));
        assert_eq!(ops[1]["bulkId"], "ytrewq");
        assert!(ops[0]["location"].as_str().unwrap().contains("/scim/v2/acme/Users/"), "{}", r.body);
        assert!(ops[1]["location"].as_str().unwrap().contains("/scim/v2/acme/Groups/"), "{}", r.body);
        assert!(ops.iter().all(|o| o["version"].as_str().unwrap().starts_with("W/\"") && o.get("response").is_none()));
        let (alice, guides) = (id_of(&ops[0]), id_of(&ops[1]));
        let g = c.get(&format!("/Groups/{guides}")).await;
        assert_eq!((g.status, &g.body["displayName"]), (200, &json!("Tour Guides")), "{}", g.body);
        assert_eq!(member_ids(&g.body), [alice.as_str()]);
        let u = c.get(&format!("/Users/{alice}")).await;
        assert_eq!((u.status, &u.body["userName"]), (200, &json!("Alice")));
        assert_eq!(u.body["groups"][0]["value"], guides.as_str(), "{}", u.body);
        assert_eq!(ops[0]["version"], json!(u.header("etag").unwrap()));

        // Forward references: the group comes first and names users created after it;
        // a PATCH addresses a resource of the same request by `path`.
        let r = c
            .bulk(
                None,
                json!([
                    {"method": "POST", "path": "/Groups", "bulkId": "g",
                     "data": {"displayName": "Forward", "members": [{"value": "bulkId:u1"}, {"value": "bulkId:u2"}]}},
                    {"method": "PATCH", "path": "/Users/bulkId:u1",
                     "data": {"schemas": [PATCH_URN], "Operations": [{"op": "replace", "path": "active", "value": false}]}},
                    {"method": "POST", "path": "/Users", "bulkId": "u1", "data": {"userName": "bob"}},
                    {"method": "POST", "path": "/Users", "bulkId": "u2",
                     "data": {"userName": "carol", "emails": [{"value": "carol@example.com", "type": "work"}]}}
                ]),
            )
            .await;
        let ops = bulk_ops(&r);
        // Reported in request order, whatever the execution order.
        assert_eq!(statuses(&ops), ["201", "200", "201", "201"], "{}", r.body);
        assert_eq!(
            ops.iter().map(|o| o["method"].as_str().unwrap()).collect::<Vec<_>>(),
            ["POST", "PATCH", "POST", "POST"]
        );
        let (g, bob, carol) = (id_of(&ops[0]), id_of(&ops[2]), id_of(&ops[3]));
        assert_eq!(id_of(&ops[1]), bob);
        let mut want = vec![bob.clone(), carol.clone()];
        want.sort();
        assert_eq!(member_ids(&c.get(&format!("/Groups/{g}")).await.body), want);
        let u = c.get(&format!("/Users/{bob}")).await;
        assert_eq!(
            (u.body["active"].clone(), u.body["meta"]["version"].clone()),
            (json!(false), ops[1]["version"].clone())
        );
        assert_eq!(c.filter("Users", "userName eq \"carol\"").await.len(), 1);

        // An unknown bulkId fails only its operation (400 invalidValue), in data or path.
        let r = c
            .bulk(
                None,
                json!([
                    {"method": "POST", "path": "/Groups", "bulkId": "x",
                     "data": {"displayName": "Nobody", "members": [{"value": "bulkId:ghost"}]}},
                    {"method": "DELETE", "path": "/Users/bulkId:ghost"},
                    {"method": "POST", "path": "/Users", "bulkId": "y", "data": {"userName": "dave"}}
                ]),
            )
            .await;
        let ops = bulk_ops(&r);
        assert_eq!(statuses(&ops), ["400", "400", "201"], "{}", r.body);
        assert_op_error(&ops[0], 400, Some("invalidValue"));
        assert_op_error(&ops[1], 400, Some("invalidValue"));
        assert!(ops[0]["response"]["detail"].as_str().unwrap().contains("ghost"));
        assert!(c.filter("Groups", "displayName eq \"Nobody\"").await.is_empty());
        assert_eq!(c.filter("Users", "userName eq \"dave\"").await.len(), 1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scim_bulk_cycles_fail_with_409() {
    for b in backends() {
        let (s, key) = scim_server(b, None).await;
        let c = Scim { s: &s, dir: "acme".into(), key };
        // Two groups that are members of each other (RFC 7644 §3.7.1's circular
        // reference), a group that depends on the cycle, a self-reference, and an
        // independent user.
        let r = c
            .bulk(
                None,
                json!([
                    {"method": "POST", "path": "/Groups", "bulkId": "a",
                     "data": {"displayName": "A", "members": [{"type": "Group", "value": "bulkId:b"}]}},
                    {"method": "POST", "path": "/Groups", "bulkId": "b",
                     "data": {"displayName": "B", "members": [{"type": "Group", "value": "bulkId:a"}]}},
                    {"method": "POST", "path": "/Groups", "bulkId": "c",
                     "data": {"displayName": "C", "members": [{"type": "Group", "value": "bulkId:a"}]}},
                    {"method": "POST", "path": "/Groups", "bulkId": "self",
                     "data": {"displayName": "Self", "members": [{"type": "Group", "value": "bulkId:self"}]}},
                    {"method": "POST", "path": "/Users", "bulkId": "u", "data": {"userName": "erin"}}
                ]),
            )
            .await;
        let ops = bulk_ops(&r);
        assert_eq!(statuses(&ops), ["409", "409", "409", "409", "201"], "{}", r.body);
        for op in &ops[..4] {
            assert_op_error(op, 409, Some("invalidValue"));
        }
        assert!(ops[0]["response"]["detail"].as_str().unwrap().contains("circular"), "{}", r.body);
        assert!(ops[2]["response"]["detail"].as_str().unwrap().contains("\"a\""), "{}", r.body);
        assert_eq!(ops[3]["bulkId"], "self");
        assert_eq!(c.get("/Groups").await.body["totalResults"], 0);
        assert_eq!(c.filter("Users", "userName eq \"erin\"").await.len(), 1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scim_bulk_fail_on_errors_and_mixed_statuses() {
    for b in backends() {
        let (s, key) = scim_server(b, None).await;
        let c = Scim { s: &s, dir: "acme".into(), key };
        let setup = c
            .bulk(
                None,
                json!([
                    {"method": "POST", "path": "/Users", "bulkId": "1", "data": {"userName": "frank"}},
                    {"method": "POST", "path": "/Users", "bulkId": "2", "data": {"userName": "grace"}},
                    {"method": "POST", "path": "/Groups", "bulkId": "3", "data": {"displayName": "Ops"}}
                ]),
            )
            .await;
        let ops = bulk_ops(&setup);
        assert_eq!(statuses(&ops), ["201", "201", "201"], "{}", setup.body);
        let (frank, grace, group) = (id_of(&ops[0]), id_of(&ops[1]), id_of(&ops[2]));
        let frank_version = ops[0]["version"].as_str().unwrap().to_owned();

        // Every kind of outcome in one request; all are executed (no failOnErrors).
        let r = c
            .bulk(
                None,
                json!([
                    {"method": "PUT", "path": format!("/Users/{frank}"), "version": frank_version,
                     "data": {"schemas": [USER_URN], "userName": "frank", "displayName": "Frank"}},
                    {"method": "PUT", "path": format!("/Users/{frank}"), "version": "W/\"999\"",
                     "data": {"userName": "frank", "displayName": "Stale"}},
                    {"method": "PATCH", "path": format!("/Groups/{group}"),
                     "data": {"schemas": [PATCH_URN], "Operations": [{"op": "add", "path": "members", "value": [{"value": grace}]}]}},
                    {"method": "PATCH", "path": "/Users/no-such-user",
                     "data": {"schemas": [PATCH_URN], "Operations": [{"op": "replace", "path": "active", "value": false}]}},
                    {"method": "POST", "path": "/Users", "bulkId": "dup", "data": {"userName": "GRACE"}},
                    {"method": "GET", "path": format!("/Users/{frank}")},
                    {"method": "POST", "path": "/Widgets", "bulkId": "w", "data": {"name": "x"}},
                    {"method": "POST", "path": "/Users", "bulkId": "nodata"},
                    {"method": "DELETE", "path": format!("/Users/{grace}")},
                    {"method": "delete", "path": format!("/Users/{grace}")}
                ]),
            )
            .await;
        let ops = bulk_ops(&r);
        assert_eq!(
            statuses(&ops),
            ["200", "412", "200", "404", "409", "400", "400", "400", "204", "404"],
            "{}",
            r.body
        );
        assert_op_error(&ops[1], 412, None);
        assert_op_error(&ops[3], 404, None);
        assert_op_error(&ops[4], 409, Some("uniqueness"));
        assert_op_error(&ops[5], 400, Some("invalidValue"));
        assert_op_error(&ops[6], 400, None);
        assert_op_error(&ops[7], 400, Some("invalidSyntax"));
        assert_eq!((&ops[5]["method"], &ops[9]["method"]), (&json!("GET"), &json!("DELETE")));
        assert!(ops[1]["location"].as_str().unwrap().ends_with(&format!("/Users/{frank}")));
        assert!(ops[8]["location"].as_str().unwrap().ends_with(&format!("/Users/{grace}")));
        assert!(ops[8].get("response").is_none() && ops[0].get("response").is_none());
        let f = c.get(&format!("/Users/{frank}")).await;
        assert_eq!(f.body["displayName"], "Frank", "{}", f.body);
        assert_eq!(f.header("etag").unwrap(), ops[0]["version"].as_str().unwrap());
        assert_eq!(c.get(&format!("/Users/{grace}")).await.status, 404);
        // The member added by the PATCH went with the deleted user.
        assert_eq!(member_ids(&c.get(&format!("/Groups/{group}")).await.body), Vec::<String>::new());

        // failOnErrors: 2 stops at the second error; later operations are neither
        // executed nor reported.
        let r = c
            .bulk(
                Some(2),
                json!([
                    {"method": "POST", "path": "/Users", "bulkId": "h", "data": {"userName": "heidi"}},
                    {"method": "POST", "path": "/Users", "bulkId": "f", "data": {"userName": "frank"}},
                    {"method": "POST", "path": "/Users", "bulkId": "i", "data": {"userName": "ivan"}},
                    {"method": "DELETE", "path": "/Groups/missing"},
                    {"method": "POST", "path": "/Users", "bulkId": "j", "data": {"userName": "judy"}},
                    {"method": "DELETE", "path": format!("/Groups/{group}")}
                ]),
            )
            .await;
        let ops = bulk_ops(&r);
        assert_eq!(statuses(&ops), ["201", "409", "201", "404"], "{}", r.body);
        assert_eq!(ops.last().unwrap()["method"], "DELETE");
        assert_eq!(c.filter("Users", "userName eq \"ivan\"").await.len(), 1);
        assert!(c.filter("Users", "userName eq \"judy\"").await.is_empty());
        assert_eq!(c.get(&format!("/Groups/{group}")).await.status, 200);

        // failOnErrors counts failed references too.
        let r = c
            .bulk(
                Some(1),
                json!([
                    {"method": "POST", "path": "/Groups", "bulkId": "k", "data": {"displayName": "K", "members": [{"value": "bulkId:nope"}]}},
                    {"method": "POST", "path": "/Users", "bulkId": "l", "data": {"userName": "lena"}}
                ]),
            )
            .await;
        assert_eq!(statuses(&bulk_ops(&r)), ["400"], "{}", r.body);
        assert!(c.filter("Users", "userName eq \"lena\"").await.is_empty());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scim_bulk_limits_and_malformed_requests() {
    for b in backends() {
        let (s, key) = scim_server(b, None).await;
        let c = Scim { s: &s, dir: "acme".into(), key };
        // maxOperations: 1001 operations → 413 tooMany, nothing done.
        let ops: Vec<Value> = (0..1001)
            .map(|i| json!({"method": "POST", "path": "/Users", "bulkId": format!("b{i}"), "data": {"userName": format!("u{i}")}}))
            .collect();
        let r = c.bulk(None, Value::Array(ops)).await;
        assert_scim_error(&r, 413, Some("tooMany"));
        assert!(r.body["detail"].as_str().unwrap().contains("1000"), "{}", r.body);
        assert_eq!(c.get("/Users").await.body["totalResults"], 0);
        // maxPayloadSize: a body over 1 MiB → 413.
        let big = "x".repeat(1024 * 1024);
        let r = c
            .bulk(None, json!([{"method": "POST", "path": "/Users", "bulkId": "big", "data": {"userName": "big", "title": big}}]))
            .await;
        assert_scim_error(&r, 413, None);
        assert!(r.body["detail"].as_str().unwrap().contains("maxPayloadSize"), "{}", r.body);
        assert_eq!(c.get("/Users").await.body["totalResults"], 0);

        // Malformed requests → 400 invalidSyntax.
        for body in [
            json!({"Operations": []}),
            json!({"schemas": [BULK_REQUEST]}),
            json!({"schemas": [BULK_REQUEST], "Operations": {}}),
            json!({"schemas": [BULK_REQUEST], "Operations": ["POST /Users"]}),
            json!({"schemas": [BULK_REQUEST], "failOnErrors": 0, "Operations": []}),
            json!({"schemas": [BULK_REQUEST], "failOnErrors": "1", "Operations": []}),
        ] {
            let r = c.post("/Bulk", body.clone()).await;
            assert_scim_error(&r, 400, Some("invalidSyntax"));
        }
        assert_scim_error(
            &c.raw(reqwest::Method::POST, "/Bulk", Some("{nope".into()), &[]).await,
            400,
            Some("invalidSyntax"),
        );
        // An empty request is a valid, empty response.
        assert!(bulk_ops(&c.bulk(None, json!([])).await).is_empty());
        // POST only.
        for m in [reqwest::Method::GET, reqwest::Method::PUT, reqwest::Method::PATCH, reqwest::Method::DELETE] {
            assert_scim_error(&c.call(m, "/Bulk", Some(json!({}))).await, 405, None);
        }
        // Authentication first.
        let anon = Scim { s: &s, dir: "acme".into(), key: "fkp_wrong".into() };
        assert_scim_error(&anon.bulk(None, json!([])).await, 401, None);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scim_bulk_scopes_are_enforced() {
    for b in backends() {
        // Without the bulk scope: 403 (audited), even though the operations would be allowed.
        let (s, key) = scim_server(b, Some(&["users:read", "users:write", "groups:read", "groups:write"])).await;
        let c = Scim { s: &s, dir: "acme".into(), key };
        let r = c
            .bulk(None, json!([{"method": "POST", "path": "/Users", "bulkId": "a", "data": {"userName": "mallory"}}]))
            .await;
        assert_scim_error(&r, 403, None);
        assert!(r.body["detail"].as_str().unwrap().contains("bulk"), "{}", r.body);
        assert_eq!(c.get("/Users").await.body["totalResults"], 0);
        let (_, v) =
            s.api(reqwest::Method::GET, "/api/v1/audit?action=scim.authorize&limit=100", Some(&s.token), None).await;
        assert!(v["records"].as_array().unwrap().iter().any(|r| r["details"]["missing_scope"] == "bulk"), "{v}");

        // A second trust with bulk and users:* but no groups:write: group operations fail
        // alone with 403, user operations succeed.
        let t = Some(s.token.as_str());
        let (st, v) = s
            .api(
                reqwest::Method::POST,
                "/api/v1/directories/acme/trusts",
                t,
                Some(
                    json!({"name": "bulker", "direction": "inbound", "scopes": ["bulk", "users:read", "users:write"]}),
                ),
            )
            .await;
        assert_eq!(st, 201, "{v}");
        let c2 = Scim { s: &s, dir: "acme".into(), key: v["key"].as_str().unwrap().to_owned() };
        let r = c2
            .bulk(
                None,
                json!([
                    {"method": "POST", "path": "/Users", "bulkId": "n", "data": {"userName": "niaj"}},
                    {"method": "POST", "path": "/Groups", "bulkId": "g", "data": {"displayName": "G", "members": [{"value": "bulkId:n"}]}},
                    {"method": "PATCH", "path": "/Users/bulkId:n",
                     "data": {"schemas": [PATCH_URN], "Operations": [{"op": "replace", "path": "displayName", "value": "Niaj"}]}}
                ]),
            )
            .await;
        let ops = bulk_ops(&r);
        assert_eq!(statuses(&ops), ["201", "403", "200"], "{}", r.body);
        assert_op_error(&ops[1], 403, None);
        assert!(ops[1]["response"]["detail"].as_str().unwrap().contains("groups:write"));
        let users = c2.filter("Users", "userName eq \"niaj\"").await;
        assert_eq!((users.len(), &users[0]["displayName"]), (1, &json!("Niaj")));
        assert_eq!(c.get("/Groups").await.body["totalResults"], 0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scim_bulk_reference_limit_and_long_cycles() {
    const MAX_REFERENCES: usize = 10_000;
    for b in backends() {
        let (s, key) = scim_server(b, None).await;
        let c = Scim { s: &s, dir: "acme".into(), key };
        // One reference over the limit → 413 tooMany, nothing done.
        let member = json!({"value": "bulkId:u"});
        let per_group = MAX_REFERENCES / 100;
        let mut ops = vec![json!({"method": "POST", "path": "/Users", "bulkId": "u", "data": {"userName": "frank"}})];
        ops.extend((0..100).map(|i| {
            let n = per_group + usize::from(i == 0);
            json!({"method": "POST", "path": "/Groups", "data": {"displayName": format!("G{i}"), "members": vec![member.clone(); n]}})
        }));
        let r = c.bulk(None, Value::Array(ops)).await;
        assert_scim_error(&r, 413, Some("tooMany"));
        assert!(r.body["detail"].as_str().unwrap().contains("10000 bulkId references"), "{}", r.body);
        assert_eq!(c.get("/Users").await.body["totalResults"], 0);
        assert_eq!(c.get("/Groups").await.body["totalResults"], 0);

        // A ring of 1000 groups, each naming the next nine: every one is on a cycle and
        // fails with 409; nothing is created.
        let n = 1000;
        let ring: Vec<Value> = (0..n)
            .map(|i| {
                let members: Vec<Value> =
                    (1..=9).map(|k| json!({"value": format!("bulkId:g{}", (i + k) % n)})).collect();
                json!({"method": "POST", "path": "/Groups", "bulkId": format!("g{i}"),
                       "data": {"displayName": format!("G{i}"), "members": members}})
            })
            .collect();
        let ops = bulk_ops(&c.bulk(None, Value::Array(ring)).await);
        assert_eq!(ops.len(), n);
        for (i, op) in ops.iter().enumerate() {
            assert_op_error(op, 409, Some("invalidValue"));
            assert_eq!(op["bulkId"], format!("g{i}"));
            assert!(op["response"]["detail"].as_str().unwrap().contains("circular"), "{op}");
        }
        assert_eq!(c.get("/Groups").await.body["totalResults"], 0);

        // A chain written backwards runs last-first. With failOnErrors 2 the two
        // operations of the cycle x <-> y are the last processed: Z, waiting on x, is
        // not, while the user after it, ready earlier, is.
        let ops = bulk_ops(
            &c.bulk(
                Some(2),
                json!([
                    {"method": "POST", "path": "/Groups", "bulkId": "c0", "data": {"displayName": "C0", "members": [{"value": "bulkId:c1"}]}},
                    {"method": "POST", "path": "/Groups", "bulkId": "c1", "data": {"displayName": "C1", "members": [{"value": "bulkId:c2"}]}},
                    {"method": "POST", "path": "/Users", "bulkId": "c2", "data": {"userName": "gina"}},
                    {"method": "POST", "path": "/Groups", "bulkId": "x", "data": {"displayName": "X", "members": [{"value": "bulkId:y"}]}},
                    {"method": "POST", "path": "/Groups", "bulkId": "y", "data": {"displayName": "Y", "members": [{"value": "bulkId:x"}]}},
                    {"method": "POST", "path": "/Groups", "data": {"displayName": "Z", "members": [{"value": "bulkId:x"}]}},
                    {"method": "POST", "path": "/Users", "data": {"userName": "hal"}}
                ]),
            )
            .await,
        );
        assert_eq!(statuses(&ops), ["201", "201", "201", "409", "409", "201"]);
        assert!(ops[5]["location"].as_str().unwrap().contains("/Users/"), "{ops:?}");
        let c1 = c.get(&format!("/Groups/{}", id_of(&ops[1]))).await;
        assert_eq!(member_ids(&c1.body), [id_of(&ops[2])]);
        assert!(c.filter("Groups", "displayName eq \"Z\"").await.is_empty());
    }
}
