//! File connector: replaces the target atomically, so a reader sees the old key or the new
//! one, never a torn write, and a failed write leaves the old key in place.

use std::fs::{self, File, Permissions};
use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use fedkey_crypto::{Secret, ct_eq};

use crate::delivery::{Delivery, Receipt, Validation};
use crate::error::ConnectorError;
use crate::kind::ConnectorKind;

const KIND: ConnectorKind = ConnectorKind::File;

pub struct FileConnector {
    pub(crate) path: PathBuf,
}

impl FileConnector {
    pub(crate) fn new(path: PathBuf) -> Result<Self, ConnectorError> {
        if path.file_name().is_none() || !path.is_absolute() {
            return Err(ConnectorError::config(KIND, "path must be an absolute path to a file"));
        }
        Ok(FileConnector { path })
    }

    /// Writes the key (exactly its characters, no newline).
    pub async fn deliver(&self, d: &Delivery<'_>) -> Result<Receipt, ConnectorError> {
        let path = self.path.clone();
        let key = d.key.clone();
        tokio::task::spawn_blocking(move || write_atomically(&path, key.expose().as_bytes()))
            .await
            .map_err(|_| io_error("write task failed", &io::Error::other("join error")))??;
        Ok(Receipt::File { path: self.path.clone() })
    }

    pub async fn validate(&self, d: &Delivery<'_>) -> Result<Validation, ConnectorError> {
        let path = self.path.clone();
        let stored = tokio::task::spawn_blocking(move || fs::read_to_string(&path).map(Secret::new))
            .await
            .map_err(|_| io_error("read task failed", &io::Error::other("join error")))?
            .map_err(|e| io_error("reading the file back failed", &e))?;
        if ct_eq(stored.expose().as_bytes(), d.key.expose().as_bytes()) {
            Ok(Validation::Verified)
        } else {
            Err(ConnectorError::ValidationFailed { kind: KIND, detail: "the file holds a different key".into() })
        }
    }
}

/// Temp file in the target's directory (so `rename` stays on one file system and is atomic),
/// mode 0600 from creation, fsync, rename over the target, fsync the directory so the rename
/// itself survives a crash. On any error the temp file is removed and the target untouched.
fn write_atomically(path: &Path, content: &[u8]) -> Result<(), ConnectorError> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let mut tmp = tempfile::Builder::new()
        .prefix(".fedkey-")
        .suffix(".tmp")
        .permissions(Permissions::from_mode(0o600))
        .tempfile_in(dir)
        .map_err(|e| io_error("creating a temporary file next to the target failed", &e))?;
    tmp.write_all(content).map_err(|e| io_error("writing the temporary file failed", &e))?;
    tmp.as_file().sync_all().map_err(|e| io_error("syncing the temporary file failed", &e))?;
    tmp.persist(path).map_err(|e| io_error("renaming over the target failed", &e.error))?;
    File::open(dir).and_then(|d| d.sync_all()).map_err(|e| io_error("syncing the directory failed", &e))?;
    Ok(())
}

fn io_error(what: &str, e: &io::Error) -> ConnectorError {
    let retryable = !matches!(
        e.kind(),
        io::ErrorKind::PermissionDenied
            | io::ErrorKind::NotFound
            | io::ErrorKind::ReadOnlyFilesystem
            | io::ErrorKind::IsADirectory
            | io::ErrorKind::NotADirectory
    );
    ConnectorError::Io { kind: KIND, detail: format!("{what}: {e}"), retryable }
}
