//! Waiting until an event published by this process has been dispatched to this process's
//! own subscribers: [`Engine::publish_dispatched`](crate::Engine::publish_dispatched).
//!
//! Publishing only hands an event to the bus; the engine's dispatch loop takes it from
//! there, on another task. A caller that publishes and then reads a local subscriber's
//! outbox (the direct API of the original plan: `publish_event` then `next_event`) needs
//! to know the loop has passed that event. Waiters are keyed by event id; the loop checks
//! one atomic counter per event and touches the map only while someone waits, so the
//! dispatch path costs nothing when nobody does.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};

use tokio::sync::oneshot;

/// The callers waiting for events to be dispatched, by event id.
#[derive(Debug, Default)]
pub(crate) struct DispatchWaiters {
    /// How many waiters are registered: the dispatch loop's only cost when it is zero.
    waiting: AtomicUsize,
    by_event: Mutex<HashMap<String, Vec<oneshot::Sender<()>>>>,
}

impl DispatchWaiters {
    /// Registers a waiter for the event `id`; the receiver resolves once it is dispatched.
    pub(crate) fn register(&self, id: &str) -> oneshot::Receiver<()> {
        let (tx, rx) = oneshot::channel();
        let mut map = self.by_event.lock().unwrap_or_else(PoisonError::into_inner);
        map.entry(id.to_owned()).or_default().push(tx);
        self.waiting.fetch_add(1, Ordering::AcqRel);
        rx
    }

    /// Forgets the waiters of `id` (their wait ended another way: a publish error or a
    /// timeout).
    pub(crate) fn forget(&self, id: &str) {
        let mut map = self.by_event.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(senders) = map.remove(id) {
            self.waiting.fetch_sub(senders.len(), Ordering::AcqRel);
        }
    }

    /// Wakes the waiters of the event `id`: the dispatch loop has delivered it to every
    /// local subscription it reaches.
    pub(crate) fn dispatched(&self, id: &str) {
        if self.waiting.load(Ordering::Acquire) == 0 {
            return;
        }
        let senders = self
            .by_event
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(id);
        if let Some(senders) = senders {
            self.waiting.fetch_sub(senders.len(), Ordering::AcqRel);
            for tx in senders {
                let _ = tx.send(());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_waiter_wakes_when_its_event_is_dispatched_and_not_before() {
        let waiters = DispatchWaiters::default();
        let mut rx = waiters.register("e1");
        waiters.dispatched("e2");
        assert!(rx.try_recv().is_err(), "another event must not wake it");
        waiters.dispatched("e1");
        assert!(rx.await.is_ok());
        assert_eq!(waiters.waiting.load(Ordering::Acquire), 0);
    }

    #[test]
    fn forgetting_clears_the_count() {
        let waiters = DispatchWaiters::default();
        let _a = waiters.register("e1");
        let _b = waiters.register("e1");
        assert_eq!(waiters.waiting.load(Ordering::Acquire), 2);
        waiters.forget("e1");
        assert_eq!(waiters.waiting.load(Ordering::Acquire), 0);
        waiters.dispatched("e1");
    }
}
