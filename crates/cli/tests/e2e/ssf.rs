//! End-to-end tests of the OpenID SSF transmitter on the real binary: a receiver (an
//! inbound trust with the `ssf` scope) reads the discovery document, creates a push stream
//! to a local receiver on 127.0.0.1:0, asks for verification and gets the verification SET,
//! then gets CAEP/RISC SETs as a user is deactivated, reactivated and deleted; every SET
//! verifies against the published JWKS. A poll stream gets the same through RFC 8936 with
//! acknowledgements. Another receiver sees none of it (404); bad configurations are 400.

#[allow(unused_imports)]
use super::*;

use reqwest::Method as M;

use super::provisioning::user_body;

const VERIFICATION: &str = "https://schemas.openid.net/secevent/ssf/event-type/verification";
const SESSION_REVOKED: &str = "https://schemas.openid.net/secevent/caep/event-type/session-revoked";
const ACCOUNT_DISABLED: &str = "https://schemas.openid.net/secevent/risc/event-type/account-disabled";
const ACCOUNT_ENABLED: &str = "https://schemas.openid.net/secevent/risc/event-type/account-enabled";
const ACCOUNT_PURGED: &str = "https://schemas.openid.net/secevent/risc/event-type/account-purged";
const PUSH: &str = "urn:ietf:rfc:8935";
const POLL: &str = "urn:ietf:rfc:8936";

/// An RFC 8935 receiver: answers 202 to every SET and keeps each request.
struct SetReceiver {
    url: String,
    seen: Arc<Mutex<Vec<(axum::http::HeaderMap, String)>>>,
    _task: tokio::task::JoinHandle<()>,
}

