//! From document text to a compiled operation: parse, pick the operation, check the
//! subscription rules and limits, validate, and build the variable-independent selection tree.

use std::collections::HashMap;
use std::sync::Arc;

use apollo_compiler::ast::{self, Definition, OperationType, Selection};
use apollo_compiler::validation::Valid;
use apollo_compiler::{Node, Schema};
use fraiseql_protocol::GraphQLError;
use serde_json::{Map, Value};

use super::diagnostic::{
    diagnostics_to_errors, error_at, line_col, PARSE_FAILED, VALIDATION_FAILED,
};
use super::limits::DocumentLimits;
use super::plan::build_plan;
use super::projection::ProjectionPlan;
use super::selection::{Builder, RawSelection};
use super::variables::VariableDef;

/// Directives every executable document may use, known to apollo-compiler only with a schema.
const BUILT_IN_DIRECTIVES: [&str; 2] = ["skip", "include"];

/// A parsed, checked subscription operation, independent of variable values: what the
/// cache keeps.
#[derive(Debug)]
pub(super) struct CompiledOperation {
    pub(super) operation_name: Option<String>,
    pub(super) field: String,
    pub(super) response_key: String,
    pub(super) arguments: Vec<(String, Node<ast::Value>)>,
    /// The root field's argument definitions, when a schema is given.
    pub(super) argument_defs: Option<Vec<Node<ast::InputValueDefinition>>>,
    pub(super) variables: Vec<VariableDef>,
    pub(super) root_type: Option<Arc<str>>,
    pub(super) root_children: Option<Vec<RawSelection>>,
    /// The plan, built once, when no `@skip`/`@include` depends on a variable.
    pub(super) static_plan: Option<Arc<ProjectionPlan>>,
}

impl CompiledOperation {
    /// The projection plan for these coerced variables (`@skip`/`@include` resolved).
    pub(super) fn plan(
        &self,
        vars: &Map<String, Value>,
    ) -> Result<ProjectionPlan, Vec<GraphQLError>> {
        build_plan(self.root_children.as_deref(), self.root_type.as_ref(), vars)
    }
}

/// Collects the root fields of a selection set (through fragments), for the single-root rule.
fn root_fields<'a>(
    selections: &'a [Selection],
    fragments: &HashMap<&'a str, &'a Node<ast::FragmentDefinition>>,
    seen: &mut Vec<&'a str>,
    out: &mut Vec<&'a Node<ast::Field>>,
) {
    for selection in selections {
        match selection {
            Selection::Field(f) => out.push(f),
            Selection::InlineFragment(inline) => {
                root_fields(&inline.selection_set, fragments, seen, out);
            }
            Selection::FragmentSpread(spread) => {
                let name = spread.fragment_name.as_str();
                if seen.contains(&name) {
                    continue;
                }
                seen.push(name);
                if let Some(def) = fragments.get(name) {
                    root_fields(&def.selection_set, fragments, seen, out);
                }
            }
        }
    }
}

