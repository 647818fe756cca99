//! `redis://` / `rediss://` buses (`fraiseql-eventbus-redis`).

use std::sync::Arc;

use fraiseql_subscriptions::EventBus;

use super::BusOptions;

/// Connects the Redis bus.
pub(super) async fn connect(url: &str, _options: &BusOptions) -> Result<Arc<dyn EventBus>, String> {
    Err(format!(
        "cannot use {url}: the Redis bus is not available in this build yet"
    ))
}
