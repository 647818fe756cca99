//! # fraiseql._fraiseql_rs
//!
//! The native module of the `fraiseql` Python package: the Rust engine
//! (`fraiseql-subscriptions`), its buses and the native server (`fraiseql-server`) as
//! Python classes in the submodule `fraiseql._fraiseql_rs.subscriptions`. Users import the
//! package's own API (`fraiseql.subscriptions`), which is built on these.
//!
//! Rules kept everywhere here: every call that can wait releases the GIL or returns an
//! awaitable; Rust errors become exceptions under `SubscriptionError`; no panic crosses
//! the boundary (PyO3 turns one into `PanicException`, and nothing here panics by design).

mod bridge;
mod config;
mod convert;
mod errors;
mod event_loop;
mod executor;
mod hooks;
mod interpreter;
mod messages;
mod session;
mod streams;

use pyo3::prelude::*;

/// The module: `fraiseql._fraiseql_rs` with its `subscriptions` submodule.
#[pymodule]
fn _fraiseql_rs(module: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = module.py();
    let subscriptions = PyModule::new(py, "subscriptions")?;
    errors::register(&subscriptions)?;
    interpreter::register(&subscriptions)?;
    config::register(&subscriptions)?;
    messages::register(&subscriptions)?;
    executor::register(&subscriptions)?;
    subscriptions.add_class::<bridge::PyResolverContext>()?;
    subscriptions.add_class::<session::PySession>()?;
    subscriptions.add_class::<session::PyNativeServer>()?;
    subscriptions.add_class::<streams::PyStreamSink>()?;
    subscriptions.add_function(wrap_pyfunction!(convert::set_json_default, &subscriptions)?)?;
    subscriptions.add_function(wrap_pyfunction!(to_json, &subscriptions)?)?;
    module.add_submodule(&subscriptions)?;
    // `from fraiseql._fraiseql_rs.subscriptions import ...` needs the submodule in sys.modules.
    py.import("sys")?
        .getattr("modules")?
        .set_item("fraiseql._fraiseql_rs.subscriptions", &subscriptions)?;
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
