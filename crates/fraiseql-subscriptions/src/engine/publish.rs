//! Publishing through the engine: [`Engine::publish`] hands an event to the bus,
//! [`Engine::publish_dispatched`] also waits until this engine has dispatched it.

use std::sync::Arc;

use super::Engine;
use crate::bus::BusError;
use crate::event::Event;

impl Engine {
    /// Publishes an event on the engine's bus.
    ///
    /// # Errors
    /// [`BusError`] from the bus.
    pub async fn publish(&self, event: Event) -> Result<(), BusError> {
        self.metrics.events_published(1);
        self.bus.publish(Arc::new(event)).await
    }

    /// Publishes an event and returns once [`Engine::run`] has dispatched it to this
    /// engine's own subscriptions (so the outboxes of local subscribers already hold their
    /// frames), or after `wait` at most. Returns whether the dispatch was seen: `false`
    /// when `wait` ran out first (a bus that lost the event, such as Redis pub/sub during a
    /// reconnect). Without local subscriptions on the event's channel it returns as soon as
    /// the bus took the event.
    ///
    /// # Errors
    /// [`BusError`] from the bus.
    pub async fn publish_dispatched(
        &self,
        event: Event,
        wait: std::time::Duration,
    ) -> Result<bool, BusError> {
        if self.read().registry.count_for_channel(event.channel()) == 0 {
            self.publish(event).await?;
            return Ok(true);
        }
        let id = event.id().to_owned();
        let dispatched = self.dispatch_waiters.register(&id);
        if let Err(err) = self.publish(event).await {
            self.dispatch_waiters.forget(&id);
            return Err(err);
        }
        if let Ok(Ok(())) = tokio::time::timeout(wait, dispatched).await {
            Ok(true)
        } else {
            self.dispatch_waiters.forget(&id);
            Ok(false)
        }
    }
}
