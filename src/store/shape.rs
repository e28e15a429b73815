//! Names what is wrong with a state file that is valid JSON but not the
//! shape rasen expects: a missing field, a value of the wrong type, a word
//! that is not one of the allowed ones. miniserde only says "error", so each
//! model describes its fields here (`StateFile::check_shape`) and this finds
//! the first one that does not fit. It only reads; it never repairs.

use miniserde::json::{Array, Number, Object, Value};

/// What a field must hold.
#[derive(Debug, Clone, Copy)]
pub enum Kind {
    /// A string.
    Text,
    /// An integer from 0 to u64::MAX.
    Count,
    /// An integer from 0 to u32::MAX.
    SmallCount,
    /// An integer that fits an i32 (a process id).
    Pid,
    /// Any number.
    Number,
    /// A list of strings.
    TextList,
    /// One of these strings.
    OneOf(&'static [&'static str]),
}

/// The fields of one JSON object, with a label for messages: "" for the
/// file's top level, or e.g. `subtask 3 ("auth-3")`.
pub struct Fields<'a> {
    object: &'a Object,
    label: String,
}

impl<'a> Fields<'a> {
    /// The top-level object of a file.
    pub fn top(value: &'a Value) -> Result<Fields<'a>, String> {
        match value {
            Value::Object(object) => Ok(Fields { object, label: String::new() }),
            other => Err(format!("the file must hold a JSON object, found {}", describe(other))),
        }
    }

    /// A nested object, called `label` in messages (e.g. `subtask 3`).
    pub fn nested(value: &'a Value, label: String) -> Result<Fields<'a>, String> {
        match value {
            Value::Object(object) => Ok(Fields { object, label }),
            other => Err(format!("{label} must be an object, found {}", describe(other))),
        }
    }

    /// Adds the value of the string field `name`, when there is one, to the
    /// label: `subtask 3` becomes `subtask 3 ("auth-3")`.
    pub fn named_by(mut self, name: &str) -> Fields<'a> {
        if let Some(Value::String(id)) = self.object.get(name) {
            self.label = format!("{} ({id:?})", self.label);
        }
        self
    }

    /// The field must be present and hold `kind`.
    pub fn required(&self, name: &str, kind: Kind) -> Result<(), String> {
        match self.object.get(name) {
            None => Err(self.missing(name)),
            Some(value) => self.check(name, value, kind),
        }
    }

    /// The field may be absent or null; otherwise it must hold `kind`.
    pub fn optional(&self, name: &str, kind: Kind) -> Result<(), String> {
        match self.object.get(name) {
            None | Some(Value::Null) => Ok(()),
            Some(value) => self.check(name, value, kind),
        }
    }

    /// The field must be present and hold a list; returns its items.
    pub fn required_list(&self, name: &str) -> Result<&'a Array, String> {
        match self.object.get(name) {
            None => Err(self.missing(name)),
            Some(Value::Array(items)) => Ok(items),
            Some(other) => Err(self.wrong(name, "a list", other)),
        }
    }

    fn check(&self, name: &str, value: &Value, kind: Kind) -> Result<(), String> {
        match kind {
            Kind::OneOf(allowed) => self.check_one_of(name, value, allowed),
            Kind::TextList => self.check_text_list(name, value),
            _ if fits(value, kind) => Ok(()),
            _ => Err(self.wrong(name, expectation(kind), value)),
        }
    }

    fn check_one_of(&self, name: &str, value: &Value, allowed: &[&str]) -> Result<(), String> {
        let list = allowed.join(", ");
        match value {
            Value::String(word) if allowed.contains(&word.as_str()) => Ok(()),
            Value::String(word) => {
                Err(format!("{}{name} {word:?} is not one of {list}", self.prefix()))
            }
            other => Err(format!(
                "{}{name} must be one of {list}, found {}",
                self.prefix(),
                describe(other)
            )),
        }
    }

    fn check_text_list(&self, name: &str, value: &Value) -> Result<(), String> {
        let Value::Array(items) = value else {
            return Err(self.wrong(name, "a list of strings", value));
        };
        match items.iter().position(|item| !matches!(item, Value::String(_))) {
            None => Ok(()),
            Some(i) => Err(format!(
                "{}{name:?} must be a list of strings, but item {} is {}",
                self.prefix(),
                i + 1,
                describe(&items[i])
            )),
        }
    }

