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
    /// Testing only: lets an admin advance the server clock through the API.
    pub unsafe_test_clock: bool,
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
            unsafe_test_clock: false,
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
            source_rate_limit: 2000,
            source_burst: 4000,
            trusted_proxies: Vec::new(),
            failed_auth_records: 10,
            failed_auth_window: "60s".into(),
        }
    }
}

const ENV_KEYS: [&str; 34] = [
    "data_dir",
    "database_url",
    "database_url_file",
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
    "unsafe_test_clock",
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
        fig =
            fig.merge(Env::prefixed("FEDKEY_").only(&ENV_KEYS[..ENV_KEYS.len() - 1])).merge(Serialized::globals(flags));
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
            address,
            token: fedkey_crypto::Secret::new(token),
            mount: self.openbao_transit_mount.clone(),
            key: self.openbao_transit_key.clone(),
        })
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
fn string_list<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
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
/// key and the kind of problem are reported.
fn describe(e: &figment::Error) -> String {
    let key = e.path.join(".");
    let secret = ["token", "database_url", "alert_webhook_secret", "openbao_token"].iter().any(|k| key.ends_with(k));
    let what = match &e.kind {
        figment::error::Kind::UnknownField(f, _) => format!("unknown setting {f:?}"),
        _ if secret => "invalid value".to_owned(),
        k => k.to_string(),
    };
    if key.is_empty() { what } else { format!("{key}: {what}") }
}

fn read_secret_file(p: &Path, what: &str) -> anyhow::Result<String> {
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
    fn secret_values_are_not_echoed() {
        let e = Settings::from_toml("token = 42").unwrap_err().to_string();
        assert!(!e.contains("42"), "{e}");
    }

    #[test]
    fn default_database_is_sqlite_in_the_data_dir() {
        let s = Settings::default();
        assert!(s.database_url().starts_with("sqlite://"));
        assert!(s.master_key_file().ends_with("master.key"));
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
