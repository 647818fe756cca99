//! Declarative per-subscription filters on event data.
//!
//! A subscription may carry a filter: conditions on the event's data, addressed by dot path
//! (`author.id`, `items.0.sku`) and compared with a constant or with one of the subscription's
//! arguments. The user-facing form is [`FilterSpec`] (what the Python decorator's
//! `filter=...` passes as JSON); it is compiled once, at subscribe time, into a
//! [`CompiledFilter`] whose [`CompiledFilter::matches`] runs on every event without
//! allocating.
//!
//! ```
//! use fraiseql_subscriptions::filter::{CompiledFilter, FilterSpec};
//! use serde_json::json;
//!
//! let spec: FilterSpec = serde_json::from_value(json!({
//!     "all": [
//!         { "path": "room", "op": "eq", "arg": "room" },
//!         { "path": "author.karma", "op": "gte", "value": 10 },
//!         { "path": "kind", "op": "in", "value": ["text", "image"] },
//!         { "not": { "path": "deleted_at", "op": "exists" } }
//!     ]
//! }))?;
//! let arguments = json!({ "room": "lobby" });
//! let arguments = arguments.as_object().cloned().unwrap_or_default();
//! let filter = CompiledFilter::compile(&spec, &arguments)?;
//!
//! let event = json!({ "room": "lobby", "kind": "text", "author": { "karma": 12 } });
//! assert!(filter.matches(&event));
//! let elsewhere = json!({ "room": "attic", "kind": "text", "author": { "karma": 12 } });
//! assert!(!filter.matches(&elsewhere));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Semantics
//!
//! - A path is split on `.`; a segment made only of ASCII digits also indexes arrays. The
//!   empty path `""` addresses the whole event data. Keys that contain a `.` cannot be
//!   addressed.
//! - Numbers compare by value: integers exactly (`i64` against `u64` included), an integer
//!   against a float exactly as well, so `1 == 1.0`. Strings compare lexicographically (by
//!   bytes). Values of different types are never equal and never ordered.
//! - When the path is missing from the event: `ne` and `not_in` are true, every other
//!   operator is false (so `ne` is always `not eq`, and `not_in` always `not in`). A path that
//!   holds `null` exists.
//! - `contains` is true when the value is a string containing the operand (a string) as a
//!   substring, or an array with an element equal to the operand.

use std::cmp::Ordering;
use std::collections::HashSet;
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Number, Value};

/// Most conditions (leaves) one filter may hold.
pub const MAX_CONDITIONS: usize = 64;
/// Most segments one path may have.
pub const MAX_PATH_DEPTH: usize = 32;
/// Deepest nesting of `all` / `any` / `not` combinators.
pub const MAX_NESTING: usize = 16;
/// Most items one `in` / `not_in` list may hold.
pub const MAX_LIST_LEN: usize = 4096;
/// Above this many items an `in` list of strings and integers is looked up in a hash set.
const HASHED_LIST_THRESHOLD: usize = 16;

/// A comparison a [`Condition`] applies to the value found at its path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FilterOp {
    /// Equal (deep equality; numbers by value).
    Eq,
    /// Not equal; true when the path is missing.
    Ne,
    /// Greater than (numbers or strings).
    Gt,
    /// Greater than or equal (numbers or strings).
    Gte,
    /// Less than (numbers or strings).
    Lt,
    /// Less than or equal (numbers or strings).
    Lte,
    /// Equal to one of the items of an array operand.
    In,
    /// Equal to none of the items of an array operand; true when the path is missing.
    NotIn,
    /// A string containing a substring, or an array containing an element.
    Contains,
    /// A string starting with a string operand.
    StartsWith,
    /// The path is present (operand absent or `true`) or absent (operand `false`).
    Exists,
}

impl FilterOp {
    /// The operator's name as written in a [`FilterSpec`].
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Eq => "eq",
            Self::Ne => "ne",
            Self::Gt => "gt",
            Self::Gte => "gte",
            Self::Lt => "lt",
            Self::Lte => "lte",
            Self::In => "in",
            Self::NotIn => "not_in",
            Self::Contains => "contains",
            Self::StartsWith => "starts_with",
            Self::Exists => "exists",
        }
    }
}

impl fmt::Display for FilterOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One leaf of a [`FilterSpec`]: `{ "path": ..., "op": ..., "value" | "arg": ... }`.
///
/// Exactly one of `value` (a constant) and `arg` (the name of a subscription argument) is
/// given, except for [`FilterOp::Exists`], which takes neither or a boolean.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Condition {
    /// Dot path into the event data, e.g. `author.id` or `items.0.sku`.
    pub path: String,
    /// The comparison.
    pub op: FilterOp,
    /// A constant operand; `Some(Value::Null)` is an explicit `null`.
    #[serde(
        default,
        deserialize_with = "present_value",
        skip_serializing_if = "Option::is_none"
    )]
    pub value: Option<Value>,
    /// The name of the subscription argument whose value is the operand.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arg: Option<String>,
}

/// Keeps an explicit `"value": null` apart from an absent `value`.
fn present_value<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(deserializer).map(Some)
}

/// The declarative form of a filter: a [`Condition`] or a combination of filters.
///
/// In JSON: a condition object, `{"all": [..]}`, `{"any": [..]}` or `{"not": {..}}`.
/// `all` of nothing is true, `any` of nothing is false.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "RawSpec", into = "RawSpec")]
pub enum FilterSpec {
    /// True when the condition holds.
    Condition(Condition),
    /// True when every filter holds.
    All(Vec<FilterSpec>),
    /// True when at least one filter holds.
    Any(Vec<FilterSpec>),
    /// True when the filter does not hold.
    Not(Box<FilterSpec>),
}

