//! What a trust's rotation policy stores about its connector: the non-secret settings
//! ([`ConnectorSpec`], plain JSON) and the secret part ([`ConnectorCredentials`], which the
//! caller stores envelope-encrypted).

use std::fmt;
use std::path::PathBuf;

use fedkey_crypto::Secret;
use zeroize::Zeroizing;

use crate::kind::ConnectorKind;

pub const DEFAULT_GRAPH_BASE_URL: &str = "https://graph.microsoft.com";
pub const DEFAULT_LOGIN_BASE_URL: &str = "https://login.microsoftonline.com";
pub const DEFAULT_KV_MOUNT: &str = "secret";

fn default_graph() -> String {
    DEFAULT_GRAPH_BASE_URL.to_owned()
}
fn default_login() -> String {
    DEFAULT_LOGIN_BASE_URL.to_owned()
}
fn default_mount() -> String {
    DEFAULT_KV_MOUNT.to_owned()
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum ConnectorSpec {
    /// Microsoft Entra ID: the provisioning secret of an enterprise app's synchronization.
    Entra {
        tenant_id: String,
        client_id: String,
        service_principal_id: String,
        /// The synchronization job; without it `validate` is not supported.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        job_id: Option<String>,
        #[serde(default = "default_graph")]
        graph_base_url: String,
        #[serde(default = "default_login")]
        login_base_url: String,
        /// Which secret set Entra is given for reaching fedkey's SCIM endpoint.
        #[serde(default, skip_serializing_if = "EntraAuth::is_bearer")]
        auth: EntraAuth,
    },
    /// Okta: the default provisioning connection of an app.
    Okta { org_url: String, app_id: String },
    /// OpenBao or Vault KV v2.
    Openbao {
        address: String,
        #[serde(default = "default_mount")]
        mount: String,
        path: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        namespace: Option<String>,
    },
    /// A local file, replaced atomically.
    File { path: PathBuf },
    /// A signed HTTP POST to a receiver that stores the key itself.
    Webhook { url: String },
}

/// How Entra's provisioning service authenticates to fedkey, and so which of its
/// synchronization secrets the connector writes with each key version.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntraAuth {
    /// `SecretToken`: the key version is the bearer token Entra presents.
    #[default]
    Bearer,
    /// OAuth 2.0 client credentials: Entra sends the trust's name and the key version
    /// (`ClientIdentifier`, `ClientSecret`) to fedkey's token endpoint for the directory
    /// (`Oauth2TokenExchangeUri`) and provisions with the short-lived tokens it gets.
    OauthClientCredentials,
}

impl EntraAuth {
    pub fn is_bearer(&self) -> bool {
        *self == EntraAuth::Bearer
    }
}

impl ConnectorSpec {
    pub fn kind(&self) -> ConnectorKind {
        match self {
            ConnectorSpec::Entra { .. } => ConnectorKind::Entra,
            ConnectorSpec::Okta { .. } => ConnectorKind::Okta,
            ConnectorSpec::Openbao { .. } => ConnectorKind::Openbao,
            ConnectorSpec::File { .. } => ConnectorKind::File,
            ConnectorSpec::Webhook { .. } => ConnectorKind::Webhook,
        }
    }
}

/// The connector's own secrets. `Debug` prints no values.
#[derive(Clone, PartialEq, Eq)]
pub enum ConnectorCredentials {
    Entra { client_secret: Secret },
    Okta { api_token: Secret },
    Openbao { token: Secret },
    File,
    Webhook { signing_secret: Secret },
}

/// The serialised form, tagged like [`ConnectorSpec`]. `Zeroizing` so the intermediate
/// strings are wiped too.
#[derive(serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
enum CredentialsWire {
    Entra { client_secret: Zeroizing<String> },
    Okta { api_token: Zeroizing<String> },
    Openbao { token: Zeroizing<String> },
    File,
    Webhook { signing_secret: Zeroizing<String> },
}

impl ConnectorCredentials {
    pub fn kind(&self) -> ConnectorKind {
        match self {
            ConnectorCredentials::Entra { .. } => ConnectorKind::Entra,
            ConnectorCredentials::Okta { .. } => ConnectorKind::Okta,
            ConnectorCredentials::Openbao { .. } => ConnectorKind::Openbao,
            ConnectorCredentials::File => ConnectorKind::File,
            ConnectorCredentials::Webhook { .. } => ConnectorKind::Webhook,
        }
    }

    /// JSON for envelope encryption by the caller, e.g. `{"kind":"okta","api_token":"…"}`.
    pub fn to_secret_json(&self) -> Secret {
        let z = |s: &Secret| Zeroizing::new(s.expose().to_owned());
        let wire = match self {
            ConnectorCredentials::Entra { client_secret } => CredentialsWire::Entra { client_secret: z(client_secret) },
            ConnectorCredentials::Okta { api_token } => CredentialsWire::Okta { api_token: z(api_token) },
            ConnectorCredentials::Openbao { token } => CredentialsWire::Openbao { token: z(token) },
            ConnectorCredentials::File => CredentialsWire::File,
            ConnectorCredentials::Webhook { signing_secret } => {
                CredentialsWire::Webhook { signing_secret: z(signing_secret) }
            }
        };
        // Serialising a tagged enum of strings cannot fail; the empty fallback would be
        // rejected loudly by `from_secret_json`, never silently accepted.
        Secret::new(serde_json::to_string(&wire).unwrap_or_default())
    }

