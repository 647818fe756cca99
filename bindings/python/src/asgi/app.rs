//! A hosted app as the server holds it ([`AsgiApp`]): the package's runners, the loop they
//! run on, the scope's base and the bounds the server keeps around the app
//! ([`AsgiOptions`]).

use std::sync::Arc;
use std::time::Duration;

use pyo3::prelude::*;

use super::exchange::Exchange;
use super::scope::ScopeBase;
use crate::event_loop::LoopLocals;

/// The bounds the server keeps around the app.
#[derive(Debug, Clone, Copy)]
pub(crate) struct AsgiOptions {
    /// Request bodies larger than this are refused with 413 (declared by `Content-Length`:
    /// before the app is called; streamed: as soon as they pass it). `None`: no limit.
    pub(crate) max_body_bytes: Option<u64>,
    /// How long the app has to start its response (`http.response.start` and a first body
    /// message) before the client gets 504 and the app's task is cancelled. `None`: no
    /// limit. Streaming after that is not bounded (server-sent events may last).
    pub(crate) response_timeout: Option<Duration>,
}

/// A hosted app: the runners the package gives, the loop they run on, its settings.
#[derive(Debug)]
pub(crate) struct AsgiApp {
    /// `runner(scope, exchange) -> task`: starts the app on an `http` scope.
    pub(crate) http_runner: Py<PyAny>,
    /// `runner(scope, connection) -> task`: starts the app on a `websocket` scope.
    pub(crate) websocket_runner: Py<PyAny>,
    pub(crate) locals: Arc<LoopLocals>,
    pub(crate) base: ScopeBase,
    pub(crate) options: AsgiOptions,
}

impl AsgiApp {
    /// The app did not answer in time: its task is cancelled.
    pub(crate) fn timed_out(&self, exchange: &Arc<Exchange>) {
        exchange.client_gone();
        let task = exchange.lock().task.take();
        if let Some(task) = task {
            self.locals.call_soon(Box::new(move |py| {
                task.bind(py).call_method0("cancel")?;
                Ok(())
            }));
        }
    }
}
