//! Per-install secrets, created once at `init`: the install id (the audit origin), the
//! Ed25519 checkpoint signing key, the HMAC salt for audit fingerprints and the Ed25519 key
//! that signs OAuth access tokens. Secrets are stored envelope-encrypted under the master key.

use fedkey_crypto::Keyring;
use fedkey_crypto::signing::SigningKey;
use sqlx::Row;
use zeroize::Zeroizing;

use crate::{Db, StoreError};

const SIGNING_AAD: &[u8] = b"install/signing_key";
const SALT_AAD: &[u8] = b"install/hmac_salt";
const OAUTH_AAD: &[u8] = b"install/oauth_signing_key";

pub struct Install {
    /// The audit log's origin string.
    pub id: String,
    pub signing: SigningKey,
    pub public_key: [u8; 32],
    salt: Zeroizing<Vec<u8>>,
    /// Signs the OAuth access tokens of every directory. Its own key, not the checkpoint
    /// key: a token signature must never be mistaken for a checkpoint signature. `None`
    /// only for a database read without [`Install::load_or_create`] (older installs).
    pub oauth_signing: Option<SigningKey>,
}

impl std::fmt::Debug for Install {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Install({}, public={})", self.id, hex::encode(self.public_key))
    }
}

impl Install {
    /// HMAC fingerprint of a secret-bearing value, for audit details.
    pub fn fingerprint(&self, value: &[u8]) -> String {
        fedkey_crypto::fingerprint::fingerprint(&self.salt, value)
    }

    /// A 32-byte key for one purpose, derived from the per-install secret (HMAC-SHA256 of
    /// the purpose under it): each use gets its own key, none reveals the secret or another
    /// use's key, and every node of the install derives the same one without storing it.
    pub fn derive_key(&self, purpose: &str) -> zeroize::Zeroizing<[u8; 32]> {
        let label = format!("fedkey/install-key/{purpose}");
        Zeroizing::new(fedkey_crypto::fingerprint::hmac_sha256(&self.salt, label.as_bytes()))
    }

    /// Loads the install secrets, creating them on first use. Returns whether they were
    /// created now. Concurrent first starts (two nodes) settle on one set.
    pub async fn load_or_create(db: &Db, keyring: &Keyring) -> Result<(Install, bool), StoreError> {
        if let Some(i) = Install::load(db, keyring).await? {
            if i.oauth_signing.is_none() {
                // An install from before OAuth: its token key is created on first start.
                Install::add_oauth_key(db, keyring).await?;
                let i = Install::load(db, keyring).await?.ok_or_else(|| StoreError::Corrupt("install".into()))?;
                return Ok((i, false));
            }
            return Ok((i, false));
        }
        let (signing, pkcs8) = SigningKey::generate().map_err(|e| StoreError::Crypto(e.to_string()))?;
        let salt = fedkey_crypto::random::bytes::<32>().map_err(|_| StoreError::Crypto("random".into()))?;
        let id = format!("fedkey/{}", uuid::Uuid::new_v4());
        let mut tx = db.begin().await?;
        let values: [(&str, Vec<u8>); 4] = [
            ("install_id", id.clone().into_bytes()),
            ("signing_key", keyring.seal(SIGNING_AAD, &pkcs8)?),
            ("signing_public", signing.public_key().to_vec()),
            ("hmac_salt", keyring.seal(SALT_AAD, salt.as_ref())?),
        ];
        for (name, value) in values {
            sqlx::query("INSERT INTO install (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING")
                .bind(name)
                .bind(value)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Install::add_oauth_key(db, keyring).await?;
        let loaded = Install::load(db, keyring).await?.ok_or_else(|| StoreError::Corrupt("install".into()))?;
        let created = loaded.id == id;
        Ok((loaded, created))
    }

    pub async fn load(db: &Db, keyring: &Keyring) -> Result<Option<Install>, StoreError> {
        let rows = sqlx::query("SELECT name, value FROM install").fetch_all(db.pool()).await?;
        let get = |n: &str| -> Option<Vec<u8>> {
            rows.iter()
                .find(|r| r.try_get::<String, _>("name").ok().as_deref() == Some(n))
                .and_then(|r| r.try_get("value").ok())
        };
        let Some(id) = get("install_id") else {
            return Ok(None);
        };
        let id = String::from_utf8(id).map_err(|_| StoreError::Corrupt("install_id".into()))?;
        let corrupt = |w: &str| StoreError::Corrupt(format!("install.{w}"));
        let sk = get("signing_key").ok_or_else(|| corrupt("signing_key"))?;
        let pkcs8 = keyring.open(SIGNING_AAD, &sk)?;
        let signing = SigningKey::from_pkcs8(&pkcs8).map_err(|_| corrupt("signing_key"))?;
        let public_key = signing.public_key();
        if get("signing_public").as_deref() != Some(public_key.as_slice()) {
            // The stored public key must match the encrypted private key; otherwise
            // someone replaced it to pass off forged checkpoints.
            return Err(corrupt("signing_public (does not match the signing key)"));
        }
        let salt = keyring.open(SALT_AAD, &get("hmac_salt").ok_or_else(|| corrupt("hmac_salt"))?)?;
        let oauth_signing = match get("oauth_signing_key") {
            Some(sealed) => Some(
                SigningKey::from_pkcs8(&keyring.open(OAUTH_AAD, &sealed)?).map_err(|_| corrupt("oauth_signing_key"))?,
            ),
            None => None,
        };
        Ok(Some(Install { id, signing, public_key, salt: Zeroizing::new(salt.to_vec()), oauth_signing }))
    }

    /// Creates the OAuth token signing key unless one exists; concurrent first starts
    /// settle on one key (the first insert wins).
    async fn add_oauth_key(db: &Db, keyring: &Keyring) -> Result<(), StoreError> {
        let (_, pkcs8) = SigningKey::generate().map_err(|e| StoreError::Crypto(e.to_string()))?;
        sqlx::query("INSERT INTO install (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING")
            .bind("oauth_signing_key")
            .bind(keyring.seal(OAUTH_AAD, &pkcs8)?)
            .execute(db.pool())
            .await?;
        Ok(())
    }

    /// Envelopes held in the install table, for master-key rotation.
    pub(crate) const SEALED: [(&'static str, &'static [u8]); 3] =
        [("signing_key", SIGNING_AAD), ("hmac_salt", SALT_AAD), ("oauth_signing_key", OAUTH_AAD)];
}
