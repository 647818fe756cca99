//! An awaitable that is already done: what `receive()` and `send()` return when they need
//! not wait (the usual case), without an `asyncio.Future` or a coroutine frame.

use pyo3::exceptions::PyStopIteration;
use pyo3::prelude::*;

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
