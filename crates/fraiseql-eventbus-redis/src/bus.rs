//! [`RedisBus`]: the `EventBus` over Redis, in pubsub or streams mode.

use std::collections::HashSet;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use async_trait::async_trait;
use fraiseql_subscriptions::{
    validate_channel, BusError, BusStats, Event, EventBus, EventStream, StreamId,
};
use fred::prelude::{
    Builder, Client, ClientLike, EventInterface, KeysInterface, PubsubInterface, ReconnectPolicy,
    Value,
};
use fred::types::scripts::Script;
use fred::types::ConnectHandle;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::config::{RedisBusConfig, RedisMode, RedisTopology};
use crate::error::{command_error, connect_error, RedisBusError};
use crate::shared::{Local, Shared};
use crate::stream_log;
use crate::supervisor::{supervise, Role};

/// The Redis event bus: every process of a deployment connects to one Redis (a server, a
/// cluster, or a primary behind Sentinel) and sees every event published by any of them on
/// the channels it has subscribers for.
///
/// Two clients, each reconnecting with backoff and supervised (restarted if its connection
/// task ends): one for commands (PUBLISH / XADD, PING), one that listens (SUBSCRIBE in pubsub
/// mode, XREAD BLOCK in streams mode; on a cluster SSUBSCRIBE in both modes), plus, in streams
/// mode on a cluster, a third for the shard reader's reads. On a cluster each client holds a
/// connection per primary. A publish goes only through Redis, so a node receives its own
/// events exactly once, like any other node's.
///
/// ```no_run
/// use std::sync::Arc;
/// use fraiseql_eventbus_redis::{RedisBus, RedisBusConfig, RedisMode};
/// use fraiseql_subscriptions::{Event, EventBus};
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// let config = RedisBusConfig::from_url("redis://127.0.0.1:6379")?.with_mode(RedisMode::Streams);
/// let bus = RedisBus::connect(config).await?;
/// let mut stream = bus.subscribe(&["room:lobby".to_owned()]).await?;
/// bus.publish(Arc::new(Event::new("room:lobby", serde_json::json!({"text": "hi"})))).await?;
/// let event = stream.recv().await;
/// # Ok(()) }
/// ```
pub struct RedisBus {
    shared: Arc<Shared>,
    /// Streams mode: the script that numbers and appends an entry.
    append: Script,
    /// Streams mode on a cluster: the same, and the wake-up of the stream's readers.
    append_and_wake: Script,
}

impl fmt::Debug for RedisBus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisBus")
            .field("host", &self.shared.config.host)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

fn duration_ms(d: Duration) -> u32 {
    u32::try_from(d.as_millis()).unwrap_or(u32::MAX)
}

fn build_client(
    config: &RedisBusConfig,
    command_timeout: Duration,
) -> Result<Client, RedisBusError> {
    let mut builder = Builder::from_config(config.fred.clone());
    builder
        .with_connection_config(|c| {
            c.connection_timeout = config.connect_timeout;
            c.internal_command_timeout = config.command_timeout;
            // Names each connection after the client (`fred-...`), so operators can find
            // them in CLIENT LIST; see `RedisBus::listener_name`.
            c.auto_client_setname = true;
        })
        .with_performance_config(|p| {
            p.default_command_timeout = command_timeout;
            p.broadcast_channel_capacity = config.pubsub_buffer;
        })
        .set_policy(ReconnectPolicy::new_exponential(
            0,
            duration_ms(config.reconnect_min),
            duration_ms(config.reconnect_max),
            2,
        ));
    builder.build().map_err(|err| RedisBusError::InvalidConfig {
        field: "url",
        reason: err.details().to_owned(),
    })
}

async fn init(client: &Client, config: &RedisBusConfig) -> Result<ConnectHandle, RedisBusError> {
    let guard = config.connect_timeout + Duration::from_secs(1);
    match tokio::time::timeout(guard, client.init()).await {
        Ok(Ok(task)) => Ok(task),
        Ok(Err(err)) => Err(connect_error(&config.host, &err)),
        Err(_) => {
            let _ = client.quit().await;
            Err(RedisBusError::Connect {
                host: config.host.clone(),
                cause: format!("no answer within {guard:?}"),
            })
        }
    }
}

