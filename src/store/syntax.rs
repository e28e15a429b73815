//! A JSON syntax checker whose only job is to say where a file stops being
//! JSON, and why, because miniserde's own error carries no detail. It runs
//! only after miniserde has rejected a file, so it never decides on its own
//! whether a file is accepted. It builds nothing; asked, it also finds the
//! first field name written twice in one object, which miniserde accepts or
//! rejects depending on the first value's type, and which is otherwise
//! invisible in the parsed tree (the last one wins there).

use std::collections::HashMap;

/// The first syntax error in a text: 1-based line and column (in characters)
/// and what is wrong there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError {
    pub line: usize,
    pub column: usize,
    pub what: String,
}

/// Deeper nesting than any rasen state file needs; the limit keeps this
/// recursive checker's stack small whatever the file holds.
const MAX_DEPTH: usize = 256;

/// Checks that `text` is exactly one JSON value (RFC 8259), surrounded by
/// whitespace at most. Returns the first error.
pub fn check(text: &str) -> Result<(), SyntaxError> {
    Checker::new(text, false).document()
}

/// The first field name that appears a second time in the same object of
/// `text`, at that second place; `None` when there is none (or `text` is
/// not JSON: `check` says why).
pub fn first_duplicate_field(text: &str) -> Option<SyntaxError> {
    let mut checker = Checker::new(text, true);
    checker.document().ok()?;
    checker.duplicate
}

struct Checker<'a> {
    text: &'a str,
    bytes: &'a [u8],
    pos: usize,
    depth: usize,
    /// Whether to look for a field name written twice in one object.
    find_duplicates: bool,
    duplicate: Option<SyntaxError>,
}

type Checked = Result<(), SyntaxError>;

