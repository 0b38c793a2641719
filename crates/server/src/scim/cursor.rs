//! RFC 9865 cursors: the opaque `cursor` / `nextCursor` values of cursor-paged lists.
//!
//! A cursor carries the list key (creation time, id) of the last resource of the page it
//! came with and the time it was issued, and is authenticated with an HMAC under a key
//! derived from the per-install secret. The MAC also covers the query the cursor belongs
//! to (directory, trust, resource type, filter, sort, attributes), without carrying it:
//! a cursor that was altered, forged, or replayed on another query or by another trust
//! fails the check (400 `invalidCursor`); one older than [`CURSOR_TIMEOUT_SECS`] is
//! refused as `expiredCursor`. The token is base64url without padding, so it holds only
//! the URI unreserved characters RFC 9865 §2 asks for.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use fedkey_core::Timestamp;
use fedkey_scim::{ScimError, ScimType};
use fedkey_store::install::Install;
use fedkey_store::scim::ListKey;
use zeroize::Zeroizing;

/// How long a cursor stays valid after it was issued (advertised as `cursorTimeout`).
pub const CURSOR_TIMEOUT_SECS: u64 = 3600;

/// The key derivation label: cursors get a key of their own.
const PURPOSE: &str = "scim-cursor/v1";
const VERSION: u8 = 1;
/// Bytes of the HMAC-SHA256 tag kept: 128 bits, beyond guessing.
const TAG_LEN: usize = 16;
/// Version, issue time and creation time.
const HEADER_LEN: usize = 1 + 8 + 8;
/// Longer values are refused before any decoding (ids are UUIDs, far shorter).
const MAX_TOKEN_LEN: usize = 512;

/// The query a cursor continues, in a canonical form; two requests with the same binding
/// are the same query for paging purposes. `count` is not part of it: a client may change
/// its page size between pages.
pub struct QueryBinding(Vec<u8>);

impl QueryBinding {
    /// A list or search: who asks (directory and trust ids), what is listed (`User`,
    /// `Group`, or `root` for `/.search`), the filter and the attribute lists as sent.
    /// (Cursors exist only for the default order, so there is no sort to bind.)
    pub fn for_list(
        directory_id: &str,
        trust_id: &str,
        types: &str,
        filter: &str,
        attributes: &str,
        excluded: &str,
    ) -> QueryBinding {
        QueryBinding::new(&[directory_id, trust_id, types, filter, attributes, excluded])
    }

    /// `parts` are the query's defining values, in a fixed order.
    fn new(parts: &[&str]) -> QueryBinding {
        // Length-prefixed, so no two different part lists give the same bytes.
        let mut b = Vec::new();
        for p in parts {
            b.extend_from_slice(&(p.len() as u64).to_be_bytes());
            b.extend_from_slice(p.as_bytes());
        }
        QueryBinding(b)
    }
}

/// The cursor MAC key of this install.
pub struct CursorKey(Zeroizing<[u8; 32]>);

impl CursorKey {
    pub fn for_install(install: &Install) -> CursorKey {
        CursorKey(install.derive_key(PURPOSE))
    }

    #[cfg(test)]
    fn from_bytes(b: [u8; 32]) -> CursorKey {
        CursorKey(Zeroizing::new(b))
    }

    fn tag(&self, query: &QueryBinding, payload: &[u8]) -> [u8; TAG_LEN] {
        let mut msg = Vec::with_capacity(8 + query.0.len() + payload.len());
        msg.extend_from_slice(&(query.0.len() as u64).to_be_bytes());
        msg.extend_from_slice(&query.0);
        msg.extend_from_slice(payload);
        let full = fedkey_crypto::fingerprint::hmac_sha256(self.0.as_ref(), &msg);
        let mut tag = [0u8; TAG_LEN];
        tag.copy_from_slice(&full[..TAG_LEN]);
        tag
    }

    /// The cursor that resumes `query` after `after`, issued at `now`.
    pub fn encode(&self, query: &QueryBinding, after: &ListKey, now: Timestamp) -> String {
        let mut payload = Vec::with_capacity(HEADER_LEN + after.id.len() + TAG_LEN);
        payload.push(VERSION);
        payload.extend_from_slice(&now.0.to_be_bytes());
        payload.extend_from_slice(&after.created.to_be_bytes());
        payload.extend_from_slice(after.id.as_bytes());
        let tag = self.tag(query, &payload);
        payload.extend_from_slice(&tag);
        URL_SAFE_NO_PAD.encode(payload)
    }

