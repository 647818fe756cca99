//! The asyncio <-> tokio bridges, both through the interpreter gate ([`crate::interpreter`]).
//!
//! [`future_into_py`] is this crate's awaitable bridge: a Rust future run on the runtime
//! whose outcome completes an `asyncio.Future` on the caller's loop, through the gate;
//! cancelling the Python future aborts the Rust task. [`run_on_loop`] is the other way: a
//! coroutine run as a task on a loop, its outcome awaited from Rust. (These replace
//! `pyo3-async-runtimes`, whose bridges attach from tokio threads unconditionally.)

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::{Mutex, PoisonError};
use std::task::{Context, Poll, Waker};

use futures_util::FutureExt;

use pyo3::exceptions::PyTypeError;
use pyo3::panic::PanicException;
use pyo3::prelude::*;
use pyo3::IntoPyObjectExt;
use tokio::task::AbortHandle;

use crate::event_loop::{running_loop, LoopLocals};
use crate::interpreter::{attach, closed, exiting_error, runtime};

/// An awaitable for `future`, run on the engine's runtime: an `asyncio.Future` of the
/// running loop, completed with the future's value or exception. Cancelling it aborts the
/// Rust task. Raises `RuntimeError` when no loop is running.
///
/// One task on the runtime runs the future and hands its outcome to the loop's thread.
/// [`eager_future_into_py`] polls it once on the calling thread first.
pub(crate) fn future_into_py<'py, F, T>(py: Python<'py>, future: F) -> PyResult<Bound<'py, PyAny>>
where
    F: Future<Output = PyResult<T>> + Send + 'static,
    T: for<'a> IntoPyObject<'a> + Send + 'static,
{
    if closed() {
        return Err(exiting_error());
    }
    let event_loop = running_loop(py)?;
    let waiting = event_loop.call_method0("create_future")?;
    let runtime = runtime()?;
    let future = AssertUnwindSafe(future).catch_unwind();
    let target = waiting.clone().unbind();
    // An executor's loop has a wake-up line: the outcome is a job for the loop's thread, no
    // GIL taken here. Other loops get it through call_soon_threadsafe.
    let line = LoopLocals::of(&event_loop);
    let event_loop = event_loop.unbind();
    let task = runtime.spawn(async move {
        let outcome = unwound(future.await);
        if let Some(line) = line {
            // Unscheduled (the loop is gone), the outcome is dropped: nobody waits for it.
            line.call_soon(Box::new(move |py| {
                let outcome = outcome.and_then(|value| value.into_py_any(py));
                complete(target.bind(py), outcome)
            }));
            return;
        }
        // Off the worker threads: attaching may wait for the GIL.
        tokio::task::spawn_blocking(move || {
            attach(|py| {
                let outcome = outcome.and_then(|value| value.into_py_any(py));
                let complete = Complete {
                    target,
                    outcome: Mutex::new(Some(outcome)),
                };
                // Fails only when the loop is closed: nobody is waiting any more.
                let _ = event_loop
                    .bind(py)
                    .call_method1("call_soon_threadsafe", (complete,));
            });
        });
    });
    // Cancelling (or otherwise finishing) the Python future aborts the task, which then
    // delivers nothing. The task cannot complete the future before this runs: completing is
    // a job for this thread, which is busy here.
    waiting.call_method1(
        "add_done_callback",
        (AbortOnDone {
            task: task.abort_handle(),
        },),
    )?;
    Ok(waiting)
}

/// A future's outcome, with a panic inside it turned into `PanicException` instead of
/// unwinding further.
fn unwound<T>(outcome: std::thread::Result<PyResult<T>>) -> PyResult<T> {
    outcome.unwrap_or_else(|panic| {
        let message = panic
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic".to_owned());
        Err(PanicException::new_err(format!(
            "internal error in the fraiseql engine: {message}"
        )))
    })
}