impl Checker<'_> {
    fn new(text: &str, find_duplicates: bool) -> Checker<'_> {
        Checker { text, bytes: text.as_bytes(), pos: 0, depth: 0, find_duplicates, duplicate: None }
    }

    fn document(&mut self) -> Checked {
        self.skip_whitespace();
        if self.peek().is_none() {
            return self.error_at(0, "the file is empty".to_string());
        }
        self.value()?;
        self.skip_whitespace();
        match self.peek() {
            None => Ok(()),
            Some(_) => {
                let found = self.describe_here();
                self.error(format!("unexpected {found} after the end of the JSON value"))
            }
        }
    }

    fn value(&mut self) -> Checked {
        self.skip_whitespace();
        match self.peek() {
            None => self.error(
                "unexpected end of file where a value was expected (the file looks truncated)"
                    .to_string(),
            ),
            Some(b'{') => self.object(),
            Some(b'[') => self.array(),
            Some(b'"') => self.string(),
            Some(b'-' | b'0'..=b'9') => self.number(),
            Some(b't' | b'f' | b'n') => self.literal(),
            Some(_) => {
                let found = self.describe_here();
                self.error(format!("expected a value, found {found}"))
            }
        }
    }

    fn object(&mut self) -> Checked {
        self.enter()?;
        self.pos += 1; // '{'
        self.skip_whitespace();
        if self.peek() == Some(b'}') {
            self.pos += 1;
            return self.leave();
        }
        let mut names = HashMap::new();
        loop {
            self.skip_whitespace();
            match self.peek() {
                Some(b'"') => {
                    let start = self.pos;
                    self.string()?;
                    self.note_field_name(start, &mut names);
                }
                None => return self.truncated("an object"),
                Some(_) => {
                    let found = self.describe_here();
                    return self
                        .error(format!("expected a field name in double quotes, found {found}"));
                }
            }
            self.skip_whitespace();
            match self.peek() {
                Some(b':') => self.pos += 1,
                None => return self.truncated("an object"),
                Some(_) => {
                    let found = self.describe_here();
                    return self.error(format!("expected ':' after the field name, found {found}"));
                }
            }
            self.value()?;
            if self.end_of_item(b'}', "an object", "a field")? {
                return self.leave();
            }
        }
    }

    /// Remembers the field name that starts at `start` (and ends here);
    /// the first one seen twice is kept as `duplicate`.
    fn note_field_name(&mut self, start: usize, names: &mut HashMap<String, usize>) {
        if !self.find_duplicates || self.duplicate.is_some() {
            return;
        }
        let Ok(name) = miniserde::json::from_str::<String>(&self.text[start..self.pos]) else {
            return;
        };
        match names.get(&name) {
            Some(&first) => {
                let (line, column) = line_and_column(self.bytes, first);
                let what = format!(
                    "field {name:?} appears twice in one object (first at line {line}, column \
                     {column}); keep one"
                );
                self.duplicate = Some(self.located(start, what));
            }
            None => drop(names.insert(name, start)),
        }
    }

    fn array(&mut self) -> Checked {
        self.enter()?;
        self.pos += 1; // '['
        self.skip_whitespace();
        if self.peek() == Some(b']') {
            self.pos += 1;
            return self.leave();
        }
        loop {
            self.value()?;
            if self.end_of_item(b']', "a list", "an item")? {
                return self.leave();
            }
        }
    }

    /// After a field of an object or an item of a list: a comma (not
    /// followed by `close`) means another comes (`false`); `close` ends the
    /// container (`true`); anything else is an error naming what was found.
    fn end_of_item(&mut self, close: u8, container: &str, item: &str) -> Result<bool, SyntaxError> {
        let close_char = char::from(close);
        self.skip_whitespace();
        match self.peek() {
            Some(b',') => {
                let comma = self.pos;
                self.pos += 1;
                self.skip_whitespace();
                if self.peek() == Some(close) {
                    self.error_at(comma, format!("trailing comma before '{close_char}'"))?;
                }
                Ok(false)
            }
            Some(c) if c == close => {
                self.pos += 1;
                Ok(true)
            }
            None => self.truncated(container).map(|()| false),
            Some(_) => {
                let found = self.describe_here();
                self.error(format!("expected ',' or '{close_char}' after {item}, found {found}"))
                    .map(|()| false)
            }
        }
    }

    fn string(&mut self) -> Checked {
        let start = self.pos;
        self.pos += 1; // '"'
        loop {
            match self.peek() {
                None => {
                    return self.error_at(
                        start,
                        "unterminated string (the file ends inside it)".to_string(),
                    )
                }
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(());
                }
                Some(b'\\') => self.escape()?,
                Some(b'\n') => {
                    return self.error_at(
                        start,
                        "unterminated string (it runs to the end of the line)".to_string(),
                    )
                }
                Some(byte @ 0..=0x1f) => {
                    return self.error(format!(
                        "control character U+{byte:04X} inside a string; write it as \\u{byte:04x}"
                    ))
                }
                // Any other byte, including the parts of a multi-byte
                // character: the text is valid UTF-8 already.
                Some(_) => self.pos += 1,
            }
        }
    }

    fn escape(&mut self) -> Checked {
        let start = self.pos;
        self.pos += 1; // '\'
        match self.peek() {
            Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => {
                self.pos += 1;
                Ok(())
            }
            Some(b'u') => self.unicode_escape(start),
            None => {
                self.error_at(start, "unterminated string (the file ends inside it)".to_string())
            }
            Some(_) => {
                let found = self.describe_here();
                self.error_at(start, format!("invalid escape: backslash followed by {found}"))
            }
        }
    }

    /// `\uXXXX`, where a UTF-16 high surrogate must be followed by a low one.
    fn unicode_escape(&mut self, start: usize) -> Checked {
        self.pos += 1; // 'u'
        let first = self.hex4(start)?;
        match first {
            0xDC00..=0xDFFF => {
                self.error_at(start, "invalid \\u escape: lone low surrogate".into())
            }
            0xD800..=0xDBFF => {
                if self.bytes.get(self.pos..self.pos + 2) != Some(b"\\u") {
                    return self.error_at(start, "invalid \\u escape: lone high surrogate".into());
                }
                self.pos += 2;
                match self.hex4(start)? {
                    0xDC00..=0xDFFF => Ok(()),
                    _ => self.error_at(start, "invalid \\u escape: lone high surrogate".into()),
                }
            }
            _ => Ok(()),
        }
    }

    fn hex4(&mut self, start: usize) -> Result<u16, SyntaxError> {
        let digits =
            self.bytes.get(self.pos..self.pos + 4).and_then(|d| std::str::from_utf8(d).ok());
        match digits.map(|d| (d, u16::from_str_radix(d, 16))) {
            Some((d, Ok(n))) if d.bytes().all(|b| b.is_ascii_hexdigit()) => {
                self.pos += 4;
                Ok(n)
            }
            _ => Err(self.located(start, "invalid \\u escape: expected 4 hex digits".into())),
        }
    }

    /// `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`, finite.
    fn number(&mut self) -> Checked {
        let start = self.pos;
        if self.peek() == Some(b'-') {
            self.pos += 1;
        }
        match self.peek() {
            Some(b'0') => {
                self.pos += 1;
                if matches!(self.peek(), Some(b'0'..=b'9')) {
                    return self.error_at(start, "invalid number: leading zero".into());
                }
            }
            Some(b'1'..=b'9') => self.skip_digits(),
            _ => return self.error_at(start, "invalid number: '-' without digits".into()),
        }
        if self.peek() == Some(b'.') {
            self.pos += 1;
            if !matches!(self.peek(), Some(b'0'..=b'9')) {
                return self.error_at(start, "invalid number: no digits after '.'".into());
            }
            self.skip_digits();
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.pos += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.pos += 1;
            }
            if !matches!(self.peek(), Some(b'0'..=b'9')) {
                return self.error_at(start, "invalid number: no digits in the exponent".into());
            }
            self.skip_digits();
        }
        match self.text[start..self.pos].parse::<f64>() {
            Ok(n) if n.is_finite() => Ok(()),
            _ => self.error_at(start, "number out of range".into()),
        }
    }

    fn skip_digits(&mut self) {
        while matches!(self.peek(), Some(b'0'..=b'9')) {
            self.pos += 1;
        }
    }

    fn literal(&mut self) -> Checked {
        for word in ["true", "false", "null"] {
            if self.text[self.pos..].starts_with(word) {
                self.pos += word.len();
                return Ok(());
            }
        }
        let found = self.describe_here();
        self.error(format!("expected a value, found {found}"))
    }

    fn enter(&mut self) -> Checked {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return self.error(format!("nested more than {MAX_DEPTH} levels deep"));
        }
        Ok(())
    }

    fn leave(&mut self) -> Checked {
        self.depth -= 1;
        Ok(())
    }

    fn skip_whitespace(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.pos += 1;
        }
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    /// What is at the current position, for "found …": a word when it is
    /// one (`NaN`, `True`, `undefined`), else the character.
    fn describe_here(&self) -> String {
        let rest = &self.text[self.pos..];
        let word: String = rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
        if word.chars().count() > 1 {
            let word: String = word.chars().take(20).collect();
            return format!("`{word}`");
        }
        match rest.chars().next() {
            None => "the end of the file".to_string(),
            Some(c) if c.is_control() || c == '\u{feff}' => format!("U+{:04X}", c as u32),
            Some(c) => format!("'{c}'"),
        }
    }

    fn truncated(&self, inside: &str) -> Checked {
        self.error(format!("unexpected end of file inside {inside} (the file looks truncated)"))
    }

    fn error(&self, what: String) -> Checked {
        self.error_at(self.pos, what)
    }

    fn error_at(&self, offset: usize, what: String) -> Checked {
        Err(self.located(offset, what))
    }

    fn located(&self, offset: usize, what: String) -> SyntaxError {
        let (line, column) = line_and_column(self.bytes, offset);
        SyntaxError { line, column, what }
    }
}

