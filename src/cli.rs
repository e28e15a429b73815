//! The command line: lexopt's raw arguments → one `Cli` value. Parsing
//! never acts; it only describes what was asked. `--help` and `--version`
//! are commands of their own so `main` can print them and exit 0. Every
//! usage error names the flag and the value and exits 2, with a near
//! spelling when the word looks like a typo.

use std::ffi::OsString;
use std::path::PathBuf;

use lexopt::prelude::*;

use crate::error::{Error, Result};

/// What the user asked for, and where.
#[derive(Debug, PartialEq)]
pub struct Cli {
    pub project_dir: PathBuf,
    pub command: Command,
}

#[derive(Debug, PartialEq)]
pub enum Command {
    Help(&'static str),
    Version,
    Init { task: String, force: bool },
    Run(RunFlags),
    Resume(RunFlags),
    Status { json: bool },
    Logs { lines: usize, follow: bool },
    Stop { force: bool, timeout_seconds: u64 },
}

/// The flags `run` and `resume` share.
#[derive(Debug, Default, PartialEq)]
pub struct RunFlags {
    pub background: bool,
    pub skip_review: bool,
    pub skip_qa: bool,
}

const COMMANDS: &[&str] = &["init", "run", "resume", "status", "logs", "stop", "help"];

pub const MAIN_HELP: &str = "\
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

Options:
  -C, --project-dir DIR  Act on the project in DIR (default: current directory)
  -h, --help             Show help (also: rasen COMMAND --help)
  -V, --version          Show the version

Files live in .rasen/ and rasen.yml; see README.md.
";

const INIT_HELP: &str = "\
Usage: rasen init --task TEXT [--force]

Creates .rasen/, stores the task in .rasen/task.txt (TEXT itself, or the
contents of the file TEXT names), writes a commented rasen.yml if the project
has none, and sets the status to initialized.

Options:
  -t, --task TEXT  The task, or a file that holds it
  -f, --force      Replace an existing task and plan (backups are kept as
                   FILE.bak.TIMESTAMP)
";

const RUN_HELP: &str = "\
Usage: rasen run [--background] [--skip-review] [--skip-qa]

Runs the orchestration loop: plans the task if there is no plan yet, then
one agent session per subtask until all are completed or a limit is hit.

Options:
  -b, --background  Run as a daemon; prints its PID and returns
  --skip-review     Do not run the review loop after the subtasks
  --skip-qa         Do not run the QA loop after the subtasks

Exit: 0 completed, 1 ended without completing, 2 bad config or state,
130 interrupted (Ctrl-C), 143 terminated (SIGTERM).
";

const RESUME_HELP: &str = "\
Usage: rasen resume [--background] [--skip-review] [--skip-qa]

Continues the saved task: completed subtasks are kept, the interrupted one
is retried first. Refuses when an orchestrator already runs.

Options:
  -b, --background  Run as a daemon; prints its PID and returns
  --skip-review     Do not run the review loop after the subtasks
  --skip-qa         Do not run the QA loop after the subtasks
";

const STATUS_HELP: &str = "\
Usage: rasen status [--json]

Shows status, PID, iteration, progress, commits, the current subtask and the
last activity. Exit: 0 running, 3 not running, 1 crashed (stale PID file).

Options:
  --json  Print one JSON object for scripts
";

const LOGS_HELP: &str = "\
Usage: rasen logs [-n N] [-f]

Options:
  -n, --lines N  How many of the last lines to show (default 50)
  -f, --follow   Keep printing new lines, like tail -F (Ctrl-C ends)
";

const STOP_HELP: &str = "\
Usage: rasen stop [--force] [--timeout SECS]

Sends SIGTERM and waits for a clean exit; the subtask in flight stays
in_progress and is retried by `rasen resume`.

Options:
  --force           SIGKILL the orchestrator and its agent at once
  --timeout SECS    How long to wait for the graceful stop (default 30)
";

/// Parses the process's own arguments.
pub fn parse_env() -> Result<Cli> {
    parse(std::env::args_os().skip(1))
}

/// Parses `args` (without the program name).
pub fn parse(args: impl IntoIterator<Item = OsString>) -> Result<Cli> {
    let mut parser = lexopt::Parser::from_args(args);
    let mut project_dir = PathBuf::from(".");
    while let Some(arg) = parser.next().map_err(usage)? {
        match arg {
            Short('C') | Long("project-dir") => {
                project_dir = path_value(&mut parser, "--project-dir")?
            }
            Short('h') | Long("help") => {
                return Ok(Cli { project_dir, command: Command::Help(MAIN_HELP) })
            }
            Short('V') | Long("version") => {
                return Ok(Cli { project_dir, command: Command::Version })
            }
            Value(word) => {
                let word = word.to_string_lossy().into_owned();
                let command = parse_command(&word, &mut parser, &mut project_dir)?;
                return Ok(Cli { project_dir, command });
            }
            other => return Err(unexpected(other, &["--project-dir", "--help", "--version"])),
        }
    }
    Err(Error::usage("no command given; try 'rasen --help'"))
}

fn parse_command(word: &str, parser: &mut lexopt::Parser, dir: &mut PathBuf) -> Result<Command> {
    match word {
        "init" => parse_init(parser, dir),
        "run" => parse_run(parser, dir, false),
        "resume" => parse_run(parser, dir, true),
        "status" => parse_status(parser, dir),
        "logs" => parse_logs(parser, dir),
        "stop" => parse_stop(parser, dir),
        "help" => Ok(Command::Help(help_for(parser)?)),
        _ => Err(Error::usage(format!(
            "unknown command \"{word}\"{}; try 'rasen --help'",
            hint(word, COMMANDS)
        ))),
    }
}

fn help_for(parser: &mut lexopt::Parser) -> Result<&'static str> {
    match parser.next().map_err(usage)? {
        Some(Value(word)) => match word.to_string_lossy().as_ref() {
            "init" => Ok(INIT_HELP),
            "run" => Ok(RUN_HELP),
            "resume" => Ok(RESUME_HELP),
            "status" => Ok(STATUS_HELP),
            "logs" => Ok(LOGS_HELP),
            "stop" => Ok(STOP_HELP),
            other => {
                Err(Error::usage(format!("unknown command \"{other}\"{}", hint(other, COMMANDS))))
            }
        },
        _ => Ok(MAIN_HELP),
    }
}

