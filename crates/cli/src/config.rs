//! Configuration in one place. Precedence: defaults < TOML file (`--config`) <
//! `FEDKEY_*` environment < command-line flags. Secrets may come from files:
//! `FEDKEY_TOKEN_FILE`, `FEDKEY_DATABASE_URL_FILE` (or `token_file`, `database_url_file`).

use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

/// Every setting, with its default. See docs/configuration.md.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Holds the SQLite database and the master key file.
    pub data_dir: PathBuf,
    /// `sqlite:PATH` or `postgres://…`; default: SQLite in the data directory.
    pub database_url: Option<String>,
    pub database_url_file: Option<PathBuf>,
    /// Database connections in the pool at most; default 8 on SQLite, 16 on PostgreSQL.
    pub database_pool_size: Option<u32>,
    /// How long a request waits for a database connection (a new one while the server is
    /// down or restarting, or a free one of the pool) before it gets a 503.
    pub database_connect_timeout: String,
    /// PostgreSQL: the server cancels statements that run longer; default: the server's.
    pub database_statement_timeout: Option<String>,
    /// PostgreSQL: server-side TCP keepalive idle time of fedkey's connections, so that
    /// the server notices a vanished node and releases its locks; default: the server's.
    pub database_tcp_keepalive: Option<String>,
    /// Default: `master.key` in the data directory.
    pub master_key_file: Option<PathBuf>,
    pub listen: String,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// Allow plain HTTP on a non-loopback address (keys travel in headers!).
    pub insecure_http: bool,
    /// How long an authenticated key stays cached in memory (0s disables the cache).
    pub auth_cache_ttl: String,
    pub log_format: LogFormat,
    pub log_level: String,
    /// Admin API base URL for the CLI's admin commands.
    pub url: String,
    /// How long an admin command waits for the server's answer (a large `sync reconcile` or
    /// `import` may need more than the default).
    pub request_timeout: String,
    pub token: Option<String>,
    pub token_file: Option<PathBuf>,
    /// CA certificate file (PEM) the admin commands trust for the server's TLS certificate,
    /// besides the system's roots (`--ca-cert`, env `FEDKEY_CACERT`).
    pub cacert: Option<PathBuf>,
    /// Testing only: lets an admin advance the server clock through the API. Refused by
    /// builds without the `test-hooks` feature.
    pub unsafe_test_clock: bool,
    /// How long a client has to send a request's header (and a connection's first request).
    pub header_read_timeout: String,
    /// How long a connection with no request in progress stays open.
    pub idle_timeout: String,
    /// Connections served at once; further ones wait in the listen backlog.
    pub max_connections: usize,
    /// The bearer token `/metrics` requires; without it `/metrics` is open.
    pub metrics_token: Option<String>,
    pub metrics_token_file: Option<PathBuf>,
    /// This node's name in database leases (rotation engine). Keep it stable across
    /// restarts of one node and unique among nodes; default: a random name per start.
    pub node_id: Option<String>,
    /// The URL peers and people reach this server at (wrapped links, the SCIM base URL
    /// connectors deliver); default: derived from `listen`.
    pub public_url: Option<String>,
    /// Signed alert webhook (rotation failures, wrapped-link reuse, trust material).
    pub alert_webhook_url: Option<String>,
    pub alert_webhook_secret: Option<String>,
    pub alert_webhook_secret_file: Option<PathBuf>,
    /// How often the rotation engine looks for due work.
    pub engine_interval: String,
    /// `file` (the master keyring in `master_key_file`) or `openbao-transit` (the keyring
    /// sealed by an OpenBao/Vault transit key; only ciphertext on disk).
    pub master_key_provider: String,
    pub openbao_address: Option<String>,
    pub openbao_token: Option<String>,
    pub openbao_token_file: Option<PathBuf>,
    pub openbao_transit_mount: String,
    pub openbao_transit_key: String,
    /// Requests per second one client address may send before authentication (0: no limit).
    pub source_rate_limit: u32,
    /// Requests one client address may send at once above its rate.
    pub source_burst: u32,
    /// CIDRs of the proxies whose `X-Forwarded-For` names the client: a TOML list, or
    /// one comma-separated string (as `FEDKEY_TRUSTED_PROXIES` gives it).
    #[serde(deserialize_with = "string_list")]
    pub trusted_proxies: Vec<String>,
    /// Failed authentications per source recorded one each per window; later ones are
    /// summarized.
    pub failed_auth_records: u32,
    /// The window of `failed_auth_records`, e.g. 60s.
    pub failed_auth_window: String,
    /// The only directory file connectors may write under; default: `deliveries` in the data
    /// directory (created, mode 0700). It must not hold the master key or the database.
    pub delivery_root: Option<PathBuf>,
    /// GitHub's secret-scanning public keys (the JSON document GitHub publishes), which
    /// verify GitHub-format leak reports; without it such reports are refused.
    pub leak_github_keys_file: Option<PathBuf>,
    /// Outbound requests (`[egress]` in TOML).
    pub egress: EgressSettings,
    /// Notifications (`[notify]` in TOML, `FEDKEY_NOTIFY_*` in the environment).
    pub notify: crate::notify::NotifySettings,
    /// Audit streaming sinks (`[[audit_sinks]]` tables, TOML only). See docs/audit.md#streaming.
    pub audit_sinks: Vec<fedkey_server::audit_stream::SinkSettings>,
}

