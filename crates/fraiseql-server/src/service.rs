//! The subscription service: the engine, its settings and the axum routes serving it —
//! the GraphQL WebSocket endpoint, `/healthz`, `/metrics` and the optional `/publish`.
//! [`SubscriptionService::router`] mounts it in any axum application;
//! [`crate::Server`] serves it alone on its own port.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::WebSocketUpgrade;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, MethodRouter};
use axum::{Json, Router};
use fraiseql_protocol::{negotiate_subprotocol_header, ConnectionConfig, Protocol};
use fraiseql_subscriptions::security::{AllowAnonymous, Authenticator};
use fraiseql_subscriptions::{
    Engine, EngineConfig, EngineError, Event, EventBus, FieldConfig, InMemoryBus,
};
use serde_json::json;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::connection;
use crate::observer::ConnectionObserver;
use crate::publish::{parse_publish_body, PublishError};
use crate::shared::Shared;
use crate::transport::Session;

/// Why the service could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServiceError {
    /// The engine refused its configuration (schema, limits, a field's filter) or the bus
    /// could not open a stream.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// A setting is invalid.
    #[error("invalid server setting: {0}")]
    Config(String),
}

/// The WebSocket codec's read buffer per connection, allocated up front and kept for the
/// connection's life; it grows for a larger message. 1 KiB holds the usual client
/// messages (`connection_init` with a token, `subscribe`) in one read; at 4 KiB it was the
/// largest single item of an idle connection's memory (axum's default is 128 KiB). The
/// Python bindings' ASGI host uses it for an app's own WebSockets too.
pub const WEBSOCKET_READ_BUFFER_BYTES: usize = 1024;

/// Builds a [`SubscriptionService`] (or, through [`crate::ServerBuilder`], a whole server).
#[derive(Debug)]
pub struct ServiceBuilder {
    pub(crate) path: String,
    pub(crate) extra_paths: Vec<String>,
    pub(crate) fields: HashMap<String, FieldConfig>,
    pub(crate) engine_config: EngineConfig,
    pub(crate) bus: Option<Arc<dyn EventBus>>,
    pub(crate) authenticator: Arc<dyn Authenticator>,
    pub(crate) connection_config: ConnectionConfig,
    pub(crate) publish_token: Option<String>,
    pub(crate) max_connections: Option<usize>,
    pub(crate) write_timeout: Duration,
    pub(crate) close_timeout: Duration,
    pub(crate) max_batch: usize,
    pub(crate) observer: Option<Arc<dyn ConnectionObserver>>,
}

impl Default for ServiceBuilder {
    fn default() -> Self {
        Self {
            path: "/graphql".to_owned(),
            extra_paths: Vec::new(),
            fields: HashMap::new(),
            engine_config: EngineConfig::default(),
            bus: None,
            authenticator: Arc::new(AllowAnonymous),
            connection_config: ConnectionConfig::default(),
            publish_token: None,
            max_connections: None,
            write_timeout: Duration::from_secs(10),
            close_timeout: Duration::from_secs(2),
            max_batch: 64,
            observer: None,
        }
    }
}

impl ServiceBuilder {
    /// The GraphQL WebSocket path (default `/graphql`).
    #[must_use]
    pub fn path(mut self, path: impl Into<String>) -> Self {
        self.path = path.into();
        self
    }

    /// Also serves the WebSocket endpoint at `path` (an alias of [`ServiceBuilder::path`],
    /// such as the original plan's `/graphql/subscriptions`).
    #[must_use]
    pub fn also_path(mut self, path: impl Into<String>) -> Self {
        self.extra_paths.push(path.into());
        self
    }

    /// Serves the root subscription field `name` as `field` describes (channel template,
    /// filter, requirement, resolver).
    #[must_use]
    pub fn field(mut self, name: impl Into<String>, field: FieldConfig) -> Self {
        self.fields.insert(name.into(), field);
        self
    }

    /// Engine settings: schema SDL, document limits, security policy, limits, overflow
    /// policy.
    #[must_use]
    pub fn engine_config(mut self, config: EngineConfig) -> Self {
        self.engine_config = config;
        self
    }

