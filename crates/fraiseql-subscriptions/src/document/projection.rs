//! Projection plans: a compiled selection set that shapes an event value into the
//! subscriber's response, either as a [`Value`] or straight into JSON bytes.

use std::sync::Arc;

use serde_json::{Map, Value};

/// A compiled selection set for one prepared subscription: which keys of the event value the
/// subscriber sees, under which response keys (aliases), in which order.
///
/// Invariant: within a selection set without type-conditioned fragments, response keys are
/// unique (fields with the same response key were merged when the plan was built), so the
/// hot path walks a flat list.
#[derive(Debug, Clone, PartialEq)]
pub struct ProjectionPlan {
    /// The root field's selection set; `None` when the root field is a leaf.
    pub(super) root: Option<SelectionPlan>,
    /// Dotted paths (field names, not aliases) of every selected field below the root.
    pub(super) selected: Vec<String>,
}

/// One selection set.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct SelectionPlan {
    pub(super) items: Vec<PlanItem>,
    /// Whether `items` holds a [`PlanItem::Conditional`]; if not, fields are pre-merged.
    pub(super) conditional: bool,
}

/// A field, or a fragment whose type condition is checked against the value.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum PlanItem {
    Field(FieldPlan),
    Conditional(ConditionalPlan),
}

/// A fragment that applies only to some runtime types.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct ConditionalPlan {
    /// The fragment's type condition.
    pub(super) type_condition: Arc<str>,
    /// Object types that satisfy the condition, when a schema tells us.
    pub(super) possible_types: Option<Arc<[Box<str>]>>,
    /// The condition equals the enclosing static type: applies to values without `__typename`.
    pub(super) static_match: bool,
    pub(super) selection: SelectionPlan,
}

/// A selected field.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct FieldPlan {
    pub(super) response_key: Box<str>,
    /// `"<response_key>":`, escaped once at build time.
    pub(super) key_prefix: Box<[u8]>,
    pub(super) name: Box<str>,
    pub(super) kind: FieldKind,
}

/// What a field yields.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum FieldKind {
    /// The value under the field name, as is.
    Leaf,
    /// `__typename`: the value's own `__typename`, else this static type name, else null.
    Typename(Option<Arc<str>>),
    /// A nested selection set, applied to an object or element-wise to a list.
    Object(SelectionPlan),
}

impl FieldPlan {
    pub(super) fn new(response_key: &str, name: &str, kind: FieldKind) -> Self {
        let mut key_prefix = serde_json::to_vec(response_key).unwrap_or_default();
        key_prefix.push(b':');
        Self {
            response_key: response_key.into(),
            key_prefix: key_prefix.into_boxed_slice(),
            name: name.into(),
            kind,
        }
    }
}

impl SelectionPlan {
    /// Builds a selection set, merging fields that share a response key.
    pub(super) fn from_items(items: Vec<PlanItem>) -> Self {
        let mut merged = Vec::with_capacity(items.len());
        merge_items(&mut merged, items);
        let conditional = merged
            .iter()
            .any(|item| matches!(item, PlanItem::Conditional(_)));
        Self {
            items: merged,
            conditional,
        }
    }
}

/// Appends `new_items` to `into`, merging a field into an earlier field with the same
/// response key (their sub-selections are concatenated and merged in turn).
pub(super) fn merge_items(into: &mut Vec<PlanItem>, new_items: Vec<PlanItem>) {
    for item in new_items {
        match item {
            PlanItem::Field(field) => {
                let existing = into.iter_mut().find_map(|it| match it {
                    PlanItem::Field(f) if f.response_key == field.response_key => Some(f),
                    _ => None,
                });
                match existing {
                    Some(existing) => {
                        if let (FieldKind::Object(a), FieldKind::Object(b)) =
                            (&mut existing.kind, field.kind)
                        {
                            let mut items = std::mem::take(&mut a.items);
                            merge_items(&mut items, b.items);
                            *a = SelectionPlan {
                                conditional: items
                                    .iter()
                                    .any(|i| matches!(i, PlanItem::Conditional(_))),
                                items,
                            };
                        }
                    }
                    None => into.push(PlanItem::Field(field)),
                }
            }
            PlanItem::Conditional(c) => into.push(PlanItem::Conditional(c)),
        }
    }
}