/// The egress policy's settings. See docs/configuration.md#egress.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EgressSettings {
    /// CIDR ranges opened in the address deny list (a private deployment's peers), e.g.
    /// `["10.20.0.0/16"]`; env `FEDKEY_EGRESS_ALLOW_CIDRS`, comma-separated.
    pub allow_cidrs: Vec<String>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            data_dir: PathBuf::from("./fedkey-data"),
            database_url: None,
            database_url_file: None,
            database_pool_size: None,
            database_connect_timeout: "10s".into(),
            database_statement_timeout: None,
            database_tcp_keepalive: None,
            master_key_file: None,
            listen: "127.0.0.1:8080".into(),
            tls_cert: None,
            tls_key: None,
            insecure_http: false,
            auth_cache_ttl: "5s".into(),
            log_format: LogFormat::Text,
            log_level: "info".into(),
            url: "http://127.0.0.1:8080".into(),
            request_timeout: "60s".into(),
            token: None,
            token_file: None,
            cacert: None,
            unsafe_test_clock: false,
            header_read_timeout: "10s".into(),
            idle_timeout: "60s".into(),
            max_connections: 512,
            metrics_token: None,
            metrics_token_file: None,
            node_id: None,
            public_url: None,
            alert_webhook_url: None,
            alert_webhook_secret: None,
            alert_webhook_secret_file: None,
            engine_interval: "1s".into(),
            master_key_provider: "file".into(),
            openbao_address: None,
            openbao_token: None,
            openbao_token_file: None,
            openbao_transit_mount: "transit".into(),
            openbao_transit_key: "fedkey".into(),
            egress: EgressSettings::default(),
            notify: crate::notify::NotifySettings::default(),
            audit_sinks: Vec::new(),
            leak_github_keys_file: None,
            delivery_root: None,
            source_rate_limit: 2000,
            source_burst: 4000,
            trusted_proxies: Vec::new(),
            failed_auth_records: 10,
            failed_auth_window: "60s".into(),
        }
    }
}

const ENV_KEYS: [&str; 46] = [
    "data_dir",
    "database_url",
    "database_url_file",
    "database_pool_size",
    "database_connect_timeout",
    "database_statement_timeout",
    "database_tcp_keepalive",
    "master_key_file",
    "listen",
    "tls_cert",
    "tls_key",
    "insecure_http",
    "auth_cache_ttl",
    "log_format",
    "log_level",
    "url",
    "request_timeout",
    "token",
    "token_file",
    "cacert",
    "unsafe_test_clock",
    "header_read_timeout",
    "idle_timeout",
    "max_connections",
    "metrics_token",
    "metrics_token_file",
    "node_id",
    "public_url",
    "alert_webhook_url",
    "alert_webhook_secret",
    "alert_webhook_secret_file",
    "engine_interval",
    "master_key_provider",
    "openbao_address",
    "openbao_token",
    "openbao_token_file",
    "openbao_transit_mount",
    "openbao_transit_key",
    "leak_github_keys_file",
    "delivery_root",
    "source_rate_limit",
    "source_burst",
    "trusted_proxies",
    "failed_auth_records",
    "failed_auth_window",
    "config",
];

