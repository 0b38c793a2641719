//! OpenBao (or Vault) transit as the master-key provider: the keyring is kept on disk only
//! as transit ciphertext, and decrypted by OpenBao into memory at start-up, so the key that
//! protects every stored secret never touches fedkey's disk in clear.
//!
//! File format (`master.key.transit`, mode 0600): a header line `fedkey-transit-v1 KEYNAME`
//! and the `vault:v…` ciphertext of the rendered keyring.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::SystemTime;

use anyhow::Context;
use fedkey_connectors::TransitClient;
use fedkey_core::Clock;
use fedkey_crypto::{Keyring, MasterKey, Secret};
use fedkey_store::StoreError;
use fedkey_store::keyfile::KeyringSource;

const HEADER: &str = "fedkey-transit-v1";

/// Where to reach transit, from the settings.
pub struct TransitSettings {
    pub egress: fedkey_egress::Egress,
    pub address: String,
    pub token: Secret,
    pub mount: String,
    pub key: String,
}

pub struct TransitKeyring {
    path: PathBuf,
    client: TransitClient,
    key: String,
    clock: Arc<dyn Clock>,
    ring: RwLock<Arc<Keyring>>,
    modified: Mutex<Option<SystemTime>>,
}

impl TransitKeyring {
    /// Opens the sealed keyring at `path`, or creates one (a new master key) when `create`.
    pub async fn open(
        path: &Path,
        cfg: TransitSettings,
        clock: Arc<dyn Clock>,
        create: bool,
    ) -> anyhow::Result<TransitKeyring> {
        let client = TransitClient::new(&cfg.address, cfg.token, cfg.egress)
            .map_err(|e| anyhow::anyhow!("OpenBao transit: {e}"))?
            .with_mount(cfg.mount);
        let fresh = !path.exists();
        if fresh && !create {
            anyhow::bail!("sealed master key file {} not found (restore it from backup)", path.display());
        }
        let ring = if fresh {
            Keyring::new(MasterKey::generate()?)
        } else {
            Self::read(path, &client, &cfg.key, &*clock).await?
        };
        let k = TransitKeyring {
            path: path.to_owned(),
            client,
            key: cfg.key,
            clock,
            ring: RwLock::new(Arc::new(ring)),
            modified: Mutex::new(None),
        };
        if fresh {
            let ring = k.current();
            k.store(&ring).await?;
        }
        *k.modified.lock().map_err(|_| anyhow::anyhow!("poisoned"))? = modified(path);
        Ok(k)
    }

    async fn read(path: &Path, client: &TransitClient, key: &str, clock: &dyn Clock) -> anyhow::Result<Keyring> {
        let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
        check_private(path)?;
        let mut lines = text.lines();
        let header = lines.next().unwrap_or_default();
        let named = header.strip_prefix(HEADER).map(str::trim);
        if named != Some(key) {
            anyhow::bail!("{} is not a keyring sealed with transit key {key:?}", path.display());
        }
        let ct = lines.next().unwrap_or_default().trim();
        let plain = client
            .decrypt(key, ct, clock.now())
            .await
            .map_err(|e| anyhow::anyhow!("OpenBao transit could not unseal the master key: {e}"))?;
        let text = zeroize::Zeroizing::new(String::from_utf8(plain.to_vec()).context("sealed keyring is not text")?);
        Ok(Keyring::parse(&text)?)
    }

    fn current(&self) -> Arc<Keyring> {
        self.ring.read().map(|r| r.clone()).unwrap_or_else(|p| p.into_inner().clone())
    }

    /// Seals `ring` with transit and replaces the file atomically (temp file + rename).
    pub async fn store(&self, ring: &Keyring) -> anyhow::Result<()> {
        let ct = self
            .client
            .encrypt(&self.key, ring.render().as_bytes(), self.clock.now())
            .await
            .map_err(|e| anyhow::anyhow!("OpenBao transit could not seal the master key: {e}"))?;
        let tmp = self.path.with_extension("tmp");
        let _ = std::fs::remove_file(&tmp);
        write_private(&tmp, &format!("{HEADER} {}\n{ct}\n", self.key))?;
        std::fs::rename(&tmp, &self.path).with_context(|| format!("cannot replace {}", self.path.display()))?;
        let copy = Keyring::parse(&ring.render())?;
        if let Ok(mut r) = self.ring.write() {
            *r = Arc::new(copy);
        }
        if let Ok(mut m) = self.modified.lock() {
            *m = modified(&self.path);
        }
        Ok(())
    }

    /// Re-reads the file when another process (`master-key rotate`) replaced it.
    pub async fn reload_if_changed(&self) -> anyhow::Result<bool> {
        let now = modified(&self.path);
        let seen = self.modified.lock().map(|m| *m).unwrap_or(None);
        if now == seen {
            return Ok(false);
        }
        let ring = Self::read(&self.path, &self.client, &self.key, &*self.clock).await?;
        if let Ok(mut r) = self.ring.write() {
            *r = Arc::new(ring);
        }
        if let Ok(mut m) = self.modified.lock() {
            *m = now;
        }
        Ok(true)
    }
}

impl KeyringSource for TransitKeyring {
    fn keyring(&self) -> Result<Arc<Keyring>, StoreError> {
        Ok(self.current())
    }
}

fn modified(p: &Path) -> Option<SystemTime> {
    std::fs::metadata(p).and_then(|m| m.modified()).ok()
}

fn write_private(path: &Path, contents: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path).with_context(|| format!("cannot create {}", path.display()))?;
    f.write_all(contents.as_bytes())?;
    f.sync_all()?;
    Ok(())
}

fn check_private(path: &Path) -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path)?.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            anyhow::bail!("{} has mode {mode:04o}: run `chmod 600 {}`", path.display(), path.display());
        }
    }
    Ok(())
}
