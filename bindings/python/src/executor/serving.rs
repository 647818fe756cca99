//! Serving connections: one session for a Python transport (the ASGI adapters), and the
//! native server, optionally hosting an ASGI app.

use std::sync::Arc;

use fraiseql_protocol::{negotiate_subprotocol_header, Protocol};
use fraiseql_subscriptions::security::Authenticator;
use pyo3::prelude::*;
use tokio_util::sync::CancellationToken;

use crate::bridge::PyAuthenticator;
use crate::errors::{self, config, Kind};
use crate::session::PySession;

use crate::interpreter::runtime;

use super::registration::{auth_spec, AuthSpec};
use super::{lock, PySubscriptionExecutor};

#[pymethods]
impl PySubscriptionExecutor {
    /// The subprotocol to accept for a client offering `offered` (the
    /// `Sec-WebSocket-Protocol` header value or a list), or `None` when none is supported.
    #[staticmethod]
    fn negotiate(offered: &Bound<'_, PyAny>) -> PyResult<Option<&'static str>> {
        let header = if let Ok(s) = offered.extract::<String>() {
            s
        } else {
            offered.extract::<Vec<String>>()?.join(",")
        };
        Ok(negotiate_subprotocol_header(&header)
            .ok()
            .map(|p| p.subprotocol()))
    }

    /// Opens one connection for a transport that owns the socket (the ASGI adapters):
    /// `subprotocol` is what `negotiate` chose, or `None` (the session then closes 4406).
    /// `auth` (a `JwtAuth`, or an async callable `(payload) -> principal dict` that raises
    /// to refuse with 4403) decides this connection's `connection_init` instead of the
    /// executor's; a callable runs on the loop this is called from.
    /// Raises `SubscriptionError` when shutting down or at `max_connections`.
    #[pyo3(signature = (subprotocol, auth = None))]
    fn open_session(
        &self,
        py: Python<'_>,
        subprotocol: Option<&str>,
        auth: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<PySession> {
        let started = self.started()?;
        let authenticator: Option<Arc<dyn Authenticator>> = match auth_spec(auth)? {
            AuthSpec::Anonymous => None,
            AuthSpec::Rust(a) => Some(a),
            AuthSpec::Python(f) => {
                let running = crate::event_loop::running_loop(py)?;
                let locals = match crate::event_loop::LoopLocals::of(&running) {
                    Some(locals) => locals,
                    None => crate::event_loop::LoopLocals::current(py)?,
                };
                Some(Arc::new(PyAuthenticator::new(f, locals)))
            }
        };
        let protocol = match subprotocol {
            Some(name) => Protocol::from_subprotocol(name)
                .ok_or_else(|| format!("Unsupported subprotocol {name:?}")),
            None => {
                Err("No supported subprotocol: use graphql-transport-ws or graphql-ws".to_owned())
            }
        };
        let _entered = runtime()?.enter();
        let session = started
            .service
            .session_with(protocol, authenticator)
            .map_err(|e| errors::error(Kind::State, e.to_string()))?;
        Ok(PySession::new(session))
    }

    /// Serves the native Rust WebSocket/HTTP server on `host:port` (port 0 picks one) with
    /// this executor's fields, auth and bus; returns the running server.
    #[pyo3(signature = (host, port, app = None))]
    fn serve<'py>(
        &self,
        py: Python<'py>,
        host: String,
        port: u16,
        app: Option<PyRef<'py, crate::asgi::PyHostedApp>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let started = self.started()?;
        // The hosted app runs on the loop `serve` is awaited on.
        let router = match app {
            None => started.service.router(),
            Some(app) => {
                let running = crate::event_loop::running_loop(py)?;
                let locals = match crate::event_loop::LoopLocals::of(&running) {
                    Some(locals) => locals,
                    None => crate::event_loop::LoopLocals::current(py)?,
                };
                started
                    .service
                    .router_with_fallback(app.service(py, locals))
            }
        };
        crate::awaitable::future_into_py(py, async move {
            let listener = tokio::net::TcpListener::bind((host.as_str(), port))
                .await
                .map_err(|e| config(format!("cannot listen on {host}:{port}: {e}")))?;
            let local = listener.local_addr().map_err(|e| config(e.to_string()))?;
            let stop = CancellationToken::new();
            lock(&started.servers).push(stop.clone());
            let (done_tx, done_rx) = tokio::sync::watch::channel(false);
            let app = router;
            let until = stop.clone();
            tokio::spawn(async move {
                let served = fraiseql_server::serve_http(
                    listener,
                    app,
                    fraiseql_server::HttpLimits::default(),
                    async move { until.cancelled().await },
                )
                .await;
                if let Err(err) = served {
                    tracing::error!("the native server failed: {err}");
                }
                let _ = done_tx.send(true);
            });
            Ok(crate::session::PyNativeServer::new(local, stop, done_rx))
        })
    }
}