impl Settings {
    /// Loads settings. `flags` holds only what was given on the command line.
    pub fn load(
        config_file: Option<&Path>,
        flags: &serde_json::Map<String, serde_json::Value>,
    ) -> anyhow::Result<Settings> {
        let mut fig = Figment::from(Serialized::defaults(Settings::default()));
        if let Some(p) = config_file {
            if !p.exists() {
                anyhow::bail!("config file {} does not exist", p.display());
            }
            fig = fig.merge(Toml::file_exact(p));
        }
        fig = fig
            .merge(Env::prefixed("FEDKEY_").only(&ENV_KEYS[..ENV_KEYS.len() - 1]))
            // `FEDKEY_NOTIFY_SMTP_HOST` is `smtp_host` of the `[notify]` table.
            .merge(Env::prefixed("FEDKEY_NOTIFY_").map(|k| format!("notify.{k}").into()))
            .merge(Serialized::globals(flags));
        let mut s: Settings = fig.extract().map_err(|e| anyhow::anyhow!("configuration: {}", describe(&e)))?;
        // A value given as a flag wins over a *_FILE from the environment or TOML.
        if let (Some(f), false) = (&s.token_file, flags.contains_key("token")) {
            s.token = Some(read_secret_file(f, "token")?);
        }
        if let (Some(f), false) = (&s.database_url_file, flags.contains_key("database_url")) {
            s.database_url = Some(read_secret_file(f, "database URL")?);
        }
        if !["file", "openbao-transit"].contains(&s.master_key_provider.as_str()) {
            anyhow::bail!("master_key_provider: {:?} is not one of file, openbao-transit", s.master_key_provider);
        }
        if let Some(f) = &s.openbao_token_file {
            s.openbao_token = Some(read_secret_file(f, "OpenBao token")?);
        }
        if let Some(f) = &s.alert_webhook_secret_file {
            s.alert_webhook_secret = Some(read_secret_file(f, "alert webhook secret")?);
        }
        // A list in one variable: figment's flat environment keys cannot fill the table.
        if let Ok(v) = std::env::var("FEDKEY_EGRESS_ALLOW_CIDRS") {
            s.egress.allow_cidrs = v.split(',').map(|c| c.trim().to_owned()).filter(|c| !c.is_empty()).collect();
        }
        fedkey_egress::parse_allow_cidrs(&s.egress.allow_cidrs).map_err(|e| anyhow::anyhow!(e))?;
        if let Some(f) = &s.metrics_token_file {
            s.metrics_token = Some(read_secret_file(f, "metrics token")?);
        }
        if s.metrics_token.as_deref().is_some_and(str::is_empty) {
            anyhow::bail!("metrics_token is empty; set a random token or leave it unset");
        }
        Ok(s)
    }

    /// Parses TOML text alone (used by the property tests).
    #[cfg(test)]
    pub fn from_toml(text: &str) -> anyhow::Result<Settings> {
        Figment::from(Serialized::defaults(Settings::default()))
            .merge(Toml::string(text))
            .extract()
            .map_err(|e| anyhow::anyhow!("configuration: {}", describe(&e)))
    }

    pub fn database_url(&self) -> String {
        match &self.database_url {
            Some(u) => u.clone(),
            None => format!("sqlite://{}", self.data_dir.join("fedkey.db").display()),
        }
    }

    pub fn master_key_file(&self) -> PathBuf {
        let default = if self.transit() { "master.key.transit" } else { "master.key" };
        self.master_key_file.clone().unwrap_or_else(|| self.data_dir.join(default))
    }

