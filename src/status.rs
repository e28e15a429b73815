//! `status.json`: the run's real-time progress, rewritten (atomically, via
//! `store`) at every change, and read by `rasen status` and by scripts.
//! This file owns the model and its defaults; rendering it for people
//! (text and `--json`) lives below the model.
//!
//! Nothing here decides whether an orchestrator is alive: the run lock
//! does. The `pid` field is a hint for people, never proof.

use miniserde::json::Value;
use miniserde::{Deserialize, Serialize};

use crate::store::{Fields, Kind, StateFile};

/// Where the run stands.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunState {
    #[serde(rename = "initialized")]
    Initialized,
    #[serde(rename = "running")]
    Running,
    /// Sleeping until an agent usage limit resets (`waiting_until`).
    #[serde(rename = "waiting")]
    Waiting,
    #[serde(rename = "stopped")]
    Stopped,
    #[serde(rename = "completed")]
    Completed,
    #[serde(rename = "failed")]
    Failed,
}

impl RunState {
    pub const NAMES: &'static [&'static str] =
        &["initialized", "running", "waiting", "stopped", "completed", "failed"];

    pub fn as_str(self) -> &'static str {
        match self {
            RunState::Initialized => "initialized",
            RunState::Running => "running",
            RunState::Waiting => "waiting",
            RunState::Stopped => "stopped",
            RunState::Completed => "completed",
            RunState::Failed => "failed",
        }
    }

    /// Whether the run is over (it ended one way or another).
    pub fn is_final(self) -> bool {
        matches!(self, RunState::Stopped | RunState::Completed | RunState::Failed)
    }
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct StatusFile {
    pub version: u32,
    pub status: RunState,
    /// Why the run ended: completed, max_iterations, stalled, blocked…
    pub reason: Option<String>,
    /// The orchestrator's PID while it runs.
    pub pid: Option<i32>,
    /// Agent sessions so far, for the whole task (survives resume).
    pub iteration: u64,
    /// `Coding`, `Initializer`, `Review 2/3`, `QA 5/50`.
    pub phase: Option<String>,
    pub subtask_id: Option<String>,
    pub subtask_description: Option<String>,
    pub completed_subtasks: u64,
    pub total_subtasks: u64,
    pub total_commits: u64,
    pub started_at: Option<String>,
    pub last_activity: Option<String>,
    pub last_error: Option<String>,
    pub tokens: Option<u64>,
    pub input_tokens: Option<u64>,
    pub output_tokens: Option<u64>,
    pub cost_usd: Option<f64>,
    /// The running agent (leader of its process group), or none.
    pub agent_pid: Option<i32>,
    /// With `waiting`: when the usage limit resets.
    pub waiting_until: Option<String>,
}

impl StatusFile {
    /// The status `rasen init` writes: nothing has run yet.
    pub fn initialized() -> StatusFile {
        StatusFile {
            version: 1,
            status: RunState::Initialized,
            reason: None,
            pid: None,
            iteration: 0,
            phase: None,
            subtask_id: None,
            subtask_description: None,
            completed_subtasks: 0,
            total_subtasks: 0,
            total_commits: 0,
            started_at: None,
            last_activity: None,
            last_error: None,
            tokens: None,
            input_tokens: None,
            output_tokens: None,
            cost_usd: None,
            agent_pid: None,
            waiting_until: None,
        }
    }
}

impl Default for StatusFile {
    fn default() -> Self {
        StatusFile::initialized()
    }
}

impl StateFile for StatusFile {
    fn check_shape(value: &Value) -> std::result::Result<(), String> {
        let status = Fields::top(value)?;
        status.required("version", Kind::SmallCount)?;
        status.required("status", Kind::OneOf(RunState::NAMES))?;
        status.optional("reason", Kind::Text)?;
        status.optional("pid", Kind::Pid)?;
        status.required("iteration", Kind::Count)?;
        for text in ["phase", "subtask_id", "subtask_description"] {
            status.optional(text, Kind::Text)?;
        }
        for count in ["completed_subtasks", "total_subtasks", "total_commits"] {
            status.required(count, Kind::Count)?;
        }
        for text in ["started_at", "last_activity", "last_error"] {
            status.optional(text, Kind::Text)?;
        }
        for count in ["tokens", "input_tokens", "output_tokens"] {
            status.optional(count, Kind::Count)?;
        }
        status.optional("cost_usd", Kind::Number)?;
        status.optional("agent_pid", Kind::Pid)?;
        status.optional("waiting_until", Kind::Text)
    }

    fn version(&self) -> Option<u32> {
        Some(self.version)
    }
}

// ---------------------------------------------------------------------------
// Rendering (text and --json) follows here.
// ---------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{self, testing::TempDir};
    use std::fs;

    const INITIALIZED: &str = r#"{
  "version": 1,
  "status": "initialized",
  "reason": null,
  "pid": null,
  "iteration": 0,
  "phase": null,
  "subtask_id": null,
  "subtask_description": null,
  "completed_subtasks": 0,
  "total_subtasks": 0,
  "total_commits": 0,
  "started_at": null,
  "last_activity": null,
  "last_error": null,
  "tokens": null,
  "input_tokens": null,
  "output_tokens": null,
  "cost_usd": null,
  "agent_pid": null,
  "waiting_until": null
}
"#;

    #[test]
    fn initialized_status_is_written_in_field_order() {
        assert_eq!(store::to_pretty_json(&StatusFile::initialized()), INITIALIZED);
    }

    #[test]
    fn status_round_trips() {
        let dir = TempDir::new("status-roundtrip");
        let path = dir.join("status.json");
        let mut status = StatusFile::initialized();
        status.status = RunState::Waiting;
        status.pid = Some(12345);
        status.iteration = 5;
        status.phase = Some("Review 2/3".into());
        status.cost_usd = Some(1.25);
        status.agent_pid = Some(-1);
        store::save(&path, &status).unwrap();
        assert_eq!(store::load::<StatusFile>(&path).unwrap(), Some(status));
    }

    #[test]
    fn bad_status_file_is_reported_and_kept() {
        let dir = TempDir::new("status-bad");
        let path = dir.join("status.json");
        let cases = [
            (
                INITIALIZED.replace("\"initialized\"", "\"sleeping\""),
                ": status \"sleeping\" is not one of initialized, running, waiting, stopped, \
                 completed, failed",
            ),
            (
                INITIALIZED.replace("\"pid\": null", "\"pid\": \"123\""),
                ": \"pid\" must be a process id (a whole number), found \"123\"",
            ),
            (INITIALIZED.replace("  \"iteration\": 0,\n", ""), ": missing field \"iteration\""),
            (
                INITIALIZED.replace("\"tokens\": null,", "\"tokens\": null"),
                ":17:3: expected ',' or '}' after a field, found '\"'",
            ),
        ];
        for (contents, what) in cases {
            fs::write(&path, &contents).unwrap();
            let err = store::load::<StatusFile>(&path).unwrap_err();
            let expected = format!("{}{what};", path.display());
            assert!(err.message.starts_with(&expected), "{err}\nexpected: {expected}");
            assert_eq!(fs::read_to_string(&path).unwrap(), contents);
        }
    }

    #[test]
    fn run_states_know_when_the_run_is_over() {
        assert!(!RunState::Running.is_final());
        assert!(!RunState::Waiting.is_final());
        assert!(RunState::Stopped.is_final() && RunState::Completed.is_final());
    }
}
