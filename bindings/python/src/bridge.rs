//! Python callables behind the engine's Rust seams: a resolver ([`Resolver`]) and an
//! authenticator ([`Authenticator`]). Each call runs the Python coroutine on the user's
//! event loop (the one the executor was started on) and awaits it from tokio, so the GIL is
//! held only to build the arguments and read the result.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use crate::event_loop::LoopLocals;
use async_trait::async_trait;
use fraiseql_subscriptions::security::{AuthError, Authenticator, Principal};
use fraiseql_subscriptions::{Event, Resolved, Resolver, ResolverError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple};
use serde_json::{Map, Value};
use tokio::sync::oneshot;

use crate::convert::{map_to_py, py_to_value, value_to_py};

/// What a resolver sees besides the event data and the subscription's variables: where the
/// event came from. One context serves a whole group of subscribers (field and variables),
/// so it holds nothing about any one connection.
#[pyclass(
    name = "ResolverContext",
    module = "fraiseql_subscriptions._native",
    frozen
)]
#[derive(Debug)]
pub(crate) struct PyResolverContext {
    /// The root field.
    #[pyo3(get)]
    field: String,
    /// The event's channel.
    #[pyo3(get)]
    channel: String,
    /// The event's type (`"message"` unless the publisher named one).
    #[pyo3(get)]
    event_type: String,
    /// The event's id.
    #[pyo3(get)]
    event_id: String,
    /// The event's tenant, if any.
    #[pyo3(get)]
    tenant_id: Option<String>,
    /// The correlation id the publisher gave, if any.
    #[pyo3(get)]
    correlation_id: Option<String>,
    /// When the event was published, in microseconds since the Unix epoch.
    #[pyo3(get)]
    timestamp_us: u64,
}

#[pymethods]
impl PyResolverContext {
    fn __repr__(&self) -> String {
        format!(
            "ResolverContext(field={:?}, channel={:?}, event_type={:?}, event_id={:?})",
            self.field, self.channel, self.event_type, self.event_id
        )
    }
}

/// A Python resolver. The Python package wraps the user's function into `call(event,
/// variables, ctx) -> (value, complete)`: a plain function for a sync resolver, a
/// coroutine function for an async one (it also logs exceptions and maps `None` to skip).
///
/// Calls are queued and run in batches on the user's event loop: one job
/// ([`LoopLocals::call_soon`], no GIL taken) wakes the loop for every call queued meanwhile
/// (all the groups of one event, and of the events behind it). A sync resolver is called right there, in the
/// loop's thread; an async one becomes a task whose result is awaited from tokio.
pub(crate) struct PyResolver {
    inner: Arc<ResolverInner>,
}

struct ResolverInner {
    call: Py<PyAny>,
    is_async: bool,
    locals: Arc<LoopLocals>,
    queue: Mutex<Vec<PendingCall>>,
    /// A drain callback is scheduled on the loop and has not started yet.
    scheduled: AtomicBool,
}

struct PendingCall {
    event: Arc<Event>,
    field: String,
    arguments: Map<String, Value>,
    reply: oneshot::Sender<Result<Resolved, ResolverError>>,
}

impl std::fmt::Debug for PyResolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PyResolver")
            .field("is_async", &self.inner.is_async)
            .finish_non_exhaustive()
    }
}

impl PyResolver {
    /// A resolver calling `call` on the loop of `locals`.
    ///
    /// # Errors
    /// When `inspect` cannot be imported.
    pub(crate) fn new(py: Python<'_>, call: Py<PyAny>, locals: Arc<LoopLocals>) -> PyResult<Self> {
        let is_async = py
            .import("inspect")?
            .call_method1("iscoroutinefunction", (call.bind(py),))?
            .is_truthy()?;
        Ok(Self {
            inner: Arc::new(ResolverInner {
                call,
                is_async,
                locals,
                queue: Mutex::new(Vec::new()),
                scheduled: AtomicBool::new(false),
            }),
        })
    }
}

/// An exception's message (`str(exc)`), or `fallback(exc)` when it has none.
fn exception_message(py: Python<'_>, err: &PyErr, fallback: impl FnOnce() -> String) -> String {
    err.value(py)
        .str()
        .map(|s| s.to_string())
        .ok()
        .filter(|m| !m.is_empty())
        .unwrap_or_else(fallback)
}

fn resolver_error(py: Python<'_>, err: &PyErr) -> ResolverError {
    let message = exception_message(py, err, || {
        err.get_type(py)
            .name()
            .map_or_else(|_| "resolver error".to_owned(), |n| n.to_string())
    });
    ResolverError { message }
}