    /// The event bus (default: a new [`InMemoryBus`]).
    #[must_use]
    pub fn bus(mut self, bus: Arc<dyn EventBus>) -> Self {
        self.bus = Some(bus);
        self
    }

    /// Who may connect: the `connection_init` payload's verifier (default: everyone, as
    /// anonymous). See [`crate::JwtAuthenticator`].
    #[must_use]
    pub fn authenticator(mut self, authenticator: Arc<dyn Authenticator>) -> Self {
        self.authenticator = authenticator;
        self
    }

    /// Protocol settings: init timeout, keep-alive, maximum message size.
    #[must_use]
    pub fn connection_config(mut self, config: ConnectionConfig) -> Self {
        self.connection_config = config;
        self
    }

    /// Enables `POST /publish` for external publishers presenting `Authorization: Bearer
    /// <token>` (off by default).
    #[must_use]
    pub fn publish_token(mut self, token: impl Into<String>) -> Self {
        self.publish_token = Some(token.into());
        self
    }

    /// At most this many WebSocket connections at once; more are refused with HTTP 503.
    #[must_use]
    pub fn max_connections(mut self, max: usize) -> Self {
        self.max_connections = Some(max);
        self
    }

    /// How long one batch of frames may take to write before the client is deemed stuck
    /// and dropped (default 10 s).
    #[must_use]
    pub fn write_timeout(mut self, timeout: Duration) -> Self {
        self.write_timeout = timeout;
        self
    }

    /// Lifecycle hooks for every connection (subscribed, completed, disconnected).
    #[must_use]
    pub fn observer(mut self, observer: Arc<dyn ConnectionObserver>) -> Self {
        self.observer = Some(observer);
        self
    }

    /// At most this many frames per write (default 64).
    #[must_use]
    pub fn max_batch(mut self, frames: usize) -> Self {
        self.max_batch = frames;
        self
    }

    /// Builds the engine and starts its bus loop (on the current tokio runtime).
    ///
    /// # Errors
    /// [`ServiceError`] for an invalid setting, schema, limit or filter, or a bus error.
    pub async fn build(self) -> Result<SubscriptionService, ServiceError> {
        for path in std::iter::once(&self.path).chain(&self.extra_paths) {
            if !path.starts_with('/') {
                return Err(ServiceError::Config(format!(
                    "the GraphQL path must start with '/', got {path:?}"
                )));
            }
        }
        if self.max_batch == 0 {
            return Err(ServiceError::Config("max_batch must be at least 1".into()));
        }
        if self.max_connections == Some(0) {
            return Err(ServiceError::Config(
                "max_connections must be at least 1 (leave it unset for no limit)".into(),
            ));
        }
        if self.publish_token.as_deref().is_some_and(str::is_empty) {
            return Err(ServiceError::Config(
                "the publish token is empty: give a long random secret".into(),
            ));
        }
        let bus = self
            .bus
            .unwrap_or_else(|| Arc::new(InMemoryBus::new()) as Arc<dyn EventBus>);
        let engine = Arc::new(Engine::new(bus, self.fields, self.engine_config).await?);
        let runner = Arc::clone(&engine);
        let shutdown = CancellationToken::new();
        let stop = shutdown.clone();
        tokio::spawn(async move {
            tokio::select! {
                () = runner.run() => {}
                () = stop.cancelled() => {}
            }
        });
        let mut paths = vec![self.path];
        for path in self.extra_paths {
            if !paths.contains(&path) {
                paths.push(path);
            }
        }
        Ok(SubscriptionService {
            paths,
            shared: Arc::new(Shared {
                engine,
                authenticator: self.authenticator,
                connection_config: self.connection_config,
                shutdown,
                tracker: TaskTracker::new(),
                publish_token: self.publish_token,
                max_connections: self.max_connections,
                open_connections: AtomicUsize::new(0),
                write_timeout: self.write_timeout,
                close_timeout: self.close_timeout,
                max_batch: self.max_batch,
                observer: self.observer,
            }),
        })
    }
}

