//! Each connection's bounded outbox: what the engine has for the connection's transport to
//! send, with a stated policy for slow consumers.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use fraiseql_protocol::{CloseCode, GraphQLError, SubscriptionKey};
use tokio::sync::Notify;

/// One message for a connection's transport to carry out through its
/// `fraiseql_protocol::ServerConnection`.
#[derive(Debug, Clone, PartialEq)]
pub enum Outbound {
    /// An event for a subscription: `payload` is the serialized execution result
    /// (`{"data":{...}}`), shared by every subscriber with the same projection. Send it with
    /// `ServerConnection::next(key, &payload)`.
    Next {
        /// The subscription.
        key: SubscriptionKey,
        /// The shared payload.
        payload: Arc<str>,
    },
    /// The server ended the subscription: `ServerConnection::complete(key)`.
    Complete {
        /// The subscription.
        key: SubscriptionKey,
    },
    /// The subscription failed: `ServerConnection::error(key, &errors)`.
    Error {
        /// The subscription.
        key: SubscriptionKey,
        /// What went wrong.
        errors: Vec<GraphQLError>,
    },
    /// Close the connection: `ServerConnection::close(code, &reason)`.
    Close {
        /// The close code.
        code: CloseCode,
        /// The reason.
        reason: String,
    },
}

/// What to do when a connection's outbox is full.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum OverflowPolicy {
    /// Close the connection with 1008 (`CloseCode::SlowConsumer`): the client learns it fell
    /// behind, and nobody else waits for it. The default.
    #[default]
    CloseConnection,
    /// Drop the oldest queued event to make room, and count it: for feeds where only the
    /// latest values matter.
    DropOldest,
}

/// What [`Outbox::push`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum PushOutcome {
    /// Queued.
    Queued,
    /// Queued after dropping the oldest queued event.
    DroppedOldest,
    /// The outbox overflowed: it now holds only a close, and takes nothing more.
    Overflowed,
    /// The outbox was already closed; nothing was queued.
    Closed,
}

/// A connection's bounded queue of [`Outbound`] messages. The engine pushes without ever
/// waiting; the transport awaits [`Outbox::recv_batch`] and writes what it gets in one go.
#[derive(Debug)]
pub struct Outbox {
    queue: Mutex<VecDeque<Outbound>>,
    capacity: usize,
    policy: OverflowPolicy,
    closed: AtomicBool,
    ready: Notify,
}

impl Outbox {
    /// An outbox for up to `capacity` messages (at least 1).
    #[must_use]
    pub fn new(capacity: usize, policy: OverflowPolicy) -> Self {
        Self {
            queue: Mutex::new(VecDeque::new()),
            capacity: capacity.max(1),
            policy,
            closed: AtomicBool::new(false),
            ready: Notify::new(),
        }
    }

    /// Queues a message without waiting. A full outbox applies the [`OverflowPolicy`]; a
    /// `Close` is always queued (it ends the outbox).
    pub fn push(&self, message: Outbound) -> PushOutcome {
        if self.closed.load(Ordering::Acquire) {
            return PushOutcome::Closed;
        }
        let mut queue = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
        if self.closed.load(Ordering::Acquire) {
            return PushOutcome::Closed;
        }
        // A receiver drains everything it finds, so only the push that makes the queue
        // non-empty (or closes it) needs to wake it: one atomic per batch, not per message.
        let was_empty = queue.is_empty();
        let outcome = if matches!(message, Outbound::Close { .. }) {
            self.closed.store(true, Ordering::Release);
            queue.push_back(message);
            PushOutcome::Queued
        } else if queue.len() < self.capacity {
            queue.push_back(message);
            PushOutcome::Queued
        } else {
            match self.policy {
                OverflowPolicy::DropOldest => {
                    let oldest = queue
                        .iter()
                        .position(|m| matches!(m, Outbound::Next { .. }));
                    match oldest {
                        Some(index) => {
                            queue.remove(index);
                            queue.push_back(message);
                            PushOutcome::DroppedOldest
                        }
                        None => self.overflow(&mut queue),
                    }
                }
                OverflowPolicy::CloseConnection => self.overflow(&mut queue),
            }
        };
        drop(queue);
        if was_empty || outcome != PushOutcome::Queued {
            self.ready.notify_one();
        }
        outcome
    }

    fn overflow(&self, queue: &mut VecDeque<Outbound>) -> PushOutcome {
        queue.clear();
        queue.push_back(Outbound::Close {
            code: CloseCode::SlowConsumer,
            reason: format!(
                "Slow consumer: more than {} messages waiting to be sent",
                self.capacity
            ),
        });
        self.closed.store(true, Ordering::Release);
        PushOutcome::Overflowed
    }

