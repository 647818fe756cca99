//! The dispatcher: subscribe (document → security → filter → channel → registry) and
//! dispatch (channel index → security → filter → rate limit → resolve → project → serialize
//! once → each connection's outbox).

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

use async_trait::async_trait;
use fraiseql_protocol::{GraphQLError, SubscribePayload, SubscriptionKey};
use serde_json::{Map, Value};

use crate::bus::{BusError, EventBus, EventStream};
use crate::document::{DocumentError, DocumentLimits, PreparedSubscription, SubscriptionDocuments};
use crate::event::Event;
use crate::filter::{CompiledFilter, FilterSpec};
use crate::metrics::{DropReason, Metrics};
use crate::outbox::{Outbound, Outbox, OverflowPolicy, PushOutcome};
use crate::registry::{ChannelTemplate, ConnectionId, Registry, SubscriptionId, TemplateError};
use crate::security::{DeliveryGuard, Principal, Requirement, SecurityPolicy};

/// What a resolver made of an event for one group of subscriptions.
#[derive(Debug, Clone, PartialEq)]
pub enum Resolved {
    /// Deliver this value (projected through each subscriber's selection set).
    Value(Value),
    /// Deliver nothing for this event.
    Skip,
    /// Deliver this value, then end the subscriptions (`complete`).
    ValueThenComplete(Value),
    /// End the subscriptions (`complete`) without delivering.
    Complete,
}

/// A resolver failure; its message goes to the affected subscriptions as a GraphQL error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ResolverError {
    /// The message for the client.
    pub message: String,
}

/// Turns an event into the root field's value, once per event per group of subscriptions
/// sharing the field and its arguments (never once per subscriber).
#[async_trait]
pub trait Resolver: Send + Sync + fmt::Debug {
    /// Resolves `event` for subscriptions of `field` with these `arguments`.
    ///
    /// # Errors
    /// [`ResolverError`]: the group gets an `error` and ends; other groups are untouched.
    async fn resolve(
        &self,
        event: &Arc<Event>,
        field: &str,
        arguments: &Map<String, Value>,
    ) -> Result<Resolved, ResolverError>;
}

/// How one root field is served.
#[derive(Debug, Clone)]
pub struct FieldConfig {
    channel: ChannelTemplate,
    filter: Option<FilterSpec>,
    requirement: Option<Requirement>,
    resolver: Option<Arc<dyn Resolver>>,
}

impl FieldConfig {
    /// A field whose subscriptions listen on `channel` (a template such as `"room:{room}"`);
    /// without a resolver the event data is the field's value.
    ///
    /// # Errors
    /// [`TemplateError`] for a malformed template.
    pub fn new(channel: &str) -> Result<Self, TemplateError> {
        Ok(Self {
            channel: ChannelTemplate::parse(channel)?,
            filter: None,
            requirement: None,
            resolver: None,
        })
    }

    /// Filters events per subscription (compiled against its arguments at subscribe time).
    #[must_use]
    pub fn with_filter(mut self, filter: FilterSpec) -> Self {
        self.filter = Some(filter);
        self
    }

    /// Requires roles or scopes to subscribe to this field.
    #[must_use]
    pub fn with_requirement(mut self, requirement: Requirement) -> Self {
        self.requirement = Some(requirement);
        self
    }

    /// Resolves events through `resolver`.
    #[must_use]
    pub fn with_resolver(mut self, resolver: Arc<dyn Resolver>) -> Self {
        self.resolver = Some(resolver);
        self
    }
}

/// Why the engine could not be built or could not reach its bus.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    /// The schema given is invalid.
    #[error(transparent)]
    Document(#[from] DocumentError),
    /// The bus failed.
    #[error(transparent)]
    Bus(#[from] BusError),
}

/// Settings for an [`Engine`].
#[derive(Debug, Clone, Default)]
pub struct EngineConfig {
    /// The schema (SDL) to validate documents against, if any.
    pub schema: Option<String>,
    /// Document size, depth and field limits.
    pub document_limits: DocumentLimits,
    /// Security settings.
    pub security: SecurityPolicy,
    /// Capacity of each connection's outbox.
    pub outbox_capacity: usize,
    /// What a full outbox does.
    pub overflow_policy: OverflowPolicy,
}

#[derive(Debug)]
struct ActiveSubscription {
    connection: ConnectionId,
    key: SubscriptionKey,
    outbox: Arc<Outbox>,
    guard: DeliveryGuard,
    filter: CompiledFilter,
    prepared: PreparedSubscription,
    field: Arc<FieldConfig>,
    /// Subscriptions with the same group share one resolver call per event.
    group: Arc<str>,
}

#[derive(Debug)]
struct Connection {
    principal: Principal,
    outbox: Arc<Outbox>,
    subscriptions: HashMap<SubscriptionKey, SubscriptionId>,
}

#[derive(Debug, Default)]
struct State {
    registry: Registry<Arc<ActiveSubscription>>,
    connections: HashMap<ConnectionId, Connection>,
}

/// The subscription engine: register fields, connect clients, subscribe, publish.
///
/// Transports create one [`Engine`], call [`Engine::connect`] per authenticated connection,
/// [`Engine::subscribe`] / [`Engine::unsubscribe`] on the protocol's `Start` / `Stop`
/// actions, drain each connection's [`Outbox`], and [`Engine::disconnect`] at the end.
/// Events published anywhere on the bus reach the engine through [`Engine::run`].
pub struct Engine {
    fields: HashMap<String, Arc<FieldConfig>>,
    documents: SubscriptionDocuments,
    config: EngineConfig,
    bus: Arc<dyn EventBus>,
    stream_id: u64,
    stream: tokio::sync::Mutex<Option<EventStream>>,
    state: RwLock<State>,
    next_connection: AtomicU64,
    metrics: Arc<Metrics>,
}

impl fmt::Debug for Engine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Engine")
            .field("fields", &self.fields.keys().collect::<Vec<_>>())
            .field("bus", &self.bus)
            .finish_non_exhaustive()
    }
}