/// The subscription endpoint and its companion routes, ready to mount.
///
/// ```no_run
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// use axum::{routing::get, Router};
/// use fraiseql_server::SubscriptionService;
/// use fraiseql_subscriptions::FieldConfig;
///
/// let service = SubscriptionService::builder()
///     .field("message", FieldConfig::new("room:{room}")?)
///     .build()
///     .await?;
/// let app = Router::new()
///     .route("/", get(|| async { "my own routes" }))
///     .merge(service.router());
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:8000").await?;
/// axum::serve(listener, app).await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct SubscriptionService {
    /// The WebSocket paths: the main one first, then its aliases.
    paths: Vec<String>,
    shared: Arc<Shared>,
}

impl SubscriptionService {
    /// A builder with the defaults: `/graphql`, in-memory bus, anonymous access.
    #[must_use]
    pub fn builder() -> ServiceBuilder {
        ServiceBuilder::default()
    }

    /// The engine, to publish events from the application or read metrics.
    #[must_use]
    pub fn engine(&self) -> &Arc<Engine> {
        &self.shared.engine
    }

    /// The routes: the GraphQL WebSocket path (and its aliases), `GET /healthz`,
    /// `GET /metrics` and, when a publish token is set, `POST /publish`.
    pub fn router(&self) -> Router {
        self.routes(|| get(upgrade))
            .with_state(Arc::clone(&self.shared))
    }

    /// The companion routes, and `graphql` on the WebSocket path and its aliases.
    pub(crate) fn routes(
        &self,
        graphql: impl Fn() -> MethodRouter<Arc<Shared>>,
    ) -> Router<Arc<Shared>> {
        let mut router = Router::new();
        for path in &self.paths {
            router = router.route(path, graphql());
        }
        let mut router = router
            .route("/healthz", get(healthz))
            .route("/metrics", get(metrics));
        if self.shared.publish_token.is_some() {
            router = router.route("/publish", post(publish));
        }
        router
    }

    /// The shared state of the routes.
    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Serves one connection over channels for a server that owns the socket itself (the
    /// Python ASGI adapters, an embedding application): the same driver, protocol rules,
    /// authentication, limits and shutdown as the native WebSocket endpoint. `protocol` is
    /// the negotiated subprotocol ([`fraiseql_protocol::negotiate_subprotocol_header`]), or
    /// the reason none was acceptable, in which case the session only closes with 4406.
    /// Runs on the current tokio runtime.
    ///
    /// # Errors
    /// [`SessionRefused`] while shutting down or at `max_connections` (answer the upgrade
    /// with HTTP 503, or close 1013).
    pub fn session(&self, protocol: Result<Protocol, String>) -> Result<Session, SessionRefused> {
        self.session_with(protocol, None)
    }

    /// Like [`SubscriptionService::session`], with `authenticator` deciding this
    /// connection's `connection_init` instead of the service's (an endpoint mounted with
    /// its own auth).
    ///
    /// # Errors
    /// As [`SubscriptionService::session`].
    pub fn session_with(
        &self,
        protocol: Result<Protocol, String>,
        authenticator: Option<Arc<dyn Authenticator>>,
    ) -> Result<Session, SessionRefused> {
        let guard = self.admit()?;
        let (session, transport) = Session::pair();
        let shared = Arc::clone(&self.shared);
        let token = self.shared.tracker.token();
        tokio::spawn(connection::serve(
            transport,
            protocol,
            shared,
            authenticator,
            (guard, token),
        ));
        Ok(session)
    }

    /// Counts one more open connection, or refuses it (shutting down, at the limit).
    fn admit(&self) -> Result<OpenConnection, SessionRefused> {
        admit(&self.shared)
    }

    /// How many WebSocket connections are open.
    #[must_use]
    pub fn open_connections(&self) -> usize {
        self.shared.open_connections.load(Ordering::Relaxed)
    }

    /// Closes every connection with 1001 "Server shutting down" and waits up to `grace` for
    /// them to finish; then stops the engine's bus loop. New upgrades are refused from the
    /// first moment. Returns whether every connection finished within `grace`.
    pub async fn shutdown(&self, grace: Duration) -> bool {
        self.shared.shutdown.cancel();
        self.shared.tracker.close();
        tokio::time::timeout(grace, self.shared.tracker.wait())
            .await
            .is_ok()
    }
}

/// Why a connection was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SessionRefused {
    /// The service is shutting down.
    #[error("Server shutting down")]
    ShuttingDown,
    /// `max_connections` connections are open.
    #[error("Too many connections: try again later")]
    TooManyConnections,
}

