//! The command line: lexopt's raw arguments → one `Cli` value. Every
//! command and flag is defined once, in `table`; this module reads the
//! arguments through it into a plain `Raw` record, then turns that into the
//! `Command` asked for, and `help` renders the help texts from the same
//! table. Parsing never acts; it only describes what was asked. `--help`
//! and `--version` are commands of their own so `main` can print them and
//! exit 0. Every usage error names the flag and the value and exits 2, with
//! a near spelling when the word looks like a typo.

mod help;
mod table;

use std::ffi::OsString;
use std::path::PathBuf;

use lexopt::prelude::*;

use crate::error::{Error, Result};
use table::{Flag, Name, Place, Takes};

/// What the user asked for, and where.
#[derive(Debug, PartialEq)]
pub struct Cli {
    pub project_dir: PathBuf,
    pub command: Command,
}

#[derive(Debug, PartialEq)]
pub enum Command {
    /// Print this text and exit 0.
    Help(String),
    Version,
    Init {
        task: String,
        force: bool,
    },
    Run(RunFlags),
    Resume(RunFlags),
    Status {
        json: bool,
    },
    Logs {
        lines: usize,
        follow: bool,
    },
    Stop {
        force: bool,
        timeout_seconds: u64,
    },
}

/// The flags `run` and `resume` share.
#[derive(Debug, Default, PartialEq)]
pub struct RunFlags {
    pub background: bool,
    pub skip_review: bool,
    pub skip_qa: bool,
}

/// Every flag's value as given, defaults where none was: what the table's
/// setters fill before the command turns it into a `Command`.
#[derive(Debug)]
struct Raw {
    project_dir: PathBuf,
    help: bool,
    version: bool,
    task: Option<String>,
    force: bool,
    run: RunFlags,
    json: bool,
    lines: usize,
    follow: bool,
    timeout_seconds: u64,
}

impl Default for Raw {
    fn default() -> Raw {
        Raw {
            project_dir: PathBuf::from("."),
            help: false,
            version: false,
            task: None,
            force: false,
            run: RunFlags::default(),
            json: false,
            lines: 50,
            follow: false,
            timeout_seconds: 30,
        }
    }
}

/// Parses the process's own arguments.
pub fn parse_env() -> Result<Cli> {
    parse(std::env::args_os().skip(1))
}

/// Parses `args` (without the program name).
pub fn parse(args: impl IntoIterator<Item = OsString>) -> Result<Cli> {
    let mut parser = lexopt::Parser::from_args(args);
    let mut raw = Raw::default();
    let word = read_flags(&mut parser, Place::Top, &mut raw)?;
    let command = if raw.help {
        Command::Help(help::program())
    } else if raw.version {
        Command::Version
    } else {
        let word = word.ok_or_else(|| Error::usage("no command given; try 'rasen --help'"))?;
        parse_command(&word, &mut parser, &mut raw)?
    };
    Ok(Cli { project_dir: raw.project_dir, command })
}

/// Reads the command spelled `word` and the flags after it.
fn parse_command(word: &str, parser: &mut lexopt::Parser, raw: &mut Raw) -> Result<Command> {
    if word == table::HELP_WORD {
        return help_topic(parser).map(Command::Help);
    }
    let spec = table::command(word).ok_or_else(|| unknown_command(word, "; try 'rasen --help'"))?;
    if let Some(extra) = read_flags(parser, Place::After(spec.name), raw)? {
        return Err(Error::usage(format!("unexpected argument \"{extra}\"")));
    }
    if raw.help {
        return Ok(Command::Help(help::command(spec)));
    }
    raw.command(spec.name)
}

/// `rasen help [COMMAND]`: the help for COMMAND, or for rasen.
fn help_topic(parser: &mut lexopt::Parser) -> Result<String> {
    match parser.next().map_err(usage)? {
        Some(Value(word)) => {
            let word = word.to_string_lossy();
            let spec = table::command(&word).ok_or_else(|| unknown_command(&word, ""))?;
            Ok(help::command(spec))
        }
        _ => Ok(help::program()),
    }
}

/// Reads the flags taken at `place` into `raw`, until the arguments end, a
/// word comes (returned), or `--help` or `--version` ends the reading.
fn read_flags(parser: &mut lexopt::Parser, place: Place, raw: &mut Raw) -> Result<Option<String>> {
    while let Some(arg) = parser.next().map_err(usage)? {
        let flag = match arg {
            Value(word) => return Ok(Some(word.to_string_lossy().into_owned())),
            Short(letter) => table::find_short(letter, place)
                .ok_or_else(|| Error::usage(format!("unknown option -{letter}")))?,
            Long(long) => table::find_long(long, place).ok_or_else(|| unknown_flag(long, place))?,
        };
        read_value(flag, parser, raw)?;
        if raw.help || raw.version {
            break;
        }
    }
    Ok(None)
}

