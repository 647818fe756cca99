//! The dispatcher: subscribe (document → security → filter → channel → registry) and
//! dispatch (channel index → security → filter → rate limit → resolve → project → serialize
//! once → each connection's outbox).
//!
//! [`Engine`], its construction and its accessors are here; the rest is one concept per
//! file: its settings ([`config`], [`field`], [`error`]), what it holds ([`state`],
//! [`handle`]), and what it does (`impl Engine` blocks): connections come and go in
//! [`connections`], subscriptions in [`subscribe`], the bus listens as [`listen`] says,
//! events arrive in [`run`] and are delivered by [`dispatch`] (with a [`payload_cache`] per
//! event), and [`publish`] sends them. No file here imports a file that imports it.

mod config;
mod connections;
mod dispatch;
mod error;
mod field;
mod handle;
mod listen;
mod payload_cache;
mod publish;
mod run;
mod state;
mod subscribe;

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, PoisonError, RwLock};

use crate::bus::{BusError, EventBus, EventStream};
use crate::dispatched::DispatchWaiters;
use crate::document::SubscriptionDocuments;
use crate::limits::SubscribeLimiter;
use crate::metrics::Metrics;
use crate::outbox::Outbox;
use crate::registry::ConnectionId;
use crate::stream::StreamEnd;

pub use config::EngineConfig;
pub use error::EngineError;
pub use field::FieldConfig;
pub use handle::ConnectionHandle;
use state::State;

/// The subscription engine: register fields, connect clients, subscribe, publish.
///
/// Transports create one [`Engine`], call [`Engine::connect`] per authenticated connection,
/// [`Engine::subscribe`] / [`Engine::unsubscribe`] on the protocol's `Start` / `Stop`
/// actions, drain each connection's [`Outbox`], and [`Engine::disconnect`] at the end.
/// Events published anywhere on the bus reach the engine through [`Engine::run`].
pub struct Engine {
    fields: HashMap<String, Arc<FieldConfig>>,
    documents: SubscriptionDocuments,
    config: EngineConfig,
    bus: Arc<dyn EventBus>,
    stream_id: u64,
    stream: tokio::sync::Mutex<Option<EventStream>>,
    /// The channels the bus feeds to this engine's stream (see `sync_bus_channels`).
    bus_channels: tokio::sync::Mutex<HashSet<String>>,
    state: RwLock<State>,
    subscribe_limiter: SubscribeLimiter,
    next_connection: AtomicU64,
    metrics: Arc<Metrics>,
    /// Streams that ended themselves ask [`Engine::run`] to unregister them here.
    stream_ended: tokio::sync::mpsc::UnboundedSender<StreamEnd>,
    stream_ended_rx: tokio::sync::Mutex<Option<tokio::sync::mpsc::UnboundedReceiver<StreamEnd>>>,
    /// Callers of [`Engine::publish_dispatched`] waiting for [`Engine::run`].
    dispatch_waiters: DispatchWaiters,
}

impl fmt::Debug for Engine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Engine")
            .field("fields", &self.fields.keys().collect::<Vec<_>>())
            .field("bus", &self.bus)
            .finish_non_exhaustive()
    }
}

impl Engine {
    /// An engine on `bus` serving `fields` (root field name → config).
    ///
    /// # Errors
    /// [`EngineError`] for an invalid schema or a bus that cannot open a stream.
    pub async fn new(
        bus: Arc<dyn EventBus>,
        fields: HashMap<String, FieldConfig>,
        config: EngineConfig,
    ) -> Result<Self, EngineError> {
        config.limits.validate()?;
        for (name, field) in &fields {
            if let Some(filter) = &field.filter {
                filter.validate().map_err(|error| EngineError::Filter {
                    field: name.clone(),
                    error,
                })?;
            }
        }
        let documents =
            SubscriptionDocuments::new(config.schema.as_deref(), config.document_limits)?;
        let stream = bus.subscribe(&[]).await?;
        let (stream_ended, stream_ended_rx) = tokio::sync::mpsc::unbounded_channel();
        Ok(Self {
            stream_ended,
            stream_ended_rx: tokio::sync::Mutex::new(Some(stream_ended_rx)),
            subscribe_limiter: SubscribeLimiter::new(&config.limits),
            fields: fields.into_iter().map(|(k, v)| (k, Arc::new(v))).collect(),
            documents,
            config,
            stream_id: stream.id(),
            stream: tokio::sync::Mutex::new(Some(stream)),
            bus_channels: tokio::sync::Mutex::new(HashSet::new()),
            bus,
            state: RwLock::new(State::default()),
            next_connection: AtomicU64::new(1),
            metrics: Arc::new(Metrics::new()),
            dispatch_waiters: DispatchWaiters::default(),
        })
    }

    /// The engine's metrics.
    #[must_use]
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Whether the engine's bus is reachable (for a health endpoint).
    ///
    /// # Errors
    /// The bus's [`BusError`].
    pub async fn health_check(&self) -> Result<(), BusError> {
        self.bus.health_check().await
    }

    /// The bus's counters (events published and delivered, active channels, mode).
    #[must_use]
    pub fn bus_stats(&self) -> crate::bus::BusStats {
        self.bus.stats()
    }

    /// How many subscriptions are active.
    #[must_use]
    pub fn subscription_count(&self) -> usize {
        self.read().registry.len()
    }

    fn outbox_of(&self, connection: ConnectionId) -> Option<Arc<Outbox>> {
        self.read()
            .connections
            .get(&connection)
            .map(|c| Arc::clone(&c.outbox))
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(PoisonError::into_inner)
    }
}
