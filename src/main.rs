//! rasen: keeps an autonomous coding agent working through a long task.
//! Entry point: parse the command line, run the command, print an error as
//! `rasen: error: …` once, and exit with the code the error carries.
//!
//! Both ways rasen talks to people in lines, `say!` and the error, escape
//! control characters (`text::escape_controls`): what they quote (a task
//! name, a subtask id, a path, an agent's words) may hold any, and an
//! error is one line.

/// Prints a line to stdout for people, control characters escaped (the
/// line may quote a plan, a task or a path). Unlike `println!` it never
/// panics: a closed pipe (`rasen stop | true`) must not abort a command
/// half-way.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let line = format!($($arg)*);
        let _ = writeln!(std::io::stdout(), "{}", crate::text::escape_controls(&line));
    }};
}

mod agent;
mod claude;
mod cli;
mod clock;
mod commands;
mod config;
mod daemon;
mod error;
mod events;
mod fault;
#[cfg(test)]
mod fuzz;
mod git;
mod history;
mod identity;
mod lock;
mod logger;
mod logs;
mod plan;
mod process;
mod project;
mod prompts;
mod reader;
mod reserve;
mod run;
mod signals;
mod spelling;
mod status;
mod stop;
mod store;
mod sys;
mod text;
mod usage_limit;
mod yaml;

use cli::{Command, RunFlags};
use run::RunOptions;

fn main() {
    sys::close_inherited_fds_on_exec();
    let code = match cli::parse_env().and_then(run_command) {
        Ok(code) => code,
        Err(err) => {
            use std::io::Write as _;
            let message = text::escape_controls(&err.message);
            let _ = writeln!(std::io::stderr(), "rasen: error: {message}");
            err.code
        }
    };
    std::process::exit(code);
}

/// Dispatches to the command and returns its exit code.
fn run_command(cli: cli::Cli) -> error::Result<i32> {
    let dir = cli.project_dir.as_path();
    match cli.command {
        Command::Help(text) => commands::print_stdout(&text).map(|()| 0),
        Command::Version => {
            commands::print_stdout(&format!("rasen {}\n", env!("CARGO_PKG_VERSION"))).map(|()| 0)
        }
        Command::Init { task, force } => commands::init(dir, &task, force),
        Command::Run(RunFlags { background, skip_review, skip_qa }) => {
            commands::run(dir, background, RunOptions { skip_review, skip_qa })
        }
        Command::Resume(RunFlags { background, skip_review, skip_qa }) => {
            commands::resume(dir, background, RunOptions { skip_review, skip_qa })
        }
        Command::Status { json } => commands::status(dir, json),
        Command::Logs { lines, follow } => commands::logs(dir, lines, follow),
        Command::Stop { force, timeout_seconds } => commands::stop(dir, force, timeout_seconds),
    }
}
