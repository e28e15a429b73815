//! The YAML-subset reader behind rasen.yml: text in, a tree of nodes out,
//! each node carrying the line and column (1-based, in characters) where it
//! was written, so that every later complaint can point at the exact spot.
//! It owns syntax only; what the keys mean is config.rs's business. It must
//! never guess: anything outside the subset is an error that names the
//! construct, never a silent reinterpretation.
//!
//! The subset: mappings nested by indentation (spaces only), `key: value`
//! scalars (plain, 'single-quoted' with '' for a quote, "double-quoted" with
//! \" \\ \n \t \uXXXX), `#` comments, block lists (`- item`) and flow lists
//! (`[a, "b c", 3]`) of scalars, empty values, and one optional leading `---`.
//!
//! How it reads: blank and comment-only lines are dropped first; every other
//! line is measured (indentation) and then parsed by recursive descent, where
//! a block is all the lines indented exactly as its first line. Each line is
//! one `key: value`, one `key:` opening a nested block, or one `- item`.

use crate::error::{Error, Result};

#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    pub value: Value,
    pub line: usize,
    pub col: usize,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// `key:` with nothing after it or below it (also a plain `null` or `~`).
    Null,
    /// The text as meant: quotes removed, escapes applied. `quoted` tells the
    /// string `"5"` from the integer `5`.
    Scalar {
        text: String,
        quoted: bool,
    },
    List(Vec<Node>),
    /// Entries in file order; keys are unique.
    Map(Vec<Entry>),
}

/// One `key: value` of a mapping; `line` and `col` are the key's.
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    pub key: String,
    pub line: usize,
    pub col: usize,
    pub value: Node,
}

/// Reads `text`; errors are config errors reading `FILE:LINE:COL: what`.
pub fn parse(text: &str, file_label: &str) -> Result<Node> {
    let parsed =
        content_lines(text).and_then(|lines| Parser { lines, pos: 0, depth: 0 }.document());
    parsed.map_err(|p| Error::config(format!("{file_label}:{}:{}: {}", p.line, p.col, p.message)))
}

impl Node {
    /// An integer written without quotes: `42`, `-7`, `+3`.
    pub fn as_int(&self) -> Option<i64> {
        let text = self.plain_text()?;
        let digits = text.strip_prefix(['-', '+']).unwrap_or(text);
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        text.parse().ok()
    }

    /// `true` or `false` written without quotes.
    pub fn as_bool(&self) -> Option<bool> {
        match self.plain_text()? {
            "true" | "True" | "TRUE" => Some(true),
            "false" | "False" | "FALSE" => Some(false),
            _ => None,
        }
    }

    /// What this node is, for "expected X, got Y" messages.
    pub fn describe(&self) -> String {
        match &self.value {
            Value::Null => "nothing".to_string(),
            Value::Scalar { text, quoted: false } => format!("{text:?}"),
            Value::Scalar { text, quoted: true } => format!("a quoted string {text:?}"),
            Value::List(_) => "a list".to_string(),
            Value::Map(_) => "a mapping".to_string(),
        }
    }

    fn plain_text(&self) -> Option<&str> {
        match &self.value {
            Value::Scalar { text, quoted: false } => Some(text),
            _ => None,
        }
    }
}

/// A syntax error; `parse` puts the file name in front.
struct Problem {
    line: usize,
    col: usize,
    message: String,
}

type Parsed<T> = std::result::Result<T, Problem>;

fn problem(line: usize, col: usize, message: impl Into<String>) -> Problem {
    Problem { line, col, message: message.into() }
}

/// A line that holds content. Characters, not bytes, so that an index plus
/// one is the column people see in their editor.
struct Line {
    number: usize,
    indent: usize,
    chars: Vec<char>,
}

/// Drops blank and comment-only lines (they never affect the structure),
/// rejects tabs in indentation and document markers other than a leading `---`.
fn content_lines(text: &str) -> Parsed<Vec<Line>> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut lines = Vec::new();
    let mut seen_start_marker = false;
    for (index, raw) in text.lines().enumerate() {
        let number = index + 1;
        let chars: Vec<char> = raw.chars().collect();
        let Some(indent) = chars.iter().position(|c| !is_blank(*c)) else { continue };
        if chars[indent] == '#' {
            continue;
        }
        if let Some(tab) = chars[..indent].iter().position(|c| *c == '\t') {
            return Err(problem(number, tab + 1, "tab in indentation; indent with spaces"));
        }
        if is_marker(&chars, "---") {
            if lines.is_empty() && !seen_start_marker {
                seen_start_marker = true;
                continue;
            }
            return Err(problem(number, 1, "only one document is supported; remove this `---`"));
        }
        if is_marker(&chars, "...") {
            return Err(problem(number, 1, "document end markers (`...`) are not supported"));
        }
        if chars[indent] == '%' {
            return Err(problem(number, indent + 1, "directives (`%`) are not supported"));
        }
        lines.push(Line { number, indent, chars });
    }
    Ok(lines)
}