impl ConditionalPlan {
    fn applies(&self, object: &Map<String, Value>) -> bool {
        match object.get("__typename").and_then(Value::as_str) {
            Some(runtime) => {
                *self.type_condition == *runtime
                    || self
                        .possible_types
                        .as_ref()
                        .is_some_and(|types| types.iter().any(|t| **t == *runtime))
            }
            None => self.static_match,
        }
    }
}

/// Fields grouped by response key, in first-occurrence order (GraphQL's CollectFields).
type Groups<'p> = Vec<(&'p str, Vec<&'p FieldPlan>)>;

fn collect<'p>(items: &'p [PlanItem], object: &Map<String, Value>, groups: &mut Groups<'p>) {
    for item in items {
        match item {
            PlanItem::Field(field) => {
                match groups
                    .iter_mut()
                    .find(|(key, _)| *key == &*field.response_key)
                {
                    Some((_, fields)) => fields.push(field),
                    None => groups.push((&field.response_key, vec![field])),
                }
            }
            PlanItem::Conditional(c) => {
                if c.applies(object) {
                    collect(&c.selection.items, object, groups);
                }
            }
        }
    }
}

fn typename_of(object: &Map<String, Value>, static_type: Option<&Arc<str>>) -> Value {
    match object.get("__typename") {
        Some(own) => own.clone(),
        None => static_type.map_or(Value::Null, |t| Value::String(t.to_string())),
    }
}

fn sub_plans<'p>(fields: &[&'p FieldPlan]) -> Vec<&'p SelectionPlan> {
    fields
        .iter()
        .filter_map(|f| match &f.kind {
            FieldKind::Object(plan) => Some(plan),
            _ => None,
        })
        .collect()
}

fn project_value(value: &Value, plans: &[&SelectionPlan]) -> Value {
    match value {
        Value::Object(object) => Value::Object(project_object(object, plans)),
        Value::Array(items) => {
            Value::Array(items.iter().map(|v| project_value(v, plans)).collect())
        }
        other => other.clone(),
    }
}

fn project_field(object: &Map<String, Value>, first: &FieldPlan, group: &[&FieldPlan]) -> Value {
    match &first.kind {
        FieldKind::Typename(static_type) => typename_of(object, static_type.as_ref()),
        FieldKind::Leaf => object.get(&*first.name).cloned().unwrap_or(Value::Null),
        FieldKind::Object(plan) => match object.get(&*first.name) {
            None => Value::Null,
            Some(v) if group.len() <= 1 => project_value(v, &[plan]),
            Some(v) => project_value(v, &sub_plans(group)),
        },
    }
}

fn project_object(object: &Map<String, Value>, plans: &[&SelectionPlan]) -> Map<String, Value> {
    let mut out = Map::new();
    if let [plan] = plans {
        if !plan.conditional {
            for item in &plan.items {
                if let PlanItem::Field(field) = item {
                    out.insert(
                        field.response_key.to_string(),
                        project_field(object, field, &[]),
                    );
                }
            }
            return out;
        }
    }
    let mut groups = Groups::new();
    for plan in plans {
        collect(&plan.items, object, &mut groups);
    }
    for (key, fields) in &groups {
        if let Some(first) = fields.first() {
            out.insert((*key).to_owned(), project_field(object, first, fields));
        }
    }
    out
}

fn write_json(value: &Value, out: &mut Vec<u8>) {
    // Writing a `Value` into a `Vec<u8>` cannot fail: map keys are strings and the writer
    // never errors.
    let _ = serde_json::to_writer(&mut *out, value);
}

fn write_value(value: &Value, plans: &[&SelectionPlan], out: &mut Vec<u8>) {
    match value {
        Value::Object(object) => write_object(object, plans, out),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_value(item, plans, out);
            }
            out.push(b']');
        }
        other => write_json(other, out),
    }
}