impl FilterSpec {
    /// A condition comparing the value at `path` with a constant.
    #[must_use]
    pub fn constant(path: impl Into<String>, op: FilterOp, value: Value) -> Self {
        Self::Condition(Condition {
            path: path.into(),
            op,
            value: Some(value),
            arg: None,
        })
    }

    /// A condition comparing the value at `path` with the subscription argument `arg`.
    #[must_use]
    pub fn bound(path: impl Into<String>, op: FilterOp, arg: impl Into<String>) -> Self {
        Self::Condition(Condition {
            path: path.into(),
            op,
            value: None,
            arg: Some(arg.into()),
        })
    }

    /// A condition true when `path` is present in the event data.
    #[must_use]
    pub fn exists(path: impl Into<String>) -> Self {
        Self::Condition(Condition {
            path: path.into(),
            op: FilterOp::Exists,
            value: None,
            arg: None,
        })
    }

    /// True when every filter holds.
    #[must_use]
    pub fn all(filters: impl IntoIterator<Item = FilterSpec>) -> Self {
        Self::All(filters.into_iter().collect())
    }

    /// True when at least one filter holds.
    #[must_use]
    pub fn any(filters: impl IntoIterator<Item = FilterSpec>) -> Self {
        Self::Any(filters.into_iter().collect())
    }

    /// True when `filter` does not hold.
    #[must_use]
    pub fn negate(filter: FilterSpec) -> Self {
        Self::Not(Box::new(filter))
    }

    /// Checks everything that does not depend on a subscription's arguments: paths, limits,
    /// operand presence and the type of every constant operand. Servers call this when a
    /// field is registered, so a developer's mistake fails at startup, not on a client's
    /// first subscribe.
    ///
    /// # Errors
    /// The [`FilterError`] [`CompiledFilter::compile`] would return for any arguments.
    pub fn validate(&self) -> Result<(), FilterError> {
        let mut conditions = 0;
        compile_node(self, None, 0, &mut conditions).map(drop)
    }
}

/// The wire shape of a [`FilterSpec`], every key optional, checked in `TryFrom`.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    op: Option<FilterOp>,
    #[serde(
        default,
        deserialize_with = "present_value",
        skip_serializing_if = "Option::is_none"
    )]
    value: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    arg: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    all: Option<Vec<FilterSpec>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    any: Option<Vec<FilterSpec>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    not: Option<Box<FilterSpec>>,
}

impl TryFrom<RawSpec> for FilterSpec {
    type Error = FilterError;

    fn try_from(raw: RawSpec) -> Result<Self, FilterError> {
        let is_condition = raw.path.is_some() || raw.op.is_some();
        let is_operand = raw.value.is_some() || raw.arg.is_some();
        let kinds = usize::from(is_condition || is_operand)
            + usize::from(raw.all.is_some())
            + usize::from(raw.any.is_some())
            + usize::from(raw.not.is_some());
        if kinds != 1 {
            return Err(FilterError::InvalidSpec {
                reason: "a filter object must be exactly one of: a condition \
                         {\"path\", \"op\", \"value\" or \"arg\"}, {\"all\": [...]}, \
                         {\"any\": [...]} or {\"not\": {...}}",
            });
        }
        if let Some(all) = raw.all {
            return Ok(Self::All(all));
        }
        if let Some(any) = raw.any {
            return Ok(Self::Any(any));
        }
        if let Some(not) = raw.not {
            return Ok(Self::Not(not));
        }
        match (raw.path, raw.op) {
            (Some(path), Some(op)) => Ok(Self::Condition(Condition {
                path,
                op,
                value: raw.value,
                arg: raw.arg,
            })),
            (None, _) => Err(FilterError::InvalidSpec {
                reason: "a condition needs a \"path\" (a dot path into the event data)",
            }),
            (Some(_), None) => Err(FilterError::InvalidSpec {
                reason: "a condition needs an \"op\": one of eq, ne, gt, gte, lt, lte, in, \
                         not_in, contains, starts_with, exists",
            }),
        }
    }
}

impl From<FilterSpec> for RawSpec {
    fn from(spec: FilterSpec) -> Self {
        match spec {
            FilterSpec::Condition(c) => Self {
                path: Some(c.path),
                op: Some(c.op),
                value: c.value,
                arg: c.arg,
                ..Self::default()
            },
            FilterSpec::All(all) => Self {
                all: Some(all),
                ..Self::default()
            },
            FilterSpec::Any(any) => Self {
                any: Some(any),
                ..Self::default()
            },
            FilterSpec::Not(not) => Self {
                not: Some(not),
                ..Self::default()
            },
        }
    }
}

/// Where a condition's operand came from, for error messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OperandSource {
    /// The condition's constant `value`.
    Constant,
    /// The subscription argument of this name.
    Argument(String),
}

impl fmt::Display for OperandSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Constant => f.write_str("the constant \"value\""),
            Self::Argument(name) => write!(f, "argument `{name}`"),
        }
    }
}