/// `---` or `...` at the start of a line, alone but for a comment.
fn is_marker(chars: &[char], marker: &str) -> bool {
    let marker: Vec<char> = marker.chars().collect();
    chars.starts_with(&marker) && ends_here(chars, skip_blanks(chars, marker.len()))
}

/// Deeper nesting is refused rather than risking the stack on a hostile file.
const MAX_DEPTH: usize = 32;

struct Parser {
    lines: Vec<Line>,
    pos: usize,
    depth: usize,
}

impl Parser {
    fn document(mut self) -> Parsed<Node> {
        let Some(first) = self.lines.first() else {
            return Ok(Node { value: Value::Map(Vec::new()), line: 1, col: 1 });
        };
        let root = self.block(first.indent)?;
        match self.lines.get(self.pos) {
            Some(line) => Err(bad_indentation(line)),
            None => Ok(root),
        }
    }

    /// The mapping or list made of the lines indented by exactly `indent`.
    fn block(&mut self, indent: usize) -> Parsed<Node> {
        let line = &self.lines[self.pos];
        if self.depth == MAX_DEPTH {
            let message = format!("nesting deeper than {MAX_DEPTH} levels is not supported");
            return Err(problem(line.number, indent + 1, message));
        }
        self.depth += 1;
        let block = if is_list_item(line) { self.list(indent) } else { self.mapping(indent) };
        self.depth -= 1;
        block
    }

    fn mapping(&mut self, indent: usize) -> Parsed<Node> {
        let first_line = self.lines[self.pos].number;
        let mut entries: Vec<Entry> = Vec::new();
        while let Some(line) = self.lines.get(self.pos) {
            if line.indent < indent {
                break;
            }
            if line.indent > indent {
                return Err(bad_indentation(line));
            }
            if is_list_item(line) {
                let message = "a list item needs a key above it (`key:`, then `- item` lines)";
                return Err(problem(line.number, indent + 1, message));
            }
            let entry = self.entry(indent)?;
            if let Some(first) = entries.iter().find(|e| e.key == entry.key) {
                let message = format!(
                    "duplicate key \"{}\" (first defined at line {}, column {})",
                    entry.key, first.line, first.col
                );
                return Err(problem(entry.line, entry.col, message));
            }
            entries.push(entry);
        }
        Ok(Node { value: Value::Map(entries), line: first_line, col: indent + 1 })
    }

    /// One `key: value` line, or a `key:` line and the block below it.
    fn entry(&mut self, indent: usize) -> Parsed<Entry> {
        let line = &self.lines[self.pos];
        let number = line.number;
        let (key, colon) = split_key(&line.chars, indent, number)?;
        let start = skip_blanks(&line.chars, colon + 1);
        let inline = if ends_here(&line.chars, start) {
            None
        } else {
            Some(inline_value(&line.chars, start, number)?)
        };
        self.pos += 1;
        let value = match inline {
            Some(node) => {
                self.reject_continuation(indent)?;
                node
            }
            None => self.nested_value(indent, number, colon + 2)?,
        };
        Ok(Entry { key, line: number, col: indent + 1, value })
    }

    /// What follows a bare `key:`: a deeper block, `- item` lines at the
    /// key's own indentation (a common YAML style), or nothing (null).
    fn nested_value(&mut self, indent: usize, line: usize, col: usize) -> Parsed<Node> {
        match self.lines.get(self.pos) {
            Some(next) if next.indent > indent => self.block(next.indent),
            Some(next) if next.indent == indent && is_list_item(next) => self.list(indent),
            _ => Ok(Node { value: Value::Null, line, col }),
        }
    }

