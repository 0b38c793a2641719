//! Bearer JWT assertions signed by the peer IdP's published keys.
//!
//! Signature checks use jsonwebtoken; every time check uses the caller's `now` (the library's
//! own exp/nbf checks read the system clock and are switched off). `none` and the HMAC
//! algorithms are refused whatever the policy says: a published key is public, so an HMAC
//! "signed" with it proves nothing.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Mutex;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use fedkey_core::clock::Timestamp;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value};

use crate::material::SigningKey;

/// Where a token names the client application it was issued to: `azp` (OpenID Connect,
/// Entra v2), `appid` (Entra v1), `cid` (Okta access tokens).
pub const CLIENT_ID_CLAIMS: [&str; 3] = ["azp", "appid", "cid"];

/// Longest accepted token, in bytes.
const MAX_TOKEN_BYTES: usize = 16 * 1024;

const DEFAULT_ALGS: [Algorithm; 7] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwtPolicy {
    /// Exact `iss` required.
    pub issuer: String,
    /// `aud` must contain at least one of these.
    pub audiences: Vec<String>,
    /// Accepted `alg` values; HMAC algorithms in this list are ignored.
    pub allowed_algs: Vec<Algorithm>,
    /// Clock skew tolerated on exp/nbf/iat.
    pub leeway: Duration,
    /// Longest accepted validity (exp minus iat, or exp minus now without iat).
    pub max_lifetime: Duration,
    pub require_jti: bool,
    /// When not empty, `sub` must be one of these (the IdP's provisioning identity).
    pub subjects: Vec<String>,
    /// When not empty, the client application the token was issued to must be one of these,
    /// read from [`CLIENT_ID_CLAIMS`]. A token must carry at least one of those claims, and
    /// every one it carries must be listed.
    pub client_ids: Vec<String>,
    /// When set, the header's `typ` must be this (case-insensitive, `application/` optional,
    /// RFC 7515 §4.1.9), e.g. `at+jwt` for RFC 9068 access tokens.
    pub token_type: Option<String>,
}

impl JwtPolicy {
    pub fn new(issuer: impl Into<String>, audiences: Vec<String>) -> Self {
        Self {
            issuer: issuer.into(),
            audiences,
            allowed_algs: DEFAULT_ALGS.to_vec(),
            leeway: Duration::from_secs(60),
            max_lifetime: Duration::from_secs(3600),
            require_jti: true,
            subjects: Vec::new(),
            client_ids: Vec::new(),
            token_type: None,
        }
    }

    fn allows(&self, alg: Algorithm) -> bool {
        !matches!(alg, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512) && self.allowed_algs.contains(&alg)
    }
}

