//! Python values ↔ JSON values, faithfully: `bool` stays `bool` (it is checked before
//! `int`), integers stay integers, and everything JSON has no type for (datetime, date,
//! UUID, Decimal, Enum, dataclasses, pydantic models, sets) goes through the Python
//! package's `default` hook (`fraiseql_subscriptions.subscriptions._json.to_jsonable`), which returns a
//! JSON-able stand-in or raises a `TypeError` naming the type.

use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBool, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple};
use serde_json::{Map, Number, Value};

/// The deepest nesting converted; deeper (or cyclic) values raise `ValueError`.
const MAX_DEPTH: usize = 128;

/// The `default` hook for non-JSON types (installed by the Python package).
static DEFAULT_HOOK: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

/// Installs the hook `py_to_value` calls for values JSON has no type for.
#[pyfunction]
pub(crate) fn set_json_default(py: Python<'_>, hook: Py<PyAny>) -> PyResult<()> {
    if !hook.bind(py).is_callable() {
        return Err(PyTypeError::new_err(
            "the JSON default hook must be callable",
        ));
    }
    // A second call (a re-imported package) keeps the first hook: both are the same code.
    let _ = DEFAULT_HOOK.set(py, hook);
    Ok(())
}

/// Converts a Python value to JSON.
///
/// # Errors
/// `TypeError` for a value that has no JSON form (naming its type), `ValueError` for NaN or
/// infinity, an integer beyond 64 bits, or nesting deeper than 128 levels.
pub(crate) fn py_to_value(obj: &Bound<'_, PyAny>) -> PyResult<Value> {
    to_value(obj, 0)
}

fn to_value(obj: &Bound<'_, PyAny>, depth: usize) -> PyResult<Value> {
    if depth > MAX_DEPTH {
        return Err(PyValueError::new_err(format!(
            "the value is nested more than {MAX_DEPTH} levels deep (or refers to itself)"
        )));
    }
    if obj.is_none() {
        return Ok(Value::Null);
    }
    // bool before int: True is an int in Python, and must stay `true`.
    if let Ok(b) = obj.cast_exact::<PyBool>() {
        return Ok(Value::Bool(b.is_true()));
    }
    if let Ok(s) = obj.cast::<PyString>() {
        return Ok(Value::String(s.to_str()?.to_owned()));
    }
    if obj.cast_exact::<PyInt>().is_ok() {
        return int_to_value(obj);
    }
    if let Ok(f) = obj.cast_exact::<PyFloat>() {
        return float_to_value(f.value());
    }
    if let Ok(dict) = obj.cast::<PyDict>() {
        let mut map = Map::with_capacity(dict.len());
        for (key, value) in dict.iter() {
            map.insert(key_to_string(&key)?, to_value(&value, depth + 1)?);
        }
        return Ok(Value::Object(map));
    }
    if let Ok(list) = obj.cast::<PyList>() {
        let mut out = Vec::with_capacity(list.len());
        for item in list.iter() {
            out.push(to_value(&item, depth + 1)?);
        }
        return Ok(Value::Array(out));
    }
    if let Ok(tuple) = obj.cast::<PyTuple>() {
        let mut out = Vec::with_capacity(tuple.len());
        for item in tuple.iter() {
            out.push(to_value(&item, depth + 1)?);
        }
        return Ok(Value::Array(out));
    }
    // Subclasses of bool cannot exist; of int (IntEnum) and float: through the hook, so an
    // IntEnum becomes its value the way every Enum does.
    let py = obj.py();
    let Some(hook) = DEFAULT_HOOK.get(py) else {
        return Err(unsupported(obj));
    };
    let replacement = hook.bind(py).call1((obj,))?;
    if replacement.is(obj) {
        return Err(unsupported(obj));
    }
    to_value(&replacement, depth + 1)
}

fn int_to_value(obj: &Bound<'_, PyAny>) -> PyResult<Value> {
    if let Ok(i) = obj.extract::<i64>() {
        return Ok(Value::Number(i.into()));
    }
    if let Ok(u) = obj.extract::<u64>() {
        return Ok(Value::Number(u.into()));
    }
    Err(PyValueError::new_err(format!(
        "the integer {} does not fit in 64 bits; send it as a string",
        obj.str()?
    )))
}

