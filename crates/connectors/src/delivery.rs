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
