//! OpenBao / Vault KV v2 connector: every key version is a new KV version, written with
//! check-and-set so a concurrent writer is detected instead of silently overwritten.

use std::time::Duration;

use fedkey_core::clock::Timestamp;
use fedkey_crypto::{Secret, ct_eq};
use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::bao::{BaoClient, protocol};
use crate::delivery::{Delivery, Receipt, Validation};
use crate::error::ConnectorError;
use crate::kind::ConnectorKind;

const KIND: ConnectorKind = ConnectorKind::Openbao;

pub struct OpenbaoConnector {
    pub(crate) client: BaoClient,
    pub(crate) mount: String,
    pub(crate) path: String,
}

impl OpenbaoConnector {
    pub(crate) fn new(client: BaoClient, mount: String, path: String) -> Result<Self, ConnectorError> {
        for (field, value) in [("mount", &mount), ("path", &path)] {
            let bad = value.split('/').any(|p| p == ".." || p == ".");
            if value.trim_matches('/').is_empty() || bad {
                return Err(ConnectorError::config(KIND, format!("{field} must be a non-empty path without . or ..")));
            }
        }
        Ok(OpenbaoConnector { client, mount, path })
    }

    pub(crate) fn set_timeout(&mut self, timeout: Duration) {
        self.client.timeout = timeout;
    }

    /// The path's current version, 0 when nothing was ever written there.
    async fn current_version(&self, now: Timestamp) -> Result<u64, ConnectorError> {
        let url = self.client.url(&[&self.mount, "metadata", &self.path]);
        let resp = self.client.call(Method::GET, url, None, &[], now).await?;
        if resp.status == StatusCode::NOT_FOUND {
            return Ok(0);
        }
        resp.json
            .pointer("/data/current_version")
            .and_then(serde_json::Value::as_u64)
            .ok_or_else(|| protocol(resp.status, "metadata response lacks data.current_version"))
    }

    pub async fn deliver(&self, d: &Delivery<'_>, now: Timestamp) -> Result<Receipt, ConnectorError> {
        self.client.keep_token_alive(now).await;
        let cas = self.current_version(now).await?;
        let body = json!({
            "options": { "cas": cas },
            "data": { "key": d.key.expose(), "trust": d.trust, "version": d.version },
        });
        let url = self.client.url(&[&self.mount, "data", &self.path]);
        let resp = self.client.call(Method::POST, url, Some(&body), &[d.key.expose()], now).await?;
        if resp.status == StatusCode::NOT_FOUND {
            return Err(ConnectorError::Rejected {
                kind: KIND,
                status: 404,
                code: None,
                message: format!("no KV v2 engine mounted at {:?}", self.mount),
            });
        }
        let kv_version = resp
            .json
            .pointer("/data/version")
            .and_then(serde_json::Value::as_u64)
            .ok_or_else(|| protocol(resp.status, "write response lacks data.version"))?;
        Ok(Receipt::Openbao { kv_version })
    }

    /// Reads the latest version back and checks it is exactly this delivery.
    pub async fn validate(&self, d: &Delivery<'_>, now: Timestamp) -> Result<Validation, ConnectorError> {
        let url = self.client.url(&[&self.mount, "data", &self.path]);
        let resp = self.client.call(Method::GET, url, None, &[d.key.expose()], now).await?;
        if resp.status == StatusCode::NOT_FOUND {
            return Err(failed("nothing is stored at the path"));
        }
        let data = resp.json.pointer("/data/data").ok_or_else(|| protocol(resp.status, "read lacks data.data"))?;
        let stored_key = data.get("key").and_then(serde_json::Value::as_str).unwrap_or("");
        let stored = Secret::new(stored_key.to_owned());
        if !ct_eq(stored.expose().as_bytes(), d.key.expose().as_bytes()) {
            return Err(failed("the latest version holds a different key"));
        }
        if data.get("trust").and_then(serde_json::Value::as_str) != Some(d.trust) {
            return Err(failed("the latest version belongs to another trust"));
        }
        if data.get("version").and_then(serde_json::Value::as_u64) != Some(u64::from(d.version)) {
            return Err(failed("the latest version carries another key version number"));
        }
        Ok(Validation::Verified)
    }
}

fn failed(detail: &str) -> ConnectorError {
    ConnectorError::ValidationFailed { kind: KIND, detail: detail.to_owned() }
}
