//! `fedkey config check` (validate the effective configuration the way `serve` would, and
//! show it with secrets redacted) and `fedkey health-probe` (a container health check that
//! needs no curl in the image).

use std::net::SocketAddr;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use fedkey_egress::{Egress, EgressConfig, UrlRules};
use serde_json::{Value, json};

use crate::config::Settings;
use crate::output::{self, Output};

#[derive(clap::Subcommand)]
pub enum ConfigCmd {
    /// Validate the configuration (file, FEDKEY_* environment, flags) as `serve` would,
    /// without opening the database, and print the effective settings with secrets
    /// redacted. Exit 0: valid, 2: invalid (each problem on its own line).
    Check {
        /// Also connect to the database, read only (no migration, no write; a SQLite file
        /// that does not exist yet is not created).
        #[arg(long)]
        connect: bool,
    },
}

#[derive(clap::Args)]
pub struct ProbeArgs {
    /// Base URL of the node to probe; default: derived from `listen` (a wildcard address
    /// becomes loopback) and `tls_cert`.
    #[arg(long)]
    url: Option<String>,
    /// How long to wait for the answer.
    #[arg(long, default_value = "5s")]
    timeout: String,
}

/// Settings whose value is a secret: shown only as set or not.
const SECRET_KEYS: [&str; 4] = ["token", "metrics_token", "alert_webhook_secret", "openbao_token"];
const REDACTED: &str = "<redacted>";

pub async fn config(s: &Settings, file: Option<&Path>, out: Output, cmd: ConfigCmd) -> ExitCode {
    let ConfigCmd::Check { connect } = cmd;
    let mut problems = problems(s).await;
    let database = match connect {
        true => match database(s).await {
            Ok(answer) => Some(answer),
            Err(e) => {
                problems.push(format!("{e:#}"));
                None
            }
        },
        false => None,
    };
    let effective = redacted(s);
    match out {
        Output::Json => output::json(&json!({
            "valid": problems.is_empty(),
            "config_file": file,
            "problems": problems,
            "database": database,
            "settings": effective,
        })),
        Output::Table => {
            match file {
                Some(f) => outln!("# configuration file: {}", f.display()),
                None => outln!("# no configuration file (defaults, FEDKEY_* environment, flags)"),
            }
            print_toml(&effective, "");
            if let Some(d) = &database {
                outln!("# database: {d}");
            }
        }
    }
    if problems.is_empty() {
        if out == Output::Table {
            outln!("# configuration OK");
        }
        return ExitCode::SUCCESS;
    }
    eprintln!("error: the configuration has {} problem(s):", problems.len());
    for p in &problems {
        eprintln!("  - {p}");
    }
    ExitCode::from(2)
}

/// Everything `serve` checks before it opens the database, as readable messages.
pub async fn problems(s: &Settings) -> Vec<String> {
    let mut found = Vec::new();
    let mut check = |r: anyhow::Result<()>| {
        if let Err(e) = r {
            found.push(format!("{e:#}"));
        }
    };
    check(listen_and_tls(s).await);
    check(s.conn_limits().map(drop));
    check(s.engine_interval().map(drop));
    check(s.source_limits().map(drop));
    check(s.trusted_proxies().map(drop));
    check(s.failed_auth_policy().map(drop));
    check(s.auth_cache_ttl().map(drop));
    check(s.request_timeout().map(drop));
    check(s.db_options().map(drop));
    check(database_url(s));
    check(alert_webhook(s));
    check(notify(s));
    check(leak_keys(s));
    check(delivery_root(s));
    if s.transit() {
        check(s.transit_settings().map(drop));
    }
    if s.unsafe_test_clock && !fedkey_server::TEST_HOOKS {
        check(Err(anyhow::anyhow!(
            "unsafe_test_clock is refused: this fedkey is built without test hooks (cargo feature test-hooks)"
        )));
    }
    found
}

