//! The command-line table: every command and every flag of rasen, each
//! defined once (its word or long name, short letter, value, help line,
//! which commands take it, and where its value goes). Parsing, the help
//! texts' Options lists and the near-spelling hints all read it, and shell
//! completions or a man page can be generated from it. It only describes:
//! it never reads arguments, and never prints.

use std::path::PathBuf;

use super::Raw;
use crate::config::MAX_NUMBER;

/// A command, as `Place` and `Scope` name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Name {
    Init,
    Run,
    Resume,
    Status,
    Logs,
    Stop,
}

/// One command: its word and the hand-written parts of its help (the
/// Options list between them comes from `FLAGS`).
pub struct CommandSpec {
    pub name: Name,
    pub word: &'static str,
    /// The usage line, after `Usage: rasen `.
    pub usage: &'static str,
    /// What the command does, above its options; "" for nothing.
    pub about: &'static str,
    /// What follows its options (exit codes); "" for nothing.
    pub after: &'static str,
}

/// Where on the command line a flag is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    /// Before the command word: `rasen -C DIR …`.
    Top,
    /// After a command's word: `rasen logs -n 5`.
    After(Name),
}

/// Where a flag may be given.
#[derive(Debug, Clone, Copy)]
pub enum Scope {
    /// Only before the command word (`rasen --version`).
    TopLevel,
    /// Before the command word or after any; listed once, in `rasen --help`.
    Everywhere,
    /// After these commands' words; listed in their help.
    Commands(&'static [Name]),
}

/// What a flag takes (with the value's name in help) and where it stores
/// it. A setter may refuse a value, saying why; the parser puts the flag's
/// name in front.
#[derive(Clone, Copy)]
pub enum Takes {
    /// Nothing: giving the flag turns it on.
    Switch(fn(&mut Raw)),
    /// Any UTF-8 text.
    Text(&'static str, fn(&mut Raw, String)),
    /// A directory name (not empty).
    Dir(&'static str, fn(&mut Raw, PathBuf)),
    /// A whole number, 0 or more.
    Number(&'static str, fn(&mut Raw, u64) -> Result<(), String>),
}

/// One flag, defined once.
pub struct Flag {
    /// The name after `--`.
    pub long: &'static str,
    pub short: Option<char>,
    pub takes: Takes,
    /// One sentence for help; the help text wraps it.
    pub help: &'static str,
    pub scope: Scope,
}

/// The word that asks for help on a command (`rasen help stop`).
pub const HELP_WORD: &str = "help";

/// `rasen --help` above its Options list.
pub const PROGRAM_ABOUT: &str = "\
rasen - keeps an autonomous coding agent working through a long task

Usage: rasen [-C DIR] COMMAND [OPTIONS]

Commands:
  init --task TEXT     Store the task (TEXT, or the contents of file TEXT)
  run [--background]   Plan and work through the task (foreground or daemon)
  status [--json]      Show progress, and whether the orchestrator runs
  logs [-n N] [-f]     Show the last N log lines; -f keeps following
  stop [--force] [--timeout SECS]
                       Stop the running orchestrator gracefully (or at once)
  resume [--background]  Continue an interrupted task where it stopped
";

/// `rasen --help` below its Options list.
pub const PROGRAM_AFTER: &str = "Files live in .rasen/ and rasen.yml; see README.md.\n";

/// Every command, in the order of near-spelling hints.
pub const COMMANDS: &[CommandSpec] = &[
    CommandSpec {
        name: Name::Init,
        word: "init",
        usage: "init --task TEXT [--force]",
        about: "\
Creates .rasen/, stores the task in .rasen/task.txt (TEXT itself, or the
contents of the file TEXT names), writes a commented rasen.yml if the project
has none, and sets the status to initialized.
",
        after: "",
    },
    CommandSpec {
        name: Name::Run,
        word: "run",
        usage: "run [--background] [--skip-review] [--skip-qa]",
        about: "\
Runs the orchestration loop: plans the task if there is no plan yet, then
one agent session per subtask until all are completed or a limit is hit.
",
        after: "\
Exit: 0 completed, 1 ended without completing, 2 bad config or state,
130 interrupted (Ctrl-C), 143 terminated (SIGTERM).
",
    },
    CommandSpec {
        name: Name::Resume,
        word: "resume",
        usage: "resume [--background] [--skip-review] [--skip-qa]",
        about: "\
Continues the saved task: completed subtasks are kept, the interrupted one
is retried first. Refuses when an orchestrator already runs.
",
        after: "",
    },
    CommandSpec {
        name: Name::Status,
        word: "status",
        usage: "status [--json]",
        about: "\
Shows status, PID, iteration, progress, commits, the current subtask and the
last activity. Exit: 0 running, 3 not running, 1 crashed (stale PID file).
",
        after: "",
    },
    CommandSpec { name: Name::Logs, word: "logs", usage: "logs [-n N] [-f]", about: "", after: "" },
    CommandSpec {
        name: Name::Stop,
        word: "stop",
        usage: "stop [--force] [--timeout SECS]",
        about: "\
Sends SIGTERM and waits for a clean exit; the subtask in flight stays
in_progress and is retried by `rasen resume`.
",
        after: "",
    },
];

/// Every flag. A command's flags come first, in the order its help lists
/// them; the flags taken everywhere come last, so that a command's own
/// flags win a tie for the nearest spelling.
pub const FLAGS: &[Flag] = &[
    Flag {
        long: "task",
        short: Some('t'),
        takes: Takes::Text("TEXT", |raw, task| raw.task = Some(task)),
        help: "The task, or a file that holds it",
        scope: Scope::Commands(&[Name::Init]),
    },
    Flag {
        long: "force",
        short: Some('f'),
        takes: Takes::Switch(|raw| raw.force = true),
        help: "Replace an existing task and plan (backups are kept as FILE.bak.TIMESTAMP)",
        scope: Scope::Commands(&[Name::Init]),
    },
    Flag {
        long: "background",
        short: Some('b'),
        takes: Takes::Switch(|raw| raw.run.background = true),
        help: "Run as a daemon; prints its PID and returns",
        scope: Scope::Commands(&[Name::Run, Name::Resume]),
    },
    Flag {
        long: "skip-review",
        short: None,
        takes: Takes::Switch(|raw| raw.run.skip_review = true),
        help: "No effect: the review loop is not in this version",
        scope: Scope::Commands(&[Name::Run, Name::Resume]),
    },
    Flag {
        long: "skip-qa",
        short: None,
        takes: Takes::Switch(|raw| raw.run.skip_qa = true),
        help: "No effect: the QA loop is not in this version",
        scope: Scope::Commands(&[Name::Run, Name::Resume]),
    },
    Flag {
        long: "json",
        short: None,
        takes: Takes::Switch(|raw| raw.json = true),
        help: "Print one JSON object for scripts",
        scope: Scope::Commands(&[Name::Status]),
    },
    Flag {
        long: "lines",
        short: Some('n'),
        takes: Takes::Number("N", set_lines),
        help: "How many of the last lines to show (default 50)",
        scope: Scope::Commands(&[Name::Logs]),
    },
    Flag {
        long: "follow",
        short: Some('f'),
        takes: Takes::Switch(|raw| raw.follow = true),
        help: "Keep printing new lines, like tail -F (Ctrl-C ends)",
        scope: Scope::Commands(&[Name::Logs]),
    },
    Flag {
        long: "force",
        short: None,
        takes: Takes::Switch(|raw| raw.force = true),
        help: "SIGKILL the orchestrator and its agent at once",
        scope: Scope::Commands(&[Name::Stop]),
    },
    Flag {
        long: "timeout",
        short: None,
        takes: Takes::Number("SECS", set_timeout),
        help: "How long to wait for the graceful stop (default 30)",
        scope: Scope::Commands(&[Name::Stop]),
    },
    Flag {
        long: "project-dir",
        short: Some('C'),
        takes: Takes::Dir("DIR", |raw, dir| raw.project_dir = dir),
        help: "Act on the project in DIR (default: current directory)",
        scope: Scope::Everywhere,
    },
    Flag {
        long: "help",
        short: Some('h'),
        takes: Takes::Switch(|raw| raw.help = true),
        help: "Show help (also: rasen COMMAND --help)",
        scope: Scope::Everywhere,
    },
    Flag {
        long: "version",
        short: Some('V'),
        takes: Takes::Switch(|raw| raw.version = true),
        help: "Show the version",
        scope: Scope::TopLevel,
    },
];

fn set_lines(raw: &mut Raw, lines: u64) -> Result<(), String> {
    raw.lines = usize::try_from(lines).unwrap_or(usize::MAX);
    Ok(())
}

fn set_timeout(raw: &mut Raw, seconds: u64) -> Result<(), String> {
    if seconds > MAX_NUMBER {
        return Err(format!("at most {MAX_NUMBER} seconds"));
    }
    raw.timeout_seconds = seconds;
    Ok(())
}

impl Flag {
    /// `--long`, as errors and hints name the flag.
    pub fn long_form(&self) -> String {
        format!("--{}", self.long)
    }

    /// The value's name in help (`SECS`), or None for a switch.
    pub fn value_name(&self) -> Option<&'static str> {
        match self.takes {
            Takes::Switch(_) => None,
            Takes::Text(name, _) | Takes::Dir(name, _) | Takes::Number(name, _) => Some(name),
        }
    }

    /// How help lists the flag: `-n, --lines N`, `--skip-qa`.
    pub fn label(&self) -> String {
        let mut label = match self.short {
            Some(letter) => format!("-{letter}, --{}", self.long),
            None => self.long_form(),
        };
        if let Some(value) = self.value_name() {
            label = format!("{label} {value}");
        }
        label
    }

    /// Whether the flag may be given at `place`.
    pub fn is_taken_at(&self, place: Place) -> bool {
        match (self.scope, place) {
            (Scope::Everywhere, _) | (Scope::TopLevel, Place::Top) => true,
            (Scope::Commands(names), Place::After(name)) => names.contains(&name),
            _ => false,
        }
    }

    /// Whether the help for `place` lists the flag: a flag taken everywhere
    /// is listed once, in `rasen --help`.
    pub fn is_listed_at(&self, place: Place) -> bool {
        match self.scope {
            Scope::Everywhere => place == Place::Top,
            _ => self.is_taken_at(place),
        }
    }
}

/// The command spelled `word`, if any.
pub fn command(word: &str) -> Option<&'static CommandSpec> {
    COMMANDS.iter().find(|spec| spec.word == word)
}

/// Every command word, `help` included, for near-spelling hints.
pub fn command_words() -> Vec<&'static str> {
    COMMANDS.iter().map(|spec| spec.word).chain([HELP_WORD]).collect()
}

