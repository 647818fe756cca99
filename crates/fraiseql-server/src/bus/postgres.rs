//! `postgres://` / `postgresql://` buses (`fraiseql-eventbus-postgres`).

use std::sync::Arc;

use fraiseql_subscriptions::EventBus;

use super::BusOptions;

/// Connects the PostgreSQL bus.
pub(super) async fn connect(url: &str, _options: &BusOptions) -> Result<Arc<dyn EventBus>, String> {
    Err(format!(
        "cannot use {url}: the PostgreSQL bus is not available in this build yet"
    ))
}