/// A connection registered with the engine.
#[derive(Debug, Clone)]
pub struct ConnectionHandle {
    /// Its id.
    pub id: ConnectionId,
    /// Where its messages wait for the transport.
    pub outbox: Arc<Outbox>,
}

impl Engine {
    /// An engine on `bus` serving `fields` (root field name → config).
    ///
    /// # Errors
    /// [`EngineError`] for an invalid schema or a bus that cannot open a stream.
    pub async fn new(
        bus: Arc<dyn EventBus>,
        fields: HashMap<String, FieldConfig>,
        mut config: EngineConfig,
    ) -> Result<Self, EngineError> {
        let documents =
            SubscriptionDocuments::new(config.schema.as_deref(), config.document_limits)?;
        let stream = bus.subscribe(&[]).await?;
        if config.outbox_capacity == 0 {
            config.outbox_capacity = 1024;
        }
        Ok(Self {
            fields: fields.into_iter().map(|(k, v)| (k, Arc::new(v))).collect(),
            documents,
            config,
            stream_id: stream.id(),
            stream: tokio::sync::Mutex::new(Some(stream)),
            bus,
            state: RwLock::new(State::default()),
            next_connection: AtomicU64::new(1),
            metrics: Arc::new(Metrics::new()),
        })
    }

    /// The engine's metrics.
    #[must_use]
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Registers an authenticated connection.
    pub fn connect(&self, principal: Principal) -> ConnectionHandle {
        let id = ConnectionId(self.next_connection.fetch_add(1, Ordering::Relaxed));
        let outbox = Arc::new(Outbox::new(
            self.config.outbox_capacity,
            self.config.overflow_policy,
        ));
        self.write().connections.insert(
            id,
            Connection {
                principal,
                outbox: Arc::clone(&outbox),
                subscriptions: HashMap::new(),
            },
        );
        self.metrics.connections_changed(1);
        ConnectionHandle { id, outbox }
    }

    /// Starts a subscription of a connection (the protocol's `Action::Start`). On failure the
    /// errors are also queued as the subscription's `error` message.
    ///
    /// # Errors
    /// The GraphQL errors: invalid document or variables, unknown field, security refusal,
    /// filter or channel errors, bus failure.
    pub async fn subscribe(
        &self,
        connection: ConnectionId,
        key: SubscriptionKey,
        request: &SubscribePayload,
    ) -> Result<SubscriptionId, Vec<GraphQLError>> {
        let result = self.try_subscribe(connection, key, request).await;
        if let Err(errors) = &result {
            self.metrics.subscribe_error();
            if let Some(outbox) = self.outbox_of(connection) {
                let _ = outbox.push(Outbound::Error {
                    key,
                    errors: errors.clone(),
                });
            }
        }
        result
    }

