//! From a stored connector row to a live [`Connector`], and the checks the admin API runs
//! before a connector is stored.

use std::time::Duration;

use fedkey_connectors::{Connector, ConnectorCredentials, ConnectorSpec};
use fedkey_crypto::Secret;
use fedkey_store::ConnectorRow;
use serde_json::Value;

/// Builds the connector of a stored row with its decrypted credentials.
pub fn build(
    row: &ConnectorRow,
    creds: Option<&Secret>,
    http: reqwest::Client,
    timeout: Duration,
) -> Result<Connector, String> {
    let spec: ConnectorSpec =
        serde_json::from_value(row.spec.clone()).map_err(|e| format!("the stored spec is invalid: {e}"))?;
    let creds = credentials(&spec, creds)?;
    Connector::new(spec, creds, http).map(|c| c.with_timeout(timeout)).map_err(|e| e.to_string())
}

/// Validates a new connector: the spec parses, the credentials match its kind, and the
/// connector can be built (URLs, paths). Returns the kind and the normalised spec.
pub fn check(spec: &Value, creds: Option<&Secret>) -> Result<(String, Value), String> {
    let parsed: ConnectorSpec = serde_json::from_value(spec.clone()).map_err(|e| format!("connector spec: {e}"))?;
    let c = credentials(&parsed, creds)?;
    Connector::new(parsed.clone(), c, reqwest::Client::new()).map_err(|e| e.to_string())?;
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
