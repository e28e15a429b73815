//! The help texts, `rasen --help` and `rasen COMMAND --help`: the table's
//! hand-written paragraphs around an Options list made from its flags, one
//! `  LABEL  help` line each, the help wrapped under itself. It only puts
//! text together; it never reads arguments, and never prints.

use super::table::{self, CommandSpec, Flag, Place};

/// No help line is wider than this.
const WIDTH: usize = 80;

/// `rasen --help`.
pub fn program() -> String {
    let options = options(Place::Top);
    format!("{}\nOptions:\n{options}\n{}", table::PROGRAM_ABOUT, table::PROGRAM_AFTER)
}

/// `rasen COMMAND --help`.
pub fn command(spec: &CommandSpec) -> String {
    let about = paragraph(spec.about);
    let options = options(Place::After(spec.name));
    let after = if spec.after.is_empty() { String::new() } else { format!("\n{}", spec.after) };
    format!("Usage: rasen {}\n\n{about}Options:\n{options}{after}", spec.usage)
}

/// `text` and the blank line after it, or nothing.
fn paragraph(text: &str) -> String {
    if text.is_empty() {
        String::new()
    } else {
        format!("{text}\n")
    }
}

/// The Options list for `place`, the help lines aligned after the longest
/// label.
fn options(place: Place) -> String {
    let flags: Vec<&Flag> = table::FLAGS.iter().filter(|flag| flag.is_listed_at(place)).collect();
    let width = flags.iter().map(|flag| flag.label().chars().count()).max().unwrap_or(0);
    flags.iter().map(|flag| option(flag, width)).collect()
}

/// One flag's lines: `  LABEL  help`, padded to `width`.
fn option(flag: &Flag, width: usize) -> String {
    let lines = wrap(flag.help, WIDTH.saturating_sub(width + 4));
    let mut text = String::new();
    for (i, line) in lines.iter().enumerate() {
        let label = if i == 0 { flag.label() } else { String::new() };
        text += &format!("  {label:width$}  {line}\n");
    }
    text
}

/// `text` in lines of at most `width` characters, broken between words (a
/// longer word gets a line of its own).
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines: Vec<String> = Vec::new();
    for word in text.split_whitespace() {
        match lines.last_mut() {
            Some(line) if line.chars().count() + 1 + word.chars().count() <= width => {
                line.push(' ');
                line.push_str(word);
            }
            _ => lines.push(word.to_string()),
        }
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::table::{COMMANDS, FLAGS};

    #[test]
    fn every_flag_is_listed_in_the_help_that_documents_it() {
        let mut places = vec![(Place::Top, program())];
        places.extend(COMMANDS.iter().map(|spec| (Place::After(spec.name), command(spec))));
        for (place, help) in places {
            for flag in FLAGS {
                let listed = help.contains(&format!("\n  {}  ", flag.label()));
                assert_eq!(
                    listed,
                    flag.is_listed_at(place),
                    "--{} in help at {place:?}",
                    flag.long
                );
            }
        }
    }

    #[test]
    fn a_long_help_line_wraps_under_itself() {
        let help = command(table::command("init").unwrap());
        let expected = "
Options:
  -t, --task TEXT  The task, or a file that holds it
  -f, --force      Replace an existing task and plan (backups are kept as
                   FILE.bak.TIMESTAMP)
";
        assert!(help.ends_with(expected), "{help}");
    }

    #[test]
    fn the_paragraphs_frame_the_options() {
        let help = command(table::command("run").unwrap());
        assert!(help.starts_with("Usage: rasen run [--background] [--skip-review] [--skip-qa]\n\n"));
        assert!(help.contains("a limit is hit.\n\nOptions:\n  -b, --background  Run as a daemon"));
        assert!(help.contains("is not in this version\n\nExit: 0 completed"), "{help}");
        let logs = command(table::command("logs").unwrap());
        assert!(logs.starts_with("Usage: rasen logs [-n N] [-f]\n\nOptions:\n  -n, --lines N  "));
        let main = program();
        assert!(main.contains("where it stopped\n\nOptions:\n  -C, --project-dir DIR  Act"));
        assert!(main.ends_with("  -V, --version          Show the version\n\nFiles live in .rasen/ and rasen.yml; see README.md.\n"));
    }

    #[test]
    fn no_help_line_is_wider_than_the_width() {
        let mut texts = vec![program()];
        texts.extend(COMMANDS.iter().map(command));
        for line in texts.iter().flat_map(|text| text.lines()) {
            assert!(line.chars().count() <= WIDTH, "too wide: {line:?}");
        }
    }

    #[test]
    fn wrap_breaks_between_words() {
        assert_eq!(wrap("a bb ccc", 4), ["a bb", "ccc"]);
        assert_eq!(wrap("toolong x", 3), ["toolong", "x"]);
        assert!(wrap("", 10).is_empty());
    }
}
