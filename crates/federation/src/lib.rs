//! Trust material published by a peer IdP (OIDC discovery + JWKS, SAML metadata): parsed under
//! strict limits, fetched on the cadence the document asks for, kept as last-known-good when a
//! fetch fails, expired on time, and accepted automatically only when it overlaps the keys
//! already trusted. Also verifies JWT assertions signed with those keys.
//!
//! Everything that needs "now" takes the injected [`fedkey_core::Clock`] or a [`Timestamp`].

pub mod fetch;
pub mod jwt;
pub mod limits;
pub mod material;
pub mod parse;
pub mod policy;
pub mod watcher;

pub use fedkey_core::clock::Timestamp;
pub use fetch::{FetchConfig, FetchError, FetchedDocument, Fetcher};
pub use jwt::{Claims, InMemoryReplayCache, JwtError, JwtPolicy, ReplayError, ReplayStore, verify, verify_and_consume};
pub use limits::Limits;
pub use material::{Material, MaterialKind, SigningKey};
pub use parse::{Discovery, ParseError, SamlMetadata, parse_jwks, parse_oidc_discovery, parse_saml_metadata};
pub use policy::{Decision, RefreshPolicy, decide};
pub use watcher::{KeyLookupError, RefreshError, Source, WatchEvent, Watcher, WatcherConfig};
