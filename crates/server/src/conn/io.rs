//! The server side of a TCP connection, with a lingering close.
//!
//! Closing a socket whose receive buffer still holds data makes the kernel send a reset,
//! and a reset makes the client's kernel drop whatever it had not read yet: a client
//! still uploading a body fedkey refused (413) would see "connection reset" instead of
//! the response. So when the connection is done, [`ServerIo`] stops sending (FIN) and
//! reads and discards what still arrives, for a bounded time and amount, before closing.
//! The connection keeps its slot under the connection cap while it lingers.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::Instant;

/// Longest lingering close.
const LINGER_MAX: Duration = Duration::from_secs(5);
/// A lingering close ends when nothing arrives for this long.
const LINGER_QUIET: Duration = Duration::from_secs(1);
/// Most bytes read and discarded by a lingering close.
const LINGER_MAX_BYTES: usize = 32 * 1024 * 1024;

pub(crate) struct ServerIo {
    tcp: Option<TcpStream>,
    /// The connection's slot under the cap, released when the socket is finally closed.
    permit: Option<OwnedSemaphorePermit>,
}

impl ServerIo {
    pub(crate) fn new(tcp: TcpStream, permit: OwnedSemaphorePermit) -> ServerIo {
        ServerIo { tcp: Some(tcp), permit: Some(permit) }
    }

    fn tcp(&mut self) -> io::Result<Pin<&mut TcpStream>> {
        match self.tcp.as_mut() {
            Some(t) => Ok(Pin::new(t)),
            None => Err(io::ErrorKind::NotConnected.into()),
        }
    }
}

impl Drop for ServerIo {
    fn drop(&mut self) {
        let (Some(tcp), Ok(rt)) = (self.tcp.take(), tokio::runtime::Handle::try_current()) else { return };
        let permit = self.permit.take();
        rt.spawn(async move {
            linger(tcp).await;
            drop(permit);
        });
    }
}

/// Sends FIN, then reads and discards until the client closes, goes quiet, or a bound is hit.
async fn linger(mut tcp: TcpStream) {
    let _ = tcp.shutdown().await;
    let end = Instant::now() + LINGER_MAX;
    let mut buf = vec![0u8; 16 * 1024];
    let mut drained = 0usize;
    while drained < LINGER_MAX_BYTES {
        let until = (Instant::now() + LINGER_QUIET).min(end);
        match tokio::time::timeout_at(until, tcp.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => drained += n,
            _ => break,
        }
    }
}

impl AsyncRead for ServerIo {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match self.get_mut().tcp() {
            Ok(t) => t.poll_read(cx, buf),
            Err(e) => Poll::Ready(Err(e)),
        }
    }
}

impl AsyncWrite for ServerIo {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut().tcp() {
            Ok(t) => t.poll_write(cx, buf),
            Err(e) => Poll::Ready(Err(e)),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut().tcp() {
            Ok(t) => t.poll_write_vectored(cx, bufs),
            Err(e) => Poll::Ready(Err(e)),
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.tcp.as_ref().is_some_and(|t| t.is_write_vectored())
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut().tcp() {
            Ok(t) => t.poll_flush(cx),
            Err(e) => Poll::Ready(Err(e)),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut().tcp() {
            Ok(t) => t.poll_shutdown(cx),
            Err(e) => Poll::Ready(Err(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use tokio::net::TcpListener;
    use tokio::sync::Semaphore;

    use super::*;

    /// A client that sends its whole (refused) body before reading still reads the answer,
    /// and the slot under the cap is released once the client has closed.
    #[tokio::test]
    async fn a_client_still_sending_reads_the_answer_instead_of_a_reset() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let slots = Arc::new(Semaphore::new(1));
        let permit = slots.clone().acquire_owned().await.unwrap();
        let server = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            let mut io = ServerIo::new(tcp, permit);
            let mut head = [0u8; 16];
            io.read_exact(&mut head).await.unwrap();
            io.write_all(b"refused").await.unwrap();
            // Dropped with most of the upload still to come.
        });
        let mut client = TcpStream::connect(addr).await.unwrap();
        let upload = vec![b'x'; 8 * 1024 * 1024];
        client.write_all(&upload).await.unwrap();
        let mut answer = Vec::new();
        client.read_to_end(&mut answer).await.unwrap();
        assert_eq!(answer, b"refused");
        server.await.unwrap();
        drop(client);
        let slot = tokio::time::timeout(Duration::from_secs(5), slots.acquire()).await;
        assert!(slot.is_ok(), "the slot is released after the lingering close");
    }
}
