//! A Python callable behind the engine's [`OperationExecutor`] seam: the queries and
//! mutations clients send on the socket run as tasks on the user's event loop.
//!
//! The Python package wraps the user's `execute` into
//! `call(query, variables, operation_name, kind, principal, extensions) -> (verdict, body)`: `("next",
//! response)` with the GraphQL response dict, or `("error", errors)` with a list of error
//! dicts (request errors, or the callable's exception, already logged). Reading that pair
//! is all this side does.

use std::sync::Arc;

use async_trait::async_trait;
use fraiseql_protocol::GraphQLError;
use fraiseql_subscriptions::{ExecutionResult, OperationExecutor, OperationRequest};
use pyo3::prelude::*;
use pyo3::types::PyTuple;
use serde_json::{Map, Value};

use crate::bridge::principal_to_dict;
use crate::convert::{map_to_py, py_to_value};
use crate::event_loop::LoopLocals;

/// The user's `execute`, as the package wrapped it.
pub(crate) struct PyOperationExecutor {
    call: Arc<Py<PyAny>>,
    locals: Arc<LoopLocals>,
}

impl std::fmt::Debug for PyOperationExecutor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PyOperationExecutor")
            .finish_non_exhaustive()
    }
}

impl PyOperationExecutor {
    pub(crate) fn new(call: Py<PyAny>, locals: Arc<LoopLocals>) -> Self {
        Self {
            call: Arc::new(call),
            locals,
        }
    }
}

fn internal(message: impl Into<String>) -> Vec<GraphQLError> {
    vec![GraphQLError::new(message).with_code("INTERNAL_SERVER_ERROR")]
}

/// One error dict as a [`GraphQLError`]; a dict that is not one (no `message`) becomes an
/// error whose message is its JSON text, so nothing is lost.
fn graphql_error(value: Value) -> GraphQLError {
    serde_json::from_value::<GraphQLError>(value.clone())
        .unwrap_or_else(|_| GraphQLError::new(value.to_string()))
}

fn errors_of(value: Value) -> Vec<GraphQLError> {
    match value {
        Value::Array(items) => items.into_iter().map(graphql_error).collect(),
        Value::Null => Vec::new(),
        other => vec![graphql_error(other)],
    }
}

/// Reads the wrapper's `(verdict, body)`.
fn verdict_from(result: &Bound<'_, PyAny>) -> Result<ExecutionResult, Vec<GraphQLError>> {
    let read = || -> PyResult<(String, Value)> {
        let (verdict, body): (String, Bound<'_, PyAny>) = result.extract()?;
        Ok((verdict, py_to_value(&body)?))
    };
    let (verdict, body) = read().map_err(|err| {
        internal(format!(
            "Internal error: the operation executor's result could not be read ({err})"
        ))
    })?;
    match (verdict.as_str(), body) {
        ("next", Value::Object(mut response)) => Ok(ExecutionResult {
            data: response.remove("data").unwrap_or(Value::Null),
            errors: response.remove("errors").map(errors_of).unwrap_or_default(),
            extensions: match response.remove("extensions") {
                Some(Value::Object(map)) => Some(map),
                _ => None,
            },
        }),
        ("error", body) => Err(errors_of(body)),
        _ => Err(internal(
            "Internal error: the operation executor's result could not be read",
        )),
    }
}

#[async_trait]
impl OperationExecutor for PyOperationExecutor {
    async fn execute(
        &self,
        request: OperationRequest<'_>,
    ) -> Result<ExecutionResult, Vec<GraphQLError>> {
        let call = Arc::clone(&self.call);
        let query = request.query.to_owned();
        let variables: Option<Map<String, Value>> = request.variables.cloned();
        let extensions: Option<Map<String, Value>> = request.extensions.cloned();
        let operation_name = request.operation_name.map(str::to_owned);
        let kind = request.kind.as_str();
        let principal = request.principal.clone();
        // The call and the reading of its result both happen in the loop's thread.
        let outcome = crate::awaitable::run_on_loop(
            &self.locals,
            move |py| {
                let variables = match &variables {
                    Some(map) => map_to_py(py, map)?.into_any(),
                    None => py.None().into_bound(py),
                };
                let extensions = match &extensions {
                    Some(map) => map_to_py(py, map)?.into_any(),
                    None => py.None().into_bound(py),
                };
                let args = PyTuple::new(
                    py,
                    [
                        query.into_pyobject(py)?.into_any(),
                        variables,
                        operation_name.into_pyobject(py)?.into_any(),
                        kind.into_pyobject(py)?.into_any(),
                        principal_to_dict(py, &principal)?.into_any(),
                        extensions,
                    ],
                )?;
                call.bind(py).call1(args)
            },
            |_py, outcome| match outcome {
                Ok(result) => verdict_from(&result),
                Err(err) => Err(internal(format!(
                    "Internal error: the operation executor failed ({err})"
                ))),
            },
        );
        outcome
            .await
            .unwrap_or_else(|| Err(internal("The server is shutting down")))
    }
}
