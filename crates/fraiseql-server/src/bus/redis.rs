//! `redis://` / `rediss://` buses (`fraiseql-eventbus-redis`), and the cluster
//! (`redis-cluster://`) and Sentinel (`redis-sentinel://`) forms.

use std::sync::Arc;

use fraiseql_eventbus_redis::{RedisBus, RedisBusConfig, RedisMode};
use fraiseql_subscriptions::EventBus;

use super::options::BusOptions;

/// Connects the Redis bus: the URL's server, `--bus-mode` (`pubsub`, the default, or
/// `streams`) and `--bus-prefix` as the key prefix.
pub(super) async fn connect(url: &str, options: &BusOptions) -> Result<Arc<dyn EventBus>, String> {
    let mut config = RedisBusConfig::from_url(url).map_err(|e| e.to_string())?;
    if let Some(mode) = &options.mode {
        let mode: RedisMode = mode
            .parse()
            .map_err(|_| format!("--bus-mode {mode:?}: use \"pubsub\" or \"streams\""))?;
        config = config.with_mode(mode);
    }
    if let Some(prefix) = &options.prefix {
        config = config.with_prefix(prefix.clone());
    }
    let bus = RedisBus::connect(config).await.map_err(|e| e.to_string())?;
    Ok(Arc::new(bus))
}
