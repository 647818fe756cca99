//! From document text to a compiled operation: parse, pick the operation, check the
//! subscription rules and limits, validate, and build the variable-independent selection tree.

use std::collections::HashMap;
use std::sync::Arc;

use apollo_compiler::ast::{self, Definition, DirectiveList, OperationType, Selection};
use apollo_compiler::parser::{SourceMap, SourceSpan};
use apollo_compiler::validation::{DiagnosticList, Valid};
use apollo_compiler::{Node, Schema};
use fraiseql_protocol::GraphQLError;
use serde_json::{Map, Value};

use super::projection::{
    ConditionalPlan, FieldKind, FieldPlan, PlanItem, ProjectionPlan, SelectionPlan,
};
use super::variables::VariableDef;
use super::DocumentLimits;

/// `extensions.code` of syntax errors.
pub(super) const PARSE_FAILED: &str = "GRAPHQL_PARSE_FAILED";
/// `extensions.code` of document rule violations.
pub(super) const VALIDATION_FAILED: &str = "GRAPHQL_VALIDATION_FAILED";

/// Directives every executable document may use, known to apollo-compiler only with a schema.
const BUILT_IN_DIRECTIVES: [&str; 2] = ["skip", "include"];

/// A `@skip(if:)` / `@include(if:)` operand.
#[derive(Debug, Clone)]
pub(super) enum BoolRef {
    Const(bool),
    Var(String),
}

/// One `@skip` (`skip == true`) or `@include` condition.
#[derive(Debug, Clone)]
pub(super) struct Condition {
    skip: bool,
    value: BoolRef,
    location: Option<(u32, u32)>,
}

/// A selection before `@skip`/`@include` are resolved.
#[derive(Debug, Clone)]
pub(super) enum RawSelection {
    Field(RawField),
    Fragment(RawFragment),
}

#[derive(Debug, Clone)]
pub(super) struct RawField {
    response_key: String,
    name: String,
    conditions: Vec<Condition>,
    /// The field's named return type, when the schema knows it.
    static_type: Option<Arc<str>>,
    children: Option<Vec<RawSelection>>,
}

#[derive(Debug, Clone)]
pub(super) struct RawFragment {
    /// `None` when the fragment always applies (no type condition, or the enclosing object type).
    type_condition: Option<Arc<str>>,
    possible_types: Option<Arc<[Box<str>]>>,
    static_match: bool,
    conditions: Vec<Condition>,
    children: Vec<RawSelection>,
}

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

fn line_col(span: Option<SourceSpan>, sources: &SourceMap) -> Option<(u32, u32)> {
    let lc = span?.line_column(sources)?;
    Some((
        u32::try_from(lc.line).unwrap_or(u32::MAX),
        u32::try_from(lc.column).unwrap_or(u32::MAX),
    ))
}

pub(super) fn error_at(
    message: impl Into<String>,
    location: Option<(u32, u32)>,
    code: &str,
) -> GraphQLError {
    let err = GraphQLError::new(message).with_code(code);
    match location {
        Some((line, column)) => err.with_location(line, column),
        None => err,
    }
}

pub(super) fn diagnostics_to_errors(list: &DiagnosticList, code: &str) -> Vec<GraphQLError> {
    list.iter()
        .map(|d| {
            let json = d.to_json();
            let mut err = GraphQLError::new(json.message).with_code(code);
            for lc in json.locations {
                err = err.with_location(
                    u32::try_from(lc.line).unwrap_or(u32::MAX),
                    u32::try_from(lc.column).unwrap_or(u32::MAX),
                );
            }
            err
        })
        .collect()
}

/// Everything the selection-tree builder needs.
struct Builder<'a> {
    schema: Option<&'a Schema>,
    fragments: HashMap<&'a str, &'a Node<ast::FragmentDefinition>>,
    sources: &'a SourceMap,
    limits: DocumentLimits,
    fields: usize,
    spreading: Vec<&'a str>,
    has_variable_conditions: bool,
}

