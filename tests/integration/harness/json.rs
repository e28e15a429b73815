//! Reading rasen's JSON state files and fake-claude's lines in tests:
//! parse with miniserde, then pick values by a dotted path.

use miniserde::json::{Number, Value};

/// Parses `text`; panics naming `what` and showing the text if it is not JSON.
pub fn parse_json(text: &str, what: &str) -> Value {
    miniserde::json::from_str(text).unwrap_or_else(|_| panic!("{what} is not valid JSON:\n{text}"))
}

/// The value at a dotted path: "status", "subtasks.0.id" (numbers index
/// arrays); "" is `v` itself.
pub fn get<'a>(v: &'a Value, path: &str) -> Option<&'a Value> {
    if path.is_empty() {
        return Some(v);
    }
    path.split('.').try_fold(v, |v, key| match v {
        Value::Object(map) => map.get(key),
        Value::Array(items) => items.get(key.parse::<usize>().ok()?),
        _ => None,
    })
}

pub fn get_str<'a>(v: &'a Value, path: &str) -> Option<&'a str> {
    let Value::String(s) = get(v, path)? else { return None };
    Some(s)
}

pub fn get_u64(v: &Value, path: &str) -> Option<u64> {
    match get(v, path)? {
        Value::Number(Number::U64(n)) => Some(*n),
        Value::Number(Number::I64(n)) => u64::try_from(*n).ok(),
        _ => None,
    }
}

pub fn get_f64(v: &Value, path: &str) -> Option<f64> {
    match get(v, path)? {
        Value::Number(Number::U64(n)) => Some(*n as f64),
        Value::Number(Number::I64(n)) => Some(*n as f64),
        Value::Number(Number::F64(n)) => Some(*n),
        _ => None,
    }
}

pub fn get_bool(v: &Value, path: &str) -> Option<bool> {
    let Value::Bool(b) = get(v, path)? else { return None };
    Some(*b)
}

pub fn get_array<'a>(v: &'a Value, path: &str) -> Option<&'a [Value]> {
    let Value::Array(items) = get(v, path)? else { return None };
    Some(items)
}