    fn list(&mut self, indent: usize) -> Parsed<Node> {
        let first_line = self.lines[self.pos].number;
        let mut items = Vec::new();
        while let Some(line) = self.lines.get(self.pos) {
            if line.indent != indent || !is_list_item(line) {
                break;
            }
            items.push(list_item(line)?);
            self.pos += 1;
            self.reject_continuation(indent)?;
        }
        Ok(Node { value: Value::List(items), line: first_line, col: indent + 1 })
    }

    /// A value is complete on its line; a deeper line after it would be a
    /// continuation (a multi-line plain string), which is outside the subset.
    fn reject_continuation(&self, indent: usize) -> Parsed<()> {
        match self.lines.get(self.pos) {
            Some(next) if next.indent > indent => Err(problem(
                next.number,
                next.indent + 1,
                "continuation lines are not supported: a value must fit on its line \
                 (quote it and write \\n for a line break)",
            )),
            _ => Ok(()),
        }
    }
}

fn bad_indentation(line: &Line) -> Problem {
    let message = "inconsistent indentation: this line does not line up with the lines above it";
    problem(line.number, line.indent + 1, message)
}

fn is_list_item(line: &Line) -> bool {
    starts_list_item(&line.chars, line.indent)
}

fn starts_list_item(chars: &[char], at: usize) -> bool {
    chars.get(at) == Some(&'-') && chars.get(at + 1).map_or(true, |c| is_blank(*c))
}

/// The scalar after `- `. Items are single values: no nested lists or mappings.
fn list_item(line: &Line) -> Parsed<Node> {
    let start = skip_blanks(&line.chars, line.indent + 1);
    if ends_here(&line.chars, start) {
        let message = "empty list item: write the value on the same line as its `-`";
        return Err(problem(line.number, line.indent + 1, message));
    }
    if line.chars[start] == '[' || starts_list_item(&line.chars, start) {
        let message = "nested lists are not supported: list items must be single values";
        return Err(problem(line.number, start + 1, message));
    }
    inline_value(&line.chars, start, line.number)
}

/// Splits `key: …` at its colon: returns the key and the colon's index.
fn split_key(chars: &[char], start: usize, line: usize) -> Parsed<(String, usize)> {
    if let Some(message) = unsupported_start(chars, start) {
        return Err(problem(line, start + 1, message));
    }
    if chars[start] == '"' || chars[start] == '\'' {
        return Err(problem(
            line,
            start + 1,
            "quoted keys are not supported; write the key plainly",
        ));
    }
    let mut i = start;
    while i < chars.len() && !is_comment_at(chars, i) {
        if chars[i] == ':' && chars.get(i + 1).map_or(true, |c| is_blank(*c)) {
            let key: String = chars[start..i].iter().collect();
            if i == start {
                return Err(problem(line, start + 1, "missing key before `:`"));
            }
            return Ok((key.trim_end().to_string(), i));
        }
        i += 1;
    }
    let message = if chars[start..i].contains(&':') {
        "expected `key: value` (put a space after the colon)"
    } else {
        "expected `key: value`"
    };
    Err(problem(line, start + 1, message))
}

/// The value after `key: ` or `- `, which must end its line (bar a comment).
fn inline_value(chars: &[char], start: usize, line: usize) -> Parsed<Node> {
    let (value, end) = match chars[start] {
        '"' => double_quoted(chars, start, line)?,
        '\'' => single_quoted(chars, start, line)?,
        '[' => flow_list(chars, start, line)?,
        _ => plain(chars, start, line, false)?,
    };
    let rest = skip_blanks(chars, end);
    if !ends_here(chars, rest) {
        return Err(problem(line, rest + 1, "unexpected text after the value"));
    }
    Ok(Node { value, line, col: start + 1 })
}

/// The YAML constructs outside the subset, recognised by their first
/// character, each with a message that says what to write instead.
fn unsupported_start(chars: &[char], at: usize) -> Option<&'static str> {
    let spaced = chars.get(at + 1).map_or(true, |c| is_blank(*c));
    match chars[at] {
        '{' => Some("flow mappings (`{...}`) are not supported: write one `key: value` per line"),
        '&' => Some("anchors (`&`) are not supported"),
        '*' => Some("aliases (`*`) are not supported"),
        '!' => Some("tags (`!`) are not supported"),
        '|' | '>' => Some(
            "multi-line strings (`|`, `>`) are not supported: \
             write the value on one line, quoted, with \\n for a line break",
        ),
        '-' if spaced => Some("a block list must start on the line below its key"),
        '?' if spaced => Some("complex keys (`?`) are not supported"),
        ']' | '}' => Some("unbalanced bracket: quote the value if it is text"),
        '@' | '`' => Some("values may not start with `@` or a backquote: quote the value"),
        _ => None,
    }
}

