//! [`Shared`]: the state the bus handle and its background tasks share — the local
//! subscribers of each channel, the Redis clients, the counters — and the subscribe,
//! unsubscribe and deliver operations on it.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use fraiseql_subscriptions::{BusError, Event, StreamId};
use fred::prelude::{Client, ClientLike, PubsubInterface};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::cluster;
use crate::config::{RedisBusConfig, RedisMode, RedisTopology};
use crate::error::command_error;
use crate::stream_log::{self, Cursor};

type Sender = mpsc::Sender<Arc<Event>>;

/// One channel this node has local subscribers for.
pub(crate) struct ChannelState {
    pub(crate) subscribers: Vec<(StreamId, Sender)>,
    /// Streams mode: the last entry read from the channel's stream.
    pub(crate) cursor: Option<Cursor>,
}

#[derive(Default)]
pub(crate) struct Local {
    pub(crate) streams: HashMap<StreamId, (Sender, HashSet<String>)>,
    pub(crate) channels: HashMap<String, ChannelState>,
}

/// State shared by the bus and its background tasks.
pub(crate) struct Shared {
    pub(crate) config: RedisBusConfig,
    pub(crate) local: Mutex<Local>,
    /// Serializes every change of the channel set together with its Redis call
    /// (SUBSCRIBE / UNSUBSCRIBE, or the stream cursor), so they are never reordered.
    pub(crate) membership: tokio::sync::Mutex<()>,
    pub(crate) publisher: Client,
    /// The SUBSCRIBE connection (pubsub) or the XREAD BLOCK connection (streams).
    pub(crate) listener: Client,
    /// Streams mode on a cluster: the shard reader's client (`XREAD` without `BLOCK`).
    pub(crate) reader: Option<Client>,
    /// Streams mode: a small stream only this node reads, written to wake its reader when
    /// a channel is added.
    pub(crate) wake_key: String,
    pub(crate) published: AtomicU64,
    pub(crate) delivered: AtomicU64,
    pub(crate) dropped: AtomicU64,
    pub(crate) gaps: AtomicU64,
    pub(crate) next_stream: AtomicU64,
    pub(crate) cancel: CancellationToken,
    /// Streams mode on a cluster: channels whose wake-up message arrived, to be read.
    pub(crate) dirty: Mutex<HashSet<String>>,
    /// Streams mode on a cluster: wakes the reader when `dirty` gains a channel.
    pub(crate) dirty_notify: tokio::sync::Notify,
    /// A resubscription failed (Redis unreachable): the next `topology_check` tries again.
    pub(crate) resubscribe_failed: std::sync::atomic::AtomicBool,
}

impl Shared {
    pub(crate) fn local(&self) -> MutexGuard<'_, Local> {
        self.local.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether the bus talks to a Redis Cluster.
    pub(crate) fn clustered(&self) -> bool {
        self.config.topology == RedisTopology::Cluster
    }

    /// Whether the listening connection holds (shard) channel subscriptions: pubsub mode,
    /// and streams mode on a cluster, where each channel's shard channel wakes the reader.
    pub(crate) fn listens_on_channels(&self) -> bool {
        self.config.mode == RedisMode::PubSub || self.clustered()
    }

    /// Streams mode on a cluster: marks `channel` to be read and wakes the reader.
    pub(crate) fn mark_dirty(&self, channel: &str) {
        self.dirty
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(channel.to_owned());
        self.dirty_notify.notify_one();
    }

    /// Starts listening to `channels` on the listening connection: `SUBSCRIBE` confirmed by
    /// a `PING`, or on a cluster `SSUBSCRIBE` per slot.
    async fn listen(&self, channels: &[String]) -> Result<(), BusError> {
        let keys: Vec<String> = channels.iter().map(|c| self.config.key_of(c)).collect();
        if self.clustered() {
            return cluster::ssubscribe(&self.listener, &keys)
                .await
                .map_err(|e| command_error(&self.config.host, "SSUBSCRIBE", &e));
        }
        self.listener
            .subscribe(keys)
            .await
            .map_err(|e| command_error(&self.config.host, "SUBSCRIBE", &e))?;
        self.confirm_listening().await
    }

