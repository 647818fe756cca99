//! Compiling a [`FilterSpec`] into a [`CompiledFilter`]: arguments bound, paths split,
//! operands checked against their operators, limits enforced; and [`FilterSpec::validate`],
//! the same checks before any argument is known.

use serde_json::{Map, Value};

use super::compiled::{CompiledFilter, Node, OrderAccept, Ordered, Segment, Test};
use super::error::{FilterError, OperandSource};
use super::op::FilterOp;
use super::spec::{
    Condition, FilterSpec, MAX_CONDITIONS, MAX_LIST_LEN, MAX_NESTING, MAX_PATH_DEPTH,
};
use super::value_set::ValueSet;

impl FilterSpec {
    /// Checks everything that does not depend on a subscription's arguments: paths, limits,
    /// operand presence and the type of every constant operand. Servers call this when a
    /// field is registered, so a developer's mistake fails at startup, not on a client's
    /// first subscribe.
    ///
    /// # Errors
    /// The [`FilterError`] [`CompiledFilter::compile`] would return for any arguments.
    pub fn validate(&self) -> Result<(), FilterError> {
        let mut conditions = 0;
        compile_node(self, None, 0, &mut conditions).map(drop)
    }
}

impl CompiledFilter {
    /// Compiles `spec` for one subscription whose resolved arguments are `arguments`.
    ///
    /// Arguments are bound here, once: a later change to `arguments` does not affect the
    /// compiled filter. An argument that is `null` binds to `null`.
    ///
    /// # Errors
    ///
    /// A [`FilterError`] naming the condition and what to change when an argument is
    /// missing, an operand has the wrong shape for its operator, a path is malformed, or the
    /// filter exceeds [`MAX_CONDITIONS`], [`MAX_PATH_DEPTH`], [`MAX_NESTING`] or
    /// [`MAX_LIST_LEN`].
    pub fn compile(spec: &FilterSpec, arguments: &Map<String, Value>) -> Result<Self, FilterError> {
        let mut conditions = 0;
        let root = compile_node(spec, Some(arguments), 0, &mut conditions)?;
        Ok(Self { root })
    }
}

/// `arguments` is `None` when only validating ([`FilterSpec::validate`]): conditions bound
/// to an argument are then checked for their path only.
fn compile_node(
    spec: &FilterSpec,
    arguments: Option<&Map<String, Value>>,
    nesting: usize,
    conditions: &mut usize,
) -> Result<Node, FilterError> {
    let compile_children = |children: &[FilterSpec], conditions: &mut usize| {
        if nesting >= MAX_NESTING {
            return Err(FilterError::NestingTooDeep { max: MAX_NESTING });
        }
        children
            .iter()
            .map(|child| compile_node(child, arguments, nesting + 1, conditions))
            .collect::<Result<Box<[Node]>, FilterError>>()
    };
    match spec {
        FilterSpec::All(children) => Ok(Node::All(compile_children(children, conditions)?)),
        FilterSpec::Any(children) => Ok(Node::Any(compile_children(children, conditions)?)),
        FilterSpec::Not(child) => {
            if nesting >= MAX_NESTING {
                return Err(FilterError::NestingTooDeep { max: MAX_NESTING });
            }
            let child = compile_node(child, arguments, nesting + 1, conditions)?;
            Ok(Node::Not(Box::new(child)))
        }
        FilterSpec::Condition(condition) => {
            *conditions += 1;
            if *conditions > MAX_CONDITIONS {
                return Err(FilterError::TooManyConditions {
                    max: MAX_CONDITIONS,
                });
            }
            compile_condition(condition, arguments)
        }
    }
}