/// The 1-based line and column (counted in characters) of byte `offset`.
pub fn line_and_column(bytes: &[u8], offset: usize) -> (usize, usize) {
    let before = &bytes[..offset.min(bytes.len())];
    let line_start = before.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
    // Count characters, not bytes: continuation bytes (10xxxxxx) are skipped.
    let column = before[line_start..].iter().filter(|&&b| b & 0xC0 != 0x80).count() + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error_of(text: &str) -> (usize, usize, String) {
        let e = check(text).expect_err("should be rejected");
        (e.line, e.column, e.what)
    }

    #[test]
    fn accepts_valid_json() {
        for text in [
            "{}",
            "[]",
            " {\"a\": [1, -2, 3.5e-3, 0, -0.0, true, false, null, \"x\\n\\u00e9\\ud83d\\ude00\"]} \n",
            "\"é\"",
            "{\"a\": {\"b\": {}}}",
        ] {
            assert_eq!(check(text), Ok(()), "{text}");
        }
    }

    #[test]
    fn reports_the_position_of_a_missing_comma() {
        let (line, column, what) = error_of("{\n  \"a\": 1\n  \"b\": 2\n}");
        assert_eq!((line, column), (3, 3));
        assert!(what.contains("expected ',' or '}'"), "{what}");
    }

    #[test]
    fn reports_a_trailing_comma_at_the_comma() {
        let (line, column, what) = error_of("{\"a\": [1, 2,]}");
        assert_eq!((line, column), (1, 12));
        assert_eq!(what, "trailing comma before ']'");
        let (line, column, what) = error_of("{\n \"a\": 1,\n}");
        assert_eq!((line, column), (2, 8));
        assert_eq!(what, "trailing comma before '}'");
    }

    #[test]
    fn reports_a_truncated_file() {
        let (line, _, what) = error_of("{\n \"subtasks\": [\n  {\"id\": \"a\"");
        assert_eq!(line, 3);
        assert!(what.contains("end of file inside an object"), "{what}");
        let (_, _, what) = error_of("[1, 2");
        assert!(what.contains("inside a list"), "{what}");
        assert_eq!(error_of("   ").2, "the file is empty");
    }

    #[test]
    fn reports_an_unterminated_string_at_its_start() {
        let (line, column, what) = error_of("{\"a\": \"abc");
        assert_eq!((line, column), (1, 7));
        assert!(what.contains("the file ends inside it"), "{what}");
        let (line, column, what) = error_of("{\"a\": \"abc\n}");
        assert_eq!((line, column), (1, 7));
        assert!(what.starts_with("unterminated string"), "{what}");
    }

    #[test]
    fn counts_columns_in_characters() {
        let (line, column, _) = error_of("{\"é\": x}");
        assert_eq!((line, column), (1, 7));
    }

    #[test]
    fn names_unexpected_words_and_characters() {
        assert_eq!(error_of("{\"a\": NaN}").2, "expected a value, found `NaN`");
        assert_eq!(error_of("{'a': 1}").2, "expected a field name in double quotes, found '''");
        assert_eq!(error_of("{\"a\": 1} x").2, "unexpected 'x' after the end of the JSON value");
        assert!(error_of("{\"a\": \"\t\"}").2.contains("U+0009"));
    }

    #[test]
    fn rejects_bad_numbers_and_escapes() {
        for text in
            ["01", "-", "1.", "1e", "1e400", "+1", ".5", "\"\\x\"", "\"\\u12\"", "\"\\udc00\""]
        {
            assert!(check(text).is_err(), "{text}");
        }
    }

    #[test]
    fn finds_a_field_written_twice_in_one_object() {
        let text = "{\"a\": 1, \"b\": {\"a\": 2}, \"\\u0061\": 3}";
        let e = first_duplicate_field(text).expect("a duplicate");
        assert_eq!((e.line, e.column), (1, 25));
        assert_eq!(
            e.what,
            "field \"a\" appears twice in one object (first at line 1, column 2); keep one"
        );
        assert_eq!(
            first_duplicate_field("{\"a\": {\"a\": 1}, \"b\": [{\"a\": 1}, {\"a\": 2}]}"),
            None
        );
        assert_eq!(first_duplicate_field("{\"a\": 1, \"a\""), None, "not JSON: check says why");
    }

    #[test]
    fn limits_nesting() {
        let deep = "[".repeat(MAX_DEPTH + 1);
        assert!(error_of(&deep).2.contains("levels deep"));
    }
}
