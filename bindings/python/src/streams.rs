//! Async-generator subscriptions: a [`StreamSource`] that starts the user's generator on
//! the event loop for each subscription, and `PyStreamSink`, through which the Python side
//! hands every yielded value to Rust (projection, serialization, outbox).

use std::sync::Arc;

use fraiseql_subscriptions::stream::{StreamSink, StreamSource, StreamStart};
use pyo3::prelude::*;

use crate::bridge::principal_to_dict;
use crate::convert::{map_to_py, py_to_value};
use crate::event_loop::LoopLocals;

/// Where an async-generator subscription's values go. `emit(value)` returns `False` once
/// the subscription has ended (stop iterating); `complete()` / `fail(message)` end it;
/// `await stopped()` resolves when the client completed it or disconnected.
#[pyclass(name = "StreamSink", module = "fraiseql_subscriptions._native", frozen)]
#[derive(Debug)]
pub(crate) struct PyStreamSink {
    sink: StreamSink,
}

#[pymethods]
impl PyStreamSink {
    /// Delivers one value (projected for the subscriber); `False` when it has ended.
    fn emit(&self, value: &Bound<'_, PyAny>) -> PyResult<bool> {
        let value = py_to_value(value)?;
        Ok(self.sink.emit(&value).is_ok())
    }

    /// Ends the subscription with `complete`.
    fn complete(&self) {
        self.sink.complete();
    }

    /// Ends the subscription with an `error` carrying `message`.
    fn fail(&self, message: &str) {
        self.sink.fail(message);
    }

    /// Whether the subscription is still active.
    #[getter]
    fn active(&self) -> bool {
        self.sink.is_active()
    }

    /// Resolves once the subscription has ended, however it ended.
    fn stopped<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let sink = self.sink.clone();
        crate::awaitable::future_into_py(py, async move {
            sink.stopped().await;
            Ok(())
        })
    }
}

/// Starts `start(variables, ctx, sink)` (the package's generator runner) on the loop for
/// each subscription of a stream field; `ctx` is a dict with the field and the principal.
pub(crate) struct PyStreamSource {
    start: Arc<Py<PyAny>>,
    locals: Arc<LoopLocals>,
}

impl std::fmt::Debug for PyStreamSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PyStreamSource").finish_non_exhaustive()
    }
}

impl PyStreamSource {
    pub(crate) fn new(start: Py<PyAny>, locals: Arc<LoopLocals>) -> Self {
        Self {
            start: Arc::new(start),
            locals,
        }
    }
}

impl StreamSource for PyStreamSource {
    fn start(&self, start: StreamStart) {
        let sink = start.sink.clone();
        let runner = Arc::clone(&self.start);
        let scheduled = self.locals.call_soon(Box::new(move |py| {
            let failed_sink = start.sink.clone();
            let started = (|| -> PyResult<()> {
                let variables = map_to_py(py, &start.arguments)?;
                let ctx = principal_to_dict(py, &start.principal)?;
                ctx.set_item("field", &start.field)?;
                let sink = PyStreamSink { sink: start.sink };
                runner.bind(py).call1((variables, ctx, sink))?;
                Ok(())
            })();
            if let Err(err) = started {
                failed_sink.fail(&format!("the stream could not start: {}", err.value(py)));
            }
            Ok(())
        }));
        if !scheduled {
            sink.fail("the stream could not start: the event loop is gone");
        }
    }
}
