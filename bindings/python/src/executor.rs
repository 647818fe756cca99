//! `PySubscriptionExecutor`: one engine (fields, bus, auth, limits) and everything Python
//! does with it — publish, serve connections for the ASGI adapters ([`PySession`]), serve
//! natively ([`PyNativeServer`]), the direct subscription API of the original plan, metrics
//! and shutdown. Every call that can wait releases the GIL or is awaitable.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use fraiseql_protocol::{
    encode_complete, encode_error, encode_next, negotiate_subprotocol_header, Protocol,
    SubscribePayload, SubscriptionKey,
};
use fraiseql_server::{JwtAuthenticator, ServiceBuilder, SubscriptionService};
use fraiseql_subscriptions::filter::FilterSpec;
use fraiseql_subscriptions::security::{AllowAnonymous, Authenticator, Principal, Requirement};
use fraiseql_subscriptions::{Audience, ConnectionHandle, Event, EventData, FieldConfig, Outbound};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::bridge::{principal_to_dict, PyAuthenticator, PyResolver};
use crate::config::{PyEventBusConfig, Settings};
use crate::convert::{py_to_object, py_to_value};
use crate::errors::{self, config, Kind};
use crate::hooks::PyObserver;
use crate::operations::PyOperationExecutor;
use crate::session::PySession;
use crate::streams::PyStreamSource;

use crate::interpreter::runtime;

/// A root field as registered, built into a [`FieldConfig`] when the executor starts.
#[derive(Debug)]
struct FieldSpec {
    channel: String,
    filter: Option<FilterSpec>,
    requirement: Option<Requirement>,
    resolver: Option<Py<PyAny>>,
    stream: Option<Py<PyAny>>,
}

/// Who may connect.
#[derive(Debug)]
enum AuthSpec {
    Anonymous,
    Python(Py<PyAny>),
    Rust(Arc<dyn Authenticator>),
}

/// A subscription of the direct API: its own engine connection, so its outbox holds only
/// its frames.
#[derive(Debug)]
struct Direct {
    connection_id: String,
    handle: ConnectionHandle,
    /// Its last frame (`complete` or `error`) was read: reads return `None` from now on.
    ended: std::sync::atomic::AtomicBool,
}

impl Direct {
    /// The next frame waiting, if any; notes the end when it is `complete` or `error`.
    fn take_frame(&self, id: &str, batch: &mut Vec<Outbound>) -> Option<String> {
        let message = batch.pop()?;
        if matches!(message, Outbound::Complete { .. } | Outbound::Error { .. }) {
            self.ended.store(true, std::sync::atomic::Ordering::Release);
        }
        encode_direct(id, message)
    }

    fn has_ended(&self) -> bool {
        self.ended.load(std::sync::atomic::Ordering::Acquire)
    }
}

#[derive(Debug)]
struct Started {
    service: SubscriptionService,
    /// The loop `start()` ran on: resolvers, auth, hooks and streams run there. `None`
    /// when the executor started itself from synchronous code (it has none of those).
    event_loop: Option<Py<PyAny>>,
    direct: Mutex<HashMap<String, Arc<Direct>>>,
    servers: Mutex<Vec<CancellationToken>>,
}

/// Verifies JWTs in `connection_init` (`token` or `Authorization: Bearer ...`) in Rust:
/// HS256 with a shared secret or RS256 with a PEM public key; `exp` is required, `nbf` is
/// checked, and `aud` / `iss` are required and checked when `audience=` / `issuer=` are
/// given. Claims `sub` (user), `tenant_id` (or `tenant_claim=`; `tenant` as a fallback),
/// `roles` and `scope` / `scopes` / `scp` (a list or a space-separated string) become the
/// principal.
#[pyclass(name = "JwtAuth", module = "fraiseql_subscriptions._native", frozen)]
#[derive(Debug, Clone)]
pub(crate) struct PyJwtAuth {
    inner: JwtAuthenticator,
}

