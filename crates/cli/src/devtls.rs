//! `serve --dev-tls`: a local CA and a leaf certificate for localhost, 127.0.0.1 and ::1,
//! made once in `DATA_DIR/dev-tls/` and reused on later starts.
//!
//! The server presents the leaf; clients trust the CA (`--ca-cert DATA_DIR/dev-tls/ca.pem`).
//! A self-signed CA certificate presented by the server itself is refused by TLS clients
//! (`CaUsedAsEndEntity`), hence the two certificates. The CA's private key is not kept: it
//! signs the leaf once and is dropped, so the CA file can be trusted without it ever
//! vouching for anything else.

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

pub struct DevTls {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// The dev TLS files in `data_dir`, made when missing.
pub fn ensure(data_dir: &Path) -> anyhow::Result<DevTls> {
    let dir = data_dir.join("dev-tls");
    let files = DevTls { ca: dir.join("ca.pem"), cert: dir.join("cert.pem"), key: dir.join("key.pem") };
    if files.ca.exists() && files.cert.exists() && files.key.exists() {
        return Ok(files);
    }
    {
        use std::os::unix::fs::DirBuilderExt as _;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(|e| anyhow::anyhow!("dev TLS directory {}: {e}", dir.display()))?;
    }
    let (ca_pem, cert_pem, key_pem) =
        generate().map_err(|e| anyhow::anyhow!("cannot make the dev TLS certificates: {e}"))?;
    // The key first and the CA last: a start interrupted half-way makes them again.
    write(&files.key, &key_pem, 0o600)?;
    write(&files.cert, &cert_pem, 0o644)?;
    write(&files.ca, &ca_pem, 0o644)?;
    Ok(files)
}

/// (CA certificate, leaf certificate, leaf private key), all PEM.
fn generate() -> Result<(String, String, String), rcgen::Error> {
    let ca_key = KeyPair::generate()?;
    let mut ca = CertificateParams::default();
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    ca.distinguished_name = name("fedkey development CA");
    let ca_cert = ca.self_signed(&ca_key)?;
    let issuer = Issuer::new(ca, ca_key);

    let leaf_key = KeyPair::generate()?;
    let mut leaf = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned(), "::1".to_owned()])?;
    leaf.distinguished_name = name("localhost");
    leaf.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let leaf_cert = leaf.signed_by(&leaf_key, &issuer)?;
    Ok((
        pem("CERTIFICATE", ca_cert.der()),
        pem("CERTIFICATE", leaf_cert.der()),
        pem("PRIVATE KEY", &leaf_key.serialize_der()),
    ))
}

fn name(cn: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    dn
}

fn pem(label: &str, der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(chunk));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

fn write(path: &Path, text: &str, mode: u32) -> anyhow::Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(path)
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    f.write_all(text.as_bytes()).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    #[test]
    fn makes_a_ca_and_a_leaf_once() {
        let dir = tempfile::tempdir().unwrap();
        let a = super::ensure(dir.path()).unwrap();
        let ca = std::fs::read_to_string(&a.ca).unwrap();
        assert!(ca.starts_with("-----BEGIN CERTIFICATE-----\n"));
        use rustls_pki_types::pem::PemObject as _;
        assert!(rustls_pki_types::PrivateKeyDer::from_pem_file(&a.key).is_ok(), "the key file holds a key");
        use std::os::unix::fs::PermissionsExt as _;
        assert_eq!(std::fs::metadata(&a.key).unwrap().permissions().mode() & 0o777, 0o600);
        let b = super::ensure(dir.path()).unwrap();
        assert_eq!(std::fs::read_to_string(&b.ca).unwrap(), ca, "reused on the next start");
        fedkey_server::serve::tls_acceptor(&fedkey_server::TlsFiles { cert: b.cert, key: b.key }).unwrap();
    }
}