    /// The SQLite database's files (with `-wal` and `-shm`); none on PostgreSQL.
    pub fn sqlite_files(&self) -> Vec<PathBuf> {
        let url = self.database_url();
        let Some(rest) = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:")) else {
            return Vec::new();
        };
        let path = rest.split('?').next().unwrap_or(rest);
        ["", "-wal", "-shm"].iter().map(|suffix| PathBuf::from(format!("{path}{suffix}"))).collect()
    }

    pub fn delivery_root(&self) -> PathBuf {
        self.delivery_root.clone().unwrap_or_else(|| self.data_dir.join("deliveries"))
    }

    /// Files fedkey keeps its own secrets in; no file connector may write them.
    pub fn secret_files(&self) -> Vec<PathBuf> {
        let mut files = vec![self.master_key_file()];
        files.extend(self.sqlite_files());
        let named = [
            &self.tls_key,
            &self.token_file,
            &self.database_url_file,
            &self.alert_webhook_secret_file,
            &self.openbao_token_file,
            &self.notify.smtp_password_file,
            &self.notify.chat_webhook_url_file,
        ];
        files.extend(named.into_iter().flatten().cloned());
        files
    }

    /// Whether the master keyring is sealed by OpenBao transit.
    pub fn transit(&self) -> bool {
        self.master_key_provider == "openbao-transit"
    }

    pub fn transit_settings(&self) -> anyhow::Result<crate::transit::TransitSettings> {
        let address = self.openbao_address.clone().ok_or_else(|| {
            anyhow::anyhow!("master_key_provider openbao-transit needs openbao_address (FEDKEY_OPENBAO_ADDRESS)")
        })?;
        let token = self.openbao_token.clone().ok_or_else(|| {
            anyhow::anyhow!("master_key_provider openbao-transit needs openbao_token or openbao_token_file")
        })?;
        Ok(crate::transit::TransitSettings {
            egress: self.egress()?,
            address,
            token: fedkey_crypto::Secret::new(token),
            mount: self.openbao_transit_mount.clone(),
            key: self.openbao_transit_key.clone(),
        })
    }

    /// The audit streaming sinks, checked against the egress policy.
    pub fn audit_sinks(
        &self,
        egress: &fedkey_egress::Egress,
    ) -> anyhow::Result<Vec<fedkey_server::audit_stream::SinkSpec>> {
        let specs = self
            .audit_sinks
            .iter()
            .map(|s| fedkey_server::audit_stream::SinkSpec::parse(s, egress).map_err(anyhow::Error::msg))
            .collect::<anyhow::Result<Vec<_>>>()?;
        for (i, a) in specs.iter().enumerate() {
            if specs[..i].iter().any(|b| b.name == a.name) {
                anyhow::bail!("audit_sinks: the name {:?} is used twice (each sink needs its own cursor)", a.name);
            }
        }
        Ok(specs)
    }

    /// The egress policy for every request to a peer: the deny list, opened by
    /// `egress.allow_cidrs`.
    pub fn egress(&self) -> anyhow::Result<fedkey_egress::Egress> {
        let allow = fedkey_egress::parse_allow_cidrs(&self.egress.allow_cidrs).map_err(|e| anyhow::anyhow!(e))?;
        let mut config = fedkey_egress::EgressConfig::new(allow);
        if let Some(der) = self.unsafe_egress_root()? {
            config = config.with_root_der(der);
        }
        Ok(fedkey_egress::Egress::new(config)?)
    }

    /// Tests only: one more root CA for outbound https (`FEDKEY_UNSAFE_EGRESS_CA_DER`, a
    /// DER file), so end-to-end tests can stand up an https IdP with a test CA. Read only
    /// with `--unsafe-test-clock`, which a build without the test hooks refuses.
    fn unsafe_egress_root(&self) -> anyhow::Result<Option<Vec<u8>>> {
        if !self.unsafe_test_clock || !fedkey_server::TEST_HOOKS {
            return Ok(None);
        }
        let Some(path) = std::env::var_os("FEDKEY_UNSAFE_EGRESS_CA_DER") else { return Ok(None) };
        let der = std::fs::read(&path).map_err(|e| {
            anyhow::anyhow!("FEDKEY_UNSAFE_EGRESS_CA_DER {}: {e}", std::path::Path::new(&path).display())
        })?;
        Ok(Some(der))
    }

    pub fn engine_interval(&self) -> anyhow::Result<std::time::Duration> {
        humantime::parse_duration(&self.engine_interval).ok().filter(|d| !d.is_zero()).ok_or_else(|| {
            anyhow::anyhow!("engine_interval: {:?} is not a positive duration (e.g. 1s)", self.engine_interval)
        })
    }

    /// A positive duration of at most a day.
    pub fn request_timeout(&self) -> anyhow::Result<std::time::Duration> {
        humantime::parse_duration(&self.request_timeout)
            .ok()
            .filter(|d| !d.is_zero() && *d <= std::time::Duration::from_secs(86_400))
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "request_timeout: {:?} is not a duration between 1s and 24h (e.g. 10m)",
                    self.request_timeout
                )
            })
    }

    /// The database connection settings; durations between 1 ms and a day.
    pub fn db_options(&self) -> anyhow::Result<fedkey_store::DbOptions> {
        fn duration(name: &str, v: &str) -> anyhow::Result<std::time::Duration> {
            humantime::parse_duration(v)
                .ok()
                .filter(|d| !d.is_zero() && *d <= std::time::Duration::from_secs(86_400))
                .ok_or_else(|| anyhow::anyhow!("{name}: {v:?} is not a duration between 1ms and 24h (e.g. 5s)"))
        }
        if self.database_pool_size == Some(0) {
            anyhow::bail!("database_pool_size: must be at least 1");
        }
        let optional = |name: &str, v: &Option<String>| v.as_deref().map(|v| duration(name, v)).transpose();
        Ok(fedkey_store::DbOptions {
            pool_size: self.database_pool_size,
            connect_timeout: Some(duration("database_connect_timeout", &self.database_connect_timeout)?),
            statement_timeout: optional("database_statement_timeout", &self.database_statement_timeout)?,
            tcp_keepalive: optional("database_tcp_keepalive", &self.database_tcp_keepalive)?,
        })
    }

    /// The connection limits of `serve`: a header timeout of at most 10 s, a positive idle
    /// timeout of at most a day, and at least one connection.
    pub fn conn_limits(&self) -> anyhow::Result<fedkey_server::ConnLimits> {
        use std::time::Duration;
        let within = |key: &str, v: &str, max: Duration, max_text: &str| {
            humantime::parse_duration(v).ok().filter(|d| !d.is_zero() && *d <= max).ok_or_else(|| {
                anyhow::anyhow!("{key}: {v:?} is not a positive duration of at most {max_text} (e.g. 10s)")
            })
        };
        if self.max_connections == 0 {
            anyhow::bail!("max_connections: must be at least 1");
        }
        Ok(fedkey_server::ConnLimits {
            header_read_timeout: within(
                "header_read_timeout",
                &self.header_read_timeout,
                Duration::from_secs(10),
                "10s",
            )?,
            idle_timeout: within("idle_timeout", &self.idle_timeout, Duration::from_secs(86_400), "24h")?,
            max_connections: self.max_connections,
        })
    }

    /// The per-source limit before authentication; the burst is at least the rate.
    pub fn source_limits(&self) -> anyhow::Result<fedkey_server::source_limit::SourceLimits> {
        if self.source_rate_limit > 0 && self.source_burst < self.source_rate_limit {
            anyhow::bail!(
                "source_burst ({}) must be at least source_rate_limit ({}), or set source_rate_limit = 0 to turn the limit off",
                self.source_burst,
                self.source_rate_limit
            );
        }
        Ok(fedkey_server::source_limit::SourceLimits { rate: self.source_rate_limit, burst: self.source_burst })
    }

    pub fn trusted_proxies(&self) -> anyhow::Result<Vec<fedkey_store::policy::Cidr>> {
        self.trusted_proxies
            .iter()
            .map(|c| fedkey_store::policy::Cidr::parse(c.trim()).map_err(|e| anyhow::anyhow!("trusted_proxies: {e}")))
            .collect()
    }

    /// How failed authentications are aggregated in the audit log.
    pub fn failed_auth_policy(&self) -> anyhow::Result<fedkey_store::auth_failures::FailurePolicy> {
        let window = humantime::parse_duration(&self.failed_auth_window)
            .ok()
            .filter(|d| *d >= std::time::Duration::from_secs(1) && *d <= std::time::Duration::from_secs(86_400))
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "failed_auth_window: {:?} is not a duration between 1s and 24h (e.g. 60s)",
                    self.failed_auth_window
                )
            })?;
        Ok(fedkey_store::auth_failures::FailurePolicy { window, recorded_per_window: self.failed_auth_records })
    }

    pub fn auth_cache_ttl(&self) -> anyhow::Result<std::time::Duration> {
        humantime::parse_duration(&self.auth_cache_ttl)
            .map_err(|_| anyhow::anyhow!("auth_cache_ttl: {:?} is not a duration (e.g. 5s)", self.auth_cache_ttl))
    }
}

