//! Envelope encryption: each secret has its own random 256-bit data key (DEK); the DEK
//! is wrapped by a master key (KEK). Both layers are AES-256-GCM.
//!
//! ```text
//! "FKE1" | kek_id_len:u8 | kek_id | wrapped DEK (nonce 12 | ct 32 | tag 16) | nonce 12 | ct | tag 16
//! ```
//!
//! The data layer's AAD is chosen by the caller (trust id ‖ version), so a ciphertext
//! copied onto another row does not open. The KEK id in the header lets the master key
//! rotate: [`Keyring::rewrap`] re-encrypts only the 60-byte wrapped DEK.

use std::fmt;

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use thiserror::Error;
use zeroize::Zeroizing;

use crate::random;

const MAGIC: &[u8; 4] = b"FKE1";
const TAG_LEN: usize = 16;
const WRAPPED_DEK_LEN: usize = NONCE_LEN + 32 + TAG_LEN;

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum EnvelopeError {
    #[error("malformed envelope")]
    Malformed,
    #[error("envelope is sealed under master key {0:?}, which is not in the keyring")]
    UnknownKek(String),
    #[error("envelope does not open: wrong key, wrong binding, or tampered")]
    Open,
    #[error("the system random number generator failed")]
    Random,
    #[error("malformed keyring: {0}")]
    Keyring(String),
}

/// A 256-bit master key and its id (`mk-` + 16 hex digits of SHA-256 of the key).
pub struct MasterKey {
    id: String,
    key: Zeroizing<[u8; 32]>,
}

impl MasterKey {
    pub fn generate() -> Result<MasterKey, EnvelopeError> {
        let key = random::bytes::<32>().map_err(|_| EnvelopeError::Random)?;
        Ok(MasterKey::from_bytes(key))
    }

    pub fn from_bytes(key: Zeroizing<[u8; 32]>) -> MasterKey {
        let id = format!("mk-{}", hex::encode(&crate::sha256(key.as_ref())[..8]));
        MasterKey { id, key }
    }

    pub fn id(&self) -> &str {
        &self.id
    }
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MasterKey({}, [redacted])", self.id)
    }
}

/// The master keys fedkey knows; the first is active (used to seal), the others only open.
#[derive(Debug)]
pub struct Keyring {
    keys: Vec<MasterKey>,
}

impl Keyring {
    pub fn new(active: MasterKey) -> Keyring {
        Keyring { keys: vec![active] }
    }

    pub fn active(&self) -> &MasterKey {
        // The constructor and parser guarantee at least one key.
        &self.keys[0]
    }

    pub fn ids(&self) -> Vec<&str> {
        self.keys.iter().map(|k| k.id.as_str()).collect()
    }

    /// Makes `key` the active key; the previous keys stay to open old envelopes.
    pub fn push_active(&mut self, key: MasterKey) {
        self.keys.insert(0, key);
    }

    /// Drops keys other than the active one (after every envelope has been rewrapped).
    pub fn retain_active_only(&mut self) {
        self.keys.truncate(1);
    }

    fn get(&self, id: &str) -> Option<&MasterKey> {
        self.keys.iter().find(|k| k.id == id)
    }

    /// Text form of the keyring file: one `ID BASE64KEY` line per key, active first.
    pub fn render(&self) -> Zeroizing<String> {
        let mut s = Zeroizing::new(String::from(
            "# fedkey master keyring: the first key seals, all keys open. Keep this file mode 0600.\n",
        ));
        for k in &self.keys {
            s.push_str(&k.id);
            s.push(' ');
            s.push_str(&B64.encode(k.key.as_ref()));
            s.push('\n');
        }
        s
    }

