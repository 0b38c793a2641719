//! RFC 9967 SCIM events on the real binary: a local RFC 8935 receiver gets one signed SET
//! per change (create, patch, put, deactivate, activate, delete), each verifying against
//! the JWKS fetched from fedkey; a receiver that is down gets its SETs once it is back; a
//! SIGKILL of fedkey between the writes and the delivery loses nothing; an RFC 8936 poll
//! receiver fetches and acknowledges its SETs. On SQLite and PostgreSQL.

#[allow(unused_imports)]
use super::*;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU16, Ordering};

use reqwest::Method as M;

const CREATE: &str = "urn:ietf:params:scim:event:prov:create:notice";
const PATCH: &str = "urn:ietf:params:scim:event:prov:patch:notice";
const PUT: &str = "urn:ietf:params:scim:event:prov:put:notice";
const DELETE: &str = "urn:ietf:params:scim:event:prov:delete";
const ACTIVATE: &str = "urn:ietf:params:scim:event:prov:activate";
const DEACTIVATE: &str = "urn:ietf:params:scim:event:prov:deactivate";

/// A local RFC 8935 receiver: keeps every SET it accepts, answers `status` (202 = up).
struct Receiver {
    url: String,
    sets: Arc<Mutex<Vec<String>>>,
    status: Arc<AtomicU16>,
    /// The Authorization and Content-Type headers of the last request.
    last_headers: Arc<Mutex<(String, String)>>,
}

#[derive(Clone)]
struct RxState {
    sets: Arc<Mutex<Vec<String>>>,
    status: Arc<AtomicU16>,
    last_headers: Arc<Mutex<(String, String)>>,
}

async fn rx_handler(
    axum::extract::State(st): axum::extract::State<RxState>,
    headers: axum::http::HeaderMap,
    body: String,
) -> axum::http::StatusCode {
    let h = |n: &str| headers.get(n).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    *st.last_headers.lock().unwrap() = (h("authorization"), h("content-type"));
    let status = st.status.load(Ordering::SeqCst);
    if status == 202 {
        st.sets.lock().unwrap().push(body);
    }
    axum::http::StatusCode::from_u16(status).unwrap()
}

async fn receiver() -> Receiver {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let st = RxState {
        sets: Arc::new(Mutex::new(Vec::new())),
        status: Arc::new(AtomicU16::new(202)),
        last_headers: Arc::new(Mutex::new(Default::default())),
    };
    let app = axum::Router::new().route("/events", axum::routing::post(rx_handler)).with_state(st.clone());
    tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    Receiver { url: format!("http://{addr}/events"), sets: st.sets, status: st.status, last_headers: st.last_headers }
}

impl Receiver {
    fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.sets.lock().unwrap())
    }
}

/// Fan-out (the sync dispatcher's pass) and one push pass.
async fn deliver(s: &Server) -> Value {
    let (st, v) = s.api(M::POST, "/api/v1/test/sync/tick", Some(&s.token), None).await;
    assert_eq!(st, 200, "{v}");
    let (st, v) = s.api(M::POST, "/api/v1/test/events/tick", Some(&s.token), None).await;
    assert_eq!(st, 200, "{v}");
    v["report"].clone()
}

/// Verifies a SET against the directory's published JWKS and returns its claims.
async fn verified(s: &Server, token: &str) -> Value {
    let (st, jwks) = s.api(M::GET, "/oauth/acme/jwks", None, None).await;
    assert_eq!(st, 200, "{jwks}");
    let header = jsonwebtoken::decode_header(token).unwrap();
    assert_eq!(header.typ.as_deref(), Some("secevent+jwt"));
    let key = jwks["keys"].as_array().unwrap().iter().find(|k| k["kid"].as_str() == header.kid.as_deref()).unwrap();
    let dk = jsonwebtoken::DecodingKey::from_ed_components(key["x"].as_str().unwrap()).unwrap();
    let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::EdDSA);
    v.required_spec_claims.clear();
    v.validate_exp = false;
    v.set_audience(&["https://rx.example"]);
    v.set_issuer(&[format!("{}/scim/v2/acme", s.url)]);
    jsonwebtoken::decode::<Value>(token, &dk, &v).unwrap().claims
}

