//! Pretty JSON in the order the struct declares its fields, so that people
//! can read and diff state files. miniserde's own `json::Value` keeps
//! objects in a BTreeMap (sorted keys), so this walks miniserde's
//! `ser::Fragment` stream directly instead. It never writes a non-finite
//! float (JSON has none, and miniserde would write `null` and then fail to
//! read it back): those become 0.

use std::fmt::Write as _;

use miniserde::ser::{Fragment, Map, Seq, Serialize};

/// Lists of plain values up to this many characters stay on one line.
const INLINE_LIST_WIDTH: usize = 72;

/// `value` as JSON: 2-space indentation, fields in declaration order, one
/// trailing newline.
pub fn to_pretty_json(value: &dyn Serialize) -> String {
    let mut out = String::new();
    write_value(value.begin(), 0, &mut out);
    out.push('\n');
    out
}

/// Writes one value; returns whether it was a plain value (not a list or
/// object), which decides whether a list of them may stay on one line.
fn write_value(fragment: Fragment, depth: usize, out: &mut String) -> bool {
    match fragment {
        Fragment::Null => out.push_str("null"),
        Fragment::Bool(b) => out.push_str(if b { "true" } else { "false" }),
        Fragment::Str(s) => write_string(&s, out),
        Fragment::U64(n) => push_display(out, n),
        Fragment::I64(n) => push_display(out, n),
        Fragment::F64(n) => write_float(n, out),
        Fragment::Seq(seq) => {
            write_list(seq, depth, out);
            return false;
        }
        Fragment::Map(map) => {
            write_object(map, depth, out);
            return false;
        }
    }
    true
}

fn write_list(mut seq: Box<dyn Seq + '_>, depth: usize, out: &mut String) {
    let mut items = Vec::new();
    let mut all_plain = true;
    while let Some(element) = seq.next() {
        let mut item = String::new();
        all_plain &= write_value(element.begin(), depth + 1, &mut item);
        items.push(item);
    }
    let inline_width: usize = items.iter().map(|item| item.len() + 2).sum();
    if items.is_empty() {
        out.push_str("[]");
    } else if all_plain && inline_width <= INLINE_LIST_WIDTH {
        out.push('[');
        out.push_str(&items.join(", "));
        out.push(']');
    } else {
        out.push('[');
        for (i, item) in items.iter().enumerate() {
            out.push_str(if i == 0 { "\n" } else { ",\n" });
            indent(depth + 1, out);
            out.push_str(item);
        }
        out.push('\n');
        indent(depth, out);
        out.push(']');
    }
}

fn write_object(mut map: Box<dyn Map + '_>, depth: usize, out: &mut String) {
    let mut empty = true;
    while let Some((key, value)) = map.next() {
        out.push_str(if empty { "{\n" } else { ",\n" });
        empty = false;
        indent(depth + 1, out);
        write_string(&key, out);
        out.push_str(": ");
        write_value(value.begin(), depth + 1, out);
    }
    if empty {
        out.push_str("{}");
    } else {
        out.push('\n');
        indent(depth, out);
        out.push('}');
    }
}

fn indent(depth: usize, out: &mut String) {
    for _ in 0..depth {
        out.push_str("  ");
    }
}

fn push_display(out: &mut String, value: impl std::fmt::Display) {
    let _ = write!(out, "{value}");
}

/// Finite floats in Rust's shortest round-trip form (`812.4`, `0.0`,
/// `1e300`: all valid JSON numbers); anything else as 0.
fn write_float(n: f64, out: &mut String) {
    if n.is_finite() {
        let _ = write!(out, "{n:?}");
    } else {
        out.push('0');
    }
}

/// A JSON string: quotes, backslashes and every control character escaped
/// (the common ones by name, the rest as `\u00XX`), C1 (U+0080..U+009F)
/// included: JSON does not require it, but a terminal showing
/// `rasen status --json` may take one as an escape sequence.
fn write_string(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use miniserde::{Deserialize, Serialize};

    #[derive(Serialize, Deserialize, Debug, PartialEq)]
    struct Inner {
        name: String,
        tags: Vec<String>,
    }

    #[derive(Serialize, Deserialize, Debug, PartialEq)]
    struct Outer {
        zebra: u64,
        apple: Option<i32>,
        ratio: f64,
        inner: Vec<Inner>,
        empty: Vec<Inner>,
    }

    #[test]
    fn keeps_field_order_and_indents_by_two() {
        let value = Outer {
            zebra: 1,
            apple: None,
            ratio: 812.4,
            inner: vec![Inner { name: "a".into(), tags: vec!["x".into(), "y".into()] }],
            empty: vec![],
        };
        let expected = r#"{
  "zebra": 1,
  "apple": null,
  "ratio": 812.4,
  "inner": [
    {
      "name": "a",
      "tags": ["x", "y"]
    }
  ],
  "empty": []
}
"#;
        assert_eq!(to_pretty_json(&value), expected);
        let back: Outer = miniserde::json::from_str(expected).unwrap();
        assert_eq!(back, value);
    }

    #[test]
    fn writes_non_finite_floats_as_zero() {
        for n in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            assert_eq!(to_pretty_json(&n), "0\n");
        }
        assert_eq!(to_pretty_json(&0.0f64), "0.0\n");
        assert_eq!(to_pretty_json(&1e300f64), "1e300\n");
    }

    #[test]
    fn escapes_strings_so_they_read_back() {
        let text = "quote \" backslash \\ newline \n tab \t bell \u{7} del \u{7f} csi \u{9b} é 😀"
            .to_string();
        let json = to_pretty_json(&text);
        assert_eq!(
            json,
            "\"quote \\\" backslash \\\\ newline \\n tab \\t bell \\u0007 del \\u007f csi \\u009b é 😀\"\n"
        );
        let back: String = miniserde::json::from_str(&json).unwrap();
        assert_eq!(back, text);
    }

    #[test]
    fn breaks_long_lists_one_item_per_line() {
        let long: Vec<String> = (0..10).map(|i| format!("src/module_number_{i}.rs")).collect();
        let json = to_pretty_json(&long);
        assert_eq!(json.lines().count(), 12);
        assert!(json.starts_with("[\n  \"src/module_number_0.rs\",\n"));
    }
}