/// An unquoted scalar: it runs to the end of the line or to a comment, or in
/// a flow list to the next `,` or `]`.
fn plain(chars: &[char], start: usize, line: usize, in_flow: bool) -> Parsed<(Value, usize)> {
    if let Some(message) = unsupported_start(chars, start) {
        return Err(problem(line, start + 1, message));
    }
    let mut end = start;
    while end < chars.len() && !is_comment_at(chars, end) {
        let c = chars[end];
        if c == ':' && chars.get(end + 1).map_or(true, |c| is_blank(*c)) {
            let message = "unexpected `: ` in a value (one `key: value` per line; \
                           quote the value if it is text)";
            return Err(problem(line, end + 1, message));
        }
        if in_flow && (c == ',' || c == ']') {
            break;
        }
        if in_flow && (c == '[' || c == '{' || c == '}') {
            let message = "nested lists and mappings are not supported inside `[...]`";
            return Err(problem(line, end + 1, message));
        }
        end += 1;
    }
    let text: String = chars[start..end].iter().collect();
    let text = text.trim_end();
    let value = match text {
        "null" | "~" => Value::Null,
        _ => Value::Scalar { text: text.to_string(), quoted: false },
    };
    Ok((value, end))
}

fn double_quoted(chars: &[char], start: usize, line: usize) -> Parsed<(Value, usize)> {
    let mut text = String::new();
    let mut i = start + 1;
    while i < chars.len() {
        match chars[i] {
            '"' => return Ok((Value::Scalar { text, quoted: true }, i + 1)),
            '\\' => {
                text.push(escape(chars, i, line)?);
                i += if chars.get(i + 1) == Some(&'u') { 6 } else { 2 };
            }
            c => {
                text.push(c);
                i += 1;
            }
        }
    }
    Err(unterminated(line, start, "double-quoted string"))
}

/// The character that the escape starting with the backslash at `at` stands for.
fn escape(chars: &[char], at: usize, line: usize) -> Parsed<char> {
    match chars.get(at + 1) {
        Some('"') => Ok('"'),
        Some('\\') => Ok('\\'),
        Some('n') => Ok('\n'),
        Some('t') => Ok('\t'),
        Some('u') => {
            let hex: String = chars.iter().skip(at + 2).take(4).collect();
            let is_hex = hex.len() == 4 && hex.bytes().all(|b| b.is_ascii_hexdigit());
            let code = if is_hex { u32::from_str_radix(&hex, 16).ok() } else { None };
            let message = "\\u needs four hex digits naming a character, e.g. \\u00e9";
            code.and_then(char::from_u32).ok_or_else(|| problem(line, at + 1, message))
        }
        Some(c) => {
            let message = format!("unknown escape \\{c} (known: \\\" \\\\ \\n \\t \\uXXXX)");
            Err(problem(line, at + 1, message))
        }
        None => Err(unterminated(line, at, "double-quoted string")),
    }
}

fn single_quoted(chars: &[char], start: usize, line: usize) -> Parsed<(Value, usize)> {
    let mut text = String::new();
    let mut i = start + 1;
    while i < chars.len() {
        if chars[i] == '\'' {
            if chars.get(i + 1) != Some(&'\'') {
                return Ok((Value::Scalar { text, quoted: true }, i + 1));
            }
            i += 1; // '' stands for one quote
        }
        text.push(chars[i]);
        i += 1;
    }
    Err(unterminated(line, start, "single-quoted string"))
}

fn unterminated(line: usize, start: usize, what: &str) -> Problem {
    let message = format!("unterminated {what}: it must end on the line it starts");
    problem(line, start + 1, message)
}

