//! Per-trust least-privilege policy: which groups are privileged (glob patterns over
//! `displayName`), which source addresses may use the trust's keys (CIDRs), and how
//! many requests per second the trust may make.
//!
//! Stored in three `trusts` columns: patterns and CIDRs newline-separated (whitespace
//! separated on read), the rate as an integer (0 = unlimited).

use std::fmt;
use std::net::IpAddr;

use serde::Serialize;

use crate::StoreError;

/// Most patterns, and most CIDRs, one trust may carry.
pub const MAX_ENTRIES: usize = 256;
/// Longest pattern, in characters.
pub const MAX_PATTERN_CHARS: usize = 256;
/// Highest rate limit, requests per second.
pub const MAX_RATE_LIMIT: i64 = 1_000_000;

/// Why a CIDR was refused. Each variant shows the input (its first 64 characters).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CidrError {
    #[error("{input:?} is not a CIDR (e.g. 10.0.0.0/8, 2001:db8::/32)")]
    NotAnAddress {
        input: String,
        #[source]
        source: std::net::AddrParseError,
    },
    #[error("{input:?}: the prefix length must be a number")]
    PrefixNotANumber { input: String },
    #[error("{input:?}: prefix length must be at most {max}")]
    PrefixTooLong { input: String, max: u8 },
    #[error("{input:?}: address has bits set beyond the /{prefix} prefix")]
    HostBitsSet { input: String, prefix: u8 },
}

/// Why a privileged-group pattern was refused (see [`validate_pattern`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatternError {
    #[error("a privileged-group pattern must not be empty")]
    Empty,
    #[error("pattern {shown:?}…: at most {max} characters", max = MAX_PATTERN_CHARS)]
    TooLong { shown: String },
    #[error("pattern {shown:?}: character {c:?} is not allowed (only * and ? are special; use ? for a space)")]
    Character { shown: String, c: char },
}

/// Why a trust policy was refused: a 400 with this text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    #[error("at most {max} privileged groups and {max} sources", max = MAX_ENTRIES)]
    TooManyEntries,
    #[error("privileged_groups: {0}")]
    PrivilegedGroup(#[source] PatternError),
    #[error("allowed_sources: {0}")]
    AllowedSource(#[source] CidrError),
    #[error("rate_limit: must be between 0 (unlimited) and {max} requests per second", max = MAX_RATE_LIMIT)]
    RateLimit,
}

/// An IPv4 or IPv6 network: an address with no host bits set and a prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Parses `10.0.0.0/8`, `2001:db8::/32`, or a bare address (a single host).
    pub fn parse(s: &str) -> Result<Cidr, CidrError> {
        let shown = || -> String { s.chars().take(64).collect() };
        let (a, p) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = a.parse().map_err(|source| CidrError::NotAnAddress { input: shown(), source })?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match p {
            None => max,
            Some(p) if !p.is_empty() && p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit()) => p
                .parse::<u8>()
                .ok()
                .filter(|n| *n <= max)
                .ok_or_else(|| CidrError::PrefixTooLong { input: shown(), max })?,
            Some(_) => return Err(CidrError::PrefixNotANumber { input: shown() }),
        };
        let c = Cidr { addr, prefix };
        if c.network() != bits(addr) {
            return Err(CidrError::HostBitsSet { input: shown(), prefix });
        }
        Ok(c)
    }

    fn mask(&self) -> u128 {
        let width: u32 = if self.addr.is_ipv4() { 32 } else { 128 };
        let host = width - u32::from(self.prefix);
        let all = if width == 32 { u128::from(u32::MAX) } else { u128::MAX };
        if host >= 128 { 0 } else { all & !((1u128 << host).wrapping_sub(1)) }
    }

    fn network(&self) -> u128 {
        bits(self.addr) & self.mask()
    }

    /// Whether `ip` lies in this network. IPv4-mapped IPv6 addresses count as IPv4.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        ip.is_ipv4() == self.addr.is_ipv4() && bits(ip) & self.mask() == self.network()
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

fn bits(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(a) => u128::from(u32::from(a)),
        IpAddr::V6(a) => u128::from(a),
    }
}

