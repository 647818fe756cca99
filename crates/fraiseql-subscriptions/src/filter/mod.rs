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

mod compile;
mod compiled;
mod error;
mod eval;
mod number;
mod op;
mod spec;
mod value_set;

#[cfg(test)]
mod fixtures;

pub use compiled::CompiledFilter;
pub use error::{FilterError, OperandSource};
pub use op::FilterOp;
pub use spec::{Condition, FilterSpec, MAX_CONDITIONS, MAX_LIST_LEN, MAX_NESTING, MAX_PATH_DEPTH};
