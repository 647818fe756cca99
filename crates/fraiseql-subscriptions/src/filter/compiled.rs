//! The compiled form of a filter: the tree [`CompiledFilter`] holds once a spec's arguments
//! are bound, its paths split and its operands checked. Built by `compile`, walked by `eval`.

use std::cmp::Ordering;

use serde_json::{Number, Value};

use super::value_set::ValueSet;

/// A filter compiled for one subscription: arguments bound, paths split, operands checked.
///
/// [`matches`](Self::matches) allocates nothing and its cost is bounded by
/// [`MAX_CONDITIONS`](super::MAX_CONDITIONS) × [`MAX_PATH_DEPTH`](super::MAX_PATH_DEPTH)
/// (plus the size of compared constants).
#[derive(Debug, Clone)]
pub struct CompiledFilter {
    pub(super) root: Node,
}

impl Default for CompiledFilter {
    fn default() -> Self {
        Self::always()
    }
}

#[derive(Debug, Clone)]
pub(super) enum Node {
    All(Box<[Node]>),
    Any(Box<[Node]>),
    Not(Box<Node>),
    Test { path: Box<[Segment]>, test: Test },
}

/// One path segment: an object key, and the array index it also names if numeric.
#[derive(Debug, Clone)]
pub(super) struct Segment {
    pub(super) key: Box<str>,
    pub(super) index: Option<usize>,
}

#[derive(Debug, Clone)]
pub(super) enum Test {
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
pub(super) enum OrderAccept {
    Gt,
    Gte,
    Lt,
    Lte,
}

impl OrderAccept {
    pub(super) fn accepts(self, ord: Ordering) -> bool {
        match self {
            Self::Gt => ord == Ordering::Greater,
            Self::Gte => ord != Ordering::Less,
            Self::Lt => ord == Ordering::Less,
            Self::Lte => ord != Ordering::Greater,
        }
    }
}

#[derive(Debug, Clone)]
pub(super) enum Ordered {
    Number(Number),
    String(Box<str>),
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
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use serde_json::json;

    use super::super::fixtures::compile;
    use super::*;

    #[test]
    fn always_is_trivial_and_matches_everything() {
        let filter = CompiledFilter::always();
        assert!(filter.is_trivial());
        assert!(filter.matches(&json!(null)));
        assert!(CompiledFilter::default().is_trivial());
        assert!(!compile(json!({"path": "x", "op": "exists"})).is_trivial());
    }
}
