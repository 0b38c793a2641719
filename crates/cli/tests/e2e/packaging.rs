//! `fedkey config check` (the configuration validated as `serve` would, shown with secrets
//! redacted, nothing opened or created) and `fedkey health-probe` (the container health
//! check), on SQLite and PostgreSQL.

use super::*;

const SECRET_TOKEN: &str = "fka_config-check-secret-token";
const SECRET_METRICS: &str = "metrics-secret-7f3a";
const SECRET_WEBHOOK: &str = "webhook-secret-91c2";

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

/// The database URL a backend's config check is given: PostgreSQL with a password in it, so
/// the redaction is tested; the check must not connect.
fn database_url(backend: Backend, dir: &Path, pg: Option<&PgDb>) -> String {
    match (backend, pg) {
        (Backend::Postgres, Some(pg)) => {
            pg.url().replacen("postgres://postgres@", "postgres://postgres:pg-pass-4d1e@", 1)
        }
        _ => format!("sqlite://{}", dir.join("data/fedkey.db").display()),
    }
}

fn config_check(dir: &Path, config: &Path, db_url: &str, extra: &[&str]) -> std::process::Output {
    let mut args = vec!["config", "check", "--config", config.to_str().unwrap()];
    args.extend(extra);
    fedkey(&dir.join("data"), db_url, &args, &[("FEDKEY_METRICS_TOKEN", SECRET_METRICS)])
}

