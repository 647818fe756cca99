//! The `EventBus` seam between publishers and the engine, and [`InMemoryBus`], the embedded
//! default for a single process.

use std::collections::HashMap;
use std::fmt;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};

use async_trait::async_trait;
use tokio::sync::mpsc;

use crate::event::Event;

/// Why a bus operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BusError {
    /// A channel name that no bus accepts.
    #[error("invalid channel name {channel:?}: {reason}")]
    InvalidChannel {
        /// The channel given.
        channel: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The stream named does not exist on this bus (it was dropped, or came from another bus).
    #[error("unknown event stream {0}")]
    UnknownStream(u64),
    /// The backend (Redis, PostgreSQL, ...) failed; `message` names the host and the cause.
    #[error("{backend} event bus: {message}")]
    Backend {
        /// Which backend.
        backend: &'static str,
        /// What went wrong, with the host.
        message: String,
    },
}

/// The longest channel name accepted (PostgreSQL's NOTIFY channels are shorter still, and
/// that bus maps names; this bound keeps every backend's keys small).
pub const MAX_CHANNEL_BYTES: usize = 256;

/// Checks a channel name: non-empty, at most [`MAX_CHANNEL_BYTES`], no control characters.
///
/// # Errors
/// [`BusError::InvalidChannel`] saying which rule the name broke.
pub fn validate_channel(channel: &str) -> Result<(), BusError> {
    let reason = if channel.is_empty() {
        "it is empty"
    } else if channel.len() > MAX_CHANNEL_BYTES {
        "it is longer than 256 bytes"
    } else if channel.chars().any(char::is_control) {
        "it contains control characters"
    } else {
        return Ok(());
    };
    Err(BusError::InvalidChannel {
        channel: channel.chars().take(64).collect(),
        reason,
    })
}

/// A bus's counters, for health pages and metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BusStats {
    /// Events published through this bus (by this process).
    pub events_published: u64,
    /// Events handed to subscribed streams (one per stream per event).
    pub events_delivered: u64,
    /// Channels with at least one subscribed stream.
    pub active_channels: usize,
    /// The backend and mode, e.g. `memory`, `redis/pubsub`, `postgres`.
    pub mode: String,
}

/// Identifies an [`EventStream`] on the bus that opened it.
pub type StreamId = u64;

/// Events for the channels a stream subscribed to, in publish order per channel, as the
/// contract on [`EventBus`] says.
///
/// Receive with [`EventStream::recv`] or as a `futures_core::Stream`. Dropping the stream
/// unsubscribes it from everything.
pub struct EventStream {
    id: StreamId,
    receiver: mpsc::Receiver<Arc<Event>>,
}

impl EventStream {
    /// Builds a stream for a bus implementation: `receiver` gets the events.
    #[must_use]
    pub fn new(id: StreamId, receiver: mpsc::Receiver<Arc<Event>>) -> Self {
        Self { id, receiver }
    }

    /// The stream's id, for [`EventBus::subscribe_to`] and [`EventBus::unsubscribe`].
    #[must_use]
    pub const fn id(&self) -> StreamId {
        self.id
    }

    /// The next event, or `None` once the bus is gone.
    pub async fn recv(&mut self) -> Option<Arc<Event>> {
        self.receiver.recv().await
    }

    /// Up to `limit` events already waiting, without waiting, appended to `out`; returns how
    /// many. Lets a dispatcher take events in batches.
    pub fn try_recv_many(&mut self, out: &mut Vec<Arc<Event>>, limit: usize) -> usize {
        let mut taken = 0;
        while taken < limit {
            match self.receiver.try_recv() {
                Ok(event) => {
                    out.push(event);
                    taken += 1;
                }
                Err(_) => break,
            }
        }
        taken
    }
}

impl fmt::Debug for EventStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventStream")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl futures_core::Stream for EventStream {
    type Item = Arc<Event>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.receiver.poll_recv(cx)
    }
}

