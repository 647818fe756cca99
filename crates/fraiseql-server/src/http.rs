//! The native server's accept loop: HTTP/1.1 with the bounds a public endpoint needs before
//! any byte reaches the router.
//!
//! - **Header deadline.** A client has [`HttpLimits::header_read_timeout`] to send a
//!   request's headers, from the moment the server waits for them: a slow-header client
//!   (slowloris) is cut off, and so is a keep-alive connection idle that long between
//!   requests.
//! - **Header size.** Headers larger than [`HttpLimits::max_header_bytes`] end the
//!   connection (431-style refusal by hyper).
//! - **Sockets not yet upgraded.** At most [`HttpLimits::max_pending_sockets`] connections
//!   may be in their HTTP phase at once (accepted, not yet a WebSocket, or plain HTTP
//!   requests); past that a new socket is closed at once. Upgraded WebSockets count against
//!   the service's `max_connections` instead.
//! - **Per client IP.** With [`HttpLimits::max_sockets_per_ip`], one address may hold at
//!   most that many sockets (HTTP or WebSocket) at once; off by default (clients behind one
//!   proxy or NAT share an address).
//!
//! Every request carries its socket's addresses as extensions: axum's
//! [`ConnectInfo<SocketAddr>`](axum::extract::ConnectInfo) (the client) and [`LocalAddr`]
//! (the address it reached), for handlers and fallbacks that report them (the ASGI `client`
//! and `server` of a hosted Python app).

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

/// The local address a request's socket was accepted on (a request extension set by
/// [`serve_http`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalAddr(pub SocketAddr);

/// Connection bounds of the native server's HTTP side (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpLimits {
    /// How long a client has to send a request's headers, and how long a keep-alive
    /// connection may sit idle between requests (default 10 s).
    pub header_read_timeout: Duration,
    /// The largest request head accepted, in bytes (default 16 KiB; at least 8 KiB).
    pub max_header_bytes: usize,
    /// Most sockets in their HTTP phase at once (default 1 024).
    pub max_pending_sockets: usize,
    /// Most sockets one client IP may hold at once (default: no limit).
    pub max_sockets_per_ip: Option<usize>,
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            max_header_bytes: 16 * 1024,
            max_pending_sockets: 1024,
            max_sockets_per_ip: None,
        }
    }
}

/// The smallest [`HttpLimits::max_header_bytes`] (hyper's minimum read buffer).
pub const MIN_HEADER_BYTES: usize = 8 * 1024;

/// An [`HttpLimits`] setting out of range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HttpLimitsError {
    /// `header_read_timeout` was zero (every request would time out).
    #[error("header_read_timeout must be more than zero")]
    ZeroHeaderTimeout,
    /// `max_header_bytes` was under [`MIN_HEADER_BYTES`].
    #[error("max_header_bytes must be at least {MIN_HEADER_BYTES} (got {0})")]
    HeaderBytesTooSmall(usize),
    /// `max_pending_sockets` or `max_sockets_per_ip` was zero (nobody could connect).
    #[error("{0} must be at least 1")]
    Zero(&'static str),
}

impl HttpLimits {
    /// Checks the settings.
    ///
    /// # Errors
    /// [`HttpLimitsError`] naming the setting.
    pub const fn validate(&self) -> Result<(), HttpLimitsError> {
        if self.header_read_timeout.is_zero() {
            return Err(HttpLimitsError::ZeroHeaderTimeout);
        }
        if self.max_header_bytes < MIN_HEADER_BYTES {
            return Err(HttpLimitsError::HeaderBytesTooSmall(self.max_header_bytes));
        }
        if self.max_pending_sockets == 0 {
            return Err(HttpLimitsError::Zero("max_pending_sockets"));
        }
        if matches!(self.max_sockets_per_ip, Some(0)) {
            return Err(HttpLimitsError::Zero("max_sockets_per_ip"));
        }
        Ok(())
    }
}

/// Sockets per client IP, shared by the accept loop and every socket's guard.
#[derive(Debug, Default)]
struct PerIp(Mutex<HashMap<IpAddr, usize>>);

impl PerIp {
    fn enter(self: &Arc<Self>, ip: IpAddr, max: usize) -> Option<IpGuard> {
        let mut counts = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let count = counts.entry(ip).or_insert(0);
        if *count >= max {
            return None;
        }
        *count += 1;
        Some(IpGuard {
            table: Arc::clone(self),
            ip,
        })
    }
}

