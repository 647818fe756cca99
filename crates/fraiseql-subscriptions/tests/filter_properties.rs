//! Property tests for compiled filters: `CompiledFilter::matches` agrees with a
//! straightforward reference evaluator on random event data and random specs, and the
//! combinators obey boolean algebra.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::cmp::Ordering;

use fraiseql_subscriptions::filter::{CompiledFilter, Condition, FilterOp, FilterSpec};
use proptest::prelude::*;
use serde_json::{json, Map, Value};

const KEYS: [&str; 5] = ["a", "b", "c", "0", "1"];
const STRINGS: [&str; 6] = ["", "a", "ab", "abc", "b", "ba"];
const FLOATS: [f64; 5] = [-1.5, 0.0, 0.5, 1.0, 2.0];
const ARG: &str = "p";

// ---------- generators ----------

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        (-3_i64..=3).prop_map(|i| json!(i)),
        prop::sample::select(FLOATS.to_vec()).prop_map(|f| json!(f)),
        prop::sample::select(STRINGS.to_vec()).prop_map(|s| json!(s)),
    ]
}

fn data() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(prop::sample::select(KEYS.to_vec()), inner, 0..4).prop_map(
                |m| { Value::Object(m.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()) }
            ),
        ]
    })
}

fn path() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(KEYS.to_vec()), 0..4).prop_map(|s| s.join("."))
}

fn orderable() -> impl Strategy<Value = Value> {
    prop_oneof![
        (-3_i64..=3).prop_map(|i| json!(i)),
        prop::sample::select(FLOATS.to_vec()).prop_map(|f| json!(f)),
        prop::sample::select(STRINGS.to_vec()).prop_map(|s| json!(s)),
    ]
}

/// An operator and an operand of the shape it accepts (`None` only for `exists`).
fn op_and_operand() -> impl Strategy<Value = (FilterOp, Option<Value>)> {
    let any_operand = prop_oneof![
        3 => leaf(),
        1 => prop::collection::vec(leaf(), 0..3).prop_map(Value::Array),
    ];
    prop_oneof![
        any_operand.clone().prop_map(|v| (FilterOp::Eq, Some(v))),
        any_operand.clone().prop_map(|v| (FilterOp::Ne, Some(v))),
        orderable().prop_map(|v| (FilterOp::Gt, Some(v))),
        orderable().prop_map(|v| (FilterOp::Gte, Some(v))),
        orderable().prop_map(|v| (FilterOp::Lt, Some(v))),
        orderable().prop_map(|v| (FilterOp::Lte, Some(v))),
        // Up to 40 items, so both the scanned (<= 16) and the hashed lists are exercised.
        prop::collection::vec(leaf(), 0..40).prop_map(|v| (FilterOp::In, Some(Value::Array(v)))),
        prop::collection::vec(leaf(), 0..40).prop_map(|v| (FilterOp::NotIn, Some(Value::Array(v)))),
        any_operand.prop_map(|v| (FilterOp::Contains, Some(v))),
        prop::sample::select(STRINGS.to_vec()).prop_map(|s| (FilterOp::StartsWith, Some(json!(s)))),
        prop::option::of(any::<bool>()).prop_map(|b| (FilterOp::Exists, b.map(Value::Bool))),
    ]
}

/// A condition, and the argument value it binds when it is bound to [`ARG`].
fn condition() -> impl Strategy<Value = (FilterSpec, Option<Value>)> {
    (path(), op_and_operand(), any::<bool>()).prop_map(
        |(path, (op, operand), bind)| match operand {
            Some(value) if bind => (
                FilterSpec::Condition(Condition {
                    path,
                    op,
                    value: None,
                    arg: Some(ARG.to_owned()),
                }),
                Some(value),
            ),
            value => (
                FilterSpec::Condition(Condition {
                    path,
                    op,
                    value,
                    arg: None,
                }),
                None,
            ),
        },
    )
}

