//! `PySession` (one connection served for a Python transport) and `PyNativeServer` (a
//! running native server).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use fraiseql_server::{FeedError, Incoming, Outgoing, Session, SessionInput};
use pyo3::prelude::*;
use pyo3::types::{PyList, PyString, PyTuple};
use tokio::sync::{mpsc, Notify};
use tokio_util::sync::CancellationToken;

use crate::errors::{self, Kind};
use crate::event_loop::{running_loop, LoopLocals};

type Batches = Arc<tokio::sync::Mutex<mpsc::Receiver<Vec<Outgoing>>>>;

/// One client connection, driven in Rust (protocol, auth, subscriptions, limits), for a
/// transport that owns the socket.
///
/// Hand it every frame the client sends (`feed`), and write the frames it produces, in
/// order (a `str` is a text frame, a `(code, reason)` tuple the close frame to send), in
/// one of two ways: `start_writing(deliver)` (the engine calls `deliver` on the loop's
/// thread, batched with every other session's frames: one wake-up of the loop for all of
/// them), or awaiting `recv()` until it returns `None`. Call `client_gone()` when the
/// socket closes.
#[pyclass(name = "Session", module = "fraiseql_subscriptions._native", frozen)]
#[derive(Debug)]
pub(crate) struct PySession {
    input: Mutex<SessionInput>,
    batches: Batches,
    /// Signalled by `written()`: the frames `deliver` took asynchronously are out.
    written: Arc<Notify>,
    /// `start_writing` was called (it is called once).
    writing: AtomicBool,
}

impl PySession {
    pub(crate) fn new(session: Session) -> Self {
        let (input, batches) = session.split();
        Self {
            input: Mutex::new(input),
            batches: Arc::new(tokio::sync::Mutex::new(batches)),
            written: Arc::new(Notify::new()),
            writing: AtomicBool::new(false),
        }
    }
}

/// Hands one session's frames to its `deliver` callable on the loop's thread, a batch at a
/// time: it takes everything queued, queues one job on the loop's wake-up line (which runs
/// the jobs of every session in one wake-up), and waits until the frames are written (at
/// once, or when `written()` says so) before taking more. The outbox behind it stays
/// bounded: a transport that cannot keep up holds its connection's driver back, and the
/// engine's slow-consumer policy applies as on the native server.
async fn pump_frames(
    batches: Batches,
    written: Arc<Notify>,
    line: Arc<LoopLocals>,
    deliver: Py<PyAny>,
) {
    let deliver = Arc::new(deliver);
    // Set by a job whose `deliver` raised; one flag for the pump's life.
    let failed = Arc::new(AtomicBool::new(false));
    let mut receiver = batches.lock().await;
    loop {
        let Some(first) = receiver.recv().await else {
            // The session ended: `deliver(None)` tells the writer.
            let deliver = Arc::clone(&deliver);
            line.call_soon(Box::new(move |py| {
                deliver.bind(py).call1((py.None(),)).map(drop)
            }));
            return;
        };
        let mut frames = vec![first];
        while let Ok(more) = receiver.try_recv() {
            frames.push(more);
        }
        let deliver = Arc::clone(&deliver);
        let ack = Arc::clone(&written);
        let failure = Arc::clone(&failed);
        let queued = line.call_soon(Box::new(move |py| {
            let outcome = batch_to_py(py, &mut frames)
                .and_then(|list| deliver.bind(py).call1((list,)))
                .and_then(|done| done.is_truthy());
            match outcome {
                Ok(true) => ack.notify_one(),
                Ok(false) => {} // `written()` will say when.
                Err(err) => {
                    failure.store(true, Ordering::SeqCst);
                    ack.notify_one();
                    return Err(err);
                }
            }
            Ok(())
        }));
        if !queued {
            // The loop is gone: nobody writes these frames. Closing the outbox ends the
            // connection's driver instead of leaving it waiting.
            receiver.close();
            return;
        }
        written.notified().await;
        if failed.load(Ordering::SeqCst) {
            // `deliver` raised (reported on the loop): stop writing, end the connection.
            receiver.close();
            return;
        }
    }
}

fn batch_to_py<'py>(
    py: Python<'py>,
    batches: &mut Vec<Vec<Outgoing>>,
) -> PyResult<Bound<'py, PyList>> {
    let list = PyList::empty(py);
    for batch in batches.drain(..) {
        for frame in batch {
            match frame {
                Outgoing::Text(text) => list.append(PyString::new(py, &text))?,
                Outgoing::Close { code, reason } => list.append(PyTuple::new(
                    py,
                    [
                        code.into_pyobject(py)?.into_any(),
                        PyString::new(py, &reason).into_any(),
                    ],
                )?)?,
                // ASGI has no ping frame; keep-alive uses the protocol's own messages.
                Outgoing::Ping => {}
            }
        }
    }
    Ok(list)
}

#[pymethods]
impl PySession {
    /// Hands one text frame from the client to the engine. Raises `SubscriptionError` when
    /// the client floods the connection (close it with 1008); frames after the session
    /// ended are ignored.
    fn feed(&self, text: String) -> PyResult<()> {
        let input = self.input.lock().unwrap_or_else(PoisonError::into_inner);
        match input.feed(Incoming::Text(text)) {
            Ok(()) | Err(FeedError::Ended) => Ok(()),
            Err(err) => Err(errors::error(Kind::State, err.to_string())),
        }
    }

