//! The comparison operators of a filter condition ([`FilterOp`]) and their names as written
//! in a spec.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A comparison a [`Condition`](super::Condition) applies to the value found at its path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FilterOp {
    /// Equal (deep equality; numbers by value).
    Eq,
    /// Not equal; true when the path is missing.
    Ne,
    /// Greater than (numbers or strings).
    Gt,
    /// Greater than or equal (numbers or strings).
    Gte,
    /// Less than (numbers or strings).
    Lt,
    /// Less than or equal (numbers or strings).
    Lte,
    /// Equal to one of the items of an array operand.
    In,
    /// Equal to none of the items of an array operand; true when the path is missing.
    NotIn,
    /// A string containing a substring, or an array containing an element.
    Contains,
    /// A string starting with a string operand.
    StartsWith,
    /// The path is present (operand absent or `true`) or absent (operand `false`).
    Exists,
}

impl FilterOp {
    /// The operator's name as written in a [`FilterSpec`](super::FilterSpec).
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Eq => "eq",
            Self::Ne => "ne",
            Self::Gt => "gt",
            Self::Gte => "gte",
            Self::Lt => "lt",
            Self::Lte => "lte",
            Self::In => "in",
            Self::NotIn => "not_in",
            Self::Contains => "contains",
            Self::StartsWith => "starts_with",
            Self::Exists => "exists",
        }
    }
}

impl fmt::Display for FilterOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