    /// Stops listening to `channels`, returning once Redis has applied it.
    async fn unlisten(&self, channels: &[String]) -> Result<(), BusError> {
        let keys: Vec<String> = channels.iter().map(|c| self.config.key_of(c)).collect();
        if self.clustered() {
            return cluster::sunsubscribe(&self.listener, &keys)
                .await
                .map_err(|e| command_error(&self.config.host, "SUNSUBSCRIBE", &e));
        }
        self.listener
            .unsubscribe(keys)
            .await
            .map_err(|e| command_error(&self.config.host, "UNSUBSCRIBE", &e))?;
        // As for SUBSCRIBE: return only once Redis has applied it, so an event published
        // after `unsubscribe` returned can never reach this node, and so never reaches a
        // stream that subscribes to the channel again meanwhile (the EventBus contract,
        // rule 6).
        self.confirm_listening().await
    }

    /// Hands `event` to `subscribers`, waiting when a queue is full (back-pressure);
    /// streams that are gone are forgotten.
    pub(crate) async fn deliver(
        self: &Arc<Self>,
        subscribers: &[(StreamId, Sender)],
        event: &Arc<Event>,
    ) {
        let mut gone = Vec::new();
        for (id, sender) in subscribers {
            // Counted before the hand-over: a subscriber that has the event sees it counted
            // (stats read right after a receive are exact); taken back if the stream is gone.
            self.delivered.fetch_add(1, Ordering::Relaxed);
            if sender.send(Arc::clone(event)).await.is_err() {
                self.delivered.fetch_sub(1, Ordering::Relaxed);
                gone.push(*id);
            }
        }
        if !gone.is_empty() {
            let shared = Arc::clone(self);
            tokio::spawn(async move {
                for id in gone {
                    let _ = shared.remove(id, None).await;
                }
            });
        }
    }

    /// The local subscribers of `channel`, if any.
    pub(crate) fn subscribers_of(&self, channel: &str) -> Option<Vec<(StreamId, Sender)>> {
        self.local()
            .channels
            .get(channel)
            .map(|state| state.subscribers.clone())
    }

    /// Adds `channels` to `stream`; channels this node did not listen to yet are first
    /// subscribed in Redis (pubsub) or given a cursor at the stream's current end (streams).
    pub(crate) async fn add(&self, stream: StreamId, channels: &[String]) -> Result<(), BusError> {
        let _order = self.membership.lock().await;
        let sender = {
            let local = self.local();
            let (sender, _) = local
                .streams
                .get(&stream)
                .ok_or(BusError::UnknownStream(stream))?;
            sender.clone()
        };
        if sender.is_closed() {
            drop(_order);
            let _ = self.remove(stream, None).await;
            return Err(BusError::UnknownStream(stream));
        }
        let mut fresh: Vec<String> = {
            let local = self.local();
            channels
                .iter()
                .filter(|c| !local.channels.contains_key(*c))
                .cloned()
                .collect()
        };
        fresh.sort();
        fresh.dedup();
        // Registered before Redis is asked to send anything: a message that arrives the
        // moment the SUBSCRIBE is applied — before its confirmation comes back — finds its
        // subscriber. A fresh channel has no cursor yet, so the stream readers skip it.
        {
            let mut local = self.local();
            for channel in channels {
                let state = local
                    .channels
                    .entry(channel.clone())
                    .or_insert_with(|| ChannelState {
                        subscribers: Vec::new(),
                        cursor: None,
                    });
                if !state.subscribers.iter().any(|(id, _)| *id == stream) {
                    state.subscribers.push((stream, sender.clone()));
                }
                if let Some((_, names)) = local.streams.get_mut(&stream) {
                    names.insert(channel.clone());
                }
            }
        }
        if fresh.is_empty() {
            return Ok(());
        }
        match self.start_listening(&fresh).await {
            Ok(cursors) => {
                let mut local = self.local();
                for (channel, cursor) in cursors {
                    if let Some(state) = local.channels.get_mut(&channel) {
                        state.cursor = Some(cursor);
                    }
                }
            }
            Err(err) => {
                // Only this stream holds a fresh channel (the membership lock is held).
                let mut local = self.local();
                for channel in &fresh {
                    local.channels.remove(channel);
                }
                if let Some((_, names)) = local.streams.get_mut(&stream) {
                    for channel in &fresh {
                        names.remove(channel);
                    }
                }
                return Err(err);
            }
        }
        if self.config.mode == RedisMode::Streams && !self.clustered() {
            // The new cursors are already concrete ids, so nothing can be missed; waking the
            // reader only makes it include the new streams now rather than after its BLOCK.
            if let Err(err) = stream_log::wake(&self.publisher, &self.wake_key).await {
                tracing::debug!(error = %err, "could not wake the Redis stream reader");
            }
        }
        Ok(())
    }

