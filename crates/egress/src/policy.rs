//! The URL policy: which URLs fedkey may call (scheme, credentials, literal addresses), which
//! URLs a document or a redirect may send it to, and which resolved addresses it may connect to.

use std::net::{IpAddr, SocketAddr};

use reqwest::Url;

use crate::addr::{Cidr, Denied, classify};

/// A refusal by policy: what was refused and why, never the URL's credentials or query.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Refusal(pub String);

/// Per target or source: what its configuration explicitly allows beyond the defaults.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UrlRules {
    /// Lab opt-in: plain `http` to a host that is not loopback. Never lets a document or a
    /// redirect downgrade `https`.
    pub allow_http: bool,
}

impl UrlRules {
    pub const HTTPS_ONLY: UrlRules = UrlRules { allow_http: false };
    pub const LAB_HTTP: UrlRules = UrlRules { allow_http: true };
}

/// Which destination addresses are refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Addresses {
    /// The deny list (see [`crate::addr::classify`]) minus the `allow` ranges.
    DenyList { allow: Vec<Cidr> },
    /// Every address: for a destination the operator typed in at the command line (the
    /// CLI's admin client, benchmarks), never for one that configuration or a peer supplies.
    Any,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub addresses: Addresses,
}

impl Policy {
    pub fn deny_list(allow: Vec<Cidr>) -> Policy {
        Policy { addresses: Addresses::DenyList { allow } }
    }

    /// Whether fedkey may connect to `ip`. `loopback_origin`: the configured URL's host is
    /// itself loopback (`127.0.0.0/8`, `::1`, `localhost`), so loopback is what was asked for.
    pub fn check_ip(&self, ip: IpAddr, loopback_origin: bool) -> Result<(), Denied> {
        let Addresses::DenyList { allow } = &self.addresses else { return Ok(()) };
        match classify(ip) {
            None => Ok(()),
            Some(Denied::Loopback) if loopback_origin => Ok(()),
            Some(_) if allow.iter().any(|c| c.contains(ip)) => Ok(()),
            Some(d) => Err(d),
        }
    }

    /// Checks a configured URL: http(s), no credentials, https unless loopback or the lab
    /// opt-in, and a literal IP host not on the deny list.
    pub fn check_url(&self, raw: &str, rules: UrlRules) -> Result<Url, Refusal> {
        let url = parse(raw)?;
        let loopback = is_loopback_host(&url);
        if url.scheme() == "http" && !loopback && !rules.allow_http {
            return Err(Refusal(format!(
                "{} must use https (plain http only to 127.0.0.0/8, ::1 or localhost, or with the lab opt-in allow_http)",
                shown(&url)
            )));
        }
        self.check_literal(&url, loopback)?;
        Ok(url)
    }

    /// Checks a URL that a fetched document names (an OIDC `jwks_uri`): as [`Self::check_url`],
    /// and it may not downgrade `https` to `http` nor reach loopback unless `parent` did.
    pub fn check_derived(&self, parent: &Url, raw: &str, rules: UrlRules) -> Result<Url, Refusal> {
        let url = parse(raw)?;
        if parent.scheme() == "https" && url.scheme() != "https" {
            return Err(Refusal(format!("{} would downgrade https to http", shown(&url))));
        }
        let loopback = is_loopback_host(&url);
        if loopback && !is_loopback_host(parent) {
            return Err(Refusal(format!("{} is loopback, and {} is not", shown(&url), shown(parent))));
        }
        self.check_url(url.as_str(), rules)
    }

    fn check_literal(&self, url: &Url, loopback_origin: bool) -> Result<(), Refusal> {
        let ip = match url.host() {
            Some(url::Host::Ipv4(v4)) => IpAddr::V4(v4),
            Some(url::Host::Ipv6(v6)) => IpAddr::V6(v6),
            _ => return Ok(()),
        };
        self.check_ip(ip, loopback_origin).map_err(|d| refused_address(url.host_str().unwrap_or(""), ip, d))
    }