/// A list of strings, or one string of comma-separated items.
pub(crate) fn string_list<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::One(s) => s.split(',').map(str::trim).filter(|x| !x.is_empty()).map(str::to_owned).collect(),
        OneOrMany::Many(v) => v,
    })
}

/// Figment errors may quote a value; for secret keys that would leak it, so only the
/// key and the kind of problem are reported. A TOML syntax error has no key and quotes
/// the offending line, which may hold a secret: only its position and the problem are kept.
fn describe(e: &figment::Error) -> String {
    let key = e.path.join(".");
    let secret = ["token", "database_url", "alert_webhook_secret", "openbao_token", "chat_webhook_url"]
        .iter()
        .any(|k| key.ends_with(k));
    let what = match &e.kind {
        figment::error::Kind::UnknownField(f, _) => format!("unknown setting {f:?}"),
        _ if secret => "invalid value".to_owned(),
        figment::error::Kind::Message(m) => without_source_lines(m),
        k => k.to_string(),
    };
    if key.is_empty() { what } else { format!("{key}: {what}") }
}

/// A TOML parser message without its excerpt of the source: the lines drawn as
/// `N | text` and the `  |  ^` markers under them.
fn without_source_lines(msg: &str) -> String {
    let excerpt = |l: &str| l.split_once('|').is_some_and(|(n, _)| n.trim().bytes().all(|b| b.is_ascii_digit()));
    msg.lines().filter(|l| !excerpt(l)).map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join(": ")
}

