//! The asyncio loop that Python work runs on, and how engine threads hand it work.
//!
//! Resolver calls, auth calls, lifecycle hooks and stream starts are Rust closures
//! ([`Job`]s) that need the interpreter; they run on the loop the executor was started on,
//! in that loop's thread. [`LoopLocals::call_soon`] queues one from any thread **without
//! taking the GIL**: the queue is a mutex-guarded `Vec`, and the loop is woken by one byte
//! written to a socket pair whose other end the loop watches (`loop.add_reader`). The
//! reader callback drains every job queued meanwhile, so a burst of calls costs one
//! wake-up, and a tokio worker never waits for the GIL (which the loop's thread may hold
//! for a whole switch interval) just to hand work over.
//!
//! Where the loop cannot watch a file descriptor (the Windows proactor loop), the jobs go
//! through `call_soon_threadsafe`, attached through [`crate::interpreter::attach`].

use std::sync::{Arc, Mutex, PoisonError, Weak};

use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3::types::PyDict;

/// Work for the loop's thread.
pub(crate) type Job = Box<dyn for<'py> FnOnce(Python<'py>) -> PyResult<()> + Send>;

/// `asyncio.get_running_loop()`, with an error that says what to do.
pub(crate) fn running_loop(py: Python<'_>) -> PyResult<Bound<'_, PyAny>> {
    py.import("asyncio")?
        .call_method0("get_running_loop")
        .map_err(|_| {
            PyRuntimeError::new_err(
                "this call needs a running asyncio loop: call it from async code",
            )
        })
}

/// Every [`LoopLocals`] with a wake-up line, for awaitables created on its loop.
static LINES: Mutex<Vec<Weak<LoopLocals>>> = Mutex::new(Vec::new());

/// The event loop Python work is scheduled on, with the `contextvars` context it runs in
/// (the context of the code that started the executor).
#[derive(Debug)]
pub(crate) struct LoopLocals {
    event_loop: Py<PyAny>,
    context: Py<PyAny>,
    /// The wake-up line, unless the loop cannot watch file descriptors.
    waker: Option<Arc<Waker>>,
}

impl LoopLocals {
    /// The running loop and a copy of the current context; registers the wake-up line with
    /// the loop.
    ///
    /// # Errors
    /// `RuntimeError` when no loop is running.
    pub(crate) fn current(py: Python<'_>) -> PyResult<Arc<Self>> {
        let event_loop = running_loop(py)?;
        let context = py.import("contextvars")?.call_method0("copy_context")?;
        let waker = Waker::register(py, &event_loop, &context);
        let this = Arc::new(Self {
            event_loop: event_loop.unbind(),
            context: context.unbind(),
            waker,
        });
        if this.waker.is_some() {
            let mut lines = LINES.lock().unwrap_or_else(PoisonError::into_inner);
            lines.retain(|line| line.strong_count() > 0);
            lines.push(Arc::downgrade(&this));
        }
        Ok(this)
    }

    /// The live locals (with a wake-up line) an executor made for `event_loop`, if any.
    pub(crate) fn of(event_loop: &Bound<'_, PyAny>) -> Option<Arc<Self>> {
        let lines = LINES.lock().unwrap_or_else(PoisonError::into_inner);
        lines
            .iter()
            .filter_map(Weak::upgrade)
            .find(|line| line.event_loop.as_ptr() == event_loop.as_ptr())
    }

    /// Whether jobs reach the loop through the wake-up line (not `call_soon_threadsafe`).
    pub(crate) fn has_line(&self) -> bool {
        self.waker.is_some()
    }

    /// The loop.
    pub(crate) fn event_loop<'py>(&self, py: Python<'py>) -> Bound<'py, PyAny> {
        self.event_loop.bind(py).clone()
    }

    /// The context callbacks run in.
    pub(crate) fn context<'py>(&self, py: Python<'py>) -> Bound<'py, PyAny> {
        self.context.bind(py).clone()
    }

    /// Runs `job` on the loop's thread, soon, from any thread. Returns `false` (dropping
    /// the job unrun, and with it what it would have answered) when the loop is gone: closed,
    /// or the executor that used it dropped, or the interpreter exiting.
    /// A job's error goes to the loop's exception handler, as a callback's would.
    pub(crate) fn call_soon(&self, job: Job) -> bool {
        if let Some(waker) = &self.waker {
            return waker.push(job);
        }
        crate::interpreter::attach(|py| {
            let kwargs = PyDict::new(py);
            kwargs.set_item("context", self.context(py))?;
            let run = RunJob {
                job: Mutex::new(Some(job)),
            };
            self.event_loop(py)
                .call_method("call_soon_threadsafe", (run,), Some(&kwargs))
                .map(drop)
        })
        .is_some_and(|scheduled| scheduled.is_ok())
    }
}

