//! Federated trusts on the real binary: the peer's JWKS is watched from a local IdP server;
//! bearer JWTs signed by its keys authenticate SCIM requests; a rotation that keeps one old
//! key is accepted automatically, one that does not is held for approval (with an alert and a
//! `doctor` finding); a failing IdP leaves the last-known-good keys in place.

#[allow(unused_imports)]
use super::*;

use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};
use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::Method as M;

pub(crate) struct IdpKey {
    kid: String,
    encoding: EncodingKey,
    pub(crate) jwk: Value,
}

impl IdpKey {
    pub(crate) fn new(kid: &str) -> IdpKey {
        let pair = Ed25519KeyPair::generate().unwrap();
        let pkcs8 = pair.to_pkcs8().unwrap();
        let x = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(pair.public_key().as_ref());
        IdpKey {
            kid: kid.into(),
            encoding: EncodingKey::from_ed_der(pkcs8.as_ref()),
            jwk: json!({"kty": "OKP", "crv": "Ed25519", "kid": kid, "alg": "EdDSA", "use": "sig", "x": x}),
        }
    }

    pub(crate) fn sign(&self, claims: &Value) -> String {
        let mut h = Header::new(Algorithm::EdDSA);
        h.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&h, claims, &self.encoding).unwrap()
    }
}

/// A local IdP serving `/jwks` from a document the test swaps, or a 500.
pub(crate) struct Idp {
    pub(crate) url: String,
    jwks: Arc<Mutex<Option<String>>>,
    _task: tokio::task::JoinHandle<()>,
}

