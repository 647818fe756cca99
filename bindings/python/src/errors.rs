//! The exception hierarchy, rooted at `SubscriptionError`. Classes are created when the
//! module loads so that some can also derive from the built-in they refine (a bad setting
//! is a `ValueError`, an unreachable bus a `ConnectionError`), and `except ValueError`
//! keeps working for callers that do not know ours.

use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyTuple, PyType};

/// The module the classes say they belong to.
const MODULE: &str = "fraiseql_subscriptions._native";

/// Which of our exceptions.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Kind {
    /// A setting, argument or value is invalid (also a `ValueError`).
    Configuration,
    /// The event bus could not be reached or failed (also a `ConnectionError`).
    Bus,
    /// A publish failed (an `EventBusError`).
    Publish,
    /// A subscription was refused (its GraphQL errors are in the message).
    Subscribe,
    /// The executor is not in the state the call needs (also a `RuntimeError`).
    State,
    /// A connection's credentials were refused (raise it from an `auth` callable).
    Authentication,
}

struct Classes {
    configuration: Py<PyType>,
    bus: Py<PyType>,
    publish: Py<PyType>,
    subscribe: Py<PyType>,
    state: Py<PyType>,
    authentication: Py<PyType>,
}

static CLASSES: PyOnceLock<Classes> = PyOnceLock::new();

fn make<'py>(
    py: Python<'py>,
    name: &str,
    doc: &str,
    bases: &[&Bound<'py, PyAny>],
) -> PyResult<Py<PyType>> {
    let namespace = PyDict::new(py);
    namespace.set_item("__module__", MODULE)?;
    namespace.set_item("__doc__", doc)?;
    let bases = PyTuple::new(py, bases)?;
    let class = py
        .import("builtins")?
        .getattr("type")?
        .call1((name, bases, namespace))?;
    Ok(class.cast_into::<PyType>()?.unbind())
}

/// Creates the classes and adds them to `module`.
pub(crate) fn register(module: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = module.py();
    let builtins = py.import("builtins")?;
    let exception = builtins.getattr("Exception")?;
    let value_error = builtins.getattr("ValueError")?;
    let connection_error = builtins.getattr("ConnectionError")?;
    let runtime_error = builtins.getattr("RuntimeError")?;
    let base = make(
        py,
        "SubscriptionError",
        "Base of every FraiseQL subscriptions error.",
        &[&exception],
    )?;
    let b = base.bind(py).clone().into_any();
    let configuration = make(
        py,
        "ConfigurationError",
        "A setting, argument or value is invalid; the message names it and says what to use.",
        &[&b, &value_error],
    )?;
    let bus = make(
        py,
        "EventBusError",
        "The event bus could not be reached or failed.",
        &[&b, &connection_error],
    )?;
    let publish = make(
        py,
        "PublishError",
        "An event could not be published.",
        &[&bus.bind(py).clone().into_any()],
    )?;
    let subscribe = make(
        py,
        "SubscribeError",
        "A subscription was refused; the message carries its GraphQL errors.",
        &[&b],
    )?;
    let state = make(
        py,
        "ExecutorStateError",
        "The executor is not started, already started, or shut down.",
        &[&b, &runtime_error],
    )?;
    let authentication = make(
        py,
        "AuthenticationError",
        "Raise it from an auth callable to refuse a connection (close 4403) with its message.",
        &[&b],
    )?;
    for (name, class) in [
        ("SubscriptionError", &base),
        ("ConfigurationError", &configuration),
        ("EventBusError", &bus),
        ("PublishError", &publish),
        ("SubscribeError", &subscribe),
        ("ExecutorStateError", &state),
        ("AuthenticationError", &authentication),
    ] {
        module.add(name, class.bind(py))?;
    }
    let _ = CLASSES.set(
        py,
        Classes {
            configuration,
            bus,
            publish,
            subscribe,
            state,
            authentication,
        },
    );
    Ok(())
}

/// An exception of `kind` with `message`.
pub(crate) fn error(kind: Kind, message: impl Into<String>) -> PyErr {
    let message = message.into();
    // Made on engine threads too: once the interpreter exits (or before the module's classes
    // exist) a plain RuntimeError, which needs no interpreter to create, is what is left.
    let typed = crate::interpreter::attach(|py| {
        let classes = CLASSES.get(py)?;
        let class = match kind {
            Kind::Configuration => &classes.configuration,
            Kind::Bus => &classes.bus,
            Kind::Publish => &classes.publish,
            Kind::Subscribe => &classes.subscribe,
            Kind::State => &classes.state,
            Kind::Authentication => &classes.authentication,
        };
        Some(PyErr::from_type(class.bind(py).clone(), message.clone()))
    });
    typed
        .flatten()
        .unwrap_or_else(|| PyRuntimeError::new_err(message))
}

/// A `ConfigurationError`.
pub(crate) fn config(message: impl Into<String>) -> PyErr {
    error(Kind::Configuration, message)
}
