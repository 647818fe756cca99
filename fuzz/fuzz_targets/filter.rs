//! Fuzzes declarative filters: a [`FilterSpec`] read from arbitrary JSON, compiled against
//! arbitrary subscription arguments, evaluated on arbitrary event data.
//!
//! The input is a stream of JSON values: the filter spec, the arguments (an object;
//! anything else means none), then any number of event data values. Checked:
//!
//! - a spec that deserialized serializes and deserializes back to itself;
//! - a spec that compiles also validates ([`FilterSpec::validate`] refuses only what no
//!   arguments could fix);
//! - `matches` never panics, and for every event `{"not": spec}` (when it compiles) gives
//!   the opposite answer, as does the complementary operator of a single condition (`eq` /
//!   `ne`, `in` / `not_in`, `exists` / `exists: false`).
#![no_main]

use fraiseql_subscriptions::filter::{CompiledFilter, Condition, FilterOp, FilterSpec};
use libfuzzer_sys::fuzz_target;
use serde_json::{json, Map, Value};

/// JSON equality, numbers compared by value with one rounding step of slack: serde_json's
/// default float parser may land one ulp away from the value it printed.
fn same_json(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            x == y
                || match (x.as_f64(), y.as_f64()) {
                    (Some(x), Some(y)) => (x - y).abs() <= f64::EPSILON * x.abs().max(y.abs()),
                    _ => false,
                }
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same_json(x, y))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .zip(y)
                    .all(|((kx, vx), (ky, vy))| kx == ky && same_json(vx, vy))
        }
        _ => a == b,
    }
}

/// The condition with the complementary operator, which holds exactly when `c` does not.
fn complement(c: &Condition) -> Option<FilterSpec> {
    let (op, value) = match (c.op, &c.value) {
        (FilterOp::Eq, _) => (FilterOp::Ne, c.value.clone()),
        (FilterOp::Ne, _) => (FilterOp::Eq, c.value.clone()),
        (FilterOp::In, _) => (FilterOp::NotIn, c.value.clone()),
        (FilterOp::NotIn, _) => (FilterOp::In, c.value.clone()),
        (FilterOp::Exists, None) => (FilterOp::Exists, Some(Value::Bool(false))),
        (FilterOp::Exists, Some(Value::Bool(present))) => {
            (FilterOp::Exists, Some(Value::Bool(!present)))
        }
        _ => return None,
    };
    Some(FilterSpec::Condition(Condition {
        path: c.path.clone(),
        op,
        value,
        arg: c.arg.clone(),
    }))
}

fuzz_target!(|data: &[u8]| {
    let mut values = serde_json::Deserializer::from_slice(data)
        .into_iter::<Value>()
        .map_while(Result::ok);
    let Some(spec) = values.next() else {
        return;
    };
    let Ok(spec) = serde_json::from_value::<FilterSpec>(spec) else {
        return;
    };
    let arguments: Map<String, Value> = match values.next() {
        Some(Value::Object(map)) => map,
        _ => Map::new(),
    };
    let mut events: Vec<Value> = values.take(8).collect();
    events.push(json!({ "room": "lobby", "author": { "id": 1, "karma": 12 }, "tags": ["a"] }));

    let text = serde_json::to_string(&spec).expect("a FilterSpec serializes");
    let back: FilterSpec = serde_json::from_str(&text)
        .unwrap_or_else(|err| panic!("{text} does not deserialize back: {err}"));
    let (before, after) = (
        serde_json::to_value(&spec).expect("a FilterSpec serializes"),
        serde_json::to_value(&back).expect("a FilterSpec serializes"),
    );
    assert!(same_json(&before, &after), "{before} came back as {after}");

    let validated = spec.validate();
    let Ok(filter) = CompiledFilter::compile(&spec, &arguments) else {
        return;
    };
    assert_eq!(validated, Ok(()), "compiles but does not validate");
    let negated = CompiledFilter::compile(&FilterSpec::negate(spec.clone()), &arguments).ok();
    let complemented = match &spec {
        FilterSpec::Condition(c) => {
            complement(c).and_then(|spec| CompiledFilter::compile(&spec, &arguments).ok())
        }
        _ => None,
    };
    for event in &events {
        let matched = filter.matches(event);
        if let Some(negated) = &negated {
            assert_eq!(negated.matches(event), !matched, "not disagrees on {event}");
        }
        if let Some(complemented) = &complemented {
            assert_eq!(
                complemented.matches(event),
                !matched,
                "the complementary operator disagrees on {event}"
            );
        }
    }
});
