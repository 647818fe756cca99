//! # fraiseql_subscriptions._native
//!
//! The native module of the `fraiseql-subscriptions` Python package: the Rust engine
//! (`fraiseql-subscriptions`), its buses and the native server (`fraiseql-server`) as
//! Python classes. Users import the
//! package's own API (`fraiseql_subscriptions.subscriptions`), which is built on these.
//!
//! Rules kept everywhere here: every call that can wait releases the GIL or returns an
//! awaitable; Rust errors become exceptions under `SubscriptionError`; no panic crosses
//! the boundary (PyO3 turns one into `PanicException`, and nothing here panics by design).

mod asgi;
mod awaitable;
mod bridge;
mod config;
mod convert;
mod errors;
mod event_loop;
mod executor;
mod hooks;
mod interpreter;
mod messages;
mod operations;
mod session;
mod streams;

use pyo3::prelude::*;

/// The module `fraiseql_subscriptions._native`: every class and function at its top level,
/// under Python names (`SubscriptionExecutor` for the Rust `PySubscriptionExecutor`, as
/// pydantic-core exports `Url` for `PyUrl`). The package re-exports them.
#[pymodule]
fn _native(module: &Bound<'_, PyModule>) -> PyResult<()> {
    errors::register(module)?;
    interpreter::register(module)?;
    config::register(module)?;
    messages::register(module)?;
    executor::register(module)?;
    module.add_class::<bridge::PyResolverContext>()?;
    module.add_class::<session::PySession>()?;
    module.add_class::<session::PyNativeServer>()?;
    module.add_class::<asgi::PyHostedApp>()?;
    module.add_class::<asgi::http::HttpExchange>()?;
    module.add_class::<asgi::websocket::WebSocketConnection>()?;
    module.add_class::<streams::PyStreamSink>()?;
    module.add_function(wrap_pyfunction!(convert::set_json_default, module)?)?;
    module.add_function(wrap_pyfunction!(to_json, module)?)?;
    module.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}

/// Serializes a Python value to JSON text the way events and resolver results are (bool
/// stays bool; datetime, UUID, Decimal, Enum, dataclasses and pydantic models through the
/// package's hook); raises `TypeError` / `ValueError` naming what cannot be serialized.
#[pyfunction]
fn to_json(value: &Bound<'_, PyAny>) -> PyResult<String> {
    Ok(convert::py_to_value(value)?.to_string())
}