    async fn try_subscribe(
        &self,
        connection: ConnectionId,
        key: SubscriptionKey,
        request: &SubscribePayload,
    ) -> Result<SubscriptionId, Vec<GraphQLError>> {
        let prepared = self.documents.prepare(
            &request.query,
            request.operation_name.as_deref(),
            request.variables.as_ref(),
        )?;
        let Some(field) = self.fields.get(&prepared.field).cloned() else {
            return Err(vec![GraphQLError::new(format!(
                "No subscription field \"{}\" is served here",
                prepared.field
            ))
            .with_code("GRAPHQL_VALIDATION_FAILED")]);
        };
        let principal = {
            let state = self.read();
            let Some(conn) = state.connections.get(&connection) else {
                return Err(vec![GraphQLError::new("The connection is closed")]);
            };
            conn.principal.clone()
        };
        if let Some(requirement) = &field.requirement {
            if !requirement.is_met_by(&principal) {
                self.metrics
                    .security_rejection(crate::security::SecurityCheck::Rbac);
                return Err(vec![GraphQLError::new(format!(
                    "Not authorized to subscribe to \"{}\"",
                    prepared.field
                ))
                .with_code("FORBIDDEN")]);
            }
        }
        if let Err(rejection) = self.config.security.check_subscribe(
            &principal,
            &prepared.field,
            &prepared.arguments,
            prepared.selected_fields(),
        ) {
            self.metrics.security_rejection(rejection.check);
            return Err(vec![rejection.error]);
        }
        let filter = match &field.filter {
            Some(spec) => CompiledFilter::compile(spec, &prepared.arguments).map_err(|err| {
                vec![GraphQLError::new(err.to_string()).with_code("BAD_USER_INPUT")]
            })?,
            None => CompiledFilter::always(),
        };
        let channel = field
            .channel
            .resolve(&prepared.arguments)
            .map_err(|err| vec![GraphQLError::new(err.to_string()).with_code("BAD_USER_INPUT")])?;
        let group: Arc<str> = Arc::from(format!(
            "{}\u{0}{}",
            prepared.field,
            Value::Object(prepared.arguments.clone())
        ));
        let (id, activated) = {
            let mut state = self.write();
            let Some(conn) = state.connections.get(&connection) else {
                return Err(vec![GraphQLError::new("The connection is closed")]);
            };
            let outbox = Arc::clone(&conn.outbox);
            let user = principal.user_id.clone();
            let sub = Arc::new(ActiveSubscription {
                connection,
                key,
                outbox,
                guard: self.config.security.guard_for(&principal),
                filter,
                prepared,
                field,
                group,
            });
            let inserted = state
                .registry
                .insert(connection, user.as_deref(), channel.clone(), sub);
            if let Some(conn) = state.connections.get_mut(&connection) {
                conn.subscriptions.insert(key, inserted.id);
            }
            (inserted.id, inserted.channel_activated)
        };
        self.metrics.subscriptions_changed(1);
        if activated {
            if let Err(err) = self
                .bus
                .subscribe_to(self.stream_id, std::slice::from_ref(&channel))
                .await
            {
                self.unsubscribe(connection, key).await;
                return Err(vec![GraphQLError::new(format!(
                    "Could not listen on the event bus: {err}"
                ))
                .with_code("INTERNAL_SERVER_ERROR")]);
            }
        }
        Ok(id)
    }

    /// Ends a subscription (the protocol's `Action::Stop`); nothing is sent for it any more.
    pub async fn unsubscribe(&self, connection: ConnectionId, key: SubscriptionKey) {
        let removed = {
            let mut state = self.write();
            let id = state
                .connections
                .get_mut(&connection)
                .and_then(|conn| conn.subscriptions.remove(&key));
            id.and_then(|id| state.registry.remove(id))
        };
        if let Some(removed) = removed {
            self.metrics.subscriptions_changed(-1);
            if removed.channel_deactivated {
                let _ = self
                    .bus
                    .unsubscribe(self.stream_id, &[removed.channel])
                    .await;
            }
        }
    }

    /// Removes a connection and everything it subscribed to; its outbox is shut.
    pub async fn disconnect(&self, connection: ConnectionId) {
        let (removed, outbox) = {
            let mut state = self.write();
            let removed = state.registry.remove_connection(connection);
            let outbox = state.connections.remove(&connection).map(|c| c.outbox);
            (removed, outbox)
        };
        if let Some(outbox) = outbox {
            outbox.shut();
            self.metrics.connections_changed(-1);
        }
        self.metrics
            .subscriptions_changed(-i64::try_from(removed.len()).unwrap_or(i64::MAX));
        let idle: Vec<String> = removed
            .into_iter()
            .filter(|r| r.channel_deactivated)
            .map(|r| r.channel)
            .collect();
        if !idle.is_empty() {
            let _ = self.bus.unsubscribe(self.stream_id, &idle).await;
        }
    }

    /// Publishes an event on the engine's bus.
    ///
    /// # Errors
    /// [`BusError`] from the bus.
    pub async fn publish(&self, event: Event) -> Result<(), BusError> {
        self.metrics.events_published(1);
        self.bus.publish(Arc::new(event)).await
    }

    /// Receives events from the bus and dispatches them, in order, until the bus closes.
    /// Run it once, in its own task.
    pub async fn run(&self) {
        let Some(mut stream) = self.stream.lock().await.take() else {
            return;
        };
        while let Some(event) = stream.recv().await {
            self.dispatch(&event).await;
        }
    }

