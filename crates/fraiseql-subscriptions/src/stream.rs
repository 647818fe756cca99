//! Stream fields: subscriptions whose values come from a source of their own (a Python
//! async generator, a Rust task) rather than from bus events — a countdown, a progress
//! report, a per-client feed.
//!
//! A field built with [`FieldConfig::stream`](crate::FieldConfig::stream) calls its
//! [`StreamSource`] once per subscription, after the same checks as any subscribe
//! (document, security, requirement, caps). The source gets a [`StreamSink`]: every value it
//! emits goes through the subscription's filter, projection plan, serialization and
//! outbox exactly like an event's; [`StreamSink::complete`] ends the subscription with
//! `complete`, [`StreamSink::fail`] with an `error`. When the client completes the
//! subscription or disconnects, [`StreamSink::stopped`] resolves and the source should
//! stop; emitting afterwards reports [`StreamEnded`].

use std::fmt;
use std::sync::{Arc, Weak};

use fraiseql_protocol::{GraphQLError, SubscriptionKey};
use serde_json::{Map, Value};
use tokio::sync::{mpsc, watch};

use crate::metrics::{DropReason, Metrics};
use crate::outbox::{Outbound, PushOutcome};
use crate::registry::ConnectionId;
use crate::security::Principal;
use crate::subscription::ActiveSubscription;

/// Starts one stream per subscription of a stream field.
pub trait StreamSource: Send + Sync + fmt::Debug {
    /// A subscription started: produce its values into `start.sink`. Called from the
    /// subscribe path, so it must not block: spawn the work (or schedule it on your loop).
    fn start(&self, start: StreamStart);
}

/// What a [`StreamSource`] learns when a subscription starts.
#[derive(Debug)]
#[non_exhaustive]
pub struct StreamStart {
    /// The root field.
    pub field: String,
    /// The subscription's arguments (variables applied).
    pub arguments: Map<String, Value>,
    /// Who subscribed.
    pub principal: Principal,
    /// Where its values go.
    pub sink: StreamSink,
}

/// The subscription ended (completed by the client, disconnected, or closed as a slow
/// consumer): stop producing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the subscription has ended")]
pub struct StreamEnded;

/// What the engine must do after a stream ends itself (handled by [`crate::Engine::run`]).
#[derive(Debug)]
pub(crate) enum StreamEnd {
    /// Unregister the subscription (its `complete` / `error` is already queued).
    Unsubscribe(ConnectionId, SubscriptionKey),
    /// The connection's outbox overflowed: disconnect it (its 1008 close is queued).
    Disconnect(ConnectionId),
}

/// One stream subscription's way into the engine.
#[derive(Debug, Clone)]
pub struct StreamSink {
    sub: Weak<ActiveSubscription>,
    ended: mpsc::UnboundedSender<StreamEnd>,
    stopped: watch::Receiver<()>,
    metrics: Arc<Metrics>,
}

impl StreamSink {
    pub(crate) fn new(
        sub: Weak<ActiveSubscription>,
        ended: mpsc::UnboundedSender<StreamEnd>,
        stopped: watch::Receiver<()>,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            sub,
            ended,
            stopped,
            metrics,
        }
    }

    /// Delivers `value` as the field's next value: filtered, projected through the
    /// subscriber's selection set, serialized and queued on its connection.
    ///
    /// # Errors
    /// [`StreamEnded`] once the subscription is gone (stop producing).
    pub fn emit(&self, value: &Value) -> Result<(), StreamEnded> {
        let sub = self.sub.upgrade().ok_or(StreamEnded)?;
        if !sub.filter.matches(value) {
            self.metrics.dropped(DropReason::Filter, 1);
            return Ok(());
        }
        match sub.queue_next(sub.payload(value), &self.metrics) {
            PushOutcome::Queued | PushOutcome::DroppedOldest => {
                self.metrics.events_delivered(1);
                Ok(())
            }
            PushOutcome::Overflowed => {
                let _ = self.ended.send(StreamEnd::Disconnect(sub.connection));
                Err(StreamEnded)
            }
            PushOutcome::Closed => Err(StreamEnded),
        }
    }

    /// Ends the subscription with `complete` (the stream is over).
    pub fn complete(&self) {
        self.end(|key| Outbound::Complete { key });
    }

    /// Ends the subscription with an `error` carrying `message` (code `RESOLVER_ERROR`).
    pub fn fail(&self, message: &str) {
        self.metrics.resolver_error();
        self.end(|key| Outbound::Error {
            key,
            errors: vec![GraphQLError::new(message).with_code("RESOLVER_ERROR")],
        });
    }

    fn end(&self, message: impl FnOnce(SubscriptionKey) -> Outbound) {
        let Some(sub) = self.sub.upgrade() else {
            return;
        };
        let _ = sub.outbox.push(message(sub.key));
        let _ = self
            .ended
            .send(StreamEnd::Unsubscribe(sub.connection, sub.key));
    }

    /// Whether the subscription is still active.
    #[must_use]
    pub fn is_active(&self) -> bool {
        self.sub.strong_count() > 0
    }

    /// Resolves once the subscription has ended, however it ended.
    pub async fn stopped(&self) {
        let mut stopped = self.stopped.clone();
        // The sender lives in the subscription: dropping it (unsubscribe, disconnect)
        // makes `changed` fail, which is the signal.
        while stopped.changed().await.is_ok() {}
    }
}