fn write_field(
    object: &Map<String, Value>,
    first: &FieldPlan,
    group: &[&FieldPlan],
    out: &mut Vec<u8>,
) {
    match &first.kind {
        FieldKind::Typename(static_type) => match object.get("__typename") {
            Some(own) => write_json(own, out),
            None => match static_type {
                Some(t) => {
                    let _ = serde_json::to_writer(&mut *out, &**t);
                }
                None => out.extend_from_slice(b"null"),
            },
        },
        FieldKind::Leaf => match object.get(&*first.name) {
            Some(v) => write_json(v, out),
            None => out.extend_from_slice(b"null"),
        },
        FieldKind::Object(plan) => match object.get(&*first.name) {
            None => out.extend_from_slice(b"null"),
            Some(v) if group.len() <= 1 => write_value(v, &[plan], out),
            Some(v) => write_value(v, &sub_plans(group), out),
        },
    }
}

fn write_object(object: &Map<String, Value>, plans: &[&SelectionPlan], out: &mut Vec<u8>) {
    out.push(b'{');
    let mut first_key = true;
    if let [plan] = plans {
        if !plan.conditional {
            for item in &plan.items {
                if let PlanItem::Field(field) = item {
                    if !first_key {
                        out.push(b',');
                    }
                    first_key = false;
                    out.extend_from_slice(&field.key_prefix);
                    write_field(object, field, &[], out);
                }
            }
            out.push(b'}');
            return;
        }
    }
    let mut groups = Groups::new();
    for plan in plans {
        collect(&plan.items, object, &mut groups);
    }
    for (_, fields) in &groups {
        if let Some(first) = fields.first() {
            if !first_key {
                out.push(b',');
            }
            first_key = false;
            out.extend_from_slice(&first.key_prefix);
            write_field(object, first, fields, out);
        }
    }
    out.push(b'}');
}

fn collect_paths(plan: &SelectionPlan, prefix: &str, paths: &mut Vec<String>) {
    for item in &plan.items {
        match item {
            PlanItem::Field(field) => {
                if matches!(field.kind, FieldKind::Typename(_)) {
                    continue;
                }
                let path = if prefix.is_empty() {
                    field.name.to_string()
                } else {
                    format!("{prefix}.{}", field.name)
                };
                if let FieldKind::Object(sub) = &field.kind {
                    collect_paths(sub, &path, paths);
                }
                if !paths.contains(&path) {
                    paths.push(path);
                }
            }
            PlanItem::Conditional(c) => collect_paths(&c.selection, prefix, paths),
        }
    }
}

impl ProjectionPlan {
    /// A plan for the root field's selection set (`None` for a leaf root field).
    pub(super) fn new(root: Option<SelectionPlan>) -> Self {
        let mut selected = Vec::new();
        if let Some(plan) = &root {
            collect_paths(plan, "", &mut selected);
        }
        Self { root, selected }
    }

    /// Shapes `value` (the root field's value) by the selection set: objects keep only the
    /// selected keys, under their response keys, in selection order; lists are projected
    /// element-wise; scalars pass through; missing fields become `null`.
    #[must_use]
    pub fn project(&self, value: &Value) -> Value {
        match &self.root {
            Some(plan) => project_value(value, &[plan]),
            None => value.clone(),
        }
    }

    /// Serializes `{"data":{"<response_key>":<projected value>}}` into `out`, without building
    /// the projected value: the per-event hot path.
    pub fn write_payload(&self, response_key: &str, value: &Value, out: &mut Vec<u8>) {
        out.extend_from_slice(b"{\"data\":{");
        // A `&str` always serializes into a `Vec<u8>`.
        let _ = serde_json::to_writer(&mut *out, response_key);
        out.push(b':');
        match &self.root {
            Some(plan) => write_value(value, &[plan], out),
            None => write_json(value, out),
        }
        out.extend_from_slice(b"}}");
    }

    /// Dotted paths (field names, not aliases) of every field selected below the root field,
    /// parents after their children, e.g. `author.email` then `author`. `__typename` is left
    /// out.
    pub fn selected_fields(&self) -> impl Iterator<Item = &str> {
        self.selected.iter().map(String::as_str)
    }
}