    /// Delivers one event to every subscription on its channel that may see it and wants it.
    pub async fn dispatch(&self, event: &Arc<Event>) {
        let candidates: Vec<Arc<ActiveSubscription>> = {
            let state = self.read();
            state
                .registry
                .on_channel(event.channel())
                .map(|(_, s)| Arc::clone(s))
                .collect()
        };
        if candidates.is_empty() {
            return;
        }
        let Ok(data) = event.data().value() else {
            self.metrics
                .dropped(DropReason::InvalidData, candidates.len() as u64);
            return;
        };
        let mut groups: Vec<(Arc<str>, Vec<Arc<ActiveSubscription>>)> = Vec::new();
        for sub in candidates {
            if let Err(check) = sub.guard.allows(event) {
                self.metrics.security_rejection(check);
                let reason = match check {
                    crate::security::SecurityCheck::Tenant => DropReason::Tenant,
                    _ => DropReason::Audience,
                };
                self.metrics.dropped(reason, 1);
                continue;
            }
            if !sub.filter.matches(data) {
                self.metrics.dropped(DropReason::Filter, 1);
                continue;
            }
            match groups.iter_mut().find(|(g, _)| **g == *sub.group) {
                Some((_, members)) => members.push(sub),
                None => groups.push((Arc::clone(&sub.group), vec![sub])),
            }
        }
        // One serialization per distinct (projection plan, resolved value). A plan comes from
        // one document, so it also fixes the response key. Without a resolver every group's
        // value is the event data itself, so they all share one value slot.
        let mut payloads: HashMap<(usize, usize), Arc<str>> = HashMap::new();
        for (group_index, (_, members)) in groups.iter().enumerate() {
            let Some(first) = members.first() else {
                continue;
            };
            let resolved = match &first.field.resolver {
                None => Resolved::Value(Value::Null),
                Some(resolver) => match resolver
                    .resolve(event, &first.prepared.field, &first.prepared.arguments)
                    .await
                {
                    Ok(resolved) => resolved,
                    Err(err) => {
                        self.metrics.resolver_error();
                        self.metrics
                            .dropped(DropReason::ResolverError, members.len() as u64);
                        for sub in members {
                            self.end(
                                sub,
                                Outbound::Error {
                                    key: sub.key,
                                    errors: vec![GraphQLError::new(err.message.clone())
                                        .with_code("RESOLVER_ERROR")],
                                },
                            )
                            .await;
                        }
                        continue;
                    }
                },
            };
            let (value, complete) = match &resolved {
                Resolved::Value(v) => (Some(v), false),
                Resolved::ValueThenComplete(v) => (Some(v), true),
                Resolved::Skip => (None, false),
                Resolved::Complete => (None, true),
            };
            let value = if first.field.resolver.is_none() {
                Some(data)
            } else {
                value
            };
            for sub in members {
                if let Some(value) = value {
                    let value_slot = if sub.field.resolver.is_none() {
                        usize::MAX
                    } else {
                        group_index
                    };
                    let cache_key = (Arc::as_ptr(&sub.prepared.plan) as usize, value_slot);
                    let payload = payloads
                        .entry(cache_key)
                        .or_insert_with(|| {
                            let bytes = sub.prepared.payload_for(value);
                            Arc::from(String::from_utf8(bytes).unwrap_or_default())
                        })
                        .clone();
                    match sub.outbox.push(Outbound::Next {
                        key: sub.key,
                        payload,
                    }) {
                        PushOutcome::Queued => self.metrics.events_delivered(1),
                        PushOutcome::DroppedOldest => {
                            self.metrics.events_delivered(1);
                            self.metrics.dropped(DropReason::OutboxFull, 1);
                        }
                        PushOutcome::Overflowed => {
                            self.metrics.outbox_overflow();
                            self.metrics.dropped(DropReason::OutboxFull, 1);
                        }
                        PushOutcome::Closed => self.metrics.dropped(DropReason::OutboxFull, 1),
                    }
                } else if !complete {
                    self.metrics.dropped(DropReason::ResolverSkipped, 1);
                }
                if complete {
                    self.end(sub, Outbound::Complete { key: sub.key }).await;
                }
            }
        }
    }

    /// Ends a subscription from the server side with `message` (complete or error).
    async fn end(&self, sub: &ActiveSubscription, message: Outbound) {
        let _ = sub.outbox.push(message);
        self.unsubscribe(sub.connection, sub.key).await;
    }

    /// How many subscriptions are active.
    #[must_use]
    pub fn subscription_count(&self) -> usize {
        self.read().registry.len()
    }

    fn outbox_of(&self, connection: ConnectionId) -> Option<Arc<Outbox>> {
        self.read()
            .connections
            .get(&connection)
            .map(|c| Arc::clone(&c.outbox))
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(PoisonError::into_inner)
    }
}