async fn listen_and_tls(s: &Settings) -> anyhow::Result<()> {
    let addr: SocketAddr = match tokio::net::lookup_host(&s.listen).await.ok().and_then(|mut a| a.next()) {
        Some(a) => a,
        None => anyhow::bail!("listen: {:?} is not an address like 127.0.0.1:8080 or localhost:8080", s.listen),
    };
    match (&s.tls_cert, &s.tls_key) {
        (Some(cert), Some(key)) => {
            let files = fedkey_server::TlsFiles { cert: cert.clone(), key: key.clone() };
            fedkey_server::serve::tls_acceptor(&files).map(drop)
        }
        (None, None) if !fedkey_server::serve::plain_http_allowed(&addr) && !s.insecure_http => anyhow::bail!(
            "listen: plain HTTP on non-loopback address {addr} is refused (keys travel in headers): set tls_cert and tls_key, or insecure_http = true behind a TLS-terminating proxy"
        ),
        (None, None) => Ok(()),
        _ => anyhow::bail!("tls_cert and tls_key: TLS needs both"),
    }
}

fn database_url(s: &Settings) -> anyhow::Result<()> {
    let url = s.database_url();
    let known = ["sqlite:", "postgres://", "postgresql://"];
    if known.iter().any(|p| url.starts_with(p)) {
        return Ok(());
    }
    anyhow::bail!("database_url: {:?} is neither sqlite:PATH nor postgres://…", redact_url(&url))
}

/// The `[notify]` settings and channels, checked as `serve` checks them (the signed
/// webhook is [`alert_webhook`]'s).
fn notify(s: &Settings) -> anyhow::Result<()> {
    s.notify.policy()?;
    let without_webhook = Settings { alert_webhook_url: None, ..s.clone() };
    crate::notify::channels(&without_webhook, &s.egress()?).map(drop)
}

fn alert_webhook(s: &Settings) -> anyhow::Result<()> {
    let Some(u) = &s.alert_webhook_url else { return Ok(()) };
    s.egress()?.check_url(u, UrlRules::HTTPS_ONLY).map_err(|e| anyhow::anyhow!("alert_webhook_url: {e}"))?;
    if s.alert_webhook_secret.is_none() {
        anyhow::bail!("alert_webhook_url needs alert_webhook_secret (or alert_webhook_secret_file) to sign alerts");
    }
    Ok(())
}

fn leak_keys(s: &Settings) -> anyhow::Result<()> {
    let Some(path) = &s.leak_github_keys_file else { return Ok(()) };
    let text =
        std::fs::read_to_string(path).map_err(|e| anyhow::anyhow!("leak_github_keys_file {}: {e}", path.display()))?;
    fedkey_server::leaks::LeakIntake::with_github_keys(&text)
        .map(drop)
        .map_err(|e| anyhow::anyhow!("leak_github_keys_file {}: {e}", path.display()))
}

/// A configured delivery root must exist; the default one is created by `serve`.
fn delivery_root(s: &Settings) -> anyhow::Result<()> {
    let dir = s.delivery_root();
    if s.delivery_root.is_none() && !dir.exists() {
        return Ok(());
    }
    fedkey_connectors::DeliveryRoot::new(&dir, &s.secret_files()).map(drop).map_err(anyhow::Error::msg)
}

