//! The admin API client used by the CLI's admin commands.

use std::time::Duration;

use anyhow::Context;
use fedkey_egress::{Egress, EgressConfig, EgressError, UrlRules};
use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::config::Settings;

/// Largest admin API answer read (an audit export page, a large list).
const MAX_ANSWER_BYTES: usize = 256 * 1024 * 1024;

pub struct Client {
    egress: Egress,
    base: String,
    token: String,
    timeout: Duration,
}

impl Client {
    /// The admin API of `s.url`, with `s.token`, waiting `s.request_timeout` per request.
    pub fn new(s: &Settings) -> anyhow::Result<Client> {
        let token =
            s.token.as_deref().filter(|t| !t.is_empty()).ok_or_else(|| {
                anyhow::anyhow!("no admin token: pass --token, or set FEDKEY_TOKEN or FEDKEY_TOKEN_FILE")
            })?;
        let timeout = s.request_timeout()?;
        // The operator chose this server: any address, and plain http as configured.
        let egress = Egress::new(EgressConfig::operator())?;
        Ok(Client { egress, base: s.url.trim_end_matches('/').to_owned(), token: token.to_owned(), timeout })
    }

    pub async fn call(&self, method: Method, path: &str, body: Option<Value>) -> anyhow::Result<Value> {
        let url = reqwest::Url::parse(&format!("{}/api/v1{path}", self.base))
            .with_context(|| format!("the server URL {:?} is not a URL", self.base))?;
        let mut req = self.egress.request(method, &url, UrlRules::LAB_HTTP)?.bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = self.egress.send(req, self.timeout).await.map_err(|e| self.transport_error(e))?;
        let status = resp.status();
        let text = fedkey_egress::read_text(resp, MAX_ANSWER_BYTES, self.timeout)
            .await
            .map_err(|e| self.transport_error(e))?;
        if status.is_success() {
            if status == StatusCode::NO_CONTENT || text.is_empty() {
                return Ok(Value::Null);
            }
            return serde_json::from_str(&text).context("the server sent a response that is not JSON");
        }
        let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        let msg = v["error"]["message"].as_str().unwrap_or("request failed");
        let code = v["error"]["code"].as_str().unwrap_or("http_error");
        anyhow::bail!("{msg} ({code}, HTTP {})", status.as_u16())
    }

    /// A GET whose answer is read as it arrives (an audit export), waiting up to `timeout`
    /// for all of it. An error status is turned into the API's error message.
    pub async fn stream(&self, path: &str, timeout: Duration) -> anyhow::Result<reqwest::Response> {
        let url = reqwest::Url::parse(&format!("{}/api/v1{path}", self.base))
            .with_context(|| format!("the server URL {:?} is not a URL", self.base))?;
        let req = self.egress.request(Method::GET, &url, UrlRules::LAB_HTTP)?.bearer_auth(&self.token);
        let resp = self.egress.send(req, timeout).await.map_err(|e| self.transport_error(e))?;
        let status = resp.status();
        if status.is_success() {
            return Ok(resp);
        }
        let text = fedkey_egress::read_text(resp, 64 * 1024, self.timeout).await.unwrap_or_default();
        let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        let msg = v["error"]["message"].as_str().unwrap_or("request failed");
        let code = v["error"]["code"].as_str().unwrap_or("http_error");
        anyhow::bail!("{msg} ({code}, HTTP {})", status.as_u16())
    }

    fn transport_error(&self, e: EgressError) -> anyhow::Error {
        if let EgressError::Timeout(_) = e {
            anyhow::anyhow!(
                "fedkey at {} did not answer within {}; the server may still finish the request. \
                 For long operations (a large reconcile or import) raise --request-timeout or FEDKEY_REQUEST_TIMEOUT",
                self.base,
                humantime::format_duration(self.timeout)
            )
        } else {
            anyhow::Error::new(e).context(format!("cannot reach fedkey at {}", self.base))
        }
    }

    pub async fn get(&self, path: &str) -> anyhow::Result<Value> {
        self.call(Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> anyhow::Result<Value> {
        self.call(Method::POST, path, Some(body)).await
    }
}

/// Percent-encodes a query value.
pub fn q(v: &str) -> String {
    v.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}
