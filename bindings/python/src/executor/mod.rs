//! `PySubscriptionExecutor`: one engine (fields, bus, auth, limits) and everything Python
//! does with it. This module holds the executor's state and lifecycle (register, start,
//! metrics, shutdown); the rest is one concept per file:
//!
//! - [`registration`]: the fields and auth as registered; [`build`]: the service they
//!   become at `start()`.
//! - [`publish`]: publishing from Python (`publish`, `publish_sync`, `publish_json`,
//!   `publish_event`).
//! - [`serving`]: connections for the ASGI adapters ([`crate::session::PySession`]) and the
//!   native server ([`crate::session::PyNativeServer`]).
//! - [`direct`]: the original plan's direct subscription API, over
//!   [`direct_subscription`] (one such subscription and its frames).
//! - [`jwt`]: `JwtAuth`, JWT verification in Rust.
//!
//! Every call that can wait releases the GIL or is awaitable.

mod build;
mod direct;
mod direct_subscription;
mod jwt;
mod publish;
mod registration;
mod serving;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use fraiseql_server::SubscriptionService;
use fraiseql_subscriptions::filter::FilterSpec;
use fraiseql_subscriptions::FieldConfig;
use pyo3::prelude::*;
use pyo3::types::PyDict;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::config::{PyEventBusConfig, Settings};
use crate::convert::py_to_object;
use crate::errors::{self, config, Kind};

use crate::interpreter::runtime;

use direct_subscription::Direct;
pub(crate) use jwt::PyJwtAuth;
use registration::{auth_spec, strings_requirement, AuthSpec, FieldSpec};

#[derive(Debug)]
struct Started {
    service: SubscriptionService,
    /// The loop `start()` ran on: resolvers, auth, hooks and streams run there. `None`
    /// when the executor started itself from synchronous code (it has none of those).
    event_loop: Option<Py<PyAny>>,
    direct: Mutex<HashMap<String, Arc<Direct>>>,
    servers: Mutex<Vec<CancellationToken>>,
}

