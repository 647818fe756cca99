//! PostgreSQL event bus for FraiseQL subscriptions.
//!
//! [`PostgresBus`] implements [`EventBus`](fraiseql_subscriptions::EventBus) over
//! PostgreSQL's LISTEN/NOTIFY, so every server process connected to one database sees every
//! event, with no other infrastructure. Every event is also recorded in an events table with
//! a monotonic sequence: events too large for NOTIFY (about 8000 bytes) travel by reference,
//! and a node whose listening connection drops catches up on what it missed (nothing lost,
//! nothing twice), or reports a gap ([`Event::gap`](fraiseql_subscriptions::Event::gap)) when
//! the rows were already pruned.
//!
//! The SQL shipped with the crate ([`install_sql`], [`install`]) also lets the database
//! publish: `fraiseql_publish(channel, payload jsonb, ...)` from any SQL, and
//! `fraiseql_watch_table('orders', 'orders')` to stream a table's INSERT/UPDATE/DELETE to
//! GraphQL subscribers.
//!
//! ```no_run
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use fraiseql_eventbus_postgres::{PostgresBus, PostgresBusConfig};
//! use fraiseql_subscriptions::EventBus;
//!
//! let config = PostgresBusConfig::from_url("postgres://postgres@127.0.0.1:5432/app")?;
//! let bus: Arc<dyn EventBus> = Arc::new(PostgresBus::connect(config).await?);
//! // Row changes of `orders` become events on channel "orders":
//! //   SELECT fraiseql_watch_table('orders', 'orders', tenant_column => 'tenant_id');
//! # Ok(()) }
//! ```
//!
//! Layers: `fraiseql-subscriptions` defines the seam; this crate is one backend, beside the
//! in-memory bus and Redis; the engine and the servers do not know which one runs.

mod bus;
mod config;
mod connection;
mod error;
mod schema;

pub use bus::PostgresBus;
pub use config::PostgresBusConfig;
pub use error::PostgresBusError;
/// The PostgreSQL client this crate uses, for [`install`] and for applications' own SQL.
pub use tokio_postgres;

pub use schema::{
    install, install_sql, migrate, notify_channel, quote_ident, MAX_NOTIFY_CHANNEL_BYTES,
};

/// The README's examples, compiled and run as doctests so they cannot rot.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
