//! The declarative form of a filter, as users write it ([`FilterSpec`], the JSON the Python
//! decorator's `filter=...` passes), and the limits on its size.

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

use super::error::FilterError;
use super::op::FilterOp;

/// Most conditions (leaves) one filter may hold.
pub const MAX_CONDITIONS: usize = 64;
/// Most segments one path may have.
pub const MAX_PATH_DEPTH: usize = 32;
/// Deepest nesting of `all` / `any` / `not` combinators.
pub const MAX_NESTING: usize = 16;
/// Most items one `in` / `not_in` list may hold.
pub const MAX_LIST_LEN: usize = 4096;

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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use serde_json::json;

    use super::super::fixtures::spec;
    use super::*;

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