fn compile_condition(
    c: &Condition,
    arguments: Option<&Map<String, Value>>,
) -> Result<Node, FilterError> {
    let path = split_path(&c.path)?;
    let (operand, source) = match (&c.value, &c.arg, arguments) {
        (Some(_), Some(_), _) => {
            return Err(FilterError::AmbiguousOperand {
                path: c.path.clone(),
            })
        }
        (Some(value), None, _) => (Some(value.clone()), OperandSource::Constant),
        // Validation only: the argument's value is not known yet.
        (None, Some(_), None) => {
            return Ok(Node::Test {
                path,
                test: Test::Exists(true),
            })
        }
        (None, Some(name), Some(arguments)) => match arguments.get(name) {
            Some(value) => (Some(value.clone()), OperandSource::Argument(name.clone())),
            None => {
                return Err(FilterError::MissingArgument {
                    name: name.clone(),
                    path: c.path.clone(),
                })
            }
        },
        (None, None, _) => (None, OperandSource::Constant),
    };
    let wrong_type = |expected: &'static str, found: &Value| FilterError::OperandType {
        path: c.path.clone(),
        op: c.op,
        expected,
        found: json_type(found),
        operand: source.clone(),
    };
    let test = match (c.op, operand) {
        (FilterOp::Exists, None) => Test::Exists(true),
        (FilterOp::Exists, Some(Value::Bool(present))) => Test::Exists(present),
        (FilterOp::Exists, Some(other)) => {
            return Err(wrong_type("no operand or a boolean", &other))
        }
        (op, None) => {
            return Err(FilterError::MissingOperand {
                path: c.path.clone(),
                op,
            })
        }
        (FilterOp::Eq, Some(value)) => Test::Eq(value),
        (FilterOp::Ne, Some(value)) => Test::Ne(value),
        (op @ (FilterOp::Gt | FilterOp::Gte | FilterOp::Lt | FilterOp::Lte), Some(value)) => {
            let accept = match op {
                FilterOp::Gt => OrderAccept::Gt,
                FilterOp::Gte => OrderAccept::Gte,
                FilterOp::Lt => OrderAccept::Lt,
                _ => OrderAccept::Lte,
            };
            let operand = match value {
                Value::Number(n) => Ordered::Number(n),
                Value::String(s) => Ordered::String(s.into_boxed_str()),
                other => return Err(wrong_type("a number or a string", &other)),
            };
            Test::Order { accept, operand }
        }
        (op @ (FilterOp::In | FilterOp::NotIn), Some(value)) => {
            let items = match value {
                Value::Array(items) => items,
                other => return Err(wrong_type("an array", &other)),
            };
            if items.len() > MAX_LIST_LEN {
                return Err(FilterError::ListTooLong {
                    path: c.path.clone(),
                    op,
                    len: items.len(),
                    max: MAX_LIST_LEN,
                });
            }
            let set = ValueSet::new(items);
            if op == FilterOp::In {
                Test::In(set)
            } else {
                Test::NotIn(set)
            }
        }
        (FilterOp::Contains, Some(value)) => Test::Contains(value),
        (FilterOp::StartsWith, Some(value)) => match value {
            Value::String(s) => Test::StartsWith(s.into_boxed_str()),
            other => return Err(wrong_type("a string", &other)),
        },
    };
    Ok(Node::Test { path, test })
}

fn split_path(path: &str) -> Result<Box<[Segment]>, FilterError> {
    if path.is_empty() {
        return Ok(Box::new([]));
    }
    let depth = path.split('.').count();
    if depth > MAX_PATH_DEPTH {
        return Err(FilterError::PathTooDeep {
            path: path.to_owned(),
            depth,
            max: MAX_PATH_DEPTH,
        });
    }
    path.split('.')
        .map(|segment| {
            if segment.is_empty() {
                return Err(FilterError::EmptyPathSegment {
                    path: path.to_owned(),
                });
            }
            // `usize::from_str` accepts a leading `+`; only plain digits index arrays.
            let index = if segment.bytes().all(|b| b.is_ascii_digit()) {
                segment.parse().ok()
            } else {
                None
            };
            Ok(Segment {
                key: segment.into(),
                index,
            })
        })
        .collect()
}

fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use serde_json::json;

    use super::super::fixtures::{args, compile, compile_err, spec};
    use super::*;

    #[test]
    fn eq_bound_to_argument_matches_only_that_value() {
        let filter = CompiledFilter::compile(
            &spec(json!({"path": "room", "op": "eq", "arg": "room"})),
            &args(json!({"room": "lobby"})),
        )
        .unwrap();
        assert!(filter.matches(&json!({"room": "lobby"})));
        assert!(!filter.matches(&json!({"room": "attic"})));
        assert!(!filter.matches(&json!({})));
    }

    #[test]
    fn arguments_are_bound_once_at_compile_time() {
        let mut arguments = args(json!({"room": "lobby"}));
        let filter =
            CompiledFilter::compile(&FilterSpec::bound("room", FilterOp::Eq, "room"), &arguments)
                .unwrap();
        arguments.insert("room".into(), json!("attic"));
        assert!(filter.matches(&json!({"room": "lobby"})));
    }

    #[test]
    fn missing_argument_is_a_clear_error() {
        let err = compile_err(
            json!({"path": "room", "op": "eq", "arg": "room"}),
            json!({}),
        );
        assert_eq!(
            err,
            FilterError::MissingArgument {
                name: "room".into(),
                path: "room".into()
            }
        );
        assert!(err.to_string().contains("no argument `room`"));
    }

    #[test]
    fn null_argument_binds_to_null() {
        let filter = CompiledFilter::compile(
            &FilterSpec::bound("room", FilterOp::Eq, "room"),
            &args(json!({"room": null})),
        )
        .unwrap();
        assert!(filter.matches(&json!({"room": null})));
        assert!(!filter.matches(&json!({"room": "lobby"})));
        assert!(!filter.matches(&json!({})));
    }

    #[test]
    fn explicit_null_value_is_an_operand_not_a_missing_one() {
        let filter = compile(json!({"path": "x", "op": "eq", "value": null}));
        assert!(filter.matches(&json!({"x": null})));
        assert!(!filter.matches(&json!({"x": 0})));
    }

    #[test]
    fn value_and_arg_together_are_ambiguous() {
        let err = compile_err(
            json!({"path": "x", "op": "eq", "value": 1, "arg": "x"}),
            json!({"x": 1}),
        );
        assert!(matches!(err, FilterError::AmbiguousOperand { .. }));
    }

    #[test]
    fn operator_without_operand_is_an_error() {
        let err = compile_err(json!({"path": "x", "op": "gt"}), json!({}));
        assert_eq!(
            err,
            FilterError::MissingOperand {
                path: "x".into(),
                op: FilterOp::Gt
            }
        );
    }

    #[test]
    fn exists_rejects_a_non_boolean_operand() {
        let err = compile_err(json!({"path": "x", "op": "exists", "value": 1}), json!({}));
        assert!(matches!(err, FilterError::OperandType { .. }));
    }

    #[test]
    fn validate_checks_constants_and_paths_but_not_bound_arguments() {
        let bound = FilterSpec::bound("room", FilterOp::In, "rooms");
        assert_eq!(bound.validate(), Ok(()));
        let bad_path = FilterSpec::bound("a..b", FilterOp::Eq, "x");
        assert!(matches!(
            bad_path.validate(),
            Err(FilterError::EmptyPathSegment { .. })
        ));
        let bad_constant = FilterSpec::constant("n", FilterOp::Gt, json!([1]));
        assert!(matches!(
            bad_constant.validate(),
            Err(FilterError::OperandType { .. })
        ));
        let missing = FilterSpec::Condition(Condition {
            path: "n".into(),
            op: FilterOp::Eq,
            value: None,
            arg: None,
        });
        assert!(matches!(
            missing.validate(),
            Err(FilterError::MissingOperand { .. })
        ));
    }

    #[test]
    fn empty_path_segment_is_an_error() {
        for path in ["a..b", ".a", "a."] {
            let err = compile_err(json!({"path": path, "op": "exists"}), json!({}));
            assert!(
                matches!(err, FilterError::EmptyPathSegment { .. }),
                "{path}"
            );
        }
    }

    #[test]
    fn path_deeper_than_limit_is_an_error() {
        let path = vec!["a"; MAX_PATH_DEPTH + 1].join(".");
        let err = compile_err(json!({"path": path, "op": "exists"}), json!({}));
        assert!(
            matches!(err, FilterError::PathTooDeep { depth, .. } if depth == MAX_PATH_DEPTH + 1)
        );
    }

    #[test]
    fn more_conditions_than_limit_is_an_error() {
        let at_limit = FilterSpec::all((0..MAX_CONDITIONS).map(|_| FilterSpec::exists("x")));
        assert!(CompiledFilter::compile(&at_limit, &Map::new()).is_ok());
        let over = FilterSpec::all((0..=MAX_CONDITIONS).map(|_| FilterSpec::exists("x")));
        assert_eq!(
            CompiledFilter::compile(&over, &Map::new()).unwrap_err(),
            FilterError::TooManyConditions {
                max: MAX_CONDITIONS
            }
        );
    }

    #[test]
    fn nesting_deeper_than_limit_is_an_error() {
        let mut deep = FilterSpec::exists("x");
        for _ in 0..=MAX_NESTING {
            deep = FilterSpec::negate(deep);
        }
        assert_eq!(
            CompiledFilter::compile(&deep, &Map::new()).unwrap_err(),
            FilterError::NestingTooDeep { max: MAX_NESTING }
        );
    }

    #[test]
    fn in_list_longer_than_limit_is_an_error() {
        let list: Vec<Value> = (0..=MAX_LIST_LEN).map(|i| json!(i)).collect();
        let err = compile_err(json!({"path": "x", "op": "in", "value": list}), json!({}));
        assert!(matches!(err, FilterError::ListTooLong { .. }));
    }

    #[test]
    fn in_needs_an_array() {
        let err = compile_err(
            json!({"path": "x", "op": "in", "arg": "ids"}),
            json!({"ids": 3}),
        );
        assert_eq!(
            err,
            FilterError::OperandType {
                path: "x".into(),
                op: FilterOp::In,
                expected: "an array",
                found: "a number",
                operand: OperandSource::Argument("ids".into()),
            }
        );
        assert!(err.to_string().contains("argument `ids` is a number"));
    }

    #[test]
    fn ordering_needs_a_number_or_a_string() {
        for value in [json!(null), json!(true), json!([1]), json!({})] {
            let err = compile_err(json!({"path": "x", "op": "lt", "value": value}), json!({}));
            assert!(matches!(err, FilterError::OperandType { .. }));
        }
    }

    #[test]
    fn starts_with_needs_a_string() {
        let err = compile_err(
            json!({"path": "x", "op": "starts_with", "value": 1}),
            json!({}),
        );
        assert!(matches!(
            err,
            FilterError::OperandType {
                expected: "a string",
                ..
            }
        ));
    }
}
