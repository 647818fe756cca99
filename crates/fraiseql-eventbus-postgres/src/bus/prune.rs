//! Retention: each process prunes the events table by age and count every
//! `prune_interval` (and on demand, [`PostgresBus::prune`](super::PostgresBus::prune)).

use std::sync::Arc;

use fraiseql_subscriptions::BusError;

use super::shared::Shared;

/// Prunes every `prune_interval` until the bus is dropped.
pub(super) async fn prune_loop(shared: Arc<Shared>) {
    let mut every = tokio::time::interval(shared.config.prune_interval);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    every.tick().await;
    loop {
        tokio::select! {
            () = shared.shutdown.cancelled() => return,
            _ = every.tick() => {
                if let Err(err) = prune_once(&shared).await {
                    tracing::warn!(error = %err, "PostgreSQL bus: pruning failed");
                }
            }
        }
    }
}

/// Prunes once with the configured retention; how many rows were deleted.
pub(super) async fn prune_once(shared: &Shared) -> Result<u64, BusError> {
    let publisher = shared.publisher().await?;
    let age = shared.config.retention_max_age.map(|age| age.as_secs_f64());
    let count = shared
        .config
        .retention_max_count
        .map(|count| i64::try_from(count).unwrap_or(i64::MAX));
    let row = publisher
        .client
        .query_one(&shared.sql.prune, &[&age, &count])
        .await
        .map_err(|err| shared.publisher_failed(&publisher, "pruning", &err))?;
    let deleted: i64 = row.try_get(0).unwrap_or(0);
    Ok(u64::try_from(deleted).unwrap_or(0))
}
