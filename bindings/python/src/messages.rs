//! `PySubscriptionPayload` and `PyGraphQLMessage`: the protocol's client messages as
//! Python objects, parsed by the same strict parser the servers use.

use fraiseql_protocol::{parse_client_message, ClientMessage, Protocol, SubscribePayload};
use pyo3::prelude::*;
use pyo3::types::PyDict;
use serde_json::Value;

use crate::convert::{map_to_py, py_to_object, py_to_value};
use crate::errors::config;

/// The largest message `PyGraphQLMessage.from_dict` accepts (as the servers' default).
const MAX_MESSAGE_BYTES: usize = 64 * 1024;

fn protocol_named(name: &str) -> PyResult<Protocol> {
    Protocol::from_subprotocol(name).ok_or_else(|| {
        config(format!(
            "unknown protocol {name:?}: use \"graphql-transport-ws\" or \"graphql-ws\""
        ))
    })
}

/// A subscription request: the query, its operation name, variables and extensions.
#[pyclass(
    name = "SubscriptionPayload",
    module = "fraiseql_subscriptions._native",
    frozen
)]
#[derive(Debug, Clone)]
pub(crate) struct PySubscriptionPayload {
    pub(crate) inner: SubscribePayload,
}

#[pymethods]
impl PySubscriptionPayload {
    #[new]
    #[pyo3(signature = (query, operation_name = None, variables = None, extensions = None))]
    fn new(
        query: String,
        operation_name: Option<String>,
        variables: Option<&Bound<'_, PyAny>>,
        extensions: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        if query.trim().is_empty() {
            return Err(config(
                "query is empty: give a GraphQL subscription document",
            ));
        }
        Ok(Self {
            inner: SubscribePayload {
                query,
                operation_name,
                variables: py_to_object(variables, "variables")?,
                extensions: py_to_object(extensions, "extensions")?,
            },
        })
    }

    /// The GraphQL document.
    #[getter]
    fn query(&self) -> &str {
        &self.inner.query
    }

    /// The operation to run, when the document has several.
    #[getter]
    fn operation_name(&self) -> Option<&str> {
        self.inner.operation_name.as_deref()
    }

    /// The variables (a new dict on each access).
    #[getter]
    fn variables<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        match &self.inner.variables {
            Some(map) => map_to_py(py, map),
            None => Ok(PyDict::new(py)),
        }
    }

    /// The extensions, if any.
    #[getter]
    fn extensions<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyDict>>> {
        self.inner
            .extensions
            .as_ref()
            .map(|map| map_to_py(py, map))
            .transpose()
    }

    fn __repr__(&self) -> String {
        format!(
            "SubscriptionPayload(query={:?}, operation_name={:?})",
            self.inner.query, self.inner.operation_name
        )
    }
}

/// One client message of graphql-transport-ws (or the legacy graphql-ws), validated.
#[pyclass(
    name = "GraphQLMessage",
    module = "fraiseql_subscriptions._native",
    frozen
)]
#[derive(Debug, Clone)]
pub(crate) struct PyGraphQLMessage {
    message: ClientMessage,
    protocol: Protocol,
}

#[pymethods]
impl PyGraphQLMessage {
    /// Parses and validates a message given as a dict (`{"type": ..., "id": ..., "payload":
    /// ...}`); a malformed one raises `ConfigurationError` saying what is wrong.
    #[staticmethod]
    #[pyo3(signature = (data, protocol = "graphql-transport-ws"))]
    fn from_dict(data: &Bound<'_, PyAny>, protocol: &str) -> PyResult<Self> {
        let protocol = protocol_named(protocol)?;
        let value: Value = py_to_value(data)?;
        let text = value.to_string();
        let message = parse_client_message(protocol, &text, MAX_MESSAGE_BYTES).map_err(|e| {
            config(format!(
                "invalid {} message: {}",
                protocol.subprotocol(),
                e.reason()
            ))
        })?;
        Ok(Self { message, protocol })
    }

    /// The message as a dict, the way it travels.
    fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let value: Value = serde_json::from_str(&self.message.to_json(self.protocol))
            .map_err(|e| config(e.to_string()))?;
        crate::convert::value_to_py(py, &value)
    }

    /// The message as JSON text.
    fn to_json(&self) -> String {
        self.message.to_json(self.protocol)
    }

    /// The message type (`"subscribe"`, `"complete"`, `"connection_init"`, ...).
    #[getter]
    #[pyo3(name = "type")]
    fn message_type(&self) -> &'static str {
        self.message.type_name(self.protocol)
    }

    /// The original plan's name for `type`.
    #[getter]
    fn type_(&self) -> &'static str {
        self.message_type()
    }

    /// The message's `payload` as a dict (a new one on each access), or `None` when it has
    /// none.
    #[getter]
    fn payload<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyAny>>> {
        let value: Value = serde_json::from_str(&self.message.to_json(self.protocol))
            .map_err(|e| config(e.to_string()))?;
        match value.get("payload") {
            None | Some(Value::Null) => Ok(None),
            Some(payload) => crate::convert::value_to_py(py, payload).map(Some),
        }
    }

    /// The subscription id, for `subscribe` / `complete` (`start` / `stop`).
    #[getter]
    fn id(&self) -> Option<&str> {
        match &self.message {
            ClientMessage::Subscribe { id, .. } | ClientMessage::Complete { id } => Some(id),
            _ => None,
        }
    }

    /// The subscription request of a `subscribe` message.
    #[getter]
    fn subscription(&self) -> Option<PySubscriptionPayload> {
        match &self.message {
            ClientMessage::Subscribe { payload, .. } => Some(PySubscriptionPayload {
                inner: payload.clone(),
            }),
            _ => None,
        }
    }

    fn __repr__(&self) -> String {
        format!("GraphQLMessage({})", self.message.to_json(self.protocol))
    }
}

/// Registers the classes.
pub(crate) fn register(module: &Bound<'_, PyModule>) -> PyResult<()> {
    module.add_class::<PySubscriptionPayload>()?;
    module.add_class::<PyGraphQLMessage>()
}
