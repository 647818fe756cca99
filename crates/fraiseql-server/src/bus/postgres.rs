//! `postgres://` / `postgresql://` buses (`fraiseql-eventbus-postgres`).

use std::sync::Arc;

use fraiseql_eventbus_postgres::{PostgresBus, PostgresBusConfig};
use fraiseql_subscriptions::EventBus;

use super::options::BusOptions;

/// Connects the PostgreSQL bus: the URL's server (and its `fraiseql_schema` /
/// `fraiseql_events_table` parameters), `--bus-prefix` as the NOTIFY channel prefix; installs
/// the events table and the `fraiseql_*` functions if they are missing.
pub(super) async fn connect(url: &str, options: &BusOptions) -> Result<Arc<dyn EventBus>, String> {
    if let Some(mode) = &options.mode {
        return Err(format!(
            "--bus-mode {mode:?} applies to Redis only; the PostgreSQL bus has one mode"
        ));
    }
    let mut config = PostgresBusConfig::from_url(url).map_err(|e| e.to_string())?;
    if let Some(prefix) = &options.prefix {
        config = config.with_prefix(prefix.clone());
    }
    let bus = PostgresBus::connect(config)
        .await
        .map_err(|e| e.to_string())?;
    Ok(Arc::new(bus))
}