    /// Parses the keyring file. Errors never include key material.
    pub fn parse(text: &str) -> Result<Keyring, EnvelopeError> {
        let mut keys = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let bad = |what: &str| EnvelopeError::Keyring(format!("line {}: {what}", i + 1));
            let (id, b64) = line.split_once(' ').ok_or_else(|| bad("expected 'ID KEY'"))?;
            let raw = Zeroizing::new(B64.decode(b64.trim()).map_err(|_| bad("key is not base64"))?);
            let bytes: [u8; 32] = raw.as_slice().try_into().map_err(|_| bad("key is not 32 bytes"))?;
            let key = MasterKey::from_bytes(Zeroizing::new(bytes));
            if key.id != id {
                return Err(bad("key id does not match the key"));
            }
            keys.push(key);
        }
        if keys.is_empty() {
            return Err(EnvelopeError::Keyring("no key found".into()));
        }
        Ok(Keyring { keys })
    }

    /// Seals `plaintext` under a fresh DEK wrapped by the active key, bound to `aad`.
    pub fn seal(&self, aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, EnvelopeError> {
        let kek = self.active();
        let dek = random::bytes::<32>().map_err(|_| EnvelopeError::Random)?;
        let wrapped = wrap_dek(kek, dek.as_ref())?;
        let mut out = header(kek);
        out.extend_from_slice(&wrapped);
        out.extend_from_slice(&gcm_seal(dek.as_ref(), &data_aad(aad), plaintext)?);
        Ok(out)
    }

    /// Opens an envelope; the plaintext zeroizes when dropped.
    pub fn open(&self, aad: &[u8], envelope: &[u8]) -> Result<Zeroizing<Vec<u8>>, EnvelopeError> {
        let p = Parsed::new(envelope)?;
        let kek = self.get(p.kek_id).ok_or_else(|| EnvelopeError::UnknownKek(p.kek_id.to_owned()))?;
        let dek = unwrap_dek(kek, p.wrapped_dek)?;
        gcm_open(dek.as_ref(), &data_aad(aad), p.data)
    }

    /// Re-wraps the DEK under the active key. `None` when it already is.
    pub fn rewrap(&self, envelope: &[u8]) -> Result<Option<Vec<u8>>, EnvelopeError> {
        let p = Parsed::new(envelope)?;
        if p.kek_id == self.active().id {
            return Ok(None);
        }
        let old = self.get(p.kek_id).ok_or_else(|| EnvelopeError::UnknownKek(p.kek_id.to_owned()))?;
        let dek = unwrap_dek(old, p.wrapped_dek)?;
        let mut out = header(self.active());
        out.extend_from_slice(&wrap_dek(self.active(), dek.as_ref())?);
        out.extend_from_slice(p.data);
        Ok(Some(out))
    }
}

/// The KEK id an envelope is sealed under.
pub fn kek_id(envelope: &[u8]) -> Result<&str, EnvelopeError> {
    Parsed::new(envelope).map(|p| p.kek_id)
}

struct Parsed<'a> {
    kek_id: &'a str,
    wrapped_dek: &'a [u8],
    data: &'a [u8],
}

impl<'a> Parsed<'a> {
    fn new(b: &'a [u8]) -> Result<Parsed<'a>, EnvelopeError> {
        let rest = b.strip_prefix(MAGIC.as_slice()).ok_or(EnvelopeError::Malformed)?;
        let (&id_len, rest) = rest.split_first().ok_or(EnvelopeError::Malformed)?;
        let id_len = usize::from(id_len);
        if rest.len() < id_len + WRAPPED_DEK_LEN + NONCE_LEN + TAG_LEN {
            return Err(EnvelopeError::Malformed);
        }
        let (id, rest) = rest.split_at(id_len);
        let kek_id = std::str::from_utf8(id).map_err(|_| EnvelopeError::Malformed)?;
        let (wrapped_dek, data) = rest.split_at(WRAPPED_DEK_LEN);
        Ok(Parsed { kek_id, wrapped_dek, data })
    }
}

fn header(kek: &MasterKey) -> Vec<u8> {
    let mut out = Vec::with_capacity(128);
    out.extend_from_slice(MAGIC);
    // ids are "mk-" + 16 hex = 19 bytes
    out.push(u8::try_from(kek.id.len()).unwrap_or(u8::MAX));
    out.extend_from_slice(kek.id.as_bytes());
    out
}

fn dek_aad(kek: &MasterKey) -> Vec<u8> {
    [b"fedkey/dek\0".as_slice(), kek.id.as_bytes()].concat()
}

fn data_aad(aad: &[u8]) -> Vec<u8> {
    [b"fedkey/data\0".as_slice(), aad].concat()
}

fn wrap_dek(kek: &MasterKey, dek: &[u8]) -> Result<Vec<u8>, EnvelopeError> {
    gcm_seal(kek.key.as_ref(), &dek_aad(kek), dek)
}

fn unwrap_dek(kek: &MasterKey, wrapped: &[u8]) -> Result<Zeroizing<Vec<u8>>, EnvelopeError> {
    gcm_open(kek.key.as_ref(), &dek_aad(kek), wrapped)
}

/// nonce | ciphertext | tag
fn gcm_seal(key: &[u8], aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, EnvelopeError> {
    let key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, key).map_err(|_| EnvelopeError::Malformed)?);
    let nonce_bytes = random::bytes::<NONCE_LEN>().map_err(|_| EnvelopeError::Random)?;
    let nonce = Nonce::assume_unique_for_key(*nonce_bytes);
    let mut buf = plaintext.to_vec();
    key.seal_in_place_append_tag(nonce, Aad::from(aad), &mut buf).map_err(|_| EnvelopeError::Random)?;
    let mut out = nonce_bytes.to_vec();
    out.extend_from_slice(&buf);
    Ok(out)
}

