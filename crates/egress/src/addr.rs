//! The address classifier: which IP addresses fedkey refuses to connect to, and the CIDR
//! ranges an operator may open again (`egress.allow_cidrs`).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// Why an address is refused. Named in errors so an operator sees which rule applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denied {
    Loopback,
    Private,
    LinkLocal,
    UniqueLocal,
    ThisNetwork,
    SharedCgnat,
    Multicast,
    Broadcast,
    Unspecified,
}

impl Denied {
    pub fn as_str(self) -> &'static str {
        match self {
            Denied::Loopback => "loopback",
            Denied::Private => "private (RFC 1918)",
            Denied::LinkLocal => "link-local (includes cloud metadata)",
            Denied::UniqueLocal => "unique-local (fc00::/7)",
            Denied::ThisNetwork => "\"this network\" (0.0.0.0/8)",
            Denied::SharedCgnat => "shared CGNAT (100.64.0.0/10)",
            Denied::Multicast => "multicast",
            Denied::Broadcast => "broadcast",
            Denied::Unspecified => "unspecified",
        }
    }
}

/// The deny list, applied to every address fedkey would connect to. IPv4-mapped IPv6
/// addresses (`::ffff:a.b.c.d`) are judged as the IPv4 address they carry.
pub fn classify(ip: IpAddr) -> Option<Denied> {
    match canonical(ip) {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => classify_v6(v6),
    }
}

/// `::ffff:a.b.c.d` as `a.b.c.d`; every other address unchanged.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

fn classify_v4(ip: Ipv4Addr) -> Option<Denied> {
    let [a, b, ..] = ip.octets();
    if ip.is_loopback() {
        Some(Denied::Loopback)
    } else if ip.is_private() {
        Some(Denied::Private)
    } else if ip.is_link_local() {
        Some(Denied::LinkLocal)
    } else if a == 0 {
        Some(Denied::ThisNetwork)
    } else if a == 100 && (64..128).contains(&b) {
        Some(Denied::SharedCgnat)
    } else if ip.is_multicast() {
        Some(Denied::Multicast)
    } else if ip.is_broadcast() {
        Some(Denied::Broadcast)
    } else {
        None
    }
}

fn classify_v6(ip: Ipv6Addr) -> Option<Denied> {
    let first = ip.segments()[0];
    if ip.is_loopback() {
        Some(Denied::Loopback)
    } else if ip.is_unspecified() {
        Some(Denied::Unspecified)
    } else if first & 0xffc0 == 0xfe80 {
        Some(Denied::LinkLocal)
    } else if first & 0xfe00 == 0xfc00 {
        Some(Denied::UniqueLocal)
    } else if ip.is_multicast() {
        Some(Denied::Multicast)
    } else {
        None
    }
}

/// One CIDR range, such as `10.20.0.0/16` or `fd00:ab::/32`. A bare address is a /32 or /128.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    net: IpAddr,
    prefix: u8,
}

impl Cidr {
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.net, canonical(ip)) {
            (IpAddr::V4(n), IpAddr::V4(a)) => prefix_eq(&n.octets(), &a.octets(), self.prefix),
            (IpAddr::V6(n), IpAddr::V6(a)) => prefix_eq(&n.octets(), &a.octets(), self.prefix),
            _ => false,
        }
    }
}

fn prefix_eq(a: &[u8], b: &[u8], prefix: u8) -> bool {
    let full = usize::from(prefix / 8);
    let rest = prefix % 8;
    if a[..full] != b[..full] {
        return false;
    }
    if rest == 0 {
        return true;
    }
    let mask = 0xffu8 << (8 - rest);
    (a[full] & mask) == (b[full] & mask)
}

impl FromStr for Cidr {
    type Err = String;

    fn from_str(s: &str) -> Result<Cidr, String> {
        let s = s.trim();
        let bad = || format!("{s:?} is not a CIDR range (such as 10.20.0.0/16 or fd00::/8)");
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p.parse::<u8>().map_err(|_| bad())?)),
            None => (s, None),
        };
        let net = canonical(addr.parse::<IpAddr>().map_err(|_| bad())?);
        let max = if net.is_ipv4() { 32 } else { 128 };
        let prefix = prefix.unwrap_or(max);
        if prefix > max {
            return Err(bad());
        }
        if host_bits_set(net, prefix) {
            return Err(format!("{s:?} has host bits set; write the network address"));
        }
        Ok(Cidr { net, prefix })
    }
}

