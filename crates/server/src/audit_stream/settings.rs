//! `[[audit_sinks]]` settings, checked once at start: a bad sink stops the server before
//! it serves.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use fedkey_egress::{Egress, Url, UrlRules};
use serde::{Deserialize, Serialize};

use super::Sink;
use super::http::{HttpFormat, HttpSink};
use super::syslog::{Endpoint, SyslogSink};

/// One `[[audit_sinks]]` table of the configuration file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SinkSettings {
    /// Names the sink's cursor: keep it stable (a new name streams the whole log again).
    pub name: String,
    /// `syslog+tls://HOST:PORT`, `syslog+tcp://HOST:PORT`, or an `https://` (or loopback
    /// `http://`) collector URL.
    pub url: String,
    /// HTTP collectors: `json` (an array of records, default) or `hec` (Splunk HEC events).
    #[serde(default)]
    pub format: Option<String>,
    /// HTTP collectors: a file holding the token, sent as `Authorization: Splunk <token>`
    /// (`hec`, required) or `Bearer <token>` (`json`).
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    /// `syslog+tls`: a PEM file of further trusted CA certificates (a private CA).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Lab opt-in: `syslog+tcp` or `http` to a host that is not loopback (records travel
    /// in clear).
    #[serde(default)]
    pub allow_plaintext: bool,
    /// Records per send, 1–10000 (default 500).
    #[serde(default)]
    pub batch_size: Option<usize>,
    /// Longest wait between retries of a failing sink (default 60s).
    #[serde(default)]
    pub max_backoff: Option<String>,
    /// `hec`: the events' `sourcetype` (default `fedkey:audit`).
    #[serde(default)]
    pub sourcetype: Option<String>,
    /// The HOSTNAME of syslog messages and the `host` of HEC events (default: this
    /// machine's host name).
    #[serde(default)]
    pub hostname: Option<String>,
}

/// A checked sink, ready to connect.
#[derive(Clone)]
pub struct SinkSpec {
    pub name: String,
    pub batch_size: usize,
    pub max_backoff: Duration,
    target: Target,
}

/// Shows no token (the `Authorization` value stays out).
impl std::fmt::Debug for SinkSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SinkSpec")
            .field("name", &self.name)
            .field("batch_size", &self.batch_size)
            .field("max_backoff", &self.max_backoff)
            .finish_non_exhaustive()
    }
}

#[derive(Clone)]
enum Target {
    Syslog(Arc<Endpoint>),
    Http(Arc<HttpSinkConfig>),
}

pub(super) struct HttpSinkConfig {
    pub egress: Egress,
    pub url: Url,
    pub rules: UrlRules,
    pub format: HttpFormat,
    pub authorization: Option<String>,
    pub hostname: String,
}