fn gcm_open(key: &[u8], aad: &[u8], sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, EnvelopeError> {
    if sealed.len() < NONCE_LEN + TAG_LEN {
        return Err(EnvelopeError::Malformed);
    }
    let key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, key).map_err(|_| EnvelopeError::Malformed)?);
    let (n, ct) = sealed.split_at(NONCE_LEN);
    let nonce = Nonce::try_assume_unique_for_key(n).map_err(|_| EnvelopeError::Malformed)?;
    let mut buf = Zeroizing::new(ct.to_vec());
    let len = key.open_in_place(nonce, Aad::from(aad), buf.as_mut_slice()).map_err(|_| EnvelopeError::Open)?.len();
    buf.truncate(len);
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ring() -> Keyring {
        Keyring::new(MasterKey::generate().unwrap())
    }

    #[test]
    fn seal_open_round_trip_and_plaintext_is_not_in_envelope() {
        let r = ring();
        let env = r.seal(b"trust-1|v1", b"app-issued-secret").unwrap();
        assert!(!env.windows(17).any(|w| w == b"app-issued-secret"));
        assert_eq!(r.open(b"trust-1|v1", &env).unwrap().as_slice(), b"app-issued-secret");
        assert_eq!(kek_id(&env).unwrap(), r.active().id());
    }

    #[test]
    fn binding_and_tampering_are_detected() {
        let r = ring();
        let env = r.seal(b"trust-1|v1", b"s").unwrap();
        assert_eq!(r.open(b"trust-1|v2", &env), Err(EnvelopeError::Open));
        let mut bad = env.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert_eq!(r.open(b"trust-1|v1", &bad), Err(EnvelopeError::Open));
        assert!(ring().open(b"trust-1|v1", &env).unwrap_err().to_string().contains("not in the keyring"));
        assert_eq!(r.open(b"x", b"FKE1"), Err(EnvelopeError::Malformed));
    }

    #[test]
    fn rewrap_moves_envelopes_to_the_new_key() {
        let mut r = ring();
        let old_id = r.active().id().to_owned();
        let env = r.seal(b"a", b"secret").unwrap();
        r.push_active(MasterKey::generate().unwrap());
        let new_env = r.rewrap(&env).unwrap().unwrap();
        assert_ne!(kek_id(&new_env).unwrap(), old_id);
        assert!(r.rewrap(&new_env).unwrap().is_none());
        r.retain_active_only();
        assert_eq!(r.open(b"a", &new_env).unwrap().as_slice(), b"secret");
        assert!(matches!(r.open(b"a", &env), Err(EnvelopeError::UnknownKek(_))));
    }

    #[test]
    fn keyring_file_round_trips_and_rejects_garbage() {
        let mut r = ring();
        r.push_active(MasterKey::generate().unwrap());
        let text = r.render();
        let back = Keyring::parse(&text).unwrap();
        assert_eq!(back.ids(), r.ids());
        assert!(Keyring::parse("").is_err());
        assert!(Keyring::parse("mk-00 notbase64!").is_err());
        let wrong_id = text.replacen("mk-", "mk-0", 1);
        assert!(Keyring::parse(&wrong_id).is_err());
        assert!(!format!("{r:?}").contains(&text.lines().nth(1).unwrap()[20..]));
    }

    proptest! {
        #[test]
        fn open_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
            let r = ring();
            let mut b = b"FKE1".to_vec();
            b.extend_from_slice(&bytes);
            let _ = r.open(b"x", &b);
            let _ = r.open(b"x", &bytes);
            let _ = r.rewrap(&b);
        }

        #[test]
        fn keyring_parse_never_panics(s in "\\PC{0,200}") {
            let _ = Keyring::parse(&s);
        }
    }
}
