//! Properties of projection plans: `write_payload` agrees with `project`, and `project`
//! agrees with a naive reference projection, for random values and random selection sets.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use fraiseql_subscriptions::document::{DocumentLimits, SubscriptionDocuments};
use proptest::prelude::*;
use serde_json::{json, Map, Value};

/// A selected field: optional alias, name, optional sub-selection.
#[derive(Debug, Clone)]
struct Sel {
    alias: Option<String>,
    name: String,
    children: Option<Vec<Sel>>,
}

impl Sel {
    fn key(&self) -> &str {
        self.alias.as_deref().unwrap_or(&self.name)
    }
}

/// Field names the values use, so that selections hit, miss and nest.
const NAMES: [&str; 5] = ["a", "b", "c", "d", "__typename"];

fn name() -> impl Strategy<Value = String> {
    prop::sample::select(&NAMES[..]).prop_map(str::to_owned)
}

fn alias() -> impl Strategy<Value = Option<String>> {
    prop::option::weighted(
        0.3,
        prop::sample::select(&["x", "y", "a", "b"][..]).prop_map(str::to_owned),
    )
}

/// Keeps the first selection of each response key: the same key on different fields is a
/// validation error, which is not what these properties are about.
fn dedupe(sels: Vec<Sel>) -> Vec<Sel> {
    let mut out: Vec<Sel> = Vec::new();
    for s in sels {
        if !out.iter().any(|o| o.key() == s.key()) {
            out.push(s);
        }
    }
    out
}

fn selection() -> impl Strategy<Value = Vec<Sel>> {
    let leaf = (alias(), name()).prop_map(|(alias, name)| Sel {
        alias,
        name,
        children: None,
    });
    let tree = leaf.prop_recursive(3, 24, 4, |inner| {
        (alias(), name(), prop::collection::vec(inner, 1..4)).prop_map(|(alias, name, children)| {
            if name == "__typename" {
                Sel {
                    alias,
                    name,
                    children: None,
                }
            } else {
                Sel {
                    alias,
                    name,
                    children: Some(dedupe(children)),
                }
            }
        })
    });
    prop::collection::vec(tree, 1..5).prop_map(dedupe)
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i32>().prop_map(Value::from),
        "[a-z\"\\\\é]{0,6}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 5, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(name(), inner, 0..5)
                .prop_map(|m| Value::Object(m.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

fn render(sels: &[Sel], out: &mut String) {
    out.push_str("{ ");
    for s in sels {
        if let Some(alias) = &s.alias {
            out.push_str(alias);
            out.push_str(": ");
        }
        out.push_str(&s.name);
        out.push(' ');
        if let Some(children) = &s.children {
            render(children, out);
        }
    }
    out.push_str("} ");
}

fn reference(sels: &[Sel], value: &Value) -> Value {
    match value {
        Value::Object(object) => Value::Object(
            sels.iter()
                .map(|s| {
                    let v = match (object.get(&s.name), &s.children) {
                        (None, _) => Value::Null,
                        (Some(v), None) => v.clone(),
                        (Some(v), Some(children)) => reference(children, v),
                    };
                    (s.key().to_owned(), v)
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(|v| reference(sels, v)).collect()),
        other => other.clone(),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn write_payload_equals_data_of_project_and_project_equals_the_reference(
        sels in selection(),
        value in json_value(),
        root_alias in prop::option::of(Just("r".to_owned())),
    ) {
        let mut text = String::from("subscription { ");
        if let Some(alias) = &root_alias {
            text.push_str(alias);
            text.push_str(": ");
        }
        text.push_str("event ");
        render(&sels, &mut text);
        text.push('}');
        let documents = SubscriptionDocuments::new(None, DocumentLimits::default()).unwrap();
        let prepared = documents.prepare(&text, None, None).unwrap();
        let key = root_alias.unwrap_or_else(|| "event".to_owned());
        prop_assert_eq!(&prepared.response_key, &key);

        let projected = prepared.plan.project(&value);
        prop_assert_eq!(&projected, &reference(&sels, &value));

        let mut out = Vec::new();
        prepared.plan.write_payload(&prepared.response_key, &value, &mut out);
        let parsed: Value = serde_json::from_slice(&out).unwrap();
        prop_assert_eq!(parsed, json!({"data": {key: projected}}));
    }

    #[test]
    fn payload_keys_follow_selection_order(sels in selection(), value in json_value()) {
        let mut text = String::from("subscription { event ");
        render(&sels, &mut text);
        text.push('}');
        let documents = SubscriptionDocuments::new(None, DocumentLimits::default()).unwrap();
        let prepared = documents.prepare(&text, None, None).unwrap();
        if let Value::Object(_) = value {
            let out = prepared.payload_for(&value);
            // The top-level object's keys appear in the payload in selection order.
            let text = String::from_utf8(out).unwrap();
            let mut last = 0;
            for s in &sels {
                let needle = format!("\"{}\":", s.key());
                let at = text[last..].find(&needle).map(|i| i + last);
                prop_assert!(at.is_some(), "{} missing in {}", needle, text);
                last = at.unwrap() + needle.len();
            }
        }
    }
}
