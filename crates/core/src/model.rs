//! The vocabulary of the domain, each with its stable wire / database spelling.

use std::fmt;
use std::str::FromStr;

use crate::{DomainError, names};

macro_rules! string_enum {
    ($(#[$m:meta])* $name:ident, $kind:literal, { $($variant:ident => $s:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name { $($variant),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $s),+ }
            }
        }

        impl FromStr for $name {
            type Err = DomainError;
            fn from_str(s: &str) -> Result<Self, DomainError> {
                match s {
                    $($s => Ok($name::$variant),)+
                    _ => Err(DomainError::UnknownVariant {
                        kind: $kind,
                        value: s.chars().take(40).collect(),
                        expected: concat!($($s, " "),+),
                    }),
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result { f.write_str(self.as_str()) }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

string_enum!(
    /// Which way provisioning flows through a trust.
    Direction, "direction", { Inbound => "inbound", Outbound => "outbound" });

string_enum!(
    /// What is on the other side of a trust; connectors and quirks key off this.
    PeerKind, "peer kind", { Entra => "entra", Okta => "okta", Generic => "generic" });

string_enum!(TrustStatus, "trust status", { Active => "active", Suspended => "suspended" });

string_enum!(
    /// What a leak report naming one of a trust's keys does: raise an alert only, revoke that
    /// version, or run an emergency rotation (every old version revoked, a new one delivered).
    LeakPolicy, "leak policy", { Report => "report", Revoke => "revoke", Rotate => "rotate" });

string_enum!(
    /// What a directory does with the SCIM `password` attribute a client sends: keep only its
    /// keyed fingerprint (write-only, never returned), drop it, or refuse the request (400).
    /// The IPSIE AL SCIM profile asks for refuse or ignore, as configured.
    PasswordPolicy, "password policy", { Fingerprint => "fingerprint", Ignore => "ignore", Refuse => "refuse" });

impl LeakPolicy {
    /// The policy of a trust that has not chosen one: an inbound key is replaced by an
    /// emergency rotation; an outbound key is issued by the application, so fedkey can only
    /// report it.
    pub fn default_for(direction: Direction) -> LeakPolicy {
        match direction {
            Direction::Inbound => LeakPolicy::Rotate,
            Direction::Outbound => LeakPolicy::Report,
        }
    }
}

string_enum!(
    /// When a pending version (staged by a rotation) starts to authenticate: as soon as it is
    /// staged, or only once every connector of the trust has confirmed its delivery.
    PendingAuth, "pending auth", { Staged => "staged", Delivered => "delivered" });

string_enum!(
/// `pending → current → previous → revoked | expired`.
KeyState, "key state", {
    Pending => "pending", Current => "current", Previous => "previous",
    Revoked => "revoked", Expired => "expired",
});

string_enum!(
    /// Role of an admin token.
    Role, "role", { Admin => "admin", Operator => "operator", Auditor => "auditor" });

impl Role {
    /// Read any admin resource (directories, trusts, key metadata, tokens).
    pub fn can_read(self) -> bool {
        true
    }
    /// Rotate and revoke keys, suspend and resume trusts.
    pub fn can_operate(self) -> bool {
        matches!(self, Role::Admin | Role::Operator)
    }
    /// Create and delete directories, trusts and admin tokens.
    pub fn can_administer(self) -> bool {
        matches!(self, Role::Admin)
    }
    /// Read and export the audit log.
    pub fn can_audit(self) -> bool {
        matches!(self, Role::Admin | Role::Auditor)
    }
}

string_enum!(
    /// Why a rotation runs. An emergency rotation revokes the old version at once.
    RotationKind, "rotation kind", {
    Scheduled => "scheduled", Manual => "manual", Emergency => "emergency", Material => "material",
});

string_enum!(
    /// The persisted step a rotation has reached: `set` (deliver) → `test` (validate) →
    /// `finish` (promote) → `done`; or `canceled`.
    RotationStep, "rotation step", {
    Set => "set", Test => "test", Finish => "finish", Done => "done", Canceled => "canceled",
});

string_enum!(
    /// How a delivered version is proven to work before it is promoted.
    Validation, "validation", {
    None => "none", Connector => "connector", FirstUse => "first_use",
});

/// `DIRECTORY/TRUST`, both parts valid names.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TrustRef {
    pub directory: String,
    pub trust: String,
}

impl FromStr for TrustRef {
    type Err = DomainError;
    fn from_str(s: &str) -> Result<Self, DomainError> {
        let bad = || DomainError::InvalidTrustRef(s.chars().take(80).collect());
        let (d, t) = s.split_once('/').ok_or_else(bad)?;
        names::validate(d)?;
        names::validate(t)?;
        Ok(TrustRef { directory: d.to_owned(), trust: t.to_owned() })
    }
}

/// Serialised as `DIRECTORY/TRUST`.
impl serde::Serialize for TrustRef {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl fmt::Display for TrustRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.directory, self.trust)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enums_round_trip_and_reject_unknowns() {
        for s in KeyState::ALL {
            assert_eq!(s.as_str().parse::<KeyState>().unwrap(), *s);
        }
        let e = "inbond".parse::<Direction>().unwrap_err();
        assert!(e.to_string().contains("inbound outbound"), "{e}");
        let v: Role = serde_json::from_str("\"operator\"").unwrap();
        assert_eq!(v, Role::Operator);
        assert!(serde_json::from_str::<Role>("\"root\"").is_err());
    }

    #[test]
    fn roles_are_least_privilege() {
        assert!(Role::Operator.can_operate() && !Role::Operator.can_administer());
        assert!(!Role::Operator.can_audit());
        assert!(Role::Auditor.can_audit() && !Role::Auditor.can_operate());
        assert!(Role::Admin.can_administer() && Role::Admin.can_audit());
    }

    #[test]
    fn trust_refs_parse() {
        let r: TrustRef = "acme/entra".parse().unwrap();
        assert_eq!(r.to_string(), "acme/entra");
        for bad in ["acme", "acme/", "/entra", "acme/en/tra", "Acme/entra"] {
            assert!(bad.parse::<TrustRef>().is_err(), "{bad}");
        }
    }
}