/// Why a [`FilterSpec`] could not be read or compiled; each message says what to change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FilterError {
    /// The filter object has the wrong keys.
    #[error("invalid filter: {reason}")]
    InvalidSpec {
        /// What is wrong and what is expected.
        reason: &'static str,
    },
    /// A condition is bound to an argument the subscription does not have.
    #[error(
        "filter on `{path}` is bound to argument `{name}`, but the subscription has no \
         argument `{name}`: pass it, or compare with a constant \"value\" instead"
    )]
    MissingArgument {
        /// The argument's name.
        name: String,
        /// The condition's path.
        path: String,
    },
    /// A condition gives both `value` and `arg`.
    #[error(
        "filter on `{path}` gives both \"value\" and \"arg\": keep one (a constant or a \
         subscription argument)"
    )]
    AmbiguousOperand {
        /// The condition's path.
        path: String,
    },
    /// A condition other than `exists` gives neither `value` nor `arg`.
    #[error(
        "filter `{op}` on `{path}` needs an operand: add \"value\" (a constant) or \"arg\" \
         (a subscription argument's name)"
    )]
    MissingOperand {
        /// The condition's path.
        path: String,
        /// The condition's operator.
        op: FilterOp,
    },
    /// The operand has a type the operator cannot use.
    #[error("filter `{op}` on `{path}` needs {expected}, but {operand} is {found}")]
    OperandType {
        /// The condition's path.
        path: String,
        /// The condition's operator.
        op: FilterOp,
        /// What the operator accepts.
        expected: &'static str,
        /// The JSON type found.
        found: &'static str,
        /// Where the operand came from.
        operand: OperandSource,
    },
    /// A path has an empty segment (`a..b`, `.a`, `a.`).
    #[error(
        "filter path `{path}` has an empty segment: write keys separated by single dots, \
         e.g. `author.id` (or `\"\"` for the whole event data)"
    )]
    EmptyPathSegment {
        /// The path.
        path: String,
    },
    /// A path has too many segments.
    #[error("filter path `{path}` has {depth} segments; at most {max} are allowed")]
    PathTooDeep {
        /// The path.
        path: String,
        /// Its number of segments.
        depth: usize,
        /// The limit ([`MAX_PATH_DEPTH`]).
        max: usize,
    },
    /// An `in` / `not_in` list is too long.
    #[error("filter `{op}` on `{path}` has a list of {len} items; at most {max} are allowed")]
    ListTooLong {
        /// The condition's path.
        path: String,
        /// The condition's operator.
        op: FilterOp,
        /// The list's length.
        len: usize,
        /// The limit ([`MAX_LIST_LEN`]).
        max: usize,
    },
    /// The filter has too many conditions.
    #[error("filter has more than {max} conditions: simplify it (an `in` list counts as one)")]
    TooManyConditions {
        /// The limit ([`MAX_CONDITIONS`]).
        max: usize,
    },
    /// `all` / `any` / `not` are nested too deeply.
    #[error("filter nests all/any/not more than {max} levels deep: flatten it")]
    NestingTooDeep {
        /// The limit ([`MAX_NESTING`]).
        max: usize,
    },
}

/// A filter compiled for one subscription: arguments bound, paths split, operands checked.
///
/// [`matches`](Self::matches) allocates nothing and its cost is bounded by
/// [`MAX_CONDITIONS`] × [`MAX_PATH_DEPTH`] (plus the size of compared constants).
#[derive(Debug, Clone)]
pub struct CompiledFilter {
    root: Node,
}

impl Default for CompiledFilter {
    fn default() -> Self {
        Self::always()
    }
}

#[derive(Debug, Clone)]
enum Node {
    All(Box<[Node]>),
    Any(Box<[Node]>),
    Not(Box<Node>),
    Test { path: Box<[Segment]>, test: Test },
}

/// One path segment: an object key, and the array index it also names if numeric.
#[derive(Debug, Clone)]
struct Segment {
    key: Box<str>,
    index: Option<usize>,
}

#[derive(Debug, Clone)]
enum Test {
    Eq(Value),
    Ne(Value),
    Order {
        accept: OrderAccept,
        operand: Ordered,
    },
    In(ValueSet),
    NotIn(ValueSet),
    Contains(Value),
    StartsWith(Box<str>),
    Exists(bool),
}

#[derive(Debug, Clone, Copy)]
enum OrderAccept {
    Gt,
    Gte,
    Lt,
    Lte,
}

impl OrderAccept {
    fn accepts(self, ord: Ordering) -> bool {
        match self {
            Self::Gt => ord == Ordering::Greater,
            Self::Gte => ord != Ordering::Less,
            Self::Lt => ord == Ordering::Less,
            Self::Lte => ord != Ordering::Greater,
        }
    }
}

#[derive(Debug, Clone)]
enum Ordered {
    Number(Number),
    String(Box<str>),
}

/// The items of an `in` list: scanned when short, hashed when long.
#[derive(Debug, Clone)]
enum ValueSet {
    Small(Box<[Value]>),
    Hashed {
        strings: HashSet<Box<str>>,
        integers: HashSet<i128>,
        /// Items that are neither strings nor integral numbers, compared one by one.
        rest: Box<[Value]>,
    },
}

impl ValueSet {
    fn new(items: Vec<Value>) -> Self {
        if items.len() <= HASHED_LIST_THRESHOLD {
            return Self::Small(items.into_boxed_slice());
        }
        let mut strings = HashSet::new();
        let mut integers = HashSet::new();
        let mut rest = Vec::new();
        for item in items {
            match item {
                Value::String(s) => {
                    strings.insert(s.into_boxed_str());
                }
                Value::Number(ref n) => match integral(n) {
                    Some(i) => {
                        integers.insert(i);
                    }
                    None => rest.push(item),
                },
                other => rest.push(other),
            }
        }
        Self::Hashed {
            strings,
            integers,
            rest: rest.into_boxed_slice(),
        }
    }

