//! `PySession` (one connection served for a Python transport) and `PyNativeServer` (a
//! running native server).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};

use fraiseql_server::{FeedError, Incoming, Outgoing, Session, SessionInput};
use pyo3::prelude::*;
use pyo3::types::{PyList, PyString, PyTuple};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::errors::{self, Kind};

type Batches = Arc<tokio::sync::Mutex<mpsc::Receiver<Vec<Outgoing>>>>;

/// One client connection, driven in Rust (protocol, auth, subscriptions, limits), for a
/// transport that owns the socket.
///
/// Hand it every frame the client sends (`feed`), write every frame `recv()` returns, in
/// order (a `str` is a text frame, a `(code, reason)` tuple the close frame to send), until
/// `recv()` returns `None`; call `client_gone()` when the socket closes.
#[pyclass(name = "Session", module = "fraiseql_subscriptions._native", frozen)]
#[derive(Debug)]
pub(crate) struct PySession {
    input: Mutex<SessionInput>,
    batches: Batches,
}

impl PySession {
    pub(crate) fn new(session: Session) -> Self {
        let (input, batches) = session.split();
        Self {
            input: Mutex::new(input),
            batches: Arc::new(tokio::sync::Mutex::new(batches)),
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
