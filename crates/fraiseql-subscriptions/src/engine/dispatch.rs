//! Delivering one event ([`Engine::dispatch`]): channel index → tenant and audience →
//! filter → delivery rate → resolve (once per group of subscriptions sharing a field and
//! its arguments) → project → serialize once per distinct projection → each connection's
//! outbox.

use std::collections::HashMap;
use std::sync::Arc;

use fraiseql_protocol::GraphQLError;
use serde_json::Value;

use super::payload_cache::PayloadCache;
use super::Engine;
use crate::event::Event;
use crate::metrics::{DropReason, RateLimitKind};
use crate::outbox::{Outbound, PushOutcome};
use crate::registry::ConnectionId;
use crate::resolver::{Resolved, ResolverError};
use crate::subscription::ActiveSubscription;

/// The resolver groups of one event, between [`Engine::dispatch_direct`] and
/// [`Engine::deliver_resolved`].
#[derive(Debug)]
pub(super) struct PendingGroups {
    pub(super) groups: Vec<Vec<Arc<ActiveSubscription>>>,
}

impl Engine {
    /// Delivers one event to every subscription on its channel that may see it and wants it.
    ///
    /// Subscriptions without a resolver are served entirely under the registry's read lock,
    /// with no per-subscriber allocation or reference count; those with a resolver are
    /// grouped by field and arguments and resolved once per group after the lock is released.
    pub async fn dispatch(&self, event: &Arc<Event>) {
        if let Some(pending) = self.dispatch_direct(event).await {
            let results = self.resolve_groups(event, &pending.groups).await;
            self.deliver_resolved(event, pending, results).await;
        }
    }

    /// The first half of [`Engine::dispatch`]: every subscription without a resolver is
    /// served now; those with one are returned grouped (field and arguments) for
    /// [`Engine::resolve_groups`] and [`Engine::deliver_resolved`], or `None` when there are
    /// none. [`Engine::run`] overlaps the resolver calls of consecutive events this way
    /// while delivering each group's results in event order.
    pub(super) async fn dispatch_direct(&self, event: &Arc<Event>) -> Option<PendingGroups> {
        // One serialization per distinct (projection plan, resolved value). A plan comes from
        // one document, so it also fixes the response key. Without a resolver every value is
        // the event data itself, so they all share one value slot.
        let mut payloads = PayloadCache::default();
        // The guard can only refuse when the event names a tenant or an audience, or the
        // policy is multi-tenant; otherwise skip reading it for every subscriber.
        let guarded = self.config.security.multi_tenant
            || event.tenant_id().is_some()
            || event.audience().is_some();
        // Resolver groups (field and arguments) in first-seen order, and where each sits.
        let mut groups: Vec<Vec<Arc<ActiveSubscription>>> = Vec::new();
        // Connections whose outbox overflowed: closed (1008) and unregistered below.
        let mut overflowed: Vec<ConnectionId> = Vec::new();
        // Subscriptions a final event reached: they end (complete) below.
        let mut finished: Vec<Arc<ActiveSubscription>> = Vec::new();
        if event.is_gap() {
            self.end_channel_after_gap(event).await;
            return None;
        }
        {
            let state = self.read();
            // Group keys borrowed from the registry while its lock is held; the group of the
            // previous subscriber is checked first (subscribers of one group mostly come
            // together), so most subscribers cost a string comparison, no hash.
            let mut group_index: HashMap<&str, usize> = HashMap::new();
            let mut last_group: Option<(&str, usize)> = None;
            let mut candidates = state.registry.on_channel(event.channel()).peekable();
            // No subscriber on the channel: nothing to do.
            candidates.peek()?;
            let Ok(data) = event.data().value() else {
                let count = state.registry.count_for_channel(event.channel());
                self.metrics.dropped(DropReason::InvalidData, count as u64);
                return None;
            };
            for (_, sub) in candidates {
                if !self.admits(sub, event, data, guarded) {
                    continue;
                }
                let Some(resolution) = &sub.resolution else {
                    if self.deliver(sub, data, usize::MAX, &mut payloads) {
                        overflowed.push(sub.connection);
                    } else if event.is_final() {
                        finished.push(Arc::clone(sub));
                    }
                    continue;
                };
                let key: &str = &resolution.group;
                let index = match last_group {
                    Some((last, index)) if last == key => index,
                    _ => {
                        let index = *group_index.entry(key).or_insert_with(|| {
                            groups.push(Vec::new());
                            groups.len() - 1
                        });
                        last_group = Some((key, index));
                        index
                    }
                };
                if let Some(members) = groups.get_mut(index) {
                    members.push(Arc::clone(sub));
                }
            }
        }
        self.metrics.events_delivered(payloads.delivered);
        // A slow consumer's subscriptions go now: its 1008 close is queued, and later
        // events must not keep landing on a closed outbox.
        for sub in finished {
            self.end(&sub, Outbound::Complete { key: sub.key }).await;
        }
        for connection in overflowed {
            self.disconnect(connection).await;
        }
        (!groups.is_empty()).then_some(PendingGroups { groups })
    }