    /// Keeps the resolved addresses of `host` that may be connected to; none left is a refusal.
    pub fn filter_resolved(&self, host: &str, addrs: Vec<SocketAddr>) -> Result<Vec<SocketAddr>, Refusal> {
        let loopback_origin = is_localhost(host);
        let mut refusal = None;
        let kept: Vec<SocketAddr> = addrs
            .into_iter()
            .filter(|a| match self.check_ip(a.ip(), loopback_origin) {
                Ok(()) => true,
                Err(d) => {
                    refusal.get_or_insert_with(|| refused_address(host, a.ip(), d));
                    false
                }
            })
            .collect();
        match (kept.is_empty(), refusal) {
            (true, Some(r)) => Err(r),
            _ => Ok(kept),
        }
    }
}

fn refused_address(host: &str, ip: IpAddr, d: Denied) -> Refusal {
    Refusal(format!("{host} is {ip}, a {} address; add its range to egress.allow_cidrs to allow it", d.as_str()))
}

fn parse(raw: &str) -> Result<Url, Refusal> {
    let url = Url::parse(raw.trim()).map_err(|e| Refusal(format!("not a URL: {e}")))?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err(Refusal(format!("{} must not carry credentials", shown(&url))));
    }
    if !matches!(url.scheme(), "http" | "https") {
        return Err(Refusal(format!("scheme {:?} is not allowed (http or https only)", url.scheme())));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(Refusal("the URL has no host".into()));
    }
    Ok(url)
}

/// A redirect may only stay on its origin (scheme, host and port): a credential sent to
/// the first never travels to a host nobody configured.
pub fn check_redirect(from: &Url, to: &Url) -> Result<(), Refusal> {
    if from.origin() == to.origin() {
        Ok(())
    } else {
        Err(Refusal(format!("redirect from {} to another origin {} refused", origin(from), origin(to))))
    }
}

/// Whether the URL's host is loopback by its name: `127.0.0.0/8`, `::1` or `localhost`.
pub fn is_loopback_host(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(v4)) => v4.is_loopback(),
        Some(url::Host::Ipv6(v6)) => v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback()),
        Some(url::Host::Domain(d)) => is_localhost(d),
        None => false,
    }
}

fn is_localhost(host: &str) -> bool {
    host.trim_end_matches('.').eq_ignore_ascii_case("localhost")
}

/// The URL as errors show it: no credentials, no query, no fragment.
pub fn shown(url: &Url) -> String {
    let mut u = url.clone();
    let _ = u.set_username("");
    let _ = u.set_password(None);
    u.set_query(None);
    u.set_fragment(None);
    u.to_string()
}

