//! The directory's OAuth 2.0 authorization server on the real binary: a client signs a
//! `private_key_jwt` assertion with a key of its registered JWKS, gets an access token and
//! provisions a user with it; wrong audiences, expired assertions and replayed `jti`s are
//! refused; a suspended trust's tokens stop at once; `client_secret_basic` with the trust's
//! provisioning key follows a rotation overlap and a revocation.

#[allow(unused_imports)]
use super::*;

use super::federation::{Idp, IdpKey};
use reqwest::Method as M;

/// A form body, percent-encoding everything but the unreserved characters.
fn form(pairs: &[(&str, &str)]) -> String {
    let enc = |s: &str| {
        s.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
                _ => format!("%{b:02X}"),
            })
            .collect::<String>()
    };
    pairs.iter().map(|(k, v)| format!("{}={}", enc(k), enc(v))).collect::<Vec<_>>().join("&")
}

struct TokenResp {
    status: u16,
    www_authenticate: Option<String>,
    cache_control: Option<String>,
    body: Value,
}

impl Server {
    async fn token_request(&self, directory: &str, pairs: &[(&str, &str)], basic: Option<(&str, &str)>) -> TokenResp {
        let mut req = reqwest::Client::new()
            .post(format!("{}/oauth/{directory}/token", self.url))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form(pairs));
        if let Some((id, secret)) = basic {
            req = req.basic_auth(id, Some(secret));
        }
        let resp = req.send().await.unwrap();
        let header = |n: &str| resp.headers().get(n).and_then(|v| v.to_str().ok()).map(str::to_owned);
        let (www_authenticate, cache_control) = (header("www-authenticate"), header("cache-control"));
        let status = resp.status().as_u16();
        let body = serde_json::from_str(&resp.text().await.unwrap()).unwrap_or(Value::Null);
        TokenResp { status, www_authenticate, cache_control, body }
    }

    /// A client assertion by `client` for `aud`, valid from now for a minute.
    async fn assertion(&self, key: &IdpKey, client: &str, aud: &str) -> String {
        static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let jti = format!("assertion-{}", N.fetch_add(1, std::sync::atomic::Ordering::SeqCst));
        let now = self.now_secs().await;
        key.sign(&json!({"iss": client, "sub": client, "aud": aud, "iat": now, "exp": now + 60, "jti": jti}))
    }

    async fn with_assertion(&self, assertion: &str) -> TokenResp {
        let t = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
        let pairs =
            [("grant_type", "client_credentials"), ("client_assertion_type", t), ("client_assertion", assertion)];
        self.token_request("acme", &pairs, None).await
    }

    async fn users_status(&self, bearer: &str) -> u16 {
        self.api(M::GET, "/scim/v2/acme/Users?count=1", Some(bearer), None).await.0
    }

    async fn audit_actions(&self, action: &str) -> Vec<Value> {
        let (st, v) =
            self.api(M::GET, &format!("/api/v1/audit?action={action}&limit=1000"), Some(&self.token), None).await;
        assert_eq!(st, 200, "{v}");
        v["records"].as_array().unwrap().clone()
    }
}