/// The flags taken at `place`, in table order.
pub fn flags_at(place: Place) -> impl Iterator<Item = &'static Flag> {
    FLAGS.iter().filter(move |flag| flag.is_taken_at(place))
}

/// The flag spelled `--long` at `place`.
pub fn find_long(long: &str, place: Place) -> Option<&'static Flag> {
    flags_at(place).find(|flag| flag.long == long)
}

/// The flag spelled `-letter` at `place`.
pub fn find_short(letter: char, place: Place) -> Option<&'static Flag> {
    flags_at(place).find(|flag| flag.short == Some(letter))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn every_place() -> impl Iterator<Item = Place> {
        [Place::Top].into_iter().chain(COMMANDS.iter().map(|spec| Place::After(spec.name)))
    }

    #[test]
    fn every_command_is_defined_once() {
        for (i, spec) in COMMANDS.iter().enumerate() {
            let twins = COMMANDS[i + 1..].iter().filter(|other| other.name == spec.name);
            assert_eq!(twins.count(), 0, "{:?} twice", spec.name);
            assert_eq!(command(spec.word).map(|found| found.name), Some(spec.name));
        }
        assert_eq!(COMMANDS.len(), 6, "one per Name");
        assert!(command(HELP_WORD).is_none(), "help is no command of the table");
    }

    #[test]
    fn no_place_takes_two_flags_of_one_spelling() {
        for place in every_place() {
            let flags: Vec<&Flag> = flags_at(place).collect();
            for (i, a) in flags.iter().enumerate() {
                for b in &flags[i + 1..] {
                    assert_ne!(a.long, b.long, "--{} twice at {place:?}", a.long);
                    assert!(a.short.is_none() || a.short != b.short, "-{:?} at {place:?}", a.short);
                }
            }
        }
    }

    #[test]
    fn every_flag_is_taken_and_listed_somewhere() {
        for flag in FLAGS {
            assert!(every_place().any(|place| flag.is_listed_at(place)), "--{}", flag.long);
            assert!(!flag.help.is_empty(), "--{} has no help", flag.long);
        }
    }

    #[test]
    fn every_usage_line_names_the_command_and_its_flags() {
        for spec in COMMANDS {
            assert!(spec.usage.starts_with(&format!("{} ", spec.word)), "{}", spec.usage);
            for flag in FLAGS.iter().filter(|flag| flag.is_listed_at(Place::After(spec.name))) {
                let short = flag.short.map(|letter| format!("-{letter}"));
                let named = spec.usage.contains(&flag.long_form())
                    || short.is_some_and(|short| spec.usage.contains(&short));
                assert!(named, "usage of {} does not name --{}", spec.word, flag.long);
            }
        }
    }

    #[test]
    fn flags_are_found_by_either_spelling_only_where_taken() {
        let logs = Place::After(Name::Logs);
        assert_eq!(find_short('f', logs).map(|flag| flag.long), Some("follow"));
        assert_eq!(find_short('f', Place::After(Name::Init)).map(|flag| flag.long), Some("force"));
        assert!(find_short('f', Place::After(Name::Stop)).is_none());
        assert!(find_long("version", logs).is_none());
        assert!(find_long("version", Place::Top).is_some());
        assert!(find_long("project-dir", logs).is_some());
        assert!(find_long("json", Place::Top).is_none());
    }

    #[test]
    fn labels_show_the_short_letter_and_the_value() {
        let label = |long: &str, place| find_long(long, place).map(Flag::label);
        assert_eq!(label("lines", Place::After(Name::Logs)).as_deref(), Some("-n, --lines N"));
        assert_eq!(label("timeout", Place::After(Name::Stop)).as_deref(), Some("--timeout SECS"));
        assert_eq!(label("skip-qa", Place::After(Name::Run)).as_deref(), Some("--skip-qa"));
    }

    #[test]
    fn command_words_end_with_help() {
        assert_eq!(command_words(), ["init", "run", "resume", "status", "logs", "stop", "help"]);
    }
}