    fn contains(&self, value: &Value) -> bool {
        match self {
            Self::Small(items) => items.iter().any(|item| json_eq(item, value)),
            Self::Hashed {
                strings,
                integers,
                rest,
            } => match value {
                Value::String(s) => strings.contains(s.as_str()),
                Value::Number(n) => match integral(n) {
                    Some(i) => integers.contains(&i),
                    None => rest.iter().any(|item| json_eq(item, value)),
                },
                _ => rest.iter().any(|item| json_eq(item, value)),
            },
        }
    }
}

impl CompiledFilter {
    /// The filter that matches every event (a subscription without a filter).
    #[must_use]
    pub fn always() -> Self {
        Self {
            root: Node::All(Box::new([])),
        }
    }

    /// Whether this filter matches every event, so the caller may skip evaluating it.
    #[must_use]
    pub fn is_trivial(&self) -> bool {
        matches!(&self.root, Node::All(children) if children.is_empty())
    }

    /// Compiles `spec` for one subscription whose resolved arguments are `arguments`.
    ///
    /// Arguments are bound here, once: a later change to `arguments` does not affect the
    /// compiled filter. An argument that is `null` binds to `null`.
    ///
    /// # Errors
    ///
    /// A [`FilterError`] naming the condition and what to change when an argument is
    /// missing, an operand has the wrong shape for its operator, a path is malformed, or the
    /// filter exceeds [`MAX_CONDITIONS`], [`MAX_PATH_DEPTH`], [`MAX_NESTING`] or
    /// [`MAX_LIST_LEN`].
    pub fn compile(spec: &FilterSpec, arguments: &Map<String, Value>) -> Result<Self, FilterError> {
        let mut conditions = 0;
        let root = compile_node(spec, Some(arguments), 0, &mut conditions)?;
        Ok(Self { root })
    }

    /// Whether the event data satisfies the filter. Allocates nothing.
    #[must_use]
    pub fn matches(&self, data: &Value) -> bool {
        eval(&self.root, data)
    }
}

/// `arguments` is `None` when only validating ([`FilterSpec::validate`]): conditions bound
/// to an argument are then checked for their path only.
fn compile_node(
    spec: &FilterSpec,
    arguments: Option<&Map<String, Value>>,
    nesting: usize,
    conditions: &mut usize,
) -> Result<Node, FilterError> {
    let compile_children = |children: &[FilterSpec], conditions: &mut usize| {
        if nesting >= MAX_NESTING {
            return Err(FilterError::NestingTooDeep { max: MAX_NESTING });
        }
        children
            .iter()
            .map(|child| compile_node(child, arguments, nesting + 1, conditions))
            .collect::<Result<Box<[Node]>, FilterError>>()
    };
    match spec {
        FilterSpec::All(children) => Ok(Node::All(compile_children(children, conditions)?)),
        FilterSpec::Any(children) => Ok(Node::Any(compile_children(children, conditions)?)),
        FilterSpec::Not(child) => {
            if nesting >= MAX_NESTING {
                return Err(FilterError::NestingTooDeep { max: MAX_NESTING });
            }
            let child = compile_node(child, arguments, nesting + 1, conditions)?;
            Ok(Node::Not(Box::new(child)))
        }
        FilterSpec::Condition(condition) => {
            *conditions += 1;
            if *conditions > MAX_CONDITIONS {
                return Err(FilterError::TooManyConditions {
                    max: MAX_CONDITIONS,
                });
            }
            compile_condition(condition, arguments)
        }
    }
}

fn compile_condition(
    c: &Condition,
    arguments: Option<&Map<String, Value>>,
) -> Result<Node, FilterError> {
    let path = split_path(&c.path)?;
    let (operand, source) = match (&c.value, &c.arg, arguments) {
        (Some(_), Some(_), _) => {
            return Err(FilterError::AmbiguousOperand {
                path: c.path.clone(),
            })
        }
        (Some(value), None, _) => (Some(value.clone()), OperandSource::Constant),
        // Validation only: the argument's value is not known yet.
        (None, Some(_), None) => {
            return Ok(Node::Test {
                path,
                test: Test::Exists(true),
            })
        }
        (None, Some(name), Some(arguments)) => match arguments.get(name) {
            Some(value) => (Some(value.clone()), OperandSource::Argument(name.clone())),
            None => {
                return Err(FilterError::MissingArgument {
                    name: name.clone(),
                    path: c.path.clone(),
                })
            }
        },
        (None, None, _) => (None, OperandSource::Constant),
    };
    let wrong_type = |expected: &'static str, found: &Value| FilterError::OperandType {
        path: c.path.clone(),
        op: c.op,
        expected,
        found: json_type(found),
        operand: source.clone(),
    };
    let test = match (c.op, operand) {
        (FilterOp::Exists, None) => Test::Exists(true),
        (FilterOp::Exists, Some(Value::Bool(present))) => Test::Exists(present),
        (FilterOp::Exists, Some(other)) => {
            return Err(wrong_type("no operand or a boolean", &other))
        }
        (op, None) => {
            return Err(FilterError::MissingOperand {
                path: c.path.clone(),
                op,
            })
        }
        (FilterOp::Eq, Some(value)) => Test::Eq(value),
        (FilterOp::Ne, Some(value)) => Test::Ne(value),
        (op @ (FilterOp::Gt | FilterOp::Gte | FilterOp::Lt | FilterOp::Lte), Some(value)) => {
            let accept = match op {
                FilterOp::Gt => OrderAccept::Gt,
                FilterOp::Gte => OrderAccept::Gte,
                FilterOp::Lt => OrderAccept::Lt,
                _ => OrderAccept::Lte,
            };
            let operand = match value {
                Value::Number(n) => Ordered::Number(n),
                Value::String(s) => Ordered::String(s.into_boxed_str()),
                other => return Err(wrong_type("a number or a string", &other)),
            };
            Test::Order { accept, operand }
        }
        (op @ (FilterOp::In | FilterOp::NotIn), Some(value)) => {
            let items = match value {
                Value::Array(items) => items,
                other => return Err(wrong_type("an array", &other)),
            };
            if items.len() > MAX_LIST_LEN {
                return Err(FilterError::ListTooLong {
                    path: c.path.clone(),
                    op,
                    len: items.len(),
                    max: MAX_LIST_LEN,
                });
            }
            let set = ValueSet::new(items);
            if op == FilterOp::In {
                Test::In(set)
            } else {
                Test::NotIn(set)
            }
        }
        (FilterOp::Contains, Some(value)) => Test::Contains(value),
        (FilterOp::StartsWith, Some(value)) => match value {
            Value::String(s) => Test::StartsWith(s.into_boxed_str()),
            other => return Err(wrong_type("a string", &other)),
        },
    };
    Ok(Node::Test { path, test })
}

