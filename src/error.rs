//! The one error type: a message that already carries its context (file,
//! line, key, what to do) and the exit code it maps to. `main` prints it once
//! as `rasen: error: …`; nothing else prints errors.

use std::fmt;
use std::io;
use std::path::Path;

/// Exit code: the run ended without completing, or an operation failed.
pub const EXIT_FAILED: i32 = 1;
/// Exit code: bad usage, configuration or state file.
pub const EXIT_USAGE: i32 = 2;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    pub code: i32,
    pub message: String,
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// Bad command line (exit 2).
    pub fn usage(message: impl Into<String>) -> Error {
        Error { code: EXIT_USAGE, message: message.into() }
    }

    /// Bad configuration: rasen.yml, environment, missing agent (exit 2).
    pub fn config(message: impl Into<String>) -> Error {
        Error { code: EXIT_USAGE, message: message.into() }
    }

    /// A state file that cannot be used as it is (exit 2). The file is kept.
    pub fn state(message: impl Into<String>) -> Error {
        Error { code: EXIT_USAGE, message: message.into() }
    }

    /// An operation that failed (exit 1).
    pub fn failed(message: impl Into<String>) -> Error {
        Error { code: EXIT_FAILED, message: message.into() }
    }

    /// An I/O failure on `path` while doing `what` (exit 1).
    pub fn io(path: &Path, what: &str, err: io::Error) -> Error {
        Error::failed(format!("{}: {what}: {err}", path.display()))
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}