async fn set_receiver() -> SetReceiver {
    let seen: Arc<Mutex<Vec<(axum::http::HeaderMap, String)>>> = Arc::default();
    let keep = seen.clone();
    let app = axum::Router::new().fallback(move |headers: axum::http::HeaderMap, body: String| {
        let keep = keep.clone();
        async move {
            keep.lock().unwrap().push((headers, body));
            axum::http::StatusCode::ACCEPTED
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/events", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    SetReceiver { url, seen, _task: task }
}

/// The transmitter's signing keys and names, read as a receiver would.
struct Transmitter {
    issuer: String,
    jwks: Vec<Value>,
}

impl Transmitter {
    /// Verifies a SET against the published JWKS and the SSF profile: `typ`, `iss`, `aud`,
    /// no `sub`, no `exp`, one event. Returns its claims.
    fn verify(&self, set: &str, aud: &str) -> Value {
        let header = jsonwebtoken::decode_header(set).unwrap();
        assert_eq!(header.typ.as_deref(), Some("secevent+jwt"), "SSF 1.0 explicit typing");
        let jwk = self.jwks.iter().find(|k| k["kid"].as_str() == header.kid.as_deref()).expect("kid in the JWKS");
        let dk = jsonwebtoken::DecodingKey::from_ed_components(jwk["x"].as_str().unwrap()).unwrap();
        let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::EdDSA);
        v.validate_exp = false;
        v.required_spec_claims = Default::default();
        v.set_audience(&[aud]);
        v.set_issuer(&[self.issuer.as_str()]);
        let claims = jsonwebtoken::decode::<Value>(set, &dk, &v).unwrap().claims;
        assert!(claims.get("sub").is_none() && claims.get("exp").is_none(), "{claims}");
        assert_eq!(claims["events"].as_object().unwrap().len(), 1, "one event per SET: {claims}");
        assert!(claims["jti"].is_string() && claims["iat"].is_i64(), "{claims}");
        claims
    }
}

fn event_type(claims: &Value) -> String {
    claims["events"].as_object().unwrap().keys().next().unwrap().clone()
}

/// Whether the SET's subject names SCIM user `id` (opaque, alone or among aliases).
fn about(claims: &Value, id: &str) -> bool {
    let s = &claims["sub_id"];
    let opaque = |v: &Value| v["format"] == "opaque" && v["id"] == id;
    opaque(s) || s["identifiers"].as_array().is_some_and(|a| a.iter().any(opaque))
}

impl SetReceiver {
    /// The verified SETs received once `pred` holds for them, waiting up to 20 s.
    async fn wait(
        &self,
        s: &Server,
        t: &Transmitter,
        aud: &str,
        what: &str,
        pred: impl Fn(&[Value]) -> bool,
    ) -> Vec<Value> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            s.pump().await;
            let seen = self.seen.lock().unwrap().clone();
            let sets: Vec<Value> = seen.iter().map(|(_, b)| t.verify(b, aud)).collect();
            if pred(&sets) {
                return sets;
            }
            assert!(std::time::Instant::now() < deadline, "{what}: not within 20 s; got {sets:#?}");
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }
}

impl Server {
    /// Runs one fan-out pass and one push pass now instead of waiting for their timers.
    async fn pump(&self) {
        for tick in ["/api/v1/test/sync/tick", "/api/v1/test/events/tick"] {
            let (st, v) = self.api(M::POST, tick, Some(&self.token), None).await;
            assert_eq!(st, 200, "{tick}: {v}");
        }
    }

    /// Directory `acme` with a provisioning trust `idp` and two receivers `rx` and `rx2`
    /// (scope `ssf` only); their keys.
    fn ssf_setup(&self) -> (String, String, String) {
        self.cli_json(&["directory", "create", "acme"]);
        let key = |name: &str, scope: Option<&str>| {
            let mut args = vec!["trust", "create", "--directory", "acme", "--name", name, "--direction", "inbound"];
            if let Some(s) = scope {
                args.extend(["--scope", s]);
            }
            self.cli_json(&args)["key"].as_str().unwrap().to_owned()
        };
        (key("idp", None), key("rx", Some("ssf")), key("rx2", Some("ssf")))
    }

    async fn transmitter(&self) -> Transmitter {
        let resp = reqwest::get(format!("{}/.well-known/ssf-configuration/ssf/acme", self.url)).await.unwrap();
        assert_eq!(resp.status(), 200);
        assert!(resp.headers()["content-type"].to_str().unwrap().starts_with("application/json"));
        let meta: Value = resp.json().await.unwrap();
        let issuer = format!("{}/ssf/acme", self.url);
        assert_eq!(meta["issuer"], issuer.as_str(), "{meta}");
        assert_eq!(meta["spec_version"], "1_0");
        assert_eq!(meta["delivery_methods_supported"], json!([PUSH, POLL]));
        assert_eq!(meta["configuration_endpoint"], format!("{issuer}/streams"));
        assert_eq!(meta["verification_endpoint"], format!("{issuer}/verify"));
        let jwks: Value = reqwest::get(meta["jwks_uri"].as_str().unwrap()).await.unwrap().json().await.unwrap();
        Transmitter { issuer, jwks: jwks["keys"].as_array().unwrap().clone() }
    }

    async fn scim_user(&self, key: &str, method: M, path: &str, body: Option<Value>) -> Value {
        let (st, v) = self.api(method, &format!("/scim/v2/acme/Users{path}"), Some(key), body).await;
        assert!((200..300).contains(&st), "{st} {v}");
        v
    }

    async fn set_active(&self, key: &str, id: &str, active: bool) {
        let patch = json!({
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations": [{"op": "replace", "path": "active", "value": active}],
        });
        self.scim_user(key, M::PATCH, &format!("/{id}"), Some(patch)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssf_push_stream_end_to_end() {
    for b in backends() {
        push_flow(b).await;
    }
}

async fn push_flow(b: Backend) {
    let s = Server::start(b);
    let (idp, rx, rx2) = s.ssf_setup();
    let t = s.transmitter().await;
    let rcv = set_receiver().await;

    // The receiver creates a push stream for every event type it knows, and one fedkey
    // does not: that one is ignored (SSF 1.0 §8.1.1).
    let create = json!({
        "delivery": {"method": PUSH, "endpoint_url": rcv.url, "authorization_header": "Bearer rx-inbox-secret"},
        "events_requested": [SESSION_REVOKED, ACCOUNT_DISABLED, ACCOUNT_ENABLED, ACCOUNT_PURGED, "urn:example:unknown"],
        "description": "rx push",
    });
    let (st, cfg) = s.api(M::POST, "/ssf/acme/streams", Some(&rx), Some(create)).await;
    assert_eq!(st, 201, "{b:?} {cfg}");
    let id = cfg["stream_id"].as_str().unwrap().to_owned();
    assert_eq!(cfg["iss"], t.issuer.as_str());
    assert_eq!(cfg["aud"], "rx");
    assert_eq!(cfg["delivery"], json!({"method": PUSH, "endpoint_url": rcv.url}), "the header is write-only");
    let delivered: Vec<&str> =
        cfg["events_delivered"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    assert_eq!(delivered.len(), 4, "{cfg}");
    assert!(!delivered.contains(&"urn:example:unknown"));
    assert!(!cfg.to_string().contains("rx-inbox-secret"));

    // Verification: queued at once, the next request within the interval is 429.
    let (st, v) = s.api(M::POST, "/ssf/acme/verify", Some(&rx), Some(json!({"stream_id": id, "state": "st-1"}))).await;
    assert_eq!(st, 204, "{v}");
    let (st, _) = s.api(M::POST, "/ssf/acme/verify", Some(&rx), Some(json!({"stream_id": id, "state": "st-2"}))).await;
    assert_eq!(st, 429);
    let sets =
        rcv.wait(&s, &t, "rx", "the verification SET", |sets| sets.iter().any(|c| event_type(c) == VERIFICATION)).await;
    let ver = sets.iter().find(|c| event_type(c) == VERIFICATION).unwrap();
    assert_eq!(ver["events"][VERIFICATION]["state"], "st-1");
    assert_eq!(ver["sub_id"], json!({"format": "opaque", "id": id}));
    {
        let seen = rcv.seen.lock().unwrap();
        let (h, _) = &seen[0];
        assert_eq!(h["authorization"], "Bearer rx-inbox-secret");
        assert_eq!(h["content-type"], "application/secevent+jwt");
    }

    // A user is deactivated, reactivated and deleted.
    let user = s.scim_user(&idp, M::POST, "", Some(user_body("ada@acme.example", "Engineer"))).await;
    let uid = user["id"].as_str().unwrap().to_owned();
    s.set_active(&idp, &uid, false).await;
    s.set_active(&idp, &uid, true).await;
    let (st, _) = s.api(M::DELETE, &format!("/scim/v2/acme/Users/{uid}"), Some(&idp), None).await;
    assert_eq!(st, 204);
    let want = [SESSION_REVOKED, ACCOUNT_DISABLED, ACCOUNT_ENABLED, ACCOUNT_PURGED];
    let count = |sets: &[Value], ty: &str| sets.iter().filter(|c| event_type(c) == ty && about(c, &uid)).count();
    let sets = rcv
        .wait(&s, &t, "rx", "CAEP/RISC SETs", |sets| {
            count(sets, SESSION_REVOKED) >= 2 && want[1..].iter().all(|w| count(sets, w) >= 1)
        })
        .await;
    let mut jtis: Vec<&str> = sets.iter().map(|c| c["jti"].as_str().unwrap()).collect();
    jtis.sort();
    jtis.dedup();
    assert_eq!(jtis.len(), sets.len(), "each SET has its own jti");
    // Creating the user raised nothing: no type this stream requested.
    assert!(sets.iter().all(|c| want.contains(&event_type(c).as_str()) || event_type(c) == VERIFICATION));

    // While the receiver's trust is suspended its stream holds its events, as a paused one
    // does; they are pushed once the trust is resumed.
    let before = rcv.seen.lock().unwrap().len();
    s.cli_json(&["trust", "suspend", "acme/rx"]);
    let held = s.scim_user(&idp, M::POST, "", Some(user_body("bob@acme.example", "Engineer"))).await;
    let held = held["id"].as_str().unwrap().to_owned();
    s.set_active(&idp, &held, false).await;
    for _ in 0..3 {
        s.pump().await;
    }
    assert_eq!(rcv.seen.lock().unwrap().len(), before, "nothing pushed to a suspended receiver");
    s.cli_json(&["trust", "resume", "acme/rx"]);
    rcv.wait(&s, &t, "rx", "held SETs after resume", |sets| {
        sets.iter().any(|c| event_type(c) == ACCOUNT_DISABLED && about(c, &held))
    })
    .await;

    // Another receiver of the directory cannot see or touch the stream.
    let q = format!("/ssf/acme/streams?stream_id={id}");
    assert_eq!(s.api(M::GET, &q, Some(&rx2), None).await.0, 404);
    assert_eq!(s.api(M::GET, &format!("/ssf/acme/status?stream_id={id}"), Some(&rx2), None).await.0, 404);
    assert_eq!(s.api(M::DELETE, &q, Some(&rx2), None).await.0, 404);
    let (st, list) = s.api(M::GET, "/ssf/acme/streams", Some(&rx2), None).await;
    assert_eq!((st, list), (200, json!([])));
    let (st, _) = s.api(M::POST, "/ssf/acme/verify", Some(&rx2), Some(json!({"stream_id": id}))).await;
    assert_eq!(st, 404);
    // A provisioning key lacks the ssf scope; no key at all is 401.
    let (st, v) = s.api(M::GET, "/ssf/acme/streams", Some(&idp), None).await;
    assert_eq!((st, v["error"].as_str()), (403, Some("access_denied")), "{v}");
    let (st, v) = s.api(M::GET, "/ssf/acme/streams", None, None).await;
    assert_eq!((st, v["error"].as_str()), (401, Some("invalid_token")), "{v}");

    // Status: paused with a reason, read back.
    let (st, v) = s
        .api(
            M::POST,
            "/ssf/acme/status",
            Some(&rx),
            Some(json!({"stream_id": id, "status": "paused", "reason": "maintenance"})),
        )
        .await;
    assert_eq!((st, v), (200, json!({"stream_id": id, "status": "paused", "reason": "maintenance"})));
    let (st, v) = s.api(M::GET, &format!("/ssf/acme/status?stream_id={id}"), Some(&rx), None).await;
    assert_eq!((st, v["status"].as_str()), (200, Some("paused")));

    // PATCH changes only what it names; a changed transmitter-supplied value is refused.
    let (st, v) =
        s.api(M::PATCH, "/ssf/acme/streams", Some(&rx), Some(json!({"stream_id": id, "description": "renamed"}))).await;
    assert_eq!(
        (st, v["description"].as_str(), v["delivery"]["method"].as_str()),
        (200, Some("renamed"), Some(PUSH)),
        "{v}"
    );
    let (st, v) =
        s.api(M::PATCH, "/ssf/acme/streams", Some(&rx), Some(json!({"stream_id": id, "aud": "someone-else"}))).await;
    assert_eq!(st, 400, "{v}");

    // Every change is audited with the receiver's key as the actor.
    let (_, page) = s.api(M::GET, "/api/v1/audit?limit=1000", Some(&s.token), None).await;
    let recs = page["records"].as_array().unwrap();
    for action in ["events.stream.create", "events.stream.status", "events.stream.update", "ssf.verify"] {
        assert!(
            recs.iter().any(|r| r["action"] == action && r["actor"] == "key:acme/rx#1"),
            "{action} by the receiver's key"
        );
    }
    assert!(!page.to_string().contains("rx-inbox-secret"), "the push credential is never audited");

    // DELETE ends the stream.
    let (st, _) = s.api(M::DELETE, &q, Some(&rx), None).await;
    assert_eq!(st, 204);
    assert_eq!(s.api(M::GET, &q, Some(&rx), None).await.0, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssf_poll_stream_with_acknowledgements() {
    let s = Server::start(Backend::Sqlite);
    let (idp, rx, _) = s.ssf_setup();
    let t = s.transmitter().await;
    // No delivery: poll (SSF 1.0 §8.1.1.1), at a URL fedkey supplies.
    let (st, cfg) =
        s.api(M::POST, "/ssf/acme/streams", Some(&rx), Some(json!({"events_requested": [ACCOUNT_DISABLED]}))).await;
    assert_eq!(st, 201, "{cfg}");
    let id = cfg["stream_id"].as_str().unwrap().to_owned();
    assert_eq!(cfg["delivery"]["method"], POLL);
    let poll_url = cfg["delivery"]["endpoint_url"].as_str().unwrap().to_owned();
    let poll_path = poll_url.strip_prefix(&s.url).unwrap().to_owned();
    assert_eq!(poll_path, format!("/ssf/acme/streams/{id}/poll"));

    let (st, _) = s.api(M::POST, "/ssf/acme/verify", Some(&rx), Some(json!({"stream_id": id, "state": "p"}))).await;
    assert_eq!(st, 204);
    let user = s.scim_user(&idp, M::POST, "", Some(user_body("bob@acme.example", "Ops"))).await;
    let uid = user["id"].as_str().unwrap().to_owned();
    s.set_active(&idp, &uid, false).await;

    // Poll until both SETs are there (a fan-out pass each round), then acknowledge.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let sets = loop {
        s.pump().await;
        let (st, v) =
            s.api(M::POST, &poll_path, Some(&rx), Some(json!({"returnImmediately": true, "maxEvents": 10}))).await;
        assert_eq!(st, 200, "{v}");
        let sets = v["sets"].as_object().unwrap().clone();
        if sets.len() >= 2 {
            break sets;
        }
        assert!(std::time::Instant::now() < deadline, "poll: {v}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    let claims: Vec<Value> = sets
        .iter()
        .map(|(jti, set)| {
            let c = t.verify(set.as_str().unwrap(), "rx");
            assert_eq!(c["jti"], jti.as_str());
            c
        })
        .collect();
    assert!(claims.iter().any(|c| event_type(c) == VERIFICATION && c["events"][VERIFICATION]["state"] == "p"));
    assert!(claims.iter().any(|c| event_type(c) == ACCOUNT_DISABLED && about(c, &uid)));
    assert!(!claims.iter().any(|c| event_type(c) == SESSION_REVOKED), "not requested");
    let ack: Vec<&String> = sets.keys().collect();
    let (st, v) = s.api(M::POST, &poll_path, Some(&rx), Some(json!({"ack": ack, "returnImmediately": true}))).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["sets"], json!({}), "acknowledged SETs are not served again");
    assert_eq!(v["moreAvailable"], false);

    // Only the stream's receiver polls it; hostile poll bodies are 400.
    let rx2 = s.cli_json(&[
        "trust",
        "create",
        "--directory",
        "acme",
        "--name",
        "rx3",
        "--direction",
        "inbound",
        "--scope",
        "ssf",
    ])["key"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(s.api(M::POST, &poll_path, Some(&rx2), Some(json!({}))).await.0, 404);
    for bad in [json!({"maxEvents": -1}), json!({"ack": "x"}), json!({"setErrs": []}), json!([1])] {
        let (st, v) = s.api(M::POST, &poll_path, Some(&rx), Some(bad.clone())).await;
        assert_eq!(st, 400, "{bad}: {v}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssf_bad_configurations_are_400() {
    let s = Server::start(Backend::Sqlite);
    let (_, rx, _) = s.ssf_setup();
    let cases = [
        (json!({"delivery": {"method": "urn:example:carrier-pigeon"}}), "not supported"),
        (json!({"delivery": {"method": PUSH}}), "endpoint_url is required"),
        (json!({"delivery": {"method": PUSH, "endpoint_url": "http://receiver.example/events"}}), "https"),
        (
            json!({"delivery": {"method": PUSH, "endpoint_url": "https://user:pw@receiver.example/events"}}),
            "credentials",
        ),
        (json!({"delivery": {"method": PUSH, "endpoint_url": "https://10.1.2.3/events"}}), "address"),
        (json!({"events_requested": ["urn:example:nothing-known"]}), "none of the event types"),
        (json!({"events_requested": "all"}), "array"),
        (json!({"description": 42}), "string"),
    ];
    for (body, want) in cases {
        let (st, v) = s.api(M::POST, "/ssf/acme/streams", Some(&rx), Some(body.clone())).await;
        assert_eq!(st, 400, "{body}: {v}");
        assert_eq!(v["error"], "invalid_request");
        assert!(v["error_description"].as_str().unwrap().contains(want), "{body}: {v}");
    }
    // Not JSON at all.
    let resp = reqwest::Client::new()
        .post(format!("{}/ssf/acme/streams", s.url))
        .bearer_auth(&rx)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    // Too large.
    let huge = json!({"description": "x".repeat(100 * 1024)});
    assert_eq!(s.api(M::POST, "/ssf/acme/streams", Some(&rx), Some(huge)).await.0, 413);
    // Nothing was created by any of it; the limit holds at 10 streams.
    assert_eq!(s.api(M::GET, "/ssf/acme/streams", Some(&rx), None).await.1, json!([]));
    for _ in 0..10 {
        assert_eq!(s.api(M::POST, "/ssf/acme/streams", Some(&rx), Some(json!({}))).await.0, 201);
    }
    let (st, v) = s.api(M::POST, "/ssf/acme/streams", Some(&rx), Some(json!({}))).await;
    assert_eq!((st, v["error"].as_str()), (409, Some("conflict")), "{v}");
    // Unknown directory: no discovery document.
    assert_eq!(reqwest::get(format!("{}/.well-known/ssf-configuration/ssf/nope", s.url)).await.unwrap().status(), 404);
}
