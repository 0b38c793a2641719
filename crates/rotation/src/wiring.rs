//! From a stored connector row to a live [`Connector`], and the checks the admin API runs
//! before a connector is stored.

use std::time::Duration;

use fedkey_connectors::{Connector, ConnectorCredentials, ConnectorSpec, DeliveryRoot};
use fedkey_crypto::Secret;
use fedkey_egress::{Egress, UrlRules};
use fedkey_store::ConnectorRow;
use serde_json::Value;

/// Builds the connector of a stored row with its decrypted credentials. A file connector is
/// confined to `root` (checked again here: the root or the file system may have changed
/// since it was stored); without a root it refuses to deliver.
pub fn build(
    row: &ConnectorRow,
    creds: Option<&Secret>,
    egress: Egress,
    timeout: Duration,
    root: Option<&DeliveryRoot>,
) -> Result<Connector, String> {
    let spec: ConnectorSpec =
        serde_json::from_value(row.spec.clone()).map_err(|e| format!("the stored spec is invalid: {e}"))?;
    let creds = credentials(&spec, creds)?;
    let c = Connector::new(spec, creds, egress).map_err(|e| e.to_string())?;
    confine(c, root).map(|c| c.with_timeout(timeout))
}

fn confine(c: Connector, root: Option<&DeliveryRoot>) -> Result<Connector, String> {
    match root {
        Some(r) => c.confine(r).map_err(|e| e.to_string()),
        None => Ok(c),
    }
}

/// The `wrapped_link` connector, which the engine runs itself (it needs the store): the new
/// key is sealed behind a single-use link, and only the link is sent — signed — to
/// `notify_url` (a ticketing or chat bridge, an on-call tool). Whoever opens it sets the key
/// at the peer; the peer's first use then validates the rotation.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WrappedLinkSpec {
    pub kind: String,
    pub notify_url: String,
    /// How long the link works (default 1h, at most 7d).
    #[serde(default = "default_ttl")]
    pub ttl: String,
}

fn default_ttl() -> String {
    "1h".into()
}

pub const WRAPPED_LINK: &str = "wrapped_link";

/// Connector kinds as metric labels; anything else counts as `other`, so the label set
/// stays bounded.
pub const CONNECTOR_KINDS: [&str; 7] = ["entra", "okta", "openbao", "file", "webhook", WRAPPED_LINK, "other"];

pub fn kind_label(kind: &str) -> &'static str {
    CONNECTOR_KINDS.iter().find(|k| **k == kind).copied().unwrap_or("other")
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct WrappedLinkCredentials {
    kind: String,
    signing_secret: zeroize::Zeroizing<String>,
}

impl WrappedLinkSpec {
    /// Parses a spec; `notify_url` must pass the egress policy (https unless loopback).
    pub fn parse(spec: &Value, egress: &Egress) -> Result<WrappedLinkSpec, String> {
        let s: WrappedLinkSpec = serde_json::from_value(spec.clone()).map_err(|e| format!("connector spec: {e}"))?;
        egress.check_url(&s.notify_url, UrlRules::HTTPS_ONLY).map_err(|e| format!("notify_url: {e}"))?;
        s.ttl()?;
        Ok(s)
    }

    pub fn ttl(&self) -> Result<Duration, String> {
        humantime::parse_duration(&self.ttl)
            .ok()
            .filter(|d| !d.is_zero() && *d <= fedkey_store::ops::MAX_WRAP_TTL)
            .ok_or_else(|| format!("ttl {:?}: a duration between 1s and 7d", self.ttl))
    }

    /// The signing secret from the connector's credentials JSON.
    pub fn signing_secret(creds: Option<&Secret>) -> Result<Secret, String> {
        let c = creds
            .ok_or("a wrapped_link connector needs credentials: {\"kind\": \"wrapped_link\", \"signing_secret\": …}")?;
        let w: WrappedLinkCredentials = serde_json::from_str(c.expose())
            .map_err(|e| format!("wrapped_link credentials are invalid at column {}", e.column()))?;
        if w.kind != WRAPPED_LINK || w.signing_secret.is_empty() {
            return Err("wrapped_link credentials need kind \"wrapped_link\" and a signing_secret".into());
        }
        Ok(Secret::new(w.signing_secret.to_string()))
    }
}

/// Validates a new connector: the spec parses, the credentials match its kind, and the
/// connector can be built (URLs, paths; a file connector's path under `root`). Returns the
/// kind and the normalised spec.
pub fn check(
    spec: &Value,
    creds: Option<&Secret>,
    egress: &Egress,
    root: Option<&DeliveryRoot>,
) -> Result<(String, Value), String> {
    if spec.get("kind").and_then(Value::as_str) == Some(WRAPPED_LINK) {
        let w = WrappedLinkSpec::parse(spec, egress)?;
        WrappedLinkSpec::signing_secret(creds)?;
        return Ok((WRAPPED_LINK.to_owned(), serde_json::to_value(&w).map_err(|e| e.to_string())?));
    }
    let parsed: ConnectorSpec = serde_json::from_value(spec.clone()).map_err(|e| format!("connector spec: {e}"))?;
    let c = credentials(&parsed, creds)?;
    let built = Connector::new(parsed.clone(), c, egress.clone()).map_err(|e| e.to_string())?;
    if matches!(parsed, ConnectorSpec::File { .. }) && root.is_none() {
        return Err("file connectors need a delivery root (setting delivery_root)".into());
    }
    confine(built, root)?;
    let normalised = serde_json::to_value(&parsed).map_err(|e| e.to_string())?;
    Ok((parsed.kind().as_str().to_owned(), normalised))
}

fn credentials(spec: &ConnectorSpec, creds: Option<&Secret>) -> Result<ConnectorCredentials, String> {
    match (spec, creds) {
        (ConnectorSpec::File { .. }, None) => Ok(ConnectorCredentials::File),
        (_, None) => Err(format!("a {0} connector needs credentials (JSON with \"kind\": \"{0}\")", spec.kind())),
        (_, Some(c)) => {
            let c = ConnectorCredentials::from_secret_json(c).map_err(|e| e.to_string())?;
            if c.kind() != spec.kind() {
                return Err(format!("the credentials are for a {} connector, the spec is {}", c.kind(), spec.kind()));
            }
            Ok(c)
        }
    }
}
