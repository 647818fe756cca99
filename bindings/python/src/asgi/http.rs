//! The `http` scope: a request handed to the hosted app, its body streamed through
//! `receive`, its response streamed back through `send` ([`HttpExchange`]), with the bounds
//! the server keeps whatever the app does (body size, time to answer).

use std::sync::Arc;

use axum::body::Body;
use axum::extract::Request;
use axum::http::header::{HeaderName, CONTENT_LENGTH};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use bytes::Bytes;
use http_body::Body as _;
use http_body_util::BodyExt;
use pyo3::exceptions::{PyRuntimeError, PyTypeError, PyValueError};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::pybacked::PyBackedBytes;
use pyo3::types::{PyBytes, PyDict};

use super::app::AsgiApp;
use super::exchange::{next_message, plain, Exchange, Head, RESPONSE_HIGH_WATER};
use super::ready::{asgi_message, park, ready, ready_none};
use super::scope::{scope, ScopeKind};

/// The app's side of one request: `receive` and `send` (the runner passes these bound
/// methods to the app), and how the runner reports the app's end.
#[pyclass(
    name = "HttpExchange",
    module = "fraiseql_subscriptions._native",
    frozen
)]
#[derive(Debug)]
pub(crate) struct HttpExchange {
    exchange: Arc<Exchange>,
}

fn item<'py>(
    message: &Bound<'py, PyDict>,
    key: &Bound<'py, pyo3::types::PyString>,
) -> PyResult<Option<Bound<'py, PyAny>>> {
    message.get_item(key)
}

/// `http.response.start`'s status and headers.
fn head(message: &Bound<'_, PyDict>) -> PyResult<Head> {
    let py = message.py();
    let status: u16 = item(message, intern!(py, "status"))?
        .ok_or_else(|| PyValueError::new_err("http.response.start needs a 'status'"))?
        .extract()
        .map_err(|_| PyTypeError::new_err("http.response.start 'status' must be an int"))?;
    let status = StatusCode::from_u16(status)
        .map_err(|_| PyValueError::new_err(format!("invalid HTTP status {status}")))?;
    let mut headers = HeaderMap::new();
    if let Some(pairs) = item(message, intern!(py, "headers"))? {
        for pair in pairs.try_iter()? {
            let pair = pair?;
            let name = pair.get_item(0)?;
            let value = pair.get_item(1)?;
            let (Ok(name), Ok(value)) = (name.cast::<PyBytes>(), value.cast::<PyBytes>()) else {
                return Err(PyTypeError::new_err(
                    "response headers must be [name, value] pairs of bytes",
                ));
            };
            let name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
                PyValueError::new_err(format!(
                    "invalid header name {:?}",
                    name.as_bytes().escape_ascii().to_string()
                ))
            })?;
            let value = HeaderValue::from_bytes(value.as_bytes())
                .map_err(|_| PyValueError::new_err(format!("invalid value for header {name}")))?;
            headers.append(name, value);
        }
    }
    Ok(Head { status, headers })
}

/// A body message's bytes and `more_body`.
fn body(message: &Bound<'_, PyDict>) -> PyResult<(Bytes, bool)> {
    let py = message.py();
    let chunk = match item(message, intern!(py, "body"))? {
        None => Bytes::new(),
        // Without a copy: the chunk keeps the `bytes` object alive until hyper wrote it.
        Some(body) => Bytes::from_owner(
            body.extract::<PyBackedBytes>()
                .map_err(|_| PyTypeError::new_err("http.response.body 'body' must be bytes"))?,
        ),
    };
    let more = match item(message, intern!(py, "more_body"))? {
        None => false,
        Some(more) => more.is_truthy()?,
    };
    Ok((chunk, more))
}

#[pymethods]
impl HttpExchange {
    /// ASGI `receive`: the next request message (`http.request` with body, then
    /// `http.disconnect` once the client is gone or the response complete).
    fn receive(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        let mut state = self.exchange.lock();
        if let Some(message) = next_message(py, &mut state)? {
            drop(state);
            self.exchange.room.notify_one();
            return ready(py, message.into_any().unbind());
        }
        park(py, &self.exchange.locals, &mut state.receiver)
    }

