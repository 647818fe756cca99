//! The `websocket` scope: a WebSocket on any path but the GraphQL one, served by the hosted
//! app. The app's `websocket.accept` answers the upgrade (with its subprotocol and
//! headers), its `websocket.close` before that refuses it with 403; then messages flow both
//! ways through `receive` / `send` ([`WebSocketConnection`]) with bounded queues on each side.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::{FromRequestParts, Request};
use axum::http::header::HeaderName;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use pyo3::exceptions::{PyOSError, PyRuntimeError, PyTypeError, PyValueError};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyString};
use tokio::sync::{mpsc, oneshot, Notify};

use crate::event_loop::LoopLocals;

use super::app::AsgiApp;
use super::exchange::plain;
use super::ready::{asgi_message, park, ready, ready_none};
use super::scope::{scope, ScopeKind};

/// Client messages read ahead of the app before the reader waits for it.
const READ_AHEAD_MESSAGES: usize = 16;
/// Bytes the app may queue for the client before its `send` waits.
const SEND_HIGH_WATER: usize = 256 * 1024;
/// How long the client has to answer the app's close frame.
const CLOSE_WAIT: Duration = Duration::from_secs(5);

/// How the app answered the handshake.
#[derive(Debug)]
enum Answer {
    Accept {
        subprotocol: Option<String>,
        headers: HeaderMap,
        outgoing: mpsc::UnboundedReceiver<Message>,
    },
    Refuse(Response),
}

/// What the socket's tasks and the app share.
#[derive(Debug, Default)]
struct State {
    connect_sent: bool,
    incoming: VecDeque<Message>,
    /// The connection ended with this code and reason (`websocket.disconnect`).
    disconnect: Option<(u16, String)>,
    receiver: Option<Py<PyAny>>,
    answer: Option<oneshot::Sender<Answer>>,
    accepted: bool,
    outgoing: Option<mpsc::UnboundedSender<Message>>,
    out_bytes: usize,
    sender: Option<Py<PyAny>>,
    /// The app sent `websocket.close`.
    closed_by_app: bool,
    task: Option<Py<PyAny>>,
}

#[derive(Debug)]
struct Connection {
    state: Mutex<State>,
    locals: Arc<LoopLocals>,
    room: Notify,
}

impl Connection {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Completes the waiting `receive()` (call without the lock).
    fn wake_receiver(self: &Arc<Self>, receiver: Option<Py<PyAny>>) {
        if let Some(receiver) = receiver {
            let connection = Arc::clone(self);
            self.locals.call_soon(Box::new(move |py| {
                resolve_receiver(py, &connection, receiver.bind(py))
            }));
        }
    }

    fn wake_sender(&self, sender: Option<Py<PyAny>>) {
        if let Some(sender) = sender {
            self.locals.call_soon(Box::new(move |py| {
                let sender = sender.bind(py);
                if !sender.call_method0("done")?.is_truthy()? {
                    sender.call_method1("set_result", (py.None(),))?;
                }
                Ok(())
            }));
        }
    }

    fn push(self: &Arc<Self>, message: Message) {
        let receiver = {
            let mut state = self.lock();
            state.incoming.push_back(message);
            state.receiver.take()
        };
        self.wake_receiver(receiver);
    }

    /// The connection ended: `receive` says `websocket.disconnect` with `code`.
    fn ended(self: &Arc<Self>, code: u16, reason: String) {
        let (receiver, sender) = {
            let mut state = self.lock();
            if state.disconnect.is_none() {
                state.disconnect = Some((code, reason));
            }
            state.outgoing = None;
            state.answer = None;
            (state.receiver.take(), state.sender.take())
        };
        self.wake_receiver(receiver);
        self.wake_sender(sender);
    }

    /// Answers the handshake in place of the app (it failed, returned, or took too long).
    fn refuse(self: &Arc<Self>, response: Response) -> bool {
        let answer = self.lock().answer.take();
        match answer {
            Some(answer) => {
                let _ = answer.send(Answer::Refuse(response));
                self.ended(1006, String::new());
                true
            }
            None => false,
        }
    }

    /// Closes an accepted connection from the server's side with `code`.
    fn close(&self, code: u16) {
        let mut state = self.lock();
        if state.closed_by_app || state.disconnect.is_some() {
            return;
        }
        state.closed_by_app = true;
        if let Some(outgoing) = &state.outgoing {
            let _ = outgoing.send(Message::Close(Some(CloseFrame {
                code,
                reason: Utf8Bytes::from_static(""),
            })));
        }
    }
}

