//! RFC 9865 cursor pagination on the real binary: discovery, walks on `GET /Users`,
//! `POST /Users/.search` and `POST /.search` interleaved with creates and deletes (every
//! user present throughout is seen exactly once, none twice), the `invalidCount`,
//! `invalidCursor` and `expiredCursor` errors (clock moved through the test endpoint),
//! and authorization on every page.

#[allow(unused_imports)]
use super::*;

use std::collections::{BTreeMap, BTreeSet};

use reqwest::Method as M;

async fn create_user(c: &Scim<'_>, name: &str) -> String {
    let r = c.post("/Users", json!({"schemas": [USER_URN], "userName": name})).await;
    assert_eq!(r.status, 201, "{}", r.body);
    r.body["id"].as_str().unwrap().to_owned()
}

async fn delete_user(c: &Scim<'_>, id: &str) {
    let r = c.call(M::DELETE, &format!("/Users/{id}"), None).await;
    assert_eq!(r.status, 204, "{}", r.body);
}

/// One page: `GET {path}{sep}cursor=…&count=…`, or the same as a `.search` body.
async fn page(c: &Scim<'_>, how: &Walk, cursor: &str, count: u32) -> ScimResp {
    match how {
        Walk::Get(path) => {
            let sep = if path.contains('?') { '&' } else { '?' };
            c.get(&format!("{path}{sep}cursor={cursor}&count={count}")).await
        }
        Walk::Search(path, body) => {
            let mut b = body.clone();
            b["cursor"] = json!(cursor);
            b["count"] = json!(count);
            c.post(path, b).await
        }
    }
}

enum Walk {
    Get(String),
    Search(String, Value),
}

/// Walks every page of `how`, calling `between(step, ids seen so far)` after each page
/// that has a next one; returns the ids in the order seen.
async fn walk<'a, F, Fut>(c: &Scim<'a>, how: &Walk, count: u32, mut between: F) -> Vec<String>
where
    F: FnMut(usize) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut seen = Vec::new();
    let mut cursor = String::new();
    for step in 0.. {
        let r = page(c, how, &cursor, count).await;
        assert_eq!(r.status, 200, "page {step}: {}", r.body);
        let items = r.body["Resources"].as_array().unwrap();
        assert!(items.len() <= count as usize);
        assert_eq!(r.body["itemsPerPage"], items.len(), "{}", r.body);
        assert!(r.body["totalResults"].is_u64(), "{}", r.body);
        assert!(r.body.get("startIndex").is_none(), "a cursor page has no startIndex: {}", r.body);
        seen.extend(items.iter().map(|u| u["id"].as_str().unwrap().to_owned()));
        match r.body["nextCursor"].as_str() {
            Some(next) => {
                assert!(next.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b)), "{next}");
                assert_eq!(items.len(), count as usize, "a page before the last is full");
                cursor = next.to_owned();
                between(step).await;
            }
            None => break,
        }
    }
    seen
}