#[pymethods]
impl PyJwtAuth {
    #[new]
    #[pyo3(signature = (*, secret = None, public_key_pem = None, audience = None, issuer = None, leeway = None, tenant_claim = None))]
    fn new(
        secret: Option<String>,
        public_key_pem: Option<String>,
        audience: Option<Vec<String>>,
        issuer: Option<Vec<String>>,
        leeway: Option<f64>,
        tenant_claim: Option<String>,
    ) -> PyResult<Self> {
        let mut inner = match (secret, public_key_pem) {
            (Some(secret), None) => JwtAuthenticator::hs256(secret.as_bytes()),
            (None, Some(pem)) => JwtAuthenticator::rs256_pem(pem.as_bytes()),
            _ => {
                return Err(config(
                    "JwtAuth needs exactly one of secret= (HS256) or public_key_pem= (RS256)",
                ))
            }
        }
        .map_err(|e| config(e.to_string()))?;
        if let Some(audience) = audience {
            inner = inner.with_audience(audience);
        }
        if let Some(issuer) = issuer {
            inner = inner.with_issuer(issuer);
        }
        if let Some(leeway) = leeway {
            let leeway = Duration::try_from_secs_f64(leeway).map_err(|_| {
                config(format!(
                    "leeway must be a non-negative number of seconds, got {leeway}"
                ))
            })?;
            inner = inner.with_leeway(leeway);
        }
        if let Some(claim) = tenant_claim {
            inner = inner.with_tenant_claim(claim);
        }
        Ok(Self { inner })
    }

    /// Verifies `token` and returns the principal as a dict; raises `AuthenticationError`
    /// with the reason when it is refused.
    fn verify<'py>(&self, py: Python<'py>, token: &str) -> PyResult<Bound<'py, PyDict>> {
        let principal = self
            .inner
            .verify(token)
            .map_err(|e| errors::error(Kind::Authentication, e.to_string()))?;
        principal_to_dict(py, &principal)
    }
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

fn strings_requirement(
    roles: Option<Vec<String>>,
    scopes: Option<Vec<String>>,
) -> Option<Requirement> {
    let roles = roles.unwrap_or_default();
    let scopes = scopes.unwrap_or_default();
    if roles.is_empty() && scopes.is_empty() {
        return None;
    }
    let mut requirement = Requirement::any_role(roles);
    requirement.all_scopes = scopes.into_iter().collect();
    Some(requirement)
}

/// How long `publish_event` waits for the dispatch of its event to this process's own
/// subscribers before returning anyway (the event was published; a bus may have lost it).
const PUBLISH_EVENT_WAIT: Duration = Duration::from_secs(10);

/// The arguments of one publish, read with the GIL held.
struct Publish {
    event: Event,
}

#[allow(clippy::too_many_arguments)]
fn build_event(
    channel: &str,
    data: &Bound<'_, PyAny>,
    event_type: Option<String>,
    tenant_id: Option<String>,
    audience: Option<&Bound<'_, PyAny>>,
    id: Option<String>,
    correlation_id: Option<String>,
    last: bool,
    global: bool,
) -> PyResult<Publish> {
    fraiseql_subscriptions::validate_channel(channel).map_err(|e| config(e.to_string()))?;
    if global && tenant_id.is_some() {
        return Err(config(
            "an event is for one tenant (tenant_id=...) or for every tenant (global_=True), \
             not both",
        ));
    }
    let value = py_to_value(data)?;
    let mut event = Event::new(channel, EventData::from_value(value));
    if let Some(t) = event_type {
        if t.is_empty() {
            return Err(config("event_type is empty"));
        }
        event = event.with_type(t);
    }
    if let Some(t) = tenant_id {
        event = event.with_tenant(t);
    }
    if let Some(a) = audience.filter(|a| !a.is_none()) {
        event = event.with_audience(audience_from(a)?);
    }
    if let Some(id) = id {
        event = event.with_id(id);
    }
    if let Some(c) = correlation_id {
        event = event.with_correlation_id(c);
    }
    if last {
        event = event.final_event();
    }
    if global {
        event = event.global();
    }
    Ok(Publish { event })
}

/// `audience=` is a list of user ids, or a dict `{"users": [...], "roles": [...]}`.
fn audience_from(obj: &Bound<'_, PyAny>) -> PyResult<Audience> {
    let bad = || {
        config("audience must be a list of user ids or a dict {\"users\": [...], \"roles\": [...]}")
    };
    match py_to_value(obj)? {
        Value::Array(items) => {
            let users: Option<Vec<String>> = items
                .into_iter()
                .map(|v| v.as_str().map(str::to_owned))
                .collect();
            Ok(Audience::users(users.ok_or_else(bad)?))
        }
        Value::Object(map) => {
            let list = |key: &str| -> PyResult<Vec<String>> {
                match map.get(key) {
                    None | Some(Value::Null) => Ok(Vec::new()),
                    Some(Value::Array(items)) => items
                        .iter()
                        .map(|v| v.as_str().map(str::to_owned).ok_or_else(bad))
                        .collect(),
                    Some(_) => Err(bad()),
                }
            };
            if map.keys().any(|k| k != "users" && k != "roles") {
                return Err(bad());
            }
            let mut audience = Audience::users(list("users")?);
            audience.roles = list("roles")?.into_iter().collect();
            Ok(audience)
        }
        _ => Err(bad()),
    }
}