/// The verified claims. `extra` holds every claim not broken out.
#[derive(Debug, Clone, PartialEq)]
pub struct Claims {
    pub iss: String,
    pub sub: Option<String>,
    pub aud: Vec<String>,
    /// Seconds since the epoch.
    pub exp: i64,
    pub nbf: Option<i64>,
    pub iat: Option<i64>,
    pub jti: Option<String>,
    /// The kid of the key that verified the token, if it had one.
    pub kid: Option<String>,
    pub extra: Map<String, Value>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwtError {
    #[error("malformed token: {0}")]
    Malformed(String),
    #[error("algorithm {0} is not allowed")]
    AlgNotAllowed(String),
    #[error("no published signing key has kid {0:?}")]
    UnknownKid(String),
    #[error("no published key fits algorithm {0}")]
    NoUsableKey(String),
    #[error("signature does not verify")]
    BadSignature,
    #[error("issuer {found:?} is not the trusted issuer")]
    BadIssuer { found: String },
    #[error("audience does not include this service")]
    BadAudience,
    #[error("token expired at {exp} (now {now})")]
    Expired { exp: i64, now: i64 },
    #[error("token not valid before {nbf} (now {now})")]
    NotYetValid { nbf: i64, now: i64 },
    #[error("token lifetime of {lifetime_secs} s exceeds the {max_secs} s maximum")]
    LifetimeTooLong { lifetime_secs: i64, max_secs: u64 },
    #[error("token has no jti")]
    MissingJti,
    #[error("token was already used (jti seen before)")]
    Replayed,
    #[error("replay cache is full; refusing rather than forgetting")]
    ReplayCacheFull,
    #[error("subject {found:?} is not allowed on this trust")]
    SubjectNotAllowed { found: String },
    #[error("client application {found:?} (azp/appid/cid) is not allowed on this trust")]
    ClientNotAllowed { found: String },
    #[error("token type {found:?} is not the required type")]
    WrongType { found: String },
}

/// Verifies signature, issuer, audience and times. Key choice: the header's `kid` must name a
/// key in `keys` ([`JwtError::UnknownKid`] otherwise, so the caller can ask the watcher to
/// refresh); without a kid, each key that fits the algorithm is tried.
pub fn verify(token: &str, policy: &JwtPolicy, keys: &[SigningKey], now: Timestamp) -> Result<Claims, JwtError> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(JwtError::Malformed(format!("longer than {MAX_TOKEN_BYTES} bytes")));
    }
    let header = read_header(token)?;
    let alg_name = header.get("alg").and_then(Value::as_str).ok_or_else(|| JwtError::Malformed("no alg".into()))?;
    let alg: Algorithm = alg_name.parse().map_err(|_| JwtError::AlgNotAllowed(printable(alg_name)))?;
    if !policy.allows(alg) {
        return Err(JwtError::AlgNotAllowed(alg_name.to_owned()));
    }
    // RFC 7515 §4.1.11: a critical extension we do not understand invalidates the token.
    if header.contains_key("crit") {
        return Err(JwtError::Malformed("unsupported critical header".into()));
    }
    let typ = match header.get("typ") {
        None => None,
        Some(Value::String(t)) => Some(t.clone()),
        Some(_) => return Err(JwtError::Malformed("typ is not a string".into())),
    };
    let kid = match header.get("kid") {
        None => None,
        Some(Value::String(k)) => Some(k.clone()),
        Some(_) => return Err(JwtError::Malformed("kid is not a string".into())),
    };

    let candidates: Vec<&SigningKey> = match &kid {
        Some(k) => {
            let found: Vec<&SigningKey> = keys.iter().filter(|key| key.kid.as_deref() == Some(k)).collect();
            if found.is_empty() {
                return Err(JwtError::UnknownKid(printable(k)));
            }
            found
        }
        None => keys.iter().collect(),
    };
    let usable: Vec<(&SigningKey, DecodingKey)> =
        candidates.into_iter().filter_map(|k| decoding_key(k, alg).map(|dk| (k, dk))).collect();
    if usable.is_empty() {
        return Err(JwtError::NoUsableKey(alg_name.to_owned()));
    }

    let mut validation = Validation::new(alg);
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.validate_aud = false;
    validation.required_spec_claims.clear();
    let mut last_error = JwtError::BadSignature;
    for (key, dk) in usable {
        match jsonwebtoken::decode::<Map<String, Value>>(token, &dk, &validation) {
            Ok(data) => {
                let claims = check_claims(data.claims, policy, now, key.kid.clone())?;
                check_identity(&claims, typ.as_deref(), policy)?;
                return Ok(claims);
            }
            Err(e) => {
                last_error = match e.kind() {
                    jsonwebtoken::errors::ErrorKind::InvalidSignature => JwtError::BadSignature,
                    jsonwebtoken::errors::ErrorKind::InvalidAlgorithm => JwtError::AlgNotAllowed(alg_name.to_owned()),
                    // The key could not be used with this algorithm (e.g. malformed modulus).
                    jsonwebtoken::errors::ErrorKind::InvalidRsaKey(_)
                    | jsonwebtoken::errors::ErrorKind::InvalidEcdsaKey
                    | jsonwebtoken::errors::ErrorKind::InvalidEddsaKey
                    | jsonwebtoken::errors::ErrorKind::InvalidKeyFormat => JwtError::BadSignature,
                    _ => JwtError::Malformed(e.to_string()),
                };
                if !matches!(last_error, JwtError::BadSignature) {
                    return Err(last_error);
                }
            }
        }
    }
    Err(last_error)
}

