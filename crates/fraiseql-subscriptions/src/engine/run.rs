//! The engine's loop ([`Engine::run`]): events from the bus dispatched in order, resolver
//! calls of consecutive events overlapped, streams that ended unregistered, and the
//! subscribe-rate state trimmed now and then.

use futures_util::StreamExt as _;

use super::Engine;
use crate::stream::StreamEnd;

/// How many events [`Engine::run`] may have resolver calls in flight for at once.
const MAX_EVENTS_RESOLVING: usize = 64;

/// How often [`Engine::run`] trims the subscribe-rate limiter's per-user state.
const HOUSEKEEPING_INTERVAL: std::time::Duration = std::time::Duration::from_secs(60);

impl Engine {
    /// Receives events from the bus and dispatches them, in order, until the bus closes.
    /// Run it once, in its own task. Once a minute it also forgets the subscribe-rate
    /// state of users whose bucket has refilled, so that state stays bounded.
    pub async fn run(&self) {
        let Some(mut stream) = self.stream.lock().await.take() else {
            return;
        };
        let Some(mut stream_ended) = self.stream_ended_rx.lock().await.take() else {
            return;
        };
        let mut housekeeping = tokio::time::interval(HOUSEKEEPING_INTERVAL);
        housekeeping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Resolver calls of consecutive events overlap (a Python resolver's round trip to
        // its event loop would otherwise bound the event rate); their results are delivered
        // strictly in event order. Subscriptions without a resolver are served as each
        // event arrives.
        let mut resolving = futures_util::stream::FuturesOrdered::new();
        loop {
            let room = resolving.len() < MAX_EVENTS_RESOLVING;
            tokio::select! {
                biased;
                Some((event, pending, results)) = resolving.next(), if !resolving.is_empty() => {
                    self.deliver_resolved(&event, pending, results).await;
                    self.dispatch_waiters.dispatched(event.id());
                }
                event = stream.recv(), if room => match event {
                    Some(event) => {
                        if event.is_gap() {
                            // A gap ends its channel's subscriptions: deliver what was
                            // resolved before it first.
                            while let Some((earlier, pending, results)) = resolving.next().await {
                                self.deliver_resolved(&earlier, pending, results).await;
                                self.dispatch_waiters.dispatched(earlier.id());
                            }
                        }
                        if let Some(pending) = self.dispatch_direct(&event).await {
                            resolving.push_back(async move {
                                let results = self.resolve_groups(&event, &pending.groups).await;
                                (event, pending, results)
                            });
                        } else {
                            self.dispatch_waiters.dispatched(event.id());
                        }
                    }
                    None => {
                        while let Some((event, pending, results)) = resolving.next().await {
                            self.deliver_resolved(&event, pending, results).await;
                        }
                        return;
                    }
                },
                Some(end) = stream_ended.recv() => match end {
                    StreamEnd::Unsubscribe(connection, key) => self.unsubscribe(connection, key).await,
                    StreamEnd::Disconnect(connection) => self.disconnect(connection).await,
                },
                _ = housekeeping.tick() => self.subscribe_limiter.retain_recent(),
            }
        }
    }
}
