//! Variable coercion (GraphQL spec §6.1.2 CoerceVariableValues) and argument resolution.

use apollo_compiler::ast::{self, Type};
use apollo_compiler::schema::ExtendedType;
use apollo_compiler::{Node, Schema};
use serde_json::{Map, Number, Value};

/// A variable definition, kept from the document for coercion at prepare time.
#[derive(Debug, Clone)]
pub(super) struct VariableDef {
    pub(super) name: String,
    pub(super) ty: Node<Type>,
    pub(super) default: Option<Node<ast::Value>>,
    pub(super) location: Option<(u32, u32)>,
}

/// Converts a literal (with variables substituted from `vars`) to JSON. `None` when the
/// value is a variable that was not provided, which the spec treats as "no value".
pub(super) fn literal_to_json(value: &ast::Value, vars: &Map<String, Value>) -> Option<Value> {
    Some(match value {
        ast::Value::Null => Value::Null,
        ast::Value::Enum(name) => Value::String(name.to_string()),
        ast::Value::Variable(name) => return vars.get(name.as_str()).cloned(),
        ast::Value::String(s) => Value::String(s.clone()),
        ast::Value::Float(f) => f
            .try_to_f64()
            .ok()
            .and_then(Number::from_f64)
            .map_or(Value::Null, Value::Number),
        ast::Value::Int(i) => match i.as_str().parse::<i64>() {
            Ok(n) => Value::from(n),
            Err(_) => i
                .as_str()
                .parse::<f64>()
                .ok()
                .and_then(Number::from_f64)
                .map_or(Value::Null, Value::Number),
        },
        ast::Value::Boolean(b) => Value::Bool(*b),
        ast::Value::List(items) => Value::Array(
            items
                .iter()
                .map(|item| literal_to_json(item, vars).unwrap_or(Value::Null))
                .collect(),
        ),
        ast::Value::Object(fields) => Value::Object(
            fields
                .iter()
                .filter_map(|(k, v)| literal_to_json(v, vars).map(|v| (k.to_string(), v)))
                .collect(),
        ),
    })
}

fn describe(value: &Value) -> String {
    serde_json::to_string(value).unwrap_or_default()
}

/// Coerces an input value to `ty` (GraphQL spec §3.6 input coercion). `at` names the place
/// for error messages.
pub(super) fn coerce_input(
    value: &Value,
    ty: &Type,
    schema: Option<&Schema>,
    at: &str,
) -> Result<Value, String> {
    if value.is_null() {
        return if ty.is_non_null() {
            Err(format!(
                "{at}: expected non-nullable type \"{ty}\" not to be null"
            ))
        } else {
            Ok(Value::Null)
        };
    }
    match ty {
        Type::List(inner) | Type::NonNullList(inner) => match value {
            Value::Array(items) => items
                .iter()
                .enumerate()
                .map(|(i, item)| coerce_input(item, inner, schema, &format!("{at}[{i}]")))
                .collect::<Result<Vec<_>, _>>()
                .map(Value::Array),
            // A single value where a list is expected becomes a one-item list.
            single => Ok(Value::Array(vec![coerce_input(single, inner, schema, at)?])),
        },
        Type::Named(name) | Type::NonNullNamed(name) => coerce_named(value, name, schema, at),
    }
}

