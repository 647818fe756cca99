//! Subscription documents: parse a GraphQL document (with [`apollo_compiler`]), pick the
//! operation, enforce the subscription rules and the size limits, validate it against the
//! schema when one is given, coerce variables, resolve the root field's arguments, and compile
//! the selection set into a [`ProjectionPlan`].
//!
//! Every failure is a list of [`GraphQLError`]s with a message, the document locations and an
//! `extensions.code`. Compiled operations are cached by document text, so a client that sends
//! the same document again (the common case) pays only for variable coercion.
//!
//! ```
//! use fraiseql_subscriptions::document::{DocumentLimits, SubscriptionDocuments};
//! use serde_json::json;
//!
//! let documents = SubscriptionDocuments::new(None, DocumentLimits::default()).unwrap();
//! let prepared = documents
//!     .prepare("subscription { messageAdded(room: \"a\") { id body: text } }", None, None)
//!     .unwrap();
//! assert_eq!(prepared.field, "messageAdded");
//! let payload = prepared.payload_for(&json!({"id": 1, "text": "hi", "secret": "x"}));
//! assert_eq!(payload, br#"{"data":{"messageAdded":{"id":1,"body":"hi"}}}"#);
//! ```

mod compile;
mod diagnostic;
mod limits;
mod plan;
mod projection;
mod selection;
mod variables;

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, RwLock};

use apollo_compiler::validation::Valid;
use apollo_compiler::Schema;
use fraiseql_protocol::GraphQLError;
use serde_json::{Map, Value};

use compile::{compile, CompiledOperation};
use diagnostic::{diagnostics_to_errors, error_at};
pub use limits::DocumentLimits;
pub use projection::ProjectionPlan;
use variables::{coerce_input, coerce_variables, literal_to_json};

/// `extensions.code` of variable and argument errors.
const BAD_USER_INPUT: &str = "BAD_USER_INPUT";

/// How many compiled operations the cache keeps before it evicts.
const CACHE_CAPACITY: usize = 1000;

/// Errors building a [`SubscriptionDocuments`].
#[derive(Debug, thiserror::Error)]
pub enum DocumentError {
    /// The SDL did not parse or validate; one message per problem, with its location.
    #[error("invalid schema: {}", .0.join("; "))]
    InvalidSchema(Vec<String>),
}

/// A subscription document ready to run: the root field, its resolved arguments, the
/// coerced variables and the projection plan for events.
#[derive(Debug, Clone)]
pub struct PreparedSubscription {
    /// The root field's name (what the subscription is about, e.g. `messageAdded`).
    pub field: String,
    /// The root field's alias, or its name: the key under `data` in every payload.
    pub response_key: String,
    /// The root field's arguments, variables substituted and schema defaults applied.
    pub arguments: Map<String, Value>,
    /// The coerced variable values.
    pub variables: Map<String, Value>,
    /// How each event value is shaped for this subscriber.
    pub plan: Arc<ProjectionPlan>,
    /// The operation's name, if it has one.
    pub operation_name: Option<String>,
}

impl PreparedSubscription {
    /// Dotted paths of every field selected below the root field (e.g. `author.email`), for
    /// field-level authorization.
    pub fn selected_fields(&self) -> impl Iterator<Item = &str> {
        self.plan.selected_fields()
    }

    /// The `{"data":{"<response_key>":...}}` payload for one event value.
    #[must_use]
    pub fn payload_for(&self, value: &Value) -> Vec<u8> {
        let mut out = Vec::with_capacity(128);
        self.plan.write_payload(&self.response_key, value, &mut out);
        out
    }
}

/// Compiled operations of one document text, by operation name.
type CacheEntry = Vec<(Option<String>, Arc<CompiledOperation>)>;

/// Prepares subscription documents, optionally against a schema. Cheap to share: `Send +
/// Sync`, with an internal cache of compiled operations keyed by document text.
pub struct SubscriptionDocuments {
    schema: Option<Arc<Valid<Schema>>>,
    limits: DocumentLimits,
    cache: RwLock<HashMap<String, CacheEntry>>,
}

impl fmt::Debug for SubscriptionDocuments {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SubscriptionDocuments")
            .field("has_schema", &self.schema.is_some())
            .field("limits", &self.limits)
            .field("cached", &self.cached_documents())
            .finish_non_exhaustive()
    }
}

impl SubscriptionDocuments {
    /// Documents checked against `schema_sdl` when given (unknown fields, argument types,
    /// leaf selections...), or only against the rules that need no schema.
    ///
    /// # Errors
    ///
    /// [`DocumentError::InvalidSchema`] when the SDL does not parse or validate.
    pub fn new(schema_sdl: Option<&str>, limits: DocumentLimits) -> Result<Self, DocumentError> {
        let schema = match schema_sdl {
            None => None,
            Some(sdl) => Some(Arc::new(
                Schema::parse_and_validate(sdl, "schema.graphql").map_err(|with_errors| {
                    DocumentError::InvalidSchema(
                        diagnostics_to_errors(&with_errors.errors, "")
                            .into_iter()
                            .map(|e| match e.locations.first() {
                                Some(l) => {
                                    format!("{} (line {}, column {})", e.message, l.line, l.column)
                                }
                                None => e.message,
                            })
                            .collect(),
                    )
                })?,
            )),
        };
        Ok(Self {
            schema,
            limits,
            cache: RwLock::new(HashMap::new()),
        })
    }