/// [`verify`], then records the jti in `replay` (namespaced by issuer) so the token cannot be
/// presented twice before it expires.
pub async fn verify_and_consume<R: ReplayStore>(
    token: &str,
    policy: &JwtPolicy,
    keys: &[SigningKey],
    now: Timestamp,
    replay: &R,
) -> Result<Claims, JwtError> {
    let claims = verify(token, policy, keys, now)?;
    if let Some(jti) = &claims.jti {
        let exp = Timestamp(claims.exp.saturating_mul(1_000_000)).saturating_add(policy.leeway);
        let key = format!("{}\u{0}{}", claims.iss, jti);
        replay.check_and_insert(&key, exp, now).await.map_err(|e| match e {
            ReplayError::Replayed => JwtError::Replayed,
            ReplayError::Full => JwtError::ReplayCacheFull,
        })?;
    }
    Ok(claims)
}

fn read_header(token: &str) -> Result<Map<String, Value>, JwtError> {
    let mut parts = token.split('.');
    let (Some(h), Some(_), Some(_), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return Err(JwtError::Malformed("not three dot-separated parts".into()));
    };
    let bytes = URL_SAFE_NO_PAD.decode(h).map_err(|_| JwtError::Malformed("header is not base64url".into()))?;
    serde_json::from_slice::<Map<String, Value>>(&bytes)
        .map_err(|_| JwtError::Malformed("header is not a JSON object".into()))
}

/// Attacker-chosen strings are shortened and stripped of control characters before they reach
/// an error message (and from there a log line).
fn printable(s: &str) -> String {
    s.chars().filter(|c| !c.is_control()).take(64).collect()
}

fn decoding_key(key: &SigningKey, alg: Algorithm) -> Option<DecodingKey> {
    let jwk = key.jwk.as_ref()?.as_object()?;
    if let Some(key_alg) = &key.alg
        && key_alg != alg_str(alg)
        && !(alg == Algorithm::EdDSA && key_alg == "Ed25519")
    {
        return None;
    }
    let s = |name: &str| jwk.get(name).and_then(Value::as_str);
    match (s("kty")?, alg) {
        (
            "RSA",
            Algorithm::RS256
            | Algorithm::RS384
            | Algorithm::RS512
            | Algorithm::PS256
            | Algorithm::PS384
            | Algorithm::PS512,
        ) => DecodingKey::from_rsa_components(s("n")?, s("e")?).ok(),
        ("EC", Algorithm::ES256) if s("crv")? == "P-256" => DecodingKey::from_ec_components(s("x")?, s("y")?).ok(),
        ("EC", Algorithm::ES384) if s("crv")? == "P-384" => DecodingKey::from_ec_components(s("x")?, s("y")?).ok(),
        ("OKP", Algorithm::EdDSA) if s("crv")? == "Ed25519" => DecodingKey::from_ed_components(s("x")?).ok(),
        _ => None,
    }
}

fn alg_str(alg: Algorithm) -> &'static str {
    match alg {
        Algorithm::HS256 => "HS256",
        Algorithm::HS384 => "HS384",
        Algorithm::HS512 => "HS512",
        Algorithm::ES256 => "ES256",
        Algorithm::ES384 => "ES384",
        Algorithm::RS256 => "RS256",
        Algorithm::RS384 => "RS384",
        Algorithm::RS512 => "RS512",
        Algorithm::PS256 => "PS256",
        Algorithm::PS384 => "PS384",
        Algorithm::PS512 => "PS512",
        Algorithm::EdDSA => "EdDSA",
        _ => "unsupported",
    }
}

fn int_claim(claims: &Map<String, Value>, name: &'static str) -> Result<Option<i64>, JwtError> {
    match claims.get(name) {
        None => Ok(None),
        // NumericDate may carry a fraction; whole seconds are enough here.
        Some(Value::Number(n)) => n
            .as_i64()
            .or_else(|| n.as_f64().filter(|f| f.is_finite() && f.abs() < 1e15).map(|f| f as i64))
            .map(Some)
            .ok_or_else(|| JwtError::Malformed(format!("{name} is not a NumericDate"))),
        Some(_) => Err(JwtError::Malformed(format!("{name} is not a NumericDate"))),
    }
}

