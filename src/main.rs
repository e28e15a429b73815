//! rasen: keeps an autonomous coding agent working through a long task.
//! Entry point: parse the command line, run the command, print an error as
//! `rasen: error: …` once, and exit with the code the error carries.

mod clock;
mod error;
mod logger;
mod signals;
mod sys;

fn main() {
    println!("rasen {}", env!("CARGO_PKG_VERSION"));
}
