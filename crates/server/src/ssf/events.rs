//! The event types fedkey transmits on SSF streams and the delivery methods it offers.
//! Which directory change raises which type is decided at fan-out, in the store
//! (`fedkey_store` event mapping); this list is what a receiver may ask for.

use fedkey_store::ops::events as ev;

/// RFC 8935 push delivery.
pub const PUSH: &str = "urn:ietf:rfc:8935";
/// RFC 8936 poll delivery.
pub const POLL: &str = "urn:ietf:rfc:8936";

/// SSF 1.0 §8.1.4: sent when a receiver asks for it, whatever the stream requested.
pub const VERIFICATION: &str = "https://schemas.openid.net/secevent/ssf/event-type/verification";
/// CAEP 1.0: a user's sessions are revoked (deactivated or deleted).
pub const SESSION_REVOKED: &str = ev::CAEP_SESSION_REVOKED;
/// CAEP 1.0: a password or certificate was added, changed or removed.
pub const CREDENTIAL_CHANGE: &str = ev::CAEP_CREDENTIAL_CHANGE;
/// RISC 1.0: the account was deactivated.
pub const ACCOUNT_DISABLED: &str = ev::RISC_ACCOUNT_DISABLED;
/// RISC 1.0: the account was reactivated.
pub const ACCOUNT_ENABLED: &str = ev::RISC_ACCOUNT_ENABLED;
/// RISC 1.0: the account was deleted.
pub const ACCOUNT_PURGED: &str = ev::RISC_ACCOUNT_PURGED;

/// `events_supported` of every stream: the types a directory change can raise.
pub const SUPPORTED: [&str; 5] =
    [SESSION_REVOKED, CREDENTIAL_CHANGE, ACCOUNT_DISABLED, ACCOUNT_ENABLED, ACCOUNT_PURGED];

/// `events_delivered`: the requested types fedkey supports, in the order requested.
pub fn delivered(requested: &[String]) -> Vec<&str> {
    requested.iter().map(String::as_str).filter(|r| SUPPORTED.contains(r)).collect()
}
