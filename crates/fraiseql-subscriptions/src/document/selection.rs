//! The selection tree of an operation before `@skip`/`@include` are resolved
//! ([`RawSelection`]), as the [`Builder`] reads it from the document: fragments inlined with
//! their type conditions, static types from the schema when there is one, and the depth and
//! field limits enforced on the way.

use std::collections::HashMap;
use std::sync::Arc;

use apollo_compiler::ast::{self, DirectiveList, Selection};
use apollo_compiler::parser::SourceMap;
use apollo_compiler::{Node, Schema};
use fraiseql_protocol::GraphQLError;

use super::diagnostic::{error_at, line_col, VALIDATION_FAILED};
use super::limits::DocumentLimits;

/// A `@skip(if:)` / `@include(if:)` operand.
#[derive(Debug, Clone)]
pub(super) enum BoolRef {
    Const(bool),
    Var(String),
}

/// One `@skip` (`skip == true`) or `@include` condition.
#[derive(Debug, Clone)]
pub(super) struct Condition {
    pub(super) skip: bool,
    pub(super) value: BoolRef,
    pub(super) location: Option<(u32, u32)>,
}

/// A selection before `@skip`/`@include` are resolved.
#[derive(Debug, Clone)]
pub(super) enum RawSelection {
    Field(RawField),
    Fragment(RawFragment),
}

/// A field selection before `@skip`/`@include` are resolved.
#[derive(Debug, Clone)]
pub(super) struct RawField {
    pub(super) response_key: String,
    pub(super) name: String,
    pub(super) conditions: Vec<Condition>,
    /// The field's named return type, when the schema knows it.
    pub(super) static_type: Option<Arc<str>>,
    pub(super) children: Option<Vec<RawSelection>>,
}

/// An inline fragment or fragment spread before `@skip`/`@include` are resolved.
#[derive(Debug, Clone)]
pub(super) struct RawFragment {
    /// `None` when the fragment always applies (no type condition, or the enclosing object type).
    pub(super) type_condition: Option<Arc<str>>,
    pub(super) possible_types: Option<Arc<[Box<str>]>>,
    pub(super) static_match: bool,
    pub(super) conditions: Vec<Condition>,
    pub(super) children: Vec<RawSelection>,
}

/// Builds the raw selection tree of an operation, counting fields and depth against the
/// limits as it goes.
pub(super) struct Builder<'a> {
    schema: Option<&'a Schema>,
    fragments: HashMap<&'a str, &'a Node<ast::FragmentDefinition>>,
    sources: &'a SourceMap,
    limits: DocumentLimits,
    fields: usize,
    spreading: Vec<&'a str>,
    has_variable_conditions: bool,
}

impl<'a> Builder<'a> {
    /// A builder for a document's selections; `schema` gives the static types, when known.
    pub(super) fn new(
        schema: Option<&'a Schema>,
        fragments: HashMap<&'a str, &'a Node<ast::FragmentDefinition>>,
        sources: &'a SourceMap,
        limits: DocumentLimits,
    ) -> Self {
        Self {
            schema,
            fragments,
            sources,
            limits,
            fields: 0,
            spreading: Vec::new(),
            has_variable_conditions: false,
        }
    }

    /// Whether some `@skip`/`@include` seen so far depends on a variable (then the plan is
    /// built per subscription, once the variables are known).
    pub(super) fn has_variable_conditions(&self) -> bool {
        self.has_variable_conditions
    }

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

    /// The raw tree of one field and its selections, at `depth` (the root field is at 1).
    pub(super) fn field(
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