/// Reads the wrapper's `(value, complete)`.
fn resolved_from(py: Python<'_>, result: &Bound<'_, PyAny>) -> Result<Resolved, ResolverError> {
    let (value, complete): (Bound<'_, PyAny>, bool) =
        result.extract().map_err(|e| resolver_error(py, &e))?;
    if value.is_none() {
        return Ok(if complete {
            Resolved::Complete
        } else {
            Resolved::Skip
        });
    }
    let value = py_to_value(&value).map_err(|e| resolver_error(py, &e))?;
    Ok(if complete {
        Resolved::ValueThenComplete(value)
    } else {
        Resolved::Value(value)
    })
}

impl ResolverInner {
    /// The wrapper's arguments for one call.
    fn arguments<'py>(
        py: Python<'py>,
        pending: &PendingCall,
    ) -> PyResult<(Bound<'py, PyAny>, Bound<'py, PyDict>, PyResolverContext)> {
        let data = pending
            .event
            .data()
            .value()
            .map_err(|e| pyo3::exceptions::PyValueError::new_err(e.to_string()))?;
        let event = &pending.event;
        let ctx = PyResolverContext {
            field: pending.field.clone(),
            channel: event.channel().to_owned(),
            event_type: event.event_type().to_owned(),
            event_id: event.id().to_owned(),
            tenant_id: event.tenant_id().map(str::to_owned),
            correlation_id: event.correlation_id().map(str::to_owned),
            timestamp_us: event.timestamp_us(),
        };
        Ok((
            value_to_py(py, data)?,
            map_to_py(py, &pending.arguments)?,
            ctx,
        ))
    }

    /// Runs every queued call (on the loop's thread).
    fn drain(self: &Arc<Self>, py: Python<'_>) {
        self.scheduled.store(false, Ordering::SeqCst);
        let batch = std::mem::take(&mut *self.queue.lock().unwrap_or_else(PoisonError::into_inner));
        for pending in batch {
            let called =
                Self::arguments(py, &pending).and_then(|args| self.call.bind(py).call1(args));
            let result = match called {
                Err(err) => Err(resolver_error(py, &err)),
                Ok(out) if !self.is_async => resolved_from(py, &out),
                Ok(coroutine) => {
                    // An async resolver: run it as a task; its done-callback replies.
                    schedule_task(py, &self.locals, &coroutine, pending.reply);
                    continue;
                }
            };
            let _ = pending.reply.send(result);
        }
    }

    /// Wakes the loop for the queued calls, unless a wake-up is already on its way.
    fn schedule(self: &Arc<Self>) {
        if self.scheduled.swap(true, Ordering::SeqCst) {
            return;
        }
        let inner = Arc::clone(self);
        let scheduled = self.locals.call_soon(Box::new(move |py| {
            inner.drain(py);
            Ok(())
        }));
        if scheduled {
            return;
        }
        let failure = ResolverError {
            message: "the event loop is gone (closed, or the interpreter is exiting)".to_owned(),
        };
        // Every queued call fails now instead of hanging.
        self.scheduled.store(false, Ordering::SeqCst);
        let batch = std::mem::take(&mut *self.queue.lock().unwrap_or_else(PoisonError::into_inner));
        for pending in batch {
            let _ = pending.reply.send(Err(failure.clone()));
        }
    }
}

type Reply = oneshot::Sender<Result<Resolved, ResolverError>>;

/// Runs `coroutine` as a task on the loop; its done-callback replies.
fn schedule_task(py: Python<'_>, locals: &LoopLocals, coroutine: &Bound<'_, PyAny>, reply: Reply) {
    let task = match locals
        .event_loop(py)
        .call_method1("create_task", (coroutine,))
    {
        Ok(task) => task,
        Err(err) => {
            let _ = reply.send(Err(resolver_error(py, &err)));
            return;
        }
    };
    let done = TaskDone {
        reply: Mutex::new(Some(reply)),
    };
    if task.call_method1("add_done_callback", (done,)).is_err() {
        // Nobody would hear the result: cancel the task. The reply was dropped with the
        // callback, so the waiting resolve reports the call as cancelled.
        let _ = task.call_method0("cancel");
    }
}

/// The done-callback of an async resolver's task.
#[pyclass(frozen)]
struct TaskDone {
    reply: Mutex<Option<Reply>>,
}

#[pymethods]
impl TaskDone {
    fn __call__(&self, py: Python<'_>, task: &Bound<'_, PyAny>) {
        let Some(reply) = self
            .reply
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        else {
            return;
        };
        let result = match task.call_method0("result") {
            Ok(out) => resolved_from(py, &out),
            Err(err) => Err(resolver_error(py, &err)),
        };
        let _ = reply.send(result);
    }
}

#[async_trait]
impl Resolver for PyResolver {
    async fn resolve(
        &self,
        event: &Arc<Event>,
        field: &str,
        arguments: &Map<String, Value>,
    ) -> Result<Resolved, ResolverError> {
        let (reply, answer) = oneshot::channel();
        self.inner
            .queue
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(PendingCall {
                event: Arc::clone(event),
                field: field.to_owned(),
                arguments: arguments.clone(),
                reply,
            });
        self.inner.schedule();
        answer.await.unwrap_or_else(|_| {
            Err(ResolverError {
                message: "the resolver was cancelled (the event loop stopped)".to_owned(),
            })
        })
    }
}

