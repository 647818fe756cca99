//! How the filter compares JSON numbers: by value and exactly, `i64`, `u64` and `f64` mixed
//! (`1 == 1.0`, and 2^53 + 1 is not rounded), and the deep equality of values built on it.

use std::cmp::Ordering;

use serde_json::{Number, Value};

/// Deep equality in which numbers compare by value (`1 == 1.0`).
pub(super) fn json_eq(a: &Value, b: &Value) -> bool {
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
pub(super) fn integral(n: &Number) -> Option<i128> {
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
pub(super) fn compare_numbers(a: &Number, b: &Number) -> Option<Ordering> {
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use serde_json::json;

    use super::super::fixtures::compile;

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
    fn eq_compares_arrays_and_objects_deeply() {
        let filter = compile(json!({"path": "x", "op": "eq", "value": {"a": [1, 2], "b": null}}));
        assert!(filter.matches(&json!({"x": {"b": null, "a": [1.0, 2]}})));
        assert!(!filter.matches(&json!({"x": {"a": [1, 2]}})));
    }
}
