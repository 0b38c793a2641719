//! End-to-end tests of per-trust policy: privileged groups, source allow-lists, rate limits.

#[allow(unused_imports)]
use super::*;

use reqwest::Method as M;

/// `scim.authorize` denials in the audit log.
async fn denials(s: &Server) -> Vec<Value> {
    let (st, v) = s.api(M::GET, "/api/v1/audit?action=scim.authorize&limit=1000", Some(&s.token), None).await;
    assert_eq!(st, 200, "{v}");
    v["records"].as_array().unwrap().clone()
}

async fn put_policy(s: &Server, trust: &str, body: Value) -> (u16, Value) {
    s.api(M::PUT, &format!("/api/v1/directories/acme/trusts/{trust}/policy"), Some(&s.token), Some(body)).await
}

fn member_ids(g: &Value) -> Vec<String> {
    let mut v: Vec<String> = g["members"]
        .as_array()
        .map(|a| a.iter().map(|m| m["value"].as_str().unwrap().to_owned()).collect())
        .unwrap_or_default();
    v.sort();
    v
}

/// A group is privileged in a directory when any of its trusts marks it: the key of
/// another trust, without patterns of its own, cannot create it or add members to it;
/// a pattern change applies to every trust's live keys at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn privileged_groups_hold_for_every_trust_of_the_directory() {
    for b in backends() {
        let (s, key) = scim_server(b, None).await;
        let (st, v) = s
            .api(
                M::POST,
                "/api/v1/directories/acme/trusts",
                Some(&s.token),
                Some(json!({"name": "okta", "direction": "inbound"})),
            )
            .await;
        assert_eq!(st, 201, "{v}");
        assert_eq!(v["trust"]["privileged_groups"], json!([]), "{v}");
        let okta = Scim { s: &s, dir: "acme".into(), key: v["key"].as_str().unwrap().to_owned() };
        let idp = Scim { s: &s, dir: "acme".into(), key };
        let u1 = okta.post("/Users", json!({"userName": "u1"})).await.body["id"].as_str().unwrap().to_owned();
        let u2 = okta.post("/Users", json!({"userName": "u2"})).await.body["id"].as_str().unwrap().to_owned();
        // Before any pattern, `Admins` is an ordinary group.
        let g = okta.post("/Groups", json!({"displayName": "Admins", "members": [{"value": u1}]})).await;
        assert_eq!(g.status, 201, "{}", g.body);
        let gp = format!("/Groups/{}", g.body["id"].as_str().unwrap());

        // `idp` marks admin* privileged: okta's key (no patterns) is held to it too.
        let (st, v) = put_policy(&s, "idp", json!({"privileged_groups": ["admin*"]})).await;
        assert_eq!(st, 200, "{v}");
        let add_u2 = json!([{"op": "add", "path": "members", "value": [{"value": u2}]}]);
        for c in [&okta, &idp] {
            let r = c.patch(&gp, add_u2.clone()).await;
            assert_scim_error(&r, 403, None);
            assert!(r.body["detail"].as_str().unwrap().contains("\"admin*\""), "{}", r.body);
            assert_scim_error(&c.post("/Groups", json!({"displayName": "admins-eu"})).await, 403, None);
        }
        assert_eq!(member_ids(&okta.get(&gp).await.body), vec![u1.clone()], "nothing added");
        assert!(okta.filter("Groups", "displayName eq \"admins-eu\"").await.is_empty(), "nothing created");
        let refused = denials(&s).await;
        assert_eq!(
            refused
                .iter()
                .filter(|r| r["actor"].as_str().is_some_and(|a| a.starts_with("key:acme/okta#"))
                    && r["details"]["reason"] == "privileged_group")
                .count(),
            2,
            "{refused:?}"
        );

        // The pattern removed: ordinary again for both.
        let (st, v) = put_policy(&s, "idp", json!({})).await;
        assert_eq!(st, 200, "{v}");
        assert_eq!(okta.patch(&gp, add_u2).await.status, 200);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn privileged_groups_need_the_privileged_scope() {
    for b in backends() {
        // `idp`: default scopes (no groups:privileged); policy set through the CLI.
        let (s, key) = scim_server(b, None).await;
        let v = s.cli_json(&[
            "trust",
            "policy",
            "acme/idp",
            "--privileged-group",
            "admin*",
            "--privileged-group",
            "Domain?Admins",
        ]);
        assert_eq!(v["trust"]["privileged_groups"], json!(["admin*", "Domain?Admins"]), "{v}");
        // `root`: created with the same policy and the privileged scope, through the CLI.
        let v = s.cli_json(&[
            "trust",
            "create",
            "--directory",
            "acme",
            "--name",
            "root",
            "--direction",
            "inbound",
            "--scope",
            "users:read",
            "--scope",
            "users:write",
            "--scope",
            "groups:read",
            "--scope",
            "groups:write",
            "--scope",
            "groups:privileged",
            "--privileged-group",
            "admin*",
            "--privileged-group",
            "Domain?Admins",
        ]);
        assert_eq!(v["trust"]["privileged_groups"], json!(["admin*", "Domain?Admins"]), "{v}");
        let root_key = v["key"].as_str().unwrap().to_owned();
        let c = Scim { s: &s, dir: "acme".into(), key };
        let root = Scim { s: &s, dir: "acme".into(), key: root_key };

        let u1 = c.post("/Users", json!({"userName": "u1"})).await.body["id"].as_str().unwrap().to_owned();
        let u2 = c.post("/Users", json!({"userName": "u2"})).await.body["id"].as_str().unwrap().to_owned();

        // Create: denied without the scope (case-insensitive match), with or without members.
        assert_scim_error(&c.post("/Groups", json!({"displayName": "ADMINISTRATORS"})).await, 403, None);
        let r = c.post("/Groups", json!({"displayName": "Domain Admins", "members": [{"value": u1}]})).await;
        assert_scim_error(&r, 403, None);
        assert!(r.body["detail"].as_str().unwrap().contains("groups:privileged"), "{}", r.body);
        assert_eq!(c.filter("Groups", "displayName eq \"Domain Admins\"").await.len(), 0, "nothing created");

        // An ordinary group is fine, and may not be renamed into a privileged name.
        let staff = c.post("/Groups", json!({"displayName": "staff", "members": [{"value": u1}]})).await;
        assert_eq!(staff.status, 201, "{}", staff.body);
        let sp = format!("/Groups/{}", staff.body["id"].as_str().unwrap());
        let r = c.patch(&sp, json!([{"op": "replace", "path": "displayName", "value": "admins-2"}])).await;
        assert_scim_error(&r, 403, None);
        let r = c.call(M::PUT, &sp, Some(json!({"displayName": "Admin", "members": [{"value": u1}]}))).await;
        assert_scim_error(&r, 403, None);
        assert_eq!(c.get(&sp).await.body["displayName"], "staff");
        assert_eq!(c.patch(&sp, json!([{"op": "add", "path": "members", "value": [{"value": u2}]}])).await.status, 200);

        // Allowed with the scope.
        let g = root.post("/Groups", json!({"displayName": "Domain Admins", "members": [{"value": u1}]})).await;
        assert_eq!(g.status, 201, "{}", g.body);
        let gp = format!("/Groups/{}", g.body["id"].as_str().unwrap());

        // Adding members without the scope: PATCH and PUT denied, nothing changed.
        let r = c.patch(&gp, json!([{"op": "add", "path": "members", "value": [{"value": u2}]}])).await;
        assert_scim_error(&r, 403, None);
        let body = json!({"displayName": "Domain Admins", "members": [{"value": u1}, {"value": u2}]});
        assert_scim_error(&c.call(M::PUT, &gp, Some(body)).await, 403, None);
        // Renaming it out of the privileged names (to add members unseen) is denied too.
        let r = c.patch(&gp, json!([{"op": "replace", "path": "displayName", "value": "harmless"}])).await;
        assert_scim_error(&r, 403, None);
        let now = c.get(&gp).await;
        assert_eq!(
            (now.body["displayName"].as_str(), member_ids(&now.body)),
            (Some("Domain Admins"), vec![u1.clone()])
        );

        // Removing members needs no extra scope.
        let r = c.patch(&gp, json!([{"op": "remove", "path": format!("members[value eq \"{u1}\"]")}])).await;
        assert_eq!(r.status, 200, "{}", r.body);
        assert!(member_ids(&c.get(&gp).await.body).is_empty());

        // With the scope, adding members works (PATCH and PUT).
        let r = root.patch(&gp, json!([{"op": "add", "path": "members", "value": [{"value": u2}]}])).await;
        assert_eq!(r.status, 200, "{}", r.body);
        let body = json!({"displayName": "Domain Admins", "members": [{"value": u1}, {"value": u2}]});
        let r = root.call(M::PUT, &gp, Some(body)).await;
        assert_eq!(r.status, 200, "{}", r.body);
        let mut both = vec![u1.clone(), u2.clone()];
        both.sort();
        assert_eq!(member_ids(&c.get(&gp).await.body), both);

        // Every denial audited with the reason, the group and the pattern.
        let recs = denials(&s).await;
        let privileged: Vec<_> = recs.iter().filter(|r| r["details"]["reason"] == "privileged_group").collect();
        assert_eq!(privileged.len(), 7, "{recs:?}");
        assert!(privileged.iter().all(|r| r["outcome"] == "denied" && r["actor"] == "key:acme/idp#1"));
        assert!(privileged.iter().all(|r| r["details"]["missing_scope"] == "groups:privileged"));
        assert!(privileged.iter().any(|r| r["details"]["group"] == "ADMINISTRATORS"
            && r["details"]["pattern"] == "admin*"
            && r["details"]["operation"] == "create a privileged group"));
        assert!(privileged.iter().any(|r| r["details"]["operation"] == "add members to a privileged group"
            && r["details"]["pattern"] == "Domain?Admins"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn source_allow_list_is_enforced_and_denials_audited() {
    for b in backends() {
        let (s, key) = scim_server(b, None).await;
        let c = Scim { s: &s, dir: "acme".into(), key };
        let (st, v) = put_policy(&s, "idp", json!({"allowed_sources": ["127.0.0.0/8", "::1/128"]})).await;
        assert_eq!(st, 200, "{v}");
        assert_eq!(v["trust"]["allowed_sources"], json!(["127.0.0.0/8", "::1/128"]));
        assert_eq!(c.get("/Users").await.status, 200);

        let (st, v) = put_policy(&s, "idp", json!({"allowed_sources": ["10.0.0.0/8", "2001:db8::/32"]})).await;
        assert_eq!(st, 200, "{v}");
        let r = c.get("/Users").await;
        assert_scim_error(&r, 403, None);
        assert_scim_error(&c.post("/Users", json!({"userName": "x"})).await, 403, None);
        assert_eq!(c.filter_status().await, 403);
        let recs = denials(&s).await;
        let src: Vec<_> = recs.iter().filter(|r| r["details"]["reason"] == "source_not_allowed").collect();
        assert_eq!(src.len(), 3, "{recs:?}");
        assert!(src.iter().all(|r| r["outcome"] == "denied"
            && r["actor"] == "key:acme/idp#1"
            && r["details"]["source"] == "127.0.0.1"
            && r["details"]["allowed_sources"] == json!(["10.0.0.0/8", "2001:db8::/32"])));

        // Clearing the policy lets the key in again at once.
        let (st, v) = put_policy(&s, "idp", json!({})).await;
        assert_eq!((st, &v["trust"]["allowed_sources"]), (200, &json!([])), "{v}");
        assert_eq!(c.get("/Users").await.status, 200);
    }
}

impl Scim<'_> {
    async fn filter_status(&self) -> u16 {
        self.get("/Groups?filter=displayName+eq+%22x%22").await.status
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limit_answers_429_with_retry_after() {
    for b in backends() {
        let (s, key) = scim_server(b, None).await;
        let (st, v) = put_policy(&s, "idp", json!({"rate_limit": 2})).await;
        assert_eq!((st, &v["trust"]["rate_limit"]), (200, &json!(2)), "{v}");
        let audited_before = denials(&s).await.len();
        // A burst well above the bucket (2) and the refill (2/s) during it.
        let mut set = tokio::task::JoinSet::new();
        for _ in 0..12 {
            let url = format!("{}/scim/v2/acme/Users", s.url);
            let key = key.clone();
            set.spawn(async move {
                let r = reqwest::Client::new().get(url).bearer_auth(key).send().await.unwrap();
                let status = r.status().as_u16();
                let retry = r.headers().get("retry-after").map(|h| h.to_str().unwrap().to_owned());
                let ct = r.headers().get("content-type").map(|h| h.to_str().unwrap().to_owned());
                let body: Value = r.json().await.unwrap();
                (status, retry, ct, body)
            });
        }
        let mut ok = 0;
        let mut limited = 0;
        while let Some(r) = set.join_next().await {
            let (status, retry, ct, body) = r.unwrap();
            match status {
                200 => ok += 1,
                429 => {
                    limited += 1;
                    let secs: u64 = retry.expect("Retry-After").parse().unwrap();
                    assert!((1..=60).contains(&secs));
                    assert!(ct.unwrap().starts_with("application/scim+json"));
                    assert_eq!((body["status"].as_str(), body["schemas"][0].as_str()), (Some("429"), Some(ERROR_URN)));
                }
                other => panic!("unexpected {other}: {body}"),
            }
        }
        assert!(ok >= 2 && limited >= 1, "ok {ok}, limited {limited}");
        // Not audited per request (only a metric)…
        assert_eq!(denials(&s).await.len(), audited_before);
        let metrics = reqwest::get(format!("{}/metrics", s.url)).await.unwrap().text().await.unwrap();
        assert!(metrics.contains("fedkey_scim_rate_limited_total"), "{metrics}");
        // …and unlimited again once the limit is 0.
        let (st, _) = put_policy(&s, "idp", json!({"rate_limit": 0})).await;
        assert_eq!(st, 200);
        let c = Scim { s: &s, dir: "acme".into(), key };
        for _ in 0..6 {
            assert_eq!(c.get("/Users").await.status, 200);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_admin_api_validates_audits_and_needs_admin() {
    for b in backends() {
        let (s, _key) = scim_server(b, None).await;
        let t = Some(s.token.as_str());
        let (st, v) = s.api(M::POST, "/api/v1/tokens", t, Some(json!({"name": "ops", "role": "operator"}))).await;
        assert_eq!(st, 201, "{v}");
        let ops = v["token"].as_str().unwrap().to_owned();

        // New trusts show an empty policy.
        let (st, v) = s.api(M::GET, "/api/v1/directories/acme/trusts/idp", t, None).await;
        assert_eq!(st, 200, "{v}");
        assert_eq!(
            (&v["trust"]["privileged_groups"], &v["trust"]["allowed_sources"], &v["trust"]["rate_limit"]),
            (&json!([]), &json!([]), &json!(0))
        );

        // Bad input: 400 invalid_value naming the field, nothing stored.
        for (body, field) in [
            (json!({"allowed_sources": ["10.0.0.0/33"]}), "allowed_sources"),
            (json!({"allowed_sources": ["10.0.0.1/8"]}), "allowed_sources"),
            (json!({"allowed_sources": ["not-an-ip"]}), "allowed_sources"),
            (json!({"privileged_groups": ["domain admins"]}), "privileged_groups"),
            (json!({"privileged_groups": ["adm[in]"]}), "privileged_groups"),
            (json!({"privileged_groups": [""]}), "privileged_groups"),
            (json!({"rate_limit": -1}), "rate_limit"),
        ] {
            let (st, v) = put_policy(&s, "idp", body.clone()).await;
            assert_eq!((st, v["error"]["code"].as_str()), (400, Some("invalid_value")), "{body}: {v}");
            assert!(v["error"]["message"].as_str().unwrap().contains(field), "{v}");
        }
        let (st, v) = put_policy(&s, "idp", json!({"rate_limit": "fast"})).await;
        assert_eq!(st, 400, "{v}");
        let (st, v) = put_policy(&s, "idp", json!({"bogus": 1})).await;
        assert_eq!(st, 400, "{v}");
        let (st, _) = put_policy(&s, "nope", json!({})).await;
        assert_eq!(st, 404);
        // Creating a trust with a bad policy creates nothing.
        let body = json!({"name": "bad", "direction": "inbound", "allowed_sources": ["10.0.0.0/99"]});
        let (st, v) = s.api(M::POST, "/api/v1/directories/acme/trusts", t, Some(body)).await;
        assert_eq!((st, v["error"]["code"].as_str()), (400, Some("invalid_value")), "{v}");
        assert_eq!(s.api(M::GET, "/api/v1/directories/acme/trusts/bad", t, None).await.0, 404);
        // An outbound trust has no SCIM requests to restrict.
        let body =
            json!({"name": "app", "direction": "outbound", "key": "app-issued-secret-0123456789", "rate_limit": 5});
        let (st, v) = s.api(M::POST, "/api/v1/directories/acme/trusts", t, Some(body)).await;
        assert_eq!(st, 400, "{v}");

        // Operators may not change a policy.
        let (st, v) = s
            .api(M::PUT, "/api/v1/directories/acme/trusts/idp/policy", Some(&ops), Some(json!({"rate_limit": 1})))
            .await;
        assert_eq!(st, 403, "{v}");

        // A valid change, through the API and then the CLI; both audited with before/after.
        let body =
            json!({"privileged_groups": ["admin*"], "allowed_sources": ["127.0.0.1", "fd00::/8"], "rate_limit": 50});
        let (st, v) = put_policy(&s, "idp", body).await;
        assert_eq!(st, 200, "{v}");
        assert_eq!(v["trust"]["allowed_sources"], json!(["127.0.0.1/32", "fd00::/8"]));
        let out = s.cli(&["trust", "policy", "acme/idp", "--allow-source", "10.0.0.0/33"]);
        assert!(!out.status.success());
        assert!(String::from_utf8_lossy(&out.stderr).contains("allowed_sources"), "{out:?}");
        let v = s.cli_json(&["trust", "policy", "acme/idp", "--rate-limit", "7"]);
        assert_eq!(
            (&v["trust"]["privileged_groups"], &v["trust"]["allowed_sources"], &v["trust"]["rate_limit"]),
            (&json!([]), &json!([]), &json!(7)),
            "the CLI replaces the whole policy"
        );
        let v = s.cli_json(&["trust", "show", "acme/idp"]);
        assert_eq!(v["trust"]["rate_limit"], 7);

        let (_, v) = s.api(M::GET, "/api/v1/audit?action=trust.policy&limit=100", t, None).await;
        let recs = v["records"].as_array().unwrap();
        let ok: Vec<_> = recs.iter().filter(|r| r["outcome"] == "success").collect();
        assert_eq!(ok.len(), 2, "{v}");
        let first = ok.iter().find(|r| r["details"]["after"]["rate_limit"] == 50).unwrap();
        assert_eq!(
            first["details"]["before"],
            json!({"privileged_groups": [], "allowed_sources": [], "rate_limit": 0})
        );
        assert_eq!(first["details"]["after"]["allowed_sources"], json!(["127.0.0.1/32", "fd00::/8"]));
        assert_eq!(first["trust"], "idp");
        let last = ok.iter().find(|r| r["details"]["after"]["rate_limit"] == 7).unwrap();
        assert_eq!(last["details"]["before"]["privileged_groups"], json!(["admin*"]));
        // Refusals audited too: 7 invalid values + 2 bad bodies + unknown trust + 1 CLI = failures; 1 role denial.
        assert_eq!(recs.iter().filter(|r| r["outcome"] == "failure").count(), 11, "{v}");
        assert_eq!(recs.iter().filter(|r| r["outcome"] == "denied").count(), 1, "{v}");
        let (_, v) = s.api(M::GET, "/api/v1/audit?action=trust.create&limit=100", t, None).await;
        assert!(
            v["records"].as_array().unwrap().iter().any(|r| r["outcome"] == "failure"
                && r["details"]["message"].as_str().unwrap_or("").contains("allowed_sources"))
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_operations_on_privileged_groups_are_checked_one_by_one() {
    for b in backends() {
        let (s, key) = scim_server(b, None).await;
        let (st, v) = put_policy(&s, "idp", json!({"privileged_groups": ["admin*"]})).await;
        assert_eq!(st, 200, "{v}");
        let c = Scim { s: &s, dir: "acme".into(), key };
        let body = json!({
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:BulkRequest"],
            "Operations": [
                {"method": "POST", "path": "/Groups", "bulkId": "a", "data": {"displayName": "Admins"}},
                {"method": "POST", "path": "/Groups", "bulkId": "b", "data": {"displayName": "readers"}},
            ],
        });
        let r = c.post("/Bulk", body).await;
        assert_eq!(r.status, 200, "{}", r.body);
        let ops = r.body["Operations"].as_array().unwrap();
        assert_eq!((ops[0]["status"].as_str(), ops[1]["status"].as_str()), (Some("403"), Some("201")), "{}", r.body);
        assert!(c.filter("Groups", "displayName eq \"Admins\"").await.is_empty());
        let recs = denials(&s).await;
        assert_eq!(recs.iter().filter(|r| r["details"]["reason"] == "privileged_group").count(), 1, "{recs:?}");
    }
}

/// Trust `idp` (default scopes) with `admin*` privileged, and trust `root` that has
/// `groups:privileged`; their SCIM clients.
async fn idp_and_root(s: &Server, idp_key: String) -> (Scim<'_>, Scim<'_>) {
    let (st, v) = put_policy(s, "idp", json!({"privileged_groups": ["admin*"]})).await;
    assert_eq!(st, 200, "{v}");
    let scopes = ["users:read", "users:write", "groups:read", "groups:write", "groups:privileged", "bulk"];
    let (st, v) = s
        .api(
            M::POST,
            "/api/v1/directories/acme/trusts",
            Some(&s.token),
            Some(json!({"name": "root", "direction": "inbound", "scopes": scopes})),
        )
        .await;
    assert_eq!(st, 201, "{v}");
    let root = Scim { s, dir: "acme".into(), key: v["key"].as_str().unwrap().to_owned() };
    (Scim { s, dir: "acme".into(), key: idp_key }, root)
}

/// Issue 16, row 12: the members of a group inside a privileged group — directly or through
/// other groups — are members of the privileged group too, so adding any needs
/// `groups:privileged`: by PATCH, PUT and Bulk. A membership cycle does not loop. Before
/// the fix each of these writes answered 200.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn groups_nested_in_a_privileged_group_need_the_privileged_scope() {
    for b in backends() {
        let (s, key) = scim_server(b, None).await;
        let (c, root) = idp_and_root(&s, key).await;
        let id = |r: ScimResp| r.body["id"].as_str().unwrap().to_owned();
        let u1 = id(c.post("/Users", json!({"userName": "u1"})).await);
        let inner = id(c.post("/Groups", json!({"displayName": "inner"})).await);
        let middle = id(c.post("/Groups", json!({"displayName": "middle", "members": [{"value": inner}]})).await);
        let admins = root.post("/Groups", json!({"displayName": "Admins", "members": [{"value": middle}]})).await;
        assert_eq!(admins.status, 201, "{}", admins.body);
        let admins = id(admins);
        // A cycle: inner also holds middle.
        let add = |v: &str| json!([{"op": "add", "path": "members", "value": [{"value": v}]}]);
        assert_eq!(root.patch(&format!("/Groups/{inner}"), add(&middle)).await.status, 200);

        for g in [&inner, &middle] {
            let r = c.patch(&format!("/Groups/{g}"), add(&u1)).await;
            assert_scim_error(&r, 403, None);
            assert!(r.body["detail"].as_str().unwrap().contains("nested in a privileged group"), "{}", r.body);
        }
        let put = json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": "inner", "members": [{"value": u1}]});
        assert_scim_error(&c.call(M::PUT, &format!("/Groups/{inner}"), Some(put)).await, 403, None);
        let bulk = json!({
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:BulkRequest"],
            "Operations": [{"method": "PATCH", "path": format!("/Groups/{inner}"),
                "data": {"schemas": [PATCH_URN], "Operations": add(&u1)}}],
        });
        let r = c.post("/Bulk", bulk).await;
        assert_eq!(r.body["Operations"][0]["status"], "403", "{}", r.body);
        let held = root.get(&format!("/Groups/{inner}")).await;
        assert_eq!(member_ids(&held.body), vec![middle.clone()], "nothing changed");

        // With the scope it works; an unrelated group is not affected; once `middle` leaves
        // Admins, its members are ordinary again.
        assert_eq!(root.patch(&format!("/Groups/{inner}"), add(&u1)).await.status, 200);
        let staff = id(c.post("/Groups", json!({"displayName": "staff"})).await);
        assert_eq!(c.patch(&format!("/Groups/{staff}"), add(&u1)).await.status, 200);
        let drop = json!([{"op": "remove", "path": format!("members[value eq \"{middle}\"]")}]);
        assert_eq!(root.patch(&format!("/Groups/{admins}"), drop).await.status, 200);
        let u2 = id(c.post("/Users", json!({"userName": "u2"})).await);
        assert_eq!(c.patch(&format!("/Groups/{inner}"), add(&u2)).await.status, 200);

        let recs = denials(&s).await;
        let nested = recs
            .iter()
            .filter(|r| r["details"]["operation"] == "add members to a group nested in a privileged group")
            .count();
        assert_eq!(nested, 4, "{recs:?}");
        assert!(recs.iter().all(|r| r["details"]["reason"] == "privileged_group"), "{recs:?}");
    }
}
