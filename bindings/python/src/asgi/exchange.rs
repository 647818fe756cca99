//! One HTTP request served by the hosted app: the state shared by hyper's side (the
//! request body read in, the response body written out) and the app's `receive` / `send`
//! ([`super::http::HttpExchange`]), and the `http.request` / `http.disconnect` messages
//! `receive` hands the app from that state.
//!
//! Every wake-up of a Python awaitable is taken out under the lock and scheduled after it is
//! released ([`LoopLocals::call_soon`] takes no GIL, but a loop without a wake-up line
//! attaches): a tokio thread never holds this lock while it waits for the interpreter.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::Waker;

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use bytes::Bytes;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict};
use tokio::sync::{oneshot, Notify};
use tokio_util::sync::CancellationToken;

use crate::event_loop::LoopLocals;

/// Request body the server reads ahead of the app before it waits for the app to take it.
pub(crate) const REQUEST_READ_AHEAD: usize = 64 * 1024;
/// Response body the app may queue before its `send` waits for the client to take it (a
/// few chunks of a streamed download: each wait is a round trip between threads).
pub(crate) const RESPONSE_HIGH_WATER: usize = 256 * 1024;

/// The status line and headers of `http.response.start`.
#[derive(Debug)]
pub(crate) struct Head {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
}

/// What the two sides share (see the module docs).
#[derive(Debug, Default)]
pub(crate) struct State {
    /// Request body read and not yet received by the app.
    pub(crate) chunks: VecDeque<Bytes>,
    /// Bytes in `chunks`.
    pub(crate) buffered: usize,
    /// The last request chunk has been read.
    pub(crate) body_ended: bool,
    /// The app has received the whole body (`more_body: False`).
    pub(crate) request_complete: bool,
    /// The future a waiting `receive()` returned.
    pub(crate) receiver: Option<Py<PyAny>>,
    /// Answers hyper with the response, until the first body message (or a refusal).
    pub(crate) responder: Option<oneshot::Sender<Response>>,
    /// `http.response.start` seen, waiting for the first body message.
    pub(crate) head: Option<Head>,
    /// The response has been handed to hyper.
    pub(crate) started: bool,
    /// Response body queued for the client.
    pub(crate) out: VecDeque<Bytes>,
    /// Bytes in `out`.
    pub(crate) out_bytes: usize,
    /// The app sent its last body message.
    pub(crate) out_ended: bool,
    /// The app failed mid-response: the connection is aborted (the client sees a truncated
    /// response, not a complete one).
    pub(crate) out_failed: bool,
    /// hyper waits for more response body.
    pub(crate) body_waker: Option<Waker>,
    /// The future a `send()` waiting for the client returned.
    pub(crate) sender: Option<Py<PyAny>>,
    /// The client went away (or the app was abandoned): `receive` says `http.disconnect`,
    /// `send` is ignored.
    pub(crate) client_gone: bool,
    /// The app's task, to cancel it when it does not answer in time.
    pub(crate) task: Option<Py<PyAny>>,
}

/// One request's exchange (see the module docs).
#[derive(Debug)]
pub(crate) struct Exchange {
    state: Mutex<State>,
    pub(crate) locals: Arc<LoopLocals>,
    /// Woken when the app took buffered request body: the reader may read more.
    pub(crate) room: Notify,
    /// Cancelled once the app is done with the request (response complete, client gone):
    /// the request body reader stops.
    pub(crate) over: CancellationToken,
}

/// Python awaitables to complete once the lock is released.
#[derive(Debug, Default)]
#[must_use]
pub(crate) struct Wakes {
    receiver: Option<Py<PyAny>>,
    sender: Option<Py<PyAny>>,
}

impl Wakes {
    /// Wakes a waiting sender, if any.
    pub(crate) fn sender(sender: Option<Py<PyAny>>) -> Self {
        Self {
            receiver: None,
            sender,
        }
    }
}