/// Checks a group-name pattern: non-empty, at most [`MAX_PATTERN_CHARS`] characters, no
/// whitespace or control characters (use `?` for a space), none of `[ ] { } \` (kept for
/// future syntax).
pub fn validate_pattern(p: &str) -> Result<(), PatternError> {
    let shown = || -> String { p.chars().take(64).collect() };
    if p.is_empty() {
        return Err(PatternError::Empty);
    }
    if p.chars().count() > MAX_PATTERN_CHARS {
        return Err(PatternError::TooLong { shown: shown() });
    }
    if let Some(c) = p.chars().find(|c| c.is_whitespace() || c.is_control() || "[]{}\\".contains(*c)) {
        return Err(PatternError::Character { shown: shown(), c });
    }
    Ok(())
}

/// Case-insensitive glob match: `*` any run of characters (also none), `?` exactly one.
/// Linear backtracking over one star, so no input makes it slow.
pub fn glob_match(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.chars().flat_map(char::to_lowercase).collect();
    let n: Vec<char> = name.chars().flat_map(char::to_lowercase).collect();
    let (mut pi, mut ni) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        match p.get(pi) {
            Some('*') => {
                star = Some((pi, ni));
                pi += 1;
            }
            Some(c) if *c == '?' || *c == n[ni] => {
                pi += 1;
                ni += 1;
            }
            _ => match star {
                Some((sp, sn)) => {
                    pi = sp + 1;
                    ni = sn + 1;
                    star = Some((sp, sn + 1));
                }
                None => return false,
            },
        }
    }
    p[pi.min(p.len())..].iter().all(|c| *c == '*')
}

/// A trust's policy. The default restricts nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct TrustPolicy {
    /// Glob patterns over group `displayName`s (case-insensitive).
    pub privileged_groups: Vec<String>,
    /// Source networks allowed to use the trust's keys; empty: any.
    #[serde(serialize_with = "ser_cidrs")]
    pub allowed_sources: Vec<Cidr>,
    /// Requests per second (burst of the same size); 0: unlimited.
    pub rate_limit: i64,
}

fn ser_cidrs<S: serde::Serializer>(c: &[Cidr], ser: S) -> Result<S::Ok, S::Error> {
    ser.collect_seq(c.iter().map(ToString::to_string))
}

impl TrustPolicy {
    /// Validates caller input; every problem is a 400-style [`StoreError::Policy`].
    pub fn parse<P: AsRef<str>, C: AsRef<str>>(
        privileged_groups: &[P],
        allowed_sources: &[C],
        rate_limit: i64,
    ) -> Result<TrustPolicy, StoreError> {
        if privileged_groups.len() > MAX_ENTRIES || allowed_sources.len() > MAX_ENTRIES {
            return Err(PolicyError::TooManyEntries.into());
        }
        let mut patterns: Vec<String> = Vec::new();
        for p in privileged_groups {
            let p = p.as_ref().trim();
            validate_pattern(p).map_err(PolicyError::PrivilegedGroup)?;
            if !patterns.iter().any(|q| q == p) {
                patterns.push(p.to_owned());
            }
        }
        let mut cidrs: Vec<Cidr> = Vec::new();
        for c in allowed_sources {
            let c = Cidr::parse(c.as_ref().trim()).map_err(PolicyError::AllowedSource)?;
            if !cidrs.contains(&c) {
                cidrs.push(c);
            }
        }
        if !(0..=MAX_RATE_LIMIT).contains(&rate_limit) {
            return Err(PolicyError::RateLimit.into());
        }
        Ok(TrustPolicy { privileged_groups: patterns, allowed_sources: cidrs, rate_limit })
    }

    /// Parses the stored columns.
    pub fn from_stored(
        privileged_groups: &str,
        allowed_sources: &str,
        rate_limit: i64,
    ) -> Result<TrustPolicy, StoreError> {
        let p: Vec<&str> = privileged_groups.split_whitespace().collect();
        let c: Vec<&str> = allowed_sources.split_whitespace().collect();
        TrustPolicy::parse(&p, &c, rate_limit).map_err(|_| StoreError::Corrupt("trusts policy columns".into()))
    }

