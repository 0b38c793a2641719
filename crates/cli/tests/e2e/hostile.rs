//! End-to-end tests: directory isolation and hostile input on the SCIM service.
//!
//! Every test runs on SQLite and (when reachable) PostgreSQL. After each refused request
//! the tests read back what could have been written, so "rejected" also means "nothing
//! partially written".

#[allow(unused_imports)]
use super::*;

use reqwest::Method as M;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const BULK_REQ: &str = "urn:ietf:params:scim:api:messages:2.0:BulkRequest";
const DEFAULT_SCOPES: &[&str] = &["users:read", "users:write", "groups:read", "groups:write", "bulk"];

/// Creates directory `dir` (if `create`) and an inbound trust `trust` on it with `scopes`
/// (and extra trust fields); returns its provisioning key.
async fn trust(s: &Server, dir: &str, name: &str, scopes: &[&str], extra: Value) -> String {
    let t = Some(s.token.as_str());
    let (st, _) = s.api(M::GET, &format!("/api/v1/directories/{dir}"), t, None).await;
    if st == 404 {
        let (st, v) = s.api(M::POST, "/api/v1/directories", t, Some(json!({"name": dir}))).await;
        assert_eq!(st, 201, "{v}");
    }
    let mut body = json!({"name": name, "direction": "inbound", "scopes": scopes});
    if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
        b.extend(e.clone());
    }
    let (st, v) = s.api(M::POST, &format!("/api/v1/directories/{dir}/trusts"), t, Some(body)).await;
    assert_eq!(st, 201, "{v}");
    v["key"].as_str().unwrap().to_owned()
}

fn client<'a>(s: &'a Server, dir: &str, key: &str) -> Scim<'a> {
    Scim { s, dir: dir.into(), key: key.into() }
}

impl Scim<'_> {
    async fn put(&self, path: &str, body: Value) -> ScimResp {
        self.call(M::PUT, path, Some(body)).await
    }

    async fn delete(&self, path: &str) -> ScimResp {
        self.call(M::DELETE, path, None).await
    }

    /// `POST /Bulk` (named apart from bulk.rs's helper).
    async fn bulk_req(&self, fail_on_errors: Option<u64>, ops: Value) -> ScimResp {
        let mut body = json!({"schemas": [BULK_REQ], "Operations": ops});
        if let Some(n) = fail_on_errors {
            body["failOnErrors"] = json!(n);
        }
        self.post("/Bulk", body).await
    }

    /// A request with a raw byte body.
    async fn bytes(&self, method: M, path: &str, body: Vec<u8>) -> ScimResp {
        let resp = reqwest::Client::new()
            .request(method, format!("{}/scim/v2/{}{path}", self.s.url, self.dir))
            .bearer_auth(&self.key)
            .header("content-type", "application/scim+json")
            .body(body)
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let text = resp.text().await.unwrap();
        let body =
            if text.is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap_or(Value::String(text)) };
        ScimResp { status, headers, body }
    }

    /// The ids (sorted) of every resource of an endpoint (`Users` or `Groups`).
    async fn ids(&self, endpoint: &str) -> Vec<String> {
        let r = self.get(&format!("/{endpoint}?count=200")).await;
        assert_eq!(r.status, 200, "{}", r.body);
        let mut v: Vec<String> =
            r.body["Resources"].as_array().unwrap().iter().map(|x| x["id"].as_str().unwrap().to_owned()).collect();
        v.sort();
        v
    }

    /// Every resource of the directory, as a canonical snapshot (ids, versions, bodies).
    async fn snapshot(&self) -> Value {
        let mut out = Vec::new();
        for ep in ["Users", "Groups"] {
            for id in self.ids(ep).await {
                let r = self.get(&format!("/{ep}/{id}")).await;
                assert_eq!(r.status, 200, "{}", r.body);
                out.push(r.body);
            }
        }
        Value::Array(out)
    }
}

fn new_id(r: &ScimResp) -> String {
    assert_eq!(r.status, 201, "{}", r.body);
    r.body["id"].as_str().unwrap().to_owned()
}

fn total(r: &ScimResp) -> i64 {
    assert_eq!(r.status, 200, "{}", r.body);
    r.body["totalResults"].as_i64().unwrap()
}

/// Percent-encodes a query value completely (every byte but unreserved ones).
fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// `GET /{endpoint}?filter=…` with the filter fully percent-encoded; the resources found.
async fn find(c: &Scim<'_>, endpoint: &str, f: &str) -> Vec<Value> {
    let r = c.get(&format!("/{endpoint}?filter={}", enc(f))).await;
    assert_eq!(r.status, 200, "{f}: {}", r.body);
    r.body["Resources"].as_array().unwrap().clone()
}

