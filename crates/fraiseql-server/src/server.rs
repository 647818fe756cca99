//! The standalone server: the [`SubscriptionService`] on its own listener, with graceful
//! shutdown on a [`ShutdownHandle`] or on SIGTERM / SIGINT.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use fraiseql_protocol::ConnectionConfig;
use fraiseql_subscriptions::security::Authenticator;
use fraiseql_subscriptions::{Engine, EngineConfig, EventBus, FieldConfig};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::http::{serve_http, HttpLimits, HttpLimitsError};
use crate::service::{ServiceBuilder, ServiceError, SubscriptionService};

/// Why the server could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    /// The service could not be built.
    #[error(transparent)]
    Service(#[from] ServiceError),
    /// The address could not be bound, or the listener failed.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address.
        addr: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// An HTTP limit is out of range.
    #[error("invalid HTTP limit: {0}")]
    HttpLimits(#[from] HttpLimitsError),
    /// Serving failed.
    #[error("server error: {0}")]
    Io(#[from] std::io::Error),
}

/// Triggers a graceful shutdown of a running [`Server`]: every client gets close 1001,
/// connections drain within the grace period, then [`Server::serve`] returns.
#[derive(Debug, Clone, Default)]
pub struct ShutdownHandle(CancellationToken);

impl ShutdownHandle {
    /// Starts the shutdown (idempotent).
    pub fn shutdown(&self) {
        self.0.cancel();
    }

    /// Whether shutdown has started.
    #[must_use]
    pub fn is_shutting_down(&self) -> bool {
        self.0.is_cancelled()
    }
}

/// Builds a [`Server`]: everything [`ServiceBuilder`] takes, plus the address and the
/// shutdown grace period.
#[derive(Debug)]
pub struct ServerBuilder {
    service: ServiceBuilder,
    bind: String,
    shutdown_grace: Duration,
    http_limits: HttpLimits,
}

impl Default for ServerBuilder {
    fn default() -> Self {
        Self {
            service: ServiceBuilder::default(),
            bind: "127.0.0.1:8000".to_owned(),
            shutdown_grace: Duration::from_secs(10),
            http_limits: HttpLimits::default(),
        }
    }
}

impl ServerBuilder {
    /// Also serves the WebSocket endpoint at `path` (an alias of [`ServerBuilder::path`]).
    #[must_use]
    pub fn also_path(mut self, path: impl Into<String>) -> Self {
        self.service = self.service.also_path(path);
        self
    }

    /// The address to listen on (default `127.0.0.1:8000`; port 0 picks a free port, see
    /// [`Server::local_addr`]).
    #[must_use]
    pub fn bind(mut self, addr: impl Into<String>) -> Self {
        self.bind = addr.into();
        self
    }

    /// How long connections may take to close after shutdown starts (default 10 s).
    #[must_use]
    pub fn shutdown_grace(mut self, grace: Duration) -> Self {
        self.shutdown_grace = grace;
        self
    }

    /// See [`ServiceBuilder::path`].
    #[must_use]
    pub fn path(mut self, path: impl Into<String>) -> Self {
        self.service = self.service.path(path);
        self
    }

    /// See [`ServiceBuilder::field`].
    #[must_use]
    pub fn field(mut self, name: impl Into<String>, field: FieldConfig) -> Self {
        self.service = self.service.field(name, field);
        self
    }

    /// See [`ServiceBuilder::engine_config`].
    #[must_use]
    pub fn engine_config(mut self, config: EngineConfig) -> Self {
        self.service = self.service.engine_config(config);
        self
    }

    /// See [`ServiceBuilder::bus`].
    #[must_use]
    pub fn bus(mut self, bus: Arc<dyn EventBus>) -> Self {
        self.service = self.service.bus(bus);
        self
    }

    /// See [`ServiceBuilder::authenticator`].
    #[must_use]
    pub fn authenticator(mut self, authenticator: Arc<dyn Authenticator>) -> Self {
        self.service = self.service.authenticator(authenticator);
        self
    }

    /// See [`ServiceBuilder::connection_config`].
    #[must_use]
    pub fn connection_config(mut self, config: ConnectionConfig) -> Self {
        self.service = self.service.connection_config(config);
        self
    }

    /// See [`ServiceBuilder::publish_token`].
    #[must_use]
    pub fn publish_token(mut self, token: impl Into<String>) -> Self {
        self.service = self.service.publish_token(token);
        self
    }

    /// See [`ServiceBuilder::max_connections`].
    #[must_use]
    pub fn max_connections(mut self, max: usize) -> Self {
        self.service = self.service.max_connections(max);
        self
    }

    /// See [`ServiceBuilder::write_timeout`].
    #[must_use]
    pub fn write_timeout(mut self, timeout: Duration) -> Self {
        self.service = self.service.write_timeout(timeout);
        self
    }

    /// Connection bounds of the HTTP side: header deadline and size, sockets not yet
    /// upgraded, sockets per client IP (see [`HttpLimits`]).
    #[must_use]
    pub fn http_limits(mut self, limits: HttpLimits) -> Self {
        self.http_limits = limits;
        self
    }

    /// See [`ServiceBuilder::max_batch`].
    #[must_use]
    pub fn max_batch(mut self, frames: usize) -> Self {
        self.service = self.service.max_batch(frames);
        self
    }

    /// Builds the service and binds the listener.
    ///
    /// # Errors
    /// [`ServerError`] for an invalid setting or an address that cannot be bound.
    pub async fn build(self) -> Result<Server, ServerError> {
        self.http_limits.validate()?;
        let service = self.service.build().await?;
        let listener =
            TcpListener::bind(&self.bind)
                .await
                .map_err(|source| ServerError::Listen {
                    addr: self.bind.clone(),
                    source,
                })?;
        let local_addr = listener.local_addr()?;
        Ok(Server {
            service,
            listener,
            local_addr,
            shutdown: ShutdownHandle::default(),
            shutdown_grace: self.shutdown_grace,
            http_limits: self.http_limits,
        })
    }
}

/// The native server: WebSocket and HTTP on one port.
///
/// ```no_run
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// use fraiseql_server::Server;
/// use fraiseql_subscriptions::FieldConfig;
///
/// let server = Server::builder()
///     .bind("0.0.0.0:8000")
///     .field("message", FieldConfig::new("room:{room}")?)
///     .build()
///     .await?;
/// println!("listening on {}", server.local_addr());
/// server.serve_with_signals().await?; // until SIGTERM / SIGINT
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Server {
    service: SubscriptionService,
    listener: TcpListener,
    local_addr: SocketAddr,
    shutdown: ShutdownHandle,
    shutdown_grace: Duration,
    http_limits: HttpLimits,
}

impl Server {
    /// A builder with the defaults.
    #[must_use]
    pub fn builder() -> ServerBuilder {
        ServerBuilder::default()
    }

    /// The address the server listens on.
    #[must_use]
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The engine, to publish events or read metrics.
    #[must_use]
    pub fn engine(&self) -> &Arc<Engine> {
        self.service.engine()
    }

    /// The service (its router, connection count, shutdown).
    #[must_use]
    pub fn service(&self) -> &SubscriptionService {
        &self.service
    }

    /// A handle that starts a graceful shutdown.
    #[must_use]
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        self.shutdown.clone()
    }

    /// Serves until the shutdown handle fires, then shuts down gracefully: stops accepting,
    /// sends every client close 1001, waits up to the grace period for connections to end.
    ///
    /// # Errors
    /// [`ServerError::Io`] if the listener fails.
    pub async fn serve(self) -> Result<(), ServerError> {
        let stop = self.shutdown.0.clone();
        self.serve_until(async move { stop.cancelled().await })
            .await
    }

    /// Like [`Server::serve`], also shutting down on SIGTERM or SIGINT (Ctrl-C).
    ///
    /// # Errors
    /// [`ServerError::Io`] if the listener fails or the signal handlers cannot be set.
    pub async fn serve_with_signals(self) -> Result<(), ServerError> {
        let stop = self.shutdown.0.clone();
        let signals = termination_signal()?;
        self.serve_until(async move {
            tokio::select! {
                () = stop.cancelled() => {}
                () = signals => {}
            }
        })
        .await
    }

    async fn serve_until(
        self,
        until: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServerError> {
        let service = self.service.clone();
        let grace = self.shutdown_grace;
        let (stopped_tx, stopped_rx) = tokio::sync::oneshot::channel::<()>();
        let app = self.service.router();
        let serve = serve_http(self.listener, app, self.http_limits, async move {
            until.await;
            // WebSocket connections are ours, not hyper's: close them (1001) and drain.
            let drained = service.shutdown(grace).await;
            if !drained {
                tracing::warn!(
                    open = service.open_connections(),
                    "shutdown grace period over; dropping the remaining connections"
                );
            }
            let _ = stopped_tx.send(());
        });
        serve.await?;
        let _ = stopped_rx.await;
        Ok(())
    }
}

/// Resolves on SIGTERM or SIGINT.
fn termination_signal() -> Result<impl std::future::Future<Output = ()>, ServerError> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        Ok(async move {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        })
    }
    #[cfg(not(unix))]
    {
        Ok(async {
            let _ = tokio::signal::ctrl_c().await;
        })
    }
}
