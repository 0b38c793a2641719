//! End-to-end tests of a directory's password policy (IPSIE AL SCIM profile: the `password`
//! attribute refused or ignored, as configured): set with the CLI, applied by every write.

#[allow(unused_imports)]
use super::*;

use reqwest::Method as M;

/// The stored JSON body of a resource, read from outside fedkey.
fn stored_body(s: &Server, b: Backend, id: &str) -> String {
    let sql = format!("SELECT body FROM scim_resources WHERE id = '{id}'");
    match b {
        Backend::Postgres => psql_on(&s.db_url, &sql),
        Backend::Sqlite => {
            let out = Command::new("python3")
                .args([
                    "-c",
                    "import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute(sys.argv[2]).fetchone()[0])",
                ])
                .arg(s.data_dir().join("fedkey.db"))
                .arg(&sql)
                .output()
                .unwrap();
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
            String::from_utf8(out.stdout).unwrap()
        }
    }
}

fn set_policy(s: &Server, policy: &str) -> std::process::Output {
    s.cli(&["directory", "settings", "acme", "--password-policy", policy])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_password_policy_keeps_refuses_or_ignores_passwords() {
    for b in backends() {
        let (s, key) = scim_server(b, None).await;
        let c = Scim { s: &s, dir: "acme".into(), key };
        let (st, v) = s.api(M::GET, "/api/v1/directories/acme", Some(&s.token), None).await;
        assert_eq!((st, v["password_policy"].as_str()), (200, Some("fingerprint")), "{v}");

        // fingerprint (the default): stored as a keyed fingerprint, never returned.
        let r = c.post("/Users", json!({"userName": "kept", "password": "Kept-Pa55word-1"})).await;
        assert_eq!(r.status, 201, "{}", r.body);
        assert!(r.body.get("password").is_none());
        let kept = r.body["id"].as_str().unwrap().to_owned();
        let body = stored_body(&s, b, &kept);
        assert!(body.contains("\"password\"") && !body.contains("Kept-Pa55word-1"), "{body}");

        // refuse: 400 naming the policy, and nothing is written.
        let out = set_policy(&s, "refuse");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert!(String::from_utf8_lossy(&out.stdout).contains("refuse"));
        let r = c.post("/Users", json!({"userName": "refused", "password": "Refused-Pa55word-2"})).await;
        assert_scim_error(&r, 400, Some("invalidValue"));
        assert!(r.body["detail"].as_str().unwrap().contains("password policy is refuse"), "{}", r.body);
        assert!(c.filter("Users", "userName eq \"refused\"").await.is_empty(), "nothing created");
        let before = c.get(&format!("/Users/{kept}")).await.body;
        let r =
            c.patch(&format!("/Users/{kept}"), json!([{"op":"replace","value":{"password":"New-Pa55word-3"}}])).await;
        assert_scim_error(&r, 400, Some("invalidValue"));
        let mut whole = before.clone();
        whole["password"] = json!("New-Pa55word-3");
        let r = c.raw(M::PUT, &format!("/Users/{kept}"), Some(whole.to_string()), &[]).await;
        assert_scim_error(&r, 400, Some("invalidValue"));
        assert_eq!(c.get(&format!("/Users/{kept}")).await.body["meta"]["version"], before["meta"]["version"]);
        // A write without a password still works, and keeps the stored fingerprint.
        let r = c.patch(&format!("/Users/{kept}"), json!([{"op":"replace","value":{"title":"Engineer"}}])).await;
        assert_eq!(r.status, 200, "{}", r.body);
        assert!(stored_body(&s, b, &kept).contains("\"password\""));

        // ignore: accepted, never stored; a password-only PATCH writes nothing.
        assert!(set_policy(&s, "ignore").status.success());
        let r = c.post("/Users", json!({"userName": "ignored", "password": "Ignored-Pa55word-4"})).await;
        assert_eq!(r.status, 201, "{}", r.body);
        let ignored = r.body["id"].as_str().unwrap().to_owned();
        assert!(!stored_body(&s, b, &ignored).contains("\"password\""));
        let v0 = r.body["meta"]["version"].clone();
        let r = c
            .patch(&format!("/Users/{ignored}"), json!([{"op":"replace","value":{"password":"Other-Pa55word-5"}}]))
            .await;
        assert_eq!((r.status, &r.body["meta"]["version"]), (200, &v0), "{}", r.body);
        assert!(!stored_body(&s, b, &ignored).contains("\"password\""));

        // Bad values are refused with the accepted ones named; the change is audited.
        let (st, v) = s
            .api(M::PUT, "/api/v1/directories/acme/settings", Some(&s.token), Some(json!({"password_policy": "hash"})))
            .await;
        assert_eq!(st, 400, "{v}");
        assert!(v.to_string().contains("fingerprint ignore refuse"), "{v}");
        let (_, v) = s.api(M::GET, "/api/v1/audit?action=directory.settings&limit=10", Some(&s.token), None).await;
        let recs = v["records"].as_array().unwrap();
        let outcomes: Vec<&str> = recs.iter().map(|r| r["outcome"].as_str().unwrap()).collect();
        assert_eq!(outcomes, ["success", "success", "failure"], "{v}");
        assert_eq!(recs[1]["details"]["before"]["password_policy"], "refuse", "{v}");
        assert_eq!(recs[1]["details"]["after"]["password_policy"], "ignore", "{v}");
        for pw in ["Kept-Pa55word-1", "Refused-Pa55word-2", "New-Pa55word-3", "Ignored-Pa55word-4", "Other-Pa55word-5"]
        {
            assert!(!s.logs().contains(pw));
        }
    }
}