    /// ASGI `send`: `http.response.start`, `http.response.body` (streamed with
    /// `more_body`), `http.response.trailers` (accepted and dropped).
    fn send(&self, py: Python<'_>, message: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        let (message, kind) = asgi_message(message)?;
        let message = &message;
        let ready = || ready_none(py);
        match kind.as_str() {
            "http.response.start" => {
                let head = head(message)?;
                let mut state = self.exchange.lock();
                if state.head.is_some() || state.started {
                    if state.client_gone {
                        return ready();
                    }
                    return Err(PyRuntimeError::new_err(
                        "Expected ASGI message 'http.response.body', but got 'http.response.start'.",
                    ));
                }
                state.head = Some(head);
                drop(state);
                // The body usually follows in the same step of the app's task (one write for
                // head and body); if the app waits first (server-sent events), the head goes
                // out once the task yields, so the client sees the response begin.
                let flush = FlushHead {
                    exchange: Arc::clone(&self.exchange),
                };
                self.exchange
                    .locals
                    .event_loop(py)
                    .call_method1(intern!(py, "call_soon"), (flush,))?;
                ready()
            }
            "http.response.body" => {
                let (chunk, more) = body(message)?;
                let wait = {
                    let mut state = self.exchange.lock();
                    if state.client_gone {
                        return ready();
                    }
                    if state.started && state.out_ended {
                        return Err(PyRuntimeError::new_err(
                            "Unexpected ASGI message 'http.response.body' sent, after response already completed.",
                        ));
                    }
                    if !state.started {
                        let Some(head) = state.head.take() else {
                            return Err(PyRuntimeError::new_err(
                                "Expected ASGI message 'http.response.start', but got 'http.response.body'.",
                            ));
                        };
                        self.exchange.begin(&mut state, head, chunk, more);
                    } else {
                        state.out_bytes += chunk.len();
                        if !chunk.is_empty() {
                            state.out.push_back(chunk);
                        }
                        state.out_ended = !more;
                        if let Some(waker) = state.body_waker.take() {
                            waker.wake();
                        }
                    }
                    if !more {
                        let wakes = Exchange::wake_receiver(&mut state);
                        drop(state);
                        self.exchange.over.cancel();
                        self.exchange.wake(wakes);
                        return ready();
                    }
                    if state.out_bytes > RESPONSE_HIGH_WATER {
                        let future = self
                            .exchange
                            .locals
                            .event_loop(py)
                            .call_method0(intern!(py, "create_future"))?;
                        state.sender = Some(future.clone().unbind());
                        Some(future)
                    } else {
                        None
                    }
                };
                match wait {
                    Some(future) => Ok(future.unbind()),
                    None => ready(),
                }
            }
            "http.response.trailers" => ready(),
            other => Err(PyRuntimeError::new_err(format!(
                "Unexpected ASGI message type {other:?} for an http scope"
            ))),
        }
    }

    /// The app returned: `True` when its response was complete; otherwise the client gets
    /// a 500 (nothing sent yet) or a cut-short response, and the runner logs the error.
    fn finish(&self) -> bool {
        let complete = {
            let state = self.exchange.lock();
            state.client_gone || (state.started && state.out_ended)
        };
        complete || self.exchange.fail()
    }

    /// The app raised: a 500 when nothing was sent yet, else the response is cut short.
    fn fail(&self) {
        let _ = self.exchange.fail();
    }
}

/// Sends a started response's head when the app's task yielded before its first body
/// message (a `call_soon` callback on the app's loop).
#[pyclass(module = "fraiseql_subscriptions._native", frozen)]
#[derive(Debug)]
struct FlushHead {
    exchange: Arc<Exchange>,
}