#[test]
fn config_check_accepts_a_valid_configuration_and_shows_it_redacted() {
    for backend in backends() {
        let dir = tempfile::tempdir().unwrap();
        let pg = (backend == Backend::Postgres).then(PgDb::new);
        let db_url = database_url(backend, dir.path(), pg.as_ref());
        let config = write(
            dir.path(),
            "fedkey.toml",
            &format!(
                "listen = \"127.0.0.1:9443\"\ntoken = \"{SECRET_TOKEN}\"\nalert_webhook_url = \"https://alerts.example.com/hook\"\nalert_webhook_secret = \"{SECRET_WEBHOOK}\"\nheader_read_timeout = \"5s\"\n"
            ),
        );
        let out = config_check(dir.path(), &config, &db_url, &[]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{backend:?}: {stdout}\n{stderr}");
        assert!(stdout.contains("listen = \"127.0.0.1:9443\""), "{stdout}");
        assert!(stdout.contains("header_read_timeout = \"5s\""), "{stdout}");
        assert!(stdout.contains("token = \"<redacted>\""), "{stdout}");
        assert!(stdout.contains("metrics_token = \"<redacted>\""), "{stdout}");
        assert!(stdout.contains("# configuration OK"), "{stdout}");
        for secret in [SECRET_TOKEN, SECRET_METRICS, SECRET_WEBHOOK, "pg-pass-4d1e"] {
            assert!(
                !stdout.contains(secret) && !stderr.contains(secret),
                "{backend:?} shows {secret}: {stdout}{stderr}"
            );
        }
        // Validated without opening anything: no data directory, no SQLite file, no tables.
        assert!(!dir.path().join("data").exists(), "{backend:?}: config check created the data directory");
        if let Some(pg) = &pg {
            let tables = psql_on(&pg.url(), "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'");
            assert_eq!(tables.trim(), "0", "config check wrote to PostgreSQL");
        }

        let json = config_check(dir.path(), &config, &db_url, &["--output", "json"]);
        assert_eq!(json.status.code(), Some(0));
        let v: Value = serde_json::from_slice(&json.stdout).unwrap();
        assert_eq!(v["valid"], true);
        assert_eq!(v["settings"]["alert_webhook_secret"], "<redacted>");
        if backend == Backend::Postgres {
            let shown = v["settings"]["database_url"].as_str().unwrap();
            assert!(shown.starts_with("postgres://postgres:<redacted>@"), "{shown}");
        }
    }
}

#[test]
fn config_check_names_every_problem_and_exits_2() {
    for backend in backends() {
        let dir = tempfile::tempdir().unwrap();
        let pg = (backend == Backend::Postgres).then(PgDb::new);
        let db_url = database_url(backend, dir.path(), pg.as_ref());
        let config = write(
            dir.path(),
            "bad.toml",
            &format!(
                "listen = \"0.0.0.0:8080\"\nheader_read_timeout = \"11s\"\ntrusted_proxies = [\"10.0.0.1/8\"]\nalert_webhook_url = \"https://alerts.example.com/hook\"\ntoken = \"{SECRET_TOKEN}\"\ndelivery_root = \"/nonexistent/fedkey-deliveries\"\n"
            ),
        );
        let out = config_check(dir.path(), &config, &db_url, &[]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{backend:?}: {stdout}\n{stderr}");
        assert!(stderr.contains("the configuration has 5 problem(s)"), "{stderr}");
        for named in [
            "plain HTTP on non-loopback address 0.0.0.0:8080",
            "header_read_timeout: \"11s\"",
            "trusted_proxies",
            "alert_webhook_url needs alert_webhook_secret",
            "delivery_root /nonexistent/fedkey-deliveries",
        ] {
            assert!(stderr.contains(named), "{backend:?}: {named:?} not named in: {stderr}");
        }
        assert!(!stdout.contains("# configuration OK"), "{stdout}");
        assert!(!stdout.contains(SECRET_TOKEN) && !stderr.contains(SECRET_TOKEN), "{stdout}{stderr}");

        // A configuration that cannot be read at all is also exit 2, with the key named.
        let typo = write(dir.path(), "typo.toml", "lisen = \"127.0.0.1:8080\"\n");
        let out = config_check(dir.path(), &typo, &db_url, &[]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains("unknown setting \"lisen\""), "{stderr}");
        assert!(!dir.path().join("data").exists());
    }
}

#[test]
fn health_probe_passes_against_a_live_node_and_fails_when_it_is_gone() {
    for backend in backends() {
        let mut server = Server::start(backend);
        let probe = server.cli(&["health-probe", "--url", &server.url.clone()]);
        assert_eq!(probe.status.code(), Some(0), "{backend:?}: {}", String::from_utf8_lossy(&probe.stderr));
        let url = server.url.clone();
        let _ = server.child.kill();
        let _ = server.child.wait();
        let probe = server.cli(&["health-probe", "--url", &url, "--timeout", "2s"]);
        let stderr = String::from_utf8_lossy(&probe.stderr);
        assert_eq!(probe.status.code(), Some(1), "{backend:?}: {stderr}");
        assert!(stderr.contains("unhealthy") && stderr.contains("/healthz"), "{stderr}");
    }
}

#[test]
fn config_check_connect_reaches_the_database_read_only() {
    for backend in backends() {
        let server = Server::start(backend);
        let config = write(server.dir.path(), "fedkey.toml", "");
        let out = config_check(server.dir.path(), &config, &server.db_url, &["--connect"]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(0), "{backend:?}: {stdout}{}", String::from_utf8_lossy(&out.stderr));
        let answer = match backend {
            Backend::Postgres => "# database: PostgreSQL ",
            Backend::Sqlite => "opens read only (",
        };
        assert!(stdout.contains(answer), "{backend:?}: {stdout}");
    }

    // A SQLite database that does not exist yet is reported, not created.
    let dir = tempfile::tempdir().unwrap();
    let config = write(dir.path(), "fedkey.toml", "");
    let db_url = database_url(Backend::Sqlite, dir.path(), None);
    let out = config_check(dir.path(), &config, &db_url, &["--connect"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains("does not exist yet"), "{stdout}");
    assert!(!dir.path().join("data").exists(), "config check --connect created the data directory");

    // An unreachable PostgreSQL is a problem (exit 2), named without its password.
    let unreachable = "postgres://fedkey:pg-pass-4d1e@127.0.0.1:1/fedkey";
    let out = config_check(dir.path(), &config, unreachable, &["--connect", "--output", "json"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("database postgres://fedkey:<redacted>@127.0.0.1:1/fedkey"), "{stderr}");
    assert!(!stderr.contains("pg-pass-4d1e") && !String::from_utf8_lossy(&out.stdout).contains("pg-pass-4d1e"));
}