/// Like [`future_into_py`], but polls `future` once on the calling thread (the loop's)
/// first. When that finishes it (publishing to a bus with room: the in-memory bus hands the
/// event over at once), no engine thread is involved: the awaitable is completed by a
/// callback of the loop's next turn. Otherwise the future goes on on the runtime, as in
/// [`future_into_py`].
///
/// Never complete at once: awaiting a done future does not yield, and a publisher looping
/// on `await manager.publish(...)` would then keep the loop from the writers of the frames
/// it causes (measured: they fell behind and slow-consumer closes followed). One turn of
/// the loop per call lets them write between two publishes, and holds such a publisher to
/// their pace.
pub(crate) fn eager_future_into_py<'py, F, T>(
    py: Python<'py>,
    future: F,
) -> PyResult<Bound<'py, PyAny>>
where
    F: Future<Output = PyResult<T>> + Send + 'static,
    T: for<'a> IntoPyObject<'a> + Send + 'static,
{
    if closed() {
        return Err(exiting_error());
    }
    let runtime = runtime()?;
    let mut future = Box::pin(future);
    let first = {
        let _entered = runtime.enter();
        let mut context = Context::from_waker(Waker::noop());
        std::panic::catch_unwind(AssertUnwindSafe(|| future.as_mut().poll(&mut context)))
    };
    let outcome = match first {
        Ok(Poll::Pending) => return future_into_py(py, future),
        Ok(Poll::Ready(outcome)) => outcome,
        Err(panic) => unwound(Err(panic)),
    };
    let event_loop = running_loop(py)?;
    let waiting = event_loop.call_method0("create_future")?;
    let outcome = outcome.and_then(|value| value.into_py_any(py));
    let complete = Complete {
        target: waiting.clone().unbind(),
        outcome: Mutex::new(Some(outcome)),
    };
    event_loop.call_method1("call_soon", (complete,))?;
    Ok(waiting)
}

/// The done-callback of an awaitable: a cancelled (or otherwise finished) Python future
/// aborts its Rust task.
#[pyclass(frozen)]
struct AbortOnDone {
    task: AbortHandle,
}

#[pymethods]
impl AbortOnDone {
    fn __call__(&self, _future: &Bound<'_, PyAny>) {
        self.task.abort();
    }
}

/// Completes an awaitable on its loop's thread, unless it was cancelled meanwhile.
#[pyclass(frozen)]
struct Complete {
    target: Py<PyAny>,
    outcome: Mutex<Option<PyResult<Py<PyAny>>>>,
}

#[pymethods]
impl Complete {
    fn __call__(&self, py: Python<'_>) -> PyResult<()> {
        let target = self.target.bind(py);
        let outcome = self
            .outcome
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
            .ok_or_else(|| PyTypeError::new_err("an awaitable completes once"))?;
        complete(target, outcome)
    }
}

/// Completes `target` with `outcome`, unless it is done already (cancelled meanwhile).
fn complete(target: &Bound<'_, PyAny>, outcome: PyResult<Py<PyAny>>) -> PyResult<()> {
    if target.call_method0("done")?.is_truthy()? {
        return Ok(());
    }
    match outcome {
        Ok(value) => target.call_method1("set_result", (value,))?,
        Err(err) => target.call_method1("set_exception", (err.into_value(target.py()),))?,
    };
    Ok(())
}

/// What a task's end is turned into, on the loop's thread.
type Finish = Box<dyn for<'py> FnOnce(Python<'py>, PyResult<Bound<'py, PyAny>>) + Send>;

/// Runs the coroutine `start` returns as a task on the loop of `locals`, and `finish` on
/// its outcome (the task's result, or the exception it raised or `start` raised). Both run
/// in the loop's thread, so nothing here attaches: callable from any thread. The returned
/// future yields what `finish` made, or `None` when the task never ended (the loop is
/// gone, or the interpreter is exiting).
pub(crate) fn run_on_loop<T, S, G>(
    locals: &LoopLocals,
    start: S,
    finish: G,
) -> impl Future<Output = Option<T>> + Send + 'static
where
    T: Send + 'static,
    S: for<'py> FnOnce(Python<'py>) -> PyResult<Bound<'py, PyAny>> + Send + 'static,
    G: for<'py> FnOnce(Python<'py>, PyResult<Bound<'py, PyAny>>) -> T + Send + 'static,
{
    let (done, outcome) = tokio::sync::oneshot::channel::<T>();
    let finish: Finish = Box::new(move |py, result| {
        let _ = done.send(finish(py, result));
    });
    // Unscheduled (the loop is gone), the job and `finish` are dropped: `None` below.
    locals.call_soon(Box::new(move |py| {
        let task = start(py).and_then(|coroutine| {
            py.import("asyncio")?
                .call_method1("ensure_future", (coroutine,))
        });
        match task {
            Err(err) => finish(py, Err(err)),
            Ok(task) => {
                let finished = TaskFinished {
                    finish: Mutex::new(Some(finish)),
                };
                if task.call_method1("add_done_callback", (finished,)).is_err() {
                    // Nobody would hear the outcome: the waiting side sees the task as
                    // never finished (`finish` went with the callback).
                    let _ = task.call_method0("cancel");
                }
            }
        }
        Ok(())
    }));
    async move { outcome.await.ok() }
}

/// Hands a task's outcome to its `finish`.
#[pyclass(frozen)]
struct TaskFinished {
    finish: Mutex<Option<Finish>>,
}

#[pymethods]
impl TaskFinished {
    fn __call__(&self, py: Python<'_>, task: &Bound<'_, PyAny>) {
        let finish = self
            .finish
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(finish) = finish {
            finish(py, task.call_method0("result"));
        }
    }
}