    /// Calls every group's resolver, concurrently (one slow resolver does not hold up the
    /// others); the results come back in group order.
    pub(super) async fn resolve_groups(
        &self,
        event: &Arc<Event>,
        groups: &[Vec<Arc<ActiveSubscription>>],
    ) -> Vec<Option<Result<Resolved, ResolverError>>> {
        futures_util::future::join_all(groups.iter().map(|members| async move {
            let resolution = members.first()?.resolution.as_ref()?;
            Some(
                resolution
                    .resolver
                    .resolve(event, &resolution.field, &resolution.arguments)
                    .await,
            )
        }))
        .await
    }

    /// The second half of [`Engine::dispatch`]: delivers what the resolvers made of `event`.
    pub(super) async fn deliver_resolved(
        &self,
        event: &Arc<Event>,
        pending: PendingGroups,
        results: Vec<Option<Result<Resolved, ResolverError>>>,
    ) {
        let mut payloads = PayloadCache::default();
        let mut overflowed: Vec<ConnectionId> = Vec::new();
        for (group_index, (members, result)) in pending.groups.iter().zip(results).enumerate() {
            let Some(result) = result else {
                continue;
            };
            let resolved = match result {
                Ok(resolved) => resolved,
                Err(err) => {
                    self.metrics.resolver_error();
                    self.metrics
                        .dropped(DropReason::ResolverError, members.len() as u64);
                    for sub in members {
                        let errors = vec![
                            GraphQLError::new(err.message.clone()).with_code("RESOLVER_ERROR")
                        ];
                        self.end(
                            sub,
                            Outbound::Error {
                                key: sub.key,
                                errors,
                            },
                        )
                        .await;
                    }
                    continue;
                }
            };
            let (value, complete) = match &resolved {
                Resolved::Value(v) => (Some(v), false),
                Resolved::ValueThenComplete(v) => (Some(v), true),
                Resolved::Skip => (None, false),
                Resolved::Complete => (None, true),
            };
            for sub in members {
                match value {
                    Some(value) if self.deliver(sub, value, group_index, &mut payloads) => {
                        overflowed.push(sub.connection);
                    }
                    Some(_) => {}
                    None if !complete => self.metrics.dropped(DropReason::ResolverSkipped, 1),
                    None => {}
                }
                if complete || event.is_final() {
                    self.end(sub, Outbound::Complete { key: sub.key }).await;
                }
            }
        }
        self.metrics.events_delivered(payloads.delivered);
        for connection in overflowed {
            self.disconnect(connection).await;
        }
    }

    /// Ends every subscription on a gap notice's channel with an `EVENTS_LOST` error.
    async fn end_channel_after_gap(&self, event: &Event) {
        let message = event
            .data()
            .value()
            .ok()
            .and_then(Value::as_str)
            .unwrap_or("Events were lost on this channel and cannot be replayed")
            .to_owned();
        let subs: Vec<Arc<ActiveSubscription>> = self
            .read()
            .registry
            .on_channel(event.channel())
            .map(|(_, sub)| Arc::clone(sub))
            .collect();
        for sub in subs {
            let errors = vec![GraphQLError::new(message.clone()).with_code("EVENTS_LOST")];
            self.end(
                &sub,
                Outbound::Error {
                    key: sub.key,
                    errors,
                },
            )
            .await;
        }
    }

    /// The per-delivery checks: tenant and audience, filter, delivery rate.
    fn admits(&self, sub: &ActiveSubscription, event: &Event, data: &Value, guarded: bool) -> bool {
        if let Err(check) = if guarded {
            sub.guard.allows(event)
        } else {
            Ok(())
        } {
            self.metrics.security_rejection(check);
            let reason = match check {
                crate::security::SecurityCheck::Tenant => DropReason::Tenant,
                _ => DropReason::Audience,
            };
            self.metrics.dropped(reason, 1);
            return false;
        }
        if !sub.filter.matches(data) {
            self.metrics.dropped(DropReason::Filter, 1);
            return false;
        }
        if sub.limiter.as_ref().is_some_and(|limiter| !limiter.allow()) {
            self.metrics
                .rate_limited(RateLimitKind::DeliveriesPerSubscription);
            self.metrics.dropped(DropReason::RateLimited, 1);
            return false;
        }
        true
    }

    /// Projects and serializes `value` for `sub` (once per plan and value slot) and queues
    /// it; returns whether this push overflowed the connection's outbox.
    fn deliver(
        &self,
        sub: &ActiveSubscription,
        value: &Value,
        value_slot: usize,
        payloads: &mut PayloadCache,
    ) -> bool {
        let payload = payloads
            .get_or_serialize((Arc::as_ptr(&sub.plan) as usize, value_slot), || {
                sub.payload(value)
            });
        match sub.queue_next(payload, &self.metrics) {
            PushOutcome::Queued | PushOutcome::DroppedOldest => payloads.delivered += 1,
            PushOutcome::Overflowed => return true,
            PushOutcome::Closed => self.metrics.dropped(DropReason::OutboxFull, 1),
        }
        false
    }

    /// Ends a subscription from the server side with `message` (complete or error).
    async fn end(&self, sub: &ActiveSubscription, message: Outbound) {
        let _ = sub.outbox.push(message);
        self.unsubscribe(sub.connection, sub.key).await;
    }
}
