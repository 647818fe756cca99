//! [`Shared`]: the state the bus handle, the listener task and the pruner share — the
//! publishing connection (reconnected on demand), the routing table and the counters.

use std::sync::atomic::{AtomicI32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};

use fraiseql_subscriptions::{BusError, Event, StreamId};
use tokio::sync::{mpsc, Mutex};
use tokio_postgres::{Client, Statement};
use tokio_util::sync::CancellationToken;

use super::registry::{ChannelEntry, Registry};
use crate::config::PostgresBusConfig;
use crate::connection::open;
use crate::error::{connection_lost, describe, PostgresBusError};
use crate::schema::{notify_channel, quote_ident, Statements};

/// What the bus handle and its background tasks share.
pub(super) struct Shared {
    pub(super) config: PostgresBusConfig,
    pub(super) target: String,
    pub(super) sql: Statements,
    pub(super) registry: Mutex<Registry>,
    pub(super) publisher: RwLock<Option<Arc<Publisher>>>,
    pub(super) publisher_connecting: Mutex<()>,
    pub(super) listen_pid: AtomicI32,
    pub(super) next_stream: AtomicU64,
    pub(super) published: AtomicU64,
    pub(super) delivered: AtomicU64,
    pub(super) reconnects: AtomicU64,
    pub(super) active_channels: AtomicUsize,
    pub(super) shutdown: CancellationToken,
}

/// The publishing connection and its prepared publish statement.
pub(super) struct Publisher {
    pub(super) client: Client,
    pub(super) publish: Statement,
}

/// The server process id of `client`'s session (0 if it cannot be read).
pub(super) async fn backend_pid(client: &Client) -> i32 {
    match client.query_one("SELECT pg_backend_pid()", &[]).await {
        Ok(row) => row.try_get(0).unwrap_or(0),
        Err(_) => 0,
    }
}

/// Prepares the publish statement on a new publishing connection.
pub(super) async fn prepare_publisher(
    config: &PostgresBusConfig,
    client: Client,
    sql: &str,
) -> Result<Publisher, PostgresBusError> {
    let publish = client
        .prepare(sql)
        .await
        .map_err(|err| PostgresBusError::Query {
            target: config.target(),
            action: "preparing the publish statement (is the schema installed?)",
            cause: describe(&err),
        })?;
    Ok(Publisher { client, publish })
}

impl Shared {
    /// The publishing connection, reconnected if it was lost.
    pub(super) async fn publisher(&self) -> Result<Arc<Publisher>, BusError> {
        if let Some(current) = self.current_publisher() {
            return Ok(current);
        }
        let _connecting = self.publisher_connecting.lock().await;
        if let Some(current) = self.current_publisher() {
            return Ok(current);
        }
        let conn = open(&self.config, "publish").await?;
        let publisher =
            Arc::new(prepare_publisher(&self.config, conn.client, &self.sql.publish).await?);
        *self
            .publisher
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(Arc::clone(&publisher));
        Ok(publisher)
    }

    /// The highest sequence committed now, read on the publishing connection. Reading is
    /// idempotent, so a connection found dead by this read is replaced and the read made once
    /// more on a fresh one.
    pub(super) async fn read_position(&self) -> Result<i64, BusError> {
        let mut retried = false;
        loop {
            let publisher = self.publisher().await?;
            match publisher.client.query_one(&self.sql.position, &[]).await {
                Ok(row) => return Ok(row.try_get(0).unwrap_or(0)),
                Err(err) if !retried && connection_lost(&err) => {
                    self.forget_publisher(&publisher);
                    retried = true;
                }
                Err(err) => {
                    return Err(self.query_error("reading the events table's position", &err))
                }
            }
        }
    }

    /// Drops `stale` as the publishing connection (when it still is), so the next use opens
    /// a new one instead of waiting for the client to notice the old one closed.
    pub(super) fn forget_publisher(&self, stale: &Arc<Publisher>) {
        let mut current = self
            .publisher
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if current.as_ref().is_some_and(|p| Arc::ptr_eq(p, stale)) {
            *current = None;
        }
    }

    /// The error of a statement that failed on `publisher`; a connection found dead is
    /// forgotten on the way.
    pub(super) fn publisher_failed(
        &self,
        publisher: &Arc<Publisher>,
        action: &'static str,
        err: &tokio_postgres::Error,
    ) -> BusError {
        if connection_lost(err) {
            self.forget_publisher(publisher);
        }
        self.query_error(action, err)
    }

    fn current_publisher(&self) -> Option<Arc<Publisher>> {
        self.publisher
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .as_ref()
            .filter(|p| !p.client.is_closed())
            .cloned()
    }

    pub(super) fn query_error(
        &self,
        action: &'static str,
        err: &tokio_postgres::Error,
    ) -> BusError {
        PostgresBusError::Query {
            target: self.target.clone(),
            action,
            cause: describe(err),
        }
        .into()
    }

