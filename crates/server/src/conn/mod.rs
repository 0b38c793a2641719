//! Connection hygiene for the accept loop: a cap on open connections, a deadline for a
//! connection's first request and an idle timeout ([`watch`]), a lingering close so a
//! client still sending a refused body reads the response instead of a reset ([`io`]),
//! and accept errors paced with back-off and a rate-limited log line ([`accept`]).

pub(crate) mod accept;
pub(crate) mod io;
pub(crate) mod watch;

use std::time::Duration;

/// Limits on the connections the server holds.
#[derive(Debug, Clone, Copy)]
pub struct ConnLimits {
    /// An HTTP/1.1 request's header, and a connection's first request, must arrive within
    /// this. An HTTP/1.1 connection waiting for its next request is closed after it too.
    pub header_read_timeout: Duration,
    /// A connection with no request in progress for this long is closed.
    pub idle_timeout: Duration,
    /// Connections served at once. Further ones wait in the listen backlog until one closes.
    pub max_connections: usize,
}

impl Default for ConnLimits {
    fn default() -> Self {
        ConnLimits {
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_connections: 512,
        }
    }
}