/// `--connect`: the database answers. Read only: no migration, no write, and a SQLite file
/// that does not exist yet is reported, not created.
async fn database(s: &Settings) -> anyhow::Result<String> {
    use sqlx::Connection;
    let url = s.database_url();
    let timeout = s.db_options()?.connect_timeout.unwrap_or(Duration::from_secs(10));
    let within = |r: Result<Result<String, sqlx::Error>, tokio::time::error::Elapsed>| match r {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(anyhow::anyhow!("database {}: {e}", redact_url(&url))),
        Err(_) => Err(anyhow::anyhow!("database {}: no answer within {timeout:?}", redact_url(&url))),
    };
    if url.starts_with("postgres") {
        let version = tokio::time::timeout(timeout, async {
            let mut c = sqlx::postgres::PgConnection::connect(&url).await?;
            let v: String = sqlx::query_scalar("SHOW server_version").fetch_one(&mut c).await?;
            c.close().await?;
            Ok(v)
        })
        .await;
        return within(version).map(|v| format!("PostgreSQL {v} answers"));
    }
    let Some(path) = s.sqlite_files().into_iter().next() else {
        anyhow::bail!("database_url: {:?} is neither sqlite:PATH nor postgres://…", redact_url(&url));
    };
    if !path.exists() {
        return Ok(format!("SQLite database {} does not exist yet; serve creates it", path.display()));
    }
    let options = sqlx::sqlite::SqliteConnectOptions::new().filename(&path).read_only(true);
    let objects = tokio::time::timeout(timeout, async {
        let mut c = sqlx::sqlite::SqliteConnection::connect_with(&options).await?;
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM sqlite_master").fetch_one(&mut c).await?;
        c.close().await?;
        Ok(n.to_string())
    })
    .await;
    within(objects).map(|n| format!("SQLite database {} opens read only ({n} schema objects)", path.display()))
}

/// The effective settings as JSON, secrets replaced and a database password hidden.
pub fn redacted(s: &Settings) -> Value {
    let mut v = serde_json::to_value(s).unwrap_or(Value::Null);
    if let Value::Object(m) = &mut v {
        for k in SECRET_KEYS {
            if m.get(k).is_some_and(|x| !x.is_null()) {
                m.insert(k.to_owned(), json!(REDACTED));
            }
        }
        // A chat webhook URL carries its token.
        if let Some(Value::Object(n)) = m.get_mut("notify")
            && n.get("chat_webhook_url").is_some_and(|x| !x.is_null())
        {
            n.insert("chat_webhook_url".to_owned(), json!(REDACTED));
        }
        if let Some(Value::String(u)) = m.get("database_url") {
            let shown = redact_url(u);
            m.insert("database_url".to_owned(), json!(shown));
        }
    }
    v
}

/// `scheme://user:password@host/…?password=…` with the password (in either place) hidden.
fn redact_url(url: &str) -> String {
    let mut shown = url.to_owned();
    if let (Some(a), Some(b)) = (url.find("://"), url.rfind('@'))
        && b > a
    {
        let userinfo = &url[a + 3..b];
        let user = userinfo.split(':').next().unwrap_or("");
        let hidden = if userinfo.contains(':') { format!("{user}:{REDACTED}") } else { user.to_owned() };
        shown = format!("{}://{hidden}@{}", &url[..a], &url[b + 1..]);
    }
    if let Some(q) = shown.find('?') {
        let params: Vec<String> = shown[q + 1..]
            .split('&')
            .map(|p| match p.split_once('=') {
                Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}={REDACTED}"),
                _ => p.to_owned(),
            })
            .collect();
        shown = format!("{}?{}", &shown[..q], params.join("&"));
    }
    shown
}

/// Prints settings as TOML (dotted keys for tables); unset ones as comments.
fn print_toml(v: &Value, prefix: &str) {
    let Value::Object(m) = v else { return };
    for (k, x) in m {
        match x {
            Value::Null => outln!("# {prefix}{k} = (not set)"),
            Value::Object(_) => print_toml(x, &format!("{prefix}{k}.")),
            other => outln!("{prefix}{k} = {other}"),
        }
    }
}

/// `GET /healthz` on this node; exit 0 when it answers 200, 1 otherwise.
pub async fn probe(s: &Settings, args: ProbeArgs) -> anyhow::Result<ExitCode> {
    let timeout = humantime::parse_duration(&args.timeout)
        .ok()
        .filter(|d| !d.is_zero() && *d <= Duration::from_secs(300))
        .ok_or_else(|| anyhow::anyhow!("--timeout: {:?} is not a duration between 1ms and 5m", args.timeout))?;
    let base = match args.url {
        Some(u) => u,
        None => local_url(s)?,
    };
    let url = reqwest::Url::parse(&format!("{}/healthz", base.trim_end_matches('/')))
        .map_err(|e| anyhow::anyhow!("--url {base:?} is not a URL: {e}"))?;
    // The operator's own node: any address, plain http allowed.
    let egress = Egress::new(EgressConfig::operator())?;
    let req = egress.request(reqwest::Method::GET, &url, UrlRules::LAB_HTTP)?;
    match egress.send(req, timeout).await {
        Ok(r) if r.status().is_success() => Ok(ExitCode::SUCCESS),
        Ok(r) => {
            eprintln!("unhealthy: {url} answered HTTP {}", r.status().as_u16());
            Ok(ExitCode::FAILURE)
        }
        Err(e) => {
            eprintln!("unhealthy: {url}: {e}");
            Ok(ExitCode::FAILURE)
        }
    }
}

