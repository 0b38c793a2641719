//! RFC 5424 syslog over TCP with octet-counting framing (RFC 6587) or over TLS (RFC 5425).
//!
//! Syslog has no acknowledgement: a batch counts as delivered once it is written and the
//! collector has not closed the connection within [`ACK_WAIT`] after it. A collector that
//! closes (or is gone) is noticed before the next batch and the batch is sent again on a
//! new connection; records a collector accepted and then lost in its own buffers cannot be
//! noticed (see docs/audit.md).

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use fedkey_audit::{Outcome, Record};
use fedkey_egress::{Egress, Policy, UrlRules};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use super::settings::SinkSettings;

/// How long after a batch the connection must stay open for the batch to count.
const ACK_WAIT: Duration = Duration::from_millis(100);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// RFC 5424 facility 13, "log audit".
const FACILITY: u8 = 13;

/// Where a syslog sink connects, checked against the egress policy.
pub(crate) struct Endpoint {
    host: String,
    port: u16,
    /// Set when the host is an address (already checked); a name is resolved and its
    /// addresses filtered at each connection.
    literal: Option<IpAddr>,
    tls: Option<Arc<rustls::ClientConfig>>,
    policy: Policy,
    hostname: String,
}

impl Endpoint {
    /// `HOST:PORT` (an IPv6 address in brackets).
    pub(super) fn parse(
        rest: &str,
        tls: Option<Arc<rustls::ClientConfig>>,
        s: &SinkSettings,
        egress: &Egress,
        hostname: String,
    ) -> Result<Endpoint, String> {
        let rest = rest.trim_end_matches('/');
        let (host, port) = rest.rsplit_once(':').filter(|(h, _)| !h.is_empty()).ok_or_else(|| {
            "url: syslog needs HOST:PORT (e.g. syslog+tls://siem.example.com:6514), a port too".to_owned()
        })?;
        let port: u16 =
            port.parse().ok().filter(|p| *p > 0).ok_or_else(|| format!("url: port {port:?} is not a port"))?;
        if host.contains(['/', '@', '?', '#']) {
            return Err("url: syslog URLs are HOST:PORT only (no path, credentials or query)".into());
        }
        // The same address rules as an https URL to that host: the deny list, with
        // loopback allowed when the host itself is loopback.
        let as_url = format!("https://{host}:{port}/");
        let url = egress.check_url(&as_url, UrlRules::HTTPS_ONLY).map_err(|e| format!("url: {e}"))?;
        let loopback = fedkey_egress::policy::is_loopback_host(&url);
        if tls.is_none() && !loopback && !s.allow_plaintext {
            return Err(format!(
                "url: syslog+tcp sends records in clear; use syslog+tls, a loopback host, or the lab opt-in allow_plaintext for {host}"
            ));
        }
        let bare = host.trim_start_matches('[').trim_end_matches(']').to_owned();
        Ok(Endpoint { literal: bare.parse().ok(), host: bare, port, tls, policy: egress.policy().clone(), hostname })
    }

    async fn connect(&self) -> Result<Box<dyn Io>, String> {
        let addrs: Vec<SocketAddr> = match self.literal {
            Some(ip) => vec![SocketAddr::new(ip, self.port)],
            None => {
                let found: Vec<SocketAddr> = tokio::net::lookup_host((self.host.as_str(), self.port))
                    .await
                    .map_err(|e| format!("cannot resolve {}: {e}", self.host))?
                    .collect();
                self.policy.filter_resolved(&self.host, found).map_err(|e| e.to_string())?
            }
        };
        let mut last = format!("{} has no address", self.host);
        for a in addrs {
            match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(a)).await {
                Ok(Ok(tcp)) => {
                    let _ = tcp.set_nodelay(true);
                    return self.wrap(tcp).await;
                }
                Ok(Err(e)) => last = format!("cannot connect to {a}: {e}"),
                Err(_) => last = format!("cannot connect to {a}: timed out"),
            }
        }
        Err(last)
    }

    async fn wrap(&self, tcp: TcpStream) -> Result<Box<dyn Io>, String> {
        let Some(cfg) = &self.tls else { return Ok(Box::new(tcp)) };
        let name = rustls_pki_types::ServerName::try_from(self.host.clone())
            .map_err(|_| format!("{} is not a TLS server name", self.host))?;
        let tls =
            tokio::time::timeout(CONNECT_TIMEOUT, tokio_rustls::TlsConnector::from(cfg.clone()).connect(name, tcp))
                .await
                .map_err(|_| format!("TLS handshake with {} timed out", self.host))?
                .map_err(|e| format!("TLS handshake with {} failed: {e}", self.host))?;
        Ok(Box::new(tls))
    }
}