    /// The limits in force.
    #[must_use]
    pub fn limits(&self) -> DocumentLimits {
        self.limits
    }

    /// How many distinct document texts are cached.
    #[must_use]
    pub fn cached_documents(&self) -> usize {
        self.cache.read().map_or(0, |c| c.len())
    }

    fn compiled(
        &self,
        query: &str,
        operation_name: Option<&str>,
    ) -> Result<Arc<CompiledOperation>, Vec<GraphQLError>> {
        if let Ok(cache) = self.cache.read() {
            if let Some(entry) = cache.get(query) {
                if let Some((_, op)) = entry.iter().find(|(n, _)| n.as_deref() == operation_name) {
                    return Ok(op.clone());
                }
            }
        }
        let op = Arc::new(compile(
            query,
            operation_name,
            self.schema.as_deref(),
            self.limits,
        )?);
        // A poisoned lock only loses caching, never correctness.
        if let Ok(mut cache) = self.cache.write() {
            if cache.len() >= CACHE_CAPACITY && !cache.contains_key(query) {
                if let Some(victim) = cache.keys().next().cloned() {
                    cache.remove(&victim);
                }
            }
            let entry = cache.entry(query.to_owned()).or_default();
            if !entry.iter().any(|(n, _)| n.as_deref() == operation_name) {
                entry.push((operation_name.map(str::to_owned), op.clone()));
            }
        }
        Ok(op)
    }

    /// Prepares `query` for subscribing: picks the operation by `operation_name`, checks it,
    /// coerces `variables`, resolves the root field's arguments and builds the plan.
    ///
    /// # Errors
    ///
    /// GraphQL errors with `extensions.code`: `DOCUMENT_TOO_LARGE`, `GRAPHQL_PARSE_FAILED`
    /// (syntax), `GRAPHQL_VALIDATION_FAILED` (operation selection, not a subscription, not
    /// exactly one root field, schema validation), `MAX_DEPTH_EXCEEDED`,
    /// `MAX_FIELDS_EXCEEDED`, `BAD_USER_INPUT` (variables).
    pub fn prepare(
        &self,
        query: &str,
        operation_name: Option<&str>,
        variables: Option<&Map<String, Value>>,
    ) -> Result<PreparedSubscription, Vec<GraphQLError>> {
        if query.len() > self.limits.max_document_bytes {
            return Err(vec![error_at(
                format!(
                    "The document is {} bytes; at most {} are accepted.",
                    query.len(),
                    self.limits.max_document_bytes
                ),
                None,
                "DOCUMENT_TOO_LARGE",
            )]);
        }
        let op = self.compiled(query, operation_name)?;
        let schema: Option<&Schema> = self.schema.as_deref().map(|s| &**s);
        let variables = coerce_variables(&op.variables, variables, schema).map_err(|errors| {
            errors
                .into_iter()
                .map(|(message, location)| error_at(message, location, BAD_USER_INPUT))
                .collect::<Vec<_>>()
        })?;
        let plan = match &op.static_plan {
            Some(plan) => plan.clone(),
            None => Arc::new(op.plan(&variables)?),
        };
        let arguments = resolve_arguments(&op, &variables, schema)?;
        Ok(PreparedSubscription {
            field: op.field.clone(),
            response_key: op.response_key.clone(),
            arguments,
            variables,
            plan,
            operation_name: op.operation_name.clone(),
        })
    }
}

fn resolve_arguments(
    op: &CompiledOperation,
    variables: &Map<String, Value>,
    schema: Option<&Schema>,
) -> Result<Map<String, Value>, Vec<GraphQLError>> {
    let mut arguments = Map::new();
    match &op.argument_defs {
        None => {
            for (name, value) in &op.arguments {
                if let Some(v) = literal_to_json(value, variables) {
                    arguments.insert(name.clone(), v);
                }
            }
        }
        Some(defs) => {
            for def in defs {
                let given = op
                    .arguments
                    .iter()
                    .find(|(name, _)| name == def.name.as_str())
                    .and_then(|(_, value)| literal_to_json(value, variables));
                let value = match given {
                    Some(v) => v,
                    None => match &def.default_value {
                        Some(default) => {
                            literal_to_json(default, &Map::new()).unwrap_or(Value::Null)
                        }
                        None => continue,
                    },
                };
                let at = format!("Argument \"{}\"", def.name);
                let coerced = coerce_input(&value, &def.ty, schema, &at)
                    .map_err(|message| vec![error_at(message, None, BAD_USER_INPUT)])?;
                arguments.insert(def.name.to_string(), coerced);
            }
        }
    }
    Ok(arguments)
}

#[cfg(test)]
mod tests;
