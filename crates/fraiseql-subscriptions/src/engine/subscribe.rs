//! Subscriptions start and stop: [`Engine::subscribe`] takes a `subscribe` message through
//! document → field → rate limit → requirement → security → filter → channel → caps →
//! registry (or hands a query or mutation to the operation executor), and
//! [`Engine::unsubscribe`] ends one.

use std::sync::Arc;

use fraiseql_protocol::{GraphQLError, SubscribePayload, SubscriptionKey};
use serde_json::Value;

use super::field::FieldConfig;
use super::Engine;
use crate::bus::validate_channel;
use crate::filter::CompiledFilter;
use crate::in_flight::Operation;
use crate::limits::{check_caps, DeliveryLimiter};
use crate::metrics::RateLimitKind;
use crate::operation::operation_kind;
use crate::outbox::Outbound;
use crate::registry::{ConnectionId, SubscriptionId};
use crate::stream::{StreamSink, StreamStart};
use crate::subscription::{ActiveSubscription, Resolution};

/// The error for a subscribe on a connection the engine no longer knows.
fn closed_connection_error() -> GraphQLError {
    GraphQLError::new("The connection is closed; reconnect before subscribing")
        .with_code("CONNECTION_CLOSED")
}

impl Engine {
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

    /// How `field` is served: its declared config, or with
    /// [`EngineConfig::implicit_fields`](super::EngineConfig::implicit_fields) a config
    /// listening on the channel named after it.
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
}