/// A server with directory `acme` and inbound trust `entra`; returns its first key.
fn acme_entra(b: Backend) -> (Server, String) {
    let s = Server::start(b);
    s.cli_json(&["directory", "create", "acme"]);
    let v = s.cli_json(&["trust", "create", "--directory", "acme", "--name", "entra", "--direction", "inbound"]);
    let key = v["key"].as_str().unwrap().to_owned();
    (s, key)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_key_jwt_client_provisions_with_an_access_token() {
    for b in backends() {
        let (s, _key) = acme_entra(b);
        let (ka, stranger) = (IdpKey::new("client-a"), IdpKey::new("stranger"));
        let issuer = format!("{}/oauth/acme", s.url);
        let token_endpoint = format!("{issuer}/token");

        // Metadata and the signing key are published; the trust registers its JWKS.
        let (st, meta) = s.api(M::GET, "/.well-known/oauth-authorization-server/oauth/acme", None, None).await;
        assert_eq!(st, 200, "{meta}");
        assert_eq!(meta["issuer"], issuer.as_str());
        assert_eq!(meta["token_endpoint"], token_endpoint.as_str());
        assert_eq!(meta["grant_types_supported"], json!(["client_credentials"]));
        let methods = meta["token_endpoint_auth_methods_supported"].as_array().unwrap();
        assert!(methods.contains(&json!("private_key_jwt")) && methods.contains(&json!("client_secret_basic")));
        assert!(meta["scopes_supported"].as_array().unwrap().contains(&json!("scim")));
        let jwks_path = meta["jwks_uri"].as_str().unwrap().strip_prefix(s.url.as_str()).unwrap().to_owned();
        let (st, jwks) = s.api(M::GET, &jwks_path, None, None).await;
        assert_eq!(st, 200, "{jwks}");
        let signing = jwks["keys"][0].clone();
        assert_eq!((signing["kty"].as_str(), signing["crv"].as_str()), (Some("OKP"), Some("Ed25519")));
        assert!(signing.get("d").is_none(), "no private member is published");
        assert_eq!(s.api(M::GET, "/.well-known/oauth-authorization-server/oauth/nobody", None, None).await.0, 404);

        let path = "/api/v1/directories/acme/trusts/entra/oauth";
        let (st, v) =
            s.api(M::PUT, path, Some(&s.token), Some(json!({"jwks": {"keys": [ka.jwk]}, "token_ttl": "5m"}))).await;
        assert_eq!(st, 200, "{v}");
        assert_eq!((v["assertion_keys"].as_str(), v["token_ttl_secs"].as_i64()), (Some("registered"), Some(300)));
        let mut private = ka.jwk.clone();
        private["d"] = json!("AAAA");
        let (st, v) = s.api(M::PUT, path, Some(&s.token), Some(json!({"jwks": {"keys": [private]}}))).await;
        assert_eq!(st, 400, "a private key is refused: {v}");
        let (st, _) = s.api(M::PUT, path, Some(&s.token), Some(json!({"token_ttl": "1d"}))).await;
        assert_eq!(st, 400, "tokens are short-lived");
        assert_eq!(s.api(M::GET, path, Some(&s.token), None).await.1["token_ttl_secs"], 300);

        // A signed assertion gets a token, which provisions a user.
        let first = s.assertion(&ka, "entra", &token_endpoint).await;
        let r = s.with_assertion(&first).await;
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(r.cache_control.as_deref(), Some("no-store"));
        assert_eq!((r.body["token_type"].as_str(), r.body["expires_in"].as_i64()), (Some("Bearer"), Some(300)));
        let scope: Vec<&str> = r.body["scope"].as_str().unwrap().split(' ').collect();
        assert!(scope.contains(&"scim") && scope.contains(&"users:write"), "{scope:?}");
        let access = r.body["access_token"].as_str().unwrap().to_owned();
        // The token verifies against the published JWKS, in the RFC 9068 profile.
        let header = jsonwebtoken::decode_header(&access).unwrap();
        assert_eq!(header.typ.as_deref(), Some("at+jwt"));
        assert_eq!(header.kid.as_deref(), signing["kid"].as_str());
        let dk = jsonwebtoken::DecodingKey::from_ed_components(signing["x"].as_str().unwrap()).unwrap();
        let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::EdDSA);
        validation.validate_exp = false;
        validation.set_audience(&[format!("{}/scim/v2/acme", s.url)]);
        validation.set_issuer(&[issuer.as_str()]);
        let claims = jsonwebtoken::decode::<Value>(&access, &dk, &validation).unwrap().claims;
        assert_eq!((claims["sub"].as_str(), claims["client_id"].as_str()), (Some("entra"), Some("entra")));
        assert_eq!(claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(), 300);

        let user = json!({"schemas": [USER_URN], "userName": "ada@acme.example", "active": true});
        let (st, v) = s.api(M::POST, "/scim/v2/acme/Users", Some(&access), Some(user)).await;
        assert_eq!(st, 201, "{v}");
        assert_eq!(s.users_status(&access).await, 200);

        // Refused: a replayed jti, a wrong audience, a key not registered, another client's
        // name, an expired assertion.
        let r = s.with_assertion(&first).await;
        assert_eq!((r.status, r.body["error"].as_str()), (401, Some("invalid_client")), "replayed: {}", r.body);
        let r = s.with_assertion(&s.assertion(&ka, "entra", &format!("{}/oauth/other/token", s.url)).await).await;
        assert_eq!((r.status, r.body["error"].as_str()), (401, Some("invalid_client")), "audience: {}", r.body);
        assert!(r.www_authenticate.is_none(), "no Basic challenge without Basic authentication");
        let r = s.with_assertion(&s.assertion(&stranger, "entra", &token_endpoint).await).await;
        assert_eq!(r.status, 401, "unregistered key: {}", r.body);
        let r = s.with_assertion(&s.assertion(&ka, "okta", &issuer).await).await;
        assert_eq!(r.status, 401, "unknown client: {}", r.body);
        let r = s.with_assertion(&s.assertion(&ka, &"x\u{7}".repeat(600), &issuer).await).await;
        assert_eq!(r.status, 401, "a hostile client name: {}", r.body);
        let late = s.assertion(&ka, "entra", &issuer).await;
        s.advance("2m").await;
        let r = s.with_assertion(&late).await;
        assert_eq!((r.status, r.body["error"].as_str()), (401, Some("invalid_client")), "expired: {}", r.body);
        assert!(r.body["error_description"].as_str().unwrap().contains("expired"), "{}", r.body);

        // Request errors of RFC 6749 §5.2.
        let ok = s.assertion(&ka, "entra", &issuer).await;
        let t = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
        let cases: [(&[(&str, &str)], &str); 4] = [
            (
                &[("grant_type", "password"), ("client_assertion_type", t), ("client_assertion", &ok)],
                "unsupported_grant_type",
            ),
            (&[("client_assertion_type", t), ("client_assertion", &ok)], "invalid_request"),
            (&[("grant_type", "client_credentials"), ("grant_type", "client_credentials")], "invalid_request"),
            (
                &[
                    ("grant_type", "client_credentials"),
                    ("scope", "scim users:admin"),
                    ("client_assertion_type", t),
                    ("client_assertion", &ok),
                ],
                "invalid_scope",
            ),
        ];
        for (pairs, error) in cases {
            let r = s.token_request("acme", pairs, None).await;
            assert_eq!((r.status, r.body["error"].as_str()), (400, Some(error)), "{pairs:?}: {}", r.body);
        }
        let (st, v) =
            s.api(M::POST, "/oauth/acme/token", None, Some(json!({"grant_type": "client_credentials"}))).await;
        assert_eq!((st, v["error"].as_str()), (400, Some("invalid_request")), "JSON body: {v}");

        // A narrower scope: the token reads but cannot write.
        let narrow = s.assertion(&ka, "entra", &issuer).await;
        let pairs = [
            ("grant_type", "client_credentials"),
            ("scope", "scim users:read"),
            ("client_assertion_type", t),
            ("client_assertion", &narrow),
        ];
        let r = s.token_request("acme", &pairs, None).await;
        assert_eq!((r.status, r.body["scope"].as_str()), (200, Some("scim users:read")), "{}", r.body);
        let reader = r.body["access_token"].as_str().unwrap().to_owned();
        assert_eq!(s.users_status(&reader).await, 200);
        let user = json!({"schemas": [USER_URN], "userName": "bob@acme.example"});
        assert_eq!(s.api(M::POST, "/scim/v2/acme/Users", Some(&reader), Some(user)).await.0, 403);

        // Suspending the trust stops its tokens from the next request, no cache delay;
        // resuming lets the same (unexpired) token in again: it is checked, not listed.
        let fresh = s.with_assertion(&s.assertion(&ka, "entra", &issuer).await).await;
        let access = fresh.body["access_token"].as_str().unwrap().to_owned();
        assert_eq!(s.users_status(&access).await, 200);
        let (st, v) = s.api(M::POST, "/api/v1/directories/acme/trusts/entra/suspend", Some(&s.token), None).await;
        assert_eq!(st, 200, "{v}");
        assert_eq!(s.users_status(&access).await, 401, "a suspended trust's token is refused at once");
        let r = s.with_assertion(&s.assertion(&ka, "entra", &issuer).await).await;
        assert_eq!((r.status, r.body["error"].as_str()), (400, Some("invalid_grant")), "{}", r.body);
        s.api(M::POST, "/api/v1/directories/acme/trusts/entra/resume", Some(&s.token), None).await;
        assert_eq!(s.users_status(&access).await, 200);
        // A token of this directory is refused by another one; an expired token everywhere.
        s.cli_json(&["directory", "create", "other"]);
        let (st, _) = s.api(M::GET, "/scim/v2/other/Users?count=1", Some(&access), None).await;
        assert_eq!(st, 401, "another directory's token");
        s.advance("6m").await;
        assert_eq!(s.users_status(&access).await, 401, "expired access token");

        // Every issuance and refusal is audited, without secrets.
        let issued = s.audit_actions("oauth.token").await;
        assert!(issued.iter().filter(|r| r["outcome"] == "success").count() >= 3, "{issued:?}");
        assert!(issued.iter().any(|r| r["outcome"] == "denied" && r["details"]["error"] == "invalid_client"));
        assert!(issued.iter().all(|r| r["actor"].as_str().unwrap().len() <= 140), "names are bounded in records");
        let auths = s.audit_actions("key.authenticate").await;
        assert!(auths.iter().any(|r| r["details"]["method"] == "oauth" && r["details"]["reason"] == "trust_suspended"));
        let log = s.logs();
        assert!(!log.contains(&access) && !log.contains(&first), "tokens and assertions are not logged");
        let out = s.cli(&["audit", "verify", "--offline"]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_secret_basic_follows_the_key_rotation() {
    for b in backends() {
        let (s, k1) = acme_entra(b);
        let grant = [("grant_type", "client_credentials")];

        let r = s.token_request("acme", &grant, Some(("entra", &k1))).await;
        assert_eq!(r.status, 200, "{}", r.body);
        let t1 = r.body["access_token"].as_str().unwrap().to_owned();
        assert_eq!(s.users_status(&t1).await, 200);

        // Wrong secret: 401 with a Basic challenge; another client's name with this key: 401.
        let r = s.token_request("acme", &grant, Some(("entra", "fk_not-a-key"))).await;
        assert_eq!((r.status, r.body["error"].as_str()), (401, Some("invalid_client")), "{}", r.body);
        assert!(r.www_authenticate.unwrap_or_default().starts_with("Basic"));
        s.cli_json(&["trust", "create", "--directory", "acme", "--name", "okta", "--direction", "inbound"]);
        let r = s.token_request("acme", &grant, Some(("okta", &k1))).await;
        assert_eq!(r.status, 401, "{}", r.body);

        // Rotation with an overlap: both versions get tokens, and both tokens work.
        let k2 = s.cli_json(&["key", "rotate", "acme/entra", "--overlap", "10m"])["key"].as_str().unwrap().to_owned();
        let r = s.token_request("acme", &grant, Some(("entra", &k1))).await;
        assert_eq!(r.status, 200, "the previous version during the overlap: {}", r.body);
        let r2 = s.token_request("acme", &grant, Some(("entra", &k2))).await;
        assert_eq!(r2.status, 200, "{}", r2.body);
        let t2 = r2.body["access_token"].as_str().unwrap().to_owned();
        assert_eq!((s.users_status(&t1).await, s.users_status(&t2).await), (200, 200));
        // client_secret_post with the new version.
        let post = [("grant_type", "client_credentials"), ("client_id", "entra"), ("client_secret", k2.as_str())];
        assert_eq!(s.token_request("acme", &post, None).await.status, 200);

        // Revoking version 1 refuses it at the token endpoint and kills its tokens at once.
        let out = s.cli(&["key", "revoke", "acme/entra", "--version", "1"]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let r = s.token_request("acme", &grant, Some(("entra", &k1))).await;
        assert_eq!((r.status, r.body["error"].as_str()), (401, Some("invalid_client")), "{}", r.body);
        assert_eq!(s.users_status(&t1).await, 401, "a revoked version's token");
        assert_eq!(s.users_status(&t2).await, 200, "the current version's token");

        // The overlap ends: version 1 stays refused, version 2 keeps working.
        s.advance("11m").await;
        assert_eq!(s.token_request("acme", &grant, Some(("entra", &k2))).await.status, 200);

        let issued = s.audit_actions("oauth.token").await;
        let versions: Vec<i64> = issued
            .iter()
            .filter(|r| r["outcome"] == "success" && r["details"]["method"] == "client_secret_basic")
            .filter_map(|r| r["key_version"].as_i64())
            .collect();
        assert!(versions.contains(&1) && versions.contains(&2), "{issued:?}");
        let page = super::health::scrape(&s).await;
        let count = |outcome: &str| {
            super::health::sample(&page, &format!("fedkey_oauth_tokens_total{{outcome=\"{outcome}\"}}")).unwrap()
        };
        assert_eq!((count("issued"), count("refused")), (5.0, 3.0), "{page}");
        let log = s.logs();
        assert!(!log.contains(&k1) && !log.contains(&k2) && !log.contains(&t2), "secrets are not logged");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_key_jwt_against_the_watched_idp_jwks() {
    for b in backends() {
        let (s, _key) = acme_entra(b);
        let idp = Idp::start().await;
        let (ka, kb) = (IdpKey::new("idp-a"), IdpKey::new("idp-b"));
        idp.publish(&[&ka]);
        let issuer = format!("{}/oauth/acme", s.url);
        // No material yet, nothing registered: no key can sign for the client.
        let r = s.with_assertion(&s.assertion(&ka, "entra", &issuer).await).await;
        assert_eq!((r.status, r.body["error"].as_str()), (401, Some("invalid_client")), "{}", r.body);

        s.cli_json(&["material", "source", "acme/entra", "--jwks-url", &format!("{}/jwks", idp.url)]);
        let (st, v) = s.api(M::POST, "/api/v1/test/watchers/tick", Some(&s.token), None).await;
        assert_eq!((st, v["report"]["accepted"].as_i64()), (200, Some(1)), "{v}");
        let (_, c) = s.api(M::GET, "/api/v1/directories/acme/trusts/entra/oauth", Some(&s.token), None).await;
        assert_eq!(c["assertion_keys"], "material", "{c}");
        let r = s.with_assertion(&s.assertion(&ka, "entra", &issuer).await).await;
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(s.users_status(r.body["access_token"].as_str().unwrap()).await, 200);
        let r = s.with_assertion(&s.assertion(&kb, "entra", &issuer).await).await;
        assert_eq!(r.status, 401, "a key the IdP does not publish: {}", r.body);

        // A registered JWKS takes precedence over the watched one.
        let path = "/api/v1/directories/acme/trusts/entra/oauth";
        let (st, v) = s.api(M::PUT, path, Some(&s.token), Some(json!({"jwks": {"keys": [kb.jwk]}}))).await;
        assert_eq!(st, 200, "{v}");
        assert_eq!(s.with_assertion(&s.assertion(&ka, "entra", &issuer).await).await.status, 401);
        assert_eq!(s.with_assertion(&s.assertion(&kb, "entra", &issuer).await).await.status, 200);
        let (st, _) = s.api(M::DELETE, path, Some(&s.token), None).await;
        assert_eq!(st, 200);
        assert_eq!(s.with_assertion(&s.assertion(&ka, "entra", &issuer).await).await.status, 200);
    }
}

/// IPSIE asks a SCIM service to take at least 50 member operations in one PATCH: 60 here,
/// by a client holding an access token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_access_token_patches_sixty_members_at_once() {
    use super::bulk::{GROUP_URN, bulk_ops, id_of, member_ids};
    for b in backends() {
        let (s, key) = acme_entra(b);
        let r = s.token_request("acme", &[("grant_type", "client_credentials")], Some(("entra", &key))).await;
        assert_eq!(r.status, 200, "{}", r.body);
        let c = Scim { s: &s, dir: "acme".into(), key: r.body["access_token"].as_str().unwrap().to_owned() };
        let ops: Vec<Value> = (0..60)
            .map(|i| {
                let data = json!({"schemas": [USER_URN], "userName": format!("u{i}@acme.example")});
                json!({"method": "POST", "path": "/Users", "bulkId": format!("u{i}"), "data": data})
            })
            .collect();
        let ids: Vec<String> = bulk_ops(&c.bulk(None, json!(ops)).await).iter().map(id_of).collect();
        assert_eq!(ids.len(), 60);
        let g = c.post("/Groups", json!({"schemas": [GROUP_URN], "displayName": "everyone"})).await;
        assert_eq!(g.status, 201, "{}", g.body);
        let gid = g.body["id"].as_str().unwrap().to_owned();
        let patch: Vec<Value> =
            ids.iter().map(|id| json!({"op": "add", "path": "members", "value": [{"value": id}]})).collect();
        let r = c.patch(&format!("/Groups/{gid}"), json!(patch)).await;
        assert!(matches!(r.status, 200 | 204), "{}", r.body);
        let mut got = member_ids(&c.get(&format!("/Groups/{gid}")).await.body);
        let mut want = ids.clone();
        got.sort();
        want.sort();
        assert_eq!(got, want);
    }
}
