//! rasen: keeps an autonomous coding agent working through a long task.
//! Entry point: parse the command line, run the command, print an error as
//! `rasen: error: …` once, and exit with the code the error carries.

// Until every module is wired into a command, parts of them are unused.
#![allow(dead_code)]

mod agent;
mod claude;
mod cli;
mod clock;
mod config;
mod daemon;
mod error;
mod events;
mod git;
mod history;
mod logger;
mod logs;
mod orchestrator;
mod plan;
mod prompts;
mod signals;
mod status;
mod store;
mod sys;
mod yaml;

fn main() {
    println!("rasen {}", env!("CARGO_PKG_VERSION"));
}