/// Reads the value `flag` takes, if any, and stores it in `raw`.
fn read_value(flag: &Flag, parser: &mut lexopt::Parser, raw: &mut Raw) -> Result<()> {
    let name = flag.long_form();
    match flag.takes {
        Takes::Switch(set) => set(raw),
        Takes::Text(_, set) => set(raw, string_value(parser, &name)?),
        Takes::Dir(_, set) => set(raw, dir_value(parser, &name)?),
        Takes::Number(_, set) => {
            let number = number_value(parser, &name)?;
            set(raw, number).map_err(|what| Error::usage(format!("{name}: {what}")))?;
        }
    }
    Ok(())
}

impl Raw {
    /// The command `name` with the flags read after it.
    fn command(&mut self, name: Name) -> Result<Command> {
        let run = std::mem::take(&mut self.run);
        Ok(match name {
            Name::Init => {
                let task = self.task.take();
                let task = task.ok_or_else(|| Error::usage("init: --task TEXT is required"))?;
                Command::Init { task, force: self.force }
            }
            Name::Run => Command::Run(run),
            Name::Resume => Command::Resume(run),
            Name::Status => Command::Status { json: self.json },
            Name::Logs => Command::Logs { lines: self.lines, follow: self.follow },
            Name::Stop => {
                Command::Stop { force: self.force, timeout_seconds: self.timeout_seconds }
            }
        })
    }
}

fn string_value(parser: &mut lexopt::Parser, flag: &str) -> Result<String> {
    let value = parser.value().map_err(|_| Error::usage(format!("{flag}: missing value")))?;
    value.into_string().map_err(|v| Error::usage(format!("{flag}: not valid UTF-8: {v:?}")))
}

fn dir_value(parser: &mut lexopt::Parser, flag: &str) -> Result<PathBuf> {
    let value = parser.value().map_err(|_| Error::usage(format!("{flag}: missing value")))?;
    if value.is_empty() {
        return Err(Error::usage(format!("{flag}: empty directory name")));
    }
    Ok(PathBuf::from(value))
}

fn number_value(parser: &mut lexopt::Parser, flag: &str) -> Result<u64> {
    let text = string_value(parser, flag)?;
    text.parse::<u64>().map_err(|_| Error::usage(format!("{flag}: invalid number \"{text}\"")))
}

fn usage(err: lexopt::Error) -> Error {
    Error::usage(err.to_string())
}

/// `unknown command "WORD"` with a near spelling, then `then`.
fn unknown_command(word: &str, then: &str) -> Error {
    let hint = hint(word, &table::command_words());
    Error::usage(format!("unknown command \"{word}\"{hint}{then}"))
}

/// `unknown option --LONG` with the nearest flag taken at `place`.
fn unknown_flag(long: &str, place: Place) -> Error {
    let flag = format!("--{long}");
    let known: Vec<String> = table::flags_at(place).map(Flag::long_form).collect();
    let known: Vec<&str> = known.iter().map(String::as_str).collect();
    Error::usage(format!("unknown option {flag}{}", hint(&flag, &known)))
}

