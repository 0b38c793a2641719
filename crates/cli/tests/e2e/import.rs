//! `fedkey import` end to end: CSV and JSON-lines files upserted into a directory through
//! the admin import endpoint (the SCIM write path), read back over SCIM, fanned out to a
//! second fedkey directory as the outbound target, re-run idempotently, and hostile files
//! refused with line-numbered errors and nothing partial.

#[allow(unused_imports)]
use super::*;

use reqwest::Method as M;

use super::provisioning::{directory_with_inbound, outbound_trust};

const ENT: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";

impl Server {
    /// Writes `content` to a file in the server's temp dir; returns its path.
    fn file(&self, name: &str, content: &[u8]) -> String {
        let p = self.dir.path().join(name);
        std::fs::write(&p, content).unwrap();
        p.to_str().unwrap().to_owned()
    }

    /// `fedkey import … --output json`: exit code, the summary (Null if none), stderr.
    fn import(&self, dir: &str, file: &str, extra: &[&str]) -> (i32, Value, String) {
        let mut args = vec!["import", "--directory", dir, file, "--output", "json"];
        args.extend(extra);
        let out = self.cli(&args);
        let v = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        (out.status.code().unwrap_or(-1), v, String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

fn counts(v: &Value) -> (u64, u64, u64, u64) {
    let n = |k: &str| v[k].as_u64().unwrap_or_else(|| panic!("no {k} in {v}"));
    (n("created"), n("updated"), n("unchanged"), n("failed"))
}

fn error_lines(v: &Value) -> Vec<u64> {
    v["errors"].as_array().unwrap().iter().map(|e| e["line"].as_u64().unwrap()).collect()
}

fn error_on(v: &Value, line: u64) -> String {
    let e = v["errors"].as_array().unwrap().iter().find(|e| e["line"] == line);
    e.unwrap_or_else(|| panic!("no error on line {line}: {v}"))["error"].as_str().unwrap().to_owned()
}

async fn total(c: &Scim<'_>, endpoint: &str) -> u64 {
    let r = c.get(&format!("/{endpoint}?count=0")).await;
    assert_eq!(r.status, 200, "{}", r.body);
    r.body["totalResults"].as_u64().unwrap()
}

async fn one(c: &Scim<'_>, endpoint: &str, filter: &str) -> Value {
    let found = c.filter(endpoint, filter).await;
    assert_eq!(found.len(), 1, "{filter}: {found:?}");
    found[0].clone()
}

async fn audit(s: &Server, action: &str) -> Vec<Value> {
    let (st, v) = s.api(M::GET, &format!("/api/v1/audit?action={action}&limit=1000"), Some(&s.token), None).await;
    assert_eq!(st, 200, "{v}");
    v["records"].as_array().unwrap().clone()
}

const HEADER: &str = "type,userName,externalId,name.givenName,name.familyName,emails[type eq \"work\"].value,title,active,\
urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department,displayName,members\n";

/// Users, groups (one listed before a member it names), and three bad rows (lines 4, 5, 7).
fn people_csv(alice_title: &str) -> String {
    format!(
        "{HEADER}\
,alice@acme.test,E100,Alice,Smith,alice@acme.test,{alice_title},true,Engineering,,\n\
User,\"bob@acme.test\",E101,Bob,\"O\"\"Neil\",bob@acme.test,\"Analyst, Senior\",yes,Finance,,\n\
,,E102,No,Name,,,true,,,\n\
,carol@acme.test,E103,Carol,Jones,carol@acme.test,Manager,maybe,,,\n\
Group,,G1,,,,,,,Engineering,alice@acme.test; E101\n\
Group,,G2,,,,,,,Ghosts,nobody@acme.test\n\
,dave@acme.test,E104,\"Dave\nDavid\",Quote,dave@acme.test,Tester,TRUE,,,\n\
Group,,G3,,,,,,,Late,frank@acme.test\n\
,frank@acme.test,E106,Frank,Late,frank@acme.test,Engineer,false,Engineering,,\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn import_csv_upserts_idempotently_and_fans_out() {
    for b in backends() {
        import_csv(b).await;
    }
}

async fn import_csv(b: Backend) {
    let s = Server::start(b);
    let hr = directory_with_inbound(&s, "acme", "hr").await;
    // The outbound target: a second fedkey directory (as in the provisioning tests).
    let app_key = directory_with_inbound(&s, "app", "fedkey").await;
    outbound_trust(&s, "acme", "app", &app_key).await;
    s.set_target("acme/app", &format!("{}/scim/v2/app", s.url), None, &[]);
    let acme = Scim { s: &s, dir: "acme".into(), key: hr };
    let app = Scim { s: &s, dir: "app".into(), key: app_key };
    let file = s.file("people.csv", people_csv("Engineer").as_bytes());

    let (code, v, err) = s.import("acme", &file, &[]);
    assert_eq!(code, 1, "a failed row makes the exit code 1: {v} {err}");
    assert!(v.is_object(), "{err}");
    assert_eq!(counts(&v), (6, 0, 0, 3), "{b:?}: {v}");
    assert_eq!(v["rows"], 9, "{v}");
    assert_eq!(error_lines(&v), vec![4, 5, 7]);
    assert!(error_on(&v, 4).contains("userName is required"), "{v}");
    assert!(error_on(&v, 5).contains("column active") && error_on(&v, 5).contains("maybe"), "{v}");
    assert!(error_on(&v, 7).contains("nobody@acme.test"), "{v}");

    // Read back over SCIM: attributes, quoting, multi-line fields, memberships.
    assert_eq!(total(&acme, "Users").await, 4);
    assert_eq!(total(&acme, "Groups").await, 2, "the group with an unknown member was not created");
    let bob = one(&acme, "Users", "userName eq \"bob@acme.test\"").await;
    assert_eq!(bob["externalId"], "E101");
    assert_eq!(bob["name"]["familyName"], "O\"Neil");
    assert_eq!(bob["title"], "Analyst, Senior");
    assert_eq!(bob["active"], true);
    assert_eq!(bob[ENT]["department"], "Finance");
    assert_eq!(bob["emails"][0]["value"], "bob@acme.test");
    assert_eq!(bob["emails"][0]["type"], "work");
    let dave = one(&acme, "Users", "userName eq \"dave@acme.test\"").await;
    assert_eq!(dave["name"]["givenName"], "Dave\nDavid");
    let frank = one(&acme, "Users", "externalId eq \"E106\"").await;
    assert_eq!(frank["active"], false);
    let alice = one(&acme, "Users", "userName eq \"alice@acme.test\"").await;
    let eng = one(&acme, "Groups", "displayName eq \"Engineering\"").await;
    let mut want = vec![alice["id"].as_str().unwrap().to_owned(), bob["id"].as_str().unwrap().to_owned()];
    want.sort();
    let mut got: Vec<String> =
        eng["members"].as_array().unwrap().iter().map(|m| m["value"].as_str().unwrap().to_owned()).collect();
    got.sort();
    assert_eq!(got, want, "members by userName and externalId: {eng}");
    let late = one(&acme, "Groups", "displayName eq \"Late\"").await;
    assert_eq!(late["members"][0]["value"], frank["id"], "a member later in the file: {late}");

    // The outbox fans the import out: the users reach the target.
    let r = s.sync_tick().await;
    assert!(r["delivered"].as_u64().unwrap() >= 6, "{r}");
    assert_eq!(r["dead_letters"], 0, "{r}");
    // frank is inactive: a leaver is not provisioned as a joiner.
    assert_eq!(total(&app, "Users").await, 3);
    let at_app = one(&app, "Users", "userName eq \"bob@acme.test\"").await;
    assert_eq!(at_app["title"], "Analyst, Senior");
    assert_eq!(at_app["externalId"], bob["id"], "the target knows the directory's id");
    s.sync_tick().await;

    // Re-running is idempotent: nothing written, nothing to deliver.
    let replaces = audit(&s, "scim.replace").await.len();
    let (code, v, _) = s.import("acme", &file, &[]);
    assert_eq!(code, 1);
    assert_eq!(counts(&v), (0, 0, 6, 3), "{v}");
    let r = s.sync_tick().await;
    assert_eq!((r["fanned_out"].as_u64(), r["delivered"].as_u64()), (Some(0), Some(0)), "no outbox events: {r}");
    assert_eq!(audit(&s, "scim.replace").await.len(), replaces);
    assert_eq!(total(&acme, "Users").await, 4);

    // A changed row is an update, delivered to the target.
    let changed = s.file("people2.csv", people_csv("Staff Engineer").as_bytes());
    let (_, v, _) = s.import("acme", &changed, &[]);
    assert_eq!(counts(&v), (0, 1, 5, 3), "{v}");
    assert_eq!(one(&acme, "Users", "userName eq \"alice@acme.test\"").await["title"], "Staff Engineer");
    let r = s.sync_tick().await;
    assert!(r["delivered"].as_u64().unwrap() >= 1, "{r}");
    assert_eq!(one(&app, "Users", "userName eq \"alice@acme.test\"").await["title"], "Staff Engineer");

    // Human output: per-line errors on stderr, the summary on stdout.
    let out = s.cli(&["import", "--directory", "acme", &file]);
    assert_eq!(out.status.code(), Some(1));
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(stderr.contains("line 4: userName is required"), "{stderr}");
    assert!(stdout.contains("9 rows: 0 created, 1 updated, 5 unchanged, 3 failed"), "{stdout}");

    // Audited with the admin actor, in the chain that verifies.
    let creates = audit(&s, "scim.create").await;
    let by_admin: Vec<&Value> = creates
        .iter()
        .filter(|r| r["directory"] == "acme" && r["actor"].as_str().unwrap().starts_with("token:"))
        .collect();
    assert_eq!(by_admin.len(), 6, "{creates:?}");
    let imports = audit(&s, "directory.import").await;
    // One record per request: each run sent the users, then the groups (the row the CLI
    // could not read, line 5, never reached the server).
    assert_eq!(imports.len(), 8, "{imports:?}");
    assert!(imports.iter().all(|r| r["outcome"] == "failure" && r["details"]["failed"] == 1), "{imports:?}");
    let errors: Vec<String> = imports.iter().map(|r| r["details"]["errors"][0]["error"].to_string()).collect();
    assert_eq!(errors.iter().filter(|e| e.contains("userName is required")).count(), 4, "{errors:?}");
    assert_eq!(errors.iter().filter(|e| e.contains("nobody@acme.test")).count(), 4, "{errors:?}");
    let out = s.cli(&["audit", "verify", "--offline"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// Rows of one request that interact (a duplicate userName, an externalId of a stored user)
/// between new users that are written together: each row ends as it would row by row.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_batches_keep_row_by_row_outcomes() {
    for b in backends() {
        import_batches(b).await;
    }
}

async fn import_batches(b: Backend) {
    let s = Server::start(b);
    let hr = directory_with_inbound(&s, "acme", "hr").await;
    let acme = Scim { s: &s, dir: "acme".into(), key: hr };
    let head = "userName,externalId,title\n";
    let first = s.file("first.csv", format!("{head}kept@acme.test,E900,Clerk\n").as_bytes());
    assert_eq!(counts(&s.import("acme", &first, &[]).1), (1, 0, 0, 0));
    let creates = audit(&s, "scim.create").await.len();
    let file = s.file(
        "batch.csv",
        format!(
            "{head}new1@acme.test,E1,Engineer\n\
             new2@acme.test,E2,Engineer\n\
             NEW1@acme.test,E1,Manager\n\
             ,E5,Nobody\n\
             renamed@acme.test,E900,Clerk\n\
             new4@acme.test,E4,Engineer\n"
        )
        .as_bytes(),
    );
    let (code, v, err) = s.import("acme", &file, &["--batch", "500"]);
    assert_eq!(code, 1, "{v} {err}");
    // Line 4 updates the user line 2 created; line 6 the stored user (by externalId).
    assert_eq!(counts(&v), (3, 2, 0, 1), "{b:?}: {v}");
    assert_eq!(error_lines(&v), vec![5]);
    assert_eq!(total(&acme, "Users").await, 4);
    assert_eq!(one(&acme, "Users", "externalId eq \"E1\"").await["title"], "Manager");
    assert_eq!(one(&acme, "Users", "externalId eq \"E900\"").await["userName"], "renamed@acme.test");
    assert_eq!(audit(&s, "scim.create").await.len(), creates + 3, "one record per created user");
    let out = s.cli(&["audit", "verify", "--offline"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_json_lines_with_dry_run() {
    for b in backends() {
        import_jsonl(b).await;
    }
}

async fn import_jsonl(b: Backend) {
    let s = Server::start(b);
    let hr = directory_with_inbound(&s, "acme", "hr").await;
    let acme = Scim { s: &s, dir: "acme".into(), key: hr };
    // An existing user the file updates (matched by userName, case-insensitive).
    let pre = acme.post("/Users", json!({"schemas": [USER_URN], "userName": "Zed@acme.test", "title": "Old"})).await;
    assert_eq!(pre.status, 201, "{}", pre.body);
    let lines = [
        json!({"schemas": [USER_URN], "userName": "ann@acme.test", "externalId": "X1", "name": {"givenName": "Ann"}})
            .to_string(),
        json!({"userName": "zed@ACME.test", "title": "New", "active": true}).to_string(),
        String::new(),
        "{\"userName\": \"broken\"".into(),
        "[1, 2]".into(),
        json!({"type": "Group", "displayName": "Team", "members": [{"value": "ann@acme.test"}, "X1", pre.body["id"]]})
            .to_string(),
        json!({"type": "Robot", "userName": "r2"}).to_string(),
        json!({"schemas": [USER_URN], "userName": 42}).to_string(),
    ];
    let file = s.file("people.txt", lines.join("\n").as_bytes());

    // The format cannot be guessed from .txt.
    let (code, _, err) = s.import("acme", &file, &[]);
    assert_ne!(code, 0);
    assert!(err.contains("--format"), "{err}");

    // A dry run decides every row and writes nothing.
    let (code, v, err) = s.import("acme", &file, &["--format", "jsonl", "--dry-run"]);
    assert_eq!(code, 1, "{err}");
    assert_eq!(v["dry_run"], true);
    // The group may name ann (by userName and externalId), whom the same run would create.
    assert_eq!(counts(&v), (2, 1, 0, 4), "{v}");
    assert_eq!(error_lines(&v), vec![4, 5, 7, 8]);
    assert_eq!(total(&acme, "Users").await, 1, "a dry run writes nothing");
    assert_eq!(one(&acme, "Users", "userName eq \"zed@acme.test\"").await["title"], "Old");

    let (code, v, _) = s.import("acme", &file, &["--format", "jsonl", "--batch", "2"]);
    assert_eq!(code, 1);
    assert_eq!(counts(&v), (2, 1, 0, 4), "{v}");
    assert_eq!(error_lines(&v), vec![4, 5, 7, 8]);
    assert!(error_on(&v, 4).contains("invalid JSON"), "{v}");
    assert!(error_on(&v, 5).contains("JSON object"), "{v}");
    assert!(error_on(&v, 7).contains("neither User nor Group"), "{v}");
    assert!(error_on(&v, 8).contains("userName"), "{v}");
    assert_eq!(one(&acme, "Users", "userName eq \"zed@acme.test\"").await["title"], "New");
    let ann = one(&acme, "Users", "externalId eq \"X1\"").await;
    let team = one(&acme, "Groups", "displayName eq \"Team\"").await;
    let members: Vec<&str> = team["members"].as_array().unwrap().iter().map(|m| m["value"].as_str().unwrap()).collect();
    assert_eq!(members.len(), 2, "ann by userName and by externalId is one member, plus zed by id: {team}");
    assert!(members.contains(&ann["id"].as_str().unwrap()) && members.contains(&pre.body["id"].as_str().unwrap()));
    let (_, v, _) = s.import("acme", &file, &["--format", "jsonl"]);
    assert_eq!(counts(&v), (0, 0, 3, 4), "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_refuses_hostile_files_cleanly() {
    for b in backends() {
        import_hostile(b).await;
    }
}

async fn import_hostile(b: Backend) {
    let s = Server::start(b);
    let hr = directory_with_inbound(&s, "acme", "hr").await;
    let acme = Scim { s: &s, dir: "acme".into(), key: hr };
    let nothing_written = |what: &str, code: i32, v: &Value| {
        assert_ne!(code, 0, "{what}");
        assert!(v.is_null(), "{what}: no summary, nothing was sent: {v}");
    };

    // File-level problems stop the import before anything is written, even valid rows.
    let f = s.file("latin1.csv", b"userName,title\nann@acme.test,Ok\nb\xe9a@acme.test,Caf\xe9\n");
    let (code, v, err) = s.import("acme", &f, &[]);
    nothing_written("non-UTF-8", code, &v);
    assert!(err.contains("line 3 is not UTF-8"), "{err}");
    let f = s.file("unknown.csv", b"userName,title,nickname2\nann@acme.test,Ok,x\n");
    let (code, v, err) = s.import("acme", &f, &[]);
    nothing_written("unknown column", code, &v);
    assert!(err.contains("column 3 (\"nickname2\"): not an attribute of a User or a Group"), "{err}");
    let f = s.file("empty.csv", b"");
    let (code, v, err) = s.import("acme", &f, &[]);
    nothing_written("no header", code, &v);
    assert!(err.contains("needs a header row"), "{err}");
    let (code, v, err) = s.import("acme", "/nonexistent/people.csv", &[]);
    nothing_written("missing file", code, &v);
    assert!(err.contains("cannot read /nonexistent/people.csv"), "{err}");
    let f = s.file("ok.csv", b"userName\nann@acme.test\n");
    let (code, v, err) = s.import("nosuch", &f, &[]);
    nothing_written("unknown directory", code, &v);
    assert!(err.contains("not found"), "{err}");
    assert_eq!(total(&acme, "Users").await, 0, "nothing partial");

    // Row-level problems: that row fails, the others go in.
    let mut jsonl = Vec::new();
    jsonl.extend(json!({"userName": "ok1@acme.test"}).to_string().bytes());
    jsonl.extend(b"\n\x00garbage}{\n");
    jsonl.extend(json!({"userName": "x".repeat(2 * 1024 * 1024)}).to_string().bytes());
    jsonl.extend(b"\n");
    jsonl.extend(json!({"userName": "y".repeat(2000)}).to_string().bytes());
    jsonl.extend(b"\n");
    jsonl.extend(json!({"displayName": "G", "members": ["ok1@acme.test", "ghost@acme.test"]}).to_string().bytes());
    jsonl.extend(b"\n");
    jsonl.extend(json!({"userName": "ok2@acme.test"}).to_string().bytes());
    let f = s.file("rows.jsonl", &jsonl);
    let (code, v, _) = s.import("acme", &f, &[]);
    assert_eq!(code, 1);
    assert_eq!(counts(&v), (2, 0, 0, 4), "{v}");
    assert!(error_on(&v, 2).contains("invalid JSON"), "{v}");
    assert!(error_on(&v, 3).contains("longer than 1048576 bytes"), "{v}");
    assert!(error_on(&v, 4).contains("longer than 1024 bytes"), "{v}");
    let ghost = error_on(&v, 5);
    assert!(ghost.contains("\"ghost@acme.test\"") && ghost.contains("directory acme"), "{ghost}");
    assert_eq!(total(&acme, "Users").await, 2);
    assert_eq!(total(&acme, "Groups").await, 0, "the group with a missing member changed nothing");

    // The endpoint itself: bounded batches, clear errors, admin only.
    let path = "/api/v1/directories/acme/import";
    let t = Some(s.token.as_str());
    let rows: Vec<Value> = (0..501).map(|i| json!({"line": i, "resource": {"userName": format!("u{i}")}})).collect();
    let (st, v) = s.api(M::POST, path, t, Some(json!({"rows": rows}))).await;
    assert_eq!(st, 400, "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("at most 500 rows"), "{v}");
    let (st, v) = s.api(M::POST, path, t, Some(json!({"rows": [], "extra": 1}))).await;
    assert_eq!(st, 400, "{v}");
    let planned = json!({"rows": [{"line": 1, "type": "User", "resource": {"userName": "p"}}], "planned": ["x"]});
    let (st, v) = s.api(M::POST, path, t, Some(planned)).await;
    assert_eq!(st, 400, "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("only with dry_run"), "{v}");
    // Bodies larger than other admin requests are fine, up to the import's own limit.
    let big = json!({"rows": [{"line": 9, "type": "User", "resource": {"userName": "big@acme.test", "title": "t".repeat(300_000)}}]});
    let (st, v) = s.api(M::POST, path, t, Some(big)).await;
    assert_eq!((st, &v["created"]), (200, &json!(1)), "{v}");
    let huge =
        json!({"rows": [{"line": 1, "type": "User", "resource": {"userName": "h", "title": "t".repeat(17 << 20)}}]});
    let (st, v) = s.api(M::POST, path, t, Some(huge)).await;
    assert_eq!(st, 413, "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("send smaller batches"), "{v}");
    let (st, v) = s.api(M::POST, path, t, Some(json!({"rows": [{"line": 1, "resource": {"userName": "n"}}]}))).await;
    assert_eq!(st, 200, "{v}");
    assert!(v["results"][0]["error"].as_str().unwrap().contains("neither the User nor the Group schema"), "{v}");
    let (st, v) = s.api(M::POST, "/api/v1/tokens", t, Some(json!({"name": "ops", "role": "operator"}))).await;
    assert_eq!(st, 201, "{v}");
    let ops = v["token"].as_str().unwrap().to_owned();
    let one_row = json!({"rows": [{"line": 1, "type": "User", "resource": {"userName": "op@acme.test"}}]});
    let (st, v) = s.api(M::POST, path, Some(&ops), Some(one_row)).await;
    assert_eq!(st, 403, "{v}");
    assert_eq!(total(&acme, "Users").await, 3, "ok1, ok2 and big");
    let denied = audit(&s, "directory.import").await;
    assert!(denied.iter().any(|r| r["outcome"] == "denied" && r["actor"] == "token:ops"), "{denied:?}");
    let out = s.cli(&["audit", "verify", "--offline"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}
