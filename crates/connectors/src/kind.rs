//! The connector kinds, named the same way in specs, credentials, receipts and errors.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConnectorKind {
    Entra,
    Okta,
    Openbao,
    File,
    Webhook,
}

impl ConnectorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ConnectorKind::Entra => "entra",
            ConnectorKind::Okta => "okta",
            ConnectorKind::Openbao => "openbao",
            ConnectorKind::File => "file",
            ConnectorKind::Webhook => "webhook",
        }
    }
}

impl fmt::Display for ConnectorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
