//! ASGI scope dictionaries for the requests a hosted app serves: `http` and `websocket`,
//! per the ASGI 3 HTTP and WebSocket specification (version 2.3).

use std::net::SocketAddr;

use axum::extract::ConnectInfo;
use axum::http::request::Parts;
use axum::http::{header, Version};
use fraiseql_server::LocalAddr;
use percent_encoding::percent_decode;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyString, PyTuple};
use pyo3::{intern, Py};

/// What every scope of one hosted app shares.
#[derive(Debug)]
pub(crate) struct ScopeBase {
    /// Prepended to `path` and `raw_path`, and given as `root_path` (an app mounted under a
    /// prefix by a proxy).
    pub(crate) root_path: String,
    /// The lifespan state (`scope["state"]`): each request gets a shallow copy.
    pub(crate) state: Option<Py<PyDict>>,
}

/// Which scope.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ScopeKind {
    /// An HTTP request.
    Http,
    /// A WebSocket handshake.
    WebSocket,
}

fn http_version(version: Version) -> &'static str {
    match version {
        Version::HTTP_09 => "0.9",
        Version::HTTP_10 => "1.0",
        Version::HTTP_2 => "2",
        Version::HTTP_3 => "3",
        _ => "1.1",
    }
}

fn address<'py>(py: Python<'py>, addr: SocketAddr) -> PyResult<Bound<'py, PyTuple>> {
    PyTuple::new(
        py,
        [
            addr.ip().to_string().into_pyobject(py)?.into_any(),
            addr.port().into_pyobject(py)?.into_any(),
        ],
    )
}

/// The scope of the request whose head is `parts`.
pub(crate) fn scope<'py>(
    py: Python<'py>,
    parts: &Parts,
    kind: ScopeKind,
    base: &ScopeBase,
) -> PyResult<Bound<'py, PyDict>> {
    let scope = PyDict::new(py);
    let asgi = PyDict::new(py);
    asgi.set_item(intern!(py, "version"), intern!(py, "3.0"))?;
    asgi.set_item(intern!(py, "spec_version"), intern!(py, "2.3"))?;
    match kind {
        ScopeKind::Http => {
            scope.set_item(intern!(py, "type"), intern!(py, "http"))?;
            scope.set_item(intern!(py, "scheme"), intern!(py, "http"))?;
            scope.set_item(intern!(py, "method"), parts.method.as_str())?;
        }
        ScopeKind::WebSocket => {
            scope.set_item(intern!(py, "type"), intern!(py, "websocket"))?;
            scope.set_item(intern!(py, "scheme"), intern!(py, "ws"))?;
            let offered = PyList::empty(py);
            for value in parts.headers.get_all(header::SEC_WEBSOCKET_PROTOCOL) {
                let Ok(value) = value.to_str() else { continue };
                for name in value.split(',').map(str::trim).filter(|n| !n.is_empty()) {
                    offered.append(name)?;
                }
            }
            scope.set_item(intern!(py, "subprotocols"), offered)?;
        }
    }
    scope.set_item(intern!(py, "asgi"), asgi)?;
    scope.set_item(intern!(py, "http_version"), http_version(parts.version))?;
    let raw_path = parts.uri.path().as_bytes();
    let decoded = percent_decode(raw_path).decode_utf8_lossy();
    if base.root_path.is_empty() {
        scope.set_item(intern!(py, "path"), PyString::new(py, &decoded))?;
        scope.set_item(intern!(py, "raw_path"), PyBytes::new(py, raw_path))?;
    } else {
        let path = format!("{}{decoded}", base.root_path);
        let mut raw = base.root_path.as_bytes().to_vec();
        raw.extend_from_slice(raw_path);
        scope.set_item(intern!(py, "path"), path)?;
        scope.set_item(intern!(py, "raw_path"), PyBytes::new(py, &raw))?;
    }
    scope.set_item(intern!(py, "root_path"), base.root_path.as_str())?;
    let query = parts.uri.query().unwrap_or("").as_bytes();
    scope.set_item(intern!(py, "query_string"), PyBytes::new(py, query))?;
    let headers = PyList::empty(py);
    for (name, value) in &parts.headers {
        headers.append(PyTuple::new(
            py,
            [
                PyBytes::new(py, name.as_str().as_bytes()),
                PyBytes::new(py, value.as_bytes()),
            ],
        )?)?;
    }
    scope.set_item(intern!(py, "headers"), headers)?;
    match parts.extensions.get::<ConnectInfo<SocketAddr>>() {
        Some(ConnectInfo(client)) => {
            scope.set_item(intern!(py, "client"), address(py, *client)?)?;
        }
        None => scope.set_item(intern!(py, "client"), py.None())?,
    }
    match parts.extensions.get::<LocalAddr>() {
        Some(LocalAddr(server)) => scope.set_item(intern!(py, "server"), address(py, *server)?)?,
        None => scope.set_item(intern!(py, "server"), py.None())?,
    }
    if let Some(state) = &base.state {
        scope.set_item(intern!(py, "state"), state.bind(py).copy()?)?;
    }
    Ok(scope)
}