fn origin(url: &Url) -> String {
    url.origin().ascii_serialization()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> Policy {
        Policy::deny_list(vec!["10.20.0.0/16".parse().unwrap()])
    }

    #[test]
    fn configured_urls() {
        let p = policy();
        let ok = |u: &str| p.check_url(u, UrlRules::HTTPS_ONLY).map(|_| ());
        assert!(ok("https://idp.example/x").is_ok());
        assert!(ok("http://127.0.0.1:8080/").is_ok());
        assert!(ok("http://127.9.9.9/").is_ok());
        assert!(ok("http://[::1]:9/").is_ok());
        assert!(ok("http://LOCALHOST:1/").is_ok());
        assert!(ok("http://localhost.evil.example/").unwrap_err().0.contains("https"));
        assert!(ok("http://idp.example/").unwrap_err().0.contains("https"));
        assert!(ok("https://169.254.169.254/latest").unwrap_err().0.contains("link-local"));
        assert!(ok("https://[::ffff:169.254.169.254]/").unwrap_err().0.contains("link-local"));
        assert!(ok("https://10.0.0.1/").unwrap_err().0.contains("allow_cidrs"));
        assert!(ok("https://10.20.3.4/").is_ok(), "opened by allow_cidrs");
        assert!(ok("https://[fd00::1]/").is_err());
        assert!(ok("https://100.64.1.1/").is_err());
        assert!(ok("https://0.0.0.0/").is_err());
        assert!(ok("https://user:pw@idp.example/").unwrap_err().0.contains("credentials"));
        assert!(ok("ftp://idp.example/").is_err());
        assert!(ok("file:///etc/passwd").is_err());
        assert!(ok("not a url").is_err());
        // The lab opt-in allows http, never a denied address.
        assert!(p.check_url("http://app.lab.example/scim", UrlRules::LAB_HTTP).is_ok());
        assert!(p.check_url("http://192.168.1.5/scim", UrlRules::LAB_HTTP).is_err());
        // A refusal never repeats the query (it may carry a secret).
        let e = ok("http://idp.example/x?token=s3cr3t").unwrap_err();
        assert!(!e.0.contains("s3cr3t"), "{e}");
    }

    #[test]
    fn derived_urls_never_downgrade_nor_reach_loopback() {
        let p = policy();
        let https = Url::parse("https://idp.example/.well-known/openid-configuration").unwrap();
        let d = |parent: &Url, u: &str| p.check_derived(parent, u, UrlRules::LAB_HTTP).map(|_| ());
        assert!(d(&https, "https://keys.idp.example/jwks").is_ok(), "another host is fine");
        assert!(d(&https, "http://idp.example/jwks").unwrap_err().0.contains("downgrade"));
        assert!(d(&https, "https://127.0.0.1/jwks").unwrap_err().0.contains("loopback"));
        assert!(d(&https, "https://localhost/jwks").is_err());
        assert!(d(&https, "https://169.254.169.254/jwks").is_err());
        let local = Url::parse("http://127.0.0.1:9/d").unwrap();
        assert!(d(&local, "http://127.0.0.1:10/jwks").is_ok());
        assert!(p.check_derived(&local, "http://idp.example/jwks", UrlRules::HTTPS_ONLY).is_err());
    }

    #[test]
    fn redirects_stay_on_their_origin() {
        let u = |s: &str| Url::parse(s).unwrap();
        assert!(check_redirect(&u("https://a.example/x"), &u("https://a.example/y?z")).is_ok());
        assert!(check_redirect(&u("https://a.example/x"), &u("https://a.example:443/y")).is_ok());
        assert!(check_redirect(&u("https://a.example/x"), &u("http://a.example/x")).is_err());
        assert!(check_redirect(&u("https://a.example/x"), &u("https://b.example/x")).is_err());
        assert!(check_redirect(&u("https://a.example/x"), &u("https://a.example:8443/x")).is_err());
        assert!(check_redirect(&u("http://127.0.0.1:1/x"), &u("http://127.0.0.1:2/x")).is_err());
        assert!(check_redirect(&u("https://a.example/"), &u("https://169.254.169.254/")).is_err());
    }

    #[test]
    fn resolved_addresses_are_filtered() {
        let p = policy();
        let sa = |s: &str| SocketAddr::new(s.parse().unwrap(), 0);
        let e = p.filter_resolved("idp.example", vec![sa("169.254.169.254")]).unwrap_err();
        assert!(e.0.contains("idp.example") && e.0.contains("link-local"), "{e}");
        assert!(p.filter_resolved("idp.example", vec![sa("127.0.0.1")]).is_err(), "a name is not loopback");
        assert!(p.filter_resolved("idp.example", vec![sa("::ffff:10.0.0.1")]).is_err());
        assert_eq!(p.filter_resolved("localhost", vec![sa("127.0.0.1"), sa("::1")]).unwrap().len(), 2);
        let mixed = p.filter_resolved("idp.example", vec![sa("10.0.0.1"), sa("93.184.216.34")]).unwrap();
        assert_eq!(mixed, vec![sa("93.184.216.34")], "only allowed addresses are connected to");
        assert_eq!(p.filter_resolved("idp.example", vec![sa("10.20.0.9")]).unwrap().len(), 1);
        let any = Policy { addresses: Addresses::Any };
        assert!(any.filter_resolved("idp.example", vec![sa("10.0.0.1")]).is_ok());
    }
}
