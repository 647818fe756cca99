//! Queries and mutations on the socket: the [`OperationExecutor`] seam.
//!
//! graphql-transport-ws lets a client send any operation in a `subscribe` message ("single
//! result operations": Apollo Client and urql do so when told to use the socket for
//! everything). The engine serves subscriptions itself; a query or a mutation goes to the
//! executor set in [`EngineConfig::operations`](crate::EngineConfig::operations), if
//! there is one, and its result goes back as one `next` followed by `complete` (legacy
//! graphql-ws: `data`, then `complete`). Without an executor such an operation is refused
//! with an `error`, as before.
//!
//! ```
//! use async_trait::async_trait;
//! use fraiseql_protocol::GraphQLError;
//! use fraiseql_subscriptions::{ExecutionResult, OperationExecutor, OperationRequest};
//! use serde_json::json;
//!
//! /// Answers `{ me }` with the connection's user id.
//! #[derive(Debug)]
//! struct WhoAmI;
//!
//! #[async_trait]
//! impl OperationExecutor for WhoAmI {
//!     async fn execute(
//!         &self,
//!         request: OperationRequest<'_>,
//!     ) -> Result<ExecutionResult, Vec<GraphQLError>> {
//!         if !request.query.contains("me") {
//!             return Err(vec![GraphQLError::new("only { me } is served here")]);
//!         }
//!         Ok(ExecutionResult::data(json!({ "me": request.principal.user_id })))
//!     }
//! }
//! ```

use std::fmt;

use apollo_compiler::ast::{self, OperationType};
use async_trait::async_trait;
use fraiseql_protocol::GraphQLError;
use serde::Serialize;
use serde_json::{Map, Value};

use crate::security::Principal;

/// Which kind of single-result operation a request is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OperationKind {
    /// A `query`.
    Query,
    /// A `mutation`.
    Mutation,
}

impl OperationKind {
    /// `"query"` or `"mutation"`.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Query => "query",
            Self::Mutation => "mutation",
        }
    }
}

impl fmt::Display for OperationKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One query or mutation a client sent on its socket, as the executor receives it.
#[derive(Debug, Clone, Copy)]
pub struct OperationRequest<'a> {
    /// Query or mutation (the operation the document and `operation_name` select).
    pub kind: OperationKind,
    /// The whole document, as the client sent it (the engine only parsed it far enough to
    /// find the operation's kind; validating it is the executor's job).
    pub query: &'a str,
    /// The operation to run, when the document holds several.
    pub operation_name: Option<&'a str>,
    /// The variables, as sent.
    pub variables: Option<&'a Map<String, Value>>,
    /// The request's `extensions`, as sent.
    pub extensions: Option<&'a Map<String, Value>>,
    /// Who sent it: the connection's authenticated principal.
    pub principal: &'a Principal,
}

/// The result of executing a query or mutation: the GraphQL response sent in the `next`
/// message (`{"data": ..., "errors": [...], "extensions": {...}}`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ExecutionResult {
    /// The data; `null` when execution failed at the root.
    pub data: Value,
    /// Field errors raised during execution (the response still carries `data`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<GraphQLError>,
    /// Extra response data for the client (tracing, cost, ...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub extensions: Option<Map<String, Value>>,
}

impl ExecutionResult {
    /// A result with `data` and nothing else.
    #[must_use]
    pub const fn data(data: Value) -> Self {
        Self {
            data,
            errors: Vec::new(),
            extensions: None,
        }
    }

    /// The response as JSON text, as it goes in a `next` message's payload.
    #[must_use]
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| r#"{"data":null}"#.to_owned())
    }
}

/// Runs queries and mutations that clients send over the subscription socket.
///
/// Called once per operation, on its own task: a slow operation holds up nothing else on
/// the connection. When the client sends `complete` for the operation (or goes away) before
/// it finishes, the task is dropped and no result is sent.
#[async_trait]
pub trait OperationExecutor: Send + Sync + fmt::Debug {
    /// Executes `request`.
    ///
    /// # Errors
    /// Errors that prevented execution (a document that does not parse or validate,
    /// variables that do not coerce, a refusal): the client gets them in an `error`
    /// message instead of a `next`. Errors raised while executing belong in
    /// [`ExecutionResult::errors`].
    async fn execute(
        &self,
        request: OperationRequest<'_>,
    ) -> Result<ExecutionResult, Vec<GraphQLError>>;
}

/// The kind of the operation `operation_name` selects in `query`, when it is a query or a
/// mutation; `None` for a subscription, a document that does not parse, or a name that
/// selects nothing (the subscription compiler's errors then say why).
#[must_use]
pub fn operation_kind(query: &str, operation_name: Option<&str>) -> Option<OperationKind> {
    let document = ast::Document::parse(query, "operation.graphql").ok()?;
    let mut operations = document
        .definitions
        .iter()
        .filter_map(|definition| match definition {
            ast::Definition::OperationDefinition(op) => Some(op),
            _ => None,
        });
    let operation = match operation_name {
        Some(wanted) => operations.find(|op| op.name.as_ref().is_some_and(|n| n == wanted))?,
        None => {
            let only = operations.next()?;
            if operations.next().is_some() {
                return None;
            }
            only
        }
    };
    match operation.operation_type {
        OperationType::Query => Some(OperationKind::Query),
        OperationType::Mutation => Some(OperationKind::Mutation),
        OperationType::Subscription => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_selected_operation_decides_the_kind() {
        assert_eq!(operation_kind("{ a }", None), Some(OperationKind::Query));
        assert_eq!(
            operation_kind("mutation M { a }", None),
            Some(OperationKind::Mutation)
        );
        assert_eq!(operation_kind("subscription { a }", None), None);
        let both = "query Q { a } mutation M { b } subscription S { c }";
        assert_eq!(operation_kind(both, Some("Q")), Some(OperationKind::Query));
        assert_eq!(
            operation_kind(both, Some("M")),
            Some(OperationKind::Mutation)
        );
        assert_eq!(operation_kind(both, Some("S")), None);
        assert_eq!(operation_kind(both, Some("Nope")), None);
        assert_eq!(operation_kind(both, None), None, "ambiguous without a name");
        assert_eq!(operation_kind("query {", None), None, "does not parse");
        assert_eq!(operation_kind("", None), None);
    }

    #[test]
    fn a_result_serializes_as_a_graphql_response() {
        let plain = ExecutionResult::data(json!({"a": 1}));
        assert_eq!(plain.to_json(), r#"{"data":{"a":1}}"#);
        let failed = ExecutionResult {
            data: Value::Null,
            errors: vec![GraphQLError::new("boom")],
            extensions: Some(Map::from_iter([("cost".to_owned(), json!(3))])),
        };
        assert_eq!(
            failed.to_json(),
            r#"{"data":null,"errors":[{"message":"boom"}],"extensions":{"cost":3}}"#
        );
    }
}
