//! File connector: atomic replacement, mode 0600, failure leaves the old key, validation.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use fedkey_connectors::{
    Connector, ConnectorCredentials, ConnectorError, ConnectorSpec, Delivery, Receipt, Validation,
};
use fedkey_crypto::Secret;

use crate::common::{NOW, egress};

fn connector(path: &Path) -> Connector {
    Connector::new(ConnectorSpec::File { path: path.to_owned() }, ConnectorCredentials::File, egress()).unwrap()
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
