//! What every route and connection of one service shares ([`Shared`]): the engine, the
//! authenticator, the protocol and write settings, shutdown, the connection count and the
//! observer.
//!
//! A leaf: the service builds it and its routes hold it, the connection driver reads it;
//! neither imports the other for it.

use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::Duration;

use fraiseql_protocol::ConnectionConfig;
use fraiseql_subscriptions::security::Authenticator;
use fraiseql_subscriptions::Engine;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::observer::ConnectionObserver;

/// State shared by every route and connection.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) engine: Arc<Engine>,
    pub(crate) authenticator: Arc<dyn Authenticator>,
    pub(crate) connection_config: ConnectionConfig,
    pub(crate) shutdown: CancellationToken,
    pub(crate) tracker: TaskTracker,
    pub(crate) publish_token: Option<String>,
    pub(crate) max_connections: Option<usize>,
    pub(crate) open_connections: AtomicUsize,
    pub(crate) write_timeout: Duration,
    pub(crate) close_timeout: Duration,
    pub(crate) max_batch: usize,
    pub(crate) observer: Option<Arc<dyn ConnectionObserver>>,
}
