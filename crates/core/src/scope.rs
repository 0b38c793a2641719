//! Least privilege for provisioning keys. A key version carries a set of scopes; the
//! SCIM service checks them per request.

use std::collections::BTreeSet;
use std::fmt;

use crate::{Direction, DomainError};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Scope {
    UsersRead,
    UsersWrite,
    GroupsRead,
    GroupsWrite,
    GroupsPrivileged,
    Bulk,
    /// An OpenID SSF receiver: manage its own event streams of the directory. Grants no
    /// access to SCIM resources, so a receiver trust carries this scope alone.
    Ssf,
}

impl Scope {
    pub const ALL: [Scope; 7] = [
        Scope::UsersRead,
        Scope::UsersWrite,
        Scope::GroupsRead,
        Scope::GroupsWrite,
        Scope::GroupsPrivileged,
        Scope::Bulk,
        Scope::Ssf,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::UsersRead => "users:read",
            Scope::UsersWrite => "users:write",
            Scope::GroupsRead => "groups:read",
            Scope::GroupsWrite => "groups:write",
            Scope::GroupsPrivileged => "groups:privileged",
            Scope::Bulk => "bulk",
            Scope::Ssf => "ssf",
        }
    }

    pub fn parse(s: &str) -> Result<Scope, DomainError> {
        Scope::ALL
            .into_iter()
            .find(|x| x.as_str() == s)
            .ok_or_else(|| DomainError::UnknownScope(s.chars().take(40).collect()))
    }
}

/// An ordered set of scopes, rendered space-separated (`users:read users:write`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ScopeSet(BTreeSet<Scope>);

impl ScopeSet {
    /// What a new inbound trust gets unless told otherwise: full provisioning, but not
    /// the right to grant privileged groups.
    pub fn default_inbound() -> ScopeSet {
        ScopeSet(
            [Scope::UsersRead, Scope::UsersWrite, Scope::GroupsRead, Scope::GroupsWrite, Scope::Bulk]
                .into_iter()
                .collect(),
        )
    }

    pub fn parse_list<S: AsRef<str>>(items: &[S]) -> Result<ScopeSet, DomainError> {
        items.iter().map(|s| Scope::parse(s.as_ref())).collect::<Result<_, _>>().map(ScopeSet)
    }

    /// Parses the stored space-separated form.
    pub fn parse_stored(s: &str) -> Result<ScopeSet, DomainError> {
        let items: Vec<&str> = s.split_whitespace().collect();
        Self::parse_list(&items)
    }

    /// Scopes describe what a peer may do *to* fedkey, so only inbound trusts carry any.
    pub fn check_direction(&self, direction: Direction) -> Result<(), DomainError> {
        match (direction, self.0.iter().next()) {
            (Direction::Outbound, Some(s)) => Err(DomainError::ScopeNotAllowed(s.as_str().into(), "outbound")),
            _ => Ok(()),
        }
    }

    pub fn contains(&self, s: Scope) -> bool {
        self.0.contains(&s)
    }

    pub fn is_subset(&self, other: &ScopeSet) -> bool {
        self.0.is_subset(&other.0)
    }

    pub fn to_vec(&self) -> Vec<String> {
        self.0.iter().map(|s| s.as_str().to_owned()).collect()
    }

    pub fn iter(&self) -> impl Iterator<Item = Scope> + '_ {
        self.0.iter().copied()
    }
}

impl fmt::Display for ScopeSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_vec().join(" "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_render() {
        let s = ScopeSet::parse_list(&["users:write", "users:read", "users:read"]).unwrap();
        assert_eq!(s.to_string(), "users:read users:write");
        assert_eq!(ScopeSet::parse_stored(&s.to_string()).unwrap(), s);
        assert!(ScopeSet::parse_list(&["users:admin"]).is_err());
        assert!(!ScopeSet::default_inbound().contains(Scope::GroupsPrivileged));
        // A provisioning trust is no event receiver unless asked for.
        assert!(!ScopeSet::default_inbound().contains(Scope::Ssf));
        assert_eq!(ScopeSet::parse_list(&["ssf"]).unwrap().to_string(), "ssf");
    }

    #[test]
    fn outbound_trusts_carry_no_scopes() {
        assert!(ScopeSet::default_inbound().check_direction(Direction::Outbound).is_err());
        assert!(ScopeSet::default().check_direction(Direction::Outbound).is_ok());
    }
}