/// `[a, "b c", 3]` on one line; a trailing comma is allowed.
fn flow_list(chars: &[char], start: usize, line: usize) -> Parsed<(Value, usize)> {
    let mut items = Vec::new();
    let mut i = skip_blanks(chars, start + 1);
    if chars.get(i) == Some(&']') {
        return Ok((Value::List(items), i + 1));
    }
    loop {
        if ends_here(chars, i) {
            return Err(unterminated(line, start, "list `[...]`"));
        }
        let (value, end) = match chars[i] {
            '"' => double_quoted(chars, i, line)?,
            '\'' => single_quoted(chars, i, line)?,
            ',' | ']' => return Err(problem(line, i + 1, "empty item in `[...]`")),
            '[' => {
                let message = "nested lists and mappings are not supported inside `[...]`";
                return Err(problem(line, i + 1, message));
            }
            _ => plain(chars, i, line, true)?,
        };
        items.push(Node { value, line, col: i + 1 });
        i = skip_blanks(chars, end);
        match chars.get(i) {
            Some(',') => i = skip_blanks(chars, i + 1),
            Some(']') => return Ok((Value::List(items), i + 1)),
            _ if ends_here(chars, i) => return Err(unterminated(line, start, "list `[...]`")),
            _ => return Err(problem(line, i + 1, "expected `,` or `]` in `[...]`")),
        }
        if chars.get(i) == Some(&']') {
            return Ok((Value::List(items), i + 1));
        }
    }
}

fn is_blank(c: char) -> bool {
    c == ' ' || c == '\t'
}

fn skip_blanks(chars: &[char], mut i: usize) -> usize {
    while i < chars.len() && is_blank(chars[i]) {
        i += 1;
    }
    i
}

/// A `#` starts a comment only after whitespace (or at the start of a line),
/// so that `a#b` stays a value.
fn is_comment_at(chars: &[char], i: usize) -> bool {
    chars.get(i) == Some(&'#') && (i == 0 || is_blank(chars[i - 1]))
}

