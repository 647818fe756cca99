//! Hosting an ASGI 3 application on the native server: every request the subscription
//! routes do not take ([`fraiseql_server::SubscriptionService::router_with_fallback`]) is
//! handed to the app, in-process, on the asyncio loop the server was started from.
//!
//! The GIL is taken only on the loop's thread, while Python runs: a request is queued to the
//! loop without it ([`crate::event_loop::LoopLocals::call_soon`]), the scope is built there,
//! and the runner (the package's `fraiseql_subscriptions.subscriptions.hosting`) starts the
//! app as a task. `receive` and `send` are Rust methods that return at once in the usual
//! case ([`ready::Ready`]) and an `asyncio.Future` when they must wait (request body not read
//! yet, response body not taken by the client yet), which hyper's side completes.
//!
//! - [`http`]: the `http` scope (bodies streamed both ways, 413 before the app for an
//!   oversize body, 504 when the app does not start its response in time, 500 when it
//!   raises).
//! - [`websocket`]: the `websocket` scope for every WebSocket path but the GraphQL one.
//! - [`scope`]: the scope dictionaries.
//! - [`app`]: the hosted app as the server holds it, with its bounds; [`exchange`] and
//!   [`body`]: one HTTP request's shared state and its streamed response body.

mod app;
mod body;
mod exchange;
pub(crate) mod http;
mod ready;
mod scope;
pub(crate) mod websocket;

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::Request;
use axum::http::header;
use axum::response::Response;
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::event_loop::LoopLocals;

use app::{AsgiApp, AsgiOptions};
pub(crate) use scope::ScopeBase;

/// An ASGI app to host, as the package's runner prepared it (`serve(..., app=...)` of the
/// executor); the loop is the one `serve` is awaited on.
#[pyclass(name = "HostedApp", module = "fraiseql_subscriptions._native", frozen)]
#[derive(Debug)]
pub(crate) struct PyHostedApp {
    http_runner: Py<PyAny>,
    websocket_runner: Py<PyAny>,
    root_path: String,
    state: Option<Py<PyDict>>,
    options: AsgiOptions,
}

#[pymethods]
impl PyHostedApp {
    /// `http_runner(scope, exchange)` and `websocket_runner(scope, connection)` start the
    /// app on a request and return its task; `root_path` is the prefix a proxy strips;
    /// `state` the lifespan state copied into each scope; `max_body_bytes` (413 past it)
    /// and `response_timeout` seconds (504 past it) bound the app, `None` for no bound.
    #[new]
    #[pyo3(signature = (http_runner, websocket_runner, *, root_path = String::new(), state = None, max_body_bytes = None, response_timeout = None))]
    fn new(
        http_runner: Py<PyAny>,
        websocket_runner: Py<PyAny>,
        root_path: String,
        state: Option<Py<PyDict>>,
        max_body_bytes: Option<u64>,
        response_timeout: Option<f64>,
    ) -> PyResult<Self> {
        if !root_path.is_empty() && (!root_path.starts_with('/') || root_path.ends_with('/')) {
            return Err(crate::errors::config(format!(
                "root_path must start with '/' and not end with one (got {root_path:?})"
            )));
        }
        if max_body_bytes == Some(0) {
            return Err(crate::errors::config(
                "max_body_bytes must be at least 1 (None for no limit)",
            ));
        }
        let response_timeout = match response_timeout {
            None => None,
            Some(seconds) if seconds.is_finite() && seconds > 0.0 => {
                Some(Duration::from_secs_f64(seconds))
            }
            Some(seconds) => {
                return Err(crate::errors::config(format!(
                    "response_timeout must be a positive number of seconds or None (got {seconds})"
                )))
            }
        };
        Ok(Self {
            http_runner,
            websocket_runner,
            root_path,
            state,
            options: AsgiOptions {
                max_body_bytes,
                response_timeout,
            },
        })
    }
}

impl PyHostedApp {
    /// The app bound to the loop of `locals`, as the server's fallback.
    pub(crate) fn service(&self, py: Python<'_>, locals: Arc<LoopLocals>) -> AsgiService {
        AsgiService(Arc::new(AsgiApp {
            http_runner: self.http_runner.clone_ref(py),
            websocket_runner: self.websocket_runner.clone_ref(py),
            locals,
            base: ScopeBase {
                root_path: self.root_path.clone(),
                state: self.state.as_ref().map(|s| s.clone_ref(py)),
            },
            options: self.options,
        }))
    }
}

/// The app as a `tower::Service`: the fallback of the subscription routes.
#[derive(Debug, Clone)]
pub(crate) struct AsgiService(pub(crate) Arc<AsgiApp>);

impl tower::Service<Request> for AsgiService {
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request) -> Self::Future {
        let app = Arc::clone(&self.0);
        Box::pin(async move {
            let upgrade = request
                .headers()
                .get_all(header::UPGRADE)
                .iter()
                .any(|v| v.as_bytes().eq_ignore_ascii_case(b"websocket"));
            Ok(if upgrade {
                websocket::serve(app, request).await
            } else {
                http::serve(app, request).await
            })
        })
    }
}