/// Carries events from publishers to the engines subscribed to their channels, in one
/// process ([`InMemoryBus`]) or across many (the Redis and PostgreSQL crates).
///
/// # The contract
///
/// This is the one statement of what a bus guarantees; every implementation keeps it, and
/// the conformance suite (crate `fraiseql-bus-conformance`, one test per rule, run by each
/// backend crate against a real server) checks it for the in-memory bus, Redis in both modes
/// and PostgreSQL. A *node* is one bus value (one per process, usually); a *stream* is an
/// [`EventStream`] it opened; an event is *accepted* when its `publish` returned `Ok`.
///
/// 1. **Routing.** A stream receives only events of the channels it is subscribed to, each
///    at most once, whichever node published them (a node receives its own events through
///    the backend, like anyone else's). Every stream subscribed to a channel gets every event.
/// 2. **Subscribing takes effect when it returns.** Every event accepted after
///    [`subscribe`](EventBus::subscribe) or [`subscribe_to`](EventBus::subscribe_to) returned
///    reaches the stream, except for the losses the table below allows. No history is
///    replayed: events accepted before the call do not reach the stream, except those still
///    on their way to the node when it was made (because the node listened to the channel,
///    for this stream or another, a moment before).
/// 3. **Order.** On one channel, events that one publisher published one after another
///    (each `publish` awaited before the next) reach every stream in that order, across
///    reconnects included. There is no order between channels, nor between concurrent
///    publishers.
/// 4. **No duplicates**, in every backend and mode, across reconnects included.
/// 5. **Back-pressure, not loss.** A stream queues a bounded number of events; when its queue
///    is full the node waits (the in-memory bus's `publish`, a remote bus's reader) instead
///    of dropping — except Redis pubsub once a node is `pubsub_buffer` messages behind. So a
///    stream that is never read eventually stalls the other streams of its node: read every
///    stream, or drop it.
/// 6. **Unsubscribing is idempotent**: channels the stream does not hold, a stream already
///    dropped, an id the bus never issued — all `Ok`, since the stream then receives nothing
///    from those channels anyway; it fails only when the backend does. Once it returned,
///    events accepted later on those channels do not reach the stream while it stays
///    unsubscribed (subscribing again is rule 2). Adding channels to a dropped or unknown
///    stream fails with [`BusError::UnknownStream`].
/// 7. **Dropping** a stream unsubscribes it from everything (the node notices at the latest
///    with the next event for it, and a dropped stream's full queue stops holding the node
///    back). Dropping the bus ends its streams: [`EventStream::recv`] returns `None`.
/// 8. **Payloads.** An event travels unchanged (every field; the data's JSON bytes) up to at
///    least 512 KiB of wire JSON on every backend. Limits: the in-memory bus has none (it
///    hands over the `Arc`); Redis takes values up to its `proto-max-bulk-len` (512 MB by
///    default); PostgreSQL's NOTIFY refuses payloads of 8000 bytes or more, so larger events
///    (above `notify_threshold`, 7900 bytes by default) travel by reference through the
///    events table (a `json` column: up to 1 GB) — no size is refused.
/// 9. **Channel names** are checked by [`validate_channel`] before the backend sees them:
///    [`BusError::InvalidChannel`].
/// 10. **Connections come back on their own.** A remote bus reconnects with backoff, listens
///     again to every channel its streams hold, and its streams stay open across the loss; a
///     `publish` or `subscribe` may fail with [`BusError::Backend`] (naming the host and the
///     cause) while the backend is unreachable, and a `publish` may fail once when it is the
///     operation that finds the node's connection dead (the next one uses a new connection).
///     A `publish` that failed may or may not have been accepted by the backend, so a bus
///     never retries one (that could deliver an event twice); idempotent operations
///     (subscribing, reading positions) are retried on a fresh connection instead.
/// 11. **Gap notices.** When a backend that promises no loss finds that events a node had
///     not read yet were discarded (trimmed, pruned), the node hands each stream on the
///     channel [`Event::gap`] (type [`GAP_EVENT_TYPE`](crate::GAP_EVENT_TYPE), global, its
///     data a message saying what was lost) in place of the lost events: after every event
///     before the hole, before every event after it; then it goes on with the events the
///     backend still holds. A notice may be conservative (PostgreSQL cannot tell which
///     channels lost rows, so every channel of the node gets one). The engine ends the
///     channel's subscriptions with an `EVENTS_LOST` error so clients re-subscribe and
///     refetch.
///
/// What each backend may lose, and how it says so:
///
/// | backend, mode | while connected | when the node's connection drops or the backend restarts | gap notice |
/// |---|---|---|---|
/// | memory ([`InMemoryBus`]) | nothing | (no connection) | never needed |
/// | Redis `pubsub` | nothing, unless the node falls `pubsub_buffer` messages behind (counted by `RedisBus::dropped`, logged) | what is published until the node has reconnected and subscribed again is lost for it; delivery then resumes | never: its losses are silent |
/// | Redis `streams` | entries trimmed (`stream_max_len`) before the node read them | nothing Redis still holds: the node resumes after the last entry it read; a Redis restart without persistence loses what Redis had not saved | when entries the node had not read were trimmed |
/// | PostgreSQL | rows pruned (retention) before the node read them | nothing the events table still holds: the node catches up by sequence after reconnecting | when rows the node had not read were pruned |
///
/// Delivery is thus exactly once on the in-memory bus, at most once on Redis pubsub, and on
/// the durable backends exactly once for everything the backend still held when the node
/// read it, with a gap notice for the rest.
#[async_trait]
pub trait EventBus: Send + Sync + fmt::Debug + 'static {
    /// Publishes an event on its channel. `Ok` means the backend accepted it: it reaches the
    /// channel's streams as the contract above says.
    ///
    /// # Errors
    /// [`BusError::InvalidChannel`] for a channel [`validate_channel`] refuses;
    /// [`BusError::Backend`] when the backend fails (the event may or may not have been
    /// accepted then).
    async fn publish(&self, event: Arc<Event>) -> Result<(), BusError>;

    /// Opens a stream receiving the events of `channels` (possibly none yet), from the moment
    /// it returns.
    ///
    /// # Errors
    /// [`BusError::InvalidChannel`] when a channel is invalid, [`BusError::Backend`] when the
    /// backend fails (no stream is opened then).
    async fn subscribe(&self, channels: &[String]) -> Result<EventStream, BusError>;

    /// Adds channels to an open stream, from the moment it returns.
    ///
    /// # Errors
    /// [`BusError::InvalidChannel`] when a channel is invalid, [`BusError::UnknownStream`]
    /// when the stream was dropped or never existed, [`BusError::Backend`] when the backend
    /// fails.
    async fn subscribe_to(&self, stream: StreamId, channels: &[String]) -> Result<(), BusError>;

    /// Removes channels from a stream. Idempotent: channels the stream does not hold, and
    /// streams that were dropped or never existed, are fine.
    ///
    /// # Errors
    /// [`BusError::Backend`] when the backend fails to stop listening.
    async fn unsubscribe(&self, stream: StreamId, channels: &[String]) -> Result<(), BusError>;

    /// Checks that the backend is reachable.
    ///
    /// # Errors
    /// [`BusError::Backend`] naming the host and the cause.
    async fn health_check(&self) -> Result<(), BusError>;

    /// The bus's counters.
    fn stats(&self) -> BusStats;
}

