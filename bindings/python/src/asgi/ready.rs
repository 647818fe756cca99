//! What the ASGI `receive()` and `send()` of the hosted app return: [`Ready`], an awaitable
//! that is already done, when they need not wait (the usual case, without an
//! `asyncio.Future` or a coroutine frame), else a future of the app's event loop parked
//! where the Rust side resolves it ([`park`]); and how an ASGI message is read
//! ([`asgi_message`]).

use pyo3::exceptions::{PyStopIteration, PyTypeError, PyValueError};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::event_loop::LoopLocals;

/// `await`-able `value`, done already.
pub(crate) fn ready(py: Python<'_>, value: Py<PyAny>) -> PyResult<Py<PyAny>> {
    Ok(Py::new(py, Ready::new(value))?.into_any())
}

/// `await`-able `None`, done already.
pub(crate) fn ready_none(py: Python<'_>) -> PyResult<Py<PyAny>> {
    Ok(Py::new(py, Ready::none(py))?.into_any())
}

/// A new future of the app's event loop, kept in `slot` for the Rust side to resolve (a
/// message arrived, room was made), and returned for the app to await.
pub(crate) fn park(
    py: Python<'_>,
    locals: &LoopLocals,
    slot: &mut Option<Py<PyAny>>,
) -> PyResult<Py<PyAny>> {
    let future = locals
        .event_loop(py)
        .call_method0(intern!(py, "create_future"))?;
    *slot = Some(future.clone().unbind());
    Ok(future.unbind())
}

/// An ASGI message the app sent: the dict and its `type`.
pub(crate) fn asgi_message<'py>(
    message: &Bound<'py, PyAny>,
) -> PyResult<(Bound<'py, PyDict>, String)> {
    let message = message
        .cast::<PyDict>()
        .map_err(|_| PyTypeError::new_err("an ASGI message is a dict"))?;
    let kind: String = message
        .get_item(intern!(message.py(), "type"))?
        .ok_or_else(|| PyValueError::new_err("an ASGI message needs a 'type'"))?
        .extract()?;
    Ok((message.clone(), kind))
}

/// `await Ready(value)` gives `value` at once: `__await__` is the object itself, and its
/// first `__next__` ends the iteration with `value`, as a coroutine that returns it would.
#[pyclass(module = "fraiseql_subscriptions._native")]
#[derive(Debug)]
pub(crate) struct Ready {
    value: Option<Py<PyAny>>,
}

impl Ready {
    /// An awaitable done with `value`.
    pub(crate) fn new(value: Py<PyAny>) -> Self {
        Self { value: Some(value) }
    }

    /// An awaitable done with `None`.
    pub(crate) fn none(py: Python<'_>) -> Self {
        Self::new(py.None())
    }
}

#[pymethods]
impl Ready {
    fn __await__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__(&mut self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        let value = self.value.take().unwrap_or_else(|| py.None());
        Err(PyStopIteration::new_err((value,)))
    }

    /// Generator protocol (`yield from`, `coroutine.send`): the same as `__next__`.
    fn send(&mut self, py: Python<'_>, _value: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        self.__next__(py)
    }

    /// Nothing is suspended here, so an exception thrown in is raised straight back.
    #[pyo3(signature = (kind, value = None, _traceback = None))]
    fn throw(
        &mut self,
        kind: &Bound<'_, PyAny>,
        value: Option<&Bound<'_, PyAny>>,
        _traceback: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Py<PyAny>> {
        self.value = None;
        let exception = match value {
            Some(value) if !value.is_none() => value.clone(),
            _ => kind.call0().unwrap_or_else(|_| kind.clone()),
        };
        Err(PyErr::from_value(exception))
    }

    fn close(&mut self) {
        self.value = None;
    }
}
