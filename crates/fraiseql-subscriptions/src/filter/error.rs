//! Why a filter could not be read or compiled ([`FilterError`]), each message saying what to
//! change, and where a bad operand came from ([`OperandSource`]).

use std::fmt;

use super::op::FilterOp;

/// Where a condition's operand came from, for error messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OperandSource {
    /// The condition's constant `value`.
    Constant,
    /// The subscription argument of this name.
    Argument(String),
}

impl fmt::Display for OperandSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Constant => f.write_str("the constant \"value\""),
            Self::Argument(name) => write!(f, "argument `{name}`"),
        }
    }
}

/// Why a [`FilterSpec`](super::FilterSpec) could not be read or compiled; each message says
/// what to change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FilterError {
    /// The filter object has the wrong keys.
    #[error("invalid filter: {reason}")]
    InvalidSpec {
        /// What is wrong and what is expected.
        reason: &'static str,
    },
    /// A condition is bound to an argument the subscription does not have.
    #[error(
        "filter on `{path}` is bound to argument `{name}`, but the subscription has no \
         argument `{name}`: pass it, or compare with a constant \"value\" instead"
    )]
    MissingArgument {
        /// The argument's name.
        name: String,
        /// The condition's path.
        path: String,
    },
    /// A condition gives both `value` and `arg`.
    #[error(
        "filter on `{path}` gives both \"value\" and \"arg\": keep one (a constant or a \
         subscription argument)"
    )]
    AmbiguousOperand {
        /// The condition's path.
        path: String,
    },
    /// A condition other than `exists` gives neither `value` nor `arg`.
    #[error(
        "filter `{op}` on `{path}` needs an operand: add \"value\" (a constant) or \"arg\" \
         (a subscription argument's name)"
    )]
    MissingOperand {
        /// The condition's path.
        path: String,
        /// The condition's operator.
        op: FilterOp,
    },
    /// The operand has a type the operator cannot use.
    #[error("filter `{op}` on `{path}` needs {expected}, but {operand} is {found}")]
    OperandType {
        /// The condition's path.
        path: String,
        /// The condition's operator.
        op: FilterOp,
        /// What the operator accepts.
        expected: &'static str,
        /// The JSON type found.
        found: &'static str,
        /// Where the operand came from.
        operand: OperandSource,
    },
    /// A path has an empty segment (`a..b`, `.a`, `a.`).
    #[error(
        "filter path `{path}` has an empty segment: write keys separated by single dots, \
         e.g. `author.id` (or `\"\"` for the whole event data)"
    )]
    EmptyPathSegment {
        /// The path.
        path: String,
    },
    /// A path has too many segments.
    #[error("filter path `{path}` has {depth} segments; at most {max} are allowed")]
    PathTooDeep {
        /// The path.
        path: String,
        /// Its number of segments.
        depth: usize,
        /// The limit ([`MAX_PATH_DEPTH`](super::MAX_PATH_DEPTH)).
        max: usize,
    },
    /// An `in` / `not_in` list is too long.
    #[error("filter `{op}` on `{path}` has a list of {len} items; at most {max} are allowed")]
    ListTooLong {
        /// The condition's path.
        path: String,
        /// The condition's operator.
        op: FilterOp,
        /// The list's length.
        len: usize,
        /// The limit ([`MAX_LIST_LEN`](super::MAX_LIST_LEN)).
        max: usize,
    },
    /// The filter has too many conditions.
    #[error("filter has more than {max} conditions: simplify it (an `in` list counts as one)")]
    TooManyConditions {
        /// The limit ([`MAX_CONDITIONS`](super::MAX_CONDITIONS)).
        max: usize,
    },
    /// `all` / `any` / `not` are nested too deeply.
    #[error("filter nests all/any/not more than {max} levels deep: flatten it")]
    NestingTooDeep {
        /// The limit ([`MAX_NESTING`](super::MAX_NESTING)).
        max: usize,
    },
}
