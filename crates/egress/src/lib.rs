//! Every outbound HTTP request of fedkey goes through [`Egress`]: trust-material fetches,
//! connector deliveries, SCIM provisioning, OAuth2 token requests, webhooks and the CLI's
//! calls. One place decides
//!
//! - which URLs may be called ([`Policy::check_url`]: https unless loopback or a lab opt-in;
//!   no credentials in the URL; a literal address on the deny list is refused),
//! - which URLs a document may point to ([`Policy::check_derived`]: never a downgrade to
//!   http, never loopback from a non-loopback source),
//! - which addresses may be connected to, after DNS resolution ([`addr::classify`], opened
//!   by `egress.allow_cidrs`),
//! - where redirects may go (the same origin only, re-checked),
//! - and bounds every call: connect and overall timeouts, a streamed response size cap.
//!
//! It also holds what every caller shared: the [`Redactor`], the `Retry-After` parser and
//! the OAuth2 client-credentials token cache ([`oauth::TokenCache`]).

pub mod addr;
mod client;
mod error;
pub mod oauth;
pub mod policy;
mod redact;
pub mod retry_after;

pub use addr::Cidr;
pub use client::{Egress, EgressConfig, operator_client, parse_allow_cidrs, read_capped, read_text};
pub use error::EgressError;
pub use policy::{Policy, Refusal, UrlRules, shown};
pub use redact::{DEFAULT_LIMIT, Redactor, truncate};
pub use reqwest::{Method, RequestBuilder, Response, StatusCode, Url, header};
