//! One active subscription as the delivery paths see it (bus dispatch in the engine, a
//! stream field's sink): where its frames go, what it may see, how its values are shaped,
//! and the one way a `next` is queued for it ([`ActiveSubscription::queue_next`]).
//!
//! A leaf: the engine builds these and the stream sinks hold them weakly, and both import
//! this module rather than each other.

use std::sync::Arc;

use fraiseql_protocol::SubscriptionKey;
use serde_json::{Map, Value};
use tokio::sync::watch;

use crate::document::ProjectionPlan;
use crate::filter::CompiledFilter;
use crate::limits::DeliveryLimiter;
use crate::metrics::{DropReason, Metrics};
use crate::outbox::{Outbound, Outbox, PushOutcome};
use crate::registry::ConnectionId;
use crate::resolver::Resolver;
use crate::security::DeliveryGuard;

/// A subscription the registry holds: its connection, its key, and what every delivery to
/// it needs.
#[derive(Debug)]
pub(crate) struct ActiveSubscription {
    pub(crate) connection: ConnectionId,
    pub(crate) key: SubscriptionKey,
    pub(crate) outbox: Arc<Outbox>,
    /// Shared by every subscription of the connection.
    pub(crate) guard: Arc<DeliveryGuard>,
    pub(crate) filter: CompiledFilter,
    pub(crate) plan: Arc<ProjectionPlan>,
    pub(crate) response_key: Box<str>,
    /// Only for fields with a resolver: the resolver, what it is called with, and the group
    /// (field and arguments) whose subscriptions share one call per event. Identity
    /// subscriptions keep none of it, which keeps an idle subscription small.
    pub(crate) resolution: Option<Box<Resolution>>,
    /// The delivery rate limit, when one is configured.
    pub(crate) limiter: Option<DeliveryLimiter>,
    /// Stream fields only: dropped with the subscription, which tells its source to stop.
    pub(crate) _stream_stop: Option<watch::Sender<()>>,
}

/// How a subscription of a field with a resolver is resolved.
#[derive(Debug)]
pub(crate) struct Resolution {
    /// The field's resolver.
    pub(crate) resolver: Arc<dyn Resolver>,
    /// The root field.
    pub(crate) field: String,
    /// The subscription's arguments.
    pub(crate) arguments: Map<String, Value>,
    /// The field and arguments as one key: subscriptions with the same key share a call.
    pub(crate) group: Arc<str>,
}

impl ActiveSubscription {
    /// The `next` payload for `value`: projected through this subscription's selection set
    /// and serialized (`{"data":{"<response key>":...}}`).
    pub(crate) fn payload(&self, value: &Value) -> Arc<str> {
        let mut bytes = Vec::with_capacity(128);
        self.plan
            .write_payload(&self.response_key, value, &mut bytes);
        Arc::from(String::from_utf8(bytes).unwrap_or_default())
    }

    /// Queues a `next` carrying `payload` on the connection's outbox, and counts what a full
    /// outbox cost (the oldest event dropped, or the overflow that closes the connection).
    /// The caller counts the delivery and acts on an overflow (disconnect the connection).
    pub(crate) fn queue_next(&self, payload: Arc<str>, metrics: &Metrics) -> PushOutcome {
        let outcome = self.outbox.push(Outbound::Next {
            key: self.key,
            payload,
        });
        match outcome {
            PushOutcome::Queued | PushOutcome::Closed => {}
            PushOutcome::DroppedOldest => metrics.dropped(DropReason::OutboxFull, 1),
            PushOutcome::Overflowed => {
                metrics.outbox_overflow();
                metrics.dropped(DropReason::OutboxFull, 1);
            }
        }
        outcome
    }
}
