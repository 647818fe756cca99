//! [`PostgresBus`]: the `EventBus` over LISTEN/NOTIFY with an events table for large
//! payloads and catch-up.
//!
//! - `shared`: the state the handle and the background tasks share (publishing connection,
//!   routing table, counters) and the subscribe / unsubscribe / route operations on it;
//! - `registry`: the routing table's data;
//! - `listener`: the listening connection's task (notifications, reconnect, catch-up);
//! - `tracker`: the duplicate filter of catch-up and notifications;
//! - `prune`: retention.

mod listener;
mod prune;
mod registry;
mod shared;
mod tracker;

use std::fmt;
use std::sync::atomic::{AtomicI32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};

use async_trait::async_trait;
use fraiseql_subscriptions::{
    validate_channel, BusError, BusStats, Event, EventBus, EventStream, StreamId,
};
use tokio::sync::{mpsc, Mutex};
use tokio_util::sync::CancellationToken;

use crate::config::PostgresBusConfig;
use crate::connection::open;
use crate::error::PostgresBusError;
use crate::schema::{install, Statements};
use listener::listen_loop;
use prune::{prune_loop, prune_once};
use registry::Registry;
use shared::{backend_pid, prepare_publisher, Shared};

/// The PostgreSQL event bus: fan-out across processes through the database they share.
///
/// - **Publish** records the event in the events table and NOTIFYs its channel in the same
///   statement (`fraiseql_publish_wire`), on a dedicated connection whose requests pipeline.
///   The notification carries `seq` and the event, or only `seq` when the event is larger
///   than the NOTIFY threshold; listeners then read the row.
/// - **Listen**: one connection per bus LISTENs to the NOTIFY channel of every channel a
///   stream subscribed to (reference-counted: LISTEN on the first stream, UNLISTEN after the
///   last), channel names mapped by [`notify_channel`](crate::notify_channel).
/// - **No loss across a dropped connection**: when the listening connection drops, the bus
///   reconnects with backoff, LISTENs again, then reads the rows of its channels it has not
///   seen (by sequence) before resuming live notifications: nothing lost, nothing twice, in
///   order. If rows it needed were pruned meanwhile, each affected channel gets an
///   [`Event::gap`] (subscribers there receive `EVENTS_LOST`), then the rows still held.
/// - Each process prunes the table by age and count every `prune_interval`.
///
/// Delivery per stream is in commit order; events from SQL (`fraiseql_publish`, table
/// triggers) arrive the same way as events from Rust. The guarantees are the `EventBus`
/// contract's (see [`EventBus`]), checked by the conformance suite in
/// `tests/bus_conformance.rs`.
///
/// ```no_run
/// # async fn example() -> Result<(), Box<dyn std::error::Error>> {
/// use std::sync::Arc;
/// use fraiseql_eventbus_postgres::{PostgresBus, PostgresBusConfig};
/// use fraiseql_subscriptions::{Event, EventBus};
/// let bus = PostgresBus::connect(
///     PostgresBusConfig::from_url("postgres://postgres@127.0.0.1/app")?,
/// ).await?;
/// let mut stream = bus.subscribe(&["orders".to_owned()]).await?;
/// bus.publish(Arc::new(Event::new("orders", serde_json::json!({"id": 1})))).await?;
/// let event = stream.recv().await;
/// # Ok(()) }
/// ```
pub struct PostgresBus {
    shared: Arc<Shared>,
}

impl fmt::Debug for PostgresBus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresBus")
            .field("target", &self.shared.target)
            .field("prefix", &self.shared.config.prefix)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl Drop for PostgresBus {
    fn drop(&mut self) {
        // Ends the listener and pruner tasks; their connections close with them.
        self.shared.shutdown.cancel();
    }
}

impl PostgresBus {
    /// Validates `config`, connects the publishing and the listening connections, installs
    /// the events table and functions (unless turned off), and starts listening.
    ///
    /// # Errors
    /// [`PostgresBusError::InvalidConfig`] for a bad setting, [`PostgresBusError::Connect`]
    /// naming the host and the cause when the server is down or refuses the login,
    /// [`PostgresBusError::Query`] when installing fails.
    pub async fn connect(config: PostgresBusConfig) -> Result<Self, PostgresBusError> {
        config.validate()?;
        let target = config.target();
        let publisher_conn = open(&config, "publish").await?;
        if config.install {
            install(&publisher_conn.client, &config).await?;
        }
        let sql = Statements::new(&config);
        let publisher = prepare_publisher(&config, publisher_conn.client, &sql.publish).await?;
        let listener = open(&config, "listen").await?;
        let shared = Arc::new(Shared {
            target,
            sql,
            registry: Mutex::new(Registry::default()),
            publisher: RwLock::new(Some(Arc::new(publisher))),
            publisher_connecting: Mutex::new(()),
            listen_pid: AtomicI32::new(0),
            next_stream: AtomicU64::new(1),
            published: AtomicU64::new(0),
            delivered: AtomicU64::new(0),
            reconnects: AtomicU64::new(0),
            active_channels: AtomicUsize::new(0),
            shutdown: CancellationToken::new(),
            config,
        });
        let client = Arc::new(listener.client);
        shared
            .listen_pid
            .store(backend_pid(&client).await, Ordering::Relaxed);
        shared.registry.lock().await.client = Some(Arc::clone(&client));
        tokio::spawn(listen_loop(
            Arc::clone(&shared),
            Some((client, listener.messages)),
        ));
        if shared.config.retention_max_age.is_some() || shared.config.retention_max_count.is_some()
        {
            tokio::spawn(prune_loop(Arc::clone(&shared)));
        }
        Ok(Self { shared })
    }

