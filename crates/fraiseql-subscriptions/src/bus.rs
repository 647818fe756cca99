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

/// Events for the channels a stream subscribed to, in publish order per channel.
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
/// Ordering: events published on one channel by one publisher reach each stream in publish
/// order. Delivery is at-most-once unless a backend says otherwise.
#[async_trait]
pub trait EventBus: Send + Sync + fmt::Debug + 'static {
    /// Publishes an event on its channel.
    ///
    /// # Errors
    /// [`BusError`] when the channel is invalid or the backend fails.
    async fn publish(&self, event: Arc<Event>) -> Result<(), BusError>;

    /// Opens a stream receiving the events of `channels` (possibly none yet).
    ///
    /// # Errors
    /// [`BusError`] when a channel is invalid or the backend fails.
    async fn subscribe(&self, channels: &[String]) -> Result<EventStream, BusError>;

    /// Adds channels to an open stream.
    ///
    /// # Errors
    /// [`BusError`] when a channel is invalid, the stream unknown, or the backend fails.
    async fn subscribe_to(&self, stream: StreamId, channels: &[String]) -> Result<(), BusError>;

    /// Removes channels from an open stream; unknown channels are ignored.
    ///
    /// # Errors
    /// [`BusError`] when the stream is unknown or the backend fails.
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
            if sender.send(Arc::clone(&event)).await.is_ok() {
                self.delivered.fetch_add(1, Ordering::Relaxed);
            } else {
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
        self.sender_of(stream)?;
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
    async fn subscribed_stream_receives_events_of_its_channels_in_order() {
        let bus = InMemoryBus::new();
        let mut stream = bus.subscribe(&chans(&["a"])).await.unwrap();
        for n in 0..5 {
            bus.publish(event("a", n)).await.unwrap();
        }
        bus.publish(event("b", 99)).await.unwrap();
        for n in 0..5 {
            let got = stream.recv().await.unwrap();
            assert_eq!(got.data().value().unwrap()["n"], n);
        }
        let mut rest = Vec::new();
        assert_eq!(
            stream.try_recv_many(&mut rest, 10),
            0,
            "nothing from channel b"
        );
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
    async fn unsubscribe_stops_traffic_and_subscribe_to_adds_channels() {
        let bus = InMemoryBus::new();
        let mut stream = bus.subscribe(&[]).await.unwrap();
        bus.subscribe_to(stream.id(), &chans(&["x", "y"]))
            .await
            .unwrap();
        bus.unsubscribe(stream.id(), &chans(&["x"])).await.unwrap();
        bus.publish(event("x", 1)).await.unwrap();
        bus.publish(event("y", 2)).await.unwrap();
        assert_eq!(stream.recv().await.unwrap().channel(), "y");
        assert_eq!(bus.stats().active_channels, 1);
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
