//! The service an executor's registrations become at `start()`: the builder with its
//! fields, resolvers, streams, auth and hooks bound to the event loop, and the bus it
//! runs on.

use std::sync::Arc;

use fraiseql_server::{ServiceBuilder, SubscriptionService};
use fraiseql_subscriptions::security::{AllowAnonymous, Authenticator};
use fraiseql_subscriptions::FieldConfig;
use pyo3::prelude::*;

use crate::bridge::{PyAuthenticator, PyResolver};
use crate::config::{PyEventBusConfig, Settings};
use crate::errors::{self, config, Kind};
use crate::hooks::PyObserver;
use crate::operations::PyOperationExecutor;
use crate::streams::PyStreamSource;

use super::registration::AuthSpec;
use super::{lock, PySubscriptionExecutor};

impl PySubscriptionExecutor {
    /// The service builder: settings, fields (with their Python resolvers and streams),
    /// auth and hooks, bound to the running event loop when Python code needs one.
    pub(super) fn service_builder(
        &self,
        py: Python<'_>,
        settings: Settings,
    ) -> PyResult<ServiceBuilder> {
        let locals = if self.needs_event_loop() {
            Some(crate::event_loop::LoopLocals::current(py)?)
        } else {
            None
        };
        let needs_loop = || {
            locals.clone().ok_or_else(|| {
                errors::error(
                    Kind::State,
                    "this executor has Python resolvers, auth or hooks: await start() on \
                     the event loop they should run on",
                )
            })
        };
        let mut engine = settings.engine;
        // With no field declared, every root field is served on the channel named after
        // it (the original plan's direct API names fields only in its subscriptions).
        engine.implicit_fields = lock(&self.fields).is_empty();
        if let Some(call) = &*lock(&self.operations) {
            engine.operations = Some(Arc::new(PyOperationExecutor::new(
                call.clone_ref(py),
                needs_loop()?,
            )));
        }
        let mut builder = SubscriptionService::builder()
            .path(settings.path.clone())
            .engine_config(engine)
            .connection_config(settings.connection)
            .write_timeout(settings.write_timeout);
        for path in settings.extra_paths {
            builder = builder.also_path(path);
        }
        if let Some(max) = settings.max_connections {
            builder = builder.max_connections(max);
        }
        if let Some(token) = settings.publish_token {
            builder = builder.publish_token(token);
        }
        for (name, spec) in lock(&self.fields).iter() {
            let mut field = match &spec.stream {
                Some(start) => FieldConfig::stream(Arc::new(PyStreamSource::new(
                    start.clone_ref(py),
                    needs_loop()?,
                ))),
                None => FieldConfig::new(&spec.channel).map_err(|e| config(e.to_string()))?,
            };
            if let Some(filter) = &spec.filter {
                field = field.with_filter(filter.clone());
            }
            if let Some(requirement) = &spec.requirement {
                field = field.with_requirement(requirement.clone());
            }
            if let Some(resolver) = &spec.resolver {
                field = field.with_resolver(Arc::new(PyResolver::new(
                    py,
                    resolver.clone_ref(py),
                    needs_loop()?,
                )?));
            }
            builder = builder.field(name.clone(), field);
        }
        let authenticator: Arc<dyn Authenticator> = match &*lock(&self.auth) {
            AuthSpec::Anonymous => Arc::new(AllowAnonymous),
            AuthSpec::Rust(a) => Arc::clone(a),
            AuthSpec::Python(f) => Arc::new(PyAuthenticator::new(f.clone_ref(py), needs_loop()?)),
        };
        builder = builder.authenticator(authenticator);
        if let Some(dispatch) = &*lock(&self.hooks) {
            builder = builder.observer(Arc::new(PyObserver::new(
                dispatch.clone_ref(py),
                needs_loop()?,
            )));
        }
        Ok(builder)
    }

    /// Connects the bus and builds the service on it.
    pub(super) async fn build_service(
        bus: PyEventBusConfig,
        builder: ServiceBuilder,
    ) -> PyResult<SubscriptionService> {
        let bus = bus.connect().await?;
        builder
            .bus(bus)
            .build()
            .await
            .map_err(|e| config(e.to_string()))
    }
}
