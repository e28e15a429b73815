//! What differs between backends when a session starts: the command line
//! ([`argv_for`]) and which reader reads the output ([`ReaderKind`]); and
//! the agent's program, found the way exec will find it. Adding a backend
//! adds an arm to `argv_for`, a kind here, and a module with its reader.
//!
//! This module never starts a process: it names what to start and how to
//! read it.

use std::ffi::OsStr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::claude;
use crate::clock;
use crate::config::{AgentConfig, Backend};
use crate::error::{Error, Result};
use crate::reader::{Reader, TextReader};

/// How a session's output is read: the backend chooses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReaderKind {
    /// Claude Code's `--output-format stream-json` on stdout; stderr is text.
    ClaudeStreamJson,
    /// Text, in which a usage-limit message or a refusal to run as root is
    /// recognized: the `command` backend (often a wrapper around an agent
    /// CLI).
    AgentText,
    /// Text that is only logged and scanned: a verify command's output.
    PlainText,
}

impl ReaderKind {
    pub(super) fn reader(self) -> Box<dyn Reader> {
        match self {
            ReaderKind::ClaudeStreamJson => Box::new(claude::StreamReader::new()),
            ReaderKind::AgentText => Box::new(TextReader::watching(clock::now_secs)),
            ReaderKind::PlainText => Box::new(TextReader::plain()),
        }
    }
}

/// The command line of a session of `agent`'s backend, with `program` (the
/// resolved `agent.command`) first, and how its output is read.
pub fn argv_for(agent: &AgentConfig, program: &str) -> (Vec<String>, ReaderKind) {
    match agent.backend {
        Backend::Claude => {
            (claude::claude_argv(program, &agent.model, &agent.args), ReaderKind::ClaudeStreamJson)
        }
        Backend::Command => {
            let mut argv = vec![program.to_string()];
            argv.extend(agent.args.iter().cloned());
            (argv, ReaderKind::AgentText)
        }
    }
}

pub(super) const FIX_COMMAND: &str = "set agent.command in rasen.yml or RASEN_AGENT_COMMAND";

/// `command` as the agent started in `cwd` would find it, as an absolute
/// path, or the configuration error that names it. Lets the orchestrator
/// check the agent before any session starts.
pub fn resolve_agent_command(command: &str, cwd: &Path) -> Result<PathBuf> {
    resolve_program(command, cwd, std::env::var_os("PATH").as_deref())
}

pub(super) fn resolve_program(command: &str, cwd: &Path, path: Option<&OsStr>) -> Result<PathBuf> {
    let found = find_executable_in(command, cwd, path).ok_or_else(|| {
        Error::config(if command.is_empty() {
            format!("agent command is empty ({FIX_COMMAND})")
        } else if command.contains('/') {
            format!(
                "agent command \"{command}\" is not an executable file (in {}) ({FIX_COMMAND})",
                cwd.display()
            )
        } else {
            format!("agent command \"{command}\" not found in PATH ({FIX_COMMAND})")
        })
    })?;
    if found.is_absolute() {
        return Ok(found);
    }
    // Absolute, so that the child's chdir cannot change what it names.
    std::env::current_dir()
        .map(|dir| dir.join(&found))
        .map_err(|e| Error::failed(format!("cannot read the current directory: {e}")))
}

/// Looks `command` up the way exec would after a chdir to `dir`: a name with
/// a `/` relative to `dir`, else each `$PATH` entry (relative entries, and
/// the empty one, relative to `dir` too).
fn find_executable_in(command: &str, dir: &Path, path: Option<&OsStr>) -> Option<PathBuf> {
    if command.is_empty() {
        return None;
    }
    if command.contains('/') {
        let candidate = dir.join(command);
        return is_executable_file(&candidate).then_some(candidate);
    }
    let path = path.unwrap_or(OsStr::new("/usr/local/bin:/usr/bin:/bin"));
    std::env::split_paths(path)
        .map(|entry| dir.join(entry).join(command))
        .find(|c| is_executable_file(c))
}

fn is_executable_file(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The executable `command` names: a path when it contains `/`
    /// (relative to the current directory), otherwise the first match in
    /// `$PATH`.
    fn find_executable(command: &str) -> Option<PathBuf> {
        // Joined onto "", a relative name stays as written ("./agent").
        find_executable_in(command, Path::new(""), std::env::var_os("PATH").as_deref())
    }

    #[test]
    fn each_backend_has_its_command_line_and_reader() {
        let agent = AgentConfig {
            model: "opus".into(),
            args: vec!["--max-turns".into(), "40".into()],
            ..AgentConfig::default()
        };
        let (argv, reader) = argv_for(&agent, "/bin/claude");
        assert_eq!(argv, claude::claude_argv("/bin/claude", "opus", &agent.args));
        assert_eq!(reader, ReaderKind::ClaudeStreamJson);
        let command = AgentConfig { backend: Backend::Command, ..agent };
        let (argv, reader) = argv_for(&command, "/bin/agent");
        assert_eq!(argv, ["/bin/agent", "--max-turns", "40"]);
        assert_eq!(reader, ReaderKind::AgentText);
    }

    #[test]
    fn executables_are_found_in_path_or_by_path() {
        let sh = find_executable("sh").unwrap();
        assert!(sh.is_absolute() && sh.ends_with("sh"));
        assert_eq!(find_executable("no-such-command-rasen"), None);
        assert_eq!(find_executable(""), None);
        // A directory or a file without execute permission is not one.
        assert_eq!(
            find_executable_in("./tests", Path::new(env!("CARGO_MANIFEST_DIR")), None),
            None
        );
        assert_eq!(find_executable("./Cargo.toml"), None);
        let sh_dir = sh.parent().unwrap();
        let relative = format!("./{}", sh.file_name().unwrap().to_str().unwrap());
        assert_eq!(find_executable_in(&relative, sh_dir, None), Some(sh_dir.join(&relative)));
        let found = resolve_agent_command("sh", Path::new("/")).unwrap();
        assert!(found.is_absolute());
    }
}