/// Every id of `throughout` seen exactly once, and nothing seen twice.
fn assert_exactly_once(seen: &[String], throughout: &[String], what: &str) {
    let mut counts = BTreeMap::new();
    for id in seen {
        *counts.entry(id.as_str()).or_insert(0) += 1;
    }
    let repeated: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
    assert!(repeated.is_empty(), "{what}: repeated {repeated:?}");
    let missed: Vec<_> = throughout.iter().filter(|id| !counts.contains_key(id.as_str())).collect();
    assert!(missed.is_empty(), "{what}: missed {missed:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cursor_walks_see_each_user_once_under_concurrent_writes() {
    for b in backends() {
        let (s, key) = scim_server(b, None).await;
        let c = Scim { s: &s, dir: "acme".into(), key };

        let spc = c.get("/ServiceProviderConfig").await;
        let p = &spc.body["pagination"];
        assert_eq!(
            (&p["cursor"], &p["index"], &p["defaultPaginationMethod"]),
            (&json!(true), &json!(true), &json!("index")),
            "{}",
            spc.body
        );
        assert_eq!(
            (&p["maxPageSize"], &p["defaultPageSize"], &p["cursorTimeout"]),
            (&json!(200), &json!(200), &json!(3600))
        );

        let mut initial = Vec::new();
        for i in 0..30 {
            initial.push(create_user(&c, &format!("walker{i:02}")).await);
        }
        let walks = [
            Walk::Get("/Users".into()),
            // The translator's path, with a filter bound into the cursor.
            Walk::Get("/Users?filter=userName+sw+%22walker%22".into()),
            Walk::Search(
                "/Users/.search".into(),
                json!({"filter": "userName sw \"walker\"", "attributes": ["userName"]}),
            ),
            // The root search pages in memory, Users and Groups in one order.
            Walk::Search("/.search".into(), json!({"filter": "userName sw \"walker\""})),
        ];
        for (n, how) in walks.iter().enumerate() {
            // Each walk starts with at least 30 users it tracks (what the last walk deleted
            // is replaced).
            while initial.len() < 30 {
                initial.push(create_user(&c, &format!("walker-top-{n}-{}", initial.len())).await);
            }
            let deleted = std::sync::Mutex::new(BTreeSet::new());
            let current = initial.clone();
            let seen = walk(&c, how, 4, |step| {
                let (c, current, deleted) = (&c, &current, &deleted);
                async move {
                    // A new user (at the end of the order) and two deletions: one already
                    // seen, one not reached yet.
                    create_user(c, &format!("walker-new-{n}-{step}")).await;
                    let behind = current.get(step * 2).cloned();
                    let ahead = current.len().checked_sub(1 + step * 2).and_then(|i| current.get(i)).cloned();
                    // (The first six pages only, so the walk keeps most of what it tracks.)
                    for id in [behind, ahead].into_iter().flatten().filter(|_| step < 6) {
                        if deleted.lock().unwrap().insert(id.clone()) {
                            delete_user(c, &id).await;
                        }
                    }
                }
            })
            .await;
            let deleted = deleted.into_inner().unwrap();
            let throughout: Vec<String> = initial.iter().filter(|id| !deleted.contains(*id)).cloned().collect();
            assert!(throughout.len() >= 10, "walk {n} left too few in place: {}", throughout.len());
            assert_exactly_once(&seen, &throughout, &format!("{b:?} walk {n}"));
            initial = throughout;
        }

        // Index pagination is unchanged: startIndex, no cursor.
        let r = c.get("/Users?startIndex=2&count=3").await;
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!((&r.body["startIndex"], &r.body["itemsPerPage"]), (&json!(2), &json!(3)));
        assert!(r.body.get("nextCursor").is_none());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cursor_errors_and_per_page_authorization() {
    for b in backends() {
        let (s, key) = scim_server(b, None).await;
        let c = Scim { s: &s, dir: "acme".into(), key };
        for i in 0..5 {
            create_user(&c, &format!("p{i}")).await;
        }
        let first = c.get("/Users?cursor=&count=2").await;
        assert_eq!(first.status, 200, "{}", first.body);
        assert_eq!(first.body["totalResults"], 5);
        let next = first.body["nextCursor"].as_str().unwrap().to_owned();

        // invalidCount: not 1..=maxPageSize, or not a number.
        for bad in ["0", "-1", "201", "ten"] {
            let r = c.get(&format!("/Users?cursor=&count={bad}")).await;
            assert_scim_error(&r, 400, Some("invalidCount"));
        }
        let r = c.post("/Users/.search", json!({"cursor": "", "count": 0})).await;
        assert_scim_error(&r, 400, Some("invalidCount"));

        // invalidCursor: altered, garbage, another query, another endpoint, another trust.
        let mut altered = next.clone().into_bytes();
        altered[5] = if altered[5] == b'A' { b'B' } else { b'A' };
        let altered = String::from_utf8(altered).unwrap();
        for bad in [altered.as_str(), "garbage", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"] {
            let r = c.get(&format!("/Users?cursor={bad}&count=2")).await;
            assert_scim_error(&r, 400, Some("invalidCursor"));
        }
        let r = c.get(&format!("/Users?filter=userName+sw+%22p%22&cursor={next}&count=2")).await;
        assert_scim_error(&r, 400, Some("invalidCursor"));
        let r = c.get(&format!("/Users?attributes=userName&cursor={next}&count=2")).await;
        assert_scim_error(&r, 400, Some("invalidCursor"));
        let r = c.get(&format!("/Groups?cursor={next}&count=2")).await;
        assert_scim_error(&r, 400, Some("invalidCursor"));
        let r = c.post("/.search", json!({"cursor": next, "count": 2})).await;
        assert_scim_error(&r, 400, Some("invalidCursor"));
        let r = c.post("/Users/.search", json!({"cursor": 7})).await;
        assert_scim_error(&r, 400, Some("invalidCursor"));
        let body = json!({"name": "other", "direction": "inbound", "peer_kind": "generic"});
        let (st, v) = s.api(M::POST, "/api/v1/directories/acme/trusts", Some(&s.token), Some(body)).await;
        assert_eq!(st, 201, "{v}");
        let other = Scim { s: &s, dir: "acme".into(), key: v["key"].as_str().unwrap().to_owned() };
        let r = other.get(&format!("/Users?cursor={next}&count=2")).await;
        assert_scim_error(&r, 400, Some("invalidCursor"));
        // The same cursor on its own query still works (page size may change).
        let r = c.get(&format!("/Users?cursor={next}&count=3")).await;
        assert_eq!((r.status, r.body["itemsPerPage"].as_u64()), (200, Some(3)), "{}", r.body);
        assert!(r.body.get("nextCursor").is_none(), "{}", r.body);

        // Two pagination methods at once, or a sort the keyset does not follow: refused.
        let r = c.get("/Users?cursor=&startIndex=3").await;
        assert_scim_error(&r, 400, Some("invalidValue"));
        let r = c.get("/Users?cursor=&sortBy=userName").await;
        assert_scim_error(&r, 400, Some("invalidValue"));
        let r = c.post("/Users/.search", json!({"cursor": "", "sortOrder": "descending"})).await;
        assert_scim_error(&r, 400, Some("invalidValue"));

        // Every page is authenticated and authorized on its own.
        let r = Scim { s: &s, dir: "acme".into(), key: "not-a-key".into() }.get(&format!("/Users?cursor={next}")).await;
        assert_scim_error(&r, 401, None);
        let (st, v) = s.api(M::POST, "/api/v1/directories/acme/trusts/idp/suspend", Some(&s.token), None).await;
        assert_eq!(st, 200, "{v}");
        let r = c.get(&format!("/Users?cursor={next}&count=2")).await;
        assert_scim_error(&r, 401, None);
        let (st, v) = s.api(M::POST, "/api/v1/directories/acme/trusts/idp/resume", Some(&s.token), None).await;
        assert_eq!(st, 200, "{v}");
        let r = c.get(&format!("/Users?cursor={next}&count=2")).await;
        assert_eq!(r.status, 200, "{}", r.body);

        // expiredCursor once cursorTimeout has passed (the server's clock, moved).
        s.advance("3601s").await;
        let r = c.get(&format!("/Users?cursor={next}&count=2")).await;
        assert_scim_error(&r, 400, Some("expiredCursor"));
        // A fresh walk works.
        let r = c.get("/Users?cursor=&count=2").await;
        assert_eq!(r.status, 200, "{}", r.body);
    }
}
