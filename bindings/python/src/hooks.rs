//! The lifecycle hooks (`on_subscribe`, `on_complete`, `on_disconnect`) as a
//! [`ConnectionObserver`]: each call is handed to the event loop (fire and forget), where the
//! Python package's dispatcher runs the user's hooks and logs their exceptions.

use std::sync::Arc;

use fraiseql_protocol::SubscribePayload;
use fraiseql_server::{ConnectionObserver, Ended};
use fraiseql_subscriptions::security::Principal;
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::bridge::principal_to_dict;
use crate::convert::map_to_py;
use crate::event_loop::LoopLocals;

/// Calls `dispatch(kind, principal, id, detail)` on the loop: `kind` is `"subscribe"`
/// (detail: the request as a dict), `"complete"` (detail: how it ended) or
/// `"disconnect"`. The call is a job for the loop's thread (no GIL taken here).
pub(crate) struct PyObserver {
    dispatch: Arc<Py<PyAny>>,
    locals: Arc<LoopLocals>,
}

impl std::fmt::Debug for PyObserver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PyObserver").finish_non_exhaustive()
    }
}

impl PyObserver {
    pub(crate) fn new(dispatch: Py<PyAny>, locals: Arc<LoopLocals>) -> Self {
        Self {
            dispatch: Arc::new(dispatch),
            locals,
        }
    }

    fn send<D>(&self, kind: &'static str, principal: &Principal, id: Option<&str>, detail: D)
    where
        D: for<'py> FnOnce(Python<'py>) -> PyResult<Bound<'py, PyAny>> + Send + 'static,
    {
        let dispatch = Arc::clone(&self.dispatch);
        let principal = principal.clone();
        let id = id.map(str::to_owned);
        let scheduled = self.locals.call_soon(Box::new(move |py| {
            let principal = principal_to_dict(py, &principal)?;
            dispatch
                .bind(py)
                .call1((kind, principal, id, detail(py)?))
                .map(drop)
        }));
        if !scheduled {
            // The loop is gone (the app is shutting down): the hook cannot run.
            tracing::debug!("a lifecycle hook could not be scheduled: the loop is gone");
        }
    }
}

fn request<'py>(py: Python<'py>, payload: &SubscribePayload) -> PyResult<Bound<'py, PyAny>> {
    let dict = PyDict::new(py);
    dict.set_item("query", &payload.query)?;
    dict.set_item("operation_name", payload.operation_name.as_deref())?;
    match &payload.variables {
        Some(v) => dict.set_item("variables", map_to_py(py, v)?)?,
        None => dict.set_item("variables", PyDict::new(py))?,
    }
    Ok(dict.into_any())
}

impl ConnectionObserver for PyObserver {
    fn subscribed(&self, principal: &Principal, id: &str, payload: &SubscribePayload) {
        let payload = payload.clone();
        self.send("subscribe", principal, Some(id), move |py| {
            request(py, &payload)
        });
    }

    fn completed(&self, principal: &Principal, id: &str, how: Ended) {
        let how = how.as_str();
        self.send("complete", principal, Some(id), move |py| {
            Ok(pyo3::types::PyString::new(py, how).into_any())
        });
    }

    fn disconnected(&self, principal: &Principal) {
        self.send("disconnect", principal, None, |py| {
            Ok(py.None().into_bound(py))
        });
    }
}