// ---------------------------------------------------------------- A. isolation

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn directories_are_isolated_on_every_endpoint() {
    for b in backends() {
        let s = Server::start(b);
        let ka = trust(&s, "alpha", "idp", DEFAULT_SCOPES, json!({})).await;
        let kb = trust(&s, "beta", "idp", DEFAULT_SCOPES, json!({})).await;
        let a = client(&s, "alpha", &ka);
        let bb = client(&s, "beta", &kb);
        // A's key on B's base.
        let a_on_b = client(&s, "beta", &ka);

        let bu = new_id(&bb.post("/Users", json!({"userName": "bob@beta", "externalId": "ext-bob"})).await);
        let bu2 = new_id(&bb.post("/Users", json!({"userName": "carol@beta", "title": "keep"})).await);
        let bg = new_id(&bb.post("/Groups", json!({"displayName": "beta-team", "members": [{"value": bu}]})).await);
        let au = new_id(&a.post("/Users", json!({"userName": "alice@alpha"})).await);
        let ag = new_id(&a.post("/Groups", json!({"displayName": "alpha-team", "members": [{"value": au}]})).await);
        let before_b = bb.snapshot().await;
        let before_a = a.snapshot().await;

        // B's ids through A's base: 404 for every method, whatever type the path names.
        for (ep, id) in [("Users", &bu), ("Groups", &bg), ("Users", &bg), ("Groups", &bu)] {
            let p = format!("/{ep}/{id}");
            assert_scim_error(&a.get(&p).await, 404, None);
            let body = if ep == "Users" { json!({"userName": "hijack"}) } else { json!({"displayName": "hijack"}) };
            assert_scim_error(&a.put(&p, body).await, 404, None);
            let r = a.patch(&p, json!([{"op": "replace", "path": "externalId", "value": "hijack"}])).await;
            assert_scim_error(&r, 404, None);
            assert_scim_error(&a.delete(&p).await, 404, None);
        }

        // A's key on B's base: 401 everywhere, discovery included.
        for (m, p, body) in [
            (M::GET, "/ServiceProviderConfig".to_owned(), None),
            (M::GET, "/Users".to_owned(), None),
            (M::GET, format!("/Users/{bu}"), None),
            (M::GET, format!("/Groups/{bg}"), None),
            (M::POST, "/Users".to_owned(), Some(json!({"userName": "x"}))),
            (M::PUT, format!("/Users/{bu}"), Some(json!({"userName": "x"}))),
            (
                M::PATCH,
                format!("/Groups/{bg}"),
                Some(json!({"schemas": [PATCH_URN], "Operations": [{"op": "remove", "path": "members"}]})),
            ),
            (M::DELETE, format!("/Users/{bu2}"), None),
            (M::POST, "/Users/.search".to_owned(), Some(json!({}))),
            (M::POST, "/.search".to_owned(), Some(json!({}))),
            (
                M::POST,
                "/Bulk".to_owned(),
                Some(
                    json!({"schemas": [BULK_REQ], "Operations": [{"method": "DELETE", "path": format!("/Users/{bu}")}]}),
                ),
            ),
        ] {
            let r = a_on_b.call(m.clone(), &p, body).await;
            assert_scim_error(&r, 401, None);
            assert!(r.header("www-authenticate").unwrap().starts_with("Bearer"), "{m} {p}");
        }

        // Filters on A's base naming B's ids and names find nothing of B.
        for f in [
            format!("id eq \"{bu}\""),
            "userName eq \"bob@beta\"".to_owned(),
            "userName co \"beta\"".to_owned(),
            "externalId eq \"ext-bob\"".to_owned(),
            format!("groups.value eq \"{bg}\""),
            format!("id eq \"{bu}\" or userName pr"),
        ] {
            let found = a.filter("Users", &f).await;
            assert!(found.iter().all(|u| u["id"] == au), "{f}: {found:?}");
        }
        for f in [
            format!("id eq \"{bg}\""),
            format!("members eq \"{bu}\""),
            format!("members.value eq \"{bu}\""),
            format!("members[value eq \"{bu}\"]"),
            "displayName sw \"beta\"".to_owned(),
        ] {
            assert!(a.filter("Groups", &f).await.is_empty(), "{f}");
        }
        // The member filter does work on A's own data (the test above is not vacuous).
        assert_eq!(a.filter("Groups", &format!("members eq \"{au}\"")).await.len(), 1);
        for (ep, f) in [
            ("/Users/.search", format!("id eq \"{bu}\"")),
            ("/Groups/.search", format!("members eq \"{bu}\"")),
            ("/.search", format!("id eq \"{bu}\" or id eq \"{bg}\"")),
        ] {
            let r = a.post(ep, json!({"filter": f})).await;
            assert_eq!((r.status, r.body["totalResults"].as_i64()), (200, Some(0)), "{ep} {f}: {}", r.body);
        }
        let all = a.post("/.search", json!({})).await;
        let ids: Vec<&str> =
            all.body["Resources"].as_array().unwrap().iter().filter_map(|r| r["id"].as_str()).collect();
        assert_eq!(ids.len(), 2, "{}", all.body);
        assert!(ids.iter().all(|i| *i == au || *i == ag), "{ids:?}");

        // A group of A with a member of B: 400 invalidValue, nothing written.
        let r = a
            .patch(
                &format!("/Groups/{ag}"),
                json!([
                    {"op": "replace", "path": "displayName", "value": "renamed"},
                    {"op": "add", "path": "members", "value": [{"value": bu}]}
                ]),
            )
            .await;
        assert_scim_error(&r, 400, Some("invalidValue"));
        let r = a.put(&format!("/Groups/{ag}"), json!({"displayName": "renamed", "members": [{"value": bu}]})).await;
        assert_scim_error(&r, 400, Some("invalidValue"));
        let r = a.post("/Groups", json!({"displayName": "smuggler", "members": [{"value": au}, {"value": bg}]})).await;
        assert_scim_error(&r, 400, Some("invalidValue"));
        assert!(a.filter("Groups", "displayName eq \"smuggler\"").await.is_empty());
        // Removing B's member from A's group is a no-op, not a change to B.
        let r = a
            .patch(&format!("/Groups/{ag}"), json!([{"op": "remove", "path": format!("members[value eq \"{bu}\"]")}]))
            .await;
        assert_eq!(r.status, 200, "{}", r.body);

        // Bulk in A referencing B's ids: each operation fails, none touches B.
        let r = a
            .bulk_req(
                None,
                json!([
                    {"method": "PUT", "path": format!("/Users/{bu}"), "data": {"userName": "hijack"}},
                    {"method": "PATCH", "path": format!("/Users/{bu}"), "data": {"schemas": [PATCH_URN],
                        "Operations": [{"op": "replace", "path": "active", "value": false}]}},
                    {"method": "DELETE", "path": format!("/Users/{bu2}")},
                    {"method": "DELETE", "path": format!("/Groups/{bg}")},
                    {"method": "POST", "bulkId": "g", "path": "/Groups",
                        "data": {"displayName": "bulk-smuggler", "members": [{"value": bu}]}},
                    {"method": "PATCH", "path": format!("/Groups/{ag}"), "data": {"schemas": [PATCH_URN],
                        "Operations": [{"op": "add", "path": "members", "value": [{"value": bu2}]}]}},
                    {"method": "PUT", "path": format!("/Groups/{ag}"),
                        "data": {"displayName": "alpha-team", "members": [{"value": bg}]}}
                ]),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
        let st: Vec<&str> =
            r.body["Operations"].as_array().unwrap().iter().map(|o| o["status"].as_str().unwrap()).collect();
        assert_eq!(st, ["404", "404", "404", "404", "400", "400", "400"], "{}", r.body);
        for op in r.body["Operations"].as_array().unwrap() {
            assert_eq!(op["response"]["schemas"][0], ERROR_URN, "{op}");
        }

        // Nothing changed on either side (ids, versions, bodies, memberships).
        assert_eq!(bb.snapshot().await, before_b);
        assert_eq!(a.snapshot().await, before_a);
        // Uniqueness is per directory: A may use B's userName without learning anything.
        new_id(&a.post("/Users", json!({"userName": "BOB@beta"})).await);
        assert_eq!(bb.snapshot().await, before_b);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_endpoint_checks_its_scope() {
    for b in backends() {
        let s = Server::start(b);
        let full = client(&s, "acme", &trust(&s, "acme", "full", DEFAULT_SCOPES, json!({})).await);
        let mut keys = Vec::new();
        for sc in ["users:read", "users:write", "groups:read", "groups:write", "bulk"] {
            keys.push((sc, trust(&s, "acme", &sc.replace(':', "-"), &[sc], json!({})).await));
        }
        let with = |scope: &str| keys.iter().find(|(sc, _)| *sc == scope).map(|(_, k)| client(&s, "acme", k)).unwrap();
        let without = |scope: &str| {
            keys.iter().filter(|(sc, _)| *sc != scope).map(|(_, k)| client(&s, "acme", k)).collect::<Vec<_>>()
        };
        let u = new_id(&full.post("/Users", json!({"userName": "u0"})).await);
        let g = new_id(&full.post("/Groups", json!({"displayName": "g0"})).await);
        let before = full.snapshot().await;

        // Discovery needs authentication only.
        for (_, k) in &keys {
            let c = client(&s, "acme", k);
            for p in ["/ServiceProviderConfig", "/ResourceTypes", "/ResourceTypes/Group", "/Schemas"] {
                assert_eq!(c.get(p).await.status, 200, "{p}");
            }
        }

        for (ep, id, read, write, name) in [
            ("Users", &u, "users:read", "users:write", "userName"),
            ("Groups", &g, "groups:read", "groups:write", "displayName"),
        ] {
            let one = format!("/{ep}/{id}");
            // Reads: denied without the read scope (every other single-scope key), allowed with it.
            for c in without(read) {
                assert_scim_error(&c.get(&format!("/{ep}")).await, 403, None);
                assert_scim_error(&c.get(&one).await, 403, None);
                assert_scim_error(&c.post(&format!("/{ep}/.search"), json!({})).await, 403, None);
            }
            let r = with(read);
            assert_eq!(total(&r.get(&format!("/{ep}")).await), 1);
            assert_eq!(r.get(&one).await.status, 200);
            assert_eq!(total(&r.post(&format!("/{ep}/.search"), json!({})).await), 1);

            // Writes: denied without the write scope, nothing written.
            for c in without(write) {
                let d = c.post(&format!("/{ep}"), json!({name: "denied"})).await;
                assert_scim_error(&d, 403, None);
                assert!(d.body["detail"].as_str().unwrap().contains(write), "{}", d.body);
                assert_scim_error(&c.put(&one, json!({name: "denied"})).await, 403, None);
                let p = c.patch(&one, json!([{"op": "replace", "path": name, "value": "denied"}])).await;
                assert_scim_error(&p, 403, None);
                assert_scim_error(&c.delete(&one).await, 403, None);
            }
            assert_eq!(full.snapshot().await, before);
            let w = with(write);
            let created = new_id(&w.post(&format!("/{ep}"), json!({name: "allowed"})).await);
            let p = format!("/{ep}/{created}");
            assert_eq!(w.put(&p, json!({name: "allowed2"})).await.status, 200);
            assert_eq!(w.patch(&p, json!([{"op": "replace", "path": name, "value": "allowed3"}])).await.status, 200);
            assert_eq!(w.delete(&p).await.status, 204);
        }
        assert_eq!(full.snapshot().await, before);

        // Root .search: each type only with its read scope; neither → 403.
        let r = with("users:read").post("/.search", json!({})).await;
        assert_eq!(r.body["Resources"][0]["id"], json!(u), "{}", r.body);
        assert_eq!(total(&r), 1);
        let r = with("groups:read").post("/.search", json!({})).await;
        assert_eq!((total(&r), &r.body["Resources"][0]["id"]), (1, &json!(g)));
        assert_eq!(total(&full.post("/.search", json!({})).await), 2);
        for sc in ["users:write", "groups:write", "bulk"] {
            assert_scim_error(&with(sc).post("/.search", json!({})).await, 403, None);
        }

        // Bulk needs `bulk`, then each operation its write scope.
        let ops = json!([{"method": "POST", "path": "/Users", "bulkId": "x", "data": {"userName": "via-bulk"}}]);
        for sc in ["users:read", "users:write", "groups:read", "groups:write"] {
            assert_scim_error(&with(sc).bulk_req(None, ops.clone()).await, 403, None);
        }
        let r = with("bulk").bulk_req(None, ops.clone()).await;
        assert_eq!((r.status, &r.body["Operations"][0]["status"]), (200, &json!("403")), "{}", r.body);
        assert_eq!(full.snapshot().await, before);
        let r = full.bulk_req(None, ops).await;
        assert_eq!((r.status, &r.body["Operations"][0]["status"]), (200, &json!("201")), "{}", r.body);

        // Privileged groups (covered fully in policy.rs): one assertion.
        let k = trust(&s, "acme", "plain", DEFAULT_SCOPES, json!({"privileged_groups": ["admin*"]})).await;
        let plain = client(&s, "acme", &k);
        assert_scim_error(&plain.post("/Groups", json!({"displayName": "Admins-EU"})).await, 403, None);
        assert!(full.filter("Groups", "displayName eq \"Admins-EU\"").await.is_empty());
    }
}

// ---------------------------------------------------------------- B. hostile input

/// Sends `head` and then `body` (raw bytes) on a fresh connection, without closing it,
/// and returns the status of the response (`None` if none arrives within 20 s).
async fn raw_http(s: &Server, head: String, body: Vec<u8>) -> Option<u16> {
    let addr = s.url.strip_prefix("http://").unwrap().trim_end_matches('/').to_owned();
    let stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let (mut rd, mut wr) = stream.into_split();
    let writer = tokio::spawn(async move {
        if wr.write_all(head.as_bytes()).await.is_err() {
            return wr;
        }
        for chunk in body.chunks(64 * 1024) {
            if wr.write_all(chunk).await.is_err() {
                break;
            }
        }
        let _ = wr.flush().await;
        // Keep the connection open: the rest of the declared body never comes.
        wr
    });
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(20), async {
        let mut chunk = [0u8; 4096];
        loop {
            match rd.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
            if buf.windows(4).any(|w| w == b"\r\n\r\n") {
                break;
            }
        }
    })
    .await;
    writer.abort();
    read.ok()?;
    let line = String::from_utf8_lossy(&buf);
    line.split(' ').nth(1).and_then(|c| c.parse().ok())
}

/// A request head for `POST /scim/v2/{dir}{path}`.
fn head(c: &Scim<'_>, path: &str, framing: &str) -> String {
    format!(
        "POST /scim/v2/{}{path} HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/scim+json\r\n{framing}\r\n",
        c.dir, c.key
    )
}

/// A string that does not compress (so database indexes see its full size).
fn noise(len: usize) -> String {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            char::from(b'a' + (x % 26) as u8)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_bodies_get_scim_errors_and_write_nothing() {
    for b in backends() {
        let (s, key) = scim_server(b, None).await;
        let c = client(&s, "acme", &key);
        let u = new_id(&c.post("/Users", json!({"userName": "victim", "title": "t0", "active": true})).await);
        let g = new_id(&c.post("/Groups", json!({"displayName": "grp", "members": [{"value": u}]})).await);
        let up = format!("/Users/{u}");
        let gp = format!("/Groups/{g}");
        let before = c.snapshot().await;

        // Malformed JSON and non-object bodies: 400 invalidSyntax on every body endpoint.
        for body in ["{\"userName\":", "{'userName':'x'}", "{\"userName\":\"x\"} trailing", "", "[]", "\"x\"", "null"] {
            for (m, p) in [
                (M::POST, "/Users"),
                (M::PUT, up.as_str()),
                (M::PATCH, up.as_str()),
                (M::POST, "/Groups"),
                (M::PATCH, gp.as_str()),
                (M::POST, "/Users/.search"),
                (M::POST, "/.search"),
                (M::POST, "/Bulk"),
            ] {
                let r = c.raw(m.clone(), p, Some(body.to_owned()), &[]).await;
                assert_scim_error(&r, 400, Some("invalidSyntax"));
            }
        }

        // Wrong types: 400 invalidValue.
        for body in [
            json!({"userName": 5}),
            json!({"userName": ["a", "b"]}),
            json!({"userName": {"value": "x"}}),
            json!({"userName": "x", "active": "maybe"}),
            json!({"userName": "x", "active": 1}),
            json!({"userName": "x", "emails": 5}),
            json!({"userName": "x", "emails": [{"value": 5}]}),
            json!({"userName": "x", "emails": [["x"]]}),
            json!({"userName": "x", "emails": [{"value": "a@b", "primary": "sometimes"}]}),
            json!({"userName": "x", "name": "x"}),
            json!({"userName": "x", "externalId": 7}),
        ] {
            let r = c.post("/Users", body.clone()).await;
            assert_scim_error(&r, 400, Some("invalidValue"));
            let r = c.put(&up, body.clone()).await;
            assert_scim_error(&r, 400, Some("invalidValue"));
        }
        // Documented coercion (docs/scim.md, "A bare value for a complex attribute with a
        // `value` sub-attribute" / "for a multi-valued attribute"): `emails: "x"` is
        // `[{"value": "x"}]`, not an error. Entra relies on the same rule for `manager`.
        let r = c.post("/Users", json!({"userName": "coerced", "emails": "x@y"})).await;
        assert_eq!((r.status, &r.body["emails"]), (201, &json!([{"value": "x@y"}])), "{}", r.body);
        assert_eq!(c.delete(&format!("/Users/{}", r.body["id"].as_str().unwrap())).await.status, 204);
        for ops in [
            json!([{"op": "replace", "path": "active", "value": "maybe"}]),
            json!([{"op": "replace", "path": "title", "value": "changed"}, {"op": "replace", "path": "userName", "value": 5}]),
            json!([{"op": "replace", "path": "title", "value": "changed"}, {"op": "replace", "value": {"active": "maybe"}}]),
            json!([{"op": "add", "path": "emails", "value": [{"value": 5}]}]),
        ] {
            assert_scim_error(&c.patch(&up, ops).await, 400, Some("invalidValue"));
        }
        let r = c.patch(&gp, json!([{"op": "add", "path": "members", "value": [{"value": 5}]}])).await;
        assert_eq!(r.status, 400, "{}", r.body);
        assert_eq!(c.snapshot().await, before);

        // 1,000-deep nesting: 400, no stack overflow, the server still answers.
        let deep = format!("{{\"userName\":\"deep\",\"x\":{}1{}}}", "[".repeat(1000), "]".repeat(1000));
        let deep_obj = format!("{{\"userName\":\"deep\",\"x\":{}1{}}}", "{\"a\":".repeat(1000), "}".repeat(1000));
        for body in [&deep, &deep_obj] {
            for (m, p) in [(M::POST, "/Users"), (M::PATCH, up.as_str()), (M::POST, "/.search"), (M::POST, "/Bulk")] {
                assert_scim_error(&c.raw(m, p, Some(body.clone()), &[]).await, 400, Some("invalidSyntax"));
            }
        }
        // Deep but within the parser's limit, inside a Bulk operation's data and a PATCH value.
        let nested = format!("{}1{}", "[".repeat(100), "]".repeat(100));
        let bulk = format!(
            "{{\"schemas\":[\"{BULK_REQ}\"],\"Operations\":[{{\"method\":\"POST\",\"path\":\"/Users\",\"data\":{{\"userName\":\"n\",\"x\":{nested}}}}}]}}"
        );
        let r = c.raw(M::POST, "/Bulk", Some(bulk), &[]).await;
        assert_eq!(r.status, 200, "{}", r.body);
        let n = r.body["Operations"][0]["location"].as_str().unwrap().rsplit('/').next().unwrap().to_owned();
        assert_eq!(c.delete(&format!("/Users/{n}")).await.status, 204);

        // Invalid UTF-8 in the body: 400 invalidSyntax.
        let mut bad = b"{\"userName\":\"".to_vec();
        bad.extend_from_slice(&[0xff, 0xfe, 0xc3]);
        bad.extend_from_slice(b"\"}");
        for (m, p) in [(M::POST, "/Users"), (M::PUT, up.as_str()), (M::POST, "/Users/.search")] {
            assert_scim_error(&c.bytes(m, p, bad.clone()).await, 400, Some("invalidSyntax"));
        }
        // A lone surrogate escape is not a Unicode string either.
        let r = c.raw(M::POST, "/Users", Some("{\"userName\":\"a\\ud800b\"}".into()), &[]).await;
        assert_scim_error(&r, 400, Some("invalidSyntax"));
        // NUL characters never reach the database as raw NULs (PostgreSQL rejects them).
        let r = c.post("/Users", json!({"userName": "nul\u{0}name"})).await;
        assert_scim_error(&r, 400, Some("invalidValue"));
        let r = c.post("/Users", json!({"userName": "nul-ext", "externalId": "e\u{0}x"})).await;
        assert_scim_error(&r, 400, Some("invalidValue"));
        // Elsewhere a NUL is just a character, stored and returned.
        let r = c.post("/Users", json!({"userName": "nul-title", "title": "t\u{0}"})).await;
        assert_eq!((r.status, &r.body["title"]), (201, &json!("t\u{0}")), "{}", r.body);
        assert_eq!(find(&c, "Users", "title eq \"t\\u0000\"").await.len(), 1);
        assert_eq!(c.delete(&format!("/Users/{}", r.body["id"].as_str().unwrap())).await.status, 204);

        // Oversized attribute values: a 100 KB userName, displayName, externalId or e-mail
        // (below the body limit, above what an index can hold) is 400 invalidValue;
        // a long non-indexed attribute is fine.
        let big = noise(100_000);
        for (ep, body) in [
            ("/Users", json!({"userName": big})),
            ("/Users", json!({"userName": "big-ext", "externalId": big})),
            ("/Users", json!({"userName": "big-mail", "emails": [{"value": big}]})),
            ("/Groups", json!({"displayName": big})),
        ] {
            assert_scim_error(&c.post(ep, body.clone()).await, 400, Some("invalidValue"));
        }
        assert_scim_error(&c.patch(&up, json!([{"op": "replace", "path": "userName", "value": big}])).await, 400, None);
        assert_scim_error(&c.put(&gp, json!({"displayName": big})).await, 400, Some("invalidValue"));
        // Over the body limit even as a single value: 413.
        assert_scim_error(&c.post("/Users", json!({"userName": noise(1_100_000)})).await, 413, None);
        assert_eq!(c.snapshot().await, before);
        let r = c.post("/Users", json!({"userName": "long-title", "title": big})).await;
        let lt = new_id(&r);
        assert_eq!(r.body["title"].as_str().map(str::len), Some(100_000));
        assert!(c.filter("Users", &format!("title eq \"{}\"", &big[..100])).await.is_empty());
        assert_eq!(c.delete(&format!("/Users/{lt}")).await.status, 204);

        // A 10 MB body (declared, or chunked): 413 once the limit is passed — the
        // server answers after 2 MiB of the 10 MB and does not wait for (or buffer) the rest.
        let two_mib = vec![b' '; 2 * 1024 * 1024];
        for p in ["/Users", "/Bulk", "/.search"] {
            let st = raw_http(&s, head(&c, p, "Content-Length: 10485760\r\n"), two_mib.clone()).await;
            assert_eq!(st, Some(413), "{p} with Content-Length");
            let mut chunked = Vec::new();
            for _ in 0..32 {
                chunked.extend_from_slice(format!("{:x}\r\n", 64 * 1024).as_bytes());
                chunked.extend_from_slice(&[b' '; 64 * 1024]);
                chunked.extend_from_slice(b"\r\n");
            }
            let st = raw_http(&s, head(&c, p, "Transfer-Encoding: chunked\r\n"), chunked).await;
            assert_eq!(st, Some(413), "{p} chunked");
        }
        // And when all 10 MB are sent.
        let ten = format!("{{\"userName\":\"{}\"}}", "a".repeat(10 * 1024 * 1024)).into_bytes();
        let framing = format!("Content-Length: {}\r\n", ten.len());
        assert_eq!(raw_http(&s, head(&c, "/Users", &framing), ten).await, Some(413));

        assert_eq!(c.snapshot().await, before);
        assert_eq!(c.get("/ServiceProviderConfig").await.status, 200);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_filters_and_paging() {
    for b in backends() {
        let (s, key) = scim_server(b, None).await;
        let c = client(&s, "acme", &key);
        let names = ["plain", "x' OR 1=1 --", "100%", "a_b", "back\\slash", "Robert'); DROP TABLE scim_resources;--"];
        let mut ids = Vec::new();
        for n in names {
            ids.push(new_id(&c.post("/Users", json!({"userName": n, "title": n})).await));
        }
        let g = new_id(&c.post("/Groups", json!({"displayName": "50% off_"})).await);

        // Filters far over the term limit: 400 invalidFilter in the query and in .search.
        let huge = vec!["userName eq \"a\""; 10_000].join(" or ");
        let many = vec!["title pr"; 300].join(" or ");
        let deep = format!("{}userName pr{}", "(".repeat(1000), ")".repeat(1000));
        let nots = format!("{}userName pr", "not (".repeat(100));
        // The longest filter a URL can carry (hyper and the `http` crate cap a request
        // target at 64 KiB): 8,000 terms.
        let in_url = vec!["x+pr"; 8_000].join("+or+");
        assert_scim_error(&c.get(&format!("/Users?filter={in_url}")).await, 400, Some("invalidFilter"));
        // 10,000 terms do not fit in a URL: the HTTP layer answers 414 before SCIM sees it.
        let target = format!("/scim/v2/acme/Users?filter={}", vec!["x+pr"; 10_000].join("+or+"));
        let head10k = format!("GET {target} HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {key}\r\n\r\n");
        assert_eq!(raw_http(&s, head10k, Vec::new()).await, Some(414));
        for f in [&huge, &many, &deep, &nots] {
            let q = enc(f);
            if q.len() < 60_000 {
                assert_scim_error(&c.get(&format!("/Users?filter={q}")).await, 400, Some("invalidFilter"));
            }
            for ep in ["/Users/.search", "/Groups/.search", "/.search"] {
                assert_scim_error(&c.post(ep, json!({"filter": f})).await, 400, Some("invalidFilter"));
            }
        }

        // SQL metacharacters and LIKE wildcards match only what they literally say.
        let cases: Vec<(String, Vec<usize>)> = vec![
            ("userName eq \"x' OR 1=1 --\"".into(), vec![1]),
            ("userName co \"%\"".into(), vec![2]),
            ("userName co \"_\"".into(), vec![3, 5]),
            ("userName sw \"\\\\\"".into(), vec![]),
            ("userName co \"\\\\\"".into(), vec![4]),
            ("userName ew \"\\\\slash\"".into(), vec![4]),
            ("userName co \"'\"".into(), vec![1, 5]),
            ("userName co \"--\"".into(), vec![1, 5]),
            ("userName sw \"%\"".into(), vec![]),
            ("userName co \"%%\"".into(), vec![]),
            ("userName eq \"Robert'); DROP TABLE scim_resources;--\"".into(), vec![5]),
            ("title co \"%\" or title co \"_\"".into(), vec![2, 3, 5]),
            ("userName co \"*\"".into(), vec![]),
            ("userName co \".*\"".into(), vec![]),
        ];
        // Not a filter at all: the quote ends the value, the rest is garbage.
        let r = c.get(&format!("/Users?filter={}", enc("userName eq \"x\" OR 1=1 --\""))).await;
        assert_scim_error(&r, 400, Some("invalidFilter"));
        for (f, want) in &cases {
            let r = c.get(&format!("/Users?filter={}", enc(f))).await;
            assert_eq!(total(&r) as usize, want.len(), "{f}: {}", r.body);
            let mut got: Vec<String> =
                r.body["Resources"].as_array().unwrap().iter().map(|u| u["id"].as_str().unwrap().to_owned()).collect();
            got.sort();
            let mut exp: Vec<String> = want.iter().map(|i| ids[*i].clone()).collect();
            exp.sort();
            assert_eq!(got, exp, "{f}");
            // The in-memory path (sortBy forces nothing in SQL; .search shares it) agrees.
            let r = c.post("/.search", json!({"filter": f})).await;
            assert_eq!(total(&r) as usize, want.len(), "root .search {f}");
        }
        assert_eq!(find(&c, "Groups", "displayName co \"%\"").await.len(), 1);
        assert_eq!(find(&c, "Groups", "displayName ew \"_\"").await[0]["id"], json!(g));
        assert_eq!(find(&c, "Groups", "displayName co \"x_\"").await.len(), 0);
        // Everything is still there.
        assert_eq!(total(&c.get("/Users").await), names.len() as i64);

        // Invalid UTF-8 in the query string (percent-encoded): 400, not a silent U+FFFD.
        for q in ["filter=userName%20eq%20%22%FF%FE%22", "filter=userName%20pr&attributes=%C3", "startIndex=%80"] {
            assert_scim_error(&c.get(&format!("/Users?{q}")).await, 400, None);
            assert_scim_error(&c.get(&format!("/Groups?{q}")).await, 400, None);
        }
        assert_scim_error(&c.get(&format!("/Users/{}?attributes=%FF", ids[0])).await, 400, None);
        // Invalid UTF-8 in a path segment is not a resource of this directory.
        assert_eq!(c.get("/Users/%FF%FE").await.status, 404);
        // A raw control character in a filter string is malformed (JSON string rules);
        // escaped, a NUL is just part of a value.
        let r = c.get("/Users?filter=userName%20eq%20%22a%00b%22").await;
        assert_scim_error(&r, 400, Some("invalidFilter"));
        assert!(find(&c, "Users", "userName eq \"a\\u0000b\"").await.is_empty());

        // Paging: documented in docs/scim.md — startIndex below 1 means 1, count below 0
        // means 0, count above 200 is 200, non-numeric values are ignored; numbers too
        // large for an integer are clamped (an empty page far beyond the end).
        let n = names.len();
        for (q, start, items) in [
            ("startIndex=0", 1, n),
            ("startIndex=-5", 1, n),
            ("startIndex=-99999999999999999999", 1, n),
            ("startIndex=abc", 1, n),
            ("startIndex=2&count=2", 2, 2),
            ("startIndex=6", 6, 1),
            ("startIndex=7", 7, 0),
            ("count=0", 1, 0),
            ("count=-1", 1, 0),
            ("count=abc", 1, n),
            ("count=1000000", 1, n),
            ("count=99999999999999999999", 1, n),
            ("count=1e400", 1, n),
            ("startIndex=1.5&count=2.9", 1, 2),
        ] {
            for path in [format!("/Users?{q}"), format!("/Users?{q}&sortBy=title")] {
                let r = c.get(&path).await;
                assert_eq!(r.status, 200, "{path}: {}", r.body);
                assert_eq!(
                    (r.body["totalResults"].as_u64(), r.body["startIndex"].as_i64(), r.body["itemsPerPage"].as_u64()),
                    (Some(n as u64), Some(start), Some(items as u64)),
                    "{path}: {}",
                    r.body
                );
            }
        }
        for q in ["startIndex=9223372036854775807", "startIndex=99999999999999999999", "startIndex=1e300"] {
            let r = c.get(&format!("/Users?{q}")).await;
            assert_eq!(r.status, 200, "{q}: {}", r.body);
            assert_eq!((r.body["totalResults"].as_u64(), r.body["itemsPerPage"].as_u64()), (Some(n as u64), Some(0)));
            assert_eq!(r.body["startIndex"].as_i64(), Some(i64::MAX), "{q}");
        }
        for body in [
            json!({"startIndex": -3, "count": 2}),
            json!({"startIndex": "0", "count": "2"}),
            json!({"startIndex": 1e300, "count": -1e300}),
            json!({"startIndex": [1], "count": {"a": 1}}),
            json!({"startIndex": true, "count": null}),
        ] {
            for ep in ["/Users/.search", "/.search"] {
                let r = c.post(ep, body.clone()).await;
                assert_eq!(r.status, 200, "{ep} {body}: {}", r.body);
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_bulk_leaves_only_what_it_reports_done() {
    for b in backends() {
        let (s, key) = scim_server(b, None).await;
        let c = client(&s, "acme", &key);
        let keep = new_id(&c.post("/Users", json!({"userName": "keep", "title": "t0"})).await);
        let r = c
            .bulk_req(
                Some(1),
                json!([
                    {"method": "POST", "bulkId": "a", "path": "/Users", "data": {"userName": "bulk-a"}},
                    {"method": "POST", "bulkId": "b", "path": "/Users", "data": {"userName": 5}},
                    {"method": "POST", "bulkId": "c", "path": "/Users", "data": {"userName": "bulk-c"}},
                    {"method": "PATCH", "path": format!("/Users/{keep}"), "data": {"schemas": [PATCH_URN],
                        "Operations": [{"op": "replace", "path": "title", "value": "changed"}]}},
                    {"method": "DELETE", "path": format!("/Users/{keep}")}
                ]),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
        let ops = r.body["Operations"].as_array().unwrap();
        assert_eq!(ops.len(), 2, "{}", r.body);
        assert_eq!((&ops[0]["status"], &ops[1]["status"]), (&json!("201"), &json!("400")));
        assert_eq!(ops[1]["response"]["scimType"], "invalidValue");
        let a_id = ops[0]["location"].as_str().unwrap().rsplit('/').next().unwrap().to_owned();
        // Exactly the reported POST was done; the rest left no trace.
        let mut expect = vec![keep.clone(), a_id.clone()];
        expect.sort();
        assert_eq!(c.ids("Users").await, expect);
        assert_eq!(c.get(&format!("/Users/{keep}")).await.body["title"], "t0");
        assert!(c.filter("Users", "userName eq \"bulk-c\"").await.is_empty());

        // A failing operation in the middle (no failOnErrors) fails alone and writes nothing of its own.
        let r = c
            .bulk_req(
                None,
                json!([
                    {"method": "PATCH", "path": format!("/Users/{keep}"), "data": {"schemas": [PATCH_URN],
                        "Operations": [{"op": "replace", "path": "title", "value": "half"},
                                       {"op": "replace", "path": "active", "value": "maybe"}]}},
                    {"method": "POST", "path": "/Groups", "bulkId": "g",
                        "data": {"displayName": "bulk-g", "members": [{"value": keep}, {"value": "no-such-id"}]}},
                    {"method": "POST", "path": "/Users", "bulkId": "big", "data": {"userName": noise(100_000)}},
                    {"method": "PUT", "path": "/Users/bulkId:g", "data": {"userName": "x"}}
                ]),
            )
            .await;
        let st: Vec<&str> =
            r.body["Operations"].as_array().unwrap().iter().map(|o| o["status"].as_str().unwrap()).collect();
        assert_eq!(st, ["400", "400", "400", "409"], "{}", r.body);
        assert_eq!(c.get(&format!("/Users/{keep}")).await.body["title"], "t0");
        assert!(c.ids("Groups").await.is_empty());
        assert_eq!(c.ids("Users").await, expect);

        // Malformed bulk requests: rejected whole.
        for body in [
            json!({"schemas": [BULK_REQ], "Operations": [{"method": "POST", "path": "/Users", "data": {"userName": "w"}}, 5]}),
            json!({"schemas": [BULK_REQ], "failOnErrors": -1, "Operations": []}),
            json!({"schemas": [BULK_REQ], "Operations": {"method": "POST"}}),
            json!({"Operations": [{"method": "POST", "path": "/Users", "data": {"userName": "w"}}]}),
        ] {
            assert_scim_error(&c.post("/Bulk", body).await, 400, Some("invalidSyntax"));
        }
        let too_many: Vec<Value> =
            (0..1001).map(|i| json!({"method": "DELETE", "path": format!("/Users/missing-{i}")})).collect();
        assert_scim_error(&c.bulk_req(None, json!(too_many)).await, 413, Some("tooMany"));
        assert_eq!(c.ids("Users").await, expect);
    }
}