impl SinkSpec {
    /// Checks `s` against the egress policy; errors name the sink and the setting, never a
    /// token.
    pub fn parse(s: &SinkSettings, egress: &Egress) -> Result<SinkSpec, String> {
        let name = s.name.trim();
        if name.is_empty()
            || name.len() > 64
            || !name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        {
            return Err(format!(
                "audit_sinks: name {:?} must be 1-64 letters, digits, '-', '_' or '.'",
                shown_name(&s.name)
            ));
        }
        let err = |m: String| format!("audit_sinks {name}: {m}");
        let batch_size = s.batch_size.unwrap_or(500);
        if !(1..=10_000).contains(&batch_size) {
            return Err(err("batch_size must be between 1 and 10000".into()));
        }
        let max_backoff = match &s.max_backoff {
            None => Duration::from_secs(60),
            Some(v) => humantime::parse_duration(v)
                .ok()
                .filter(|d| *d >= Duration::from_millis(100) && *d <= Duration::from_secs(3600))
                .ok_or_else(|| err(format!("max_backoff: {v:?} is not a duration between 100ms and 1h")))?,
        };
        let hostname = match &s.hostname {
            Some(h) if !h.is_empty() && h.len() <= 255 && h.bytes().all(|b| b.is_ascii_graphic()) => h.clone(),
            Some(_) => return Err(err("hostname must be 1-255 printable ASCII characters without spaces".into())),
            None => local_hostname(),
        };
        let target = if let Some(rest) = s.url.strip_prefix("syslog+tcp://") {
            Target::Syslog(Arc::new(Endpoint::parse(rest, None, s, egress, hostname).map_err(err)?))
        } else if let Some(rest) = s.url.strip_prefix("syslog+tls://") {
            let tls = super::syslog::client_config(s.ca_file.as_deref()).map_err(err)?;
            Target::Syslog(Arc::new(Endpoint::parse(rest, Some(tls), s, egress, hostname).map_err(err)?))
        } else if s.url.starts_with("https://") || s.url.starts_with("http://") {
            let rules = UrlRules { allow_http: s.allow_plaintext };
            let url = egress.check_url(&s.url, rules).map_err(|e| err(format!("url: {e}")))?;
            let format = match s.format.as_deref().unwrap_or("json") {
                "json" => HttpFormat::Json,
                "hec" => HttpFormat::Hec { sourcetype: s.sourcetype.clone().unwrap_or_else(|| "fedkey:audit".into()) },
                f => return Err(err(format!("format {f:?} is not json or hec"))),
            };
            let token = match &s.token_file {
                Some(p) => {
                    let t = std::fs::read_to_string(p)
                        .map_err(|e| err(format!("cannot read token_file {}: {e}", p.display())))?;
                    let t = t.trim().to_owned();
                    if t.is_empty() || !t.bytes().all(|b| b.is_ascii_graphic()) {
                        return Err(err(format!("token_file {} holds no usable token", p.display())));
                    }
                    Some(t)
                }
                None => None,
            };
            let authorization = match (&format, token) {
                (HttpFormat::Hec { .. }, Some(t)) => Some(format!("Splunk {t}")),
                (HttpFormat::Hec { .. }, None) => return Err(err("format hec needs token_file".into())),
                (HttpFormat::Json, t) => t.map(|t| format!("Bearer {t}")),
            };
            Target::Http(Arc::new(HttpSinkConfig {
                egress: egress.clone(),
                url,
                rules,
                format,
                authorization,
                hostname,
            }))
        } else {
            return Err(err("url must start with syslog+tls://, syslog+tcp://, https:// or http://".into()));
        };
        if matches!(target, Target::Syslog(_)) && (s.format.is_some() || s.token_file.is_some()) {
            return Err(err("format and token_file are for HTTP collectors".into()));
        }
        Ok(SinkSpec { name: name.to_owned(), batch_size, max_backoff, target })
    }

    pub(super) fn connect(&self) -> Sink {
        match &self.target {
            Target::Syslog(e) => Sink::Syslog(SyslogSink::new(e.clone())),
            Target::Http(c) => Sink::Http(HttpSink::new(c.clone())),
        }
    }
}

fn shown_name(n: &str) -> String {
    n.chars().take(64).collect()
}

/// This machine's host name (Linux), or `-` (the syslog NILVALUE).
fn local_hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty() && h.len() <= 255 && h.bytes().all(|b| b.is_ascii_graphic()))
        .unwrap_or_else(|| "-".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(url: &str) -> SinkSettings {
        SinkSettings {
            name: "siem".into(),
            url: url.into(),
            format: None,
            token_file: None,
            ca_file: None,
            allow_plaintext: false,
            batch_size: None,
            max_backoff: None,
            sourcetype: None,
            hostname: None,
        }
    }

    #[test]
    fn sinks_follow_the_egress_policy() {
        let egress = Egress::strict().unwrap();
        let ok = |u: &str| SinkSpec::parse(&settings(u), &egress).map(|_| ());
        assert!(ok("syslog+tcp://127.0.0.1:5140").is_ok());
        assert!(ok("syslog+tcp://[::1]:5140").is_ok());
        assert!(ok("syslog+tls://127.0.0.1:6514").is_ok());
        assert!(ok("http://127.0.0.1:8088/services/collector").is_ok());
        let e = ok("syslog+tcp://siem.example.com:514").unwrap_err();
        assert!(e.contains("allow_plaintext"), "{e}");
        let e = ok("syslog+tls://10.1.2.3:6514").unwrap_err();
        assert!(e.contains("allow_cidrs"), "{e}");
        let e = ok("http://siem.example.com/x").unwrap_err();
        assert!(e.contains("https"), "{e}");
        let e = ok("syslog+tls://siem.example.com").unwrap_err();
        assert!(e.contains("port"), "{e}");
        assert!(ok("udp://127.0.0.1:514").is_err());
        let mut hec = settings("https://siem.example.com/services/collector");
        hec.format = Some("hec".into());
        assert!(SinkSpec::parse(&hec, &egress).unwrap_err().contains("token_file"));
        let mut bad = settings("syslog+tcp://127.0.0.1:1");
        bad.name = "a b".into();
        assert!(SinkSpec::parse(&bad, &egress).unwrap_err().contains("name"));
        bad.name = "ok".into();
        bad.batch_size = Some(0);
        assert!(SinkSpec::parse(&bad, &egress).unwrap_err().contains("batch_size"));
    }
}