fn spec_tree() -> impl Strategy<Value = FilterSpec> {
    // Constant conditions only: bound ones are covered by `bound_condition_matches_reference`.
    let leaf = condition().prop_map(|(spec, bound)| match (spec, bound) {
        (FilterSpec::Condition(mut c), Some(value)) => {
            c.arg = None;
            c.value = Some(value);
            FilterSpec::Condition(c)
        }
        (spec, _) => spec,
    });
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(FilterSpec::All),
            prop::collection::vec(inner.clone(), 0..4).prop_map(FilterSpec::Any),
            inner.prop_map(|f| FilterSpec::Not(Box::new(f))),
        ]
    })
}

/// JSON built from filter-like keys and values: often almost a filter, sometimes one.
fn filterish_json() -> impl Strategy<Value = Value> {
    const SPEC_KEYS: [&str; 7] = ["path", "op", "value", "arg", "all", "any", "not"];
    const WORDS: [&str; 9] = [
        "eq",
        "gt",
        "in",
        "exists",
        "starts_with",
        "a",
        "a.0",
        "p",
        "",
    ];
    let scalar = prop_oneof![
        leaf(),
        prop::sample::select(WORDS.to_vec()).prop_map(|s| json!(s)),
    ];
    scalar.prop_recursive(4, 32, 5, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(prop::sample::select(SPEC_KEYS.to_vec()), inner, 1..4)
                .prop_map(|m| {
                    Value::Object(m.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
                }),
        ]
    })
}

// ---------- reference evaluator ----------

fn ref_eval(spec: &FilterSpec, arguments: &Map<String, Value>, data: &Value) -> bool {
    match spec {
        FilterSpec::All(all) => all.iter().all(|f| ref_eval(f, arguments, data)),
        FilterSpec::Any(any) => any.iter().any(|f| ref_eval(f, arguments, data)),
        FilterSpec::Not(f) => !ref_eval(f, arguments, data),
        FilterSpec::Condition(c) => {
            let operand = match &c.arg {
                Some(name) => arguments.get(name).cloned(),
                None => c.value.clone(),
            };
            let pointer = if c.path.is_empty() {
                String::new()
            } else {
                format!("/{}", c.path.replace('.', "/"))
            };
            let found = data.pointer(&pointer);
            if c.op == FilterOp::Exists {
                let want = operand.is_none_or(|v| v.as_bool().unwrap());
                return found.is_some() == want;
            }
            let operand = operand.unwrap();
            let Some(found) = found else {
                return matches!(c.op, FilterOp::Ne | FilterOp::NotIn);
            };
            match c.op {
                FilterOp::Eq => ref_eq(found, &operand),
                FilterOp::Ne => !ref_eq(found, &operand),
                FilterOp::Gt => ref_cmp(found, &operand) == Some(Ordering::Greater),
                FilterOp::Gte => matches!(
                    ref_cmp(found, &operand),
                    Some(Ordering::Greater | Ordering::Equal)
                ),
                FilterOp::Lt => ref_cmp(found, &operand) == Some(Ordering::Less),
                FilterOp::Lte => {
                    matches!(
                        ref_cmp(found, &operand),
                        Some(Ordering::Less | Ordering::Equal)
                    )
                }
                FilterOp::In => operand.as_array().unwrap().iter().any(|v| ref_eq(found, v)),
                FilterOp::NotIn => !operand.as_array().unwrap().iter().any(|v| ref_eq(found, v)),
                FilterOp::Contains => match (found, &operand) {
                    (Value::String(s), Value::String(n)) => s.contains(n.as_str()),
                    (Value::Array(items), n) => items.iter().any(|v| ref_eq(v, n)),
                    _ => false,
                },
                FilterOp::StartsWith => match (found, &operand) {
                    (Value::String(s), Value::String(p)) => s.starts_with(p.as_str()),
                    _ => false,
                },
                FilterOp::Exists => unreachable!(),
            }
        }
    }
}

fn ref_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| ref_eq(x, y))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| ref_eq(v, w)))
        }
        _ => a == b,
    }
}