pub(crate) fn read_secret_file(p: &Path, what: &str) -> anyhow::Result<String> {
    let s = std::fs::read_to_string(p).map_err(|e| anyhow::anyhow!("cannot read {what} file {}: {e}", p.display()))?;
    Ok(s.trim_end_matches(['\n', '\r']).to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn toml_overrides_defaults_and_typos_are_errors() {
        let s = Settings::from_toml("listen = \"127.0.0.1:9000\"\nlog_format = \"json\"").unwrap();
        assert_eq!(s.listen, "127.0.0.1:9000");
        assert_eq!(s.log_format, LogFormat::Json);
        let e = Settings::from_toml("lisen = \"x\"").unwrap_err().to_string();
        assert!(e.contains("unknown setting"), "{e}");
        let e = Settings::from_toml("insecure_http = \"maybe\"").unwrap_err().to_string();
        assert!(e.contains("insecure_http"), "{e}");
    }

    #[test]
    fn egress_allow_cidrs_from_toml() {
        let s = Settings::from_toml("[egress]\nallow_cidrs = [\"10.20.0.0/16\", \"fd00::/8\"]").unwrap();
        assert_eq!(s.egress.allow_cidrs, ["10.20.0.0/16", "fd00::/8"]);
        assert!(s.egress().is_ok());
        let e = Settings::from_toml("[egress]\nallow_cidr = []").unwrap_err().to_string();
        assert!(e.contains("unknown setting"), "{e}");
        let bad = Settings::from_toml("[egress]\nallow_cidrs = [\"10.0.0.1/8\"]").unwrap();
        assert!(bad.egress().unwrap_err().to_string().contains("allow_cidrs"));
    }

    #[test]
    fn preauth_settings_parse_and_are_checked() {
        let s = Settings::default();
        assert_eq!(s.source_limits().unwrap(), fedkey_server::source_limit::SourceLimits { rate: 2000, burst: 4000 });
        assert!(s.trusted_proxies().unwrap().is_empty());
        assert_eq!(s.failed_auth_policy().unwrap(), fedkey_store::auth_failures::FailurePolicy::default());
        let s = Settings::from_toml(
            "trusted_proxies = [\"10.0.0.0/8\", \"2001:db8::1\"]\nsource_rate_limit = 5\nsource_burst = 5\nfailed_auth_window = \"5m\"",
        )
        .unwrap();
        assert_eq!(s.trusted_proxies().unwrap().len(), 2);
        let one = Settings::from_toml("trusted_proxies = \"10.0.0.0/8, 192.168.0.0/16\"").unwrap();
        assert_eq!(one.trusted_proxies, ["10.0.0.0/8", "192.168.0.0/16"]);
        assert_eq!(s.failed_auth_policy().unwrap().window, std::time::Duration::from_secs(300));
        let e = Settings::from_toml("trusted_proxies = [\"10.0.0.1/8\"]").unwrap().trusted_proxies().unwrap_err();
        assert!(e.to_string().contains("trusted_proxies"), "{e}");
        let e = Settings::from_toml("source_rate_limit = 10\nsource_burst = 5").unwrap().source_limits().unwrap_err();
        assert!(e.to_string().contains("source_burst"), "{e}");
        assert!(Settings::from_toml("failed_auth_window = \"0s\"").unwrap().failed_auth_policy().is_err());
        let off = Settings::from_toml("source_rate_limit = 0\nsource_burst = 0").unwrap();
        assert_eq!(off.source_limits().unwrap(), fedkey_server::source_limit::SourceLimits::OFF);
    }

    #[test]
    fn audit_sinks_from_toml_are_checked() {
        let s = Settings::from_toml(
            "[[audit_sinks]]\nname = \"siem\"\nurl = \"syslog+tcp://127.0.0.1:5140\"\nbatch_size = 50\nmax_backoff = \"2s\"",
        )
        .unwrap();
        let specs = s.audit_sinks(&s.egress().unwrap()).unwrap();
        assert_eq!((specs[0].name.as_str(), specs[0].batch_size), ("siem", 50));
        assert_eq!(specs[0].max_backoff, std::time::Duration::from_secs(2));
        let e = Settings::from_toml("[[audit_sinks]]\nname = \"x\"\nurl = \"syslog+tcp://127.0.0.1:1\"\nurls = 1")
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown setting"), "{e}");
        let twice = Settings::from_toml(
            "[[audit_sinks]]\nname = \"a\"\nurl = \"syslog+tcp://127.0.0.1:1\"\n[[audit_sinks]]\nname = \"a\"\nurl = \"syslog+tcp://127.0.0.1:2\"",
        )
        .unwrap();
        assert!(twice.audit_sinks(&twice.egress().unwrap()).unwrap_err().to_string().contains("twice"));
    }

    #[test]
    fn secret_values_are_not_echoed() {
        let e = Settings::from_toml("token = 42").unwrap_err().to_string();
        assert!(!e.contains("42"), "{e}");
    }

    /// Found by the `config` fuzz harness: a TOML syntax error quoted the offending line,
    /// secret and all.
    #[test]
    fn a_syntax_error_on_a_secret_line_does_not_show_it() {
        for text in
            ["database_url = \"postgres://fedkey:hunter2@db/fedkey", "token = \"hunter2\" x", "openbao_token = hunter2"]
        {
            let e = format!("{:#}", Settings::from_toml(text).unwrap_err());
            assert!(!e.contains("hunter2"), "{e}");
            assert!(e.contains("line 1"), "{e}");
        }
    }

    #[test]
    fn database_connection_settings_parse_and_bad_values_are_named() {
        let o = Settings::default().db_options().unwrap();
        assert_eq!((o.pool_size, o.connect_timeout), (None, Some(std::time::Duration::from_secs(10))));
        assert_eq!((o.statement_timeout, o.tcp_keepalive), (None, None));
        let s = Settings::from_toml(
            "database_pool_size = 4\ndatabase_connect_timeout = \"3s\"\ndatabase_statement_timeout = \"30s\"\ndatabase_tcp_keepalive = \"1m\"",
        )
        .unwrap();
        let o = s.db_options().unwrap();
        assert_eq!(o.pool_size, Some(4));
        assert_eq!(o.connect_timeout, Some(std::time::Duration::from_secs(3)));
        assert_eq!(o.statement_timeout, Some(std::time::Duration::from_secs(30)));
        assert_eq!(o.tcp_keepalive, Some(std::time::Duration::from_secs(60)));
        let e = Settings::from_toml("database_statement_timeout = \"soon\"").unwrap().db_options().unwrap_err();
        assert!(e.to_string().contains("database_statement_timeout"), "{e}");
        let e = Settings::from_toml("database_pool_size = 0").unwrap().db_options().unwrap_err();
        assert!(e.to_string().contains("database_pool_size"), "{e}");
    }

    #[test]
    fn connection_limits_have_safe_defaults_and_bounds() {
        let l = Settings::default().conn_limits().unwrap();
        assert_eq!(l.header_read_timeout, std::time::Duration::from_secs(10));
        assert_eq!(l.idle_timeout, std::time::Duration::from_secs(60));
        assert_eq!(l.max_connections, 512);
        let s =
            Settings::from_toml("header_read_timeout = \"2s\"\nidle_timeout = \"5m\"\nmax_connections = 64").unwrap();
        let l = s.conn_limits().unwrap();
        assert_eq!((l.header_read_timeout.as_secs(), l.idle_timeout.as_secs(), l.max_connections), (2, 300, 64));
        for bad in [
            "header_read_timeout = \"11s\"",
            "header_read_timeout = \"0s\"",
            "idle_timeout = \"soon\"",
            "max_connections = 0",
        ] {
            let e = Settings::from_toml(bad).unwrap().conn_limits().unwrap_err().to_string();
            assert!(e.contains(bad.split(' ').next().unwrap()), "{bad}: {e}");
        }
    }

    #[test]
    fn default_database_is_sqlite_in_the_data_dir() {
        let s = Settings::default();
        assert!(s.database_url().starts_with("sqlite://"));
        assert!(s.master_key_file().ends_with("master.key"));
    }

    #[test]
    fn file_deliveries_default_to_a_directory_of_their_own() {
        let s = Settings::default();
        assert_eq!(s.delivery_root(), PathBuf::from("./fedkey-data/deliveries"));
        let secrets = s.secret_files();
        for f in ["master.key", "fedkey.db", "fedkey.db-wal", "fedkey.db-shm"] {
            assert!(secrets.contains(&s.data_dir.join(f)), "{f}: {secrets:?}");
        }
        let s = Settings { tls_key: Some("/etc/tls/key.pem".into()), ..Settings::default() };
        assert!(s.secret_files().contains(&PathBuf::from("/etc/tls/key.pem")));
        let pg = Settings { database_url: Some("postgres://db/fedkey".into()), ..Settings::default() };
        assert!(pg.sqlite_files().is_empty());
    }

    proptest! {
        #[test]
        fn config_loader_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
            let _ = Settings::from_toml(&String::from_utf8_lossy(&bytes));
        }

        #[test]
        fn config_loader_never_panics_on_tomlish_input(k in "[a-z_]{1,20}", v in "\\PC{0,40}") {
            let _ = Settings::from_toml(&format!("{k} = {v}"));
            let _ = Settings::from_toml(&format!("{k} = \"{v}\""));
        }
    }
}

