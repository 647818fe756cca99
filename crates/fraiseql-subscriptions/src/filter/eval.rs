//! Evaluating a [`CompiledFilter`] on one event's data: walk the tree, look each path up,
//! apply its test. Allocates nothing.

use serde_json::Value;

use super::compiled::{CompiledFilter, Node, Ordered, Segment, Test};
use super::number::{compare_numbers, json_eq};

impl CompiledFilter {
    /// Whether the event data satisfies the filter. Allocates nothing.
    #[must_use]
    pub fn matches(&self, data: &Value) -> bool {
        eval(&self.root, data)
    }
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use serde_json::json;

    use super::super::fixtures::compile;

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
}
