//! rasen's integration tests: one test binary that runs the real `rasen`
//! binary in throwaway git projects, with tests/agent/scripted-agent (or
//! tests/agent/fake-claude as `claude`) as the agent.
//!
//! `harness` builds the projects and runs commands with deadlines;
//! `run_support` holds what the `rasen run` tests (`run*`, `recovery`)
//! check in the same way. Each other module is one area of behaviour.

mod harness;
mod run_support;

mod cli;
mod crash;
mod daemon_process;
mod daemon_spec;
mod edges;
mod init;
mod layers;
mod logs_follow;
mod recovery;
mod run;
mod run_claims;
mod run_claude;
mod run_sessions;
mod run_stops;
mod scripted_agent;
mod state_files;
