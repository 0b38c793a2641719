//! The admin API client used by the CLI's admin commands.

use std::path::Path;
use std::time::Duration;

use fedkey_api::ErrorBody;
use fedkey_egress::{Egress, EgressConfig, EgressError, UrlRules};
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::config::Settings;
use crate::exit;

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
        let base = server_url(&s.url).map_err(exit::config)?;
        let token =
            s.token.as_deref().filter(|t| !t.is_empty()).ok_or_else(|| {
                exit::config("no admin token: pass --token, or set FEDKEY_TOKEN or FEDKEY_TOKEN_FILE")
            })?;
        let timeout = s.request_timeout().map_err(exit::config)?;
        Ok(Client { egress: operator_egress(s)?, base, token: token.to_owned(), timeout })
    }

    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> anyhow::Result<Value> {
        let mut req = self.request(method, path)?;
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = self.egress.send(req, self.timeout).await.map_err(|e| self.transport_error(e))?;
        let status = resp.status();
        let text = fedkey_egress::read_text(resp, MAX_ANSWER_BYTES, self.timeout)
            .await
            .map_err(|e| self.transport_error(e))?;
        let v: Option<Value> = serde_json::from_str(&text).ok();
        if status.is_success() {
            if status == StatusCode::NO_CONTENT || text.is_empty() {
                return Ok(Value::Null);
            }
            return v.ok_or_else(|| self.not_fedkey(status));
        }
        Err(self.api_error(status, v.as_ref()))
    }

    /// A call whose answer is read into its `fedkey-api` type. An answer of another shape
    /// is an error that names the endpoint, rather than fields silently read as empty.
    pub async fn send<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&impl Serialize>,
    ) -> anyhow::Result<T> {
        let body = body.map(serde_json::to_value).transpose()?;
        let v = self.call(method.clone(), path, body).await?;
        serde_json::from_value(v).map_err(|e| {
            anyhow::anyhow!(
                "the answer of {} to {method} /api/v1{path} is not what this fedkey client expects ({e}); \
                 are the client and the server the same version?",
                self.base
            )
        })
    }

    pub async fn get_as<T: DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        self.send(Method::GET, path, None::<&()>).await
    }

    pub async fn post_as<T: DeserializeOwned>(&self, path: &str, body: &impl Serialize) -> anyhow::Result<T> {
        self.send(Method::POST, path, Some(body)).await
    }

    pub async fn put_as<T: DeserializeOwned>(&self, path: &str, body: &impl Serialize) -> anyhow::Result<T> {
        self.send(Method::PUT, path, Some(body)).await
    }

    fn request(&self, method: Method, path: &str) -> anyhow::Result<reqwest::RequestBuilder> {
        let url = reqwest::Url::parse(&format!("{}/api/v1{path}", self.base))
            .map_err(|e| exit::config(format!("the server URL {:?} is not a URL ({e})", self.base)))?;
        Ok(self.egress.request(method, &url, UrlRules::LAB_HTTP)?.bearer_auth(&self.token))
    }

    /// The error of a failed call: every fedkey error is `{"error": {"code", "message"}}`;
    /// anything else comes from another server.
    fn api_error(&self, status: StatusCode, body: Option<&Value>) -> anyhow::Error {
        match body.and_then(|v| ErrorBody::deserialize(v).ok()) {
            Some(ErrorBody { error }) => {
                anyhow::anyhow!("{} ({}, HTTP {})", error.message, error.code, status.as_u16())
            }
            None => self.not_fedkey(status),
        }
    }

    fn not_fedkey(&self, status: StatusCode) -> anyhow::Error {
        anyhow::anyhow!(
            "the server at {} answered HTTP {} with something that is not fedkey's admin API: \
             check --server / FEDKEY_URL (the fedkey server's base URL, such as https://fedkey.example.com:8443, without /api/v1)",
            self.base,
            status.as_u16()
        )
    }

    /// A GET whose answer is read as it arrives (an audit export), waiting up to `timeout`
    /// for all of it. An error status is turned into the API's error message.
    pub async fn stream(&self, path: &str, timeout: Duration) -> anyhow::Result<reqwest::Response> {
        let req = self.request(Method::GET, path)?;
        let resp = self.egress.send(req, timeout).await.map_err(|e| self.transport_error(e))?;
        let status = resp.status();
        if status.is_success() {
            return Ok(resp);
        }
        let text = fedkey_egress::read_text(resp, 64 * 1024, self.timeout).await.unwrap_or_default();
        Err(self.api_error(status, serde_json::from_str(&text).ok().as_ref()))
    }

    fn transport_error(&self, e: EgressError) -> anyhow::Error {
        if let EgressError::Timeout(_) = e {
            return anyhow::anyhow!(
                "fedkey at {} did not answer within {}; the server may still finish the request. \
                 For long operations (a large reconcile or import) raise --request-timeout or FEDKEY_REQUEST_TIMEOUT",
                self.base,
                humantime::format_duration(self.timeout)
            );
        }
        let hint = transport_hint(&e, &self.base);
        anyhow::Error::new(e).context(format!("cannot reach fedkey at {}{hint}", self.base))
    }
}