impl Exchange {
    /// A new exchange whose awaitables complete on the loop of `locals`, answered through
    /// `responder`.
    pub(crate) fn new(locals: Arc<LoopLocals>, responder: oneshot::Sender<Response>) -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(State {
                responder: Some(responder),
                ..State::default()
            }),
            locals,
            room: Notify::new(),
            over: CancellationToken::new(),
        })
    }

    /// The shared state.
    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes the waiting receiver (to hand it what changed).
    pub(crate) fn wake_receiver(state: &mut State) -> Wakes {
        Wakes {
            receiver: state.receiver.take(),
            sender: None,
        }
    }

    /// Completes the awaitables in `wakes` on the app's loop (call without the lock).
    pub(crate) fn wake(self: &Arc<Self>, wakes: Wakes) {
        if let Some(receiver) = wakes.receiver {
            let exchange = Arc::clone(self);
            self.locals.call_soon(Box::new(move |py| {
                resolve_receiver(py, &exchange, receiver.bind(py))
            }));
        }
        if let Some(sender) = wakes.sender {
            self.locals.call_soon(Box::new(move |py| {
                let sender = sender.bind(py);
                if !sender.call_method0("done")?.is_truthy()? {
                    sender.call_method1("set_result", (py.None(),))?;
                }
                Ok(())
            }));
        }
    }

    /// A request chunk was read.
    pub(crate) fn push_chunk(self: &Arc<Self>, chunk: Bytes) {
        let wakes = {
            let mut state = self.lock();
            state.buffered += chunk.len();
            state.chunks.push_back(chunk);
            Self::wake_receiver(&mut state)
        };
        self.wake(wakes);
    }

    /// The request body ended.
    pub(crate) fn end_body(self: &Arc<Self>) {
        let wakes = {
            let mut state = self.lock();
            state.body_ended = true;
            Self::wake_receiver(&mut state)
        };
        self.wake(wakes);
    }

    /// Whether the reader may read more request body now.
    pub(crate) fn has_room(&self) -> bool {
        self.lock().buffered < REQUEST_READ_AHEAD
    }

    /// The client went away (or the request was abandoned): the app's waiting `receive`
    /// gets `http.disconnect`, a waiting `send` returns.
    pub(crate) fn client_gone(self: &Arc<Self>) {
        let wakes = {
            let mut state = self.lock();
            state.client_gone = true;
            state.responder = None;
            Wakes {
                receiver: state.receiver.take(),
                sender: state.sender.take(),
            }
        };
        self.over.cancel();
        self.wake(wakes);
    }

    /// Answers with `response` in place of the app (a refusal: 413, 500, 504), unless the
    /// response has begun. Returns whether it was sent.
    pub(crate) fn answer_instead(self: &Arc<Self>, response: Response) -> bool {
        let wakes = {
            let mut state = self.lock();
            let Some(responder) = state.responder.take() else {
                return false;
            };
            state.started = true;
            state.out_ended = true;
            // The app is abandoned: what it sends from now on is ignored.
            state.client_gone = true;
            state.head = None;
            let _ = responder.send(response);
            Wakes {
                receiver: state.receiver.take(),
                sender: state.sender.take(),
            }
        };
        self.over.cancel();
        self.wake(wakes);
        true
    }

    /// The app raised, or returned without completing its response: a 500 when nothing was
    /// sent yet, else the connection is aborted (the client sees the response cut short).
    /// Returns whether the response had been completed.
    pub(crate) fn fail(self: &Arc<Self>) -> bool {
        if self.answer_instead(plain(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Internal Server Error",
        )) {
            return false;
        }
        let waker = {
            let mut state = self.lock();
            if state.out_ended || state.client_gone {
                return state.out_ended;
            }
            state.out_failed = true;
            state.body_waker.take()
        };
        self.over.cancel();
        if let Some(waker) = waker {
            waker.wake();
        }
        false
    }
}

/// The next message for `receive()`, if one is ready.
pub(crate) fn next_message<'py>(
    py: Python<'py>,
    state: &mut State,
) -> PyResult<Option<Bound<'py, PyDict>>> {
    if !state.request_complete && !state.client_gone {
        if state.chunks.is_empty() && !state.body_ended {
            return Ok(None);
        }
        let body = if state.chunks.len() == 1 {
            let chunk = state.chunks.pop_front().unwrap_or_default();
            PyBytes::new(py, &chunk)
        } else {
            let mut joined = Vec::with_capacity(state.buffered);
            for chunk in state.chunks.drain(..) {
                joined.extend_from_slice(&chunk);
            }
            PyBytes::new(py, &joined)
        };
        state.buffered = 0;
        let more = !state.body_ended;
        state.request_complete = !more;
        let message = PyDict::new(py);
        message.set_item(intern!(py, "type"), intern!(py, "http.request"))?;
        message.set_item(intern!(py, "body"), body)?;
        message.set_item(intern!(py, "more_body"), more)?;
        return Ok(Some(message));
    }
    if state.client_gone || (state.started && state.out_ended) {
        let message = PyDict::new(py);
        message.set_item(intern!(py, "type"), intern!(py, "http.disconnect"))?;
        return Ok(Some(message));
    }
    Ok(None)
}

/// Hands a waiting `receive()` future what arrived (on the loop's thread), or parks it again
/// when nothing is ready after all.
fn resolve_receiver(
    py: Python<'_>,
    exchange: &Arc<Exchange>,
    future: &Bound<'_, PyAny>,
) -> PyResult<()> {
    if future.call_method0(intern!(py, "done"))?.is_truthy()? {
        return Ok(()); // cancelled meanwhile: what arrived stays for the next receive()
    }
    let message = {
        let mut state = exchange.lock();
        match next_message(py, &mut state)? {
            Some(message) => message,
            None => {
                state.receiver = Some(future.clone().unbind());
                return Ok(());
            }
        }
    };
    exchange.room.notify_one();
    future.call_method1(intern!(py, "set_result"), (message,))?;
    Ok(())
}

/// A plain-text response (the server's own refusals).
pub(crate) fn plain(status: StatusCode, text: &'static str) -> Response {
    let mut response = Response::new(Body::from(text));
    *response.status_mut() = status;
    response.headers_mut().insert(
        axum::http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}