fn coerce_named(
    value: &Value,
    type_name: &str,
    schema: Option<&Schema>,
    at: &str,
) -> Result<Value, String> {
    let mismatch = |what: &str| {
        Err(format!(
            "{at}: {type_name} cannot represent {what}: {}",
            describe(value)
        ))
    };
    match type_name {
        "Int" => match value.as_i64() {
            Some(n) if i32::try_from(n).is_ok() => Ok(value.clone()),
            Some(_) => mismatch("a value outside the 32-bit range"),
            None => match value.as_f64() {
                #[allow(clippy::cast_possible_truncation)] // checked integral and in range
                Some(f)
                    if f.fract() == 0.0 && f >= f64::from(i32::MIN) && f <= f64::from(i32::MAX) =>
                {
                    Ok(Value::from(f as i64))
                }
                _ => mismatch("a non-integer value"),
            },
        },
        "Float" => match value {
            Value::Number(_) => Ok(value.clone()),
            _ => mismatch("a non-numeric value"),
        },
        "String" => match value {
            Value::String(_) => Ok(value.clone()),
            _ => mismatch("a non-string value"),
        },
        "Boolean" => match value {
            Value::Bool(_) => Ok(value.clone()),
            _ => mismatch("a non-boolean value"),
        },
        "ID" => match value {
            Value::String(_) => Ok(value.clone()),
            Value::Number(n) if n.is_i64() || n.is_u64() => Ok(Value::String(n.to_string())),
            _ => mismatch("a value that is not a string or an integer"),
        },
        _ => match schema.and_then(|s| s.types.get(type_name)) {
            Some(ExtendedType::Enum(def)) => match value.as_str() {
                Some(s) if def.values.contains_key(s) => Ok(value.clone()),
                _ => Err(format!(
                    "{at}: value {} does not exist in \"{type_name}\" enum",
                    describe(value)
                )),
            },
            Some(ExtendedType::InputObject(def)) => {
                let Value::Object(given) = value else {
                    return mismatch("a non-object value");
                };
                if let Some(unknown) = given.keys().find(|k| !def.fields.contains_key(k.as_str())) {
                    return Err(format!(
                        "{at}: field \"{unknown}\" is not defined by type \"{type_name}\""
                    ));
                }
                let mut out = Map::new();
                for (name, field) in &def.fields {
                    let field_at = format!("{at}.{name}");
                    match given.get(name.as_str()) {
                        Some(v) => {
                            out.insert(
                                name.to_string(),
                                coerce_input(v, &field.ty, schema, &field_at)?,
                            );
                        }
                        None => {
                            if let Some(default) = &field.default_value {
                                let v =
                                    literal_to_json(default, &Map::new()).unwrap_or(Value::Null);
                                out.insert(
                                    name.to_string(),
                                    coerce_input(&v, &field.ty, schema, &field_at)?,
                                );
                            } else if field.ty.is_non_null() {
                                return Err(format!(
                                    "{field_at}: field of required type \"{}\" was not provided",
                                    field.ty
                                ));
                            }
                        }
                    }
                }
                Ok(Value::Object(out))
            }
            // Custom scalars, and any named type when no schema is known, pass as given.
            _ => Ok(value.clone()),
        },
    }
}

/// A variable coercion failure: the message and the variable definition's location.
pub(super) type VariableError = (String, Option<(u32, u32)>);

/// Coerces the provided variables against the operation's definitions: applies defaults,
/// rejects missing required variables and values of the wrong type. Errors are
/// `(message, location)` pairs.
pub(super) fn coerce_variables(
    defs: &[VariableDef],
    provided: Option<&Map<String, Value>>,
    schema: Option<&Schema>,
) -> Result<Map<String, Value>, Vec<VariableError>> {
    let mut coerced = Map::new();
    let mut errors = Vec::new();
    for def in defs {
        let at = format!("Variable \"${}\"", def.name);
        match provided.and_then(|p| p.get(&def.name)) {
            Some(value) => match coerce_input(value, &def.ty, schema, &at) {
                Ok(v) => {
                    coerced.insert(def.name.clone(), v);
                }
                Err(message) => errors.push((
                    format!("{message} (got invalid value {})", describe(value)),
                    def.location,
                )),
            },
            None => {
                if let Some(default) = &def.default {
                    let value = literal_to_json(default, &Map::new()).unwrap_or(Value::Null);
                    match coerce_input(&value, &def.ty, schema, &at) {
                        Ok(v) => {
                            coerced.insert(def.name.clone(), v);
                        }
                        Err(message) => errors.push((message, def.location)),
                    }
                } else if def.ty.is_non_null() {
                    errors.push((
                        format!(
                            "Variable \"${}\" of required type \"{}\" was not provided.",
                            def.name, def.ty
                        ),
                        def.location,
                    ));
                }
            }
        }
    }
    if errors.is_empty() {
        Ok(coerced)
    } else {
        Err(errors)
    }
}
