//! The dispatcher: subscribe (document → security → filter → channel → registry) and
//! dispatch (channel index → security → filter → rate limit → resolve → project → serialize
//! once → each connection's outbox).

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

use fraiseql_protocol::{GraphQLError, SubscribePayload, SubscriptionKey};
use futures_util::StreamExt as _;
use serde_json::Value;

use crate::bus::{validate_channel, BusError, EventBus, EventStream};
use crate::dispatched::DispatchWaiters;
use crate::document::{DocumentError, DocumentLimits, SubscriptionDocuments};
use crate::event::Event;
use crate::filter::{CompiledFilter, FilterSpec};
use crate::in_flight::{InFlight, Operation};
use crate::limits::{
    check_caps, check_connection_cap, DeliveryLimiter, LimitRejection, LimitsConfig, LimitsError,
    MessageLimiter, SubscribeLimiter,
};
use crate::metrics::{DropReason, Metrics, RateLimitKind};
use crate::operation::{operation_kind, OperationExecutor};
use crate::outbox::{Outbound, Outbox, OverflowPolicy, PushOutcome};
use crate::registry::{ChannelTemplate, ConnectionId, Registry, SubscriptionId, TemplateError};
use crate::resolver::{Resolved, Resolver, ResolverError};
use crate::security::{DeliveryGuard, Principal, Requirement, SecurityPolicy};
use crate::stream::{StreamEnd, StreamSink, StreamSource, StreamStart};
use crate::subscription::{ActiveSubscription, Resolution};

/// The error for a subscribe on a connection the engine no longer knows.
fn closed_connection_error() -> GraphQLError {
    GraphQLError::new("The connection is closed; reconnect before subscribing")
        .with_code("CONNECTION_CLOSED")
}

/// How many events [`Engine::run`] may have resolver calls in flight for at once.
const MAX_EVENTS_RESOLVING: usize = 64;

/// The resolver groups of one event, between [`Engine::dispatch_direct`] and
/// [`Engine::deliver_resolved`].
#[derive(Debug)]
struct PendingGroups {
    groups: Vec<Vec<Arc<ActiveSubscription>>>,
}

/// How often [`Engine::run`] trims the subscribe-rate limiter's per-user state.
const HOUSEKEEPING_INTERVAL: std::time::Duration = std::time::Duration::from_secs(60);