/// A Python authenticator: `await call(payload)` returns the principal as a dict with
/// `user_id`, `tenant_id`, `roles`, `scopes`, `claims`, `expires_at` (seconds since the
/// epoch), any of them absent, or raises to refuse the connection (close 4403).
pub(crate) struct PyAuthenticator {
    call: Arc<Py<PyAny>>,
    locals: Arc<LoopLocals>,
}

impl std::fmt::Debug for PyAuthenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PyAuthenticator").finish_non_exhaustive()
    }
}

impl PyAuthenticator {
    pub(crate) fn new(call: Py<PyAny>, locals: Arc<LoopLocals>) -> Self {
        Self {
            call: Arc::new(call),
            locals,
        }
    }
}

fn auth_error(py: Python<'_>, err: &PyErr) -> AuthError {
    AuthError::new(exception_message(py, err, || "Forbidden".to_owned()))
}

fn strings(dict: &Bound<'_, PyDict>, key: &str) -> PyResult<HashSet<String>> {
    match dict.get_item(key)? {
        Some(v) if !v.is_none() => v
            .extract::<Vec<String>>()
            .or_else(|_| {
                v.extract::<HashSet<String>>()
                    .map(|s| s.into_iter().collect())
            })
            .map(|v| v.into_iter().collect()),
        _ => Ok(HashSet::new()),
    }
}

fn optional_string(dict: &Bound<'_, PyDict>, key: &str) -> PyResult<Option<String>> {
    match dict.get_item(key)? {
        Some(v) if !v.is_none() => Ok(Some(v.str()?.to_string())),
        _ => Ok(None),
    }
}

/// Reads the principal dict the Python package's auth wrapper returns.
pub(crate) fn principal_from_dict(dict: &Bound<'_, PyDict>) -> PyResult<Principal> {
    let mut principal = Principal {
        user_id: optional_string(dict, "user_id")?,
        tenant_id: optional_string(dict, "tenant_id")?,
        roles: strings(dict, "roles")?,
        scopes: strings(dict, "scopes")?,
        ..Principal::default()
    };
    if let Some(claims) = dict.get_item("claims")?.filter(|v| !v.is_none()) {
        if let Value::Object(map) = py_to_value(&claims)? {
            principal.claims = map;
        }
    }
    if let Some(exp) = dict.get_item("expires_at")?.filter(|v| !v.is_none()) {
        let secs: f64 = exp.extract()?;
        let at = Duration::try_from_secs_f64(secs.max(0.0)).unwrap_or_default();
        principal.expires_at = Some(SystemTime::UNIX_EPOCH + at);
    }
    Ok(principal)
}

#[async_trait]
impl Authenticator for PyAuthenticator {
    async fn authenticate(
        &self,
        payload: Option<&Map<String, Value>>,
    ) -> Result<Principal, AuthError> {
        let call = Arc::clone(&self.call);
        let payload = payload.cloned();
        // The call and the reading of its result both happen in the loop's thread.
        let verdict = crate::awaitable::run_on_loop(
            &self.locals,
            move |py| {
                let payload = match payload {
                    Some(map) => map_to_py(py, &map)?.into_any(),
                    None => py.None().into_bound(py),
                };
                call.bind(py).call1(PyTuple::new(py, [payload])?)
            },
            |py, outcome| {
                let result = outcome.map_err(|e| auth_error(py, &e))?;
                if result.is_none() {
                    return Ok(Principal::anonymous());
                }
                let dict = result.cast::<PyDict>().map_err(|_| {
                    AuthError::new("Internal error: the auth callable returned no principal")
                })?;
                principal_from_dict(dict).map_err(|e| auth_error(py, &e))
            },
        );
        verdict
            .await
            .unwrap_or_else(|| Err(AuthError::new("the server is shutting down")))
    }
}

/// The principal as the dict Python hooks and `JwtAuth.verify` return.
///
/// # Errors
/// Only when Python cannot allocate.
pub(crate) fn principal_to_dict<'py>(
    py: Python<'py>,
    principal: &Principal,
) -> PyResult<Bound<'py, PyDict>> {
    let dict = PyDict::new(py);
    dict.set_item("user_id", principal.user_id.as_deref())?;
    dict.set_item("tenant_id", principal.tenant_id.as_deref())?;
    let mut roles: Vec<&String> = principal.roles.iter().collect();
    roles.sort();
    let mut scopes: Vec<&String> = principal.scopes.iter().collect();
    scopes.sort();
    dict.set_item("roles", roles)?;
    dict.set_item("scopes", scopes)?;
    dict.set_item("claims", crate::convert::map_to_py(py, &principal.claims)?)?;
    let expires = principal
        .expires_at
        .and_then(|at| at.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_secs_f64());
    dict.set_item("expires_at", expires)?;
    Ok(dict)
}