/// The subscription engine for Python: register fields, start, then publish and serve.
///
/// ```python
/// ex = PySubscriptionExecutor(PyEventBusConfig.memory())
/// ex.register_field("message", "room:{room}")
/// await ex.start()
/// await ex.publish("room:lobby", {"text": "hi"})
/// ```
#[pyclass(
    name = "SubscriptionExecutor",
    module = "fraiseql_subscriptions._native",
    frozen
)]
#[derive(Debug)]
pub(crate) struct PySubscriptionExecutor {
    bus: PyEventBusConfig,
    settings: Settings,
    /// A `start()` is under way (a failed one clears it, so start can be retried).
    starting: Arc<std::sync::atomic::AtomicBool>,
    fields: Mutex<Vec<(String, FieldSpec)>>,
    auth: Mutex<AuthSpec>,
    hooks: Mutex<Option<Py<PyAny>>>,
    /// The package's wrapper of the user's `execute` (queries and mutations on the socket).
    operations: Mutex<Option<Py<PyAny>>>,
    state: RwLock<Option<Arc<Started>>>,
    stopped: std::sync::atomic::AtomicBool,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl PySubscriptionExecutor {
    /// Whether any Python code must run on an event loop: resolvers, streams, an auth
    /// callable or lifecycle hooks.
    fn needs_event_loop(&self) -> bool {
        lock(&self.fields)
            .iter()
            .any(|(_, f)| f.resolver.is_some() || f.stream.is_some())
            || matches!(*lock(&self.auth), AuthSpec::Python(_))
            || lock(&self.hooks).is_some()
            || lock(&self.operations).is_some()
    }

    /// `ExecutorStateError` "<what> must be set before start()" once started.
    fn not_started(&self, what: &str) -> PyResult<()> {
        let started = self
            .state
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .is_some();
        if started {
            return Err(errors::error(
                Kind::State,
                format!("{what} must be set before start()"),
            ));
        }
        Ok(())
    }

    fn started(&self) -> PyResult<Arc<Started>> {
        self.state
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
            .ok_or_else(|| {
                errors::error(
                    Kind::State,
                    if self.stopped.load(std::sync::atomic::Ordering::Relaxed) {
                        "the executor is shut down"
                    } else {
                        "the executor is not started: await start() first"
                    },
                )
            })
    }

    /// The started state, starting the executor here first when it is not: the original
    /// plan's synchronous flow (construct, `register_subscription`, `publish_event`,
    /// `next_event`) never awaits `start()`. Only an executor without Python resolvers,
    /// auth or hooks can start this way (those need the event loop `start()` runs on).
    fn ensure_started(&self, py: Python<'_>, call: &str) -> PyResult<Arc<Started>> {
        if let Ok(started) = self.started() {
            return Ok(started);
        }
        if self.stopped.load(std::sync::atomic::Ordering::Relaxed) {
            return Err(errors::error(Kind::State, "the executor is shut down"));
        }
        if self.needs_event_loop() {
            return Err(errors::error(
                Kind::State,
                format!(
                    "{call}() needs a started executor, and this one has Python resolvers, \
                     auth or hooks, which run on the event loop start() is awaited on: \
                     `await executor.start()` there first"
                ),
            ));
        }
        if self
            .starting
            .swap(true, std::sync::atomic::Ordering::SeqCst)
        {
            return Err(errors::error(
                Kind::State,
                "the executor is starting: await start() before calling it",
            ));
        }
        let built = self
            .service_builder(py, self.settings.clone())
            .and_then(|builder| {
                let bus = self.bus.clone();
                let runtime = runtime()?;
                py.detach(|| runtime.block_on(Self::build_service(bus, builder)))
            });
        match built {
            Ok(service) => {
                let started = Arc::new(Started {
                    service,
                    event_loop: None,
                    direct: Mutex::new(HashMap::new()),
                    servers: Mutex::new(Vec::new()),
                });
                *self.state.write().unwrap_or_else(PoisonError::into_inner) =
                    Some(Arc::clone(&started));
                Ok(started)
            }
            Err(err) => {
                self.starting
                    .store(false, std::sync::atomic::Ordering::SeqCst);
                Err(err)
            }
        }
    }
}

#[pymethods]
impl PySubscriptionExecutor {
    /// An executor on `bus`, validating documents against `schema` (SDL) when given, with
    /// the settings of `config` (see `SubscriptionConfig`). Unknown or invalid settings raise
    /// `ConfigurationError`.
    #[new]
    #[pyo3(signature = (bus = None, schema = None, config = None))]
    fn new(
        py: Python<'_>,
        bus: Option<PyRef<'_, PyEventBusConfig>>,
        schema: Option<String>,
        config: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<Self> {
        let bus = match bus {
            Some(bus) => (*bus).clone(),
            None => PyEventBusConfig::default_memory(),
        };
        Ok(Self {
            bus,
            settings: Settings::from_dict(py, schema, config)?,
            starting: Arc::new(std::sync::atomic::AtomicBool::new(false)),
            fields: Mutex::new(Vec::new()),
            auth: Mutex::new(AuthSpec::Anonymous),
            hooks: Mutex::new(None),
            operations: Mutex::new(None),
            state: RwLock::new(None),
            stopped: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// Serves root field `name` on the channel template `channel` (`"room:{room}"`), with
    /// an optional filter (a dict, see the guide), required roles (any of) and scopes (all
    /// of), and an optional resolver: an async callable `(event, variables, ctx) ->
    /// (value, complete)` (the Python package builds it from your function). `stream`
    /// makes it a stream field instead: `stream(variables, ctx, sink)` is called on the loop
    /// for each subscription and feeds `sink` (`channel` is then unused).
    #[pyo3(signature = (name, channel, *, filter = None, roles = None, scopes = None, resolver = None, stream = None))]
    #[allow(clippy::too_many_arguments)]
    fn register_field(
        &self,
        name: String,
        channel: String,
        filter: Option<&Bound<'_, PyAny>>,
        roles: Option<Vec<String>>,
        scopes: Option<Vec<String>>,
        resolver: Option<Py<PyAny>>,
        stream: Option<Py<PyAny>>,
    ) -> PyResult<()> {
        if resolver.is_some() && stream.is_some() {
            return Err(config(format!(
                "field {name:?} has both a resolver and a stream: give one"
            )));
        }
        if self
            .state
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .is_some()
        {
            return Err(errors::error(
                Kind::State,
                "fields must be registered before start()",
            ));
        }
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(config(format!("{name:?} is not a GraphQL field name")));
        }
        FieldConfig::new(&channel).map_err(|e| config(format!("field {name:?}: {e}")))?;
        let filter = match py_to_object(filter, "filter")? {
            Some(map) => {
                let spec: FilterSpec = serde_json::from_value(Value::Object(map))
                    .map_err(|e| config(format!("field {name:?}: invalid filter: {e}")))?;
                spec.validate()
                    .map_err(|e| config(format!("field {name:?}: invalid filter: {e}")))?;
                Some(spec)
            }
            None => None,
        };
        let mut fields = lock(&self.fields);
        if fields.iter().any(|(n, _)| *n == name) {
            return Err(config(format!(
                "subscription field {name:?} is registered twice"
            )));
        }
        fields.push((
            name,
            FieldSpec {
                channel,
                filter,
                requirement: strings_requirement(roles, scopes),
                resolver,
                stream,
            },
        ));
        Ok(())
    }

    /// Who may connect: `None` (anonymous), a `JwtAuth`, or an async callable
    /// `(payload) -> principal dict` that raises to refuse (close 4403).
    fn set_auth(&self, auth: Option<&Bound<'_, PyAny>>) -> PyResult<()> {
        *lock(&self.auth) = auth_spec(auth)?;
        Ok(())
    }

    /// The lifecycle hooks' dispatcher: `dispatch(kind, principal, id, detail)` is called on
    /// the loop for `"subscribe"`, `"complete"` and `"disconnect"` (see the package's
    /// `on_subscribe`, `on_complete`, `on_disconnect`). Before `start()`.
    fn set_hooks(&self, dispatch: Option<Py<PyAny>>) -> PyResult<()> {
        self.not_started("hooks")?;
        *lock(&self.hooks) = dispatch;
        Ok(())
    }

    /// What runs the queries and mutations clients send on the socket: the package's
    /// wrapper `call(query, variables, operation_name, kind, principal) -> (verdict,
    /// body)`, run on the loop `start()` is awaited on; `None` refuses them (the default).
    /// Before `start()`.
    fn set_operations(&self, call: Option<Py<PyAny>>) -> PyResult<()> {
        self.not_started("the operation executor")?;
        *lock(&self.operations) = call;
        Ok(())
    }

    /// Connects the bus and starts the engine. Await it on the event loop your resolvers
    /// and auth callable should run on.
    fn start<'py>(slf: Bound<'py, Self>, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let this = slf.get();
        if this
            .state
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .is_some()
            || this.stopped.load(std::sync::atomic::Ordering::Relaxed)
        {
            return Err(errors::error(
                Kind::State,
                "the executor was already started",
            ));
        }
        if this
            .starting
            .swap(true, std::sync::atomic::Ordering::SeqCst)
        {
            return Err(errors::error(
                Kind::State,
                "the executor is already starting",
            ));
        }
        let starting = Arc::clone(&this.starting);
        let settings = this.settings.clone();
        let builder = match this.service_builder(py, settings) {
            Ok(builder) => builder,
            Err(err) => {
                starting.store(false, std::sync::atomic::Ordering::SeqCst);
                return Err(err);
            }
        };
        let bus = this.bus.clone();
        let owner = slf.clone().unbind();
        let event_loop = crate::event_loop::running_loop(py)?.unbind();
        crate::awaitable::future_into_py(py, async move {
            let service = match Self::build_service(bus, builder).await {
                Ok(service) => service,
                Err(err) => {
                    // Nothing started: a later start() may try again (the bus may be back).
                    starting.store(false, std::sync::atomic::Ordering::SeqCst);
                    return Err(err);
                }
            };
            let started = Arc::new(Started {
                service,
                event_loop: Some(event_loop),
                direct: Mutex::new(HashMap::new()),
                servers: Mutex::new(Vec::new()),
            });
            // A frozen class: reachable without attaching to the interpreter.
            *owner
                .get()
                .state
                .write()
                .unwrap_or_else(PoisonError::into_inner) = Some(started);
            Ok(())
        })
    }

    /// Whether `start()` has completed and `shutdown()` has not been called.
    #[getter]
    fn started_(&self) -> bool {
        self.state
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .is_some()
    }

    /// Counters and gauges: connections, subscriptions, events published / delivered /
    /// dropped, security rejections, rate limits, resolver errors, overflows.
    fn get_metrics<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let started = self.started()?;
        let m = started.service.engine().metrics().snapshot();
        let dict = PyDict::new(py);
        dict.set_item("connections", m.connections)?;
        dict.set_item("subscriptions", m.subscriptions)?;
        dict.set_item("events_published", m.events_published)?;
        dict.set_item("events_delivered", m.events_delivered)?;
        dict.set_item("events_dropped", m.events_dropped)?;
        dict.set_item("security_rejections", m.security_rejections)?;
        dict.set_item("rate_limited", m.rate_limited)?;
        dict.set_item("resolver_errors", m.resolver_errors)?;
        dict.set_item("outbox_overflows", m.outbox_overflows)?;
        dict.set_item("subscribe_errors", m.subscribe_errors)?;
        dict.set_item("open_connections", started.service.open_connections())?;
        dict.set_item(
            "active_subscriptions",
            started.service.engine().subscription_count(),
        )?;
        let stats = started.service.engine().bus_stats();
        dict.set_item("bus", stats.mode)?;
        Ok(dict)
    }

    /// The metrics in the Prometheus text format.
    fn metrics_text(&self) -> PyResult<String> {
        Ok(self
            .started()?
            .service
            .engine()
            .metrics()
            .encode_prometheus())
    }

    /// Whether the bus is reachable (awaitable; raises `EventBusError` when it is not).
    fn health_check<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let started = self.started()?;
        crate::awaitable::future_into_py(py, async move {
            started
                .service
                .engine()
                .health_check()
                .await
                .map_err(|e| errors::error(Kind::Bus, e.to_string()))
        })
    }

