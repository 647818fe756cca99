//! [`PostgresBus`]: the `EventBus` over LISTEN/NOTIFY with an events table for large
//! payloads and catch-up.

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::sync::atomic::{AtomicI32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};

use async_trait::async_trait;
use fraiseql_subscriptions::{
    validate_channel, BusError, BusStats, Event, EventBus, EventStream, StreamId,
};
use tokio::sync::{mpsc, Mutex};
use tokio_postgres::{Client, Statement};
use tokio_util::sync::CancellationToken;

use crate::config::PostgresBusConfig;
use crate::connection::{open, ConnMessage, PgConn};
use crate::error::{connection_lost, describe, PostgresBusError};
use crate::schema::{install, notify_channel, quote_ident, Statements};

/// How far below the highest sequence seen a catch-up re-reads, and how many sequence
/// numbers the duplicate filter remembers: transactions commit out of sequence order
/// (a sequence number is taken at insert, the notification sent at commit), so rows just
/// below the highest seen may still be unseen.
const REORDER_WINDOW: i64 = 16_384;

type Senders = Arc<[(StreamId, mpsc::Sender<Arc<Event>>)]>;

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

struct Shared {
    config: PostgresBusConfig,
    target: String,
    sql: Statements,
    registry: Mutex<Registry>,
    publisher: RwLock<Option<Arc<Publisher>>>,
    publisher_connecting: Mutex<()>,
    listen_pid: AtomicI32,
    next_stream: AtomicU64,
    published: AtomicU64,
    delivered: AtomicU64,
    reconnects: AtomicU64,
    active_channels: AtomicUsize,
    shutdown: CancellationToken,
}

struct Publisher {
    client: Client,
    publish: Statement,
}

#[derive(Default)]
struct Registry {
    /// The listening connection, while it is up.
    client: Option<Arc<Client>>,
    streams: HashMap<StreamId, mpsc::Sender<Arc<Event>>>,
    channels: HashMap<String, ChannelEntry>,
    /// NOTIFY channel -> how many FraiseQL channels map to it.
    listens: HashMap<String, usize>,
}

struct ChannelEntry {
    senders: Senders,
    notify: String,
    /// The highest sequence committed when this channel was first LISTENed: catch-up never
    /// replays rows from before the subscription. `None` until a connection LISTENed.
    since: Option<i64>,
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

    async fn add_channels(
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
            let notify = notify_channel(&self.shared.config.prefix, channel);
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
        self.shared
            .active_channels
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
                self.shared
                    .remove_channels(registry, stream, Some(&added))
                    .await;
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
                client.query_one(&self.shared.sql.position, &[]).await
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
        self.shared.read_position().await
    }

    fn query_error(&self, action: &'static str, err: &tokio_postgres::Error) -> BusError {
        PostgresBusError::Query {
            target: self.shared.target.clone(),
            action,
            cause: describe(err),
        }
        .into()
    }
}

async fn backend_pid(client: &Client) -> i32 {
    match client.query_one("SELECT pg_backend_pid()", &[]).await {
        Ok(row) => row.try_get(0).unwrap_or(0),
        Err(_) => 0,
    }
}