    /// The configuration the bus was connected with.
    pub fn config(&self) -> &PostgresBusConfig {
        &self.shared.config
    }

    /// The server process id of the listening connection, while it is up (for operators:
    /// `pg_stat_activity`; and for tests that cut it with `pg_terminate_backend`).
    #[must_use]
    pub fn listen_backend_pid(&self) -> Option<i32> {
        match self.shared.listen_pid.load(Ordering::Relaxed) {
            0 => None,
            pid => Some(pid),
        }
    }

    /// How many times the listening connection was re-established.
    #[must_use]
    pub fn reconnects(&self) -> u64 {
        self.shared.reconnects.load(Ordering::Relaxed)
    }

    /// Prunes the events table now, as the background task does every `prune_interval`,
    /// with the configured retention; returns how many rows were deleted.
    ///
    /// # Errors
    /// [`BusError::Backend`] when the statement fails.
    pub async fn prune(&self) -> Result<u64, BusError> {
        prune_once(&self.shared).await
    }
}

#[async_trait]
impl EventBus for PostgresBus {
    async fn publish(&self, event: Arc<Event>) -> Result<(), BusError> {
        validate_channel(event.channel())?;
        let wire = String::from_utf8(event.to_wire_json()).map_err(|_| BusError::Backend {
            backend: "postgres",
            message: "event is not valid UTF-8 JSON".to_owned(),
        })?;
        let threshold = i32::try_from(self.shared.config.notify_threshold).unwrap_or(i32::MAX);
        let publisher = self.shared.publisher().await?;
        // Not retried: the server may have committed the event before the connection died,
        // and a second try would deliver it twice (the contract, rules 4 and 10). The dead
        // connection is dropped so the next publish opens a new one.
        publisher
            .client
            .query_one(&publisher.publish, &[&event.channel(), &wire, &threshold])
            .await
            .map_err(|err| self.shared.publisher_failed(&publisher, "publishing", &err))?;
        self.shared.published.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    async fn subscribe(&self, channels: &[String]) -> Result<EventStream, BusError> {
        channels.iter().try_for_each(|c| validate_channel(c))?;
        let id = self.shared.next_stream.fetch_add(1, Ordering::Relaxed);
        let (sender, receiver) = mpsc::channel(self.shared.config.stream_capacity);
        let mut registry = self.shared.registry.lock().await;
        registry.streams.insert(id, sender.clone());
        if let Err(err) = self
            .shared
            .add_channels(&mut registry, id, &sender, channels)
            .await
        {
            registry.streams.remove(&id);
            return Err(err);
        }
        Ok(EventStream::new(id, receiver))
    }

    async fn subscribe_to(&self, stream: StreamId, channels: &[String]) -> Result<(), BusError> {
        channels.iter().try_for_each(|c| validate_channel(c))?;
        let mut registry = self.shared.registry.lock().await;
        let sender = registry
            .streams
            .get(&stream)
            .cloned()
            .ok_or(BusError::UnknownStream(stream))?;
        if sender.is_closed() {
            registry.streams.remove(&stream);
            self.shared
                .remove_channels(&mut registry, stream, None)
                .await;
            return Err(BusError::UnknownStream(stream));
        }
        self.shared
            .add_channels(&mut registry, stream, &sender, channels)
            .await
    }

    async fn unsubscribe(&self, stream: StreamId, channels: &[String]) -> Result<(), BusError> {
        let mut registry = self.shared.registry.lock().await;
        if !registry.streams.contains_key(&stream) {
            // Idempotent (the EventBus contract, rule 6): an unknown or forgotten stream
            // holds no channel.
            return Ok(());
        }
        self.shared
            .remove_channels(&mut registry, stream, Some(channels))
            .await;
        Ok(())
    }

    async fn health_check(&self) -> Result<(), BusError> {
        let publisher = self.shared.publisher().await?;
        publisher
            .client
            .simple_query("SELECT 1")
            .await
            .map_err(|err| {
                self.shared
                    .publisher_failed(&publisher, "health check", &err)
            })?;
        if self.listen_backend_pid().is_none() {
            return Err(BusError::Backend {
                backend: "postgres",
                message: format!(
                    "{}: the listening connection is down (reconnecting)",
                    self.shared.target
                ),
            });
        }
        Ok(())
    }

    fn stats(&self) -> BusStats {
        BusStats {
            events_published: self.shared.published.load(Ordering::Relaxed),
            events_delivered: self.shared.delivered.load(Ordering::Relaxed),
            active_channels: self.shared.active_channels.load(Ordering::Relaxed),
            mode: "postgres".to_owned(),
        }
    }
}