fn parse_init(parser: &mut lexopt::Parser, dir: &mut PathBuf) -> Result<Command> {
    let (mut task, mut force) = (None, false);
    while let Some(arg) = parser.next().map_err(usage)? {
        match arg {
            Short('t') | Long("task") => task = Some(string_value(parser, "--task")?),
            Short('f') | Long("force") => force = true,
            Short('C') | Long("project-dir") => *dir = path_value(parser, "--project-dir")?,
            Short('h') | Long("help") => return Ok(Command::Help(INIT_HELP)),
            other => {
                return Err(unexpected(other, &["--task", "--force", "--project-dir", "--help"]))
            }
        }
    }
    let task = task.ok_or_else(|| Error::usage("init: --task TEXT is required"))?;
    Ok(Command::Init { task, force })
}

fn parse_run(parser: &mut lexopt::Parser, dir: &mut PathBuf, resume: bool) -> Result<Command> {
    let (mut background, mut skip_review, mut skip_qa) = (false, false, false);
    while let Some(arg) = parser.next().map_err(usage)? {
        match arg {
            Short('b') | Long("background") => background = true,
            Long("skip-review") => skip_review = true,
            Long("skip-qa") => skip_qa = true,
            Short('C') | Long("project-dir") => *dir = path_value(parser, "--project-dir")?,
            Short('h') | Long("help") => {
                return Ok(Command::Help(if resume { RESUME_HELP } else { RUN_HELP }))
            }
            other => {
                let known =
                    ["--background", "--skip-review", "--skip-qa", "--project-dir", "--help"];
                return Err(unexpected(other, &known));
            }
        }
    }
    let flags = RunFlags { background, skip_review, skip_qa };
    Ok(if resume { Command::Resume(flags) } else { Command::Run(flags) })
}

