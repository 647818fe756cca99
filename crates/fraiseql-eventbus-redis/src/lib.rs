//! Redis event bus for FraiseQL subscriptions: many server processes, one stream of events.
//!
//! [`RedisBus`] implements [`fraiseql_subscriptions::EventBus`] over one Redis server, a Redis
//! Cluster or a primary behind Sentinel ([`RedisTopology`], from the URL's scheme) with the
//! [fred](https://docs.rs/fred) client, so an event published on any process reaches the
//! subscribers of every process. Two modes ([`RedisMode`]):
//!
//! - **pubsub**: `PUBLISH` / `SUBSCRIBE`. Lowest latency, at-most-once. Each node subscribes
//!   only to the channels it has local subscribers for (reference-counted), and again after
//!   a reconnect.
//! - **streams**: one Redis Stream per channel (`XADD ... MAXLEN ~ cap`), read by each node
//!   from the last entry id it saw: after a dropped connection or a Redis restart it resumes
//!   exactly where it stopped: no loss, no duplicates, in order. Entries trimmed before a node
//!   read them are reported with a gap notice ([`fraiseql_subscriptions::Event::gap`]); the
//!   engine then ends that channel's subscriptions with `EVENTS_LOST`.
//!
//! ```no_run
//! use std::sync::Arc;
//! use fraiseql_eventbus_redis::{RedisBus, RedisBusConfig, RedisMode};
//! use fraiseql_subscriptions::{Event, EventBus};
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let bus = RedisBus::connect(
//!     RedisBusConfig::from_url("redis://127.0.0.1:6379")?
//!         .with_mode(RedisMode::Streams)
//!         .with_prefix("myapp:"),
//! )
//! .await?;
//! let mut stream = bus.subscribe(&["room:lobby".to_owned()]).await?;
//! bus.publish(Arc::new(Event::new("room:lobby", serde_json::json!({"text": "hi"})))).await?;
//! assert_eq!(stream.recv().await.unwrap().channel(), "room:lobby");
//! # Ok(()) }
//! ```

mod bus;
mod cluster;
mod config;
mod error;
mod pubsub;
mod shard_reader;
mod shared;
mod stream_log;
mod stream_reader;
mod supervisor;
mod topology_watch;

pub use bus::RedisBus;
pub use config::{RedisBusConfig, RedisMode, RedisTopology, DEFAULT_PREFIX};
pub use error::RedisBusError;

/// The README's examples, compiled and run as doctests so they cannot rot.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
