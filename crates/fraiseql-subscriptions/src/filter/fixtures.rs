//! Test fixtures: specs read from JSON and compiled the way a subscription would.

#![allow(clippy::unwrap_used)]

use serde_json::{Map, Value};

use super::{CompiledFilter, FilterError, FilterSpec};

/// The arguments object of a subscription (anything else: none).
pub(super) fn args(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

/// A spec read from its JSON form.
pub(super) fn spec(value: Value) -> FilterSpec {
    serde_json::from_value(value).unwrap()
}

/// A spec compiled without arguments.
pub(super) fn compile(value: Value) -> CompiledFilter {
    CompiledFilter::compile(&spec(value), &Map::new()).unwrap()
}

/// The error compiling a spec with these arguments.
pub(super) fn compile_err(value: Value, arguments: Value) -> FilterError {
    CompiledFilter::compile(&spec(value), &args(arguments)).unwrap_err()
}