/// One socket counted for its IP; uncounted when the socket (or its WebSocket) is dropped.
#[derive(Debug)]
struct IpGuard {
    table: Arc<PerIp>,
    ip: IpAddr,
}

impl Drop for IpGuard {
    fn drop(&mut self) {
        let mut counts = self.table.0.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = counts.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                counts.remove(&self.ip);
            }
        }
    }
}

/// A socket that carries its per-IP guard for as long as it lives (through the upgrade, so
/// a WebSocket keeps counting).
#[derive(Debug)]
struct CountedStream {
    stream: TcpStream,
    _ip: Option<IpGuard>,
}

impl AsyncRead for CountedStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for CountedStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

/// Leaves the count of sockets in their HTTP phase when dropped.
struct Pending(Arc<AtomicUsize>);

impl Drop for Pending {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Serves `router` on `listener` within `limits` until `until` resolves; then stops
/// accepting and waits for the HTTP connections in flight (upgraded WebSockets are the
/// service's to close).
///
/// # Errors
/// [`io::ErrorKind::InvalidInput`] for limits that [`HttpLimits::validate`] refuses; never
/// for a single bad connection.
pub async fn serve_http(
    listener: TcpListener,
    router: Router,
    limits: HttpLimits,
    until: impl Future<Output = ()> + Send,
) -> io::Result<()> {
    limits
        .validate()
        .map_err(|err| io::Error::new(io::ErrorKind::InvalidInput, err))?;
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(limits.max_header_bytes)
        .keep_alive(true);
    // Each connection task ends its connection gracefully once this fires.
    let stopping = CancellationToken::new();
    let tasks = TaskTracker::new();
    let pending = Arc::new(AtomicUsize::new(0));
    let per_ip = Arc::new(PerIp::default());
    let local = LocalAddr(listener.local_addr()?);
    tokio::pin!(until);
    loop {
        let (stream, peer): (TcpStream, SocketAddr) = tokio::select! {
            () = &mut until => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    // Out of file descriptors and the like: wait instead of spinning.
                    tracing::warn!(error = %err, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        if pending.load(Ordering::Relaxed) >= limits.max_pending_sockets {
            tracing::debug!(%peer, "refused: too many sockets not yet upgraded");
            continue; // dropping the stream closes it
        }
        let ip = match limits.max_sockets_per_ip {
            Some(max) => match per_ip.enter(peer.ip(), max) {
                Some(guard) => Some(guard),
                None => {
                    tracing::debug!(%peer, "refused: too many sockets from this address");
                    continue;
                }
            },
            None => None,
        };
        // Every frame leaves as soon as it is written: with Nagle's algorithm a small frame
        // written while the previous one is unacknowledged waits for that ACK, which the
        // client may delay by up to 40 ms (delayed ACKs), and subscribers see the delay.
        // Frames queued together already leave in one write (one flush per batch); on
        // loopback the option changed neither throughput nor latency measurably.
        if let Err(err) = stream.set_nodelay(true) {
            tracing::debug!(%peer, error = %err, "cannot set TCP_NODELAY");
        }
        pending.fetch_add(1, Ordering::Relaxed);
        let counted = Pending(Arc::clone(&pending));
        let io = TokioIo::new(CountedStream { stream, _ip: ip });
        let service = TowerToHyperService::new(router.clone().map_request(
            move |mut request: axum::http::Request<hyper::body::Incoming>| {
                let extensions = request.extensions_mut();
                extensions.insert(ConnectInfo(peer));
                extensions.insert(local);
                request
            },
        ));
        let connection = http.serve_connection(io, service).with_upgrades();
        let stopping = stopping.clone();
        tasks.spawn(async move {
            let _counted = counted;
            tokio::pin!(connection);
            let ended = tokio::select! {
                ended = connection.as_mut() => ended,
                () = stopping.cancelled() => {
                    // Finish the request in flight, then close (an idle one closes now).
                    connection.as_mut().graceful_shutdown();
                    connection.await
                }
            };
            if let Err(err) = ended {
                tracing::debug!(%peer, error = %err, "HTTP connection ended with an error");
            }
        });
    }
    drop(listener);
    stopping.cancel();
    tasks.close();
    tasks.wait().await;
    Ok(())
}