/// How one root field is served.
#[derive(Debug, Clone)]
pub struct FieldConfig {
    channel: ChannelTemplate,
    filter: Option<FilterSpec>,
    requirement: Option<Requirement>,
    resolver: Option<Arc<dyn Resolver>>,
    stream: Option<Arc<dyn StreamSource>>,
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
            stream: None,
        })
    }

    /// A stream field: each subscription gets its values from `source` (see
    /// [`crate::stream`]), not from bus events; filters, requirements and projection apply
    /// as to any field, resolvers do not.
    #[must_use]
    pub fn stream(source: Arc<dyn StreamSource>) -> Self {
        Self {
            channel: ChannelTemplate::literal("fraiseql.stream"),
            filter: None,
            requirement: None,
            resolver: None,
            stream: Some(source),
        }
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
    /// A limit setting is invalid.
    #[error(transparent)]
    Limits(#[from] LimitsError),
    /// A field's filter is invalid whatever the subscription's arguments.
    #[error("the filter of subscription field `{field}` is invalid: {error}")]
    Filter {
        /// The root field.
        field: String,
        /// What is wrong.
        error: crate::filter::FilterError,
    },
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
    /// Rate limits, caps and the outbox capacity.
    pub limits: LimitsConfig,
    /// What a full outbox does.
    pub overflow_policy: OverflowPolicy,
    /// Serve root fields that were not declared: a subscription to such a field listens on
    /// the channel named after it, and the event data is its value (no filter, no
    /// requirement, no resolver). Off by default, so a mistyped field is refused; the
    /// Python executor turns it on when no field is declared at all (the original plan's
    /// direct API, where fields are named only by the subscriptions).
    pub implicit_fields: bool,
    /// Runs the queries and mutations clients send on the socket (graphql-transport-ws
    /// single-result operations): each gets one `next` with its result, then `complete`.
    /// `None` (the default): such an operation is refused with an `error`.
    pub operations: Option<Arc<dyn OperationExecutor>>,
}

/// One event's serialized payloads, one per distinct (projection plan, value slot). Most
/// subscribers of a channel share one plan, so the last payload is checked before the map.
#[derive(Debug, Default)]
struct PayloadCache {
    last: Option<((usize, usize), Arc<str>)>,
    others: HashMap<(usize, usize), Arc<str>>,
    /// Frames queued for this event (added to the metrics once, at the end).
    delivered: u64,
}

impl PayloadCache {
    fn get_or_serialize(
        &mut self,
        key: (usize, usize),
        serialize: impl FnOnce() -> Arc<str>,
    ) -> Arc<str> {
        if let Some((last_key, payload)) = &self.last {
            if *last_key == key {
                return Arc::clone(payload);
            }
        }
        let payload = Arc::clone(self.others.entry(key).or_insert_with(serialize));
        if let Some((old_key, old)) = self.last.replace((key, Arc::clone(&payload))) {
            self.others.entry(old_key).or_insert(old);
        }
        payload
    }
}

#[derive(Debug)]
struct Connection {
    principal: Principal,
    guard: Arc<DeliveryGuard>,
    user: Option<String>,
    outbox: Arc<Outbox>,
    subscriptions: HashMap<SubscriptionKey, SubscriptionId>,
    /// Its running queries and mutations.
    in_flight: Arc<InFlight>,
}

#[derive(Debug, Default)]
struct State {
    registry: Registry<Arc<ActiveSubscription>>,
    connections: HashMap<ConnectionId, Connection>,
    connections_by_user: HashMap<String, usize>,
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
    /// The channels the bus feeds to this engine's stream (see `sync_bus_channels`).
    bus_channels: tokio::sync::Mutex<HashSet<String>>,
    state: RwLock<State>,
    subscribe_limiter: SubscribeLimiter,
    next_connection: AtomicU64,
    metrics: Arc<Metrics>,
    /// Streams that ended themselves ask [`Engine::run`] to unregister them here.
    stream_ended: tokio::sync::mpsc::UnboundedSender<StreamEnd>,
    stream_ended_rx: tokio::sync::Mutex<Option<tokio::sync::mpsc::UnboundedReceiver<StreamEnd>>>,
    /// Callers of [`Engine::publish_dispatched`] waiting for [`Engine::run`].
    dispatch_waiters: DispatchWaiters,
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
    messages: Option<Arc<MessageLimiter>>,
}

impl ConnectionHandle {
    /// Whether the client may send one more message now (the per-connection message rate).
    /// Transports call it for each client frame and close the connection when it says no.
    ///
    /// # Errors
    /// The [`LimitRejection`] to report (kind `MessageRate`).
    pub fn check_message(&self) -> Result<(), LimitRejection> {
        self.messages
            .as_ref()
            .map_or(Ok(()), |limiter| limiter.check())
    }
}

impl Engine {
    /// An engine on `bus` serving `fields` (root field name → config).
    ///
    /// # Errors
    /// [`EngineError`] for an invalid schema or a bus that cannot open a stream.
    pub async fn new(
        bus: Arc<dyn EventBus>,
        fields: HashMap<String, FieldConfig>,
        config: EngineConfig,
    ) -> Result<Self, EngineError> {
        config.limits.validate()?;
        for (name, field) in &fields {
            if let Some(filter) = &field.filter {
                filter.validate().map_err(|error| EngineError::Filter {
                    field: name.clone(),
                    error,
                })?;
            }
        }
        let documents =
            SubscriptionDocuments::new(config.schema.as_deref(), config.document_limits)?;
        let stream = bus.subscribe(&[]).await?;
        let (stream_ended, stream_ended_rx) = tokio::sync::mpsc::unbounded_channel();
        Ok(Self {
            stream_ended,
            stream_ended_rx: tokio::sync::Mutex::new(Some(stream_ended_rx)),
            subscribe_limiter: SubscribeLimiter::new(&config.limits),
            fields: fields.into_iter().map(|(k, v)| (k, Arc::new(v))).collect(),
            documents,
            config,
            stream_id: stream.id(),
            stream: tokio::sync::Mutex::new(Some(stream)),
            bus_channels: tokio::sync::Mutex::new(HashSet::new()),
            bus,
            state: RwLock::new(State::default()),
            next_connection: AtomicU64::new(1),
            metrics: Arc::new(Metrics::new()),
            dispatch_waiters: DispatchWaiters::default(),
        })
    }

    /// The engine's metrics.
    #[must_use]
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Registers an authenticated connection.
    ///
    /// # Errors
    /// [`LimitRejection`] when the user already holds the most connections allowed; the
    /// transport closes the socket with 4403 and the message.
    pub fn connect(&self, principal: Principal) -> Result<ConnectionHandle, LimitRejection> {
        let id = ConnectionId(self.next_connection.fetch_add(1, Ordering::Relaxed));
        let limits = &self.config.limits;
        let outbox = Arc::new(Outbox::new(
            limits.outbox_capacity,
            self.config.overflow_policy,
        ));
        let user = principal.user_id.clone();
        {
            let mut state = self.write();
            if let Some(user) = &user {
                let held = state.connections_by_user.get(user).copied().unwrap_or(0);
                check_connection_cap(limits, held)?;
                *state.connections_by_user.entry(user.clone()).or_default() += 1;
            }
            let guard = Arc::new(self.config.security.guard_for(&principal));
            state.connections.insert(
                id,
                Connection {
                    principal,
                    guard,
                    user,
                    outbox: Arc::clone(&outbox),
                    subscriptions: HashMap::new(),
                    in_flight: Arc::default(),
                },
            );
        }
        self.metrics.connections_changed(1);
        let messages = limits
            .message_rate_per_connection
            .map(|rate| Arc::new(MessageLimiter::new(rate)));
        Ok(ConnectionHandle {
            id,
            outbox,
            messages,
        })
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
        let prepared = match self.documents.prepare(
            &request.query,
            request.operation_name.as_deref(),
            request.variables.as_ref(),
        ) {
            Ok(prepared) => prepared,
            // Not a subscription the engine can serve: a query or mutation goes to the
            // operation executor, when there is one.
            Err(errors) => {
                return self
                    .start_operation(connection, key, request)
                    .unwrap_or(Err(errors))
            }
        };
        let Some(field) = self.field_config(&prepared.field) else {
            return Err(vec![GraphQLError::new(format!(
                "No subscription field \"{}\" is served here",
                prepared.field
            ))
            .with_code("GRAPHQL_VALIDATION_FAILED")]);
        };
        let principal = {
            let state = self.read();
            let Some(conn) = state.connections.get(&connection) else {
                return Err(vec![closed_connection_error()]);
            };
            conn.principal.clone()
        };
        if let Err(rejection) = self
            .subscribe_limiter
            .check_subscribe(principal.user_id.as_deref())
        {
            self.metrics.rate_limited(RateLimitKind::SubscribePerUser);
            return Err(vec![rejection.to_graphql_error()]);
        }
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
        // Field rules are keyed by the full path from the root field ("message.author.email");
        // the document gives paths below the root, so prefix them (only when rules exist).
        let selected: Vec<String> = if self.config.security.selected_fields.is_empty() {
            Vec::new()
        } else {
            prepared
                .selected_fields()
                .map(|path| format!("{}.{path}", prepared.field))
                .collect()
        };
        if let Err(rejection) = self.config.security.check_subscribe(
            &principal,
            &prepared.field,
            &prepared.arguments,
            selected.iter().map(String::as_str),
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
        let channel = if field.stream.is_some() {
            // A private channel: nothing is ever published on it; its source emits directly.
            format!("fraiseql.stream/{}/{}", connection.0, key.get())
        } else {
            field.channel.resolve(&prepared.arguments).map_err(|err| {
                vec![GraphQLError::new(err.to_string()).with_code("BAD_USER_INPUT")]
            })?
        };
        validate_channel(&channel)
            .map_err(|err| vec![GraphQLError::new(err.to_string()).with_code("BAD_USER_INPUT")])?;
        let resolution = match (&field.resolver, &field.stream) {
            (Some(resolver), None) => {
                let group = Arc::from(format!(
                    "{}\u{0}{}",
                    prepared.field,
                    Value::Object(prepared.arguments.clone())
                ));
                Some(Box::new(Resolution {
                    resolver: Arc::clone(resolver),
                    field: prepared.field.clone(),
                    arguments: prepared.arguments.clone(),
                    group,
                }))
            }
            _ => None,
        };
        let id = {
            let mut state = self.write();
            let Some(conn) = state.connections.get(&connection) else {
                return Err(vec![closed_connection_error()]);
            };
            if conn.subscriptions.contains_key(&key) {
                return Err(vec![GraphQLError::new(
                    "This subscription is already started on the connection",
                )
                .with_code("BAD_REQUEST")]);
            }
            let outbox = Arc::clone(&conn.outbox);
            let guard = Arc::clone(&conn.guard);
            let user = principal.user_id.clone();
            let of_user = user
                .as_deref()
                .map_or(0, |u| state.registry.count_for_user(u));
            check_caps(
                &self.config.limits,
                state.registry.count_for_connection(connection),
                of_user,
            )
            .map_err(|rejection| vec![rejection.to_graphql_error()])?;
            let (stream_stop, stream_stopped) = match field.stream {
                Some(_) => {
                    let (tx, rx) = tokio::sync::watch::channel(());
                    (Some(tx), Some(rx))
                }
                None => (None, None),
            };
            let sub = Arc::new(ActiveSubscription {
                connection,
                key,
                outbox,
                guard,
                filter,
                plan: Arc::clone(&prepared.plan),
                response_key: prepared.response_key.into_boxed_str(),
                resolution,
                limiter: self
                    .config
                    .limits
                    .delivery_rate_per_subscription
                    .map(DeliveryLimiter::new),
                _stream_stop: stream_stop,
            });
            let sink = stream_stopped.map(|stopped| {
                StreamSink::new(
                    Arc::downgrade(&sub),
                    self.stream_ended.clone(),
                    stopped,
                    Arc::clone(&self.metrics),
                )
            });
            let inserted = state
                .registry
                .insert(connection, user.as_deref(), channel.clone(), sub);
            if let Some(conn) = state.connections.get_mut(&connection) {
                conn.subscriptions.insert(key, inserted.id);
            }
            (inserted.id, sink)
        };
        let (id, sink) = id;
        self.metrics.subscriptions_changed(1);
        if let (Some(source), Some(sink)) = (&field.stream, sink) {
            source.start(StreamStart {
                field: prepared.field.clone(),
                arguments: prepared.arguments.clone(),
                principal,
                sink,
            });
            return Ok(id);
        }
        {
            if let Err(err) = self.sync_bus_channels(std::slice::from_ref(&channel)).await {
                self.unsubscribe(connection, key).await;
                return Err(vec![GraphQLError::new(format!(
                    "Could not listen on the event bus: {err}"
                ))
                .with_code("INTERNAL_SERVER_ERROR")]);
            }
        }
        Ok(id)
    }

    /// Starts a query or mutation on the operation executor, if there is one and the
    /// document selects such an operation; `None` otherwise.
    fn start_operation(
        &self,
        connection: ConnectionId,
        key: SubscriptionKey,
        request: &SubscribePayload,
    ) -> Option<Result<SubscriptionId, Vec<GraphQLError>>> {
        let executor = self.config.operations.as_ref()?;
        if request.query.len() > self.config.document_limits.max_document_bytes {
            return None; // the compiler's DOCUMENT_TOO_LARGE stands
        }
        let kind = operation_kind(&request.query, request.operation_name.as_deref())?;
        let mut state = self.write();
        let Some(conn) = state.connections.get(&connection) else {
            return Some(Err(vec![closed_connection_error()]));
        };
        if let Err(rejection) = self.subscribe_limiter.check_subscribe(conn.user.as_deref()) {
            self.metrics.rate_limited(RateLimitKind::SubscribePerUser);
            return Some(Err(vec![rejection.to_graphql_error()]));
        }
        let operation = Operation {
            key,
            kind,
            request: request.clone(),
            principal: conn.principal.clone(),
            outbox: Arc::clone(&conn.outbox),
        };
        let in_flight = Arc::clone(&conn.in_flight);
        let id = state.registry.reserve_id();
        drop(state);
        self.metrics.operation_started(kind);
        in_flight.start(Arc::clone(executor), operation);
        Some(Ok(id))
    }

    /// Ends a subscription (the protocol's `Action::Stop`); nothing is sent for it any more.
    /// A running query or mutation is cancelled: its result is not sent.
    pub async fn unsubscribe(&self, connection: ConnectionId, key: SubscriptionKey) {
        let removed = {
            let mut state = self.write();
            if let Some(conn) = state.connections.get(&connection) {
                if conn.in_flight.cancel(key) {
                    return;
                }
            }
            let id = state
                .connections
                .get_mut(&connection)
                .and_then(|conn| conn.subscriptions.remove(&key));
            id.and_then(|id| state.registry.remove(id))
        };
        if let Some(removed) = removed {
            self.metrics.subscriptions_changed(-1);
            if removed.channel_deactivated {
                let _ = self.sync_bus_channels(&[removed.channel]).await;
            }
        }
    }

    /// Removes a connection and everything it subscribed to; its outbox is shut.
    pub async fn disconnect(&self, connection: ConnectionId) {
        let (removed, outbox) = {
            let mut state = self.write();
            let removed = state.registry.remove_connection(connection);
            let conn = state.connections.remove(&connection);
            if let Some(user) = conn.as_ref().and_then(|c| c.user.as_ref()) {
                if let Some(count) = state.connections_by_user.get_mut(user) {
                    *count = count.saturating_sub(1);
                    if *count == 0 {
                        state.connections_by_user.remove(user);
                    }
                }
            }
            if let Some(conn) = &conn {
                conn.in_flight.cancel_all();
            }
            (removed, conn.map(|c| c.outbox))
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
            let _ = self.sync_bus_channels(&idle).await;
        }
    }

    /// Makes the bus listen on exactly those of `channels` that have subscriptions now.
    ///
    /// Registry changes happen under the state lock but bus calls are awaited after it is
    /// released, so two tasks could otherwise reorder them (subscribe, unsubscribe, then a
    /// late "unsubscribe" after a new subscribe) and leave a channel with subscribers that
    /// the bus no longer feeds. Here every change is applied under one bus lock, from the
    /// registry's state read inside it, so the last call always leaves the bus matching the
    /// registry. A channel that is already in the wanted state costs no bus call.
    async fn sync_bus_channels(&self, channels: &[String]) -> Result<(), BusError> {
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

    /// How `field` is served: its declared config, or with
    /// [`EngineConfig::implicit_fields`] a config listening on the channel named after it.
    fn field_config(&self, field: &str) -> Option<Arc<FieldConfig>> {
        if let Some(config) = self.fields.get(field) {
            return Some(Arc::clone(config));
        }
        if !self.config.implicit_fields {
            return None;
        }
        // A GraphQL name is a valid literal channel (letters, digits, `_`).
        FieldConfig::new(field).ok().map(Arc::new)
    }

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
    async fn dispatch_direct(&self, event: &Arc<Event>) -> Option<PendingGroups> {
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
    async fn resolve_groups(
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
    async fn deliver_resolved(
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

    /// Whether the engine's bus is reachable (for a health endpoint).
    ///
    /// # Errors
    /// The bus's [`BusError`].
    pub async fn health_check(&self) -> Result<(), BusError> {
        self.bus.health_check().await
    }

    /// The bus's counters (events published and delivered, active channels, mode).
    #[must_use]
    pub fn bus_stats(&self) -> crate::bus::BusStats {
        self.bus.stats()
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