fn admit(shared: &Arc<Shared>) -> Result<OpenConnection, SessionRefused> {
    if shared.shutdown.is_cancelled() {
        return Err(SessionRefused::ShuttingDown);
    }
    let open = shared.open_connections.fetch_add(1, Ordering::Relaxed);
    let guard = OpenConnection(Arc::clone(shared));
    if shared.max_connections.is_some_and(|max| open >= max) {
        return Err(SessionRefused::TooManyConnections);
    }
    Ok(guard)
}

/// Decrements the open-connection count when a connection task ends, however it ends.
struct OpenConnection(Arc<Shared>);

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.open_connections.fetch_sub(1, Ordering::Relaxed);
    }
}

pub(crate) async fn upgrade(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    let guard = match admit(&shared) {
        Ok(guard) => guard,
        Err(refused) => {
            return (StatusCode::SERVICE_UNAVAILABLE, refused.to_string()).into_response()
        }
    };
    let offered = headers
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect::<Vec<_>>()
        .join(",");
    let protocol = negotiate_subprotocol_header(&offered).map_err(|e| e.reason().to_owned());
    let mut ws = ws
        // tungstenite's default 128 KiB read buffer is zeroed on every read, which made it
        // resident for every connection (128 KiB each) and cost 40 % of the server's CPU
        // under load (see docs/benchmarks.md); client messages are small.
        .read_buffer_size(WEBSOCKET_READ_BUFFER_BYTES)
        // The protocol layer enforces the limit with a 4400 close naming it; the codec's
        // own limit only stops a flood far beyond it.
        .max_message_size(
            shared
                .connection_config
                .max_message_bytes()
                .saturating_mul(2),
        )
        .max_frame_size(
            shared
                .connection_config
                .max_message_bytes()
                .saturating_mul(2),
        );
    if let Ok(protocol) = protocol {
        ws = ws.protocols([protocol.subprotocol()]);
    }
    let token = shared.tracker.token();
    // The count is released before the tracker's token (a tuple drops in order), so a
    // finished shutdown sees no connection still counted.
    ws.on_upgrade(move |socket| connection::serve(socket, protocol, shared, None, (guard, token)))
}

async fn healthz(State(shared): State<Arc<Shared>>) -> Response {
    let bus = shared.engine.health_check().await;
    let healthy = bus.is_ok();
    let stats = shared.engine.bus_stats();
    let body = json!({
        "status": if healthy { "ok" } else { "degraded" },
        "bus": { "mode": stats.mode, "ok": bus.is_ok(),
                 "error": bus.err().map(|e| e.to_string()) },
        "connections": shared.open_connections.load(Ordering::Relaxed),
        "subscriptions": shared.engine.subscription_count(),
        "shutting_down": shared.shutdown.is_cancelled(),
    });
    let status = if healthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}

async fn metrics(State(shared): State<Arc<Shared>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        shared.engine.metrics().encode_prometheus(),
    )
        .into_response()
}

async fn publish(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let authorized = match (&shared.publish_token, presented) {
        (Some(expected), Some(given)) => constant_time_eq(expected.as_bytes(), given.as_bytes()),
        _ => false,
    };
    if !authorized {
        return (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            Json(json!({"error": "POST /publish needs the header `Authorization: Bearer <publish token>`"})),
        )
            .into_response();
    }
    let events: Vec<Event> = match parse_publish_body(&body) {
        Ok(events) => events,
        Err(err) => return bad_request(&err),
    };
    let accepted = events.len();
    for event in events {
        if let Err(err) = shared.engine.publish(event).await {
            return (
                StatusCode::BAD_GATEWAY,
                Json(json!({"error": err.to_string()})),
            )
                .into_response();
        }
    }
    (StatusCode::ACCEPTED, Json(json!({"accepted": accepted}))).into_response()
}

fn bad_request(err: &PublishError) -> Response {
    (
        StatusCode::BAD_REQUEST,
        Json(json!({"error": err.to_string()})),
    )
        .into_response()
}

/// Compares secrets without an early exit on the first differing byte.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0_u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
