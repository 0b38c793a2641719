//! What the rotation engine hands a connector and what it gets back.

use std::path::PathBuf;

use fedkey_crypto::Secret;

/// One key version to deliver.
#[derive(Debug, Clone, Copy)]
pub struct Delivery<'a> {
    /// `"<directory>/<trust>"`.
    pub trust: &'a str,
    pub version: u32,
    pub key: &'a Secret,
    /// fedkey's SCIM endpoint for this trust (what Entra calls `BaseAddress`).
    pub scim_base_url: &'a str,
}

impl<'a> Delivery<'a> {
    /// The trust's own name, the part of `trust` after its directory: the `client_id` it
    /// has at fedkey's OAuth token endpoint.
    pub fn trust_name(&self) -> Option<&'a str> {
        self.trust.split_once('/').map(|(_, name)| name).filter(|n| !n.is_empty())
    }

    /// fedkey's OAuth token endpoint for the trust's directory,
    /// `{public base}/oauth/{directory}/token`. The public base is what precedes
    /// `/scim/v2/` in `scim_base_url` (`{public base}/scim/v2/{directory}`), so both URLs
    /// follow the one configured public URL. `None` if either is not of that shape.
    pub fn oauth_token_url(&self) -> Option<String> {
        let (directory, _) = self.trust.split_once('/')?;
        let base = &self.scim_base_url[..self.scim_base_url.rfind("/scim/v2/")?];
        (!directory.is_empty() && !base.is_empty()).then(|| format!("{base}/oauth/{directory}/token"))
    }
}

/// Non-secret evidence of a delivery, fit for the audit log.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Receipt {
    Entra {
        http_status: u16,
    },
    /// `connection_status` as Okta reported it (`ENABLED` when activation worked).
    Okta {
        http_status: u16,
        connection_status: Option<String>,
    },
    /// The KV v2 version number OpenBao assigned to this write.
    Openbao {
        kv_version: u64,
    },
    File {
        path: PathBuf,
    },
    Webhook {
        http_status: u16,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Validation {
    /// The peer confirmed it holds (or accepts) the delivered key.
    Verified,
    /// This connector has no way to check; rely on the peer's first use of the key.
    NotSupported,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_url_and_client_id_follow_the_public_url() {
        let key = Secret::new("k".into());
        let d = |trust, scim_base_url| Delivery { trust, version: 1, key: &key, scim_base_url };
        let a = d("acme/entra", "https://fedkey.example/scim/v2/acme");
        assert_eq!(a.oauth_token_url().as_deref(), Some("https://fedkey.example/oauth/acme/token"));
        assert_eq!(a.trust_name(), Some("entra"));
        let behind_proxy = d("acme/entra", "https://idp.example/fedkey/scim/v2/acme");
        assert_eq!(behind_proxy.oauth_token_url().as_deref(), Some("https://idp.example/fedkey/oauth/acme/token"));
        assert_eq!(d("acme", "https://fedkey.example/scim/v2/acme").oauth_token_url(), None);
        assert_eq!(d("acme/", "https://fedkey.example/scim/v2/acme").trust_name(), None);
        assert_eq!(d("acme/entra", "https://fedkey.example/v2/acme").oauth_token_url(), None);
    }
}