async fn prepare_publisher(
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
    async fn publisher(&self) -> Result<Arc<Publisher>, BusError> {
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
    async fn read_position(&self) -> Result<i64, BusError> {
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
    fn forget_publisher(&self, stale: &Arc<Publisher>) {
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
    fn publisher_failed(
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

    fn query_error(&self, action: &'static str, err: &tokio_postgres::Error) -> BusError {
        PostgresBusError::Query {
            target: self.target.clone(),
            action,
            cause: describe(err),
        }
        .into()
    }

    /// Removes `stream` from `channels` (all when `None`), UNLISTENing NOTIFY channels no
    /// longer needed.
    async fn remove_channels(
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

    async fn forget_stream(&self, stream: StreamId) {
        let mut registry = self.registry.lock().await;
        registry.streams.remove(&stream);
        self.remove_channels(&mut registry, stream, None).await;
    }

    /// Hands `event` to every stream subscribed to its channel, in order.
    async fn route(&self, event: Arc<Event>) {
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
}

/// Which sequence numbers were delivered, to drop the second copy of an event that arrives
/// both by catch-up and by notification.
#[derive(Debug, Default)]
struct Tracker {
    seen: BTreeSet<i64>,
    /// Every row of the bus's channels at or below this sequence has been delivered, except
    /// late commits, which the catch-up re-reads within [`REORDER_WINDOW`].
    watermark: i64,
}

impl Tracker {
    /// Records `seq`; `false` if it was delivered already.
    fn first_time(&mut self, seq: i64) -> bool {
        if !self.seen.insert(seq) {
            return false;
        }
        self.advance(seq);
        true
    }

    fn advance(&mut self, to: i64) {
        if to <= self.watermark {
            return;
        }
        self.watermark = to;
        let floor = to.saturating_sub(REORDER_WINDOW);
        if self.seen.first().is_some_and(|first| *first < floor) {
            self.seen = self.seen.split_off(&floor);
        }
    }
}

/// Owns the listening connection: routes notifications, keeps the connection checked,
/// reconnects, re-LISTENs and catches up.
async fn listen_loop(
    shared: Arc<Shared>,
    mut first: Option<(Arc<Client>, mpsc::UnboundedReceiver<ConnMessage>)>,
) {
    let mut tracker = Tracker::default();
    loop {
        let (client, mut messages) = match first.take() {
            Some(conn) => conn,
            None => {
                let Some(conn) = reconnect(&shared).await else {
                    return;
                };
                let client = Arc::new(conn.client);
                let messages = conn.messages;
                match resume(&shared, &client, &tracker).await {
                    Ok((backlog, position)) => {
                        // Delivered before advancing, so rows seen before the drop are
                        // recognised and skipped.
                        for (seq, event) in backlog {
                            if seq.is_none_or(|seq| tracker.first_time(seq)) {
                                shared.route(event).await;
                            }
                        }
                        tracker.advance(position);
                    }
                    Err(reason) => {
                        tracing::warn!(target = %shared.target, %reason, "PostgreSQL bus: catch-up failed; reconnecting");
                        continue;
                    }
                }
                (client, messages)
            }
        };
        let mut keepalive = tokio::time::interval(shared.config.keepalive_interval);
        keepalive.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        keepalive.tick().await;
        let reason = loop {
            tokio::select! {
                biased;
                () = shared.shutdown.cancelled() => return,
                message = messages.recv() => match message {
                    Some(ConnMessage::Notification { channel, payload }) => {
                        if let Err(reason) =
                            notification(&shared, &client, &mut tracker, &channel, &payload).await
                        {
                            break reason;
                        }
                    }
                    Some(ConnMessage::Closed(reason)) => break reason,
                    None => break "connection task ended".to_owned(),
                },
                _ = keepalive.tick() => {
                    let check = client.query_one(&shared.sql.position, &[]);
                    match tokio::time::timeout(shared.config.connect_timeout, check).await {
                        Ok(Ok(row)) => tracker.advance(row.try_get(0).unwrap_or(0)),
                        Ok(Err(err)) => break describe(&err),
                        Err(_) => break "keepalive query timed out".to_owned(),
                    }
                }
            }
        };
        tracing::warn!(target = %shared.target, %reason, "PostgreSQL bus: listening connection lost; reconnecting");
        shared.listen_pid.store(0, Ordering::Relaxed);
        shared.registry.lock().await.client = None;
    }
}

/// Connects again with exponential backoff; `None` once the bus is dropped.
async fn reconnect(shared: &Shared) -> Option<PgConn> {
    let mut delay = shared.config.reconnect_initial;
    loop {
        tokio::select! {
            () = shared.shutdown.cancelled() => return None,
            () = tokio::time::sleep(delay) => {}
        }
        match open(&shared.config, "listen").await {
            Ok(conn) => {
                shared.reconnects.fetch_add(1, Ordering::Relaxed);
                return Some(conn);
            }
            Err(err) => {
                tracing::warn!(error = %err, retry_in = ?delay, "PostgreSQL bus: reconnect failed");
                delay = (delay * 2).min(shared.config.reconnect_max);
            }
        }
    }
}

type Backlog = Vec<(Option<i64>, Arc<Event>)>;

/// After a reconnect: LISTEN every needed channel, then read what was missed (rows of the
/// bus's channels above what it saw), gap notices first for channels whose rows were pruned.
/// Returns the backlog in sequence order and the highest sequence committed before it was
/// read: once the backlog is delivered, every row of the bus's channels up to there has been.
async fn resume(
    shared: &Shared,
    client: &Arc<Client>,
    tracker: &Tracker,
) -> Result<(Backlog, i64), String> {
    let mut registry = shared.registry.lock().await;
    let listen: String = registry
        .listens
        .keys()
        .map(|name| format!("LISTEN {};", quote_ident(name)))
        .collect();
    if !listen.is_empty() {
        client
            .batch_execute(&listen)
            .await
            .map_err(|e| describe(&e))?;
    }
    let position = client
        .query_one(&shared.sql.position, &[])
        .await
        .map_err(|e| describe(&e))?;
    let max_seq: i64 = position.try_get(0).map_err(|e| describe(&e))?;
    let pruned_through: i64 = position.try_get(1).map_err(|e| describe(&e))?;
    let watermark = tracker.watermark;
    let mut backlog = Vec::new();
    let mut names = Vec::new();
    let mut afters = Vec::new();
    for (channel, entry) in &mut registry.channels {
        let Some(since) = entry.since else {
            // Not started yet (`add_channels` sets the start under the registry lock, so
            // this is not expected): it starts now.
            entry.since = Some(max_seq);
            continue;
        };
        let needed_after = since.max(watermark);
        if pruned_through > needed_after {
            backlog.push((
                None,
                Arc::new(Event::gap(
                    channel.clone(),
                    format!(
                        "events on {channel:?} after sequence {needed_after} were pruned from the \
                         events table while this node was disconnected; refetch and subscribe again"
                    ),
                )),
            ));
            // The notice stands for the pruned rows only: what the table still holds follows
            // it (the EventBus contract, rule 11). (Fixed bug, found by the conformance
            // suite: the channel used to restart at the current position, so the rows that
            // survived the pruning, and events published while the node reconnected, were
            // lost without a notice of their own.)
            names.push(channel.clone());
            afters.push(pruned_through);
            continue;
        }
        names.push(channel.clone());
        afters.push(since.max(watermark.saturating_sub(REORDER_WINDOW)));
    }
    if !names.is_empty() {
        let rows = client
            .query(&shared.sql.catch_up, &[&names, &afters])
            .await
            .map_err(|e| describe(&e))?;
        for row in rows {
            let seq: i64 = row.try_get(0).map_err(|e| describe(&e))?;
            let wire: String = row.try_get(1).map_err(|e| describe(&e))?;
            match Event::from_wire_json(wire.as_bytes()) {
                Ok(event) => backlog.push((Some(seq), Arc::new(event))),
                Err(err) => {
                    tracing::warn!(seq, error = %err, "PostgreSQL bus: skipping unreadable event row");
                }
            }
        }
    }
    registry.client = Some(Arc::clone(client));
    drop(registry);
    shared
        .listen_pid
        .store(backend_pid(client).await, Ordering::Relaxed);
    Ok((backlog, max_seq))
}

/// One notification: `seq event-json`, or `seq` alone for an event read from the table.
/// An error means the connection must be dropped and the events caught up from the table
/// (reading a large event failed).
async fn notification(
    shared: &Shared,
    client: &Client,
    tracker: &mut Tracker,
    notify_channel: &str,
    payload: &str,
) -> Result<(), String> {
    let (seq_text, wire) = match payload.split_once(' ') {
        Some((seq, wire)) => (seq, Some(wire)),
        None => (payload, None),
    };
    let Ok(seq) = seq_text.parse::<i64>() else {
        tracing::debug!(
            notify_channel,
            "PostgreSQL bus: ignoring a foreign notification"
        );
        return Ok(());
    };
    if !tracker.first_time(seq) {
        return Ok(());
    }
    let event = match wire {
        Some(wire) => Event::from_wire_json(wire.as_bytes()),
        None => match client.query_opt(&shared.sql.fetch, &[&seq]).await {
            Ok(Some(row)) => match row.try_get::<_, String>(0) {
                Ok(wire) => Event::from_wire_json(wire.as_bytes()),
                Err(err) => {
                    tracing::warn!(seq, error = %describe(&err), "PostgreSQL bus: unreadable event row");
                    return Ok(());
                }
            },
            Ok(None) => {
                // Pruned before it could be read: tell the channels that share this name.
                let channels: Vec<String> = shared
                    .registry
                    .lock()
                    .await
                    .channels
                    .iter()
                    .filter(|(_, entry)| entry.notify == notify_channel)
                    .map(|(name, _)| name.clone())
                    .collect();
                for channel in channels {
                    let message =
                        format!("event {seq} on {channel:?} was pruned before it could be read");
                    shared.route(Arc::new(Event::gap(channel, message))).await;
                }
                return Ok(());
            }
            Err(err) => {
                // The connection is failing. The catch-up after reconnecting reads this event
                // and every later one, in order: the notifications still queued behind it
                // must not be delivered first. (Fixed bug, found by the conformance suite:
                // they were, so a large event came after the small ones published after it.)
                tracker.seen.remove(&seq);
                return Err(format!(
                    "reading large event {seq} failed: {}",
                    describe(&err)
                ));
            }
        },
    };
    match event {
        Ok(event) => shared.route(Arc::new(event)).await,
        Err(err) => {
            tracing::warn!(seq, error = %err, "PostgreSQL bus: unreadable event");
        }
    }
    Ok(())
}

async fn prune_loop(shared: Arc<Shared>) {
    let mut every = tokio::time::interval(shared.config.prune_interval);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    every.tick().await;
    loop {
        tokio::select! {
            () = shared.shutdown.cancelled() => return,
            _ = every.tick() => {
                if let Err(err) = prune_once(&shared).await {
                    tracing::warn!(error = %err, "PostgreSQL bus: pruning failed");
                }
            }
        }
    }
}

async fn prune_once(shared: &Shared) -> Result<u64, BusError> {
    let publisher = shared.publisher().await?;
    let age = shared.config.retention_max_age.map(|age| age.as_secs_f64());
    let count = shared
        .config
        .retention_max_count
        .map(|count| i64::try_from(count).unwrap_or(i64::MAX));
    let row = publisher
        .client
        .query_one(&shared.sql.prune, &[&age, &count])
        .await
        .map_err(|err| shared.publisher_failed(&publisher, "pruning", &err))?;
    let deleted: i64 = row.try_get(0).unwrap_or(0);
    Ok(u64::try_from(deleted).unwrap_or(0))
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
        self.add_channels(&mut registry, stream, &sender, channels)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tracker_drops_second_copies_and_forgets_below_the_window() {
        let mut tracker = Tracker::default();
        assert!(tracker.first_time(5));
        assert!(!tracker.first_time(5));
        assert!(
            tracker.first_time(3),
            "a late commit below the highest is new"
        );
        tracker.advance(5 + REORDER_WINDOW + 10);
        assert!(tracker.seen.is_empty(), "old entries are forgotten");
        assert_eq!(tracker.watermark, 5 + REORDER_WINDOW + 10);
    }
}
