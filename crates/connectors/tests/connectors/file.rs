//! File connector: atomic replacement, mode 0600, failure leaves the old key, validation;
//! writes only under its delivery root, never through a symbolic link.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use fedkey_connectors::{
    Connector, ConnectorCredentials, ConnectorError, ConnectorSpec, Delivery, DeliveryRoot, Receipt, Validation,
};
use fedkey_crypto::Secret;

use crate::common::{NOW, egress};

/// A file connector for `path`, confined to the directory it is in.
fn connector(path: &Path) -> Connector {
    let root = DeliveryRoot::new(path.parent().unwrap(), &[]).unwrap();
    unconfined(path).confine(&root).unwrap()
}

fn unconfined(path: &Path) -> Connector {
    Connector::new(ConnectorSpec::File { path: path.to_owned() }, ConnectorCredentials::File, egress()).unwrap()
}

/// A temporary directory by its resolved path (the delivery root is compared resolved).
fn tempdir() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().canonicalize().unwrap();
    (dir, base)
}

fn delivery(key: &Secret) -> Delivery<'_> {
    Delivery { trust: "acme/app", version: 1, key, scim_base_url: "https://fedkey.example/scim/v2/acme/app" }
}

fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    names
}

#[tokio::test]
async fn writes_0600_replaces_and_validates() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("scim.key");
    let c = connector(&path);
    let v1 = Secret::new("fkp_first_key_version_one".into());
    assert_eq!(c.deliver(&delivery(&v1), NOW).await.unwrap(), Receipt::File { path: path.clone() });
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "fkp_first_key_version_one");
    assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
    assert_eq!(c.validate(&delivery(&v1), NOW).await.unwrap(), Validation::Verified);

    // Replacing a file that had looser permissions still yields 0600: it is a new inode.
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let v2 = Secret::new("fkp_second_key_version_two".into());
    c.deliver(&delivery(&v2), NOW).await.unwrap();
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "fkp_second_key_version_two");
    assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
    assert_eq!(entries(dir.path()), vec!["scim.key"], "no temporary file left behind");

    let e = c.validate(&delivery(&v1), NOW).await.unwrap_err();
    assert!(matches!(e, ConnectorError::ValidationFailed { .. }), "{e:?}");
    assert!(!e.to_string().contains("fkp_"), "{e}");
}

#[tokio::test]
async fn readers_never_see_a_partial_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("scim.key");
    let c = connector(&path);
    let a = Secret::new("A".repeat(256 * 1024));
    let b = Secret::new("B".repeat(256 * 1024));
    c.deliver(&delivery(&a), NOW).await.unwrap();
    let reader_path = path.clone();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop_reader = stop.clone();
    let reader = std::thread::spawn(move || {
        let mut reads = 0;
        while !stop_reader.load(std::sync::atomic::Ordering::SeqCst) {
            let s = std::fs::read_to_string(&reader_path).unwrap();
            assert!(s == "A".repeat(256 * 1024) || s == "B".repeat(256 * 1024), "torn read of {} bytes", s.len());
            reads += 1;
        }
        reads
    });
    for i in 0..20 {
        c.deliver(&delivery(if i % 2 == 0 { &b } else { &a }), NOW).await.unwrap();
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    assert!(reader.join().unwrap() > 0);
}

#[tokio::test]
async fn a_failed_write_keeps_the_old_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("scim.key");
    let c = connector(&path);
    let old = Secret::new("fkp_old_key".into());
    c.deliver(&delivery(&old), NOW).await.unwrap();

    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o500)).unwrap();
    let probe = std::fs::File::create(dir.path().join("probe"));
    let privileged = probe.is_ok(); // root ignores directory permissions
    if privileged {
        std::fs::remove_file(dir.path().join("probe")).unwrap();
        eprintln!(
            "NOTE: running with privileges that bypass directory permissions; unwritable-directory case not exercised"
        );
    } else {
        let new = Secret::new("fkp_new_key".into());
        let e = c.deliver(&delivery(&new), NOW).await.unwrap_err();
        assert!(matches!(e, ConnectorError::Io { retryable: false, .. }), "{e:?}");
        assert!(e.to_string().starts_with("file connector"), "{e}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "fkp_old_key");
    }
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).unwrap();

    // Privilege-independent failure: the rename cannot replace a directory. The temp file
    // must be cleaned up and the directory left as it was.
    let blocked = dir.path().join("blocked");
    std::fs::create_dir(&blocked).unwrap();
    std::fs::write(blocked.join("inside"), "untouched").unwrap();
    let e = connector(&blocked).deliver(&delivery(&old), NOW).await.unwrap_err();
    assert!(matches!(e, ConnectorError::Io { .. }), "{e:?}");
    assert!(e.to_string().contains("renaming"), "{e}");
    assert_eq!(std::fs::read_to_string(blocked.join("inside")).unwrap(), "untouched");
    assert_eq!(entries(dir.path()), vec!["blocked", "scim.key"], "no temporary file left behind");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "fkp_old_key");
}