fn float_to_value(f: f64) -> PyResult<Value> {
    Number::from_f64(f).map(Value::Number).ok_or_else(|| {
        PyValueError::new_err(format!(
            "{f} is not a JSON number (NaN and infinity are not)"
        ))
    })
}

/// Object keys the way `json.dumps` takes them: strings, and numbers, bools and None as
/// their JSON text.
fn key_to_string(key: &Bound<'_, PyAny>) -> PyResult<String> {
    if let Ok(s) = key.cast::<PyString>() {
        return Ok(s.to_str()?.to_owned());
    }
    if key.is_none() {
        return Ok("null".to_owned());
    }
    if let Ok(b) = key.cast_exact::<PyBool>() {
        return Ok(if b.is_true() { "true" } else { "false" }.to_owned());
    }
    if key.cast::<PyInt>().is_ok() || key.cast::<PyFloat>().is_ok() {
        return Ok(key.str()?.to_str()?.to_owned());
    }
    Err(PyTypeError::new_err(format!(
        "dictionary keys must be str, int, float, bool or None, not {}",
        type_name(key)
    )))
}

fn unsupported(obj: &Bound<'_, PyAny>) -> PyErr {
    PyTypeError::new_err(format!(
        "Object of type {} is not JSON serializable: return dicts, lists, str, int, float, \
         bool, None, or a datetime, date, UUID, Decimal, Enum, dataclass or pydantic model",
        type_name(obj)
    ))
}

fn type_name(obj: &Bound<'_, PyAny>) -> String {
    obj.get_type()
        .name()
        .map_or_else(|_| "?".to_owned(), |n| n.to_string())
}

/// Converts JSON to Python (dict, list, str, int, float, bool, None).
///
/// # Errors
/// Only when Python cannot allocate.
pub(crate) fn value_to_py<'py>(py: Python<'py>, value: &Value) -> PyResult<Bound<'py, PyAny>> {
    Ok(match value {
        Value::Null => py.None().into_bound(py),
        Value::Bool(b) => PyBool::new(py, *b).to_owned().into_any(),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                i.into_pyobject(py)?.into_any()
            } else if let Some(u) = n.as_u64() {
                u.into_pyobject(py)?.into_any()
            } else {
                n.as_f64().unwrap_or(f64::NAN).into_pyobject(py)?.into_any()
            }
        }
        Value::String(s) => PyString::new(py, s).into_any(),
        Value::Array(items) => {
            let list = PyList::empty(py);
            for item in items {
                list.append(value_to_py(py, item)?)?;
            }
            list.into_any()
        }
        Value::Object(map) => map_to_py(py, map)?.into_any(),
    })
}

/// Converts a JSON object to a Python dict.
///
/// # Errors
/// Only when Python cannot allocate.
pub(crate) fn map_to_py<'py>(
    py: Python<'py>,
    map: &Map<String, Value>,
) -> PyResult<Bound<'py, PyDict>> {
    let dict = PyDict::new(py);
    for (key, value) in map {
        dict.set_item(key, value_to_py(py, value)?)?;
    }
    Ok(dict)
}

/// A Python mapping (or None) as a JSON object.
///
/// # Errors
/// `TypeError` when `obj` is not a dict (naming `what`), or a conversion error.
pub(crate) fn py_to_object(
    obj: Option<&Bound<'_, PyAny>>,
    what: &str,
) -> PyResult<Option<Map<String, Value>>> {
    let Some(obj) = obj.filter(|o| !o.is_none()) else {
        return Ok(None);
    };
    match py_to_value(obj)? {
        Value::Object(map) => Ok(Some(map)),
        other => Err(PyTypeError::new_err(format!(
            "{what} must be a dict, not {}",
            json_type(&other)
        ))),
    }
}

/// The JSON type's name, for messages.
pub(crate) fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "None",
        Value::Bool(_) => "bool",
        Value::Number(_) => "a number",
        Value::String(_) => "str",
        Value::Array(_) => "a list",
        Value::Object(_) => "a dict",
    }
}