    /// The key a cursor resumes after, if it was issued by this install for `query` and
    /// has not expired at `now`.
    pub fn decode(&self, token: &str, query: &QueryBinding, now: Timestamp) -> Result<ListKey, ScimError> {
        let raw = (token.len() <= MAX_TOKEN_LEN)
            .then(|| URL_SAFE_NO_PAD.decode(token.as_bytes()).ok())
            .flatten()
            .filter(|r| r.len() > HEADER_LEN + TAG_LEN && r[0] == VERSION)
            .ok_or_else(invalid)?;
        let (payload, tag) = raw.split_at(raw.len() - TAG_LEN);
        if !fedkey_crypto::ct_eq(&self.tag(query, payload), tag) {
            return Err(invalid());
        }
        let int = |at: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&payload[at..at + 8]);
            i64::from_be_bytes(b)
        };
        let issued = int(1);
        let created = int(9);
        let id = std::str::from_utf8(&payload[HEADER_LEN..]).map_err(|_| invalid())?.to_owned();
        let age_micros = now.0.saturating_sub(issued);
        if age_micros > (CURSOR_TIMEOUT_SECS as i64).saturating_mul(1_000_000) {
            return Err(ScimError::new(
                400,
                Some(ScimType::ExpiredCursor),
                format!(
                    "this cursor has expired: cursors are valid for {CURSOR_TIMEOUT_SECS} seconds \
                     (cursorTimeout); start again with an empty cursor"
                ),
            ));
        }
        Ok(ListKey { created, id })
    }
}

fn invalid() -> ScimError {
    ScimError::new(
        400,
        Some(ScimType::InvalidCursor),
        "invalid cursor: send an empty cursor for the first page, then the nextCursor of the previous \
         page with the same filter, sortBy, sortOrder, attributes and excludedAttributes",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: Timestamp = Timestamp(1_800_000_000_000_000);

    fn key() -> ListKey {
        ListKey { created: 1_799_999_999_123_456, id: "2f1c6a52-0d7e-4d43-9c1f-8f0e1c0b7a11".into() }
    }

    fn q(filter: &str) -> QueryBinding {
        QueryBinding::for_list("dir-1", "trust-1", "User", filter, "", "")
    }

    #[test]
    fn round_trips_with_unreserved_characters_only() {
        let k = CursorKey::from_bytes([7; 32]);
        let c = k.encode(&q(""), &key(), T0);
        assert!(c.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'), "{c}");
        assert_eq!(k.decode(&c, &q(""), T0).unwrap(), key());
        // Just inside the timeout.
        let later = Timestamp(T0.0 + CURSOR_TIMEOUT_SECS as i64 * 1_000_000);
        assert_eq!(k.decode(&c, &q(""), later).unwrap(), key());
    }

    fn scim_type(r: Result<ListKey, ScimError>) -> Option<ScimType> {
        let e = r.unwrap_err();
        assert_eq!(e.status_code(), 400);
        e.scim_type
    }

    #[test]
    fn tampered_forged_or_garbage_cursors_are_invalid() {
        let k = CursorKey::from_bytes([7; 32]);
        let c = k.encode(&q(""), &key(), T0);
        // Every single-character change anywhere in the token.
        for i in 0..c.len() {
            let mut b = c.clone().into_bytes();
            b[i] = if b[i] == b'A' { b'B' } else { b'A' };
            let t = String::from_utf8(b).unwrap();
            if t != c {
                assert_eq!(scim_type(k.decode(&t, &q(""), T0)), Some(ScimType::InvalidCursor), "position {i}");
            }
        }
        // Signed with another install's key.
        let other = CursorKey::from_bytes([8; 32]).encode(&q(""), &key(), T0);
        assert_eq!(scim_type(k.decode(&other, &q(""), T0)), Some(ScimType::InvalidCursor));
        for bad in ["", "x", "!!!!", "AAAA", &"A".repeat(600), &c[..c.len() - 2]] {
            assert_eq!(scim_type(k.decode(bad, &q(""), T0)), Some(ScimType::InvalidCursor), "{bad}");
        }
    }

    #[test]
    fn a_cursor_is_refused_on_another_query() {
        let k = CursorKey::from_bytes([7; 32]);
        let c = k.encode(&q("userName sw \"a\""), &key(), T0);
        assert_eq!(scim_type(k.decode(&c, &q("userName sw \"b\""), T0)), Some(ScimType::InvalidCursor));
        assert_eq!(scim_type(k.decode(&c, &q(""), T0)), Some(ScimType::InvalidCursor));
        // The length prefixes keep part boundaries: ["ab", ""] is not ["a", "b"].
        let ab = QueryBinding::new(&["ab", ""]);
        let a_b = QueryBinding::new(&["a", "b"]);
        let c = k.encode(&ab, &key(), T0);
        assert_eq!(scim_type(k.decode(&c, &a_b, T0)), Some(ScimType::InvalidCursor));
    }

    #[test]
    fn an_old_cursor_is_expired() {
        let k = CursorKey::from_bytes([7; 32]);
        let c = k.encode(&q(""), &key(), T0);
        let late = Timestamp(T0.0 + CURSOR_TIMEOUT_SECS as i64 * 1_000_000 + 1);
        assert_eq!(scim_type(k.decode(&c, &q(""), late)), Some(ScimType::ExpiredCursor));
        // An altered old cursor is invalid, not expired: nothing in it is believed first.
        let mut b = c.into_bytes();
        b[3] ^= 1;
        let t = String::from_utf8(b).unwrap();
        assert_eq!(scim_type(k.decode(&t, &q(""), late)), Some(ScimType::InvalidCursor));
    }
}
