//! Accept loop: plain HTTP (loopback only, unless explicitly allowed) or TLS via
//! rustls, HTTP/1.1 and HTTP/2, graceful shutdown, and the background expiry sweeper.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ConnectInfo;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use tokio::net::TcpListener;
use tower::ServiceExt;

use crate::AppState;

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
}

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
    tokio::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let _ = tcp.set_nodelay(true);
        let app = app.clone();
        let acceptor = acceptor.clone();
        let mut stop = stop_rx.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
                req.extensions_mut().insert(ConnectInfo(peer));
                app.clone().oneshot(req.map(axum::body::Body::new))
            });
            let builder = Builder::new(TokioExecutor::new());
            match acceptor {
                None => {
                    let conn = builder.serve_connection_with_upgrades(TokioIo::new(tcp), svc);
                    tokio::pin!(conn);
                    tokio::select! {
                        _ = conn.as_mut() => {}
                        _ = stop.changed() => { conn.as_mut().graceful_shutdown(); let _ = conn.await; }
                    }
                }
                Some(acc) => {
                    let tls = match tokio::time::timeout(Duration::from_secs(10), acc.accept(tcp)).await {
                        Ok(Ok(t)) => t,
                        _ => return,
                    };
                    let conn = builder.serve_connection_with_upgrades(TokioIo::new(tls), svc);
                    tokio::pin!(conn);
                    tokio::select! {
                        _ = conn.as_mut() => {}
                        _ = stop.changed() => { conn.as_mut().graceful_shutdown(); let _ = conn.await; }
                    }
                }
            }
        });
    }
    let _ = stop_tx.send(true);
    sweeper.abort();
    // Give in-flight requests a moment to finish.
    tokio::time::sleep(Duration::from_millis(200)).await;
    Ok(())
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