/// The next message for `receive()`, if one is ready.
fn next_message<'py>(py: Python<'py>, state: &mut State) -> PyResult<Option<Bound<'py, PyDict>>> {
    let message = PyDict::new(py);
    if !state.connect_sent {
        state.connect_sent = true;
        message.set_item(intern!(py, "type"), intern!(py, "websocket.connect"))?;
        return Ok(Some(message));
    }
    if let Some(incoming) = state.incoming.pop_front() {
        message.set_item(intern!(py, "type"), intern!(py, "websocket.receive"))?;
        match incoming {
            Message::Text(text) => {
                message.set_item(intern!(py, "text"), PyString::new(py, text.as_str()))?;
            }
            Message::Binary(bytes) => {
                message.set_item(intern!(py, "bytes"), PyBytes::new(py, &bytes))?;
            }
            _ => {}
        }
        return Ok(Some(message));
    }
    if let Some((code, reason)) = &state.disconnect {
        message.set_item(intern!(py, "type"), intern!(py, "websocket.disconnect"))?;
        message.set_item(intern!(py, "code"), *code)?;
        message.set_item(intern!(py, "reason"), reason.as_str())?;
        return Ok(Some(message));
    }
    Ok(None)
}

fn resolve_receiver(
    py: Python<'_>,
    connection: &Arc<Connection>,
    future: &Bound<'_, PyAny>,
) -> PyResult<()> {
    if future.call_method0(intern!(py, "done"))?.is_truthy()? {
        return Ok(());
    }
    let message = {
        let mut state = connection.lock();
        match next_message(py, &mut state)? {
            Some(message) => message,
            None => {
                state.receiver = Some(future.clone().unbind());
                return Ok(());
            }
        }
    };
    connection.room.notify_one();
    future.call_method1(intern!(py, "set_result"), (message,))?;
    Ok(())
}

/// The app's side of one WebSocket: `receive`, `send`, and how the runner reports the
/// app's end.
#[pyclass(
    name = "WebSocketConnection",
    module = "fraiseql_subscriptions._native",
    frozen
)]
#[derive(Debug)]
pub(crate) struct WebSocketConnection {
    connection: Arc<Connection>,
}

fn headers_of(message: &Bound<'_, PyDict>) -> PyResult<HeaderMap> {
    let mut headers = HeaderMap::new();
    if let Some(pairs) = message.get_item(intern!(message.py(), "headers"))? {
        for pair in pairs.try_iter()? {
            let pair = pair?;
            let (Ok(name), Ok(value)) = (
                pair.get_item(0)?.cast_into::<PyBytes>(),
                pair.get_item(1)?.cast_into::<PyBytes>(),
            ) else {
                return Err(PyTypeError::new_err(
                    "websocket.accept headers must be [name, value] pairs of bytes",
                ));
            };
            let name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| PyValueError::new_err("invalid header name in websocket.accept"))?;
            let value = HeaderValue::from_bytes(value.as_bytes())
                .map_err(|_| PyValueError::new_err(format!("invalid value for header {name}")))?;
            headers.append(name, value);
        }
    }
    Ok(headers)
}

#[pymethods]
impl WebSocketConnection {
    /// ASGI `receive`: `websocket.connect`, then `websocket.receive` per client message,
    /// then `websocket.disconnect`.
    fn receive(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        let mut state = self.connection.lock();
        if let Some(message) = next_message(py, &mut state)? {
            drop(state);
            self.connection.room.notify_one();
            return ready(py, message.into_any().unbind());
        }
        park(py, &self.connection.locals, &mut state.receiver)
    }

