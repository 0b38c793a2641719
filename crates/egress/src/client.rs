//! [`Egress`]: the one HTTP client of fedkey. Every outbound request is built here, so every
//! one gets the URL policy, the filtering resolver, the same-origin redirect rule, a connect
//! timeout, an overall timeout and a response size cap.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::{Method, RequestBuilder, Response, Url};

use crate::addr::Cidr;
use crate::error::EgressError;
use crate::policy::{Addresses, Policy, Refusal, UrlRules, check_redirect};

/// Most redirects followed in one call (each must stay on the origin).
const MAX_REDIRECTS: usize = 5;

#[derive(Debug, Clone)]
pub struct EgressConfig {
    pub policy: Policy,
    /// Bound on establishing a connection (TCP and TLS), within the call's overall timeout.
    pub connect_timeout: Duration,
    /// Further trusted root certificates (DER), besides the system's: a private CA.
    pub extra_roots_der: Vec<Vec<u8>>,
}

impl EgressConfig {
    /// The deny list with `allow_cidrs` opened (the `egress.allow_cidrs` setting).
    pub fn new(allow_cidrs: Vec<Cidr>) -> EgressConfig {
        EgressConfig {
            policy: Policy::deny_list(allow_cidrs),
            connect_timeout: Duration::from_secs(5),
            extra_roots_der: Vec::new(),
        }
    }

    /// For a destination an operator typed in (the CLI's admin client, benchmarks): any
    /// address, and the proxy environment variables are honoured.
    pub fn operator() -> EgressConfig {
        EgressConfig { policy: Policy { addresses: Addresses::Any }, ..EgressConfig::new(Vec::new()) }
    }

    pub fn with_root_der(mut self, der: impl Into<Vec<u8>>) -> EgressConfig {
        self.extra_roots_der.push(der.into());
        self
    }
}

/// Parses `egress.allow_cidrs` entries; the error names the bad one.
pub fn parse_allow_cidrs<S: AsRef<str>>(items: &[S]) -> Result<Vec<Cidr>, String> {
    items
        .iter()
        .map(|s| s.as_ref().trim())
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<Cidr>().map_err(|e| format!("egress.allow_cidrs: {e}")))
        .collect()
}

/// Cheap to clone: clones share one connection pool.
#[derive(Clone)]
pub struct Egress {
    client: reqwest::Client,
    policy: Arc<Policy>,
}

impl std::fmt::Debug for Egress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Egress").field("policy", &self.policy).finish_non_exhaustive()
    }
}

impl Egress {
    pub fn new(config: EgressConfig) -> Result<Egress, EgressError> {
        let policy = Arc::new(config.policy.clone());
        let client = build(&config, &policy, None)?;
        Ok(Egress { client, policy })
    }

    /// The deny list with nothing opened: what tests and tools without settings use.
    pub fn strict() -> Result<Egress, EgressError> {
        Egress::new(EgressConfig::new(Vec::new()))
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// Checks a configured URL (see [`Policy::check_url`]): at configuration time, and
    /// again by every request.
    pub fn check_url(&self, raw: &str, rules: UrlRules) -> Result<Url, EgressError> {
        Ok(self.policy.check_url(raw, rules)?)
    }

    /// A request to `url`, which is checked first (a literal address never reaches the
    /// resolver, so it is judged here).
    pub fn request(&self, method: Method, url: &Url, rules: UrlRules) -> Result<RequestBuilder, EgressError> {
        let url = self.policy.check_url(url.as_str(), rules)?;
        Ok(self.client.request(method, url))
    }

    /// Sends with an overall `timeout` (connect, headers and body).
    pub async fn send(&self, req: RequestBuilder, timeout: Duration) -> Result<Response, EgressError> {
        req.timeout(timeout).send().await.map_err(|e| EgressError::from_reqwest(e, timeout))
    }
}

fn build(
    config: &EgressConfig,
    policy: &Arc<Policy>,
    timeout: Option<Duration>,
) -> Result<reqwest::Client, EgressError> {
    let mut roots = Vec::new();
    for der in &config.extra_roots_der {
        roots.push(reqwest::Certificate::from_der(der).map_err(|e| EgressError::Setup(e.to_string()))?);
    }
    let mut builder = reqwest::Client::builder()
        .connect_timeout(config.connect_timeout)
        .redirect(redirect_policy())
        .user_agent(concat!("fedkey/", env!("CARGO_PKG_VERSION")))
        .tls_certs_merge(roots);
    if let Addresses::DenyList { .. } = policy.addresses {
        // A proxy would resolve names itself, past the filtering resolver.
        builder = builder.no_proxy().dns_resolver(FilteringResolver { policy: policy.clone() });
    }
    if let Some(t) = timeout {
        builder = builder.timeout(t);
    }
    builder.build().map_err(|e| EgressError::Setup(e.without_url().to_string()))
}

/// A bare client for load generators against a local server (the benchmarks), built like
/// every other (any address: the operator chose it; same-origin redirects; connect
/// timeout), with `timeout` on every request.
pub fn operator_client(timeout: Duration) -> Result<reqwest::Client, EgressError> {
    let config = EgressConfig::operator();
    build(&config, &Arc::new(config.policy.clone()), Some(timeout))
}

/// Reads the whole body, refusing more than `cap` bytes (announced or streamed): the
/// body is never cut and parsed.
pub async fn read_capped(mut resp: Response, cap: usize, timeout: Duration) -> Result<Vec<u8>, EgressError> {
    if resp.content_length().is_some_and(|n| n > cap as u64) {
        return Err(EgressError::TooLarge(cap));
    }
    let mut buf = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| EgressError::from_reqwest(e, timeout))? {
        if buf.len() + chunk.len() > cap {
            return Err(EgressError::TooLarge(cap));
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf)
}

/// As [`read_capped`], as UTF-8 text (invalid sequences replaced).
pub async fn read_text(resp: Response, cap: usize, timeout: Duration) -> Result<String, EgressError> {
    read_capped(resp, cap, timeout).await.map(|b| String::from_utf8_lossy(&b).into_owned())
}

fn redirect_policy() -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(|attempt| {
        let Some(from) = attempt.previous().last().cloned() else { return attempt.stop() };
        if attempt.previous().len() > MAX_REDIRECTS {
            return attempt.error(Refusal(format!("more than {MAX_REDIRECTS} redirects")));
        }
        match check_redirect(&from, attempt.url()) {
            Ok(()) => attempt.follow(),
            Err(r) => attempt.error(r),
        }
    })
}

/// Resolves names with the system resolver and drops every address the policy refuses;
/// a name left with none fails with a [`Refusal`].
struct FilteringResolver {
    policy: Arc<Policy>,
}

impl Resolve for FilteringResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = self.policy.clone();
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let found: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let kept = policy.filter_resolved(&host, found)?;
            if kept.is_empty() {
                return Err(format!("{host} has no address").into());
            }
            Ok(Box::new(kept.into_iter()) as Addrs)
        })
    }
}