#[pymethods]
impl FlushHead {
    fn __call__(&self) {
        let mut state = self.exchange.lock();
        if state.started || state.client_gone {
            return;
        }
        if let Some(head) = state.head.take() {
            self.exchange.begin(&mut state, head, Bytes::new(), true);
        }
    }
}

/// The request body's declared length, if any.
fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
}

fn too_large() -> Response {
    let mut response = plain(StatusCode::PAYLOAD_TOO_LARGE, "Request body too large");
    response.headers_mut().insert(
        axum::http::header::CONNECTION,
        HeaderValue::from_static("close"),
    );
    response
}

/// Reads the request body into the exchange as the app takes it, within `max` bytes.
async fn read_body(mut body: Body, exchange: Arc<Exchange>, max: Option<u64>) {
    let mut total: u64 = 0;
    loop {
        loop {
            let room = exchange.room.notified();
            if exchange.has_room() {
                break;
            }
            tokio::select! {
                () = room => {}
                () = exchange.over.cancelled() => return,
            }
        }
        let frame = tokio::select! {
            frame = body.frame() => frame,
            () = exchange.over.cancelled() => return,
        };
        match frame {
            None => return exchange.end_body(),
            Some(Err(_)) => return exchange.client_gone(),
            Some(Ok(frame)) => {
                let Ok(data) = frame.into_data() else {
                    continue;
                };
                total += data.len() as u64;
                if max.is_some_and(|max| total > max) {
                    if !exchange.answer_instead(too_large()) {
                        exchange.client_gone();
                    }
                    return;
                }
                exchange.push_chunk(data);
            }
        }
    }
}

/// Leaves the request when hyper drops its future before the app answered: the client
/// went away.
struct Abandon(Arc<Exchange>);

impl Drop for Abandon {
    fn drop(&mut self) {
        let answered = self.0.lock().responder.is_none();
        if !answered {
            self.0.client_gone();
        }
    }
}

/// Serves one HTTP request with the hosted app.
pub(crate) async fn serve(app: Arc<AsgiApp>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let max = app.options.max_body_bytes;
    if let (Some(max), Some(length)) = (max, content_length(&parts.headers)) {
        if length > max {
            return too_large();
        }
    }
    let (responder, answer) = tokio::sync::oneshot::channel();
    let exchange = Exchange::new(Arc::clone(&app.locals), responder);
    let reading = !body.is_end_stream();
    if !reading {
        exchange.lock().body_ended = true;
    }
    let for_app = Arc::clone(&exchange);
    let host = Arc::clone(&app);
    let scheduled = app.locals.call_soon(Box::new(move |py| {
        let started = (|| -> PyResult<()> {
            let scope = scope(py, &parts, ScopeKind::Http, &host.base)?;
            let handle = Bound::new(
                py,
                HttpExchange {
                    exchange: Arc::clone(&for_app),
                },
            )?;
            let task = host.http_runner.bind(py).call1((scope, handle))?;
            for_app.lock().task = Some(task.unbind());
            Ok(())
        })();
        if started.is_err() {
            let _ = for_app.fail();
        }
        started
    }));
    if !scheduled {
        return plain(
            StatusCode::SERVICE_UNAVAILABLE,
            "Service Unavailable: the application is not running",
        );
    }
    if reading {
        tokio::spawn(read_body(body, Arc::clone(&exchange), max));
    }
    let abandon = Abandon(Arc::clone(&exchange));
    let answered = match app.options.response_timeout {
        None => answer.await,
        Some(limit) => match tokio::time::timeout(limit, answer).await {
            Ok(answered) => answered,
            Err(_elapsed) => {
                drop(abandon);
                app.timed_out(&exchange);
                return plain(
                    StatusCode::GATEWAY_TIMEOUT,
                    "Gateway Timeout: the application did not answer in time",
                );
            }
        },
    };
    drop(abandon);
    answered.unwrap_or_else(|_| {
        // The job never ran: the loop closed, or the interpreter is exiting.
        plain(
            StatusCode::SERVICE_UNAVAILABLE,
            "Service Unavailable: the application is not running",
        )
    })
}