/// Parses, checks and compiles one operation of `text`.
pub(super) fn compile(
    text: &str,
    operation_name: Option<&str>,
    schema: Option<&Valid<Schema>>,
    limits: DocumentLimits,
) -> Result<CompiledOperation, Vec<GraphQLError>> {
    let document = ast::Document::parse(text, "subscription.graphql")
        .map_err(|with_errors| diagnostics_to_errors(&with_errors.errors, PARSE_FAILED))?;
    let sources = &document.sources;
    let operations: Vec<&Node<ast::OperationDefinition>> = document
        .definitions
        .iter()
        .filter_map(Definition::as_operation_definition)
        .collect();
    let operation = match operation_name {
        Some(wanted) => operations
            .iter()
            .find(|op| op.name.as_ref().is_some_and(|n| n.as_str() == wanted))
            .ok_or_else(|| {
                vec![error_at(
                    format!("Unknown operation named \"{wanted}\"."),
                    None,
                    VALIDATION_FAILED,
                )]
            })?,
        None => match operations.as_slice() {
            [] => {
                return Err(vec![error_at(
                    "The document contains no operation.",
                    None,
                    VALIDATION_FAILED,
                )])
            }
            [only] => only,
            _ => {
                return Err(vec![error_at(
                    "Must provide operation name if query contains multiple operations.",
                    None,
                    VALIDATION_FAILED,
                )])
            }
        },
    };
    let op_location = line_col(operation.location(), sources);
    let display_name = operation
        .name
        .as_ref()
        .map_or_else(|| "anonymous".to_owned(), |n| format!("'{n}'"));
    if operation.operation_type != OperationType::Subscription {
        let kind = match operation.operation_type {
            OperationType::Query => "a query",
            OperationType::Mutation => "a mutation",
            OperationType::Subscription => "a subscription",
        };
        return Err(vec![error_at(
            format!(
                "Operation {display_name} is {kind}; only subscriptions are served over this endpoint."
            ),
            op_location,
            VALIDATION_FAILED,
        )]);
    }

    let fragments: HashMap<&str, &Node<ast::FragmentDefinition>> = document
        .definitions
        .iter()
        .filter_map(Definition::as_fragment_definition)
        .map(|f| (f.name.as_str(), f))
        .collect();

    // GraphQL spec §5.2.3.1: a subscription selects exactly one root field.
    let mut roots = Vec::new();
    root_fields(
        &operation.selection_set,
        &fragments,
        &mut Vec::new(),
        &mut roots,
    );
    let Some(root) = roots.first().copied() else {
        return Err(vec![error_at(
            format!("Subscription {display_name} must select only one top level field."),
            op_location,
            VALIDATION_FAILED,
        )]);
    };
    if roots
        .iter()
        .any(|f| f.response_name() != root.response_name())
    {
        return Err(vec![error_at(
            format!("Subscription {display_name} must select only one top level field."),
            line_col(roots.get(1).and_then(|f| f.location()), sources).or(op_location),
            VALIDATION_FAILED,
        )]);
    }
    if let Some(intro) = roots.iter().find(|f| f.name.starts_with("__")) {
        return Err(vec![error_at(
            format!(
                "Subscription {display_name} must not select an introspection top level field."
            ),
            line_col(intro.location(), sources),
            VALIDATION_FAILED,
        )]);
    }
    if let Some(directive) = roots.iter().find_map(|f| {
        f.directives
            .iter()
            .find(|d| d.name == "skip" || d.name == "include")
    }) {
        return Err(vec![error_at(
            format!(
                "Subscription {display_name} must not use @{} on its top level field.",
                directive.name
            ),
            line_col(directive.location(), sources),
            VALIDATION_FAILED,
        )]);
    }

    let plain_schema: Option<&Schema> = schema.map(|s| &**s);
    let root_object = plain_schema
        .and_then(|s| s.root_operation(OperationType::Subscription))
        .map(|n| n.to_string());
    let field_def = match (plain_schema, &root_object) {
        (Some(s), Some(root_name)) => s.type_field(root_name, &root.name).ok(),
        _ => None,
    };
    let root_type: Option<Arc<str>> =
        field_def.map(|def| Arc::from(def.ty.inner_named_type().as_str()));

    // Limits before validation, so that a fragment bomb costs us nothing more.
    let mut builder = Builder::new(plain_schema, fragments, sources, limits);
    let mut root_children: Option<Vec<RawSelection>> = None;
    let root_parent: Option<Arc<str>> = root_object.as_deref().map(Arc::from);
    for field in &roots {
        let raw = builder
            .field(field, root_parent.as_ref(), 1)
            .map_err(|e| vec![e])?;
        if let Some(children) = raw.children {
            root_children.get_or_insert_with(Vec::new).extend(children);
        }
    }

    match schema {
        Some(schema) => {
            if let Err(with_errors) = document.to_executable_validate(schema) {
                return Err(diagnostics_to_errors(
                    &with_errors.errors,
                    VALIDATION_FAILED,
                ));
            }
        }
        None => {
            if let Err(errors) = document.validate_standalone_executable() {
                // Without a schema apollo-compiler does not know the built-in directives.
                let errors: Vec<GraphQLError> = diagnostics_to_errors(&errors, VALIDATION_FAILED)
                    .into_iter()
                    .filter(|e| {
                        !BUILT_IN_DIRECTIVES.iter().any(|d| {
                            e.message == format!("cannot find directive `@{d}` in this document")
                        })
                    })
                    .collect();
                if !errors.is_empty() {
                    return Err(errors);
                }
            }
        }
    }

    let variables = operation
        .variables
        .iter()
        .map(|def| VariableDef {
            name: def.name.to_string(),
            ty: def.ty.clone(),
            default: def.default_value.clone(),
            location: line_col(def.location(), sources),
        })
        .collect();
    let has_variable_conditions = builder.has_variable_conditions();
    let mut compiled = CompiledOperation {
        operation_name: operation.name.as_ref().map(ToString::to_string),
        field: root.name.to_string(),
        response_key: root.response_name().to_string(),
        arguments: root
            .arguments
            .iter()
            .map(|arg| (arg.name.to_string(), arg.value.clone()))
            .collect(),
        argument_defs: field_def.map(|def| def.arguments.clone()),
        variables,
        root_type,
        root_children,
        static_plan: None,
    };
    if !has_variable_conditions {
        compiled.static_plan = Some(Arc::new(compiled.plan(&Map::new())?));
    }
    Ok(compiled)
}