    /// Removes `stream` from `channels` (all when `None`), UNLISTENing NOTIFY channels no
    /// longer needed.
    pub(super) async fn remove_channels(
        &self,
        registry: &mut Registry,
        stream: StreamId,
        channels: Option<&[String]>,
    ) {
        let names: Vec<String> = match channels {
            Some(channels) => channels.to_vec(),
            None => registry.channels.keys().cloned().collect(),
        };
        let mut stale = Vec::new();
        for channel in names {
            let Some(entry) = registry.channels.get_mut(&channel) else {
                continue;
            };
            if !entry.senders.iter().any(|(id, _)| *id == stream) {
                continue;
            }
            let next: Vec<_> = entry
                .senders
                .iter()
                .filter(|(id, _)| *id != stream)
                .cloned()
                .collect();
            if !next.is_empty() {
                entry.senders = next.into();
                continue;
            }
            if let Some(entry) = registry.channels.remove(&channel) {
                if let Some(count) = registry.listens.get_mut(&entry.notify) {
                    *count = count.saturating_sub(1);
                    if *count == 0 {
                        registry.listens.remove(&entry.notify);
                        stale.push(entry.notify);
                    }
                }
            }
        }
        self.active_channels
            .store(registry.channels.len(), Ordering::Relaxed);
        if let (false, Some(client)) = (stale.is_empty(), registry.client.as_ref()) {
            let unlisten: String = stale
                .iter()
                .map(|name| format!("UNLISTEN {};", quote_ident(name)))
                .collect();
            // A failed UNLISTEN costs only wake-ups (events are routed by their channel),
            // and a reconnect LISTENs only what is still needed.
            if let Err(err) = client.batch_execute(&unlisten).await {
                tracing::debug!(error = %describe(&err), "UNLISTEN failed");
            }
        }
    }

    pub(super) async fn forget_stream(&self, stream: StreamId) {
        let mut registry = self.registry.lock().await;
        registry.streams.remove(&stream);
        self.remove_channels(&mut registry, stream, None).await;
    }

    /// Hands `event` to every stream subscribed to its channel, in order.
    pub(super) async fn route(&self, event: Arc<Event>) {
        let senders = {
            let registry = self.registry.lock().await;
            match registry.channels.get(event.channel()) {
                Some(entry) => Arc::clone(&entry.senders),
                None => return,
            }
        };
        for (stream, sender) in senders.iter() {
            // Counted before the hand-over: a subscriber that has the event sees it counted
            // (stats read right after a receive are exact); taken back if the stream is gone.
            self.delivered.fetch_add(1, Ordering::Relaxed);
            if sender.send(Arc::clone(&event)).await.is_err() {
                self.delivered.fetch_sub(1, Ordering::Relaxed);
                self.forget_stream(*stream).await;
            }
        }
    }

    pub(super) async fn add_channels(
        &self,
        registry: &mut Registry,
        stream: StreamId,
        sender: &mpsc::Sender<Arc<Event>>,
        channels: &[String],
    ) -> Result<(), BusError> {
        let mut fresh_notify = Vec::new();
        let mut fresh_channels = Vec::new();
        // Every channel this call added the stream to, to undo them if it fails.
        let mut added = Vec::new();
        for channel in channels {
            if let Some(entry) = registry.channels.get_mut(channel) {
                if !entry.senders.iter().any(|(id, _)| *id == stream) {
                    let mut next = entry.senders.to_vec();
                    next.push((stream, sender.clone()));
                    entry.senders = next.into();
                    added.push(channel.clone());
                }
                continue;
            }
            let notify = notify_channel(&self.config.prefix, channel);
            let count = registry.listens.entry(notify.clone()).or_insert(0);
            if *count == 0 {
                fresh_notify.push(notify.clone());
            }
            *count += 1;
            registry.channels.insert(
                channel.clone(),
                ChannelEntry {
                    senders: vec![(stream, sender.clone())].into(),
                    notify,
                    since: None,
                },
            );
            fresh_channels.push(channel.clone());
            added.push(channel.clone());
        }
        self.active_channels
            .store(registry.channels.len(), Ordering::Relaxed);
        if fresh_channels.is_empty() {
            return Ok(());
        }
        match self.listen_from(registry, &fresh_notify).await {
            Ok(max_seq) => {
                for channel in &fresh_channels {
                    if let Some(entry) = registry.channels.get_mut(channel) {
                        entry.since = Some(max_seq);
                    }
                }
                Ok(())
            }
            Err(err) => {
                self.remove_channels(registry, stream, Some(&added)).await;
                Err(err)
            }
        }
    }

    /// LISTENs to `fresh_notify` and returns the highest sequence committed now: where the
    /// new channels start (the EventBus contract, rule 2: everything accepted after the
    /// subscription returns is delivered, nothing before is replayed).
    ///
    /// While the listening connection is down the reconnect LISTENs every registered channel
    /// and catches up from their start, so the start is then read on the publishing
    /// connection; if that fails too the backend is unreachable and subscribing fails.
    /// (Fixed bug, found by the conformance suite: the start used to be left unset and then
    /// taken when the listener reconnected, so events accepted between the subscription
    /// returning and the reconnect were never delivered.)
    async fn listen_from(
        &self,
        registry: &Registry,
        fresh_notify: &[String],
    ) -> Result<i64, BusError> {
        if let Some(client) = registry.client.clone() {
            let listen: String = fresh_notify
                .iter()
                .map(|name| format!("LISTEN {};", quote_ident(name)))
                .collect();
            let result = async {
                if !listen.is_empty() {
                    client.batch_execute(&listen).await?;
                }
                client.query_one(&self.sql.position, &[]).await
            }
            .await;
            match result {
                Ok(row) => return Ok(row.try_get(0).unwrap_or(0)),
                // The connection is going away: the listener reconnects and LISTENs
                // everything; the start is read below.
                Err(err) if client.is_closed() || connection_lost(&err) => {}
                Err(err) => return Err(self.query_error("LISTEN", &err)),
            }
        }
        self.read_position().await
    }
}