/// The egress client for servers the operator named (`--server`, a wrapped link): any
/// address, plain http as configured, and the CA of `--ca-cert` / `FEDKEY_CACERT`.
pub fn operator_egress(s: &Settings) -> anyhow::Result<Egress> {
    let mut cfg = EgressConfig::operator();
    if let Some(path) = &s.cacert {
        for der in read_ca_file(path).map_err(exit::config)? {
            cfg = cfg.with_root_der(der);
        }
    }
    Ok(Egress::new(cfg)?)
}

/// The certificates of a PEM file, as DER.
fn read_ca_file(path: &Path) -> Result<Vec<Vec<u8>>, String> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    let certs: Vec<Vec<u8>> = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.map(|c| c.map(|c| c.to_vec())).collect::<Result<_, _>>())
        .map_err(|e| format!("ca_cert {}: cannot read a PEM certificate: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "ca_cert {}: no PEM certificate (-----BEGIN CERTIFICATE-----) in the file",
            path.display()
        ));
    }
    Ok(certs)
}

/// Checks the admin API base URL and says what to write instead.
pub fn server_url(url: &str) -> Result<String, String> {
    let url = url.trim();
    let fix = |why: String| format!("--server / FEDKEY_URL {url:?} {why}");
    let Some((scheme, rest)) = url.split_once("://") else {
        return Err(fix(format!("has no scheme: write http://{url} or https://{url}")));
    };
    if !matches!(scheme, "http" | "https") {
        return Err(fix(format!("uses {scheme}://; fedkey speaks http:// or https://, e.g. https://{rest}")));
    }
    let parsed = reqwest::Url::parse(url).map_err(|e| fix(format!("is not a URL ({e})")))?;
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(fix("has no host, e.g. http://127.0.0.1:8080".into()));
    }
    if parsed.query().is_some() || parsed.fragment().is_some() {
        return Err(fix("has a query or fragment; give the server's base URL only".into()));
    }
    if parsed.path().trim_end_matches('/').ends_with("/api/v1") {
        return Err(fix("ends in /api/v1; give the server's base URL without it".into()));
    }
    Ok(url.trim_end_matches('/').to_owned())
}

/// What a transport failure most likely means for the URL the operator gave.
fn transport_hint(e: &EgressError, base: &str) -> String {
    let mut text = e.to_string();
    let mut src: Option<&dyn std::error::Error> = std::error::Error::source(e);
    while let Some(s) = src {
        text.push_str(&format!(": {s}"));
        src = s.source();
    }
    let https = base.starts_with("https://");
    let hint = if text.contains("CaUsedAsEndEntity") {
        "the server's certificate is a CA certificate (basicConstraints CA:TRUE) used as the \
         server's own; TLS clients refuse that. Serve a leaf certificate signed by a CA and pass \
         that CA with --ca-cert (`fedkey serve --dev-tls` makes such a pair)"
    } else if text.contains("UnknownIssuer") || text.contains("invalid peer certificate") {
        "the server's certificate is not signed by a CA this client trusts: pass the CA \
         certificate with --ca-cert FILE or FEDKEY_CACERT"
    } else if https
        && (text.contains("corrupt message") || text.contains("InvalidContentType") || text.contains("CorruptMessage"))
    {
        "the server does not speak TLS on this port: use http:// or the server's TLS port"
    } else if !https
        && (text.contains("connection closed") || text.contains("IncompleteMessage") || text.contains("invalid HTTP"))
    {
        "the server closed the connection: if it serves TLS, use https://"
    } else if text.contains("Connection refused") || text.contains("ConnectionRefused") {
        "nothing listens there: is `fedkey serve` running, and are the host and port of --server / FEDKEY_URL right?"
    } else if text.contains("dns error") || text.contains("failed to lookup") {
        "the host name does not resolve: check --server / FEDKEY_URL"
    } else {
        return String::new();
    };
    format!(" ({hint})")
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::server_url;

    #[test]
    fn wrong_server_urls_say_what_to_write() {
        assert_eq!(server_url("http://127.0.0.1:8080/").unwrap(), "http://127.0.0.1:8080");
        assert_eq!(server_url("https://fedkey.example.com/base").unwrap(), "https://fedkey.example.com/base");
        let e = server_url("localhost:8080").unwrap_err();
        assert!(e.contains("no scheme") && e.contains("http://localhost:8080"), "{e}");
        let e = server_url("ftp://fedkey.example.com").unwrap_err();
        assert!(e.contains("ftp://") && e.contains("https://fedkey.example.com"), "{e}");
        assert!(server_url("http://").is_err());
        assert!(server_url("http://h:8080/api/v1").unwrap_err().contains("without it"));
    }
}