/// Refuses a blocking call made on the thread running the executor's own event loop. The
/// engine needs that loop to run resolvers (and auth, hooks, streams); blocking it while the
/// bus is full would wait for the loop forever. `asyncio.run` refuses to nest for the same
/// reason.
fn refuse_blocking_on_own_loop(py: Python<'_>, started: &Started, call: &str) -> PyResult<()> {
    let Some(event_loop) = &started.event_loop else {
        return Ok(());
    };
    let running = py.import("asyncio")?.call_method0("_get_running_loop")?;
    if running.as_ptr() == event_loop.as_ptr() {
        return Err(errors::error(
            Kind::State,
            format!(
                "{call}() blocks its thread, and this thread runs the event loop the manager's \
                 resolvers, auth and hooks run on: waiting there can deadlock. In async code \
                 use `await manager.publish(...)`; {call}() is for other threads and sync code"
            ),
        ));
    }
    Ok(())
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

    /// The service builder: settings, fields (with their Python resolvers and streams),
    /// auth and hooks, bound to the running event loop when Python code needs one.
    fn service_builder(&self, py: Python<'_>, settings: Settings) -> PyResult<ServiceBuilder> {
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
                py.detach(|| runtime.block_on(build_service(bus, builder)))
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

    fn direct(&self, subscription_id: &str) -> PyResult<Arc<Direct>> {
        let started = self.started()?;
        let direct = lock(&started.direct).get(subscription_id).cloned();
        direct.ok_or_else(|| {
            errors::error(
                Kind::Subscribe,
                format!("no subscription {subscription_id:?} is registered"),
            )
        })
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
        crate::interpreter::future_into_py(py, async move {
            let service = match build_service(bus, builder).await {
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

    /// Publishes `data` on `channel` (awaitable). `audience` restricts who sees it (a list of
    /// user ids or `{"users": [...], "roles": [...]}`); `final=True` ends each subscription
    /// it reaches with `complete`; `global_=True` reaches every tenant in multi-tenant mode.
    #[pyo3(signature = (channel, data, *, event_type = None, tenant_id = None, audience = None, id = None, correlation_id = None, r#final = false, global_ = false))]
    #[allow(clippy::too_many_arguments)]
    fn publish<'py>(
        &self,
        py: Python<'py>,
        channel: &str,
        data: &Bound<'py, PyAny>,
        event_type: Option<String>,
        tenant_id: Option<String>,
        audience: Option<&Bound<'py, PyAny>>,
        id: Option<String>,
        correlation_id: Option<String>,
        r#final: bool,
        global_: bool,
    ) -> PyResult<Bound<'py, PyAny>> {
        let started = self.started()?;
        let Publish { event } = build_event(
            channel,
            data,
            event_type,
            tenant_id,
            audience,
            id,
            correlation_id,
            r#final,
            global_,
        )?;
        crate::interpreter::future_into_py(py, async move {
            started
                .service
                .engine()
                .publish(event)
                .await
                .map_err(|e| errors::error(Kind::Publish, e.to_string()))
        })
    }

    /// Like `publish`, blocking (with the GIL released) until the bus took the event; for
    /// code outside the executor's event loop (another thread, sync code). On the thread of
    /// that loop it raises `ExecutorStateError`: blocking the loop the engine needs for
    /// resolvers would deadlock once the bus is full.
    #[pyo3(signature = (channel, data, *, event_type = None, tenant_id = None, audience = None, id = None, correlation_id = None, r#final = false, global_ = false))]
    #[allow(clippy::too_many_arguments)]
    fn publish_sync(
        &self,
        py: Python<'_>,
        channel: &str,
        data: &Bound<'_, PyAny>,
        event_type: Option<String>,
        tenant_id: Option<String>,
        audience: Option<&Bound<'_, PyAny>>,
        id: Option<String>,
        correlation_id: Option<String>,
        r#final: bool,
        global_: bool,
    ) -> PyResult<()> {
        let started = self.ensure_started(py, "publish_sync")?;
        refuse_blocking_on_own_loop(py, &started, "publish_sync")?;
        let Publish { event } = build_event(
            channel,
            data,
            event_type,
            tenant_id,
            audience,
            id,
            correlation_id,
            r#final,
            global_,
        )?;
        let runtime = runtime()?;
        py.detach(|| runtime.block_on(started.service.engine().publish(event)))
            .map_err(|e| errors::error(Kind::Publish, e.to_string()))
    }

    /// Publishes the events of a JSON body in the native server's `POST /publish` format
    /// (one event object or an array of them: `channel`, `data`, `type`, `tenant_id`,
    /// `audience`, `id`, `final`, `global`), parsed and checked in Rust; awaitable, resolves
    /// to the number published. A malformed body raises `ConfigurationError` saying what to
    /// fix, before anything is published.
    fn publish_json<'py>(&self, py: Python<'py>, body: &[u8]) -> PyResult<Bound<'py, PyAny>> {
        let started = self.started()?;
        let events =
            fraiseql_server::parse_publish_body(body).map_err(|e| config(e.to_string()))?;
        crate::interpreter::future_into_py(py, async move {
            let count = events.len();
            for event in events {
                started
                    .service
                    .engine()
                    .publish(event)
                    .await
                    .map_err(|e| errors::error(Kind::Publish, e.to_string()))?;
            }
            Ok(count)
        })
    }

    /// The original plan's form: `publish_event(event_type, channel, data)`, blocking with
    /// the GIL released (starting the executor first if needed). It returns once this
    /// process's own subscribers have the event in their queues, so a `next_event` right
    /// after it sees it (or after `PUBLISH_EVENT_WAIT` at most, when the bus lost it).
    fn publish_event(
        &self,
        py: Python<'_>,
        event_type: String,
        channel: &str,
        data: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        let started = self.ensure_started(py, "publish_event")?;
        refuse_blocking_on_own_loop(py, &started, "publish_event")?;
        let Publish { event } = build_event(
            channel,
            data,
            Some(event_type),
            None,
            None,
            None,
            None,
            false,
            false,
        )?;
        let runtime = runtime()?;
        py.detach(|| {
            runtime.block_on(
                started
                    .service
                    .engine()
                    .publish_dispatched(event, PUBLISH_EVENT_WAIT),
            )
        })
        .map(drop)
        .map_err(|e| errors::error(Kind::Publish, e.to_string()))
    }

    /// The subprotocol to accept for a client offering `offered` (the
    /// `Sec-WebSocket-Protocol` header value or a list), or `None` when none is supported.
    #[staticmethod]
    fn negotiate(offered: &Bound<'_, PyAny>) -> PyResult<Option<&'static str>> {
        let header = if let Ok(s) = offered.extract::<String>() {
            s
        } else {
            offered.extract::<Vec<String>>()?.join(",")
        };
        Ok(negotiate_subprotocol_header(&header)
            .ok()
            .map(|p| p.subprotocol()))
    }

    /// Opens one connection for a transport that owns the socket (the ASGI adapters):
    /// `subprotocol` is what `negotiate` chose, or `None` (the session then closes 4406).
    /// `auth` (a `JwtAuth`, or an async callable `(payload) -> principal dict` that raises
    /// to refuse with 4403) decides this connection's `connection_init` instead of the
    /// executor's; a callable runs on the loop this is called from.
    /// Raises `SubscriptionError` when shutting down or at `max_connections`.
    #[pyo3(signature = (subprotocol, auth = None))]
    fn open_session(
        &self,
        py: Python<'_>,
        subprotocol: Option<&str>,
        auth: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<PySession> {
        let started = self.started()?;
        let authenticator: Option<Arc<dyn Authenticator>> = match auth_spec(auth)? {
            AuthSpec::Anonymous => None,
            AuthSpec::Rust(a) => Some(a),
            AuthSpec::Python(f) => {
                let running = crate::event_loop::running_loop(py)?;
                let locals = match crate::event_loop::LoopLocals::of(&running) {
                    Some(locals) => locals,
                    None => crate::event_loop::LoopLocals::current(py)?,
                };
                Some(Arc::new(PyAuthenticator::new(f, locals)))
            }
        };
        let protocol = match subprotocol {
            Some(name) => Protocol::from_subprotocol(name)
                .ok_or_else(|| format!("Unsupported subprotocol {name:?}")),
            None => {
                Err("No supported subprotocol: use graphql-transport-ws or graphql-ws".to_owned())
            }
        };
        let _entered = runtime()?.enter();
        let session = started
            .service
            .session_with(protocol, authenticator)
            .map_err(|e| errors::error(Kind::State, e.to_string()))?;
        Ok(PySession::new(session))
    }

    /// Serves the native Rust WebSocket/HTTP server on `host:port` (port 0 picks one) with
    /// this executor's fields, auth and bus; returns the running server.
    #[pyo3(signature = (host, port, app = None))]
    fn serve<'py>(
        &self,
        py: Python<'py>,
        host: String,
        port: u16,
        app: Option<PyRef<'py, crate::asgi::PyHostedApp>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let started = self.started()?;
        // The hosted app runs on the loop `serve` is awaited on.
        let router = match app {
            None => started.service.router(),
            Some(app) => {
                let running = crate::event_loop::running_loop(py)?;
                let locals = match crate::event_loop::LoopLocals::of(&running) {
                    Some(locals) => locals,
                    None => crate::event_loop::LoopLocals::current(py)?,
                };
                started
                    .service
                    .router_with_fallback(app.service(py, locals))
            }
        };
        crate::interpreter::future_into_py(py, async move {
            let listener = tokio::net::TcpListener::bind((host.as_str(), port))
                .await
                .map_err(|e| config(format!("cannot listen on {host}:{port}: {e}")))?;
            let local = listener.local_addr().map_err(|e| config(e.to_string()))?;
            let stop = CancellationToken::new();
            lock(&started.servers).push(stop.clone());
            let (done_tx, done_rx) = tokio::sync::watch::channel(false);
            let app = router;
            let until = stop.clone();
            tokio::spawn(async move {
                let served = fraiseql_server::serve_http(
                    listener,
                    app,
                    fraiseql_server::HttpLimits::default(),
                    async move { until.cancelled().await },
                )
                .await;
                if let Err(err) = served {
                    tracing::error!("the native server failed: {err}");
                }
                let _ = done_tx.send(true);
            });
            Ok(crate::session::PyNativeServer::new(local, stop, done_rx))
        })
    }

    /// The direct API: subscribes `subscription_id` (the id on the wire) of
    /// `connection_id`, as `user_id` of `tenant_id` with `roles`. Refusals raise
    /// `SubscribeError` with the GraphQL errors. Blocks with the GIL released.
    #[pyo3(signature = (connection_id, subscription_id, query, operation_name = None, variables = None, user_id = None, tenant_id = None, roles = None))]
    #[allow(clippy::too_many_arguments)]
    fn register_subscription(
        &self,
        py: Python<'_>,
        connection_id: String,
        subscription_id: String,
        query: String,
        operation_name: Option<String>,
        variables: Option<&Bound<'_, PyAny>>,
        user_id: Option<String>,
        tenant_id: Option<String>,
        roles: Option<Vec<String>>,
    ) -> PyResult<()> {
        let started = self.ensure_started(py, "register_subscription")?;
        let payload = SubscribePayload {
            query,
            operation_name,
            variables: py_to_object(variables, "variables")?,
            extensions: None,
        };
        let principal = Principal {
            user_id: user_id.filter(|u| !u.is_empty()),
            tenant_id: tenant_id.filter(|t| !t.is_empty()),
            roles: roles.unwrap_or_default().into_iter().collect(),
            ..Principal::default()
        };
        if lock(&started.direct).contains_key(&subscription_id) {
            return Err(errors::error(
                Kind::Subscribe,
                format!("subscription {subscription_id:?} is already registered"),
            ));
        }
        let engine = Arc::clone(started.service.engine());
        let runtime = runtime()?;
        let result = py.detach(|| {
            runtime.block_on(async {
                let handle = engine.connect(principal).map_err(|r| r.message)?;
                match engine
                    .subscribe(handle.id, SubscriptionKey::from_raw(1), &payload)
                    .await
                {
                    Ok(_) => Ok(handle),
                    Err(errors) => {
                        engine.disconnect(handle.id).await;
                        Err(errors
                            .iter()
                            .map(|e| e.message.clone())
                            .collect::<Vec<_>>()
                            .join("; "))
                    }
                }
            })
        });
        let handle = result.map_err(|message| errors::error(Kind::Subscribe, message))?;
        lock(&started.direct).insert(
            subscription_id,
            Arc::new(Direct {
                connection_id,
                handle,
                ended: std::sync::atomic::AtomicBool::new(false),
            }),
        );
        Ok(())
    }

    /// The next frame of a direct subscription (`next`, `error` or `complete`, as
    /// graphql-transport-ws bytes), or `None` when none is waiting or the subscription has
    /// ended (its `complete` or `error` was read). Never blocks.
    fn next_event<'py>(
        &self,
        py: Python<'py>,
        subscription_id: &str,
    ) -> PyResult<Option<Bound<'py, PyBytes>>> {
        let direct = self.direct(subscription_id)?;
        if direct.has_ended() {
            return Ok(None);
        }
        let mut batch = Vec::with_capacity(1);
        direct.handle.outbox.try_recv_batch(&mut batch, 1);
        Ok(direct
            .take_frame(subscription_id, &mut batch)
            .map(|frame| PyBytes::new(py, frame.as_bytes())))
    }

    /// Awaits the next frame of a direct subscription; `None` once it has ended (its
    /// `complete` or `error` was read).
    fn next_event_async<'py>(
        &self,
        py: Python<'py>,
        subscription_id: String,
    ) -> PyResult<Bound<'py, PyAny>> {
        let direct = self.direct(&subscription_id)?;
        crate::interpreter::future_into_py(py, async move {
            let mut batch = Vec::with_capacity(1);
            loop {
                if direct.has_ended() {
                    return Ok(None);
                }
                let open = direct.handle.outbox.recv_batch(&mut batch, 1).await;
                if let Some(frame) = direct.take_frame(&subscription_id, &mut batch) {
                    return Ok(Some(frame.into_bytes()));
                }
                if !open {
                    return Ok(None);
                }
            }
        })
    }

    /// Ends a direct subscription and frees everything it held.
    fn complete_subscription(&self, py: Python<'_>, subscription_id: &str) -> PyResult<()> {
        let started = self.started()?;
        let Some(direct) = lock(&started.direct).remove(subscription_id) else {
            return Ok(());
        };
        let engine = Arc::clone(started.service.engine());
        let runtime = runtime()?;
        py.detach(|| runtime.block_on(engine.disconnect(direct.handle.id)));
        Ok(())
    }

    /// Ends every direct subscription of `connection_id`.
    fn complete_connection(&self, py: Python<'_>, connection_id: &str) -> PyResult<()> {
        let started = self.started()?;
        let ids: Vec<String> = lock(&started.direct)
            .iter()
            .filter(|(_, d)| d.connection_id == connection_id)
            .map(|(id, _)| id.clone())
            .collect();
        for id in ids {
            self.complete_subscription(py, &id)?;
        }
        Ok(())
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
        crate::interpreter::future_into_py(py, async move {
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
        crate::interpreter::future_into_py(py, async move {
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

/// Reads an `auth` argument: `None`, a `JwtAuth` or a callable.
fn auth_spec(auth: Option<&Bound<'_, PyAny>>) -> PyResult<AuthSpec> {
    Ok(match auth {
        None => AuthSpec::Anonymous,
        Some(a) if a.is_none() => AuthSpec::Anonymous,
        Some(a) => {
            if let Ok(jwt) = a.cast::<PyJwtAuth>() {
                AuthSpec::Rust(Arc::new(jwt.get().inner.clone()))
            } else if a.is_callable() {
                AuthSpec::Python(a.clone().unbind())
            } else {
                return Err(config("auth must be None, a JwtAuth or a callable"));
            }
        }
    })
}

/// Connects the bus and builds the service on it.
async fn build_service(
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

/// A direct subscription's outbound message as a graphql-transport-ws frame.
fn encode_direct(id: &str, message: Outbound) -> Option<String> {
    let protocol = Protocol::GraphqlTransportWs;
    match message {
        Outbound::Next { payload, .. } => Some(encode_next(protocol, id, &payload)),
        Outbound::Error { errors, .. } => Some(encode_error(protocol, id, &errors)),
        Outbound::Complete { .. } => Some(encode_complete(protocol, id)),
        Outbound::Close { .. } => None,
    }
}

/// Registers the classes.
pub(crate) fn register(module: &Bound<'_, PyModule>) -> PyResult<()> {
    module.add_class::<PySubscriptionExecutor>()?;
    module.add_class::<PyJwtAuth>()
}
