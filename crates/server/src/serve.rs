//! Accept loop: plain HTTP (loopback only, unless explicitly allowed) or TLS via
//! rustls, HTTP/1.1 and HTTP/2, connection limits and timeouts ([`crate::conn`]),
//! graceful shutdown, and the background expiry sweeper.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ConnectInfo;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tower::ServiceExt;

use crate::AppState;
pub use crate::conn::ConnLimits;
use crate::conn::accept::AcceptErrors;
use crate::conn::io::ServerIo;
use crate::conn::watch::{Activity, Expired};

#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub tls: Option<TlsFiles>,
    /// How often lapsed key versions are written down as expired.
    pub sweep_interval: Duration,
    /// Timeouts and the cap on open connections.
    pub limits: ConnLimits,
}

/// A TLS handshake must finish within this.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Builds a rustls acceptor from PEM files; errors name the file, never its contents.
pub fn tls_acceptor(files: &TlsFiles) -> anyhow::Result<tokio_rustls::TlsAcceptor> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let certs = CertificateDer::pem_file_iter(&files.cert)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| anyhow::anyhow!("cannot read TLS certificate {}: {e}", files.cert.display()))?;
    if certs.is_empty() {
        anyhow::bail!("no certificate found in {}", files.cert.display());
    }
    let key = PrivateKeyDer::from_pem_file(&files.key)
        .map_err(|_| anyhow::anyhow!("cannot read a private key from {}", files.key.display()))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| anyhow::anyhow!("TLS certificate and key do not form a usable pair: {e}"))?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(cfg)))
}

/// Serves until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    opts: ServeOptions,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let acceptor = opts.tls.as_ref().map(tls_acceptor).transpose()?;
    crate::metrics::handle();
    let app = crate::router(state.clone());
    let sweeper = tokio::spawn(sweep(state.clone(), opts.sweep_interval));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    // Over the cap, connections wait in the listen backlog: the loop stops accepting.
    let slots = Arc::new(Semaphore::new(opts.limits.max_connections.max(1)));
    let mut errors = AcceptErrors::default();
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            p = slots.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
            _ = &mut shutdown => break,
        };
        let (tcp, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    let pause = errors.failed(&e, tokio::time::Instant::now());
                    if let Some(n) = pause.log {
                        tracing::warn!(error = %e, failures = n, pause_ms = pause.wait.as_millis() as u64,
                            "accept failed; pausing before the next accept (at most one such line per {}s)",
                            crate::conn::accept::LOG_EVERY.as_secs());
                    }
                    drop(permit);
                    tokio::select! {
                        _ = tokio::time::sleep(pause.wait) => continue,
                        _ = &mut shutdown => break,
                    }
                }
            },
            _ = &mut shutdown => break,
        };
        errors.accepted();
        let _ = tcp.set_nodelay(true);
        let conn = Conn { app: app.clone(), peer, limits: opts.limits, stop: stop_rx.clone() };
        tokio::spawn(conn.serve(ServerIo::new(tcp, permit), acceptor.clone()));
    }
    let _ = stop_tx.send(true);
    sweeper.abort();
    // Give in-flight requests a moment to finish.
    tokio::time::sleep(Duration::from_millis(200)).await;
    Ok(())
}

/// The byte stream of one connection: plain TCP or TLS over it.
trait Io: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Io for T {}

/// One accepted connection.
struct Conn {
    app: axum::Router,
    peer: SocketAddr,
    limits: ConnLimits,
    stop: tokio::sync::watch::Receiver<bool>,
}

impl Conn {
    async fn serve(mut self, tcp: ServerIo, acceptor: Option<tokio_rustls::TlsAcceptor>) {
        let io: Box<dyn Io> = match acceptor {
            None => Box::new(tcp),
            Some(acc) => match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acc.accept(tcp)).await {
                Ok(Ok(tls)) => Box::new(tls),
                _ => return,
            },
        };
        let activity = Activity::new();
        let (app, peer, requests) = (self.app.clone(), self.peer, activity.clone());
        let svc = hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
            let in_flight = requests.start();
            req.extensions_mut().insert(ConnectInfo(peer));
            let answer = app.clone().oneshot(req.map(axum::body::Body::new));
            async move {
                let resp = answer.await;
                drop(in_flight);
                resp
            }
        });
        let mut builder = Builder::new(TokioExecutor::new());
        builder.http1().timer(TokioTimer::new()).header_read_timeout(self.limits.header_read_timeout);
        let conn = builder.serve_connection_with_upgrades(TokioIo::new(io), svc);
        tokio::pin!(conn);
        let ConnLimits { header_read_timeout, idle_timeout, .. } = self.limits;
        tokio::select! {
            _ = conn.as_mut() => return,
            _ = self.stop.changed() => {}
            why = activity.expired(header_read_timeout, idle_timeout) => {
                // Nothing to finish: drop the connection (a lingering close follows).
                if why == Expired::NoRequest {
                    return;
                }
            }
        }
        conn.as_mut().graceful_shutdown();
        let _ = tokio::time::timeout(idle_timeout, conn).await;
    }
}

async fn sweep(state: AppState, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match state.store.expire_due().await {
            Ok(0) => {}
            Ok(n) => tracing::info!(expired = n, "key versions expired"),
            Err(e) => tracing::warn!(error = ?e, "expiry sweep failed"),
        }
        // Keys sealed behind wrapped links that lapsed unused are erased.
        if let Err(e) = state.store.purge_expired_wraps().await {
            tracing::warn!(error = ?e, "wrapped-link sweep failed");
        }
    }
}

/// Whether plain HTTP on `addr` is acceptable without `--insecure-http`.
pub fn plain_http_allowed(addr: &SocketAddr) -> bool {
    addr.ip().is_loopback()
}