/// Fuzz harness of the config loader (machinery: fedkey-fuzz, docs/fuzzing.md).
#[cfg(test)]
mod fuzz {
    use proptest::prelude::*;
    use proptest::test_runner::TestCaseError;

    use super::*;

    const MARKER: &str = "s3cr3t-MARKER";
    const SECRETS: [&str; 4] = ["token", "database_url", "alert_webhook_secret", "openbao_token"];
    const DICT: &[&str] =
        &["=", "\"", "'", "\"\"\"", "[", "]", "[table]", "\n", "#", "{", "}", ".", "true", "1e9", "\\u"];

    fn check<S>(target: &str, strategy: S, test: impl Fn(S::Value) -> Result<(), TestCaseError>)
    where
        S: Strategy,
        S::Value: std::fmt::Debug,
    {
        if let Err(e) = fedkey_fuzz::fuzz(target, strategy, test) {
            panic!("{e}");
        }
    }

    /// A value as TOML text, well-formed or not.
    fn value(secret: bool) -> impl Strategy<Value = String> {
        let s = if secret { MARKER } else { "plain" };
        prop::sample::select(vec![
            format!("\"{s}\""),
            format!("'{s}'"),
            format!("\"{s}"),
            format!("{s}"),
            format!("[\"{s}\"]"),
            format!("{{ v = \"{s}\" }}"),
            format!("\"\"\"{s}\n\"\"\""),
            "42".to_owned(),
            "true".to_owned(),
            "\"1s\"".to_owned(),
            "\"99999999999999999999y\"".to_owned(),
            "\"0s\"".to_owned(),
            "\"json\"".to_owned(),
            "\"openbao-transit\"".to_owned(),
        ])
    }