fn check_claims(
    mut claims: Map<String, Value>,
    policy: &JwtPolicy,
    now: Timestamp,
    kid: Option<String>,
) -> Result<Claims, JwtError> {
    let now_s = now.0.div_euclid(1_000_000);
    let leeway = i64::try_from(policy.leeway.as_secs()).unwrap_or(i64::MAX);

    let iss = match claims.remove("iss") {
        Some(Value::String(s)) => s,
        _ => return Err(JwtError::BadIssuer { found: String::new() }),
    };
    if iss != policy.issuer {
        return Err(JwtError::BadIssuer { found: printable(&iss) });
    }
    let aud: Vec<String> = match claims.remove("aud") {
        Some(Value::String(s)) => vec![s],
        Some(Value::Array(items)) => items.into_iter().filter_map(|v| v.as_str().map(str::to_owned)).collect(),
        _ => Vec::new(),
    };
    if !aud.iter().any(|a| policy.audiences.contains(a)) {
        return Err(JwtError::BadAudience);
    }

    let exp = int_claim(&claims, "exp")?.ok_or_else(|| JwtError::Malformed("no exp".into()))?;
    let nbf = int_claim(&claims, "nbf")?;
    let iat = int_claim(&claims, "iat")?;
    if now_s > exp.saturating_add(leeway) {
        return Err(JwtError::Expired { exp, now: now_s });
    }
    for not_before in [nbf, iat].into_iter().flatten() {
        if not_before > now_s.saturating_add(leeway) {
            return Err(JwtError::NotYetValid { nbf: not_before, now: now_s });
        }
    }
    let start = iat.or(nbf).unwrap_or(now_s);
    let lifetime = exp.saturating_sub(start);
    let max_secs = policy.max_lifetime.as_secs();
    if lifetime > i64::try_from(max_secs).unwrap_or(i64::MAX) {
        return Err(JwtError::LifetimeTooLong { lifetime_secs: lifetime, max_secs });
    }

    let jti = match claims.remove("jti") {
        Some(Value::String(s)) if !s.is_empty() => Some(s),
        None => None,
        Some(_) => return Err(JwtError::Malformed("jti is not a non-empty string".into())),
    };
    if policy.require_jti && jti.is_none() {
        return Err(JwtError::MissingJti);
    }
    let sub = match claims.remove("sub") {
        Some(Value::String(s)) => Some(s),
        None => None,
        Some(_) => return Err(JwtError::Malformed("sub is not a string".into())),
    };
    for k in ["exp", "nbf", "iat"] {
        claims.remove(k);
    }
    Ok(Claims { iss, sub, aud, exp, nbf, iat, jti, kid, extra: claims })
}