fn split_path(path: &str) -> Result<Box<[Segment]>, FilterError> {
    if path.is_empty() {
        return Ok(Box::new([]));
    }
    let depth = path.split('.').count();
    if depth > MAX_PATH_DEPTH {
        return Err(FilterError::PathTooDeep {
            path: path.to_owned(),
            depth,
            max: MAX_PATH_DEPTH,
        });
    }
    path.split('.')
        .map(|segment| {
            if segment.is_empty() {
                return Err(FilterError::EmptyPathSegment {
                    path: path.to_owned(),
                });
            }
            // `usize::from_str` accepts a leading `+`; only plain digits index arrays.
            let index = if segment.bytes().all(|b| b.is_ascii_digit()) {
                segment.parse().ok()
            } else {
                None
            };
            Ok(Segment {
                key: segment.into(),
                index,
            })
        })
        .collect()
}

fn eval(node: &Node, data: &Value) -> bool {
    match node {
        Node::All(children) => children.iter().all(|child| eval(child, data)),
        Node::Any(children) => children.iter().any(|child| eval(child, data)),
        Node::Not(child) => !eval(child, data),
        Node::Test { path, test } => match lookup(data, path) {
            Some(found) => test_value(test, found),
            None => matches!(test, Test::Ne(_) | Test::NotIn(_) | Test::Exists(false)),
        },
    }
}

fn lookup<'a>(data: &'a Value, path: &[Segment]) -> Option<&'a Value> {
    path.iter()
        .try_fold(data, |current, segment| match current {
            Value::Object(map) => map.get(&*segment.key),
            Value::Array(items) => items.get(segment.index?),
            _ => None,
        })
}

fn test_value(test: &Test, found: &Value) -> bool {
    match test {
        Test::Eq(operand) => json_eq(found, operand),
        Test::Ne(operand) => !json_eq(found, operand),
        Test::Order { accept, operand } => {
            let ord = match (found, operand) {
                (Value::Number(a), Ordered::Number(b)) => compare_numbers(a, b),
                (Value::String(a), Ordered::String(b)) => Some(a.as_str().cmp(b)),
                _ => None,
            };
            ord.is_some_and(|ord| accept.accepts(ord))
        }
        Test::In(set) => set.contains(found),
        Test::NotIn(set) => !set.contains(found),
        Test::Contains(needle) => match (found, needle) {
            (Value::String(haystack), Value::String(needle)) => haystack.contains(needle.as_str()),
            (Value::Array(items), needle) => items.iter().any(|item| json_eq(item, needle)),
            _ => false,
        },
        Test::StartsWith(prefix) => match found {
            Value::String(s) => s.starts_with(&**prefix),
            _ => false,
        },
        Test::Exists(present) => *present,
    }
}

/// Deep equality in which numbers compare by value (`1 == 1.0`).
fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Null, Value::Null) => true,
        (Value::Bool(x), Value::Bool(y)) => x == y,
        (Value::String(x), Value::String(y)) => x == y,
        (Value::Number(x), Value::Number(y)) => compare_numbers(x, y) == Some(Ordering::Equal),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| json_eq(x, y))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(key, x)| y.get(key).is_some_and(|y| json_eq(x, y)))
        }
        _ => false,
    }
}

/// The number as an integer if it is one (an `i64`, a `u64` or an integral float in range).
fn integral(n: &Number) -> Option<i128> {
    if let Some(i) = n.as_i64() {
        return Some(i128::from(i));
    }
    if let Some(u) = n.as_u64() {
        return Some(i128::from(u));
    }
    let f = n.as_f64()?;
    // 2^64 bounds every integer serde_json can hold; within it the conversion is exact.
    if f.fract() == 0.0 && f.abs() < 18_446_744_073_709_551_616.0 {
        Some(f as i128)
    } else {
        None
    }
}

/// Exact ordering of two JSON numbers, integers and floats mixed.
fn compare_numbers(a: &Number, b: &Number) -> Option<Ordering> {
    let int = |n: &Number| {
        n.as_i64()
            .map(i128::from)
            .or_else(|| n.as_u64().map(i128::from))
    };
    match (int(a), int(b)) {
        (Some(x), Some(y)) => Some(x.cmp(&y)),
        (Some(x), None) => compare_int_float(x, b.as_f64()?),
        (None, Some(y)) => compare_int_float(y, a.as_f64()?).map(Ordering::reverse),
        (None, None) => a.as_f64()?.partial_cmp(&b.as_f64()?),
    }
}

