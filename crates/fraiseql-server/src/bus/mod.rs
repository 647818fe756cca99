//! Choosing the event bus from a URL, for the binary and the demo: `memory` (the default,
//! one process), `redis://` / `rediss://` (many processes through Redis; also
//! `redis-cluster://` for a Redis Cluster and `redis-sentinel://...?service=` for a primary
//! behind Sentinel, and their TLS `rediss-*` forms) or
//! `postgres://` / `postgresql://` (many processes through PostgreSQL).

use std::sync::Arc;

use fraiseql_subscriptions::{EventBus, InMemoryBus};

mod options;
mod postgres;
mod redis;

pub use options::BusOptions;

/// Opens the bus `url` names.
///
/// # Errors
/// A message naming the problem (unknown scheme, bad URL, unreachable server).
pub async fn bus_from_url(url: &str, options: &BusOptions) -> Result<Arc<dyn EventBus>, String> {
    let scheme = url.split_once("://").map_or(url, |(scheme, _)| scheme);
    match scheme {
        "memory" => Ok(Arc::new(InMemoryBus::new())),
        "redis" | "rediss" | "redis-cluster" | "rediss-cluster" | "redis-sentinel"
        | "rediss-sentinel" => redis::connect(url, options).await,
        "postgres" | "postgresql" => postgres::connect(url, options).await,
        other => Err(format!(
            "unknown bus {other:?}: use memory, redis://host:6379, \
             redis-cluster://host:7000,host:7001, \
             redis-sentinel://host:26379?service=mymaster or postgres://user@host/db"
        )),
    }
}
