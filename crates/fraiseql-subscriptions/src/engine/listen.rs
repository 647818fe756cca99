//! Which channels the bus feeds the engine: exactly those with subscriptions, kept in step
//! with the registry however subscribes and unsubscribes interleave.

use crate::bus::BusError;

use super::Engine;

impl Engine {
    /// Makes the bus listen on exactly those of `channels` that have subscriptions now.
    ///
    /// Registry changes happen under the state lock but bus calls are awaited after it is
    /// released, so two tasks could otherwise reorder them (subscribe, unsubscribe, then a
    /// late "unsubscribe" after a new subscribe) and leave a channel with subscribers that
    /// the bus no longer feeds. Here every change is applied under one bus lock, from the
    /// registry's state read inside it, so the last call always leaves the bus matching the
    /// registry. A channel that is already in the wanted state costs no bus call.
    pub(super) async fn sync_bus_channels(&self, channels: &[String]) -> Result<(), BusError> {
        let mut listening = self.bus_channels.lock().await;
        let (wanted, unwanted): (Vec<String>, Vec<String>) = {
            let state = self.read();
            channels
                .iter()
                .filter(|c| (state.registry.count_for_channel(c) > 0) != listening.contains(*c))
                .cloned()
                .partition(|c| state.registry.count_for_channel(c) > 0)
        };
        if !unwanted.is_empty() {
            for channel in &unwanted {
                listening.remove(channel);
            }
            self.bus.unsubscribe(self.stream_id, &unwanted).await?;
        }
        if !wanted.is_empty() {
            self.bus.subscribe_to(self.stream_id, &wanted).await?;
            listening.extend(wanted);
        }
        Ok(())
    }
}