/// Orders an integer (within ±2^64) against a float without rounding the integer.
fn compare_int_float(i: i128, f: f64) -> Option<Ordering> {
    const BOUND: f64 = 36_893_488_147_419_103_232.0; // 2^65, beyond any serde_json integer
    if f.is_nan() {
        return None;
    }
    if f >= BOUND {
        return Some(Ordering::Less);
    }
    if f <= -BOUND {
        return Some(Ordering::Greater);
    }
    let whole = f.trunc();
    // |whole| < 2^65, so the conversion is exact.
    let whole_int = whole as i128;
    Some(match i.cmp(&whole_int) {
        Ordering::Equal if f > whole => Ordering::Less,
        Ordering::Equal if f < whole => Ordering::Greater,
        other => other,
    })
}

fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;
    use serde_json::json;

    fn args(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(map) => map,
            _ => Map::new(),
        }
    }

    fn spec(value: Value) -> FilterSpec {
        serde_json::from_value(value).unwrap()
    }

    fn compile(value: Value) -> CompiledFilter {
        CompiledFilter::compile(&spec(value), &Map::new()).unwrap()
    }

    fn compile_err(value: Value, arguments: Value) -> FilterError {
        CompiledFilter::compile(&spec(value), &args(arguments)).unwrap_err()
    }

    #[test]
    fn eq_bound_to_argument_matches_only_that_value() {
        let filter = CompiledFilter::compile(
            &spec(json!({"path": "room", "op": "eq", "arg": "room"})),
            &args(json!({"room": "lobby"})),
        )
        .unwrap();
        assert!(filter.matches(&json!({"room": "lobby"})));
        assert!(!filter.matches(&json!({"room": "attic"})));
        assert!(!filter.matches(&json!({})));
    }

    #[test]
    fn arguments_are_bound_once_at_compile_time() {
        let mut arguments = args(json!({"room": "lobby"}));
        let filter =
            CompiledFilter::compile(&FilterSpec::bound("room", FilterOp::Eq, "room"), &arguments)
                .unwrap();
        arguments.insert("room".into(), json!("attic"));
        assert!(filter.matches(&json!({"room": "lobby"})));
    }

    #[test]
    fn missing_argument_is_a_clear_error() {
        let err = compile_err(
            json!({"path": "room", "op": "eq", "arg": "room"}),
            json!({}),
        );
        assert_eq!(
            err,
            FilterError::MissingArgument {
                name: "room".into(),
                path: "room".into()
            }
        );
        assert!(err.to_string().contains("no argument `room`"));
    }

    #[test]
    fn null_argument_binds_to_null() {
        let filter = CompiledFilter::compile(
            &FilterSpec::bound("room", FilterOp::Eq, "room"),
            &args(json!({"room": null})),
        )
        .unwrap();
        assert!(filter.matches(&json!({"room": null})));
        assert!(!filter.matches(&json!({"room": "lobby"})));
        assert!(!filter.matches(&json!({})));
    }

    #[test]
    fn explicit_null_value_is_an_operand_not_a_missing_one() {
        let filter = compile(json!({"path": "x", "op": "eq", "value": null}));
        assert!(filter.matches(&json!({"x": null})));
        assert!(!filter.matches(&json!({"x": 0})));
    }

    #[test]
    fn value_and_arg_together_are_ambiguous() {
        let err = compile_err(
            json!({"path": "x", "op": "eq", "value": 1, "arg": "x"}),
            json!({"x": 1}),
        );
        assert!(matches!(err, FilterError::AmbiguousOperand { .. }));
    }

    #[test]
    fn operator_without_operand_is_an_error() {
        let err = compile_err(json!({"path": "x", "op": "gt"}), json!({}));
        assert_eq!(
            err,
            FilterError::MissingOperand {
                path: "x".into(),
                op: FilterOp::Gt
            }
        );
    }

    #[test]
    fn ne_is_true_when_path_is_missing() {
        let filter = compile(json!({"path": "a.b", "op": "ne", "value": 1}));
        assert!(filter.matches(&json!({})));
        assert!(filter.matches(&json!({"a": {"b": 2}})));
        assert!(!filter.matches(&json!({"a": {"b": 1}})));
    }

    #[test]
    fn missing_path_fails_every_other_comparison() {
        let data = json!({"other": 1});
        for (op, value) in [
            ("eq", json!(1)),
            ("gt", json!(0)),
            ("gte", json!(0)),
            ("lt", json!(2)),
            ("lte", json!(2)),
            ("in", json!([1])),
            ("contains", json!("a")),
            ("starts_with", json!("a")),
        ] {
            let filter = compile(json!({"path": "x", "op": op, "value": value}));
            assert!(!filter.matches(&data), "{op} on a missing path");
        }
    }

    #[test]
    fn not_in_is_true_when_path_is_missing() {
        let filter = compile(json!({"path": "x", "op": "not_in", "value": [1, 2]}));
        assert!(filter.matches(&json!({})));
        assert!(filter.matches(&json!({"x": 3})));
        assert!(!filter.matches(&json!({"x": 2})));
    }

    #[test]
    fn exists_distinguishes_present_null_from_absent() {
        let exists = compile(json!({"path": "x", "op": "exists"}));
        let absent = compile(json!({"path": "x", "op": "exists", "value": false}));
        assert!(exists.matches(&json!({"x": null})));
        assert!(!exists.matches(&json!({})));
        assert!(absent.matches(&json!({})));
        assert!(!absent.matches(&json!({"x": 1})));
    }

    #[test]
    fn exists_rejects_a_non_boolean_operand() {
        let err = compile_err(json!({"path": "x", "op": "exists", "value": 1}), json!({}));
        assert!(matches!(err, FilterError::OperandType { .. }));
    }

    #[test]
    fn numeric_segments_index_arrays() {
        let filter = compile(json!({"path": "items.1.id", "op": "eq", "value": "b"}));
        assert!(filter.matches(&json!({"items": [{"id": "a"}, {"id": "b"}]})));
        assert!(!filter.matches(&json!({"items": [{"id": "a"}]})));
        // A numeric segment still names an object key.
        assert!(filter.matches(&json!({"items": {"1": {"id": "b"}}})));
    }

    #[test]
    fn empty_path_addresses_the_whole_event() {
        let filter = compile(json!({"path": "", "op": "starts_with", "value": "he"}));
        assert!(filter.matches(&json!("hello")));
    }

    #[test]
    fn validate_checks_constants_and_paths_but_not_bound_arguments() {
        let bound = FilterSpec::bound("room", FilterOp::In, "rooms");
        assert_eq!(bound.validate(), Ok(()));
        let bad_path = FilterSpec::bound("a..b", FilterOp::Eq, "x");
        assert!(matches!(
            bad_path.validate(),
            Err(FilterError::EmptyPathSegment { .. })
        ));
        let bad_constant = FilterSpec::constant("n", FilterOp::Gt, json!([1]));
        assert!(matches!(
            bad_constant.validate(),
            Err(FilterError::OperandType { .. })
        ));
        let missing = FilterSpec::Condition(Condition {
            path: "n".into(),
            op: FilterOp::Eq,
            value: None,
            arg: None,
        });
        assert!(matches!(
            missing.validate(),
            Err(FilterError::MissingOperand { .. })
        ));
    }

    #[test]
    fn empty_path_segment_is_an_error() {
        for path in ["a..b", ".a", "a."] {
            let err = compile_err(json!({"path": path, "op": "exists"}), json!({}));
            assert!(
                matches!(err, FilterError::EmptyPathSegment { .. }),
                "{path}"
            );
        }
    }

    #[test]
    fn path_deeper_than_limit_is_an_error() {
        let path = vec!["a"; MAX_PATH_DEPTH + 1].join(".");
        let err = compile_err(json!({"path": path, "op": "exists"}), json!({}));
        assert!(
            matches!(err, FilterError::PathTooDeep { depth, .. } if depth == MAX_PATH_DEPTH + 1)
        );
    }

    #[test]
    fn more_conditions_than_limit_is_an_error() {
        let at_limit = FilterSpec::all((0..MAX_CONDITIONS).map(|_| FilterSpec::exists("x")));
        assert!(CompiledFilter::compile(&at_limit, &Map::new()).is_ok());
        let over = FilterSpec::all((0..=MAX_CONDITIONS).map(|_| FilterSpec::exists("x")));
        assert_eq!(
            CompiledFilter::compile(&over, &Map::new()).unwrap_err(),
            FilterError::TooManyConditions {
                max: MAX_CONDITIONS
            }
        );
    }

    #[test]
    fn nesting_deeper_than_limit_is_an_error() {
        let mut deep = FilterSpec::exists("x");
        for _ in 0..=MAX_NESTING {
            deep = FilterSpec::negate(deep);
        }
        assert_eq!(
            CompiledFilter::compile(&deep, &Map::new()).unwrap_err(),
            FilterError::NestingTooDeep { max: MAX_NESTING }
        );
    }

    #[test]
    fn in_list_longer_than_limit_is_an_error() {
        let list: Vec<Value> = (0..=MAX_LIST_LEN).map(|i| json!(i)).collect();
        let err = compile_err(json!({"path": "x", "op": "in", "value": list}), json!({}));
        assert!(matches!(err, FilterError::ListTooLong { .. }));
    }

    #[test]
    fn in_needs_an_array() {
        let err = compile_err(
            json!({"path": "x", "op": "in", "arg": "ids"}),
            json!({"ids": 3}),
        );
        assert_eq!(
            err,
            FilterError::OperandType {
                path: "x".into(),
                op: FilterOp::In,
                expected: "an array",
                found: "a number",
                operand: OperandSource::Argument("ids".into()),
            }
        );
        assert!(err.to_string().contains("argument `ids` is a number"));
    }

    #[test]
    fn ordering_needs_a_number_or_a_string() {
        for value in [json!(null), json!(true), json!([1]), json!({})] {
            let err = compile_err(json!({"path": "x", "op": "lt", "value": value}), json!({}));
            assert!(matches!(err, FilterError::OperandType { .. }));
        }
    }

    #[test]
    fn starts_with_needs_a_string() {
        let err = compile_err(
            json!({"path": "x", "op": "starts_with", "value": 1}),
            json!({}),
        );
        assert!(matches!(
            err,
            FilterError::OperandType {
                expected: "a string",
                ..
            }
        ));
    }

    #[test]
    fn integers_compare_exactly_across_i64_and_u64() {
        let filter = compile(json!({"path": "n", "op": "gt", "value": i64::MAX}));
        assert!(filter.matches(&json!({"n": u64::MAX})));
        assert!(!filter.matches(&json!({"n": i64::MAX})));
        let filter = compile(json!({"path": "n", "op": "lt", "value": u64::MAX}));
        assert!(filter.matches(&json!({"n": -1})));
        assert!(filter.matches(&json!({"n": u64::MAX - 1})));
    }

    #[test]
    fn integers_and_floats_compare_by_value() {
        let eq = compile(json!({"path": "n", "op": "eq", "value": 1}));
        assert!(eq.matches(&json!({"n": 1.0})));
        let gt = compile(json!({"path": "n", "op": "gt", "value": 1}));
        assert!(gt.matches(&json!({"n": 1.5})));
        assert!(!gt.matches(&json!({"n": 0.5})));
        // 2^53 + 1 is not representable as f64, yet compares exactly.
        let big = compile(json!({"path": "n", "op": "gt", "value": 9_007_199_254_740_992.0}));
        assert!(big.matches(&json!({"n": 9_007_199_254_740_993_i64})));
    }

    #[test]
    fn strings_order_lexicographically() {
        let filter = compile(json!({"path": "s", "op": "gte", "value": "b"}));
        assert!(filter.matches(&json!({"s": "b"})));
        assert!(filter.matches(&json!({"s": "ba"})));
        assert!(!filter.matches(&json!({"s": "az"})));
    }

    #[test]
    fn mixed_types_are_never_equal_nor_ordered() {
        let eq = compile(json!({"path": "x", "op": "eq", "value": "1"}));
        assert!(!eq.matches(&json!({"x": 1})));
        for op in ["gt", "gte", "lt", "lte"] {
            let filter = compile(json!({"path": "x", "op": op, "value": 1}));
            assert!(!filter.matches(&json!({"x": "1"})), "{op}");
            assert!(!filter.matches(&json!({"x": null})), "{op}");
        }
    }

    #[test]
    fn eq_compares_arrays_and_objects_deeply() {
        let filter = compile(json!({"path": "x", "op": "eq", "value": {"a": [1, 2], "b": null}}));
        assert!(filter.matches(&json!({"x": {"b": null, "a": [1.0, 2]}})));
        assert!(!filter.matches(&json!({"x": {"a": [1, 2]}})));
    }

    #[test]
    fn small_and_hashed_in_lists_agree() {
        let small: Vec<Value> = vec![json!("a"), json!(2), json!(2.5), json!(null)];
        let mut large = small.clone();
        large.extend((100..130).map(|i| json!(format!("s{i}"))));
        large.extend((100..130).map(|i| json!(i)));
        let small = compile(json!({"path": "x", "op": "in", "value": small}));
        let large = compile(json!({"path": "x", "op": "in", "value": large}));
        for x in [
            json!("a"),
            json!(2),
            json!(2.0),
            json!(2.5),
            json!(null),
            json!("b"),
            json!(3),
        ] {
            let data = json!({ "x": x });
            assert_eq!(small.matches(&data), large.matches(&data), "{x}");
        }
        assert!(large.matches(&json!({"x": "s120"})));
        assert!(large.matches(&json!({"x": 120.0})));
        assert!(!large.matches(&json!({"x": false})));
    }

    #[test]
    fn contains_finds_substrings_and_array_elements() {
        let filter = compile(json!({"path": "x", "op": "contains", "value": "ell"}));
        assert!(filter.matches(&json!({"x": "hello"})));
        assert!(filter.matches(&json!({"x": ["ell"]})));
        assert!(!filter.matches(&json!({"x": ["hello"]})));
        let filter = compile(json!({"path": "tags", "op": "contains", "value": {"id": 1}}));
        assert!(filter.matches(&json!({"tags": [{"id": 2}, {"id": 1}]})));
        assert!(!filter.matches(&json!({"tags": "{\"id\":1}"})));
    }

    #[test]
    fn starts_with_matches_string_prefixes_only() {
        let filter = compile(json!({"path": "x", "op": "starts_with", "value": "ab"}));
        assert!(filter.matches(&json!({"x": "abc"})));
        assert!(!filter.matches(&json!({"x": "cab"})));
        assert!(!filter.matches(&json!({"x": ["abc"]})));
    }

    #[test]
    fn empty_all_is_true_and_empty_any_is_false() {
        assert!(compile(json!({"all": []})).matches(&json!({})));
        assert!(!compile(json!({"any": []})).matches(&json!({})));
    }

    #[test]
    fn not_negates_its_filter() {
        let filter = compile(json!({"not": {"path": "x", "op": "eq", "value": 1}}));
        assert!(!filter.matches(&json!({"x": 1})));
        assert!(filter.matches(&json!({"x": 2})));
    }

    #[test]
    fn always_is_trivial_and_matches_everything() {
        let filter = CompiledFilter::always();
        assert!(filter.is_trivial());
        assert!(filter.matches(&json!(null)));
        assert!(CompiledFilter::default().is_trivial());
        assert!(!compile(json!({"path": "x", "op": "exists"})).is_trivial());
    }

    #[test]
    fn spec_with_mixed_kinds_is_rejected_when_read() {
        let err = serde_json::from_value::<FilterSpec>(
            json!({"path": "x", "op": "eq", "value": 1, "all": []}),
        )
        .unwrap_err();
        assert!(err.to_string().contains("exactly one of"));
        assert!(serde_json::from_value::<FilterSpec>(json!({"path": "x"})).is_err());
        assert!(serde_json::from_value::<FilterSpec>(json!({"op": "eq"})).is_err());
        assert!(serde_json::from_value::<FilterSpec>(json!({"path": "x", "op": "like"})).is_err());
        assert!(serde_json::from_value::<FilterSpec>(json!({"pth": "x"})).is_err());
    }

    #[test]
    fn spec_round_trips_through_json() {
        let original = json!({"any": [
            {"path": "a", "op": "not_in", "value": [1, null]},
            {"not": {"path": "b.0", "op": "exists"}},
            {"all": [{"path": "c", "op": "eq", "arg": "c"}, {"path": "d", "op": "eq", "value": null}]}
        ]});
        let parsed = spec(original.clone());
        assert_eq!(serde_json::to_value(&parsed).unwrap(), original);
    }
}