impl RedisBus {
    /// Validates `config`, connects, and starts listening.
    ///
    /// # Errors
    /// [`RedisBusError::InvalidConfig`] for a bad setting, [`RedisBusError::Connect`] when
    /// Redis cannot be reached, [`RedisBusError::Auth`] when it refuses the credentials.
    pub async fn connect(config: RedisBusConfig) -> Result<Self, RedisBusError> {
        config.validate()?;
        let publisher = build_client(&config, config.command_timeout)?;
        let publisher_task = init(&publisher, &config).await?;
        if config.topology == RedisTopology::Cluster {
            // Sharded pub/sub (SSUBSCRIBE / SPUBLISH) arrived in Redis 7.
            if let Some(version) = publisher.server_version().filter(|v| v.major < 7) {
                let _ = publisher.quit().await;
                return Err(RedisBusError::Connect {
                    host: config.host.clone(),
                    cause: format!(
                        "the cluster runs Redis {version}; the bus needs Redis >= 7 on a \
                         cluster (sharded pub/sub): upgrade it, or use one server (redis://)"
                    ),
                });
            }
        }
        // The reader's XREAD BLOCK may legitimately wait `read_block`.
        let listener = build_client(&config, config.read_block + config.command_timeout)?;
        let listener_task = match init(&listener, &config).await {
            Ok(task) => task,
            Err(err) => {
                let _ = publisher.quit().await;
                return Err(err);
            }
        };
        // Streams mode on a cluster: the reads of the shard reader, on a client of their own
        // so a burst of reads (every stream, each `topology_check`) never queues publishes.
        let reader =
            if config.mode == RedisMode::Streams && config.topology == RedisTopology::Cluster {
                let reader = build_client(&config, config.command_timeout)?;
                match init(&reader, &config).await {
                    Ok(task) => Some((reader, task)),
                    Err(err) => {
                        let _ = publisher.quit().await;
                        let _ = listener.quit().await;
                        return Err(err);
                    }
                }
            } else {
                None
            };
        let (reader, reader_task) = reader.unzip();
        let append = Script::from_lua(stream_log::APPEND_LUA);
        if config.mode == RedisMode::Streams && config.topology != RedisTopology::Cluster {
            if let Err(err) = append.load(&publisher).await {
                let _ = publisher.quit().await;
                let _ = listener.quit().await;
                return Err(connect_error(&config.host, &err));
            }
        }
        // The wake key holds a control character, which no channel name may contain, so it
        // can never be a channel's stream.
        let wake_key = format!("{}\u{1f}wake:{}", config.prefix, uuid::Uuid::now_v7());
        let shared = Arc::new(Shared {
            config,
            local: Mutex::new(Local::default()),
            membership: tokio::sync::Mutex::new(()),
            publisher,
            listener,
            reader,
            wake_key,
            published: AtomicU64::new(0),
            delivered: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            gaps: AtomicU64::new(0),
            next_stream: AtomicU64::new(1),
            cancel: CancellationToken::new(),
            dirty: Mutex::new(HashSet::new()),
            dirty_notify: tokio::sync::Notify::new(),
            resubscribe_failed: AtomicBool::new(false),
        });
        for (role, task) in [
            (Role::Publisher, Some(publisher_task)),
            (Role::Listener, Some(listener_task)),
            (Role::Reader, reader_task),
        ] {
            if let Some(task) = task {
                tokio::spawn(supervise(Arc::downgrade(&shared), role, task));
            }
        }
        if shared.listens_on_channels() {
            let weak: Weak<Shared> = Arc::downgrade(&shared);
            // The handler task lives as long as the client; its handle is not needed.
            drop(shared.listener.on_reconnect(move |_server| {
                let weak = weak.clone();
                async move {
                    if let Some(shared) = weak.upgrade() {
                        // Off the client's event task: SUBSCRIBE waits on the connection.
                        tokio::spawn(async move { shared.resubscribe_all().await });
                    }
                    Ok(())
                }
            }));
            // The receiver is made here, not in the task: a broadcast channel only
            // hands a message to receivers that existed when it arrived, and the task may
            // first run after a SUBSCRIBE has been confirmed and a message delivered.
            let messages = shared.listener.message_rx();
            tokio::spawn(crate::pubsub::run(Arc::clone(&shared), messages));
        }
        if shared.listens_on_channels() {
            tokio::spawn(crate::topology_watch::run(Arc::clone(&shared)));
        }
        if shared.config.mode == RedisMode::Streams {
            if shared.clustered() {
                tokio::spawn(crate::shard_reader::run(Arc::clone(&shared)));
            } else {
                tokio::spawn(crate::stream_reader::run_reader(Arc::clone(&shared)));
            }
        }
        let closing = Arc::clone(&shared);
        tokio::spawn(async move {
            closing.cancel.cancelled().await;
            if closing.config.mode == RedisMode::Streams {
                let _: Result<i64, _> = closing.publisher.del(&closing.wake_key).await;
            }
            let _ = closing.listener.quit().await;
            let _ = closing.publisher.quit().await;
            if let Some(reader) = &closing.reader {
                let _ = reader.quit().await;
            }
        });
        Ok(Self {
            shared,
            append,
            append_and_wake: Script::from_lua(stream_log::APPEND_AND_WAKE_LUA),
        })
    }