impl<'a> Builder<'a> {
    fn conditions(&mut self, directives: &DirectiveList) -> Vec<Condition> {
        let mut out = Vec::new();
        for directive in directives.iter() {
            let skip = match directive.name.as_str() {
                "skip" => true,
                "include" => false,
                _ => continue,
            };
            let value = match directive.specified_argument_by_name("if").map(|v| &**v) {
                Some(ast::Value::Boolean(b)) => BoolRef::Const(*b),
                Some(ast::Value::Variable(name)) => {
                    self.has_variable_conditions = true;
                    BoolRef::Var(name.to_string())
                }
                // Validation reports a missing or mistyped `if`; treat it as not skipping.
                _ => BoolRef::Const(!skip),
            };
            out.push(Condition {
                skip,
                value,
                location: line_col(directive.location(), self.sources),
            });
        }
        out
    }

    fn possible_types(&self, condition: &str) -> Option<Arc<[Box<str>]>> {
        let schema = self.schema?;
        let types: Vec<Box<str>> = schema
            .types
            .iter()
            .filter(|(name, ty)| {
                ty.is_object() && (name.as_str() == condition || schema.is_subtype(condition, name))
            })
            .map(|(name, _)| Box::from(name.as_str()))
            .collect();
        Some(types.into())
    }

    fn fragment(
        &mut self,
        type_condition: Option<&str>,
        parent_type: Option<&Arc<str>>,
        directives: &DirectiveList,
        selections: &'a [Selection],
        depth: usize,
    ) -> Result<RawSelection, GraphQLError> {
        let conditions = self.conditions(directives);
        let static_match = match (type_condition, parent_type) {
            (Some(c), Some(p)) => c == &**p,
            (None, _) => true,
            (Some(_), None) => false,
        };
        let parent_is_object = match (self.schema, parent_type) {
            (Some(s), Some(p)) => s.get_object(p).is_some(),
            _ => false,
        };
        let always = type_condition.is_none() || (static_match && parent_is_object);
        let inner_type: Option<Arc<str>> = match type_condition {
            Some(c) if !always => Some(Arc::from(c)),
            _ => parent_type.cloned(),
        };
        let children = self.selections(selections, inner_type.as_ref(), depth)?;
        Ok(RawSelection::Fragment(RawFragment {
            type_condition: if always { None } else { inner_type.clone() },
            possible_types: match type_condition {
                Some(c) if !always => self.possible_types(c),
                _ => None,
            },
            static_match,
            conditions,
            children,
        }))
    }

    fn selections(
        &mut self,
        selections: &'a [Selection],
        parent_type: Option<&Arc<str>>,
        depth: usize,
    ) -> Result<Vec<RawSelection>, GraphQLError> {
        let mut out = Vec::with_capacity(selections.len());
        for selection in selections {
            match selection {
                Selection::Field(field) => {
                    out.push(RawSelection::Field(self.field(
                        field,
                        parent_type,
                        depth,
                    )?));
                }
                Selection::InlineFragment(inline) => out.push(self.fragment(
                    inline.type_condition.as_ref().map(|n| n.as_str()),
                    parent_type,
                    &inline.directives,
                    &inline.selection_set,
                    depth,
                )?),
                Selection::FragmentSpread(spread) => {
                    let name = spread.fragment_name.as_str();
                    let location = line_col(spread.location(), self.sources);
                    let Some(def) = self.fragments.get(name).copied() else {
                        return Err(error_at(
                            format!("Unknown fragment \"{name}\"."),
                            location,
                            VALIDATION_FAILED,
                        ));
                    };
                    if self.spreading.contains(&name) {
                        return Err(error_at(
                            format!("Cannot spread fragment \"{name}\" within itself."),
                            location,
                            VALIDATION_FAILED,
                        ));
                    }
                    self.spreading.push(name);
                    let mut raw = self.fragment(
                        Some(def.type_condition.as_str()),
                        parent_type,
                        &def.directives,
                        &def.selection_set,
                        depth,
                    )?;
                    self.spreading.pop();
                    // The spread's own @skip/@include apply as well as the definition's.
                    if let RawSelection::Fragment(f) = &mut raw {
                        let mut conditions = self.conditions(&spread.directives);
                        conditions.append(&mut f.conditions);
                        f.conditions = conditions;
                    }
                    out.push(raw);
                }
            }
        }
        Ok(out)
    }