    pub(crate) fn stored_groups(&self) -> String {
        self.privileged_groups.join("\n")
    }

    pub(crate) fn stored_sources(&self) -> String {
        self.allowed_sources.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n")
    }

    pub fn sources(&self) -> Vec<String> {
        self.allowed_sources.iter().map(ToString::to_string).collect()
    }

    /// The first pattern matching group `name`, if it is privileged.
    pub fn privileged_match(&self, name: &str) -> Option<&str> {
        self.privileged_groups.iter().find(|p| glob_match(p, name)).map(String::as_str)
    }

    /// Whether a request from `source` (an IP address as text) may use the trust. With
    /// an allow-list, an unknown or unparsable source is refused.
    pub fn source_allowed(&self, source: Option<&str>) -> bool {
        if self.allowed_sources.is_empty() {
            return true;
        }
        match source.and_then(|s| s.parse::<IpAddr>().ok()) {
            Some(ip) => self.allowed_sources.iter().any(|c| c.contains(ip)),
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn cidr_parse_and_contains() {
        let c = Cidr::parse("10.0.0.0/8").unwrap();
        assert!(c.contains(ip("10.255.1.2")));
        assert!(!c.contains(ip("11.0.0.1")));
        assert!(!c.contains(ip("::1")));
        assert!(c.contains(ip("::ffff:10.1.2.3")), "IPv4-mapped IPv6 counts as IPv4");
        let all4 = Cidr::parse("0.0.0.0/0").unwrap();
        assert!(all4.contains(ip("203.0.113.9")) && !all4.contains(ip("2001:db8::1")));
        let host = Cidr::parse("127.0.0.1").unwrap();
        assert_eq!(host.to_string(), "127.0.0.1/32");
        assert!(host.contains(ip("127.0.0.1")) && !host.contains(ip("127.0.0.2")));
        let v6 = Cidr::parse("2001:db8::/32").unwrap();
        assert!(v6.contains(ip("2001:db8:ffff::1")) && !v6.contains(ip("2001:db9::1")));
        assert!(Cidr::parse("::/0").unwrap().contains(ip("::1")));
        assert!(Cidr::parse("::1/128").unwrap().contains(ip("::1")));
        assert_eq!(Cidr::parse("192.168.1.0/24").unwrap().to_string(), "192.168.1.0/24");
    }

    #[test]
    fn cidr_rejects_bad_input() {
        for bad in [
            "",
            "/",
            "10.0.0.0/",
            "10.0.0.0/33",
            "10.0.0.0/-1",
            "10.0.0.0/+8",
            "10.0.0.0/8/8",
            "10.0.0/8",
            "x",
            "10.0.0.1/8",
            "::1/129",
            "2001:db8::1/32",
            "10.0.0.0/0008",
            " 10.0.0.0/8",
            "10.0.0.0/ 8",
            "999.0.0.0/8",
            "10.0.0.0/٣",
        ] {
            assert!(Cidr::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn glob_matches() {
        assert!(glob_match("admin*", "Administrators"));
        assert!(glob_match("*ADMINS", "domain admins"));
        assert!(glob_match("Domain?Admins", "Domain Admins"));
        assert!(glob_match("*", ""));
        assert!(glob_match("a*b*c", "aXXbYYc"));
        assert!(glob_match("a*b*c", "abc"));
        assert!(!glob_match("a*b*c", "acb"));
        assert!(!glob_match("admin", "admins"));
        assert!(!glob_match("admin?", "admin"));
        assert!(glob_match("ÉQUIPE*", "équipe-root"));
        assert!(!glob_match("a?", "a"));
        assert!(glob_match("**x", "x"));
        // Pathological input stays fast (no exponential backtracking).
        let name = "a".repeat(5000);
        assert!(!glob_match(&format!("{}b", "*a".repeat(100)), &name));
    }

    #[test]
    fn patterns_validate() {
        for ok in ["admin*", "*-owners", "Domain?Admins", "x"] {
            validate_pattern(ok).unwrap();
        }
        for bad in ["", "has space", "a[b]", "{x}", "a\\b", "tab\there", &"x".repeat(300)] {
            assert!(validate_pattern(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn policy_parse_store_and_check() {
        let p = TrustPolicy::parse(&["admin*", "admin*", "*owners"], &["127.0.0.0/8", "::1"], 5).unwrap();
        assert_eq!(p.privileged_groups, vec!["admin*", "*owners"]);
        let back = TrustPolicy::from_stored(&p.stored_groups(), &p.stored_sources(), p.rate_limit).unwrap();
        assert_eq!(back, p);
        assert_eq!(p.privileged_match("Admins"), Some("admin*"));
        assert_eq!(p.privileged_match("staff"), None);
        assert!(p.source_allowed(Some("127.0.0.1")) && p.source_allowed(Some("::1")));
        assert!(!p.source_allowed(Some("10.0.0.1")) && !p.source_allowed(None) && !p.source_allowed(Some("junk")));
        assert!(TrustPolicy::default().source_allowed(None));
        assert!(TrustPolicy::parse::<&str, &str>(&[], &[], -1).is_err());
        assert!(TrustPolicy::parse::<&str, &str>(&[], &[], MAX_RATE_LIMIT + 1).is_err());
        assert!(TrustPolicy::parse::<&str, &str>(&["a b"], &[], 0).is_err());
        assert!(TrustPolicy::parse::<&str, &str>(&[], &["300.0.0.0/8"], 0).is_err());
    }

    /// Callers can tell the failures apart; the text users see is what it always was.
    #[test]
    fn errors_are_typed_and_keep_their_messages() {
        let e = Cidr::parse("x").unwrap_err();
        assert!(matches!(&e, CidrError::NotAnAddress { input, .. } if input == "x"));
        assert!(std::error::Error::source(&e).is_some(), "the address parser's error is kept");
        assert_eq!(e.to_string(), r#""x" is not a CIDR (e.g. 10.0.0.0/8, 2001:db8::/32)"#);
        assert_eq!(
            Cidr::parse("10.0.0.0/33").unwrap_err(),
            CidrError::PrefixTooLong { input: "10.0.0.0/33".into(), max: 32 }
        );
        assert_eq!(
            Cidr::parse("10.0.0.0/+8").unwrap_err().to_string(),
            r#""10.0.0.0/+8": the prefix length must be a number"#
        );
        assert_eq!(
            Cidr::parse("10.0.0.1/8").unwrap_err().to_string(),
            r#""10.0.0.1/8": address has bits set beyond the /8 prefix"#
        );
        assert_eq!(validate_pattern("").unwrap_err(), PatternError::Empty);
        let long = "x".repeat(300);
        assert_eq!(
            validate_pattern(&long).unwrap_err().to_string(),
            format!("pattern {:?}…: at most 256 characters", &long[..64])
        );

        let err = TrustPolicy::parse::<&str, &str>(&["a b"], &[], 0).unwrap_err();
        assert!(matches!(
            err,
            StoreError::Policy(PolicyError::PrivilegedGroup(PatternError::Character { c: ' ', .. }))
        ));
        assert_eq!(
            err.to_string(),
            r#"privileged_groups: pattern "a b": character ' ' is not allowed (only * and ? are special; use ? for a space)"#
        );
        let err = TrustPolicy::parse::<&str, &str>(&[], &["10.0.0.1/8"], 0).unwrap_err();
        assert!(matches!(
            err,
            StoreError::Policy(PolicyError::AllowedSource(CidrError::HostBitsSet { prefix: 8, .. }))
        ));
        assert_eq!(err.to_string(), r#"allowed_sources: "10.0.0.1/8": address has bits set beyond the /8 prefix"#);
        let err = TrustPolicy::parse::<&str, &str>(&[], &[], -1).unwrap_err();
        assert_eq!(err.to_string(), "rate_limit: must be between 0 (unlimited) and 1000000 requests per second");
        let many = vec!["x"; MAX_ENTRIES + 1];
        let err = TrustPolicy::parse::<&str, &str>(&many, &[], 0).unwrap_err();
        assert_eq!(err.to_string(), "at most 256 privileged groups and 256 sources");
    }
}