    /// Listens to `fresh` channels (pubsub; streams on a cluster: their wake-ups) and, in
    /// streams mode, reads where each stream ends now: where its readers start.
    async fn start_listening(&self, fresh: &[String]) -> Result<HashMap<String, Cursor>, BusError> {
        let mut cursors = HashMap::new();
        if self.listens_on_channels() {
            // Streams on a cluster: the wake-up channel first, so every entry after the tip
            // read below is followed by a wake-up this node hears.
            self.listen(fresh).await?;
        }
        if self.config.mode == RedisMode::Streams {
            for channel in fresh {
                let key = self.config.key_of(channel);
                let cursor = stream_log::tip(&self.publisher, &key)
                    .await
                    .map_err(|e| command_error(&self.config.host, "XREVRANGE", &e))?;
                cursors.insert(channel.clone(), cursor);
            }
        }
        Ok(cursors)
    }

    /// Returns once Redis has applied the SUBSCRIBEs (or UNSUBSCRIBEs) sent on the listening
    /// connection.
    ///
    /// Redis answers SUBSCRIBE out of band, so the client resolves it once it is written,
    /// not when Redis has taken it; a PUBLISH sent afterwards on another connection (this
    /// node's command connection, or another node's) can reach Redis first and be missed. A
    /// PING on the same connection is answered in order, after the commands before it.
    pub(crate) async fn confirm_listening(&self) -> Result<(), BusError> {
        self.listener
            .ping::<fred::types::Value>(None)
            .await
            .map(drop)
            .map_err(|e| command_error(&self.config.host, "PING after (UN)SUBSCRIBE", &e))
    }

    /// Removes `channels` (or every channel, and the stream itself, when `None`) from
    /// `stream`; channels left with no local subscriber are unsubscribed in Redis.
    pub(crate) async fn remove(
        &self,
        stream: StreamId,
        channels: Option<&[String]>,
    ) -> Result<(), BusError> {
        let _order = self.membership.lock().await;
        let idle: Vec<String> = {
            let mut local = self.local();
            let names: Vec<String> = match channels {
                Some(channels) => {
                    if !local.streams.contains_key(&stream) {
                        // Idempotent (the EventBus contract, rule 6): an unknown or
                        // forgotten stream holds no channel.
                        return Ok(());
                    }
                    channels.to_vec()
                }
                None => match local.streams.remove(&stream) {
                    Some((_, names)) => names.into_iter().collect(),
                    None => return Ok(()),
                },
            };
            if let Some((_, held)) = local.streams.get_mut(&stream) {
                for name in &names {
                    held.remove(name);
                }
            }
            let mut idle = Vec::new();
            for name in names {
                let Some(state) = local.channels.get_mut(&name) else {
                    continue;
                };
                state.subscribers.retain(|(id, _)| *id != stream);
                if state.subscribers.is_empty() {
                    local.channels.remove(&name);
                    idle.push(name);
                }
            }
            idle
        };
        if !idle.is_empty() && self.listens_on_channels() {
            self.unlisten(&idle).await?;
        }
        Ok(())
    }

    /// After a reconnect (or, on a cluster, a slot that moved): listen again to every
    /// channel with local subscribers (a new connection starts with none). A failure is
    /// logged and retried at the next `topology_check`.
    pub(crate) async fn resubscribe_all(&self) {
        let _order = self.membership.lock().await;
        let channels: Vec<String> = self.local().channels.keys().cloned().collect();
        if channels.is_empty() {
            return;
        }
        match self.listen(&channels).await {
            Ok(()) => {
                self.resubscribe_failed.store(false, Ordering::Relaxed);
                tracing::info!(host = %self.config.host, channels = channels.len(), "Redis bus listening again after a reconnect or a topology change");
            }
            Err(err) => {
                self.resubscribe_failed.store(true, Ordering::Relaxed);
                tracing::warn!(host = %self.config.host, error = %err, "Redis bus could not resubscribe after reconnect");
            }
        }
        if self.config.mode == RedisMode::Streams {
            // Whatever was written while this node was not listening is read now.
            for channel in channels {
                self.mark_dirty(&channel);
            }
        }
    }
}
