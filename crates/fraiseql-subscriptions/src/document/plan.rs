//! From the raw selection tree to a [`ProjectionPlan`]: `@skip`/`@include` resolved against
//! the coerced variables, fields merged, type-conditioned fragments kept as conditional parts.

use std::sync::Arc;

use fraiseql_protocol::GraphQLError;
use serde_json::{Map, Value};

use super::diagnostic::error_at;
use super::projection::{
    merge_items, ConditionalPlan, FieldKind, FieldPlan, PlanItem, ProjectionPlan, SelectionPlan,
};
use super::selection::{BoolRef, Condition, RawSelection};

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
                merge_items(
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

/// Resolves `@skip`/`@include` against coerced variables and builds the projection plan of
/// the root field's selections (`root_children`, of static type `root_type` when known).
pub(super) fn build_plan(
    root_children: Option<&[RawSelection]>,
    root_type: Option<&Arc<str>>,
    vars: &Map<String, Value>,
) -> Result<ProjectionPlan, Vec<GraphQLError>> {
    let root = match root_children {
        None => None,
        Some(children) => Some(selection_plan(children, root_type, vars).map_err(|e| vec![e])?),
    };
    Ok(ProjectionPlan::new(root))
}