/// `" (did you mean \"run\"?)"` when one candidate is a near spelling.
fn hint(word: &str, candidates: &[&str]) -> String {
    match crate::spelling::closest(word, candidates) {
        Some(c) => format!(" (did you mean \"{c}\"?)"),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use table::COMMANDS;

    fn parse_words(words: &[&str]) -> Result<Cli> {
        parse(words.iter().map(OsString::from))
    }

    #[test]
    fn parses_every_command() {
        let cli = parse_words(&["-C", "/tmp/p", "init", "--task", "do it"]).unwrap();
        assert_eq!(cli.project_dir, PathBuf::from("/tmp/p"));
        assert_eq!(cli.command, Command::Init { task: "do it".into(), force: false });
        let run = parse_words(&["run", "--background", "--skip-qa"]).unwrap().command;
        assert_eq!(
            run,
            Command::Run(RunFlags { background: true, skip_review: false, skip_qa: true })
        );
        let resume = parse_words(&["resume", "-b"]).unwrap().command;
        assert_eq!(resume, Command::Resume(RunFlags { background: true, ..RunFlags::default() }));
        assert_eq!(
            parse_words(&["status", "--json"]).unwrap().command,
            Command::Status { json: true }
        );
        let logs = parse_words(&["logs", "-n", "100", "-f"]).unwrap().command;
        assert_eq!(logs, Command::Logs { lines: 100, follow: true });
        assert_eq!(
            parse_words(&["logs"]).unwrap().command,
            Command::Logs { lines: 50, follow: false }
        );
        let stop = parse_words(&["stop", "--force", "--timeout", "5"]).unwrap().command;
        assert_eq!(stop, Command::Stop { force: true, timeout_seconds: 5 });
        assert_eq!(parse_words(&["-V"]).unwrap().command, Command::Version);
        assert_eq!(parse_words(&["status", "-C", "x"]).unwrap().project_dir, PathBuf::from("x"));
    }

    /// A value each kind of flag accepts.
    fn sample_value(flag: &Flag) -> Option<&'static str> {
        match flag.takes {
            Takes::Switch(_) => None,
            Takes::Text(..) => Some("text"),
            Takes::Dir(..) => Some("dir"),
            Takes::Number(..) => Some("7"),
        }
    }

    /// `rasen WORD` and the flags it requires.
    fn bare_command(word: &str) -> Vec<String> {
        let required: &[&str] = if word == "init" { &["--task", "t"] } else { &[] };
        [word].iter().chain(required).map(|w| w.to_string()).collect()
    }

    /// `bare_command(word)`, then `spelling` and a value if `flag` takes one.
    fn command_with(word: &str, spelling: &str, flag: &Flag) -> Vec<String> {
        let mut words = bare_command(word);
        words.push(spelling.to_string());
        words.extend(sample_value(flag).map(str::to_string));
        words
    }

    fn parse_strings(words: &[String]) -> Result<Cli> {
        parse(words.iter().map(OsString::from))
    }

    #[test]
    fn every_flag_of_every_command_parses_in_both_spellings() {
        for spec in COMMANDS {
            for flag in table::flags_at(Place::After(spec.name)) {
                let spellings = [Some(flag.long_form()), flag.short.map(|c| format!("-{c}"))];
                for spelling in spellings.into_iter().flatten() {
                    let words = command_with(spec.word, &spelling, flag);
                    let cli = parse_strings(&words);
                    assert!(cli.is_ok(), "rasen {}: {:?}", words.join(" "), cli.err());
                }
            }
        }
    }

    #[test]
    fn every_flag_of_every_command_changes_what_it_parses_to() {
        for spec in COMMANDS {
            let plain = parse_strings(&bare_command(spec.word));
            for flag in table::flags_at(Place::After(spec.name)) {
                let words = command_with(spec.word, &flag.long_form(), flag);
                assert_ne!(
                    parse_strings(&words),
                    plain,
                    "rasen {} changes nothing",
                    words.join(" ")
                );
            }
        }
    }

    #[test]
    fn flags_taken_before_the_command_parse_there() {
        for flag in table::flags_at(Place::Top) {
            let mut words = vec![flag.long_form()];
            words.extend(sample_value(flag).map(str::to_string));
            words.push("status".to_string());
            let cli = parse_strings(&words);
            assert!(cli.is_ok(), "rasen {}: {:?}", words.join(" "), cli.err());
        }
    }

    #[test]
    fn help_is_a_command_of_its_own() {
        let help = |words: &[&str]| parse_words(words).unwrap().command;
        assert_eq!(help(&["--help"]), Command::Help(help::program()));
        assert_eq!(
            help(&["stop", "-h"]),
            Command::Help(help::command(table::command("stop").unwrap()))
        );
        assert_eq!(
            help(&["help", "logs"]),
            Command::Help(help::command(table::command("logs").unwrap()))
        );
        assert_eq!(help(&["init", "--help", "--tsak"]), help(&["help", "init"]));
        assert_eq!(help(&["status", "-h", "extra"]), help(&["help", "status"]));
    }

    #[test]
    fn usage_errors_name_the_flag_and_value() {
        let err = parse_words(&["logs", "--lines", "abc"]).unwrap_err();
        assert_eq!(err.message, "--lines: invalid number \"abc\"");
        assert_eq!(err.code, 2);
        let err = parse_words(&["stats"]).unwrap_err();
        assert!(
            err.message.contains("unknown command \"stats\" (did you mean \"status\"?)"),
            "{err}"
        );
        let err = parse_words(&["run", "--backgroud"]).unwrap_err();
        assert!(err.message.contains("(did you mean \"--background\"?)"), "{err}");
        assert!(parse_words(&["init"]).unwrap_err().message.contains("--task"));
        assert!(parse_words(&[]).is_err());
        assert!(parse_words(&["stop", "--timeout"])
            .unwrap_err()
            .message
            .contains("--timeout: missing value"));
        let too_long = format!("{}", crate::config::MAX_NUMBER + 1);
        let err = parse_words(&["stop", "--timeout", &too_long]).unwrap_err();
        assert_eq!(
            err.message,
            format!("--timeout: at most {} seconds", crate::config::MAX_NUMBER)
        );
        assert_eq!(
            parse_words(&["-C", ""]).unwrap_err().message,
            "--project-dir: empty directory name"
        );
    }

    #[test]
    fn a_flag_is_unknown_where_its_command_does_not_take_it() {
        let message = |words: &[&str]| parse_words(words).unwrap_err().message;
        assert_eq!(message(&["stop", "-f"]), "unknown option -f");
        assert_eq!(message(&["run", "--json"]), "unknown option --json");
        assert_eq!(message(&["status", "--version"]), "unknown option --version");
        assert_eq!(message(&["--json", "status"]), "unknown option --json");
        assert_eq!(message(&["status", "extra"]), "unexpected argument \"extra\"");
    }
}
