//! Against the reference Python SCIM server `scim2-server` (PyPI, pinned in
//! tools/conformance/requirements.txt): a strict, independent peer. Its executable comes
//! from `FEDKEY_SCIM2_SERVER_BIN`, else `<repo>/.venv-conformance/bin/scim2-server`
//! (installed by scripts/conformance.sh). Missing: a failure under `CI=true`, otherwise a
//! loud skip.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fedkey_crypto::Secret;
use fedkey_scim::schema::ENTERPRISE_USER;
use fedkey_sync::diff::{deactivate, group_members_patch, group_patch, user_patch};
use fedkey_sync::mapping::{Desired, GroupRef, Mapping};
use fedkey_sync::{ClientError, ResourceKind, ScimClient, TargetConfig};
use serde_json::{Value, json};

use crate::client::{clock, egress};

const TOKEN: &str = "reference-server-bearer-token-123";

/// Kills the server when the test ends, however it ends.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn server_bin() -> Option<PathBuf> {
    let p = match std::env::var("FEDKEY_SCIM2_SERVER_BIN") {
        Ok(p) => PathBuf::from(p),
        Err(_) => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.venv-conformance/bin/scim2-server"),
    };
    p.exists().then_some(p)
}

/// Starts the server on a free port; it prints its banner after the socket listens.
fn start(bin: &PathBuf) -> (Server, String) {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut child = Command::new(bin)
        .args(["--hostname", "127.0.0.1", "--port", &port.to_string(), "--bearer-token", TOKEN])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", bin.display()));
    let stdout = child.stdout.take().unwrap();
    let server = Server(child);
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).unwrap();
    assert!(line.starts_with("Serving SCIM on"), "unexpected banner {line:?}");
    (server, format!("http://127.0.0.1:{port}/v2"))
}

#[tokio::test]
async fn provisioning_against_scim2_server() {
    let Some(bin) = server_bin() else {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("scim2-server is not installed: set FEDKEY_SCIM2_SERVER_BIN or run scripts/conformance.sh");
        }
        eprintln!(
            "SKIPPED: provisioning_against_scim2_server: scim2-server not found (set FEDKEY_SCIM2_SERVER_BIN or install .venv-conformance)"
        );
        return;
    };
    let (_server, base) = tokio::task::spawn_blocking(move || start(&bin)).await.unwrap();
    let mut cfg = TargetConfig::bearer(base, Secret::new(TOKEN.into()));
    cfg.timeout = Duration::from_secs(10);
    let c = ScimClient::new(cfg, egress(), clock()).unwrap();

    let caps = c.discover().await.unwrap();
    assert!(caps.patch && caps.filter.supported && caps.enterprise_user, "{caps:?}");
    assert!(caps.assumptions.is_empty(), "{:?}", caps.assumptions);
    assert!(caps.declares(ENTERPRISE_USER, "department"));

    let mapping: Mapping = serde_json::from_value(json!({
        "scopeFilter": "active eq true",
        "roles": [{"group": "Engineering", "assign": {"appRole": "developer"}}]
    }))
    .unwrap();
    let eng = [GroupRef { id: "dg-1".into(), display_name: "Engineering".into() }];
    let dir_user = json!({"id": "dir-42", "userName": "grace@example.com", "active": true, "displayName": "Grace H",
        "name": {"givenName": "Grace", "familyName": "Hopper"}, "title": "Rear Admiral",
        "emails": [{"value": "grace@example.com", "type": "work", "primary": true}],
        ENTERPRISE_USER: {"department": "Navy", "employeeNumber": "1906"}});
    let Desired::User(mut desired) = mapping.desired_user(&dir_user, &eng).unwrap() else { panic!("in scope") };
    assert!(caps.restrict(fedkey_scim::schema::USER, &mut desired).is_empty());

    let created = c.create(ResourceKind::User, &desired).await.unwrap();
    let found = c.find_one(ResourceKind::User, "externalId", "dir-42").await.unwrap().unwrap();
    assert_eq!(found.id, created.id);
    let managed = mapping.managed_user_attributes().unwrap();
    assert_eq!(user_patch(&found.body, &desired, &managed), vec![], "the created user already matches");

    // The directory changes: a PATCH of exactly the differences, read back.
    let mut changed = dir_user.clone();
    changed["title"] = json!("Commodore");
    changed["name"]["givenName"] = json!("Grace B.");
    changed[ENTERPRISE_USER]["department"] = json!("Computing");
    changed["emails"] = json!([{"value": "grace@example.com", "type": "work", "primary": true}, {"value": "gh@home.example", "type": "home"}]);
    let Desired::User(desired) = mapping.desired_user(&changed, &[]).unwrap() else { panic!("in scope") };
    let ops = user_patch(&found.body, &desired, &managed);
    let paths: Vec<String> = ops.iter().map(|o| o.path.as_ref().unwrap().to_string()).collect();
    assert_eq!(paths, ["name.givenName", "title", "emails", &format!("{ENTERPRISE_USER}:department"), "roles"]);
    c.patch(ResourceKind::User, &found.id, &ops, found.etag.as_deref()).await.unwrap();
    let after = c.get(ResourceKind::User, &found.id).await.unwrap();
    assert_eq!(user_patch(&after.body, &desired, &managed), vec![], "{}", after.body);
    assert_eq!(after.body["title"], "Commodore");
    assert_eq!(after.body[ENTERPRISE_USER]["department"], "Computing");
    assert!(after.body.get("roles").is_none_or(|r| r.as_array().is_some_and(Vec::is_empty)));

    // A group with the user as member, then without.
    let g = mapping.desired_group(&json!({"id": "dg-1", "displayName": "Engineering"})).unwrap();
    let group = c.create(ResourceKind::Group, &g).await.unwrap();
    assert_eq!(group_patch(&group.body, &g, &mapping.managed_group_attributes().unwrap()), vec![]);
    c.patch(ResourceKind::Group, &group.id, &group_members_patch(&[], std::slice::from_ref(&found.id)), None)
        .await
        .unwrap();
    let members = |v: &Value| -> Vec<String> {
        v.get("members")
            .and_then(Value::as_array)
            .map(|a| a.iter().map(|m| m["value"].as_str().unwrap().to_owned()).collect())
            .unwrap_or_default()
    };
    assert_eq!(members(&c.get(ResourceKind::Group, &group.id).await.unwrap().body), vec![found.id.clone()]);
    c.patch(ResourceKind::Group, &group.id, &group_members_patch(std::slice::from_ref(&found.id), &[]), None)
        .await
        .unwrap();
    assert!(members(&c.get(ResourceKind::Group, &group.id).await.unwrap().body).is_empty());

    // Leaving the scope: deactivate (the default leaver policy), then delete.
    let mut left = changed.clone();
    left["active"] = json!(false);
    assert_eq!(mapping.desired_user(&left, &[]).unwrap(), Desired::OutOfScope);
    c.patch(ResourceKind::User, &found.id, &[deactivate()], None).await.unwrap();
    assert_eq!(c.get(ResourceKind::User, &found.id).await.unwrap().body["active"], false);
    c.delete(ResourceKind::User, &found.id).await.unwrap();
    assert!(matches!(c.get(ResourceKind::User, &found.id).await.unwrap_err(), ClientError::NotFound { .. }));
    c.delete(ResourceKind::Group, &group.id).await.unwrap();
}