    /// Waits until messages are queued, then moves up to `max` of them into `out`. Returns
    /// `false` once the outbox is closed and empty (the transport is done).
    pub async fn recv_batch(&self, out: &mut Vec<Outbound>, max: usize) -> bool {
        loop {
            let notified = self.ready.notified();
            {
                let mut queue = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
                if !queue.is_empty() {
                    let take = queue.len().min(max.max(1));
                    out.extend(queue.drain(..take));
                    return true;
                }
                if self.closed.load(Ordering::Acquire) {
                    return false;
                }
            }
            notified.await;
        }
    }

    /// Moves up to `max` queued messages into `out` without waiting; returns how many.
    pub fn try_recv_batch(&self, out: &mut Vec<Outbound>, max: usize) -> usize {
        let mut queue = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
        let take = queue.len().min(max);
        out.extend(queue.drain(..take));
        take
    }

    /// Closes the outbox without a close message (the connection is gone): later pushes are
    /// refused and a waiting [`Outbox::recv_batch`] returns.
    pub fn shut(&self) {
        self.closed.store(true, Ordering::Release);
        self.ready.notify_one();
    }

    /// Whether the outbox takes no more messages.
    #[must_use]
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// How many messages wait.
    #[must_use]
    pub fn len(&self) -> usize {
        self.queue
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// Whether none wait.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn next(n: u64) -> Outbound {
        Outbound::Next {
            key: key(n),
            payload: Arc::from(format!("{{\"n\":{n}}}")),
        }
    }

    fn key(n: u64) -> SubscriptionKey {
        // Keys come from a ServerConnection; make real ones.
        let now = std::time::Instant::now();
        let mut conn = fraiseql_protocol::ServerConnection::new(
            fraiseql_protocol::Protocol::GraphqlTransportWs,
            fraiseql_protocol::ConnectionConfig::default(),
            now,
        );
        conn.handle_text(r#"{"type":"connection_init"}"#, now);
        conn.accept(None, now).unwrap();
        let mut last = None;
        for i in 0..=n {
            conn.handle_text(
                &format!(r#"{{"id":"{i}","type":"subscribe","payload":{{"query":"q"}}}}"#),
                now,
            );
            for action in conn.drain_actions() {
                if let fraiseql_protocol::Action::Start { key, .. } = action {
                    last = Some(key);
                }
            }
        }
        last.unwrap()
    }

    #[tokio::test]
    async fn messages_come_out_in_order_and_in_batches() {
        let outbox = Outbox::new(10, OverflowPolicy::CloseConnection);
        for n in 0..3 {
            assert_eq!(outbox.push(next(n)), PushOutcome::Queued);
        }
        let mut batch = Vec::new();
        assert!(outbox.recv_batch(&mut batch, 2).await);
        assert_eq!(batch, vec![next(0), next(1)]);
        batch.clear();
        assert!(outbox.recv_batch(&mut batch, 10).await);
        assert_eq!(batch, vec![next(2)]);
    }

    #[tokio::test]
    async fn overflow_closes_the_connection_with_1008_by_default() {
        let outbox = Outbox::new(2, OverflowPolicy::CloseConnection);
        let _ = outbox.push(next(0));
        let _ = outbox.push(next(1));
        assert_eq!(outbox.push(next(2)), PushOutcome::Overflowed);
        assert_eq!(outbox.push(next(3)), PushOutcome::Closed);
        let mut batch = Vec::new();
        assert!(outbox.recv_batch(&mut batch, 10).await);
        let [Outbound::Close { code, reason }] = batch.as_slice() else {
            panic!("expected only a close, got {batch:?}")
        };
        assert_eq!(code.as_u16(), 1008);
        assert!(reason.contains("Slow consumer"), "{reason}");
        batch.clear();
        assert!(
            !outbox.recv_batch(&mut batch, 10).await,
            "closed and drained"
        );
    }

    #[tokio::test]
    async fn drop_oldest_keeps_the_newest_events() {
        let outbox = Outbox::new(2, OverflowPolicy::DropOldest);
        let _ = outbox.push(next(0));
        let _ = outbox.push(next(1));
        assert_eq!(outbox.push(next(2)), PushOutcome::DroppedOldest);
        let mut batch = Vec::new();
        assert_eq!(outbox.try_recv_batch(&mut batch, 10), 2);
        assert_eq!(batch, vec![next(1), next(2)]);
    }

    #[tokio::test]
    async fn a_waiting_receiver_wakes_on_push_and_on_shut() {
        let outbox = Arc::new(Outbox::new(4, OverflowPolicy::CloseConnection));
        let waiter = {
            let outbox = Arc::clone(&outbox);
            tokio::spawn(async move {
                let mut batch = Vec::new();
                let first = outbox.recv_batch(&mut batch, 4).await;
                let second = outbox.recv_batch(&mut batch, 4).await;
                (first, second, batch.len())
            })
        };
        tokio::task::yield_now().await;
        let _ = outbox.push(next(0));
        tokio::task::yield_now().await;
        outbox.shut();
        assert_eq!(waiter.await.unwrap(), (true, false, 1));
    }
}