#[test]
fn relative_paths_are_rejected() {
    let e = Connector::new(ConnectorSpec::File { path: "scim.key".into() }, ConnectorCredentials::File, egress())
        .err()
        .unwrap();
    assert!(matches!(e, ConnectorError::Config { .. }), "{e:?}");
}

/// Issue 16, row 9: the connector wrote wherever the process could (the master key, the
/// database). Now a path outside the root, with `..`, or without a root is refused.
#[tokio::test]
async fn writes_only_under_the_delivery_root() {
    let (_dir, base) = tempdir();
    let root_dir = base.join("deliveries");
    std::fs::create_dir(&root_dir).unwrap();
    let root = DeliveryRoot::new(&root_dir, &[base.join("master.key")]).unwrap();
    let key = Secret::new("fkp_key".into());
    for outside in [base.join("master.key"), base.join("fedkey.db"), root_dir.join("../master.key"), root_dir.clone()] {
        let e = unconfined(&outside).confine(&root).unwrap_err();
        assert!(matches!(e, ConnectorError::Config { .. }), "{e:?}");
        assert!(e.to_string().contains("delivery root"), "{e}");
    }
    let e = unconfined(&root_dir.join("k")).deliver(&delivery(&key), NOW).await.unwrap_err();
    assert!(e.to_string().contains("no delivery root"), "{e}");
    assert!(!base.join("master.key").exists() && !root_dir.join("k").exists());
    let inside = unconfined(&root_dir.join("k")).confine(&root).unwrap();
    inside.deliver(&delivery(&key), NOW).await.unwrap();
    assert_eq!(std::fs::read_to_string(root_dir.join("k")).unwrap(), "fkp_key");
}

#[test]
fn a_root_that_holds_fedkeys_secrets_is_refused() {
    let (_dir, base) = tempdir();
    let e = DeliveryRoot::new(&base, &[base.join("master.key")]).unwrap_err();
    assert!(e.contains("master key"), "{e}");
    let e = DeliveryRoot::new(&base.join("missing"), &[]).unwrap_err();
    assert!(e.contains("delivery_root"), "{e}");
}

#[tokio::test]
async fn symbolic_links_out_of_the_root_are_not_followed() {
    let (_dir, base) = tempdir();
    let (root_dir, outside) = (base.join("root"), base.join("outside"));
    std::fs::create_dir_all(root_dir.join("sub")).unwrap();
    std::fs::create_dir(&outside).unwrap();
    std::fs::write(outside.join("victim"), "precious").unwrap();
    let root = DeliveryRoot::new(&root_dir, &[]).unwrap();
    let key = Secret::new("fkp_key".into());

    // At configuration time: a linked directory on the way.
    std::os::unix::fs::symlink(&outside, root_dir.join("link")).unwrap();
    let e = unconfined(&root_dir.join("link/victim")).confine(&root).unwrap_err();
    assert!(e.to_string().contains("symbolic link"), "{e}");

    // At delivery time: the directory was swapped for a link after the connector was stored.
    let c = unconfined(&root_dir.join("sub/victim")).confine(&root).unwrap();
    std::fs::remove_dir(root_dir.join("sub")).unwrap();
    std::os::unix::fs::symlink(&outside, root_dir.join("sub")).unwrap();
    let e = c.deliver(&delivery(&key), NOW).await.unwrap_err();
    assert!(matches!(e, ConnectorError::Io { retryable: false, .. }), "{e:?}");
    assert!(e.to_string().contains("symbolic link"), "{e}");
    assert!(c.validate(&delivery(&key), NOW).await.is_err());

    // A link at the target: refused when configured; one placed later is replaced, not
    // written through.
    let c = unconfined(&root_dir.join("key")).confine(&root).unwrap();
    std::os::unix::fs::symlink(outside.join("victim"), root_dir.join("key")).unwrap();
    assert!(unconfined(&root_dir.join("key")).confine(&root).is_err());
    c.deliver(&delivery(&key), NOW).await.unwrap();
    assert!(!std::fs::symlink_metadata(root_dir.join("key")).unwrap().file_type().is_symlink());
    assert_eq!(std::fs::read_to_string(root_dir.join("key")).unwrap(), "fkp_key");
    assert_eq!(std::fs::read_to_string(outside.join("victim")).unwrap(), "precious");
    assert_eq!(entries(&outside), vec!["victim"]);
}