/// The default capacity of each stream's queue in [`InMemoryBus`].
pub const DEFAULT_STREAM_CAPACITY: usize = 4096;

type Senders = Arc<[(StreamId, mpsc::Sender<Arc<Event>>)]>;

/// The embedded bus: publish hands the `Arc<Event>` straight to each subscribed stream's
/// queue, with no serialization and no copy.
///
/// Each channel keeps an immutable snapshot of its subscribers, swapped on subscribe and
/// unsubscribe, so `publish` takes a read lock only long enough to clone one `Arc`, and
/// publishing on a channel nobody listens to costs one hash lookup. A full stream queue makes
/// `publish` wait (back-pressure on the publisher), never drops.
pub struct InMemoryBus {
    channels: RwLock<HashMap<String, Senders>>,
    streams: RwLock<HashMap<StreamId, mpsc::Sender<Arc<Event>>>>,
    next_stream: AtomicU64,
    capacity: usize,
    published: AtomicU64,
    delivered: AtomicU64,
}

impl fmt::Debug for InMemoryBus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InMemoryBus")
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl Default for InMemoryBus {
    fn default() -> Self {
        Self::new()
    }
}

impl InMemoryBus {
    /// A bus whose streams queue up to [`DEFAULT_STREAM_CAPACITY`] events.
    #[must_use]
    pub fn new() -> Self {
        Self::with_capacity(DEFAULT_STREAM_CAPACITY)
    }