fn parse_status(parser: &mut lexopt::Parser, dir: &mut PathBuf) -> Result<Command> {
    let mut json = false;
    while let Some(arg) = parser.next().map_err(usage)? {
        match arg {
            Long("json") => json = true,
            Short('C') | Long("project-dir") => *dir = path_value(parser, "--project-dir")?,
            Short('h') | Long("help") => return Ok(Command::Help(STATUS_HELP)),
            other => return Err(unexpected(other, &["--json", "--project-dir", "--help"])),
        }
    }
    Ok(Command::Status { json })
}

fn parse_logs(parser: &mut lexopt::Parser, dir: &mut PathBuf) -> Result<Command> {
    let (mut lines, mut follow) = (50, false);
    while let Some(arg) = parser.next().map_err(usage)? {
        match arg {
            Short('n') | Long("lines") => lines = number_value(parser, "--lines")? as usize,
            Short('f') | Long("follow") => follow = true,
            Short('C') | Long("project-dir") => *dir = path_value(parser, "--project-dir")?,
            Short('h') | Long("help") => return Ok(Command::Help(LOGS_HELP)),
            other => {
                return Err(unexpected(other, &["--lines", "--follow", "--project-dir", "--help"]))
            }
        }
    }
    Ok(Command::Logs { lines, follow })
}

fn parse_stop(parser: &mut lexopt::Parser, dir: &mut PathBuf) -> Result<Command> {
    let (mut force, mut timeout_seconds) = (false, 30);
    while let Some(arg) = parser.next().map_err(usage)? {
        match arg {
            Long("force") => force = true,
            Long("timeout") => {
                timeout_seconds = number_value(parser, "--timeout")?;
                if timeout_seconds > crate::config::MAX_NUMBER {
                    let max = crate::config::MAX_NUMBER;
                    return Err(Error::usage(format!("--timeout: at most {max} seconds")));
                }
            }
            Short('C') | Long("project-dir") => *dir = path_value(parser, "--project-dir")?,
            Short('h') | Long("help") => return Ok(Command::Help(STOP_HELP)),
            other => {
                return Err(unexpected(other, &["--force", "--timeout", "--project-dir", "--help"]))
            }
        }
    }
    Ok(Command::Stop { force, timeout_seconds })
}

fn string_value(parser: &mut lexopt::Parser, flag: &str) -> Result<String> {
    let value = parser.value().map_err(|_| Error::usage(format!("{flag}: missing value")))?;
    value.into_string().map_err(|v| Error::usage(format!("{flag}: not valid UTF-8: {v:?}")))
}

fn path_value(parser: &mut lexopt::Parser, flag: &str) -> Result<PathBuf> {
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

fn unexpected(arg: lexopt::Arg, known: &[&str]) -> Error {
    match arg {
        Long(flag) => {
            let flag = format!("--{flag}");
            Error::usage(format!("unknown option {flag}{}", hint(&flag, known)))
        }
        Short(c) => Error::usage(format!("unknown option -{c}")),
        Value(v) => Error::usage(format!("unexpected argument \"{}\"", v.to_string_lossy())),
    }
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

    #[test]
    fn help_is_a_command_of_its_own() {
        assert_eq!(parse_words(&["--help"]).unwrap().command, Command::Help(MAIN_HELP));
        assert_eq!(parse_words(&["stop", "-h"]).unwrap().command, Command::Help(STOP_HELP));
        assert_eq!(parse_words(&["help", "logs"]).unwrap().command, Command::Help(LOGS_HELP));
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
    }
}