fn host_bits_set(net: IpAddr, prefix: u8) -> bool {
    let octets: Vec<u8> = match net {
        IpAddr::V4(v) => v.octets().to_vec(),
        IpAddr::V6(v) => v.octets().to_vec(),
    };
    octets.iter().enumerate().any(|(i, o)| {
        let start = u32::try_from(i * 8).unwrap_or(u32::MAX);
        let p = u32::from(prefix);
        if start + 8 <= p {
            false
        } else if start >= p {
            *o != 0
        } else {
            let keep = p - start;
            (*o & (0xffu8 >> keep)) != 0
        }
    })
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.net, self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn every_denied_range_and_its_edges() {
        let cases = [
            ("127.0.0.1", Some(Denied::Loopback)),
            ("127.255.255.254", Some(Denied::Loopback)),
            ("::1", Some(Denied::Loopback)),
            ("10.0.0.1", Some(Denied::Private)),
            ("10.255.255.255", Some(Denied::Private)),
            ("172.16.0.1", Some(Denied::Private)),
            ("172.31.255.255", Some(Denied::Private)),
            ("172.32.0.1", None),
            ("172.15.255.255", None),
            ("192.168.1.1", Some(Denied::Private)),
            ("169.254.169.254", Some(Denied::LinkLocal)),
            ("169.254.0.1", Some(Denied::LinkLocal)),
            ("fe80::1", Some(Denied::LinkLocal)),
            ("febf::1", Some(Denied::LinkLocal)),
            ("fec0::1", None),
            ("fc00::1", Some(Denied::UniqueLocal)),
            ("fd12:3456::1", Some(Denied::UniqueLocal)),
            ("0.0.0.0", Some(Denied::ThisNetwork)),
            ("0.1.2.3", Some(Denied::ThisNetwork)),
            ("::", Some(Denied::Unspecified)),
            ("100.64.0.1", Some(Denied::SharedCgnat)),
            ("100.127.255.255", Some(Denied::SharedCgnat)),
            ("100.63.255.255", None),
            ("100.128.0.0", None),
            ("224.0.0.1", Some(Denied::Multicast)),
            ("239.255.255.250", Some(Denied::Multicast)),
            ("ff02::1", Some(Denied::Multicast)),
            ("255.255.255.255", Some(Denied::Broadcast)),
            ("8.8.8.8", None),
            ("2606:4700::1111", None),
            ("93.184.216.34", None),
        ];
        for (addr, expected) in cases {
            assert_eq!(classify(ip(addr)), expected, "{addr}");
        }
    }

    #[test]
    fn v4_mapped_v6_is_judged_as_v4() {
        for (addr, expected) in [
            ("::ffff:127.0.0.1", Some(Denied::Loopback)),
            ("::ffff:10.1.2.3", Some(Denied::Private)),
            ("::ffff:172.16.0.1", Some(Denied::Private)),
            ("::ffff:192.168.0.1", Some(Denied::Private)),
            ("::ffff:169.254.169.254", Some(Denied::LinkLocal)),
            ("::ffff:0.0.0.0", Some(Denied::ThisNetwork)),
            ("::ffff:100.64.0.1", Some(Denied::SharedCgnat)),
            ("::ffff:224.0.0.1", Some(Denied::Multicast)),
            ("::ffff:255.255.255.255", Some(Denied::Broadcast)),
            ("::ffff:8.8.8.8", None),
        ] {
            assert_eq!(classify(ip(addr)), expected, "{addr}");
        }
    }

    #[test]
    fn cidrs_parse_and_match() {
        let c: Cidr = "10.20.0.0/16".parse().unwrap();
        assert!(c.contains(ip("10.20.3.4")) && c.contains(ip("::ffff:10.20.0.1")));
        assert!(!c.contains(ip("10.21.0.1")) && !c.contains(ip("fd00::1")));
        let c: Cidr = "fd00:ab::/32".parse().unwrap();
        assert!(c.contains(ip("fd00:ab:1::1")) && !c.contains(ip("fd00:ac::1")));
        let c: Cidr = "169.254.169.254".parse().unwrap();
        assert!(c.contains(ip("169.254.169.254")) && !c.contains(ip("169.254.169.253")));
        let c: Cidr = "172.16.0.0/12".parse().unwrap();
        assert!(c.contains(ip("172.31.0.1")) && !c.contains(ip("172.32.0.1")));
        for bad in ["10.0.0.0/33", "10.0.0.1/8", "nonsense", "10.0.0.0/x", "fd00::/129", ""] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad}");
        }
        assert_eq!("10.0.0.0/8".parse::<Cidr>().unwrap().to_string(), "10.0.0.0/8");
    }
}