    /// A bus whose streams queue up to `capacity` events (at least 1).
    #[must_use]
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            channels: RwLock::new(HashMap::new()),
            streams: RwLock::new(HashMap::new()),
            next_stream: AtomicU64::new(1),
            capacity: capacity.max(1),
            published: AtomicU64::new(0),
            delivered: AtomicU64::new(0),
        }
    }

    fn add(&self, stream: StreamId, sender: &mpsc::Sender<Arc<Event>>, channels: &[String]) {
        let mut map = self
            .channels
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for channel in channels {
            let current = map.get(channel).map(|s| s.to_vec()).unwrap_or_default();
            if current.iter().any(|(id, _)| *id == stream) {
                continue;
            }
            let mut next = current;
            next.push((stream, sender.clone()));
            map.insert(channel.clone(), next.into());
        }
    }

    fn remove(&self, stream: StreamId, channels: Option<&[String]>) {
        let mut map = self
            .channels
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let names: Vec<String> = match channels {
            Some(channels) => channels.to_vec(),
            None => map.keys().cloned().collect(),
        };
        for channel in names {
            let Some(current) = map.get(&channel) else {
                continue;
            };
            if !current.iter().any(|(id, _)| *id == stream) {
                continue;
            }
            let next: Vec<_> = current
                .iter()
                .filter(|(id, _)| *id != stream)
                .cloned()
                .collect();
            if next.is_empty() {
                map.remove(&channel);
            } else {
                map.insert(channel, next.into());
            }
        }
    }

    fn sender_of(&self, stream: StreamId) -> Result<mpsc::Sender<Arc<Event>>, BusError> {
        self.streams
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&stream)
            .cloned()
            .ok_or(BusError::UnknownStream(stream))
    }

    fn forget_stream(&self, stream: StreamId) {
        self.streams
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&stream);
        self.remove(stream, None);
    }
}

#[async_trait]
impl EventBus for InMemoryBus {
    async fn publish(&self, event: Arc<Event>) -> Result<(), BusError> {
        validate_channel(event.channel())?;
        self.published.fetch_add(1, Ordering::Relaxed);
        let senders = self
            .channels
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(event.channel())
            .cloned();
        let Some(senders) = senders else {
            return Ok(());
        };
        for (stream, sender) in senders.iter() {
            // Counted before the hand-over: a subscriber that has the event sees it counted
            // (stats read right after a receive are exact); taken back if the stream is gone.
            self.delivered.fetch_add(1, Ordering::Relaxed);
            if sender.send(Arc::clone(&event)).await.is_err() {
                self.delivered.fetch_sub(1, Ordering::Relaxed);
                // The stream was dropped: forget it so later publishes skip it.
                self.forget_stream(*stream);
            }
        }
        Ok(())
    }

    async fn subscribe(&self, channels: &[String]) -> Result<EventStream, BusError> {
        channels.iter().try_for_each(|c| validate_channel(c))?;
        let id = self.next_stream.fetch_add(1, Ordering::Relaxed);
        let (sender, receiver) = mpsc::channel(self.capacity);
        self.streams
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(id, sender.clone());
        self.add(id, &sender, channels);
        Ok(EventStream::new(id, receiver))
    }

