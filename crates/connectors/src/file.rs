//! File connector: replaces the target atomically, so a reader sees the old key or the new
//! one, never a torn write, and a failed write leaves the old key in place.
//!
//! It writes only under its [`DeliveryRoot`]: the target must lie under the root, every
//! directory on the way is opened without following symbolic links (`O_NOFOLLOW`, relative
//! to the one before), and the master key and the database are never a target. A connector
//! without a root refuses to deliver.

use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::OwnedFd;
use std::path::{Component, Path, PathBuf};

use fedkey_crypto::{Secret, ct_eq};
use rustix::fs::{AtFlags, CWD, Mode, OFlags};

use crate::delivery::{Delivery, Receipt, Validation};
use crate::error::ConnectorError;
use crate::kind::ConnectorKind;

const KIND: ConnectorKind = ConnectorKind::File;

/// The directory file connectors may write under, and the files they must never write
/// (the master key, the database) wherever those are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryRoot {
    dir: PathBuf,
    protected: Vec<PathBuf>,
}

impl DeliveryRoot {
    /// `dir` must be an existing directory; it is resolved once, here. Refused when it holds
    /// one of `protected` (or their directory): writing under it could replace them.
    pub fn new(dir: &Path, protected: &[PathBuf]) -> Result<DeliveryRoot, String> {
        let shown = dir.display();
        let dir = dir.canonicalize().map_err(|e| format!("delivery_root {shown}: {e}"))?;
        if !dir.is_dir() {
            return Err(format!("delivery_root {shown} is not a directory"));
        }
        let protected: Vec<PathBuf> = protected.iter().map(|p| resolve_existing_parent(p)).collect();
        if let Some(p) = protected.iter().find(|p| p.starts_with(&dir)) {
            return Err(format!(
                "delivery_root {shown} holds {}: file connectors must not be able to replace the master key or the database; choose a directory of its own",
                p.display()
            ));
        }
        Ok(DeliveryRoot { dir, protected })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The target's path below the root, checked without touching the file system: an
    /// absolute path under the root, with plain names only (no `..`, `.`), never a
    /// protected file.
    fn relative(&self, path: &Path) -> Result<PathBuf, String> {
        let shown = path.display();
        let rel = path.strip_prefix(&self.dir).map_err(|_| {
            format!("path {shown} is outside the delivery root {} (setting delivery_root)", self.dir.display())
        })?;
        if rel.as_os_str().is_empty() || !rel.components().all(|c| matches!(c, Component::Normal(_))) {
            return Err(format!("path {shown} must name a file below the delivery root, without . or .."));
        }
        if self.protected.iter().any(|p| p == path) {
            return Err(format!("path {shown} is a file fedkey keeps its own secrets in"));
        }
        Ok(rel.to_owned())
    }

    /// Config-time check of the directories that exist on the way: none may be a symbolic
    /// link. (Delivery checks again as it opens them.)
    fn check_existing(&self, rel: &Path) -> Result<(), String> {
        let mut at = self.dir.clone();
        for c in rel.components() {
            at.push(c);
            match std::fs::symlink_metadata(&at) {
                Ok(m) if m.file_type().is_symlink() => {
                    return Err(format!(
                        "{} is a symbolic link; the file connector does not follow links",
                        at.display()
                    ));
                }
                Ok(_) => {}
                Err(_) => break,
            }
        }
        Ok(())
    }
}

/// `p` with its directory resolved (the file itself may not exist yet, e.g. `-wal`).
fn resolve_existing_parent(p: &Path) -> PathBuf {
    if let Ok(c) = p.canonicalize() {
        return c;
    }
    match (p.parent().and_then(|d| d.canonicalize().ok()), p.file_name()) {
        (Some(d), Some(f)) => d.join(f),
        _ => p.to_owned(),
    }
}

pub struct FileConnector {
    pub(crate) path: PathBuf,
    root: Option<(DeliveryRoot, PathBuf)>,
}

impl FileConnector {
    pub(crate) fn new(path: PathBuf) -> Result<Self, ConnectorError> {
        if path.file_name().is_none() || !path.is_absolute() {
            return Err(ConnectorError::config(KIND, "path must be an absolute path to a file"));
        }
        Ok(FileConnector { path, root: None })
    }

    /// Confines the connector to `root`; the path must lie under it.
    pub(crate) fn confine(mut self, root: &DeliveryRoot) -> Result<Self, ConnectorError> {
        let rel = root.relative(&self.path).map_err(|m| ConnectorError::config(KIND, m))?;
        root.check_existing(&rel).map_err(|m| ConnectorError::config(KIND, m))?;
        self.root = Some((root.clone(), rel));
        Ok(self)
    }

    fn confined(&self) -> Result<(PathBuf, PathBuf), ConnectorError> {
        match &self.root {
            Some((root, rel)) => Ok((root.dir.clone(), rel.clone())),
            None => Err(ConnectorError::config(KIND, "no delivery root is configured (setting delivery_root)")),
        }
    }

