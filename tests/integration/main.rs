//! rasen's integration tests: one test binary that runs the real `rasen`
//! binary in throwaway git projects, with tests/agent/scripted-agent (or
//! tests/agent/fake-claude as `claude`) as the agent.
//!
//! `harness` builds the projects and runs commands with deadlines;
//! `run_support` holds what the `rasen run` tests (`run*`, `recovery`)
//! check in the same way. Each other module is one area of behaviour.

mod harness;
mod run_support;

mod agent_identity;
mod cli;
mod control_chars;
mod crash;
mod daemon_process;
mod daemon_spec;
mod edges;
mod init;
mod layers;
mod logs_follow;
mod privacy;
mod records;
mod recovery;
mod run;
mod run_claims;
mod run_claude;
mod run_endings;
mod run_sessions;
mod run_stops;
mod scripted_agent;
mod start_refusals;
mod startup_and_stop;
mod state_files;