/// Trusted roots: the system's, plus `ca_file`.
pub(super) fn client_config(ca_file: Option<&Path>) -> Result<Arc<rustls::ClientConfig>, String> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_native_certs::load_native_certs().certs {
        let _ = roots.add(c);
    }
    if let Some(p) = ca_file {
        let certs = CertificateDer::pem_file_iter(p)
            .and_then(|it| it.collect::<Result<Vec<_>, _>>())
            .map_err(|e| format!("cannot read ca_file {}: {e}", p.display()))?;
        if certs.is_empty() {
            return Err(format!("no certificate found in ca_file {}", p.display()));
        }
        for c in certs {
            roots.add(c).map_err(|e| format!("ca_file {}: {e}", p.display()))?;
        }
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(cfg))
}

trait Io: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Io for T {}

pub(crate) struct SyslogSink {
    endpoint: Arc<Endpoint>,
    conn: Option<Box<dyn Io>>,
}

impl SyslogSink {
    pub(super) fn new(endpoint: Arc<Endpoint>) -> SyslogSink {
        SyslogSink { endpoint, conn: None }
    }

    pub(super) fn reset(&mut self) {
        self.conn = None;
    }

    pub(super) async fn send(&mut self, records: &[Record]) -> Result<(), String> {
        // A collector that went away closed its end: notice it before writing into a
        // connection that would swallow the batch.
        if let Some(c) = &mut self.conn
            && closed_now(c.as_mut()).await
        {
            self.conn = None;
        }
        if self.conn.is_none() {
            self.conn = Some(self.endpoint.connect().await?);
        }
        let Some(conn) = self.conn.as_mut() else { return Err("no connection".into()) };
        let mut buf = Vec::with_capacity(records.len() * 512);
        let procid = std::process::id();
        for r in records {
            let msg = message(r, &self.endpoint.hostname, procid);
            buf.extend_from_slice(msg.len().to_string().as_bytes());
            buf.push(b' ');
            buf.extend_from_slice(&msg);
        }
        let write = async {
            conn.write_all(&buf).await?;
            conn.flush().await
        };
        match tokio::time::timeout(WRITE_TIMEOUT, write).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(format!("write to {} failed: {e}", self.endpoint.host)),
            Err(_) => return Err(format!("write to {} timed out", self.endpoint.host)),
        }
        let mut probe = [0u8; 512];
        match tokio::time::timeout(ACK_WAIT, conn.read(&mut probe)).await {
            Ok(Ok(0)) => Err(format!("{} closed the connection", self.endpoint.host)),
            Ok(Err(e)) => Err(format!("connection to {} failed: {e}", self.endpoint.host)),
            // Collectors send nothing back; anything they do send is ignored.
            Ok(Ok(_)) | Err(_) => Ok(()),
        }
    }
}

/// Whether the peer has closed (or reset) the connection, without waiting.
async fn closed_now(c: &mut dyn Io) -> bool {
    let mut probe = [0u8; 512];
    loop {
        match tokio::time::timeout(Duration::ZERO, c.read(&mut probe)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
            Err(_) => return false,
        }
    }
}