/// The URL this node serves on, seen from the node itself.
fn local_url(s: &Settings) -> anyhow::Result<String> {
    let addr: SocketAddr = s.listen.parse().or_else(|_| {
        // HOST:PORT such as localhost:8080: keep the host, it resolves locally.
        s.listen
            .rsplit_once(':')
            .and_then(|(_, p)| p.parse::<u16>().ok())
            .map(|p| SocketAddr::from(([127, 0, 0, 1], p)))
            .ok_or_else(|| anyhow::anyhow!("listen: {:?} is not an address like 127.0.0.1:8080", s.listen))
    })?;
    let ip = match addr.ip() {
        ip if ip.is_unspecified() && ip.is_ipv4() => std::net::IpAddr::from([127, 0, 0, 1]),
        ip if ip.is_unspecified() => std::net::IpAddr::from(std::net::Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    let scheme = if s.tls_cert.is_some() { "https" } else { "http" };
    Ok(format!("{scheme}://{}", SocketAddr::new(ip, addr.port())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_passwords_are_hidden_in_both_places() {
        assert_eq!(
            redact_url("postgres://fedkey:hunter2@db:5432/fedkey"),
            "postgres://fedkey:<redacted>@db:5432/fedkey"
        );
        assert_eq!(
            redact_url("postgres://db/fedkey?user=a&password=hunter2&sslmode=require"),
            "postgres://db/fedkey?user=a&password=<redacted>&sslmode=require"
        );
        assert_eq!(redact_url("sqlite://./fedkey-data/fedkey.db"), "sqlite://./fedkey-data/fedkey.db");
    }

    #[test]
    fn secrets_are_redacted_and_unset_ones_stay_null() {
        let s = Settings {
            token: Some("fka_secret".into()),
            metrics_token: Some("m3tr1cs".into()),
            database_url: Some("postgres://u:pw@h/d".into()),
            ..Settings::default()
        };
        let v = redacted(&s);
        let text = v.to_string();
        for secret in ["fka_secret", "m3tr1cs", ":pw@"] {
            assert!(!text.contains(secret), "{text}");
        }
        assert_eq!(v["token"], REDACTED);
        assert!(v["openbao_token"].is_null());
    }

    #[test]
    fn a_chat_webhook_url_is_redacted() {
        let mut s = Settings::default();
        s.notify.chat_webhook_url = Some("https://hooks.slack.com/services/T0/B0/SECRETTOKEN".into());
        let v = redacted(&s);
        assert!(!v.to_string().contains("SECRETTOKEN"), "{v}");
        assert_eq!(v["notify"]["chat_webhook_url"], REDACTED);
        assert!(redacted(&Settings::default())["notify"]["chat_webhook_url"].is_null());
    }

    #[test]
    fn the_probe_reaches_a_wildcard_listener_on_loopback() {
        let s = Settings { listen: "0.0.0.0:8080".into(), ..Settings::default() };
        assert_eq!(local_url(&s).unwrap(), "http://127.0.0.1:8080");
        let s = Settings { listen: "[::]:9000".into(), tls_cert: Some("c.pem".into()), ..Settings::default() };
        assert_eq!(local_url(&s).unwrap(), "https://[::1]:9000");
        let s = Settings { listen: "localhost:8081".into(), ..Settings::default() };
        assert_eq!(local_url(&s).unwrap(), "http://127.0.0.1:8081");
    }
}