/// `(event type, sub_id uri)` of each SET, deduplicated by `jti` (delivery is at least once).
async fn received(s: &Server, tokens: &[String]) -> BTreeMap<String, (String, String)> {
    let mut out = BTreeMap::new();
    for t in tokens {
        let c = verified(s, t).await;
        let events = c["events"].as_object().unwrap();
        assert_eq!(events.len(), 1, "one event per SET: {c}");
        let (ty, _) = events.iter().next().unwrap();
        out.insert(
            c["jti"].as_str().unwrap().to_owned(),
            (ty.clone(), c["sub_id"]["uri"].as_str().unwrap().to_owned()),
        );
    }
    out
}

fn kinds(m: &BTreeMap<String, (String, String)>) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for (t, _) in m.values() {
        *out.entry(t.clone()).or_default() += 1;
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scim_events_reach_a_push_receiver_through_outage_and_sigkill() {
    for b in backends() {
        push_flow(b).await;
    }
}

async fn push_flow(b: Backend) {
    let (mut s, key) = scim_server(b, None).await;
    let rx = receiver().await;
    let token = s.token.clone();
    let t = Some(token.as_str());
    let body = json!({"delivery": "push", "endpoint_url": rx.url, "authorization": "Bearer rx-secret-1", "audience": "https://rx.example"});
    let (st, r) = s.api(M::POST, "/api/v1/directories/acme/event-receivers", t, Some(body)).await;
    assert_eq!(st, 201, "{r}");
    assert!(!r.to_string().contains("rx-secret-1"), "the Authorization value is write-only: {r}");
    assert_eq!((r["has_authorization"].as_bool(), r["status"].as_str()), (Some(true), Some("enabled")));
    assert_eq!(r["jwks_uri"], format!("{}/oauth/acme/jwks", s.url));
    let rid = r["id"].as_str().unwrap().to_owned();
    // Discovery advertises the events (RFC 9967 §4).
    let (st, spc) = s.api(M::GET, "/scim/v2/acme/ServiceProviderConfig", Some(&key), None).await;
    assert_eq!(st, 200);
    assert_eq!(spc["securityEvents"]["asyncRequest"], "none");
    assert!(spc["securityEvents"]["eventUris"].as_array().unwrap().iter().any(|u| u == DEACTIVATE));

    // create, patch, put, deactivate, activate, delete.
    let scim = Scim { s: &s, dir: "acme".into(), key: key.clone() };
    let r = scim.post("/Users", json!({"schemas": [USER_URN], "userName": "ann@acme.example", "active": true})).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let id = r.body["id"].as_str().unwrap().to_owned();
    let path = format!("/Users/{id}");
    assert_eq!(scim.patch(&path, json!([{"op": "replace", "path": "title", "value": "Eng"}])).await.status, 200);
    let put = json!({"schemas": [USER_URN], "userName": "ann@acme.example", "active": true, "title": "Lead"});
    assert_eq!(scim.call(M::PUT, &path, Some(put)).await.status, 200);
    assert_eq!(scim.patch(&path, json!([{"op": "replace", "path": "active", "value": false}])).await.status, 200);
    assert_eq!(scim.patch(&path, json!([{"op": "replace", "path": "active", "value": true}])).await.status, 200);
    assert_eq!(scim.call(M::DELETE, &path, None).await.status, 204);
    let report = deliver(&s).await;
    assert_eq!(report["delivered"], 8, "{report}");
    let (auth, ctype) = rx.last_headers.lock().unwrap().clone();
    assert_eq!((auth.as_str(), ctype.as_str()), ("Bearer rx-secret-1", "application/secevent+jwt"));
    let got = received(&s, &rx.take()).await;
    assert_eq!(got.len(), 8, "every SET has its own jti");
    let expected: BTreeMap<String, usize> =
        [(CREATE, 1), (PATCH, 3), (PUT, 1), (DEACTIVATE, 1), (ACTIVATE, 1), (DELETE, 1)]
            .map(|(k, n)| (k.to_owned(), n))
            .into();
    assert_eq!(kinds(&got), expected);
    assert!(got.values().all(|(_, uri)| *uri == format!("/Users/{id}")));
    assert!(deliver(&s).await["delivered"] == 0, "nothing is delivered twice");

    // The receiver is down: nothing is lost, the failure shows on the receiver, and the
    // SET arrives once it is back (after the back-off, on the test clock).
    rx.status.store(503, Ordering::SeqCst);
    assert_eq!(scim.post("/Users", json!({"schemas": [USER_URN], "userName": "bob"})).await.status, 201);
    assert_eq!(deliver(&s).await["retrying"], 1);
    let (_, r) = s.api(M::GET, &format!("/api/v1/directories/acme/event-receivers/{rid}"), t, None).await;
    assert_eq!((r["consecutive_failures"].as_i64(), r["pending"].as_i64()), (Some(1), Some(1)), "{r}");
    assert!(r["last_error"].as_str().unwrap().contains("503"), "{r}");
    rx.status.store(202, Ordering::SeqCst);
    assert_eq!(deliver(&s).await["delivered"], 0, "not before its retry time");
    s.advance("30s").await;
    assert_eq!(deliver(&s).await["delivered"], 1);
    assert_eq!(kinds(&received(&s, &rx.take()).await), [(CREATE.to_owned(), 1)].into());
    let (_, r) = s.api(M::GET, &format!("/api/v1/directories/acme/event-receivers/{rid}"), t, None).await;
    assert_eq!((r["consecutive_failures"].as_i64(), r["pending"].as_i64()), (Some(0), Some(0)), "{r}");

    // SIGKILL right after the writes (events in the outbox), and again after the fan-out
    // (events queued): every event arrives after the restarts.
    let mut ids = BTreeSet::new();
    for n in 0..3 {
        let r = scim.post("/Users", json!({"schemas": [USER_URN], "userName": format!("k{n}")})).await;
        assert_eq!(r.status, 201);
        ids.insert(format!("/Users/{}", r.body["id"].as_str().unwrap()));
    }
    drop(scim);
    s.restart(&[], &[]);
    let (st, _) = s.api(M::POST, "/api/v1/test/sync/tick", Some(&s.token), None).await;
    assert_eq!(st, 200);
    s.restart(&[], &[]);
    let report = deliver(&s).await;
    assert_eq!(report["delivered"], 3, "{report}");
    let got = received(&s, &rx.take()).await;
    assert_eq!(got.values().map(|(_, u)| u.clone()).collect::<BTreeSet<_>>(), ids);
    assert_eq!(kinds(&got), [(CREATE.to_owned(), 3)].into());

    // Pausing holds the events; deleting the receiver ends them.
    let pause = json!({"status": "paused", "status_reason": "maintenance"});
    let (st, r) = s.api(M::PUT, &format!("/api/v1/directories/acme/event-receivers/{rid}"), t, Some(pause)).await;
    assert_eq!((st, r["status"].as_str()), (200, Some("paused")), "{r}");
    let scim = Scim { s: &s, dir: "acme".into(), key: key.clone() };
    assert_eq!(scim.post("/Users", json!({"schemas": [USER_URN], "userName": "held"})).await.status, 201);
    assert_eq!(deliver(&s).await["delivered"], 0);
    let (st, _) = s
        .api(M::PUT, &format!("/api/v1/directories/acme/event-receivers/{rid}"), t, Some(json!({"status": "enabled"})))
        .await;
    assert_eq!(st, 200);
    assert_eq!(deliver(&s).await["delivered"], 1, "held events go once enabled");
    let (st, _) = s.api(M::DELETE, &format!("/api/v1/directories/acme/event-receivers/{rid}"), t, None).await;
    assert_eq!(st, 204);
    let (st, _) = s.api(M::GET, &format!("/api/v1/directories/acme/event-receivers/{rid}"), t, None).await;
    assert_eq!(st, 404);
    assert!(!s.logs().contains("rx-secret-1"), "the Authorization value never reaches the logs");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scim_events_reach_a_poll_receiver() {
    let (s, key) = scim_server(Backend::Sqlite, None).await;
    let t = Some(s.token.as_str());
    // Bad registrations are refused with a readable message.
    for (body, says) in [
        (json!({"delivery": "fax"}), "delivery"),
        (json!({"delivery": "poll"}), "audience"),
        (json!({"delivery": "push", "endpoint_url": "http://10.1.2.3/e"}), "endpoint_url"),
        (json!({"delivery": "poll", "audience": "a", "events": ["urn:x"]}), "urn:x"),
        (
            json!({"delivery": "push", "endpoint_url": "https://rx.example/e", "authorization": "a\r\nb"}),
            "authorization",
        ),
    ] {
        let (st, v) = s.api(M::POST, "/api/v1/directories/acme/event-receivers", t, Some(body)).await;
        assert_eq!(st, 400, "{v}");
        assert!(v.to_string().contains(says), "{says}: {v}");
    }
    let body = json!({"delivery": "poll", "audience": "https://rx.example", "events": [CREATE, DEACTIVATE]});
    let (st, r) = s.api(M::POST, "/api/v1/directories/acme/event-receivers", t, Some(body)).await;
    assert_eq!(st, 201, "{r}");
    let secret = r["poll_secret"].as_str().unwrap().to_owned();
    let poll_path = r["poll_url"].as_str().unwrap().strip_prefix(s.url.as_str()).unwrap().to_owned();
    let (_, shown) = s
        .api(M::GET, &format!("/api/v1/directories/acme/event-receivers/{}", r["id"].as_str().unwrap()), t, None)
        .await;
    assert!(shown.get("poll_secret").is_none(), "the secret is shown once: {shown}");

    let scim = Scim { s: &s, dir: "acme".into(), key };
    for n in 0..3 {
        assert_eq!(scim.post("/Users", json!({"schemas": [USER_URN], "userName": format!("p{n}")})).await.status, 201);
    }
    deliver(&s).await;
    let poll = |body: Value, bearer: &str| {
        let req = reqwest::Client::new().post(format!("{}{poll_path}", s.url)).bearer_auth(bearer).json(&body);
        async move {
            let r = req.send().await.unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let (st, v) = poll(json!({"returnImmediately": true}), "fkp_wrong").await;
    assert_eq!(st, 401, "{v}");
    let (st, v) = poll(json!({"maxEvents": "lots"}), &secret).await;
    assert_eq!((st, v["err"].as_str()), (400, Some("invalid_request")), "{v}");
    assert!(v["description"].as_str().unwrap().contains("maxEvents"), "{v}");

    let (st, v) = poll(json!({"returnImmediately": true, "maxEvents": 2}), &secret).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["moreAvailable"], true);
    let sets = v["sets"].as_object().unwrap();
    assert_eq!(sets.len(), 2);
    let mut acks = Vec::new();
    for (jti, token) in sets {
        let c = verified(&s, token.as_str().unwrap()).await;
        assert_eq!(c["jti"].as_str(), Some(jti.as_str()));
        assert!(c["events"].get(CREATE).is_some(), "{c}");
        acks.push(jti.clone());
    }
    let (st, v) = poll(json!({"returnImmediately": true, "ack": acks}), &secret).await;
    assert_eq!(st, 200, "{v}");
    let rest: Vec<String> = v["sets"].as_object().unwrap().keys().cloned().collect();
    assert_eq!((rest.len(), v["moreAvailable"].as_bool()), (1, Some(false)), "{v}");
    assert!(!acks.contains(&rest[0]));
    let errs =
        json!({"returnImmediately": true, "setErrs": {rest[0].clone(): {"err": "invalid_key", "description": "test"}}});
    let (st, v) = poll(errs, &secret).await;
    assert_eq!((st, v["sets"].as_object().map(|m| m.len())), (200, Some(0)), "{v}");
}