    /// Closes every connection (1001 "Server shutting down"), waits up to `grace` seconds
    /// for them to finish, stops native servers and the engine. Awaitable; idempotent.
    #[pyo3(signature = (grace = 5.0))]
    fn shutdown<'py>(&self, py: Python<'py>, grace: f64) -> PyResult<Bound<'py, PyAny>> {
        let taken = self
            .state
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        self.stopped
            .store(true, std::sync::atomic::Ordering::Relaxed);
        let grace = Duration::try_from_secs_f64(grace).unwrap_or(Duration::from_secs(5));
        crate::awaitable::future_into_py(py, async move {
            let Some(started) = taken else {
                return Ok(true);
            };
            let directs: Vec<Arc<Direct>> = lock(&started.direct).drain().map(|(_, d)| d).collect();
            for direct in directs {
                started.service.engine().disconnect(direct.handle.id).await;
            }
            let drained = started.service.shutdown(grace).await;
            for stop in lock(&started.servers).drain(..) {
                stop.cancel();
            }
            Ok(drained)
        })
    }
}

/// Registers the classes.
pub(crate) fn register(module: &Bound<'_, PyModule>) -> PyResult<()> {
    module.add_class::<PySubscriptionExecutor>()?;
    module.add_class::<PyJwtAuth>()
}