fn ref_cmp(a: &Value, b: &Value) -> Option<Ordering> {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64()?.partial_cmp(&y.as_f64()?),
        (Value::String(x), Value::String(y)) => Some(x.cmp(y)),
        _ => None,
    }
}

fn compile(spec: &FilterSpec, arguments: &Map<String, Value>) -> CompiledFilter {
    CompiledFilter::compile(spec, arguments).unwrap()
}

// ---------- properties ----------

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn matches_agrees_with_reference_evaluator(spec in spec_tree(), data in data()) {
        let empty = Map::new();
        let filter = compile(&spec, &empty);
        prop_assert_eq!(filter.matches(&data), ref_eval(&spec, &empty, &data), "spec {:?}", spec);
    }

    #[test]
    fn bound_condition_matches_reference((spec, bound) in condition(), data in data()) {
        let mut arguments = Map::new();
        if let Some(value) = bound {
            arguments.insert(ARG.to_owned(), value);
        }
        let filter = compile(&spec, &arguments);
        prop_assert_eq!(filter.matches(&data), ref_eval(&spec, &arguments, &data));
    }

    #[test]
    fn condition_matches_reference_on_data_that_holds_its_path(
        (spec, bound) in condition(),
        value in data(),
    ) {
        // Random data rarely holds a random path; plant a value at it.
        let FilterSpec::Condition(c) = &spec else { unreachable!() };
        let mut data = value;
        for key in c.path.split('.').filter(|k| !k.is_empty()).rev() {
            data = json!({ key: data });
        }
        let mut arguments = Map::new();
        if let Some(value) = bound {
            arguments.insert(ARG.to_owned(), value);
        }
        let filter = compile(&spec, &arguments);
        prop_assert_eq!(filter.matches(&data), ref_eval(&spec, &arguments, &data));
    }

    #[test]
    fn not_is_the_negation(spec in spec_tree(), data in data()) {
        let empty = Map::new();
        let f = compile(&spec, &empty);
        let not_f = compile(&FilterSpec::Not(Box::new(spec)), &empty);
        prop_assert_eq!(not_f.matches(&data), !f.matches(&data));
    }

    #[test]
    fn all_and_any_are_conjunction_and_disjunction(
        f in spec_tree(),
        g in spec_tree(),
        data in data(),
    ) {
        let empty = Map::new();
        let (cf, cg) = (compile(&f, &empty), compile(&g, &empty));
        let all = compile(&FilterSpec::all([f.clone(), g.clone()]), &empty);
        let any = compile(&FilterSpec::any([f, g]), &empty);
        prop_assert_eq!(all.matches(&data), cf.matches(&data) && cg.matches(&data));
        prop_assert_eq!(any.matches(&data), cf.matches(&data) || cg.matches(&data));
    }

    #[test]
    fn empty_all_is_true_and_empty_any_is_false(data in data()) {
        let empty = Map::new();
        prop_assert!(compile(&FilterSpec::All(vec![]), &empty).matches(&data));
        prop_assert!(!compile(&FilterSpec::Any(vec![]), &empty).matches(&data));
    }

    #[test]
    fn spec_survives_a_json_round_trip((bound, _) in condition(), tree in spec_tree()) {
        let spec = FilterSpec::any([bound, tree]);
        let text = serde_json::to_string(&spec).unwrap();
        let back: FilterSpec = serde_json::from_str(&text).unwrap();
        prop_assert_eq!(back, spec);
    }

    #[test]
    fn arbitrary_json_never_panics_when_read_compiled_or_evaluated(
        raw in filterish_json(),
        event in data(),
        argument in data(),
    ) {
        // Most random values are not filters; those that are must compile or fail cleanly.
        if let Ok(spec) = serde_json::from_value::<FilterSpec>(raw) {
            let mut arguments = Map::new();
            arguments.insert(ARG.to_owned(), argument);
            if let Ok(filter) = CompiledFilter::compile(&spec, &arguments) {
                let _ = filter.matches(&event);
            }
        }
    }
}