    fn missing(&self, name: &str) -> String {
        format!("{}missing field {name:?}", self.prefix())
    }

    fn wrong(&self, name: &str, expected: &str, found: &Value) -> String {
        format!("{}{name:?} must be {expected}, found {}", self.prefix(), describe(found))
    }

    fn prefix(&self) -> String {
        if self.label.is_empty() {
            String::new()
        } else {
            format!("{}: ", self.label)
        }
    }
}

fn fits(value: &Value, kind: Kind) -> bool {
    match (kind, value) {
        (Kind::Text, Value::String(_)) => true,
        (Kind::Count, Value::Number(Number::U64(_))) => true,
        (Kind::SmallCount, Value::Number(Number::U64(n))) => *n <= u64::from(u32::MAX),
        (Kind::Pid, Value::Number(Number::U64(n))) => *n <= i32::MAX as u64,
        (Kind::Pid, Value::Number(Number::I64(n))) => *n >= i64::from(i32::MIN),
        (Kind::Number, Value::Number(_)) => true,
        _ => false,
    }
}

fn expectation(kind: Kind) -> &'static str {
    match kind {
        Kind::Text => "a string",
        Kind::Count => "a whole number, 0 or more",
        Kind::SmallCount => "a whole number from 0 to 4294967295",
        Kind::Pid => "a process id (a whole number)",
        Kind::Number => "a number",
        Kind::TextList => "a list of strings",
        Kind::OneOf(_) => "one of the allowed words",
    }
}

/// A short description of a JSON value for "found …".
pub fn describe(value: &Value) -> String {
    match value {
        Value::Null => "null".to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) if s.chars().count() > 40 => {
            let head: String = s.chars().take(40).collect();
            format!("{head:?}…")
        }
        Value::String(s) => format!("{s:?}"),
        Value::Array(_) => "a list".to_string(),
        Value::Object(_) => "an object".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(json: &str) -> Value {
        miniserde::json::from_str(json).unwrap()
    }

    #[test]
    fn names_the_missing_field_and_the_object() {
        let v = value(r#"{"id": "auth-3"}"#);
        let fields = Fields::nested(&v, "subtask 3".into()).unwrap().named_by("id");
        assert_eq!(
            fields.required("description", Kind::Text),
            Err("subtask 3 (\"auth-3\"): missing field \"description\"".to_string())
        );
        let top = value("{}");
        assert_eq!(
            Fields::top(&top).unwrap().required_list("subtasks").err(),
            Some("missing field \"subtasks\"".to_string())
        );
    }

    #[test]
    fn names_wrong_types_and_words() {
        let v = value(r#"{"a": "two", "b": -1, "c": "done", "d": ["x", 2], "e": null, "f": 1.5}"#);
        let f = Fields::top(&v).unwrap();
        assert_eq!(
            f.required("a", Kind::Count).unwrap_err(),
            "\"a\" must be a whole number, 0 or more, found \"two\""
        );
        assert!(f.required("b", Kind::SmallCount).is_err());
        assert!(f.required("b", Kind::Pid).is_ok());
        assert_eq!(
            f.required("c", Kind::OneOf(&["pending", "failed"])).unwrap_err(),
            "c \"done\" is not one of pending, failed"
        );
        assert_eq!(
            f.optional("d", Kind::TextList).unwrap_err(),
            "\"d\" must be a list of strings, but item 2 is 2"
        );
        assert!(f.optional("e", Kind::Text).is_ok());
        assert!(f.required("e", Kind::Text).is_err());
        assert!(f.optional("missing", Kind::Text).is_ok());
        assert!(f.required("f", Kind::Number).is_ok());
        assert!(f.required("f", Kind::Count).is_err());
    }

    #[test]
    fn rejects_a_top_level_that_is_not_an_object() {
        let v = value("[1]");
        assert_eq!(
            Fields::top(&v).err(),
            Some("the file must hold a JSON object, found a list".to_string())
        );
    }
}