    pub fn from_secret_json(json: &Secret) -> Result<ConnectorCredentials, CredentialsError> {
        // serde_json's message can quote input, which is secret here: report the position only.
        let wire: CredentialsWire = serde_json::from_str(json.expose()).map_err(|e| CredentialsError {
            line: e.line(),
            column: e.column(),
            category: category(&e),
        })?;
        let s = |z: Zeroizing<String>| Secret::new(z.as_str().to_owned());
        Ok(match wire {
            CredentialsWire::Entra { client_secret } => ConnectorCredentials::Entra { client_secret: s(client_secret) },
            CredentialsWire::Okta { api_token } => ConnectorCredentials::Okta { api_token: s(api_token) },
            CredentialsWire::Openbao { token } => ConnectorCredentials::Openbao { token: s(token) },
            CredentialsWire::File => ConnectorCredentials::File,
            CredentialsWire::Webhook { signing_secret } => {
                ConnectorCredentials::Webhook { signing_secret: s(signing_secret) }
            }
        })
    }
}

fn category(e: &serde_json::Error) -> &'static str {
    match e.classify() {
        serde_json::error::Category::Io => "io",
        serde_json::error::Category::Syntax => "syntax",
        serde_json::error::Category::Data => "data (unknown kind or missing field)",
        serde_json::error::Category::Eof => "unexpected end",
    }
}

impl fmt::Debug for ConnectorCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ConnectorCredentials::{}([redacted])", self.kind())
    }
}

/// Credentials JSON that does not parse. Carries no input text.
#[derive(Debug, thiserror::Error)]
#[error("connector credentials JSON is invalid ({category}) at line {line}, column {column}")]
pub struct CredentialsError {
    pub line: usize,
    pub column: usize,
    pub category: &'static str,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_json_shape_and_defaults() {
        let spec: ConnectorSpec =
            serde_json::from_str(r#"{"kind":"entra","tenant_id":"t","client_id":"c","service_principal_id":"sp"}"#)
                .unwrap();
        assert_eq!(
            spec,
            ConnectorSpec::Entra {
                tenant_id: "t".into(),
                client_id: "c".into(),
                service_principal_id: "sp".into(),
                job_id: None,
                graph_base_url: DEFAULT_GRAPH_BASE_URL.into(),
                login_base_url: DEFAULT_LOGIN_BASE_URL.into(),
                auth: EntraAuth::Bearer,
            }
        );
        // The default is not written back, so stored specs keep their shape.
        assert!(serde_json::to_value(&spec).unwrap().get("auth").is_none());
        let oauth: ConnectorSpec = serde_json::from_str(
            r#"{"kind":"entra","tenant_id":"t","client_id":"c","service_principal_id":"sp","auth":"oauth_client_credentials"}"#,
        )
        .unwrap();
        assert!(matches!(oauth, ConnectorSpec::Entra { auth: EntraAuth::OauthClientCredentials, .. }));
        assert_eq!(serde_json::to_value(&oauth).unwrap()["auth"], "oauth_client_credentials");
        assert!(
            serde_json::from_str::<ConnectorSpec>(
                r#"{"kind":"entra","tenant_id":"t","client_id":"c","service_principal_id":"sp","auth":"basic"}"#
            )
            .is_err()
        );
        let bao: ConnectorSpec =
            serde_json::from_str(r#"{"kind":"openbao","address":"https://bao:8200","path":"fedkey/acme"}"#).unwrap();
        assert!(matches!(&bao, ConnectorSpec::Openbao { mount, .. } if mount == "secret"));
        let json = serde_json::to_value(&bao).unwrap();
        assert_eq!(json["kind"], "openbao");
        assert!(serde_json::from_str::<ConnectorSpec>(r#"{"kind":"ftp"}"#).is_err());
    }

    #[test]
    fn credentials_round_trip_and_stay_redacted() {
        let creds = ConnectorCredentials::Okta { api_token: Secret::new("00abcSSWS-token-value".into()) };
        let json = creds.to_secret_json();
        let v: serde_json::Value = serde_json::from_str(json.expose()).unwrap();
        assert_eq!(v["kind"], "okta");
        assert_eq!(v["api_token"], "00abcSSWS-token-value");
        assert_eq!(ConnectorCredentials::from_secret_json(&json).unwrap(), creds);
        assert!(!format!("{creds:?}").contains("token-value"));
        let file = ConnectorCredentials::File;
        assert_eq!(ConnectorCredentials::from_secret_json(&file.to_secret_json()).unwrap(), file);
    }

    #[test]
    fn bad_credentials_json_never_echoes_input() {
        let bad = Secret::new(r#"{"kind":"okta","api_tokn":"leaky-secret-value"}"#.into());
        let e = ConnectorCredentials::from_secret_json(&bad).unwrap_err();
        assert!(!e.to_string().contains("leaky"), "{e}");
        assert!(!e.to_string().contains("api_tokn"), "{e}");
        assert!(ConnectorCredentials::from_secret_json(&Secret::new(String::new())).is_err());
    }
}