impl Idp {
    pub(crate) async fn start() -> Idp {
        let jwks: Arc<Mutex<Option<String>>> = Arc::default();
        let doc = jwks.clone();
        let app = axum::Router::new().route(
            "/jwks",
            axum::routing::get(move || {
                let doc = doc.lock().unwrap().clone();
                async move {
                    match doc {
                        Some(d) => (axum::http::StatusCode::OK, [("cache-control", "max-age=600")], d),
                        None => (
                            axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                            [("cache-control", "no-store")],
                            String::new(),
                        ),
                    }
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Idp { url, jwks, _task: task }
    }

    pub(crate) fn publish(&self, keys: &[&IdpKey]) {
        let doc = json!({"keys": keys.iter().map(|k| k.jwk.clone()).collect::<Vec<_>>()}).to_string();
        *self.jwks.lock().unwrap() = Some(doc);
    }

    fn fail(&self) {
        *self.jwks.lock().unwrap() = None;
    }
}

const ISS: &str = "https://idp.example/tenant";
const AUD: &str = "fedkey-scim";

impl Server {
    /// The server's clock (the test clock may have moved), in seconds.
    pub(crate) async fn now_secs(&self) -> i64 {
        let (st, v) = self.api(M::POST, "/api/v1/test/clock", Some(&self.token), Some(json!({"advance": "0s"}))).await;
        assert_eq!(st, 200, "{v}");
        let t = time::OffsetDateTime::parse(v["now"].as_str().unwrap(), &time::format_description::well_known::Rfc3339)
            .unwrap();
        t.unix_timestamp()
    }

    async fn claims(&self) -> Value {
        let now = self.now_secs().await;
        static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let jti = format!("jti-{}", N.fetch_add(1, std::sync::atomic::Ordering::SeqCst));
        json!({"iss": ISS, "aud": AUD, "sub": "entra-provisioning", "iat": now, "nbf": now, "exp": now + 300, "jti": jti})
    }

    async fn scim_users(&self, bearer: &str) -> u16 {
        self.api(M::GET, "/scim/v2/acme/Users?count=1", Some(bearer), None).await.0
    }

    pub(crate) async fn watch(&self) -> Value {
        let (st, v) = self.api(M::POST, "/api/v1/test/watchers/tick", Some(&self.token), None).await;
        assert_eq!(st, 200, "{v}");
        v["report"].clone()
    }

    async fn material_statuses(&self) -> Vec<(i64, String)> {
        let v = self.cli_json(&["material", "show", "acme/entra"]);
        v["versions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| (m["version"].as_i64().unwrap(), m["status"].as_str().unwrap().to_owned()))
            .collect()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwt_assertions_follow_the_idps_key_rotation() {
    for b in backends() {
        let idp = Idp::start().await;
        let alerts = super::rotation::receiver(0, 200).await;
        let env = [("FEDKEY_ALERT_WEBHOOK_URL", alerts.url.as_str()), ("FEDKEY_ALERT_WEBHOOK_SECRET", "alert-secret")];
        let s = Server::start_with(b, &[], &env);
        s.cli_json(&["directory", "create", "acme"]);
        s.cli_json(&["trust", "create", "--directory", "acme", "--name", "entra", "--direction", "inbound"]);
        let (ka, kb, kc) = (IdpKey::new("a"), IdpKey::new("b"), IdpKey::new("c"));
        idp.publish(&[&ka]);
        let jwks_url = format!("{}/jwks", idp.url);
        s.cli_json(&[
            "material",
            "source",
            "acme/entra",
            "--jwks-url",
            &jwks_url,
            "--jwt-issuer",
            ISS,
            "--jwt-audience",
            AUD,
        ]);
        assert_eq!(s.watch().await["accepted"], 1);
        assert_eq!(s.material_statuses().await, vec![(1, "current".to_owned())]);

        // A valid assertion authenticates; each jti only once.
        let t = ka.sign(&s.claims().await);
        assert_eq!(s.scim_users(&t).await, 200);
        assert_eq!(s.scim_users(&t).await, 401, "a replayed assertion is refused");
        // Wrong issuer, wrong audience, expired, not yet valid, alg none, HS256 keyed with the public key.
        let mut c = s.claims().await;
        c["iss"] = json!("https://evil.example");
        assert_eq!(s.scim_users(&ka.sign(&c)).await, 401);
        let mut c = s.claims().await;
        c["aud"] = json!("someone-else");
        assert_eq!(s.scim_users(&ka.sign(&c)).await, 401);
        let mut c = s.claims().await;
        c["exp"] = json!(c["iat"].as_i64().unwrap() - 120);
        c["iat"] = json!(c["iat"].as_i64().unwrap() - 400);
        c["nbf"] = c["iat"].clone();
        assert_eq!(s.scim_users(&ka.sign(&c)).await, 401, "expired");
        let mut c = s.claims().await;
        c["nbf"] = json!(c["iat"].as_i64().unwrap() + 240);
        assert_eq!(s.scim_users(&ka.sign(&c)).await, 401, "not yet valid");
        let b64 = |v: &Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
        let none = format!("{}.{}.", b64(&json!({"alg": "none", "kid": "a"})), b64(&s.claims().await));
        assert_eq!(s.scim_users(&none).await, 401, "alg none");
        let x = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(ka.jwk["x"].as_str().unwrap()).unwrap();
        let mut h = Header::new(Algorithm::HS256);
        h.kid = Some("a".into());
        let hs = jsonwebtoken::encode(&h, &s.claims().await, &EncodingKey::from_secret(&x).unwrap()).unwrap();
        assert_eq!(s.scim_users(&hs).await, 401, "HS256 with the public key");

        // The IdP rotates in key b (a still published): a token signed by b works at once —
        // the unknown kid triggers one refetch — and the new set is accepted automatically.
        idp.publish(&[&ka, &kb]);
        assert_eq!(s.scim_users(&kb.sign(&s.claims().await)).await, 200);
        s.watch().await;
        assert_eq!(s.material_statuses().await[0], (2, "current".to_owned()));

        // The IdP fails: the last-known-good keys keep working.
        idp.fail();
        s.advance("20m").await;
        assert_eq!(s.watch().await["failed"], 1);
        assert_eq!(s.scim_users(&kb.sign(&s.claims().await)).await, 200);

        // A set sharing no key with the trusted one is held for approval, not accepted.
        idp.publish(&[&kc]);
        s.advance("20m").await;
        assert_eq!(s.watch().await["held"], 1);
        assert_eq!(s.material_statuses().await[0], (3, "pending".to_owned()));
        assert_eq!(s.scim_users(&kc.sign(&s.claims().await)).await, 401, "held keys do not authenticate");
        assert_eq!(s.scim_users(&kb.sign(&s.claims().await)).await, 200, "the trusted set still does");
        let out = s.cli(&["doctor", "--output", "json"]);
        assert_eq!(out.status.code(), Some(2));
        assert!(String::from_utf8_lossy(&out.stdout).contains("material_pending_approval"));
        alerts.wait_for("trust_material_held alert", |b| b.contains("trust_material_held")).await;
        // Policy: a change of the IdP's keys also rotates the provisioning key.
        s.cli_json(&["rotation", "policy", "set", "acme/entra", "--rotate-on-material-change", "true"]);
        s.cli_json(&["material", "approve", "acme/entra"]);
        let rot = s.cli_json(&["rotation", "show", "acme/entra"]);
        assert_eq!(rot["active"]["kind"], "material", "{rot}");
        assert_eq!(s.scim_users(&kc.sign(&s.claims().await)).await, 200);
        assert_eq!(s.scim_users(&kb.sign(&s.claims().await)).await, 401, "the old set is gone");

        // Every attempt is audited with the trust and the method; the log verifies.
        let (st, v) = s.api(M::GET, "/api/v1/audit?action=key.authenticate&limit=1000", Some(&s.token), None).await;
        assert_eq!(st, 200);
        let recs = v["records"].as_array().unwrap();
        assert!(recs.iter().filter(|r| r["details"]["method"] == "jwt").count() >= 10, "{v}");
        assert!(recs.iter().any(|r| r["details"]["reason"] == "jwt_replayed"));
        let out = s.cli(&["audit", "verify", "--offline"]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert!(!s.logs().contains(&t), "assertions are not logged");
    }
}

/// A server with directory `acme`, inbound trust `entra` accepting JWTs signed by `key`
/// (published by `idp`), with the extra `material source` flags `jwt_flags`.
fn jwt_trust(b: Backend, idp: &Idp, key: &IdpKey, jwt_flags: &[&str]) -> Server {
    let s = Server::start(b);
    s.cli_json(&["directory", "create", "acme"]);
    s.cli_json(&["trust", "create", "--directory", "acme", "--name", "entra", "--direction", "inbound"]);
    idp.publish(&[key]);
    let jwks_url = format!("{}/jwks", idp.url);
    let mut args =
        vec!["material", "source", "acme/entra", "--jwks-url", &jwks_url, "--jwt-issuer", ISS, "--jwt-audience", AUD];
    args.extend(jwt_flags);
    s.cli_json(&args);
    s
}

/// Issue 16, row 2: a principal authenticated by a JWT gets the directory-wide privileged
/// patterns, as a key of its trust does. Before the fix the JWT created the group another
/// trust marks privileged (201) where the key was refused (403).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwt_principals_are_held_to_the_directorys_privileged_groups() {
    for b in backends() {
        let idp = Idp::start().await;
        let ka = IdpKey::new("a");
        let s = jwt_trust(b, &idp, &ka, &[]);
        assert_eq!(s.watch().await["accepted"], 1);
        // Another trust of the directory marks admin* privileged; `entra` has no patterns.
        s.cli_json(&[
            "trust",
            "create",
            "--directory",
            "acme",
            "--name",
            "hr",
            "--direction",
            "inbound",
            "--privileged-group",
            "admin*",
        ]);
        let post = |name: &'static str| {
            let s = &s;
            let ka = &ka;
            async move {
                let t = ka.sign(&s.claims().await);
                s.api(M::POST, "/scim/v2/acme/Groups", Some(&t), Some(json!({"displayName": name}))).await
            }
        };
        let (st, v) = post("Admins").await;
        assert_eq!(st, 403, "{v}");
        assert!(v["detail"].as_str().unwrap().contains("groups:privileged"), "{v}");
        let (st, v) = post("staff").await;
        assert_eq!(st, 201, "{v}");
    }
}

/// Issue 16, row 11: with claim rules, a token of the right issuer and audience is accepted
/// only for the configured subject and client application (and header `typ`). Before the
/// rules existed, any subject of the issuer was accepted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwt_claim_rules_accept_only_the_provisioning_client() {
    for b in backends() {
        let idp = Idp::start().await;
        let ka = IdpKey::new("a");
        let rules = [
            "--jwt-subject",
            "entra-provisioning",
            "--jwt-client-id",
            "app-1",
            "--jwt-client-id",
            "app-2",
            "--jwt-type",
            "JWT",
        ];
        let s = jwt_trust(b, &idp, &ka, &rules);
        assert_eq!(s.watch().await["accepted"], 1);
        let shown = s.cli_json(&["material", "show", "acme/entra"]);
        let jwt = &shown["source"]["config"]["jwt"];
        assert_eq!(jwt["subjects"], json!(["entra-provisioning"]), "{shown}");
        assert_eq!(jwt["client_ids"], json!(["app-1", "app-2"]), "{shown}");
        assert_eq!(jwt["token_type"], "JWT", "{shown}");

        let with = |pairs: Vec<(&'static str, &'static str)>| {
            let s = &s;
            let ka = &ka;
            async move {
                let mut c = s.claims().await;
                for (k, v) in pairs {
                    c[k] = json!(v);
                }
                s.scim_users(&ka.sign(&c)).await
            }
        };
        assert_eq!(with(vec![("azp", "app-1")]).await, 200, "Entra v2: azp");
        assert_eq!(with(vec![("appid", "app-2")]).await, 200, "Entra v1: appid");
        assert_eq!(with(vec![("sub", "some-user-of-the-tenant"), ("azp", "app-1")]).await, 401, "wrong subject");
        assert_eq!(with(vec![("azp", "another-app")]).await, 401, "wrong client");
        assert_eq!(with(vec![]).await, 401, "no client claim");

        let (st, v) = s.api(M::GET, "/api/v1/audit?action=key.authenticate&limit=1000", Some(&s.token), None).await;
        assert_eq!(st, 200);
        let errors: Vec<&str> =
            v["records"].as_array().unwrap().iter().filter_map(|r| r["details"]["error"].as_str()).collect();
        assert!(errors.iter().any(|e| e.contains("subject \"some-user-of-the-tenant\" is not allowed")), "{errors:?}");
        assert!(errors.iter().any(|e| e.contains("client application \"another-app\"")), "{errors:?}");

        // Bad rules are refused with the field named.
        let jwks_url = format!("{}/jwks", idp.url);
        let out = s.cli(&[
            "material",
            "source",
            "acme/entra",
            "--jwks-url",
            &jwks_url,
            "--jwt-issuer",
            ISS,
            "--jwt-audience",
            AUD,
            "--jwt-subject",
            " ",
        ]);
        assert!(!out.status.success());
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("jwt.subjects"),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