/// Nothing but blanks and perhaps a comment from `i` on.
fn ends_here(chars: &[char], i: usize) -> bool {
    let i = skip_blanks(chars, i);
    i >= chars.len() || is_comment_at(chars, i)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &str) -> Node {
        match parse(text, "t.yml") {
            Ok(node) => node,
            Err(e) => panic!("unexpected error: {e}"),
        }
    }

    /// Asserts the error is at `position` ("LINE:COL") and mentions `words`.
    fn assert_error(text: &str, position: &str, words: &str) {
        let message = match parse(text, "t.yml") {
            Ok(node) => panic!("expected an error, got {node:?}"),
            Err(e) => e.message,
        };
        let prefix = format!("t.yml:{position}: ");
        assert!(message.starts_with(&prefix), "{message:?} should start with {prefix:?}");
        assert!(message.contains(words), "{message:?} should mention {words:?}");
    }

    fn entries(node: &Node) -> &[Entry] {
        match &node.value {
            Value::Map(entries) => entries,
            other => panic!("expected a mapping, got {other:?}"),
        }
    }

    fn get<'a>(node: &'a Node, key: &str) -> &'a Node {
        match entries(node).iter().find(|e| e.key == key) {
            Some(entry) => &entry.value,
            None => panic!("no key {key:?} in {node:?}"),
        }
    }

    fn text(node: &Node) -> &str {
        match &node.value {
            Value::Scalar { text, .. } => text,
            other => panic!("expected a scalar, got {other:?}"),
        }
    }

    fn texts(node: &Node) -> Vec<&str> {
        match &node.value {
            Value::List(items) => items.iter().map(text).collect(),
            other => panic!("expected a list, got {other:?}"),
        }
    }

    #[test]
    fn nested_mappings_carry_positions_and_typed_scalars() {
        let root = read("a:\n  b: 12\n  c:\n    d: -3.5\n  e: true\nf: hello world\n");
        let a = get(&root, "a");
        assert_eq!((a.line, a.col), (2, 3));
        let b = get(a, "b");
        assert_eq!((b.line, b.col, b.as_int()), (2, 6, Some(12)));
        let d = get(get(a, "c"), "d");
        assert_eq!((d.line, d.col, d.as_int()), (4, 8, None));
        assert_eq!(get(a, "e").as_bool(), Some(true));
        assert_eq!(text(get(&root, "f")), "hello world");
        let keys: Vec<_> = entries(a).iter().map(|e| (e.key.as_str(), e.line, e.col)).collect();
        assert_eq!(keys, [("b", 2, 3), ("c", 3, 3), ("e", 5, 3)]);
    }

    #[test]
    fn quoted_scalars_are_strings_not_numbers() {
        let root = read("a: \"5\"\nb: '5'\nc: 5\nd: \"true\"\n");
        assert_eq!(get(&root, "a").as_int(), None);
        assert_eq!(get(&root, "b").as_int(), None);
        assert_eq!(get(&root, "c").as_int(), Some(5));
        assert_eq!(get(&root, "d").as_bool(), None);
        assert_eq!(get(&root, "a").describe(), "a quoted string \"5\"");
    }

    #[test]
    fn empty_and_comment_only_documents_are_empty_mappings() {
        for text in ["", "\n\n", "# just a comment\n  # another\n", "---\n# c\n"] {
            assert_eq!(read(text), Node { value: Value::Map(Vec::new()), line: 1, col: 1 });
        }
    }

    #[test]
    fn a_leading_document_marker_is_allowed() {
        let root = read("# header\n--- # start\na: 1\n");
        assert_eq!(get(&root, "a").as_int(), Some(1));
    }

    #[test]
    fn comments_end_values_but_not_inside_quotes_or_words() {
        let root =
            read("# top\na: 1 # one\nb: \"x # y\" # z\nc: 'p # q'\nd: a#b\ne: [x, \"#y\"] # w\n");
        assert_eq!(get(&root, "a").as_int(), Some(1));
        assert_eq!(text(get(&root, "b")), "x # y");
        assert_eq!(text(get(&root, "c")), "p # q");
        assert_eq!(text(get(&root, "d")), "a#b");
        assert_eq!(texts(get(&root, "e")), ["x", "#y"]);
    }

    #[test]
    fn double_quoted_escapes_are_decoded() {
        let root = read(r#"a: "say \"hi\"\\ \n\t\u00e9\u263A""#);
        assert_eq!(text(get(&root, "a")), "say \"hi\"\\ \n\t\u{e9}\u{263a}");
    }

    #[test]
    fn single_quotes_double_to_escape_themselves() {
        let root = read("a: 'it''s \\n raw'\nb: ''\n");
        assert_eq!(text(get(&root, "a")), "it's \\n raw");
        assert_eq!(text(get(&root, "b")), "");
    }

    #[test]
    fn flow_lists_hold_plain_quoted_and_numeric_items() {
        let root = read("a: [x, \"b c\", 3, 'd, e']\nb: []\nc: [ one , two, ]\n");
        let a = get(&root, "a");
        assert_eq!(texts(a), ["x", "b c", "3", "d, e"]);
        let Value::List(items) = &a.value else { panic!("not a list") };
        let cols: Vec<_> = items.iter().map(|n| n.col).collect();
        assert_eq!(cols, [5, 8, 15, 18]);
        assert_eq!(items[2].as_int(), Some(3));
        assert_eq!(texts(get(&root, "b")), Vec::<&str>::new());
        assert_eq!(texts(get(&root, "c")), ["one", "two"]);
    }

    #[test]
    fn block_lists_nest_or_sit_at_the_key_indentation() {
        let root = read("a:\n  - make test\n  - \"make lint\" # c\nb:\n- x\n-   y\nc: 1\n");
        let a = get(&root, "a");
        assert_eq!(texts(a), ["make test", "make lint"]);
        assert_eq!((a.line, a.col), (2, 3));
        assert_eq!(texts(get(&root, "b")), ["x", "y"]);
        assert_eq!(get(&root, "c").as_int(), Some(1));
    }

    #[test]
    fn empty_values_are_null() {
        let root = read("a:\nb: # nothing\nc: ~\nd:\n  e:\n");
        for key in ["a", "b", "c"] {
            assert_eq!(get(&root, key).value, Value::Null, "{key}");
        }
        let a = get(&root, "a");
        assert_eq!((a.line, a.col), (1, 3));
        assert_eq!(get(get(&root, "d"), "e").value, Value::Null);
    }

    #[test]
    fn windows_line_endings_and_a_byte_order_mark_are_accepted() {
        let root = read("\u{feff}a: 1\r\nb: x\r\n");
        assert_eq!(get(&root, "a").as_int(), Some(1));
        assert_eq!(text(get(&root, "b")), "x");
    }

    #[test]
    fn tab_in_indentation_is_rejected() {
        assert_error("a:\n \tb: 1\n", "2:2", "tab in indentation");
    }

    #[test]
    fn inconsistent_indentation_is_rejected() {
        assert_error("a:\n    b: 1\n  c: 2\n", "3:3", "inconsistent indentation");
        assert_error("a:\n  b: 1\n    c: 2\n", "3:5", "continuation");
        assert_error("  a: 1\nb: 2\n", "2:1", "inconsistent indentation");
    }

    #[test]
    fn duplicate_keys_say_where_the_first_one_was() {
        assert_error(
            "a:\n  b: 1\n  c: 2\n  b: 3\n",
            "4:3",
            "duplicate key \"b\" (first defined at line 2, column 3)",
        );
    }

    #[test]
    fn anchors_aliases_and_tags_are_rejected() {
        assert_error("a: &x 1\n", "1:4", "anchors");
        assert_error("a: 1\nb: *x\n", "2:4", "aliases");
        assert_error("a: !!str 1\n", "1:4", "tags");
        assert_error("a: [1, *x]\n", "1:8", "aliases");
        assert_error("&x a: 1\n", "1:1", "anchors");
    }

    #[test]
    fn multi_line_strings_are_rejected() {
        assert_error("a: |\n  text\n", "1:4", "multi-line strings");
        assert_error("a: >-\n  text\n", "1:4", "multi-line strings");
        assert_error("a: \"open\n  close\"\n", "1:4", "unterminated double-quoted string");
        assert_error("a:\n  b: 'open\n", "2:6", "unterminated single-quoted string");
        assert_error("a: \"ends with backslash\\", "1:24", "unterminated double-quoted");
        assert_error("a: one\n  two\n", "2:3", "continuation lines");
        assert_error("a:\n  - one\n    two\n", "3:5", "continuation lines");
    }

    #[test]
    fn flow_mappings_are_rejected() {
        assert_error("a: {b: 1}\n", "1:4", "flow mappings");
        assert_error("{a: 1}\n", "1:1", "flow mappings");
        assert_error("a: [x, {b: 1}]\n", "1:8", "flow mappings");
        assert_error("a: [x{b}]\n", "1:6", "nested lists and mappings");
    }

    #[test]
    fn document_markers_beyond_the_leading_one_are_rejected() {
        assert_error("a: 1\n---\nb: 2\n", "2:1", "only one document");
        assert_error("---\n---\n", "2:1", "only one document");
        assert_error("a: 1\n...\n", "2:1", "document end markers");
        assert_error("%YAML 1.2\n---\na: 1\n", "1:1", "directives");
    }

    #[test]
    fn lines_that_are_not_key_value_are_rejected() {
        assert_error("a: 1\njust text\n", "2:1", "expected `key: value`");
        assert_error("a:1\n", "1:1", "put a space after the colon");
        assert_error("a:\n  : 1\n", "2:3", "missing key");
        assert_error("\"a\": 1\n", "1:1", "quoted keys");
        assert_error("? a\n", "1:1", "complex keys");
        assert_error("a: b: c\n", "1:5", "unexpected `: `");
        assert_error("a: \"x\" y\n", "1:8", "unexpected text after the value");
        assert_error("a: 1\n- b\n", "2:1", "needs a key above it");
        assert_error("a: - b\n", "1:4", "block list must start on the line below");
    }

    #[test]
    fn lists_hold_only_single_values() {
        assert_error("a:\n  - - x\n", "2:5", "nested lists");
        assert_error("a:\n  - [x]\n", "2:5", "nested lists");
        assert_error("a:\n  - b: 1\n", "2:6", "unexpected `: `");
        assert_error("a:\n  -\n", "2:3", "empty list item");
        assert_error("a: [x, [y]]\n", "1:8", "nested lists");
    }

    #[test]
    fn malformed_flow_lists_are_rejected() {
        assert_error("a: [x, y\n", "1:4", "unterminated list");
        assert_error("a: [x,\n  y]\n", "1:4", "unterminated list");
        assert_error("a: [x, , y]\n", "1:8", "empty item");
        assert_error("a: [\"x\" y]\n", "1:9", "expected `,` or `]`");
        assert_error("a: [x] y\n", "1:8", "unexpected text after the value");
    }

    #[test]
    fn absurdly_deep_nesting_is_rejected() {
        let mut text = String::new();
        for depth in 0..40 {
            text.push_str(&format!("{}k:\n", " ".repeat(depth)));
        }
        assert_error(&text, "33:33", "nesting deeper than 32 levels");
    }

    #[test]
    fn bad_escapes_are_rejected() {
        assert_error("a: \"x\\qy\"\n", "1:6", "unknown escape \\q");
        assert_error("a: \"\\u12\"\n", "1:5", "four hex digits");
        assert_error("a: \"\\ud800\"\n", "1:5", "four hex digits");
    }
}