    /// ASGI `send`: `websocket.accept`, `websocket.send`, `websocket.close`.
    fn send(&self, py: Python<'_>, message: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        let (message, kind) = asgi_message(message)?;
        let message = &message;
        let ready = || ready_none(py);
        let mut state = self.connection.lock();
        match kind.as_str() {
            "websocket.accept" => {
                let subprotocol: Option<String> =
                    match message.get_item(intern!(py, "subprotocol"))? {
                        Some(value) if !value.is_none() => Some(value.extract()?),
                        _ => None,
                    };
                let headers = headers_of(message)?;
                let Some(answer) = state.answer.take() else {
                    if state.disconnect.is_some() {
                        return Err(PyOSError::new_err("the WebSocket is closed"));
                    }
                    return Err(PyRuntimeError::new_err(
                        "Expected ASGI message 'websocket.send' or 'websocket.close', but got 'websocket.accept'.",
                    ));
                };
                let (outgoing, receiver) = mpsc::unbounded_channel();
                state.accepted = true;
                state.outgoing = Some(outgoing);
                let _ = answer.send(Answer::Accept {
                    subprotocol,
                    headers,
                    outgoing: receiver,
                });
                ready()
            }
            "websocket.close" => {
                let code: u16 = match message.get_item(intern!(py, "code"))? {
                    Some(code) if !code.is_none() => code.extract()?,
                    _ => 1000,
                };
                let reason: String = match message.get_item(intern!(py, "reason"))? {
                    Some(reason) if !reason.is_none() => reason.extract()?,
                    _ => String::new(),
                };
                if let Some(answer) = state.answer.take() {
                    // Closed before accepting: the handshake is refused.
                    let _ = answer.send(Answer::Refuse(plain(StatusCode::FORBIDDEN, "Forbidden")));
                    drop(state);
                    self.connection.ended(1006, String::new());
                    return ready();
                }
                if state.closed_by_app || state.disconnect.is_some() {
                    return Err(PyOSError::new_err("the WebSocket is closed"));
                }
                state.closed_by_app = true;
                if let Some(outgoing) = &state.outgoing {
                    let _ = outgoing.send(Message::Close(Some(CloseFrame {
                        code,
                        reason: reason.into(),
                    })));
                }
                ready()
            }
            "websocket.send" => {
                if !state.accepted {
                    return Err(PyRuntimeError::new_err(
                        "Expected ASGI message 'websocket.accept' or 'websocket.close', but got 'websocket.send'.",
                    ));
                }
                if state.closed_by_app || state.disconnect.is_some() {
                    return Err(PyOSError::new_err("the WebSocket is closed"));
                }
                let frame = match (
                    message
                        .get_item(intern!(py, "text"))?
                        .filter(|v| !v.is_none()),
                    message
                        .get_item(intern!(py, "bytes"))?
                        .filter(|v| !v.is_none()),
                ) {
                    (Some(text), _) => Message::Text(text.extract::<String>()?.into()),
                    (None, Some(bytes)) => {
                        Message::Binary(Bytes::from(bytes.extract::<Vec<u8>>()?))
                    }
                    (None, None) => {
                        return Err(PyValueError::new_err(
                            "websocket.send needs 'text' or 'bytes'",
                        ))
                    }
                };
                let size = match &frame {
                    Message::Text(text) => text.len(),
                    Message::Binary(bytes) => bytes.len(),
                    _ => 0,
                };
                state.out_bytes += size;
                if let Some(outgoing) = &state.outgoing {
                    let _ = outgoing.send(frame);
                }
                if state.out_bytes > SEND_HIGH_WATER {
                    return park(py, &self.connection.locals, &mut state.sender);
                }
                ready()
            }
            other => Err(PyRuntimeError::new_err(format!(
                "Unexpected ASGI message type {other:?} for a websocket scope"
            ))),
        }
    }

    /// The app returned: an unanswered handshake gets 500 (returns `False`), an open
    /// connection is closed with 1000.
    fn finish(&self) -> bool {
        if self.connection.refuse(plain(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Internal Server Error",
        )) {
            return false;
        }
        self.connection.close(1000);
        true
    }

    /// The app raised: an unanswered handshake gets 500, an open connection closes 1011.
    fn fail(&self) {
        if !self.connection.refuse(plain(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Internal Server Error",
        )) {
            self.connection.close(1011);
        }
    }
}

/// Moves messages between the socket and the app until either side ends it.
async fn pump(
    socket: WebSocket,
    connection: Arc<Connection>,
    mut outgoing: mpsc::UnboundedReceiver<Message>,
) {
    let (mut sink, mut stream) = socket.split();
    let reader = {
        let connection = Arc::clone(&connection);
        async move {
            loop {
                loop {
                    let room = connection.room.notified();
                    if connection.lock().incoming.len() < READ_AHEAD_MESSAGES {
                        break;
                    }
                    room.await;
                }
                match stream.next().await {
                    Some(Ok(message @ (Message::Text(_) | Message::Binary(_)))) => {
                        connection.push(message);
                    }
                    Some(Ok(Message::Close(frame))) => {
                        let (code, reason) = frame.map_or((1005, String::new()), |f| {
                            (f.code, f.reason.as_str().to_owned())
                        });
                        return connection.ended(code, reason);
                    }
                    Some(Ok(_)) => {} // ping / pong: answered by the codec
                    Some(Err(_)) | None => return connection.ended(1006, String::new()),
                }
            }
        }
    };
    let writer = {
        let connection = Arc::clone(&connection);
        async move {
            while let Some(message) = outgoing.recv().await {
                let closing = matches!(message, Message::Close(_));
                let size = match &message {
                    Message::Text(text) => text.len(),
                    Message::Binary(bytes) => bytes.len(),
                    _ => 0,
                };
                if sink.send(message).await.is_err() {
                    return false;
                }
                let sender = {
                    let mut state = connection.lock();
                    state.out_bytes = state.out_bytes.saturating_sub(size);
                    if state.out_bytes <= SEND_HIGH_WATER {
                        state.sender.take()
                    } else {
                        None
                    }
                };
                connection.wake_sender(sender);
                if closing {
                    return true;
                }
            }
            false
        }
    };
    tokio::pin!(reader, writer);
    tokio::select! {
        () = &mut reader => {}
        closed = &mut writer => {
            if closed {
                // The app closed: the client has a moment to answer with its own close.
                if tokio::time::timeout(CLOSE_WAIT, reader).await.is_err() {
                    connection.ended(1006, String::new());
                }
            } else {
                reader.await;
            }
        }
    }
}

