//! The items of an `in` / `not_in` list: scanned one by one when short, looked up in hash
//! sets (strings, integers) when long, with the same answers either way.

use std::collections::HashSet;

use serde_json::Value;

use super::number::{integral, json_eq};

/// Above this many items an `in` list of strings and integers is looked up in a hash set.
const HASHED_LIST_THRESHOLD: usize = 16;

/// The items of an `in` list: scanned when short, hashed when long.
#[derive(Debug, Clone)]
pub(super) enum ValueSet {
    Small(Box<[Value]>),
    Hashed {
        strings: HashSet<Box<str>>,
        integers: HashSet<i128>,
        /// Items that are neither strings nor integral numbers, compared one by one.
        rest: Box<[Value]>,
    },
}

impl ValueSet {
    pub(super) fn new(items: Vec<Value>) -> Self {
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

    pub(super) fn contains(&self, value: &Value) -> bool {
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use serde_json::json;

    use super::super::fixtures::compile;
    use super::*;

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
}