    /// Hands one binary frame from the client (both protocols refuse it with a close).
    fn feed_bytes(&self, data: Vec<u8>) -> PyResult<()> {
        let input = self.input.lock().unwrap_or_else(PoisonError::into_inner);
        match input.feed(Incoming::Binary(data)) {
            Ok(()) | Err(FeedError::Ended) => Ok(()),
            Err(err) => Err(errors::error(Kind::State, err.to_string())),
        }
    }

    /// The client's socket closed: everything it subscribed to is freed.
    fn client_gone(&self) {
        self.input
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .client_gone();
    }

    /// Starts writing this session's frames through `deliver(frames)`, called on the running
    /// loop's thread with a non-empty list of frames (a `str` is a text frame, a
    /// `(code, reason)` tuple the close frame), then once with `None` when the session has
    /// ended. `deliver` returns `True` when it wrote the frames already, or `False` when it
    /// finishes later and then calls `written()`; no frames come until it did. Frames of
    /// every session of the loop are delivered in one wake-up of the loop.
    ///
    /// Returns `False` (and starts nothing) when the loop cannot watch file descriptors
    /// (Windows' proactor loop): await `recv()` instead. Raises `TypeError` when `deliver` is not callable and
    /// `ExecutorStateError` on a second call.
    fn start_writing(&self, py: Python<'_>, deliver: Py<PyAny>) -> PyResult<bool> {
        if !deliver.bind(py).is_callable() {
            return Err(pyo3::exceptions::PyTypeError::new_err(
                "start_writing(deliver): deliver must be a callable taking a list of frames \
                 (or None once the session ended) and returning a bool",
            ));
        }
        let running = running_loop(py)?;
        // The loop's wake-up line: the executor's when it made one for this loop (it has
        // Python resolvers, auth or hooks), else one for the sessions of this loop, made by
        // the first and closed when the last has ended.
        let line = match LoopLocals::of(&running) {
            Some(line) => line,
            None => LoopLocals::current(py)?,
        };
        if !line.has_line() {
            // The loop cannot watch file descriptors (Windows' proactor loop).
            return Ok(false);
        }
        if self.writing.swap(true, Ordering::SeqCst) {
            return Err(errors::error(
                Kind::State,
                "start_writing() was called already: a session has one writer",
            ));
        }
        crate::interpreter::runtime()?.spawn(pump_frames(
            Arc::clone(&self.batches),
            Arc::clone(&self.written),
            line,
            deliver,
        ));
        Ok(true)
    }

    /// The frames `deliver` returned `False` for are written: the next ones may come.
    fn written(&self) {
        self.written.notify_one();
    }

    /// The frames waiting now (a list, empty when none), without awaiting; `None` once the
    /// session has ended.
    fn try_recv<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyList>>> {
        let Ok(mut receiver) = self.batches.try_lock() else {
            return Ok(Some(PyList::empty(py)));
        };
        let mut batches = Vec::new();
        let mut ended = false;
        loop {
            match receiver.try_recv() {
                Ok(batch) => batches.push(batch),
                Err(mpsc::error::TryRecvError::Empty) => break,
                Err(mpsc::error::TryRecvError::Disconnected) => {
                    ended = true;
                    break;
                }
            }
        }
        if ended && batches.is_empty() {
            return Ok(None);
        }
        batch_to_py(py, &mut batches).map(Some)
    }

    /// Awaits the next frames to write (a non-empty list); `None` once the session has
    /// ended.
    fn recv<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let batches = Arc::clone(&self.batches);
        crate::awaitable::future_into_py(py, async move {
            let mut receiver = batches.lock().await;
            let Some(first) = receiver.recv().await else {
                return Ok(None);
            };
            let mut all = vec![first];
            while let Ok(more) = receiver.try_recv() {
                all.push(more);
            }
            drop(receiver);
            crate::interpreter::attach(|py| batch_to_py(py, &mut all).map(|l| Some(l.unbind())))
                .unwrap_or_else(|| Err(crate::interpreter::exiting_error()))
        })
    }
}

/// A running native server (see `PySubscriptionExecutor.serve`).
#[pyclass(
    name = "NativeServer",
    module = "fraiseql_subscriptions._native",
    frozen
)]
#[derive(Debug)]
pub(crate) struct PyNativeServer {
    local: SocketAddr,
    stop: CancellationToken,
    done: tokio::sync::watch::Receiver<bool>,
}

impl PyNativeServer {
    pub(crate) fn new(
        local: SocketAddr,
        stop: CancellationToken,
        done: tokio::sync::watch::Receiver<bool>,
    ) -> Self {
        Self { local, stop, done }
    }
}

#[pymethods]
impl PyNativeServer {
    /// The host it listens on.
    #[getter]
    fn host(&self) -> String {
        self.local.ip().to_string()
    }

    /// The port it listens on.
    #[getter]
    fn port(&self) -> u16 {
        self.local.port()
    }

    /// Stops accepting connections (open ones are closed by the executor's `shutdown`).
    fn stop(&self) {
        self.stop.cancel();
    }

    /// Awaits the server's end.
    fn wait<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let mut done = self.done.clone();
        crate::awaitable::future_into_py(py, async move {
            let _ = done.wait_for(|d| *d).await;
            Ok(())
        })
    }

    fn __repr__(&self) -> String {
        format!("NativeServer(http://{})", self.local)
    }
}