    /// A TOML document setting known and unknown keys; secret keys get the marker.
    fn document() -> impl Strategy<Value = String> {
        let mut keys: Vec<&'static str> = ENV_KEYS.to_vec();
        keys.push("lisen");
        let line = prop::sample::select(keys).prop_flat_map(|k| {
            let secret = SECRETS.contains(&k);
            value(secret).prop_map(move |v| format!("{k} = {v}"))
        });
        prop::collection::vec(line, 0..6).prop_map(|lines| lines.join("\n"))
    }

    /// Everything derived from loaded settings, which startup computes.
    fn derive(s: &Settings) {
        let _ = (s.database_url(), s.master_key_file(), s.transit());
        let _ = (s.engine_interval(), s.request_timeout(), s.auth_cache_ttl());
        if s.transit() {
            let _ = s.transit_settings();
        }
    }

    #[test]
    fn fuzz_config_secrets_never_in_errors() {
        check("config", document(), |text| {
            match Settings::from_toml(&text) {
                Ok(s) => derive(&s),
                Err(e) => {
                    let msg = format!("{e:#}");
                    prop_assert!(!msg.contains(MARKER), "the error shows a secret: {}", msg);
                }
            }
            Ok(())
        });
    }

    #[test]
    fn fuzz_config_loader_on_mutated_files() {
        let seeds = fedkey_fuzz::corpus("config").unwrap();
        let input = prop_oneof![
            fedkey_fuzz::mutated_corpus(seeds.clone(), DICT),
            fedkey_fuzz::mutate(document().prop_map(String::into_bytes), seeds, DICT),
        ];
        check("config-mutated", input, |bytes| {
            if let Ok(s) = Settings::from_toml(&String::from_utf8_lossy(&bytes)) {
                derive(&s);
            }
            Ok(())
        });
    }
}
