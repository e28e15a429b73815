//! The run's log: one line per decision, each starting with a UTC
//! timestamp, appended to the configured log file (`.rasen/rasen.log`).
//! A foreground run also echoes every line to the terminal; a daemon does
//! not need to, its stdout and stderr already point into the same file.
//!
//! A log line is one line, and plays nothing on a terminal that shows it:
//! every control character in a message or an agent's line (a newline
//! too) is written as a visible escape (`text::escape_controls`), so text
//! from a plan or an agent can neither forge a line nor send an escape
//! sequence to whoever runs `rasen logs` or `tail`.
//!
//! The file is opened with O_APPEND (whole lines from several writers never
//! interleave mid-line), O_NOFOLLOW (a symlink planted at the log path is
//! refused, not written through) and mode 0600: agent output may hold
//! secrets. `is_a_rasen_log` tells a log of rasen's from a file it did not
//! write, which it must never append to.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::clock;
use crate::error::{Error, Result};
use crate::text::escape_controls;

struct Logger {
    file: File,
    path: PathBuf,
    echo: bool,
    /// When the path was last compared with the open file.
    checked: Instant,
}

/// How often the log's path is compared with the file rasen writes to.
const REOPEN_CHECK: Duration = Duration::from_secs(1);

static LOGGER: Mutex<Option<Logger>> = Mutex::new(None);

/// Opens (creating) the log file for appending; `echo` copies each line to
/// stdout as well.
pub fn open(path: &Path, echo: bool) -> Result<()> {
    let file = open_for_append(path)?;
    if let Ok(mut slot) = LOGGER.lock() {
        *slot = Some(Logger { file, path: path.to_path_buf(), echo, checked: Instant::now() });
    }
    Ok(())
}

/// Opens `path` for appending the way every log writer must: create with
/// 0600, append, and never through a symlink.
pub fn open_for_append(path: &Path) -> Result<File> {
    // A log moved elsewhere by `background.log_file` may need its directory.
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty() && !d.exists()) {
        crate::store::create_dir(dir)?;
    }
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| Error::io(path, "cannot open the log file", e))?;
    // A log that was there already (left open by an older rasen, or planted)
    // gets agent output too: it must be ours, and private.
    crate::store::make_private(&file, path)?;
    Ok(file)
}

/// Whether the file at `path` may be appended to as rasen's log: nothing
/// is there, or a regular file (not a symlink) that is empty or starts the
/// way every line of rasen's log does, with a UTC timestamp
/// (`2026-01-27T18:45:00Z `).
pub fn is_a_rasen_log(path: &Path) -> bool {
    use std::io::Read;
    let file = match crate::store::open_to_read(path) {
        Ok(Some(file)) => file,
        Ok(None) => return true,
        Err(_) => return false, // a link, or not a plain file
    };
    let mut start = Vec::new();
    if file.take(21).read_to_end(&mut start).is_err() {
        return false;
    }
    start.is_empty() || starts_with_a_timestamp(&start)
}

/// `2026-01-27T18:45:00Z `: digits where `clock::now_iso` puts them.
fn starts_with_a_timestamp(text: &[u8]) -> bool {
    const SHAPE: &[u8] = b"0000-00-00T00:00:00Z ";
    text.len() == SHAPE.len()
        && text
            .iter()
            .zip(SHAPE)
            .all(|(&c, &s)| if s == b'0' { c.is_ascii_digit() } else { c == s })
}

/// Logs one line: `2026-01-27T18:45:00Z message`, control characters
/// escaped. Before `open`, or if the write fails (disk full), the line
/// goes to stderr so it is not lost.
pub fn line(message: &str) {
    write_text(&format_line(message));
}

#[cfg_attr(test, allow(dead_code))] // unit tests capture agent lines instead
/// Logs one line of agent output: `2026-…Z [prefix] text`, control
/// characters escaped.
pub fn agent_line(prefix: &str, text: &str) {
    write_text(&format_agent_line(prefix, text));
}

fn format_line(message: &str) -> String {
    format!("{} {}\n", clock::now_iso(), escape_controls(message.trim_end_matches('\n')))
}

fn format_agent_line(prefix: &str, text: &str) -> String {
    format!(
        "{} [{}] {}\n",
        clock::now_iso(),
        escape_controls(prefix),
        escape_controls(text.trim_end_matches(['\n', '\r']))
    )
}

impl Logger {
    /// A log deleted (`git clean -fX`) or moved away (logrotate without
    /// `copytruncate`) under a running daemon would swallow every later
    /// line; at most once a second, the path is compared with the open
    /// file and, when they differ, reopened (created anew).
    fn reopen_if_replaced(&mut self) {
        if self.checked.elapsed() < REOPEN_CHECK {
            return;
        }
        self.checked = Instant::now();
        let same = match (std::fs::metadata(&self.path), self.file.metadata()) {
            (Ok(at_path), Ok(open)) => at_path.dev() == open.dev() && at_path.ino() == open.ino(),
            _ => false,
        };
        if !same {
            if let Ok(file) = open_for_append(&self.path) {
                self.file = file;
            }
        }
    }
}

fn write_text(text: &str) {
    let mut guard = match LOGGER.lock() {
        Ok(guard) => guard,
        Err(poisoned) => poisoned.into_inner(),
    };
    match guard.as_mut() {
        Some(logger) => {
            logger.reopen_if_replaced();
            let written = logger.file.write_all(text.as_bytes()).is_ok();
            if logger.echo || !written {
                let mut out = std::io::stdout().lock();
                let _ = out.write_all(text.as_bytes());
                let _ = out.flush();
            }
        }
        None => {
            let _ = std::io::stderr().write_all(text.as_bytes());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The message of a formatted line: after its timestamp, before its
    /// one newline.
    fn message_of(line: &str) -> &str {
        assert_eq!(line.matches('\n').count(), 1, "{line:?}");
        let (stamp, message) = line.trim_end_matches('\n').split_once(' ').unwrap();
        assert!(clock::parse_iso(stamp).is_some(), "{line:?}");
        message
    }

    #[test]
    fn a_log_line_stays_one_line_whatever_it_quotes() {
        let forged = "subtask t1\n2026-01-01T00:00:00Z run ended: completed\n";
        assert_eq!(
            message_of(&format_line(forged)),
            "subtask t1\\n2026-01-01T00:00:00Z run ended: completed"
        );
        assert_eq!(
            message_of(&format_agent_line("coder t\r1", "\x1b[31mred\x1b[0m\u{9b}\0\tend\r\n")),
            "[coder t\\r1] \\e[31mred\\e[0m\\u{9b}\\x00\tend"
        );
    }

    #[test]
    fn a_rasen_log_is_absent_empty_or_starts_with_a_timestamp() {
        let dir = std::env::temp_dir().join(format!("rasen-logger-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("rasen.log");
        assert!(is_a_rasen_log(&path), "absent");
        for (text, ours) in [
            ("", true),
            ("2026-01-27T18:45:00Z run started\n", true),
            (&format!("{} [coder] hi\n", clock::now_iso()), true),
            ("A project for a rasen test.\n", false),
            ("2026-01-27 18:45:00 not ours\n", false),
            ("2026-01-27T18:45:00Z", false),
        ] {
            std::fs::write(&path, text).unwrap();
            assert_eq!(is_a_rasen_log(&path), ours, "{text:?}");
        }
        std::fs::remove_file(&path).unwrap();
        std::os::unix::fs::symlink(dir.join("target"), &path).unwrap();
        std::fs::write(dir.join("target"), "").unwrap();
        assert!(!is_a_rasen_log(&path), "a link");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