    async fn subscribe_to(&self, stream: StreamId, channels: &[String]) -> Result<(), BusError> {
        channels.iter().try_for_each(|c| validate_channel(c))?;
        let sender = self.sender_of(stream)?;
        if sender.is_closed() {
            self.forget_stream(stream);
            return Err(BusError::UnknownStream(stream));
        }
        self.add(stream, &sender, channels);
        Ok(())
    }

    async fn unsubscribe(&self, stream: StreamId, channels: &[String]) -> Result<(), BusError> {
        // Idempotent (the contract's rule 6): an unknown stream holds no channel.
        self.remove(stream, Some(channels));
        Ok(())
    }

    async fn health_check(&self) -> Result<(), BusError> {
        Ok(())
    }

    fn stats(&self) -> BusStats {
        BusStats {
            events_published: self.published.load(Ordering::Relaxed),
            events_delivered: self.delivered.load(Ordering::Relaxed),
            active_channels: self
                .channels
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .len(),
            mode: "memory".to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event(channel: &str, n: u64) -> Arc<Event> {
        Arc::new(Event::new(channel, json!({ "n": n })))
    }

    fn chans(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| (*s).to_owned()).collect()
    }

    #[tokio::test]
    async fn the_same_arc_reaches_every_stream() {
        let bus = InMemoryBus::new();
        let mut one = bus.subscribe(&chans(&["c"])).await.unwrap();
        let mut two = bus.subscribe(&chans(&["c"])).await.unwrap();
        let sent = event("c", 1);
        bus.publish(Arc::clone(&sent)).await.unwrap();
        assert!(Arc::ptr_eq(&one.recv().await.unwrap(), &sent));
        assert!(Arc::ptr_eq(&two.recv().await.unwrap(), &sent));
        assert_eq!(bus.stats().events_delivered, 2);
    }

    #[tokio::test]
    async fn dropped_stream_is_forgotten() {
        let bus = InMemoryBus::new();
        let stream = bus.subscribe(&chans(&["d"])).await.unwrap();
        let id = stream.id();
        drop(stream);
        bus.publish(event("d", 1)).await.unwrap();
        assert_eq!(bus.stats().active_channels, 0);
        assert_eq!(
            bus.subscribe_to(id, &chans(&["d"])).await,
            Err(BusError::UnknownStream(id))
        );
    }

    #[tokio::test]
    async fn publishing_where_nobody_listens_is_counted_and_delivers_nothing() {
        let bus = InMemoryBus::new();
        bus.publish(event("nobody", 1)).await.unwrap();
        let stats = bus.stats();
        assert_eq!((stats.events_published, stats.events_delivered), (1, 0));
        assert_eq!(stats.mode, "memory");
    }

    #[tokio::test]
    async fn invalid_channels_are_refused_with_the_reason() {
        let bus = InMemoryBus::new();
        let err = bus.publish(event("", 1)).await.unwrap_err();
        assert!(err.to_string().contains("it is empty"), "{err}");
        let long = "x".repeat(300);
        let err = bus.subscribe(&[long]).await.unwrap_err();
        assert!(err.to_string().contains("longer than 256 bytes"), "{err}");
        assert!(validate_channel("a\nb").is_err());
    }

    #[tokio::test]
    async fn a_full_stream_makes_publish_wait_not_drop() {
        let bus = Arc::new(InMemoryBus::with_capacity(2));
        let mut stream = bus.subscribe(&chans(&["q"])).await.unwrap();
        let publisher = {
            let bus = Arc::clone(&bus);
            tokio::spawn(async move {
                for n in 0..10 {
                    bus.publish(event("q", n)).await.unwrap();
                }
            })
        };
        for n in 0..10 {
            assert_eq!(stream.recv().await.unwrap().data().value().unwrap()["n"], n);
        }
        publisher.await.unwrap();
    }
}