    /// Writes the key (exactly its characters, no newline).
    pub async fn deliver(&self, d: &Delivery<'_>) -> Result<Receipt, ConnectorError> {
        let (root, rel) = self.confined()?;
        let key = d.key.clone();
        tokio::task::spawn_blocking(move || write_atomically(&root, &rel, key.expose().as_bytes()))
            .await
            .map_err(|_| io_error("write task failed", &io::Error::other("join error")))??;
        Ok(Receipt::File { path: self.path.clone() })
    }

    pub async fn validate(&self, d: &Delivery<'_>) -> Result<Validation, ConnectorError> {
        let (root, rel) = self.confined()?;
        let stored = tokio::task::spawn_blocking(move || read_back(&root, &rel))
            .await
            .map_err(|_| io_error("read task failed", &io::Error::other("join error")))??;
        if ct_eq(stored.expose().as_bytes(), d.key.expose().as_bytes()) {
            Ok(Validation::Verified)
        } else {
            Err(ConnectorError::ValidationFailed { kind: KIND, detail: "the file holds a different key".into() })
        }
    }
}

/// Opens the target's directory from the root, one component at a time, never following a
/// symbolic link; returns it with the file name.
fn open_parent<'a>(root: &Path, rel: &'a Path) -> Result<(OwnedFd, &'a OsStr), ConnectorError> {
    let flags = OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::RDONLY | OFlags::CLOEXEC;
    let mut dir = rustix::fs::openat(CWD, root, flags, Mode::empty())
        .map_err(|e| io_error("opening the delivery root failed", &e.into()))?;
    let mut names: Vec<&OsStr> = rel.components().map(Component::as_os_str).collect();
    let file = names.pop().ok_or_else(|| ConnectorError::config(KIND, "the path names no file"))?;
    for name in names {
        dir = rustix::fs::openat(&dir, name, flags, Mode::empty()).map_err(|e| link_or_io(name, e))?;
    }
    Ok((dir, file))
}

/// ELOOP / ENOTDIR under `O_NOFOLLOW`: a symbolic link where a directory was expected.
fn link_or_io(name: &OsStr, e: rustix::io::Errno) -> ConnectorError {
    if e == rustix::io::Errno::LOOP || e == rustix::io::Errno::NOTDIR {
        return ConnectorError::Io {
            kind: KIND,
            detail: format!(
                "{:?} on the way to the target is a symbolic link or not a directory; the file connector does not follow links",
                name
            ),
            retryable: false,
        };
    }
    io_error("opening a directory on the way to the target failed", &e.into())
}

/// Temp file in the target's directory (so `rename` stays on one file system and is atomic),
/// mode 0600 from creation, fsync, rename over the target, fsync the directory so the rename
/// itself survives a crash. On any error the temp file is removed and the target untouched.
/// A symbolic link at the target is replaced, never followed.
fn write_atomically(root: &Path, rel: &Path, content: &[u8]) -> Result<(), ConnectorError> {
    let (dir, name) = open_parent(root, rel)?;
    let random = fedkey_crypto::random::bytes::<8>()
        .map_err(|_| io_error("no randomness for a temporary name", &io::Error::other("rng")))?;
    let tmp = format!(".fedkey-{}.tmp", hex::encode(*random));
    let create = OFlags::CREATE | OFlags::EXCL | OFlags::WRONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let fd = rustix::fs::openat(&dir, tmp.as_str(), create, Mode::from_raw_mode(0o600))
        .map_err(|e| io_error("creating a temporary file next to the target failed", &e.into()))?;
    let mut f = File::from(fd);
    let written = f
        .write_all(content)
        .map_err(|e| io_error("writing the temporary file failed", &e))
        .and_then(|()| f.sync_all().map_err(|e| io_error("syncing the temporary file failed", &e)))
        .and_then(|()| {
            rustix::fs::renameat(&dir, tmp.as_str(), &dir, name)
                .map_err(|e| io_error("renaming over the target failed", &e.into()))
        });
    if let Err(e) = written {
        let _ = rustix::fs::unlinkat(&dir, tmp.as_str(), AtFlags::empty());
        return Err(e);
    }
    File::from(dir).sync_all().map_err(|e| io_error("syncing the directory failed", &e))
}

fn read_back(root: &Path, rel: &Path) -> Result<Secret, ConnectorError> {
    let (dir, name) = open_parent(root, rel)?;
    let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let fd = rustix::fs::openat(&dir, name, flags, Mode::empty()).map_err(|e| link_or_io(name, e))?;
    let mut text = String::new();
    File::from(fd).read_to_string(&mut text).map_err(|e| io_error("reading the file back failed", &e))?;
    Ok(Secret::new(text))
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
