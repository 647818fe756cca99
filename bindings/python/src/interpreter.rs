//! The interpreter's lifetime as the engine's threads see it.
//!
//! The tokio threads that run the engine outlive the interpreter: they are not Python
//! threads, so nothing joins them at exit. A thread that attaches to the interpreter once
//! it has begun to finalize (CPython ≤ 3.12 lets it try, then kills the thread inside
//! `PyGILState_Ensure`) aborts the process with "PyGILState_Release: thread state must be
//! current" or a segfault — a race between the last events of a server and its exit.
//!
//! So every Rust-side entry into Python goes through [`attach`], and the module registers
//! [`close`] with `atexit`. `atexit` runs before finalization starts; `close` shuts the
//! gate and waits (with the GIL released) until the threads already inside have left.
//! After that no engine thread touches Python again: resolver calls, hooks and awaitables
//! that would complete later are dropped (their objects are released by PyO3's deferred
//! reference pool, never executed). Then it stops the engine's runtime, which this module
//! owns ([`runtime`]), and joins its threads: the process exits with only its own.
//!
//! A leaf: the loop's job queue (`event_loop`) and the awaitable bridges (`awaitable`) go
//! through this gate; it knows neither.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use tokio::runtime::{Handle, Runtime};

/// Set by [`close`]: no new entry into the interpreter.
static CLOSED: AtomicBool = AtomicBool::new(false);
/// Threads between the gate and the end of their attached section.
static INSIDE: AtomicUsize = AtomicUsize::new(0);
/// How long [`close`] waits for the threads inside (their sections are short: a
/// `call_soon_threadsafe`, a conversion); a thread stuck longer is left, and exit goes on.
const CLOSE_WAIT: Duration = Duration::from_secs(2);

/// Leaves the gate when dropped (also on unwind).
struct Inside;

impl Drop for Inside {
    fn drop(&mut self) {
        INSIDE.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Runs `f` attached to the interpreter, or returns `None` without touching Python when
/// the interpreter is exiting (after `atexit`) or not available.
pub(crate) fn attach<F, R>(f: F) -> Option<R>
where
    F: for<'py> FnOnce(Python<'py>) -> R,
{
    // Counted before the check: `close` either sees this thread inside and waits for it,
    // or this thread sees the gate shut.
    INSIDE.fetch_add(1, Ordering::SeqCst);
    let _inside = Inside;
    if CLOSED.load(Ordering::SeqCst) {
        return None;
    }
    Python::try_attach(f)
}

/// Whether the interpreter is exiting (the gate is shut).
pub(crate) fn closed() -> bool {
    CLOSED.load(Ordering::SeqCst)
}

/// The error an operation gets when it would need the interpreter after it began to exit.
pub(crate) fn exiting_error() -> PyErr {
    PyRuntimeError::new_err("the Python interpreter is exiting")
}

/// Shuts the gate, waits for the engine threads inside it to leave, then stops the
/// runtime and joins its threads (what is still running is dropped: a manager left
/// running at exit loses its connections, as a killed process would). Registered with
/// `atexit` when the module is imported; idempotent.
#[pyfunction]
#[pyo3(name = "_close_interpreter_gate")]
pub(crate) fn close(py: Python<'_>) {
    CLOSED.store(true, Ordering::SeqCst);
    let deadline = Instant::now() + CLOSE_WAIT;
    let runtime = RUNTIME
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .take();
    py.detach(|| {
        while INSIDE.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        if let Some(runtime) = runtime {
            runtime.shutdown_timeout(deadline.saturating_duration_since(Instant::now()));
        }
    });
}

/// Registers [`close`] with `atexit`.
pub(crate) fn register(module: &Bound<'_, PyModule>) -> PyResult<()> {
    let close = wrap_pyfunction!(close, module)?;
    module.add_function(close.clone())?;
    module
        .py()
        .import("atexit")?
        .call_method1("register", (close,))?;
    Ok(())
}

/// The engine's tokio runtime, owned here so that [`close`] can stop it and join its
/// threads; created on first use.
static RUNTIME: Mutex<Option<Runtime>> = Mutex::new(None);
/// A handle to [`RUNTIME`], for spawning without its lock.
static HANDLE: OnceLock<Handle> = OnceLock::new();

/// The engine's runtime (multi-threaded, one worker per core), started on first use.
///
/// # Errors
/// `RuntimeError` once the interpreter is exiting (the runtime is stopped then), or when the
/// runtime's threads cannot be started.
pub(crate) fn runtime() -> PyResult<&'static Handle> {
    if closed() {
        return Err(exiting_error());
    }
    if let Some(handle) = HANDLE.get() {
        return Ok(handle);
    }
    let mut slot = RUNTIME.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(handle) = HANDLE.get() {
        return Ok(handle);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("fraiseql-engine")
        .build()
        .map_err(|e| PyRuntimeError::new_err(format!("cannot start the engine's threads: {e}")))?;
    let handle = HANDLE.get_or_init(|| runtime.handle().clone());
    *slot = Some(runtime);
    Ok(handle)
}
