//! End-to-end tests of the CLI's fit: TLS with a private CA (`serve --dev-tls`,
//! `--ca-cert`), the exit-code table of docs/cli.md, output flags (`--wide`, `--field`,
//! `--quiet`, `NO_COLOR`), wrong server URLs, `directory show`/`delete`, revoke guards,
//! the bootstrap token after bind, and generated completions and man pages.

#[allow(unused_imports)]
use super::*;

use std::io::{Read, Write};
use std::net::TcpListener;

use reqwest::Method as M;

fn stderr_of(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn stdout_of(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Runs the CLI against `s` with extra environment (e.g. a different FEDKEY_URL).
fn cli_env(s: &Server, args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let mut all = vec![("FEDKEY_URL", s.url.as_str()), ("FEDKEY_TOKEN", s.token.as_str())];
    all.extend_from_slice(env);
    fedkey(&s.data_dir(), &s.db_url, args, &all)
}

/// A port nothing listens on (bound, then released).
fn closed_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// An HTTP server that is not fedkey: answers every request with an HTML page.
fn not_fedkey_server(status: &'static str) -> String {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    std::thread::spawn(move || {
        for mut c in l.incoming().map_while(Result::ok) {
            let mut buf = [0u8; 4096];
            let _ = c.read(&mut buf);
            let body = "<html><body>It works!</body></html>";
            let _ = write!(
                c,
                "HTTP/1.1 {status}\r\nContent-Type: text/html\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    url
}

// ---------------------------------------------------------------- TLS

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ca_cert_reaches_a_dev_tls_server() {
    for b in backends() {
        let s = Server::start_with(b, &["--dev-tls"], &[]);
        assert!(s.url.starts_with("https://127.0.0.1:"), "{b:?}: {}", s.url);
        let ca = s.data_dir().join("dev-tls/ca.pem");
        assert!(ca.exists());
        let ca = ca.to_str().unwrap();

        let out = cli_env(&s, &["directory", "create", "acme", "--ca-cert", ca], &[]);
        assert!(out.status.success(), "{b:?}: {}", stderr_of(&out));
        // The same through FEDKEY_CACERT, and by host name: the leaf names localhost too.
        let by_name = s.url.replace("127.0.0.1", "localhost");
        let out =
            cli_env(&s, &["directory", "list", "--output", "json"], &[("FEDKEY_CACERT", ca), ("FEDKEY_URL", &by_name)]);
        assert!(out.status.success(), "{b:?}: {}", stderr_of(&out));
        assert!(stdout_of(&out).contains("\"acme\""));

        // Without the CA the client refuses, and says how to fix it.
        let out = cli_env(&s, &["directory", "list"], &[]);
        assert_eq!(out.status.code(), Some(1), "{b:?}");
        assert!(stderr_of(&out).contains("--ca-cert"), "{b:?}: {}", stderr_of(&out));
        // Plain http to the TLS port.
        let plain = s.url.replace("https://", "http://");
        let out = cli_env(&s, &["directory", "list"], &[("FEDKEY_URL", &plain)]);
        assert_eq!(out.status.code(), Some(1), "{b:?}");
        assert!(stderr_of(&out).contains("use https://"), "{b:?}: {}", stderr_of(&out));
        // A CA file that holds no certificate is a configuration error.
        let bogus = s.dir.path().join("bogus.pem");
        std::fs::write(&bogus, "not a certificate\n").unwrap();
        let out = cli_env(&s, &["directory", "list", "--ca-cert", bogus.to_str().unwrap()], &[]);
        assert_eq!(out.status.code(), Some(2), "{b:?}: {}", stderr_of(&out));
        assert!(stderr_of(&out).contains("no PEM certificate"), "{}", stderr_of(&out));
    }
}

/// A self-signed certificate with CA:TRUE (what `openssl req -x509` makes) served as the
/// server's own: TLS clients refuse it as `CaUsedAsEndEntity`; the error says what to do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_self_signed_ca_as_server_certificate_gets_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("c.pem"), dir.path().join("k.pem"));
    let made = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "2"])
        .args(["-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"])
        .args(["-addext", "basicConstraints=critical,CA:TRUE"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output();
    let Ok(made) = made.map_err(|e| eprintln!("*** SKIPPED: openssl is not available: {e} ***")) else { return };
    assert!(made.status.success(), "{}", stderr_of(&made));
    let s = Server::start_with(
        Backend::Sqlite,
        &["--tls-cert", cert.to_str().unwrap(), "--tls-key", key.to_str().unwrap()],
        &[],
    );
    let out = cli_env(&s, &["directory", "list", "--ca-cert", cert.to_str().unwrap()], &[]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr_of(&out);
    assert!(err.contains("is a CA certificate") && err.contains("--dev-tls"), "{err}");
}

// ---------------------------------------------------------------- exit codes

/// The rows of the `## Exit codes` table in docs/cli.md: (code, meaning).
fn documented_exit_codes() -> Vec<(i32, String)> {
    let doc = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/cli.md")).unwrap();
    let section = doc.split("\n## Exit codes\n").nth(1).expect("docs/cli.md has an `## Exit codes` section");
    section
        .lines()
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'))
        .filter_map(|l| {
            let cells: Vec<&str> = l.trim_matches('|').split('|').map(str::trim).collect();
            Some((cells.first()?.parse().ok()?, cells.get(1)?.to_string()))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exit_codes_match_the_table_in_docs_cli_md() {
    let rows = documented_exit_codes();
    let codes: Vec<i32> = rows.iter().map(|r| r.0).collect();
    assert_eq!(codes, vec![0, 1, 2, 3], "a case per row below: update the test with the table {rows:?}");
    for b in backends() {
        let s = Server::start(b);
        let unreachable = format!("http://127.0.0.1:{}", closed_port());
        type Case<'a> = (&'a str, Vec<&'a str>, Vec<(&'a str, &'a str)>);
        let cases: Vec<(i32, Vec<Case>)> = vec![
            (0, vec![("a listing", vec!["directory", "create", "acme"], vec![])]),
            (
                1,
                vec![
                    ("an API error", vec!["trust", "show", "acme/nope"], vec![]),
                    ("an unreachable server", vec!["directory", "list"], vec![("FEDKEY_URL", &unreachable)]),
                ],
            ),
            (
                2,
                vec![
                    ("an unknown flag", vec!["directory", "list", "--no-such-flag"], vec![]),
                    ("a missing argument", vec!["trust", "show"], vec![]),
                    ("a bad setting", vec!["directory", "list"], vec![("FEDKEY_REQUEST_TIMEOUT", "banana")]),
                    ("a URL without scheme", vec!["directory", "list"], vec![("FEDKEY_URL", "localhost:8080")]),
                    ("no token", vec!["directory", "list"], vec![("FEDKEY_TOKEN", "")]),
                    (
                        "a missing config file",
                        vec!["directory", "list", "--config", "/nonexistent/fedkey.toml"],
                        vec![],
                    ),
                    ("an unknown --field", vec!["directory", "list", "--field", "nope"], vec![]),
                    ("serve on a bad listen address", vec!["serve", "--listen", "not an address"], vec![]),
                ],
            ),
            (3, vec![("a failed audit verification", vec!["audit", "verify", "--offline"], vec![])]),
        ];
        for (code, cases) in cases {
            if code == 3 {
                s.cli_json(&["trust", "create", "--directory", "acme", "--name", "idp", "--direction", "inbound"]);
                tamper_audit(b, &s);
            }
            for (what, args, env) in cases {
                let out = cli_env(&s, &args, &env);
                let err = stderr_of(&out);
                assert_eq!(out.status.code(), Some(code), "{b:?}: {what} (`fedkey {}`): {err}", args.join(" "));
                assert!(!err.contains("panicked"), "{what}: {err}");
                if code != 0 {
                    assert!(
                        err.contains("error") || err.contains("FAILED"),
                        "{what}: an error says what failed: {err}"
                    );
                }
            }
        }
    }
}

// ---------------------------------------------------------------- wrong server URLs

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_server_url_says_what_to_fix() {
    for b in backends() {
        let s = Server::start(b);
        let html_ok = not_fedkey_server("200 OK");
        let html_404 = not_fedkey_server("404 Not Found");
        let unreachable = format!("http://127.0.0.1:{}", closed_port());
        let tls_to_plain = s.url.replace("http://", "https://");
        let with_api = format!("{}/api/v1", s.url);
        let cases: Vec<(&str, i32, &[&str])> = vec![
            ("localhost:8080", 2, &["has no scheme", "http://localhost:8080"]),
            ("ftp://fedkey.example.com", 2, &["uses ftp://", "https://fedkey.example.com"]),
            (&with_api, 2, &["without it"]),
            (&unreachable, 1, &["nothing listens there", "FEDKEY_URL"]),
            (&html_ok, 1, &["not fedkey's admin API", "FEDKEY_URL"]),
            (&html_404, 1, &["HTTP 404", "not fedkey's admin API"]),
            (&tls_to_plain, 1, &["does not speak TLS"]),
        ];
        for (url, code, needles) in cases {
            let out = cli_env(&s, &["directory", "list"], &[("FEDKEY_URL", url)]);
            let err = stderr_of(&out);
            assert_eq!(out.status.code(), Some(code), "{b:?} {url}: {err}");
            for n in needles {
                assert!(err.contains(n), "{b:?} {url}: {n:?} missing from: {err}");
            }
        }
    }
}

// ---------------------------------------------------------------- output flags

/// Runs `fedkey ARGS` under a pseudo-terminal (util-linux `script`), so that colour
/// detection sees a terminal. None when `script` is not available.
fn on_a_terminal(s: &Server, args: &[&str], env: &[(&str, &str)]) -> Option<String> {
    let mut line = format!("{BIN} --data-dir {} --database-url '{}'", s.data_dir().display(), s.db_url);
    for a in args {
        line.push_str(&format!(" '{a}'"));
    }
    let mut cmd = Command::new("script");
    cmd.args(["-qec", &line, "/dev/null"])
        .env("FEDKEY_URL", &s.url)
        .env("FEDKEY_TOKEN", &s.token)
        .env("COLUMNS", "80")
        .env_remove("NO_COLOR");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().ok()?;
    assert!(out.status.success(), "{}", stdout_of(&out));
    Some(stdout_of(&out))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tables_fit_80_columns_and_flags_shape_the_output() {
    for b in backends() {
        let s = Server::start(b);
        s.cli_json(&["directory", "create", "acme"]);
        let scopes = ["users:read", "users:write", "groups:read", "groups:write", "bulk"];
        let mut args = vec!["trust", "create", "--directory", "acme", "--name", "entra", "--direction", "inbound"];
        for sc in &scopes {
            args.extend(["--scope", sc]);
        }
        // `trust create` prints each field once, the key first.
        let created = s.cli(&args);
        assert!(created.status.success(), "{}", stderr_of(&created));
        let text = stdout_of(&created);
        for field in ["scopes:", "created_at:", "version:"] {
            assert_eq!(text.lines().filter(|l| l.starts_with(field)).count(), 1, "{b:?}: {field} once in:\n{text}");
        }
        // --quiet: the one-time key alone, bare; --field key the same.
        let quiet =
            s.cli(&["trust", "create", "--directory", "acme", "--name", "q", "--direction", "inbound", "--quiet"]);
        assert!(quiet.status.success());
        let q = stdout_of(&quiet);
        assert!(q.starts_with("fkp_") && q.lines().count() == 1, "{b:?}: {q:?}");
        assert!(stderr_of(&quiet).is_empty(), "{:?}", stderr_of(&quiet));
        let quiet = s.cli(&["directory", "create", "quietdir", "--quiet"]);
        assert!(quiet.status.success() && quiet.stdout.is_empty(), "{quiet:?}");
        for _ in 0..2 {
            s.cli_json(&["key", "rotate", "acme/entra", "--overlap", "1h"]);
        }

        // An 80-column table by default; every column with --wide.
        let env = [("COLUMNS", "80")];
        let narrow = cli_env(&s, &["key", "list", "acme/entra"], &env);
        let narrow = stdout_of(&narrow);
        for line in narrow.lines() {
            assert!(line.chars().count() <= 80, "{b:?}: {} columns: {line}\n{narrow}", line.chars().count());
        }
        assert!(narrow.contains("LAST_USED_AT") && !narrow.contains("ACTIVATED_AT"), "{narrow}");
        let wide = stdout_of(&cli_env(&s, &["key", "list", "acme/entra", "--wide"], &env));
        assert!(wide.contains("ACTIVATED_AT") && wide.contains("CREATED_AT"), "{wide}");
        assert!(wide.lines().any(|l| l.chars().count() > 80), "{wide}");

        // --field: one value per row.
        let versions = cli_env(&s, &["key", "list", "acme/entra", "--field", "version"], &env);
        assert_eq!(stdout_of(&versions), "1\n2\n3\n", "{}", stderr_of(&versions));
        let state = cli_env(&s, &["trust", "show", "acme/entra", "--field", "status"], &[]);
        assert!(stdout_of(&state).starts_with("active\n"), "{}", stdout_of(&state));

        // No colour in a pipe; colour on a terminal unless NO_COLOR.
        assert!(!narrow.contains('\u{1b}') && !wide.contains('\u{1b}'));
        let forced = stdout_of(&cli_env(&s, &["key", "list", "acme/entra", "--color", "always"], &[]));
        assert!(forced.contains("\u{1b}["), "{forced}");
        if let Some(tty) = on_a_terminal(&s, &["key", "list", "acme/entra"], &[]) {
            assert!(tty.contains("\u{1b}["), "{b:?}: a terminal gets colour: {tty}");
            let plain = on_a_terminal(&s, &["key", "list", "acme/entra"], &[("NO_COLOR", "1")]).unwrap();
            assert!(!plain.contains("\u{1b}["), "{b:?}: NO_COLOR: {plain}");
            assert!(plain.contains("current"));
        } else {
            eprintln!("*** SKIPPED the terminal half: `script` is not available ***");
        }
    }
}

// ---------------------------------------------------------------- directories

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn directory_show_and_delete_refuses_while_not_empty() {
    for b in backends() {
        let s = Server::start(b);
        let t = Some(s.token.as_str());
        s.cli_json(&["directory", "create", "acme"]);
        s.cli_json(&["directory", "create", "empty"]);
        let created =
            s.cli_json(&["trust", "create", "--directory", "acme", "--name", "idp", "--direction", "inbound"]);
        let key = created["key"].as_str().unwrap().to_owned();
        let user = json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "ann"});
        let (st, v) = s.api(M::POST, "/scim/v2/acme/Users", Some(&key), Some(user)).await;
        assert_eq!(st, 201, "{v}");

        let shown = s.cli_json(&["directory", "show", "acme"]);
        assert_eq!(
            (shown["name"].as_str(), shown["trusts"].as_i64(), shown["users"].as_i64(), shown["groups"].as_i64()),
            (Some("acme"), Some(1), Some(1), Some(0)),
            "{b:?}: {shown}"
        );

        // Not empty: refused with its own code, and nothing is deleted.
        let out = s.cli(&["directory", "delete", "acme"]);
        assert_eq!(out.status.code(), Some(1));
        assert!(stderr_of(&out).contains("directory_not_empty, HTTP 409"), "{b:?}: {}", stderr_of(&out));
        assert!(stderr_of(&out).contains("--force"));
        assert_eq!(s.scim_status("acme", &key).await, 200);
        assert_eq!(s.cli_json(&["directory", "show", "acme"])["users"], 1);

        // An empty one goes without --force; a non-empty one with it.
        let out = s.cli(&["directory", "delete", "empty"]);
        assert!(out.status.success(), "{}", stderr_of(&out));
        let gone = s.cli_json(&["directory", "delete", "acme", "--force"]);
        assert_eq!((gone["deleted"]["trusts"].as_i64(), gone["deleted"]["users"].as_i64()), (Some(1), Some(1)));
        assert_eq!(s.scim_status("acme", &key).await, 401, "{b:?}: the deleted trust's key no longer works");
        let out = s.cli(&["directory", "show", "acme"]);
        assert_eq!(out.status.code(), Some(1));
        assert!(stderr_of(&out).contains("not_found, HTTP 404"), "{}", stderr_of(&out));
        // The name is free again, and the new directory starts empty.
        s.cli_json(&["directory", "create", "acme"]);
        assert_eq!(s.cli_json(&["directory", "show", "acme"])["users"], 0);

        // Audited: the refusal and both deletions.
        let (st, page) = s.api(M::GET, "/api/v1/audit?action=directory.delete&limit=100", t, None).await;
        assert_eq!(st, 200);
        let recs = page["records"].as_array().unwrap();
        let outcomes: Vec<(&str, &str)> =
            recs.iter().map(|r| (r["directory"].as_str().unwrap_or(""), r["outcome"].as_str().unwrap_or(""))).collect();
        assert_eq!(outcomes, vec![("acme", "failure"), ("empty", "success"), ("acme", "success")], "{b:?}: {page}");
        let (st, _) = s.api(M::DELETE, "/api/v1/directories/acme?force=banana", t, None).await;
        assert_eq!(st, 400);
        // An auditor may look but not delete.
        let aud = s.cli_json(&["token", "create", "aud", "--role", "auditor"]);
        let aud = aud["token"].as_str().unwrap();
        let (st, _) = s.api(M::DELETE, "/api/v1/directories/acme", Some(aud), None).await;
        assert_eq!(st, 403);
    }
}

// ---------------------------------------------------------------- revoke

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoking_the_last_key_needs_force_and_an_expired_one_is_a_no_op() {
    for b in backends() {
        let s = Server::start(b);
        let t = Some(s.token.as_str());
        s.cli_json(&["directory", "create", "acme"]);
        let created =
            s.cli_json(&["trust", "create", "--directory", "acme", "--name", "idp", "--direction", "inbound"]);
        let k1 = created["key"].as_str().unwrap().to_owned();
        let revoke = |v: i64| format!("/api/v1/directories/acme/trusts/idp/keys/{v}/revoke");

        // The only key: refused (API and CLI), and it keeps working.
        let (st, v) = s.api(M::POST, &revoke(1), t, None).await;
        assert_eq!((st, v["error"]["code"].as_str()), (409, Some("last_usable_key")), "{b:?}: {v}");
        assert_eq!(s.scim_status("acme", &k1).await, 200);

        // With a successor, v1 may go; v2 is then the last.
        let k2 = s.cli_json(&["key", "rotate", "acme/idp", "--overlap", "10m"])["key"].as_str().unwrap().to_owned();
        let (st, v) = s.api(M::POST, &revoke(1), t, None).await;
        assert_eq!((st, v["key_version"]["state"].as_str()), (200, Some("revoked")), "{v}");
        assert_eq!(s.scim_status("acme", &k1).await, 401);

        // v2 expires after v3's overlap: revoking it changes nothing and succeeds.
        let k3 = s.cli_json(&["key", "rotate", "acme/idp", "--overlap", "1m"])["key"].as_str().unwrap().to_owned();
        s.advance("2m").await;
        let out = s.cli(&["key", "revoke", "acme/idp", "--version", "2"]);
        assert!(out.status.success(), "{b:?}: {}", stderr_of(&out));
        assert!(stderr_of(&out).contains("already expired; nothing changed"), "{}", stderr_of(&out));
        let (st, v) = s.api(M::POST, &revoke(2), t, None).await;
        assert_eq!(
            (st, v["unchanged"].as_bool(), v["key_version"]["state"].as_str()),
            (200, Some(true), Some("expired"))
        );
        let keys = s.cli_json(&["key", "list", "acme/idp"]);
        let v2 = keys["keys"].as_array().unwrap().iter().find(|k| k["version"] == 2).unwrap().clone();
        assert_eq!((v2["state"].as_str(), &v2["revoked_at"]), (Some("expired"), &Value::Null), "{keys}");
        assert_eq!(s.scim_status("acme", &k2).await, 401);

        // v3, the last: refused without --force, revoked with it.
        let out = s.cli(&["key", "revoke", "acme/idp", "--version", "3"]);
        assert_eq!(out.status.code(), Some(1));
        assert!(stderr_of(&out).contains("last usable key") && stderr_of(&out).contains("--force"));
        assert_eq!(s.scim_status("acme", &k3).await, 200);
        let out = s.cli_json(&["key", "revoke", "acme/idp", "--version", "3", "--force"]);
        assert_eq!(out["key_version"]["state"], "revoked");
        assert_eq!(s.scim_status("acme", &k3).await, 401);

        // Audit: the refusals as failures, the no-op and the forced revoke as successes.
        let (_, page) = s.api(M::GET, "/api/v1/audit?action=key.revoke&limit=100", t, None).await;
        let recs = page["records"].as_array().unwrap();
        let failures = recs.iter().filter(|r| r["outcome"] == "failure").count();
        assert_eq!(failures, 2, "{b:?}: {page}");
        assert!(recs.iter().any(|r| r["key_version"] == 2 && r["details"]["unchanged"] == "expired"), "{page}");
        assert!(recs.iter().any(|r| r["key_version"] == 3 && r["details"]["force"] == true), "{page}");
    }
}

// ---------------------------------------------------------------- bootstrap token

/// Starts `serve` on a fresh data directory (no `init`); returns the child, the lines
/// printed on stdout up to `fedkey listening on`, and the stderr collector.
fn serve_fresh(data: &Path, db_url: &str, listen: &str) -> (Child, Vec<String>, Arc<Mutex<String>>) {
    let mut child = Command::new(BIN)
        .args(["serve", "--listen", listen, "--log-format", "json", "--data-dir"])
        .arg(data)
        .args(["--database-url", db_url])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = collect_stderr(&mut child);
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut seen = Vec::new();
    for l in lines.by_ref() {
        let l = l.unwrap();
        let done = l.starts_with("fedkey listening on ");
        seen.push(l);
        if done {
            break;
        }
    }
    std::thread::spawn(move || for _ in lines {});
    (child, seen, stderr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bootstrap_token_survives_a_busy_port_and_never_reaches_the_logs() {
    for b in backends() {
        let dir = tempfile::tempdir().unwrap();
        let pg = (b == Backend::Postgres).then(PgDb::new);
        let db_url = pg
            .as_ref()
            .map(PgDb::url)
            .unwrap_or_else(|| format!("sqlite://{}", dir.path().join("data/fedkey.db").display()));
        let data = dir.path().join("data");

        // A busy port: the start fails before any token exists.
        let busy = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = busy.local_addr().unwrap().port().to_string();
        let out = Command::new(BIN)
            .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--log-format", "json", "--data-dir"])
            .arg(&data)
            .args(["--database-url", &db_url])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{b:?}: {}", stderr_of(&out));
        assert!(stderr_of(&out).contains("cannot listen on"), "{}", stderr_of(&out));
        assert!(!stdout_of(&out).contains("fka_") && !stderr_of(&out).contains("fka_"), "{b:?}: {out:?}");
        drop(busy);

        // The next start prints it, on stdout, after binding; the JSON logs never hold it.
        let (mut child, stdout, stderr) = serve_fresh(&data, &db_url, "127.0.0.1:0");
        let url = stdout.last().unwrap().strip_prefix("fedkey listening on ").unwrap().to_owned();
        let token = stdout
            .iter()
            .find_map(|l| l.strip_prefix("admin_token: "))
            .unwrap_or_else(|| panic!("{b:?}: no token in {stdout:?}"))
            .to_owned();
        assert!(token.starts_with("fka_"));
        let out = fedkey(&data, &db_url, &["directory", "list"], &[("FEDKEY_URL", &url), ("FEDKEY_TOKEN", &token)]);
        assert!(out.status.success(), "{b:?}: the printed token works: {}", stderr_of(&out));
        let _ = child.kill();
        let _ = child.wait();
        let logs = stderr.lock().unwrap().clone();
        assert!(logs.contains("bootstrap admin token was created"), "{b:?}: {logs}");
        assert!(!logs.contains(&token) && !logs.contains("fka_") && !logs.contains("Bootstrap admin token"), "{logs}");
        for line in logs.lines() {
            assert!(serde_json::from_str::<Value>(line).is_ok(), "{b:?}: stderr is JSON lines only: {line}");
        }

        // A later start creates none.
        let (mut child, stdout, _) = serve_fresh(&data, &db_url, "127.0.0.1:0");
        let _ = child.kill();
        let _ = child.wait();
        assert!(!stdout.iter().any(|l| l.contains("fka_")), "{stdout:?}");
        drop(pg);
    }
}

// ---------------------------------------------------------------- generated docs

#[test]
fn completions_and_man_pages_are_generated_from_the_commands() {
    let run = |args: &[&str]| {
        let out = Command::new(BIN).args(args).env("FEDKEY_REQUEST_TIMEOUT", "not read").output().unwrap();
        assert!(out.status.success(), "{args:?}: {}", stderr_of(&out));
        stdout_of(&out)
    };
    let bash = run(&["completions", "bash"]);
    assert!(bash.contains("_fedkey()") && bash.contains("complete -F _fedkey") && bash.contains("--ca-cert"));
    assert!(bash.contains("directory") && bash.contains("delete") && bash.contains("--force"), "{bash}");
    let zsh = run(&["completions", "zsh"]);
    assert!(zsh.starts_with("#compdef fedkey") && zsh.contains("'--wide["), "{zsh}");
    let fish = run(&["completions", "fish"]);
    assert!(fish.contains("complete -c fedkey") && fish.contains("-l field"), "{fish}");

    let page = run(&["man"]);
    assert!(page.contains(".TH fedkey 1") && page.contains("directory"), "{page}");
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(BIN).args(["man", "--dir"]).arg(dir.path().join("man1")).output().unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    for p in ["fedkey.1", "fedkey-serve.1", "fedkey-directory-delete.1", "fedkey-key-revoke.1"] {
        let text = std::fs::read_to_string(dir.path().join("man1").join(p)).unwrap_or_else(|e| panic!("{p}: {e}"));
        assert!(text.contains(".TH"), "{p}");
    }
    let revoke = std::fs::read_to_string(dir.path().join("man1/fedkey-key-revoke.1")).unwrap();
    assert!(revoke.contains("force"), "{revoke}");
}
