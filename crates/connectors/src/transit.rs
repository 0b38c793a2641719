//! OpenBao / Vault transit: wraps and unwraps data-encryption keys with a named transit key,
//! so OpenBao can act as fedkey's master-key provider (the KEK never leaves OpenBao).

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use fedkey_core::clock::Timestamp;
use fedkey_crypto::Secret;
use fedkey_egress::Egress;
use reqwest::Method;
use serde_json::json;
use zeroize::Zeroizing;

use crate::bao::{BaoClient, protocol};
use crate::error::ConnectorError;
use crate::kind::ConnectorKind;

pub struct TransitClient {
    client: BaoClient,
    mount: String,
}

impl TransitClient {
    /// `address` like `https://bao.internal:8200`; the engine is expected at mount `transit`.
    pub fn new(address: &str, token: Secret, egress: Egress) -> Result<Self, ConnectorError> {
        Ok(TransitClient { client: BaoClient::new(address, None, token, egress)?, mount: "transit".into() })
    }

    pub fn with_mount(mut self, mount: impl Into<String>) -> Self {
        self.mount = mount.into();
        self
    }

    pub fn with_namespace(mut self, namespace: impl Into<String>) -> Self {
        self.client.namespace = Some(namespace.into());
        self
    }

    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.client.timeout = timeout;
        self
    }

    /// Encrypts `plaintext` (a DEK) under transit key `key_name`; returns OpenBao's
    /// ciphertext string (`vault:v<N>:…`), which records the key version used.
    pub async fn encrypt(&self, key_name: &str, plaintext: &[u8], now: Timestamp) -> Result<String, ConnectorError> {
        self.client.keep_token_alive(now).await;
        let b64 = Zeroizing::new(STANDARD.encode(plaintext));
        let url = self.client.url(&[&self.mount, "encrypt", key_name]);
        let body = json!({ "plaintext": b64.as_str() });
        let resp = self.client.call(Method::POST, url, Some(&body), &[b64.as_str()], now).await?;
        not_found(resp.status, key_name)?;
        resp.json
            .pointer("/data/ciphertext")
            .and_then(serde_json::Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| protocol(resp.status, "encrypt response lacks data.ciphertext"))
    }

    pub async fn decrypt(
        &self,
        key_name: &str,
        ciphertext: &str,
        now: Timestamp,
    ) -> Result<Zeroizing<Vec<u8>>, ConnectorError> {
        self.client.keep_token_alive(now).await;
        let url = self.client.url(&[&self.mount, "decrypt", key_name]);
        let body = json!({ "ciphertext": ciphertext });
        let resp = self.client.call(Method::POST, url, Some(&body), &[], now).await?;
        not_found(resp.status, key_name)?;
        let b64 = resp
            .json
            .pointer("/data/plaintext")
            .and_then(serde_json::Value::as_str)
            .map(|s| Zeroizing::new(s.to_owned()))
            .ok_or_else(|| protocol(resp.status, "decrypt response lacks data.plaintext"))?;
        STANDARD
            .decode(b64.as_bytes())
            .map(Zeroizing::new)
            .map_err(|_| protocol(resp.status, "decrypt plaintext is not base64"))
    }
}

fn not_found(status: reqwest::StatusCode, key_name: &str) -> Result<(), ConnectorError> {
    if status == reqwest::StatusCode::NOT_FOUND {
        return Err(ConnectorError::Rejected {
            kind: ConnectorKind::Openbao,
            status: 404,
            code: None,
            message: format!("transit key {key_name:?} or the transit mount does not exist"),
        });
    }
    Ok(())
}