    fn field(
        &mut self,
        field: &'a Node<ast::Field>,
        parent_type: Option<&Arc<str>>,
        depth: usize,
    ) -> Result<RawField, GraphQLError> {
        let location = line_col(field.location(), self.sources);
        self.fields += 1;
        if self.fields > self.limits.max_fields {
            return Err(error_at(
                format!(
                    "The document selects more than {} fields.",
                    self.limits.max_fields
                ),
                location,
                "MAX_FIELDS_EXCEEDED",
            ));
        }
        if depth > self.limits.max_depth {
            return Err(error_at(
                format!(
                    "The document is nested deeper than {} levels.",
                    self.limits.max_depth
                ),
                location,
                "MAX_DEPTH_EXCEEDED",
            ));
        }
        let static_type: Option<Arc<str>> = match (self.schema, parent_type) {
            (Some(schema), Some(parent)) => schema
                .type_field(parent, &field.name)
                .ok()
                .map(|def| Arc::from(def.ty.inner_named_type().as_str())),
            _ => None,
        };
        let children = if field.selection_set.is_empty() {
            None
        } else {
            Some(self.selections(&field.selection_set, static_type.as_ref(), depth + 1)?)
        };
        Ok(RawField {
            response_key: field.response_name().to_string(),
            name: field.name.to_string(),
            conditions: self.conditions(&field.directives),
            static_type,
            children,
        })
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
    let mut builder = Builder {
        schema: plain_schema,
        fragments,
        sources,
        limits,
        fields: 0,
        spreading: Vec::new(),
        has_variable_conditions: false,
    };
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
    let has_variable_conditions = builder.has_variable_conditions;
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
        compiled.static_plan = Some(Arc::new(build_plan(&compiled, &Map::new())?));
    }
    Ok(compiled)
}

fn included(conditions: &[Condition], vars: &Map<String, Value>) -> Result<bool, GraphQLError> {
    for condition in conditions {
        let value = match &condition.value {
            BoolRef::Const(b) => *b,
            BoolRef::Var(name) => match vars.get(name) {
                Some(Value::Bool(b)) => *b,
                _ => {
                    return Err(error_at(
                        format!(
                            "Variable \"${name}\" used in @{} must be a Boolean.",
                            if condition.skip { "skip" } else { "include" }
                        ),
                        condition.location,
                        "BAD_USER_INPUT",
                    ))
                }
            },
        };
        if value == condition.skip {
            return Ok(false);
        }
    }
    Ok(true)
}

fn plan_items(
    raws: &[RawSelection],
    static_type: Option<&Arc<str>>,
    vars: &Map<String, Value>,
    out: &mut Vec<PlanItem>,
) -> Result<(), GraphQLError> {
    for raw in raws {
        match raw {
            RawSelection::Field(f) => {
                if !included(&f.conditions, vars)? {
                    continue;
                }
                let kind = if f.name == "__typename" {
                    FieldKind::Typename(static_type.cloned())
                } else {
                    match &f.children {
                        None => FieldKind::Leaf,
                        Some(children) => FieldKind::Object(selection_plan(
                            children,
                            f.static_type.as_ref(),
                            vars,
                        )?),
                    }
                };
                super::projection::merge_items(
                    out,
                    vec![PlanItem::Field(FieldPlan::new(
                        &f.response_key,
                        &f.name,
                        kind,
                    ))],
                );
            }
            RawSelection::Fragment(fr) => {
                if !included(&fr.conditions, vars)? {
                    continue;
                }
                match &fr.type_condition {
                    None => plan_items(&fr.children, static_type, vars, out)?,
                    Some(condition) => {
                        out.push(PlanItem::Conditional(ConditionalPlan {
                            type_condition: condition.clone(),
                            possible_types: fr.possible_types.clone(),
                            static_match: fr.static_match,
                            selection: selection_plan(&fr.children, Some(condition), vars)?,
                        }));
                    }
                }
            }
        }
    }
    Ok(())
}

fn selection_plan(
    raws: &[RawSelection],
    static_type: Option<&Arc<str>>,
    vars: &Map<String, Value>,
) -> Result<SelectionPlan, GraphQLError> {
    let mut items = Vec::with_capacity(raws.len());
    plan_items(raws, static_type, vars, &mut items)?;
    Ok(SelectionPlan::from_items(items))
}

/// Resolves `@skip`/`@include` against coerced variables and builds the projection plan.
pub(super) fn build_plan(
    compiled: &CompiledOperation,
    vars: &Map<String, Value>,
) -> Result<ProjectionPlan, Vec<GraphQLError>> {
    let root = match &compiled.root_children {
        None => None,
        Some(children) => {
            Some(selection_plan(children, compiled.root_type.as_ref(), vars).map_err(|e| vec![e])?)
        }
    };
    Ok(ProjectionPlan::new(root))
}