impl Drop for LoopLocals {
    /// The executor is gone (every resolver, hook and stream holding these): the loop stops
    /// watching the wake-up line at its next wake-up, and the line is closed.
    fn drop(&mut self) {
        if let Some(waker) = &self.waker {
            waker.close();
        }
    }
}

/// Reports a job's error the way asyncio reports a failed callback.
fn report(py: Python<'_>, err: PyErr) {
    let handled = (|| -> PyResult<()> {
        let event_loop = running_loop(py)?;
        let context = PyDict::new(py);
        context.set_item("message", "fraiseql: a scheduled call failed")?;
        context.set_item("exception", err.value(py))?;
        event_loop.call_method1("call_exception_handler", (context,))?;
        Ok(())
    })();
    if let Err(err) = handled {
        err.print(py);
    }
}

/// One job as a `call_soon_threadsafe` callback (loops without `add_reader`).
#[pyclass(frozen)]
struct RunJob {
    job: Mutex<Option<Job>>,
}

#[pymethods]
impl RunJob {
    fn __call__(&self, py: Python<'_>) {
        let job = self
            .job
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(job) = job {
            if let Err(err) = job(py) {
                report(py, err);
            }
        }
    }
}

/// The wake-up line: a socket pair, engine threads write a byte to one end and the loop
/// watches the other.
#[cfg(unix)]
mod line {
    use std::io::{ErrorKind, Read, Write};
    use std::os::fd::AsRawFd;
    use std::os::unix::net::UnixStream;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex, PoisonError};

    use pyo3::prelude::*;

    use super::{report, running_loop, Job};

    /// A socket pair: engine threads write a byte to `wake`, the loop watches `readable`.
    pub(super) struct Waker {
        queue: Mutex<Queue>,
        /// A wake-up byte is on its way and the drain has not started.
        signaled: AtomicBool,
        wake: UnixStream,
        readable: UnixStream,
    }

    /// The jobs waiting for the loop, and whether more are taken.
    struct Queue {
        jobs: Vec<Job>,
        state: State,
    }

    #[derive(Clone, Copy, PartialEq, Eq)]
    enum State {
        /// Taking jobs.
        Open,
        /// The executor dropped its end: the next drain runs what is queued and stops
        /// watching the line.
        Closing,
        /// The loop let go of the line (it closed): nothing will run.
        Gone,
    }

    impl std::fmt::Debug for Waker {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("Waker")
                .field("readable", &self.readable)
                .finish_non_exhaustive()
        }
    }

    impl Waker {
        /// A wake-up line watched by `event_loop` (its callback runs in `context`), or `None`
        /// when the loop cannot watch file descriptors.
        pub(super) fn register(
            py: Python<'_>,
            event_loop: &Bound<'_, PyAny>,
            context: &Bound<'_, PyAny>,
        ) -> Option<Arc<Self>> {
            let (wake, readable) = UnixStream::pair().ok()?;
            wake.set_nonblocking(true).ok()?;
            readable.set_nonblocking(true).ok()?;
            let waker = Arc::new(Self {
                queue: Mutex::new(Queue {
                    jobs: Vec::new(),
                    state: State::Open,
                }),
                signaled: AtomicBool::new(false),
                wake,
                readable,
            });
            let drain = DrainJobs {
                waker: Arc::clone(&waker),
            };
            // add_reader has no context argument: the handle takes the current one, so it is
            // made inside `context`.
            let registered = context.call_method1(
                "run",
                (
                    event_loop.getattr("add_reader").ok()?,
                    waker.readable.as_raw_fd(),
                    drain,
                ),
            );
            match registered {
                Ok(_) => Some(waker),
                Err(err) => {
                    tracing::debug!(
                        "the loop cannot watch a file descriptor ({}); using call_soon_threadsafe",
                        err.value(py)
                    );
                    None
                }
            }
        }

        fn queue(&self) -> std::sync::MutexGuard<'_, Queue> {
            self.queue.lock().unwrap_or_else(PoisonError::into_inner)
        }

        pub(super) fn push(&self, job: Job) -> bool {
            if crate::interpreter::closed() {
                return false;
            }
            {
                let mut queue = self.queue();
                if queue.state != State::Open {
                    return false;
                }
                queue.jobs.push(job);
            }
            // The drain clears `signaled` before it takes the jobs: either it takes this one,
            // or this swap sees `false` and wakes it again.
            if !self.signaled.swap(true, Ordering::SeqCst) {
                match (&self.wake).write(&[1]) {
                    // WouldBlock: the socket is full of wake-ups the loop has not read yet.
                    Ok(_) => {}
                    Err(err) if err.kind() == ErrorKind::WouldBlock => {}
                    Err(err) => {
                        tracing::error!("cannot wake the asyncio loop: {err}");
                        return false;
                    }
                }
            }
            true
        }

        /// Refuses new jobs and wakes the loop a last time: its drain runs what is queued and
        /// stops watching the line (which closes it).
        pub(super) fn close(&self) {
            {
                let mut queue = self.queue();
                if queue.state != State::Open {
                    return;
                }
                queue.state = State::Closing;
            }
            let _ = (&self.wake).write(&[1]);
        }
    }

    /// The loop's reader callback: runs every job queued since the last wake-up.
    #[pyclass(frozen)]
    struct DrainJobs {
        waker: Arc<Waker>,
    }

    impl Drop for DrainJobs {
        /// The loop let go of the callback (`remove_reader`, or the loop closed): what is
        /// queued will never run, so it is dropped now and its callers see that (a resolver
        /// call fails instead of waiting forever), and nothing more is taken.
        fn drop(&mut self) {
            let unrun = {
                let mut queue = self.waker.queue();
                queue.state = State::Gone;
                std::mem::take(&mut queue.jobs)
            };
            drop(unrun);
        }
    }

    #[pymethods]
    impl DrainJobs {
        fn __call__(&self, py: Python<'_>) {
            let waker = &self.waker;
            let mut bytes = [0_u8; 256];
            while let Ok(n) = (&waker.readable).read(&mut bytes) {
                if n < bytes.len() {
                    break;
                }
            }
            waker.signaled.store(false, Ordering::SeqCst);
            // Taken with the state, under one lock: closing, these are the last jobs (no push
            // succeeds after `close`); open, `close` will wake this callback once more.
            let (jobs, closing) = {
                let mut queue = waker.queue();
                (
                    std::mem::take(&mut queue.jobs),
                    queue.state == State::Closing,
                )
            };
            for job in jobs {
                if let Err(err) = job(py) {
                    report(py, err);
                }
            }
            if closing {
                // Dropping the loop's handle drops this callback and the line with it.
                let fd = waker.readable.as_raw_fd();
                if let Ok(event_loop) = running_loop(py) {
                    let _ = event_loop.call_method1("remove_reader", (fd,));
                }
            }
        }
    }
}

/// Without Unix sockets the loop is woken through `call_soon_threadsafe` alone.
#[cfg(not(unix))]
mod line {
    use std::sync::Arc;

    use pyo3::prelude::*;

    use super::Job;

    #[derive(Debug)]
    pub(super) enum Waker {}

    impl Waker {
        pub(super) fn register(
            _py: Python<'_>,
            _event_loop: &Bound<'_, PyAny>,
            _context: &Bound<'_, PyAny>,
        ) -> Option<Arc<Self>> {
            None
        }

        pub(super) fn push(&self, _job: Job) -> bool {
            match *self {}
        }

        pub(super) fn close(&self) {
            match *self {}
        }
    }
}

use line::Waker;