/// One RFC 5424 message: `<PRI>1 TIMESTAMP HOSTNAME fedkey PROCID MSGID - BOM{record JSON}`.
/// MSGID is the action; the message is the record in its export form.
pub(crate) fn message(r: &Record, hostname: &str, procid: u32) -> Vec<u8> {
    let severity = match r.outcome {
        Outcome::Success => 6,
        Outcome::Denied => 5,
        Outcome::Failure => 4,
    };
    let msgid: String = r.action.chars().filter(|c| c.is_ascii_graphic()).take(32).collect();
    let msgid = if msgid.is_empty() { "-".to_owned() } else { msgid };
    let mut out = format!(
        "<{}>1 {} {hostname} fedkey {procid} {msgid} - ",
        u16::from(FACILITY) * 8 + severity,
        r.ts.to_rfc3339()
    )
    .into_bytes();
    out.extend_from_slice("\u{feff}".as_bytes());
    out.extend_from_slice(r.to_json().to_string().as_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use fedkey_audit::Event;
    use fedkey_core::Timestamp;

    #[test]
    fn messages_are_rfc5424_with_the_record_as_json() {
        let r = Event::new(Timestamp(1_700_000_000_000_001), "token:ops", "key.rotate", Outcome::Denied)
            .into_record(42, [0; 32]);
        let m = String::from_utf8(message(&r, "node1", 77)).unwrap();
        let (head, json) = m.split_once('\u{feff}').unwrap();
        assert_eq!(head, "<109>1 2023-11-14T22:13:20.000001Z node1 fedkey 77 key.rotate - ");
        let v: serde_json::Value = serde_json::from_str(json).unwrap();
        assert_eq!(v["seq"], 42);
        assert_eq!(Record::from_json(&v).unwrap().compute_hash(), r.hash);
    }

    /// A private CA, a collector on `localhost` with a leaf of it: the sink checks the
    /// certificate against `ca_file`, and the collector reads octet-counted RFC 5424 frames.
    #[tokio::test]
    async fn tls_sink_delivers_framed_messages_to_a_collector_of_a_private_ca() {
        use base64::Engine as _;
        use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca = rcgen::CertifiedIssuer::self_signed(ca_params, rcgen::KeyPair::generate().unwrap()).unwrap();
        let leaf_key = rcgen::KeyPair::generate().unwrap();
        let leaf =
            rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap().signed_by(&leaf_key, &ca).unwrap();
        let acceptor = || {
            let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
            let server = rustls::ServerConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_no_client_auth()
                .with_single_cert(
                    vec![CertificateDer::from(leaf.der().to_vec())],
                    PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der())),
                )
                .unwrap();
            tokio_rustls::TlsAcceptor::from(Arc::new(server))
        };
        let dir = tempfile::tempdir().unwrap();
        let ca_file = dir.path().join("ca.pem");
        let b64 = base64::engine::general_purpose::STANDARD.encode(ca.der());
        let body: Vec<&str> = b64.as_bytes().chunks(64).map(|c| std::str::from_utf8(c).unwrap()).collect();
        std::fs::write(
            &ca_file,
            format!("-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n", body.join("\n")),
        )
        .unwrap();

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let first = acceptor();
        // The collector keeps the connection open until the sink's send returned: a close
        // right after the batch would (rightly) count as no acknowledgement.
        let (done, sent) = tokio::sync::oneshot::channel::<()>();
        let collector = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            let mut tls = first.accept(tcp).await.unwrap();
            let mut got = Vec::new();
            let mut buf = Vec::new();
            while got.len() < 3 {
                let mut chunk = [0u8; 4096];
                let n = tls.read(&mut chunk).await.unwrap();
                assert!(n > 0, "closed early");
                buf.extend_from_slice(&chunk[..n]);
                while let Some(sp) = buf.iter().position(|&b| b == b' ') {
                    let len: usize = std::str::from_utf8(&buf[..sp]).unwrap().parse().unwrap();
                    if buf.len() < sp + 1 + len {
                        break;
                    }
                    got.push(String::from_utf8(buf[sp + 1..sp + 1 + len].to_vec()).unwrap());
                    buf.drain(..sp + 1 + len);
                }
            }
            let _ = sent.await;
            got
        });

        let egress = Egress::strict().unwrap();
        let settings = SinkSettings {
            name: "siem".into(),
            url: format!("syslog+tls://localhost:{port}"),
            format: None,
            token_file: None,
            ca_file: Some(ca_file.clone()),
            allow_plaintext: false,
            batch_size: None,
            max_backoff: None,
            sourcetype: None,
            hostname: Some("node1".into()),
        };
        let spec = super::super::SinkSpec::parse(&settings, &egress).unwrap();
        let super::super::Sink::Syslog(mut sink) = spec.connect() else { panic!("a syslog sink") };
        let mut prev = [0; 32];
        let records: Vec<Record> = (1..=3)
            .map(|seq| {
                let r = Event::new(Timestamp(1_700_000_000_000_000), "token:ops", "directory.create", Outcome::Success)
                    .into_record(seq, prev);
                prev = r.hash;
                r
            })
            .collect();
        sink.send(&records).await.unwrap();
        let _ = done.send(());
        let got = collector.await.unwrap();
        for (i, m) in got.iter().enumerate() {
            assert!(m.starts_with("<110>1 2023-11-14T22:13:20Z node1 fedkey "), "{m}");
            let v: serde_json::Value = serde_json::from_str(m.split_once('\u{feff}').unwrap().1).unwrap();
            assert_eq!(v["seq"], i as i64 + 1);
        }

        // Without the private CA the collector's certificate is refused.
        let untrusted = SinkSettings { ca_file: None, ..settings };
        let spec = super::super::SinkSpec::parse(&untrusted, &egress).unwrap();
        let super::super::Sink::Syslog(mut sink) = spec.connect() else { panic!("a syslog sink") };
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await.unwrap();
        let second = acceptor();
        tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            let _ = second.accept(tcp).await;
        });
        let e = sink.send(&records).await.unwrap_err();
        assert!(e.contains("TLS handshake"), "{e}");
    }
}