    /// The configuration the bus runs with.
    #[must_use]
    pub fn config(&self) -> &RedisBusConfig {
        &self.shared.config
    }

    /// The name (`CLIENT SETNAME`) of the connection that listens — SUBSCRIBE in pubsub mode,
    /// XREAD BLOCK in streams mode — as `CLIENT LIST` shows it.
    #[must_use]
    pub fn listener_name(&self) -> String {
        self.shared.listener.id().to_owned()
    }

    /// Gap notices emitted so far (streams mode: events trimmed before this node read them).
    #[must_use]
    pub fn gaps(&self) -> u64 {
        self.shared.gaps.load(Ordering::Relaxed)
    }

    /// Messages dropped because this node could not keep up (pubsub mode only).
    #[must_use]
    pub fn dropped(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }
}

impl Drop for RedisBus {
    fn drop(&mut self) {
        self.shared.cancel.cancel();
    }
}

#[async_trait]
impl EventBus for RedisBus {
    async fn publish(&self, event: Arc<Event>) -> Result<(), BusError> {
        validate_channel(event.channel())?;
        let shared = &self.shared;
        let key = shared.config.key_of(event.channel());
        // serde_json writes UTF-8, so this never copies.
        let payload = String::from_utf8(event.to_wire_json()).map_err(|_| {
            command_error(
                &shared.config.host,
                "encode",
                &fred::error::Error::new(
                    fred::error::ErrorKind::InvalidArgument,
                    "event is not UTF-8",
                ),
            )
        })?;
        match shared.config.mode {
            RedisMode::PubSub if shared.clustered() => {
                let _: i64 = shared
                    .publisher
                    .spublish(key, payload)
                    .await
                    .map_err(|e| command_error(&shared.config.host, "SPUBLISH", &e))?;
            }
            RedisMode::PubSub => {
                let _: i64 = shared
                    .publisher
                    .publish(key, payload)
                    .await
                    .map_err(|e| command_error(&shared.config.host, "PUBLISH", &e))?;
            }
            RedisMode::Streams => {
                let args = vec![shared.config.stream_max_len.to_string(), payload];
                let appended: Result<Value, _> = if shared.clustered() {
                    stream_log::append_and_wake(
                        &shared.publisher,
                        self.append_and_wake.sha1(),
                        &key,
                        args,
                    )
                    .await
                } else {
                    self.append
                        .evalsha_with_reload(&shared.publisher, key.as_str(), args)
                        .await
                };
                appended.map_err(|e| command_error(&shared.config.host, "XADD", &e))?;
            }
        }
        shared.published.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    async fn subscribe(&self, channels: &[String]) -> Result<EventStream, BusError> {
        channels.iter().try_for_each(|c| validate_channel(c))?;
        let id = self.shared.next_stream.fetch_add(1, Ordering::Relaxed);
        let (sender, receiver) = mpsc::channel(self.shared.config.stream_capacity);
        self.shared
            .local()
            .streams
            .insert(id, (sender, HashSet::new()));
        if !channels.is_empty() {
            if let Err(err) = self.shared.add(id, channels).await {
                let _ = self.shared.remove(id, None).await;
                return Err(err);
            }
        }
        Ok(EventStream::new(id, receiver))
    }

    async fn subscribe_to(&self, stream: StreamId, channels: &[String]) -> Result<(), BusError> {
        channels.iter().try_for_each(|c| validate_channel(c))?;
        self.shared.add(stream, channels).await
    }

    async fn unsubscribe(&self, stream: StreamId, channels: &[String]) -> Result<(), BusError> {
        self.shared.remove(stream, Some(channels)).await
    }

    async fn health_check(&self) -> Result<(), BusError> {
        let _: String = self
            .shared
            .publisher
            .ping(None)
            .await
            .map_err(|e| command_error(&self.shared.config.host, "PING", &e))?;
        Ok(())
    }

    fn stats(&self) -> BusStats {
        BusStats {
            events_published: self.shared.published.load(Ordering::Relaxed),
            events_delivered: self.shared.delivered.load(Ordering::Relaxed),
            active_channels: self.shared.local().channels.len(),
            mode: self.shared.config.mode.stats_name().to_owned(),
        }
    }
}