/// Serves one WebSocket upgrade with the hosted app.
pub(crate) async fn serve(app: Arc<AsgiApp>, request: Request) -> Response {
    let (mut parts, _body) = request.into_parts();
    let upgrade = match WebSocketUpgrade::from_request_parts(&mut parts, &()).await {
        Ok(upgrade) => upgrade,
        Err(rejection) => return rejection.into_response(),
    };
    let (answer, answered) = oneshot::channel();
    let connection = Arc::new(Connection {
        state: Mutex::new(State {
            answer: Some(answer),
            ..State::default()
        }),
        locals: Arc::clone(&app.locals),
        room: Notify::new(),
    });
    let for_app = Arc::clone(&connection);
    let host = Arc::clone(&app);
    let scheduled = app.locals.call_soon(Box::new(move |py| {
        let started = (|| -> PyResult<()> {
            let scope = scope(py, &parts, ScopeKind::WebSocket, &host.base)?;
            let handle = Bound::new(
                py,
                WebSocketConnection {
                    connection: Arc::clone(&for_app),
                },
            )?;
            let task = host.websocket_runner.bind(py).call1((scope, handle))?;
            for_app.lock().task = Some(task.unbind());
            Ok(())
        })();
        if started.is_err() {
            for_app.refuse(plain(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Internal Server Error",
            ));
        }
        started
    }));
    if !scheduled {
        return plain(
            StatusCode::SERVICE_UNAVAILABLE,
            "Service Unavailable: the application is not running",
        );
    }
    let answered = match app.options.response_timeout {
        None => answered.await.ok(),
        Some(limit) => match tokio::time::timeout(limit, answered).await {
            Ok(answered) => answered.ok(),
            Err(_elapsed) => {
                connection.refuse(plain(StatusCode::GATEWAY_TIMEOUT, "Gateway Timeout"));
                let task = connection.lock().task.take();
                if let Some(task) = task {
                    app.locals.call_soon(Box::new(move |py| {
                        task.bind(py).call_method0("cancel")?;
                        Ok(())
                    }));
                }
                return plain(
                    StatusCode::GATEWAY_TIMEOUT,
                    "Gateway Timeout: the application did not answer the WebSocket handshake in time",
                );
            }
        },
    };
    match answered {
        Some(Answer::Refuse(response)) => response,
        None => {
            connection.ended(1006, String::new());
            plain(
                StatusCode::SERVICE_UNAVAILABLE,
                "Service Unavailable: the application is not running",
            )
        }
        Some(Answer::Accept {
            subprotocol,
            headers,
            outgoing,
        }) => {
            // The subscription path's small read buffer (it grows for a larger message),
            // not axum's 128 KiB per connection.
            let mut upgrade =
                upgrade.read_buffer_size(fraiseql_server::WEBSOCKET_READ_BUFFER_BYTES);
            if let Some(max) = app.options.max_body_bytes {
                let max = usize::try_from(max).unwrap_or(usize::MAX);
                upgrade = upgrade.max_message_size(max).max_frame_size(max);
            }
            if let Some(subprotocol) = subprotocol {
                upgrade = upgrade.protocols([subprotocol]);
            }
            let failed = Arc::clone(&connection);
            let mut response = upgrade
                .on_failed_upgrade(move |_| failed.ended(1006, String::new()))
                .on_upgrade(move |socket| pump(socket, connection, outgoing));
            for (name, value) in &headers {
                response.headers_mut().append(name, value.clone());
            }
            response
        }
    }
}