/// The per-trust rules on who the token is for: subject, client application, type. Checked
/// after the signature, so only the IdP's own tokens reach them.
fn check_identity(claims: &Claims, typ: Option<&str>, policy: &JwtPolicy) -> Result<(), JwtError> {
    if let Some(want) = &policy.token_type {
        let bare = |t: &str| {
            let t = t.to_ascii_lowercase();
            t.strip_prefix("application/").map(str::to_owned).unwrap_or(t)
        };
        if typ.is_none_or(|t| bare(t) != bare(want)) {
            return Err(JwtError::WrongType { found: printable(typ.unwrap_or("")) });
        }
    }
    if !policy.subjects.is_empty() {
        let sub = claims.sub.as_deref().unwrap_or("");
        if !policy.subjects.iter().any(|s| s == sub) {
            return Err(JwtError::SubjectNotAllowed { found: printable(sub) });
        }
    }
    if !policy.client_ids.is_empty() {
        let mut carried = Vec::new();
        for name in CLIENT_ID_CLAIMS {
            match claims.extra.get(name) {
                None => {}
                Some(Value::String(s)) => carried.push(s.as_str()),
                Some(_) => return Err(JwtError::Malformed(format!("{name} is not a string"))),
            }
        }
        if let Some(bad) = carried.iter().find(|c| !policy.client_ids.iter().any(|a| a == *c)) {
            return Err(JwtError::ClientNotAllowed { found: printable(bad) });
        }
        if carried.is_empty() {
            return Err(JwtError::ClientNotAllowed { found: String::new() });
        }
    }
    Ok(())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ReplayError {
    #[error("already seen")]
    Replayed,
    #[error("replay store is full")]
    Full,
}

/// Remembers token ids until they expire. A trait so the store can share it across nodes.
pub trait ReplayStore: Send + Sync {
    /// Records `key` until `expires_at`; `Replayed` if it is already recorded and unexpired.
    fn check_and_insert(
        &self,
        key: &str,
        expires_at: Timestamp,
        now: Timestamp,
    ) -> impl Future<Output = Result<(), ReplayError>> + Send;
}

/// In-process replay cache: bounded, pruning expired entries when it fills. When full of live
/// entries it refuses new tokens (fail closed) instead of forgetting live ones.
#[derive(Debug)]
pub struct InMemoryReplayCache {
    capacity: usize,
    seen: Mutex<HashMap<String, Timestamp>>,
}

impl InMemoryReplayCache {
    pub fn new(capacity: usize) -> Self {
        Self { capacity, seen: Mutex::new(HashMap::new()) }
    }

    pub fn len(&self) -> usize {
        self.seen.lock().unwrap_or_else(std::sync::PoisonError::into_inner).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn insert(&self, key: &str, expires_at: Timestamp, now: Timestamp) -> Result<(), ReplayError> {
        let mut seen = self.seen.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(exp) = seen.get(key)
            && *exp > now
        {
            return Err(ReplayError::Replayed);
        }
        if seen.len() >= self.capacity && !seen.contains_key(key) {
            seen.retain(|_, exp| *exp > now);
            if seen.len() >= self.capacity {
                return Err(ReplayError::Full);
            }
        }
        seen.insert(key.to_owned(), expires_at);
        Ok(())
    }
}

impl ReplayStore for InMemoryReplayCache {
    fn check_and_insert(
        &self,
        key: &str,
        expires_at: Timestamp,
        now: Timestamp,
    ) -> impl Future<Output = Result<(), ReplayError>> + Send {
        std::future::ready(self.insert(key, expires_at, now))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replay_cache_prunes_expired_and_fails_closed_when_full() {
        let c = InMemoryReplayCache::new(2);
        let t = |s: i64| Timestamp(s * 1_000_000);
        assert_eq!(c.insert("a", t(10), t(0)), Ok(()));
        assert_eq!(c.insert("a", t(10), t(5)), Err(ReplayError::Replayed));
        assert_eq!(c.insert("b", t(20), t(5)), Ok(()));
        assert_eq!(c.insert("c", t(20), t(5)), Err(ReplayError::Full));
        // At 11 "a" has expired and is pruned to make room.
        assert_eq!(c.insert("c", t(20), t(11)), Ok(()));
        assert_eq!(c.len(), 2);
        assert_eq!(c.insert("a", t(30), t(11)), Err(ReplayError::Full));
    }

    #[test]
    fn hmac_and_none_are_never_allowed() {
        let mut p = JwtPolicy::new("iss", vec!["aud".into()]);
        p.allowed_algs.push(Algorithm::HS256);
        assert!(!p.allows(Algorithm::HS256));
        assert!(p.allows(Algorithm::RS256));
        let none_token = format!(
            "{}.{}.",
            URL_SAFE_NO_PAD.encode(br#"{"alg":"none"}"#),
            URL_SAFE_NO_PAD.encode(br#"{"iss":"iss"}"#)
        );
        assert_eq!(verify(&none_token, &p, &[], Timestamp(0)), Err(JwtError::AlgNotAllowed("none".into())));
    }

    #[test]
    fn malformed_tokens_are_errors() {
        let p = JwtPolicy::new("iss", vec!["aud".into()]);
        for t in ["", "a", "a.b", "a.b.c.d", "!!!.b.c", &"x".repeat(MAX_TOKEN_BYTES + 1)] {
            assert!(matches!(verify(t, &p, &[], Timestamp(0)), Err(JwtError::Malformed(_))), "{t:.20}");
        }
    }
}
