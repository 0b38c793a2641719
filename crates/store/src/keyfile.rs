//! The master keyring file in the data directory. It is created mode 0600 and fedkey
//! refuses to use it when group or others can read it. It is re-read when it changes, so
//! `fedkey master-key rotate` takes effect in a running server without a restart.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use fedkey_crypto::{Keyring, MasterKey};
use zeroize::Zeroizing;

use crate::StoreError;

/// Where the store gets its master keys from.
pub trait KeyringSource: Send + Sync + 'static {
    fn keyring(&self) -> Result<Arc<Keyring>, StoreError>;
}

/// A fixed keyring (tests, or a KEK provider that does not change).
pub struct StaticKeyring(pub Arc<Keyring>);

impl KeyringSource for StaticKeyring {
    fn keyring(&self) -> Result<Arc<Keyring>, StoreError> {
        Ok(self.0.clone())
    }
}

pub struct KeyringFile {
    path: PathBuf,
    cached: Mutex<Option<(SystemTime, Arc<Keyring>)>>,
}

impl KeyringFile {
    /// Opens an existing keyring file, checking its permissions.
    pub fn open(path: &Path) -> Result<KeyringFile, StoreError> {
        let f = KeyringFile { path: path.to_owned(), cached: Mutex::new(None) };
        f.keyring()?;
        Ok(f)
    }

    /// Creates a keyring file holding one new master key. Fails if the file exists.
    pub fn create(path: &Path) -> Result<KeyringFile, StoreError> {
        let ring = Keyring::new(MasterKey::generate()?);
        write_new(path, &ring.render())?;
        KeyringFile::open(path)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Replaces the file atomically (temp file + rename, mode 0600).
    pub fn store(&self, ring: &Keyring) -> Result<(), StoreError> {
        let tmp = self.path.with_extension("tmp");
        let _ = std::fs::remove_file(&tmp);
        write_new(&tmp, &ring.render())?;
        std::fs::rename(&tmp, &self.path).map_err(|e| io_err(&self.path, "replace", e))?;
        if let Ok(mut c) = self.cached.lock() {
            *c = None;
        }
        Ok(())
    }
}

impl KeyringSource for KeyringFile {
    fn keyring(&self) -> Result<Arc<Keyring>, StoreError> {
        let meta = std::fs::metadata(&self.path).map_err(|e| io_err(&self.path, "read", e))?;
        check_private(&self.path, &meta)?;
        let mtime = meta.modified().map_err(|e| io_err(&self.path, "stat", e))?;
        let mut cached = self.cached.lock().map_err(|_| StoreError::Config("keyring cache poisoned".into()))?;
        if let Some((t, ring)) = cached.as_ref()
            && *t == mtime
        {
            return Ok(ring.clone());
        }
        let text = Zeroizing::new(std::fs::read_to_string(&self.path).map_err(|e| io_err(&self.path, "read", e))?);
        let ring = Arc::new(
            Keyring::parse(&text)
                .map_err(|e| StoreError::Config(format!("master key file {}: {e}", self.path.display())))?,
        );
        *cached = Some((mtime, ring.clone()));
        Ok(ring)
    }
}

fn io_err(path: &Path, what: &str, e: std::io::Error) -> StoreError {
    StoreError::Config(format!("cannot {what} master key file {}: {e}", path.display()))
}

#[cfg(unix)]
fn check_private(path: &Path, meta: &std::fs::Metadata) -> Result<(), StoreError> {
    use std::os::unix::fs::PermissionsExt;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(StoreError::Config(format!(
            "master key file {} has mode {mode:04o}: it must not be accessible by group or others; run `chmod 600 {}`",
            path.display(),
            path.display()
        )));
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_private(_: &Path, _: &std::fs::Metadata) -> Result<(), StoreError> {
    Ok(())
}

fn write_new(path: &Path, contents: &str) -> Result<(), StoreError> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path).map_err(|e| io_err(path, "create", e))?;
    f.write_all(contents.as_bytes()).map_err(|e| io_err(path, "write", e))?;
    f.sync_all().map_err(|e| io_err(path, "sync", e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_file_is_private_and_loose_modes_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("master.key");
        let f = KeyringFile::create(&p).unwrap();
        let id = f.keyring().unwrap().active().id().to_owned();
        assert!(KeyringFile::create(&p).is_err(), "must not overwrite");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&p).unwrap().permissions().mode() & 0o777, 0o600);
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
            let e = KeyringFile::open(&p).err().unwrap().to_string();
            assert!(e.contains("0644") && e.contains("chmod 600"), "{e}");
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        assert_eq!(KeyringFile::open(&p).unwrap().keyring().unwrap().active().id(), id);
    }
}
