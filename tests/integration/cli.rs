//! The command line and rasen.yml through the real binary: version and help,
//! usage errors that name the flag and the value, near-spelling hints, a
//! closed output pipe, `-C DIR`, configuration errors with file, line and
//! column, the environment layer, a missing agent, and the crate's
//! dependency rule.

use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::ExitStatusExt;
use std::process::Stdio;

use crate::harness::*;

const COMMANDS: [&str; 6] = ["init", "run", "resume", "status", "logs", "stop"];

/// The one `rasen: warning:` line that status, logs and stop print for a
/// broken configuration before carrying on with the default paths.
fn warning_line(r: &RunResult) -> &str {
    let mut lines = r.stderr.lines();
    let (Some(first), None) = (lines.next(), lines.next()) else {
        panic!("expected exactly one line on stderr\n{r}");
    };
    first.strip_prefix("rasen: warning: ").unwrap_or_else(|| panic!("no `rasen: warning:`\n{r}"))
}

/// The one line a usage or configuration error prints, without the prefix;
/// panics unless stderr is exactly one `rasen: error: …` line.
fn error_line(r: &RunResult) -> &str {
    let mut lines = r.stderr.lines();
    let (Some(first), None) = (lines.next(), lines.next()) else {
        panic!("expected exactly one line on stderr\n{r}");
    };
    first.strip_prefix("rasen: error: ").unwrap_or_else(|| panic!("no `rasen: error:`\n{r}"))
}

// --- version and help ------------------------------------------------------------

#[test]
fn version_prints_the_package_version() {
    let p = Project::new("cli-version");
    for flag in ["--version", "-V"] {
        let r = p.rasen(&[flag]).expect_code(0);
        assert_eq!(r.stdout, format!("rasen {}\n", env!("CARGO_PKG_VERSION")), "{flag}");
        assert_eq!(r.stderr, "", "{flag}");
    }
}

#[test]
fn help_exits_0_for_rasen_and_for_every_command() {
    let p = Project::new("cli-help");
    let main = p.rasen(&["--help"]).expect_code(0);
    assert!(main.stdout.starts_with("rasen - "), "{main}");
    for command in COMMANDS {
        assert!(main.stdout.contains(&format!("\n  {command} ")), "{command} not listed\n{main}");
    }
    assert_eq!(p.rasen(&["-h"]).expect_code(0).stdout, main.stdout);
    assert_eq!(p.rasen(&["help"]).expect_code(0).stdout, main.stdout);

    for command in COMMANDS {
        let r = p.rasen(&[command, "--help"]).expect_code(0);
        assert!(r.stdout.starts_with(&format!("Usage: rasen {command}")), "{r}");
        assert_eq!(r.stderr, "");
        assert_eq!(p.rasen(&[command, "-h"]).expect_code(0).stdout, r.stdout, "{command} -h");
        assert_eq!(p.rasen(&["help", command]).expect_code(0).stdout, r.stdout, "help {command}");
    }
    assert!(!p.path(".rasen").exists(), "help must not touch the project");
}

#[test]
fn help_wins_over_a_missing_required_flag() {
    let p = Project::new("cli-help-init");
    let r = p.rasen(&["init", "--help"]).expect_code(0);
    assert!(r.stdout.contains("--task TEXT"), "{r}");
    assert!(!p.path(".rasen").exists());
}

// --- usage errors ----------------------------------------------------------------

#[test]
fn an_invalid_number_names_the_flag_and_the_value() {
    let p = Project::new("cli-number");
    let r = p.rasen(&["logs", "--lines", "abc"]).expect_code(2);
    assert_eq!(r.stderr, "rasen: error: --lines: invalid number \"abc\"\n");
    assert_eq!(r.stdout, "");
    let r = p.rasen(&["logs", "-n", "-3"]).expect_code(2);
    assert_eq!(error_line(&r), "--lines: invalid number \"-3\"");
    let r = p.rasen(&["stop", "--timeout", "soon"]).expect_code(2);
    assert_eq!(error_line(&r), "--timeout: invalid number \"soon\"");
    let r = p.rasen(&["stop", "--timeout"]).expect_code(2);
    assert_eq!(error_line(&r), "--timeout: missing value");
}

#[test]
fn an_unknown_command_suggests_the_near_spelling() {
    let p = Project::new("cli-command");
    let r = p.rasen(&["stauts"]).expect_code(2);
    let line = error_line(&r);
    assert!(line.contains("unknown command \"stauts\""), "{r}");
    assert!(line.contains("(did you mean \"status\"?)"), "{r}");
    assert_eq!(r.stdout, "");

    let r = p.rasen(&["resme"]).expect_code(2);
    assert!(error_line(&r).contains("(did you mean \"resume\"?)"), "{r}");
    let r = p.rasen(&["frobnicate"]).expect_code(2);
    let line = error_line(&r);
    assert!(line.contains("unknown command \"frobnicate\"") && !line.contains("did you mean"));
    let r = p.rasen(&["help", "stpo"]).expect_code(2);
    assert!(error_line(&r).contains("(did you mean \"stop\"?)"), "{r}");
}

#[test]
fn an_unknown_flag_suggests_the_near_spelling() {
    let p = Project::new("cli-flag");
    let cases = [
        (
            &["run", "--backgroud"][..],
            "unknown option --backgroud (did you mean \"--background\"?)",
        ),
        (&["status", "--jsn"][..], "unknown option --jsn (did you mean \"--json\"?)"),
        (&["logs", "--follw"][..], "unknown option --follw (did you mean \"--follow\"?)"),
        (&["stop", "--forse"][..], "unknown option --forse (did you mean \"--force\"?)"),
        (&["init", "--tsak", "x"][..], "unknown option --tsak (did you mean \"--task\"?)"),
        (&["--verison"][..], "unknown option --verison (did you mean \"--version\"?)"),
    ];
    for (args, expected) in cases {
        let r = p.rasen(args).expect_code(2);
        assert!(error_line(&r).contains(expected), "rasen {}\n{r}", args.join(" "));
    }
    let r = p.rasen(&["run", "--zzzzzzzz"]).expect_code(2);
    assert_eq!(error_line(&r), "unknown option --zzzzzzzz");
    assert!(!p.path(".rasen").exists(), "a usage error must not touch the project");
}

#[test]
fn no_command_and_stray_arguments_are_usage_errors() {
    let p = Project::new("cli-stray");
    let r = p.rasen(&[]).expect_code(2);
    assert!(error_line(&r).contains("no command"), "{r}");
    let r = p.rasen(&["status", "extra"]).expect_code(2);
    assert!(error_line(&r).contains("\"extra\""), "{r}");
    let r = p.rasen(&["init"]).expect_code(2);
    assert!(error_line(&r).contains("--task"), "{r}");
    let r = p.rasen(&["-C"]).expect_code(2);
    assert!(error_line(&r).contains("--project-dir: missing value"), "{r}");
}

// --- a closed output pipe ----------------------------------------------------------

/// Writes a log of `n` numbered lines, far more than a pipe buffer holds.
fn write_long_log(p: &Project, n: usize) {
    let log: String = (1..=n).map(|i| format!("line {i} of a long log\n")).collect();
    p.write(".rasen/rasen.log", &log);
}

/// `rasen ARGS | head -1`: reads one line, closes the pipe, and returns the
/// line and how rasen ended.
fn read_one_line_then_close(p: &Project, args: &[&str]) -> (String, RunResult) {
    let mut cmd = p.command(env!("CARGO_BIN_EXE_rasen"));
    cmd.args(args).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = KillOnDrop(cmd.spawn().unwrap());
    let mut first = String::new();
    let mut stdout = BufReader::new(child.0.stdout.take().unwrap());
    stdout.read_line(&mut first).unwrap();
    drop(stdout);
    let pid = child.0.id() as i32;
    wait_until(20, "rasen ends once its reader has gone", || process_gone(pid));
    let status = child.0.wait().unwrap();
    let mut stderr = String::new();
    child.0.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
    let code = status.code().unwrap_or_else(|| 128 + status.signal().unwrap_or(0));
    (first, RunResult { code, stdout: String::new(), stderr })
}

#[test]
fn logs_into_a_closed_pipe_ends_quietly() {
    let p = Project::new("cli-pipe");
    write_long_log(&p, 200_000);
    let (first, r) = read_one_line_then_close(&p, &["logs", "-n", "200000"]);
    assert_eq!(first, "line 1 of a long log\n");
    assert!(!r.stderr.contains("panicked"), "{r}");
    assert_eq!(r.stderr, "", "a closed pipe is not an error");
    assert_eq!(r.code, 0, "{r}");
}

#[test]
fn following_logs_into_a_closed_pipe_ends_quietly() {
    let p = Project::new("cli-pipe-follow");
    write_long_log(&p, 200_000);
    let (first, r) = read_one_line_then_close(&p, &["logs", "--follow", "-n", "200000"]);
    assert_eq!(first, "line 1 of a long log\n");
    assert!(!r.stderr.contains("panicked"), "{r}");
    assert_eq!(r.stderr, "", "a closed pipe is not an error");
    assert_eq!(r.code, 0, "{r}");
}

// --- -C DIR ----------------------------------------------------------------------

#[test]
fn project_dir_flag_acts_on_another_directory() {
    let p = Project::new("cli-dir");
    let elsewhere = p.scripted_dir();
    let dir = p.dir().to_str().unwrap();
    let run_elsewhere = |args: &[&str]| {
        let mut cmd = p.command(env!("CARGO_BIN_EXE_rasen"));
        cmd.current_dir(elsewhere).args(args);
        Spawned::start(cmd, &format!("rasen {}", args.join(" "))).wait(DEFAULT_DEADLINE_SECS)
    };

    run_elsewhere(&["-C", dir, "init", "--task", "Work from afar"]).expect_code(0);
    assert_eq!(p.file(".rasen/task.txt").as_deref(), Some("Work from afar\n"));
    assert!(!elsewhere.join(".rasen").exists(), "init wrote into the current directory");
    assert!(!elsewhere.join("rasen.yml").exists());

    // After the command, and spelled long, it means the same.
    let r = run_elsewhere(&["status", "--project-dir", dir]).expect_code(3);
    assert!(r.stdout.contains("initialized"), "{r}");
    let r = run_elsewhere(&["--project-dir", dir, "status", "--json"]).expect_code(3);
    assert_eq!(get_str(&parse_json(&r.stdout, "status --json"), "status"), Some("initialized"));
    let r = run_elsewhere(&["status"]).expect_code(3);
    assert!(r.stdout.contains("not initialized"), "{r}");

    // A configuration error names the file in that directory.
    p.config("orchestrator:\n  max_iterations: 0\n");
    let expected = format!("{dir}/rasen.yml:2:19: orchestrator.max_iterations: must be at least 1");
    let r = run_elsewhere(&["-C", dir, "run"]).expect_code(2);
    assert!(error_line(&r).starts_with(&expected), "{r}");
    let r = run_elsewhere(&["-C", dir, "status"]).expect_code(3);
    assert!(warning_line(&r).starts_with(&expected), "{r}");
}

#[test]
fn project_dir_that_does_not_exist_is_a_usage_error() {
    let p = Project::new("cli-dir-missing");
    let missing = p.path("no-such-dir");
    let r = p.rasen(&["-C", missing.to_str().unwrap(), "status"]).expect_code(2);
    assert!(error_line(&r).contains("no-such-dir"), "{r}");
    assert!(!missing.exists());
}

// --- rasen.yml errors -------------------------------------------------------------

/// Asserts that `rasen status` and `rasen run` both stop at `yaml` with exit
/// 2 and `rasen.yml:POSITION: WHAT…`, and that no session ran.
fn assert_config_error(yaml: &str, position: &str, what: &str) {
    let p = Project::new("cli-yaml");
    p.rasen(&["init", "--task", "Anything"]).expect_code(0);
    p.config(yaml);
    let prefix = format!("rasen.yml:{position}: ");
    let r = p.rasen(&["run"]).expect_code(2);
    let line = error_line(&r);
    assert!(line.starts_with(&prefix), "run with {yaml:?}: expected {prefix}\n{r}");
    assert!(line.contains(what), "run with {yaml:?}: expected {what:?}\n{r}");
    // status still shows the status, and says what is wrong with the file.
    let r = p.rasen(&["status"]).expect_code(3);
    let line = warning_line(&r);
    assert!(line.starts_with(&prefix), "status with {yaml:?}: expected {prefix}\n{r}");
    assert!(line.contains(what), "status with {yaml:?}: expected {what:?}\n{r}");
    assert!(r.stdout.contains("Status: initialized"), "{r}");
    assert!(p.sessions().is_empty(), "a session ran with a bad rasen.yml");
    assert_eq!(get_str(&p.json(".rasen/status.json"), "status"), Some("initialized"));
}

#[test]
fn tab_in_indentation_is_reported_at_its_line() {
    assert_config_error("orchestrator:\n\tmax_iterations: 5\n", "2:1", "tab in indentation");
    assert_config_error("# limits\nagent:\n  \tmodel: x\n", "3:3", "tab in indentation");
}

#[test]
fn inconsistent_indentation_is_reported_at_its_line() {
    assert_config_error(
        "orchestrator:\n    max_iterations: 5\n  session_delay_seconds: 0\n",
        "3:3",
        "inconsistent indentation",
    );
}

#[test]
fn duplicate_key_names_the_first_one() {
    assert_config_error(
        "orchestrator:\n  max_iterations: 5\n  session_delay_seconds: 0\n  max_iterations: 6\n",
        "4:3",
        "duplicate key \"max_iterations\" (first defined at line 2, column 3)",
    );
    assert_config_error("qa:\n  enabled: false\nqa:\n  enabled: true\n", "3:1", "duplicate key");
}

#[test]
fn anchors_aliases_and_tags_are_rejected() {
    assert_config_error("orchestrator:\n  max_iterations: &n 5\n", "2:19", "anchors");
    assert_config_error("agent:\n  model: *m\n", "2:10", "aliases");
    assert_config_error("agent:\n  model: !!str opus\n", "2:10", "tags");
}

#[test]
fn multi_line_strings_are_rejected() {
    assert_config_error("agent:\n  model: |\n    opus\n", "2:10", "multi-line strings");
    assert_config_error("agent:\n  model: >\n    opus\n", "2:10", "multi-line strings");
}

#[test]
fn unknown_key_suggests_the_near_spelling() {
    assert_config_error(
        "orchestrator:\n  max_iteration: 5\n",
        "2:3",
        "unknown key \"max_iteration\" in orchestrator (did you mean \"max_iterations\"?)",
    );
    assert_config_error(
        "# mine\norchestrater:\n  max_iterations: 5\n",
        "2:1",
        "unknown section \"orchestrater\" (did you mean \"orchestrator\"?)",
    );
}

#[test]
fn wrong_type_names_the_key_path() {
    assert_config_error(
        "orchestrator:\n  max_iterations: lots\n",
        "2:19",
        "orchestrator.max_iterations: expected an integer, got \"lots\"",
    );
    assert_config_error(
        "review:\n  enabled: yes\n",
        "2:12",
        "review.enabled: expected true or false, got \"yes\"",
    );
    assert_config_error(
        "agent:\n  backend: gpt\n",
        "2:12",
        "agent.backend: expected one of claude, command, got \"gpt\"",
    );
}

#[test]
fn zero_is_rejected_where_it_makes_no_sense() {
    assert_config_error(
        "orchestrator:\n  idle_timeout_seconds: 0\n",
        "2:25",
        "orchestrator.idle_timeout_seconds: must be at least 1, got 0",
    );
    assert_config_error(
        "stall_detection:\n  max_no_commit_sessions: 0\n",
        "2:27",
        "stall_detection.max_no_commit_sessions: must be at least 1, got 0",
    );
}

// --- the environment layer ----------------------------------------------------------

fn initialized(name: &str) -> Project {
    let p = Project::new(name);
    p.rasen(&["init", "--task", "Layered configuration"]).expect_code(0);
    p
}

#[test]
fn environment_max_iterations_overrides_a_larger_file_value() {
    let mut p = initialized("cli-env-lower");
    p.set_config("orchestrator.max_iterations", "100").env("RASEN_MAX_ITERATIONS", "1");
    let r = p.rasen(&["run"]).expect_code(1);
    let status = p.json(".rasen/status.json");
    assert_eq!(get_str(&status, "reason"), Some("max_iterations"), "{r}");
    assert_eq!(get_u64(&status, "iteration"), Some(1));
    let roles: Vec<_> = p.sessions().into_iter().map(|s| s.role).collect();
    assert_eq!(roles, ["initializer"], "only one session may run\n{r}");
}

#[test]
fn environment_max_iterations_overrides_a_smaller_file_value() {
    let mut p = initialized("cli-env-higher");
    p.set_config("orchestrator.max_iterations", "1").env("RASEN_MAX_ITERATIONS", "100");
    let r = p.rasen(&["run"]).expect_code(0);
    let status = p.json(".rasen/status.json");
    assert_eq!(get_str(&status, "status"), Some("completed"), "{r}");
    assert_eq!(p.sessions().len(), 4, "the initializer and three coders\n{r}");
}

#[test]
fn environment_agent_command_overrides_the_file() {
    let mut p = initialized("cli-env-command");
    p.set_config("agent.command", "rasen-no-such-agent");
    p.rasen(&["run"]).expect_code(2);
    assert!(p.sessions().is_empty());
    let agent = agent_script("scripted-agent");
    p.env("RASEN_AGENT_COMMAND", agent.to_str().unwrap());
    p.rasen(&["run"]).expect_code(0);
    assert_eq!(p.sessions().len(), 4);
}

#[test]
fn bad_environment_value_names_the_variable() {
    let mut p = initialized("cli-env-bad");
    p.env("RASEN_MAX_ITERATIONS", "lots");
    let expected =
        "environment variable RASEN_MAX_ITERATIONS: expected a positive integer, got \"lots\"";
    for args in [&["run"][..], &["run", "--background"]] {
        let r = p.rasen(args).expect_code(2);
        assert_eq!(error_line(&r), expected, "rasen {}", args.join(" "));
    }
    let r = p.rasen(&["status"]).expect_code(3);
    assert!(warning_line(&r).starts_with(expected), "{r}");
    assert!(p.sessions().is_empty());
    assert_eq!(p.daemon_pid(), None);
}

#[test]
fn missing_agent_is_a_configuration_error_before_any_session() {
    let mut p = initialized("cli-no-agent");
    p.set_config("agent.command", "rasen-no-such-agent");
    let before = p.file(".rasen/status.json");
    for args in [&["run"][..], &["run", "--background"], &["resume"]] {
        let r = p.rasen(args).expect_code(2);
        assert!(error_line(&r).contains("\"rasen-no-such-agent\""), "{r}");
        assert!(!r.stdout.contains("Starting daemon"), "{r}");
    }
    assert!(!p.scripted_dir().join("sessions").exists(), "a session started");
    assert_eq!(p.file(".rasen/status.json"), before, "status.json changed");
    assert_eq!(p.daemon_pid(), None);
}

// --- the crate -------------------------------------------------------------------

#[test]
fn dependencies_are_exactly_libc_lexopt_and_miniserde() {
    let manifest =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml")).unwrap();
    let mut section = String::new();
    let mut dependencies = Vec::new();
    for line in manifest.lines().map(str::trim) {
        if line.starts_with('[') {
            section = line.trim_matches(|c| c == '[' || c == ']').trim().to_string();
            assert!(
                !section.contains("dependencies") || section == "dependencies",
                "Cargo.toml has a [{section}] section: tests and builds use std only"
            );
        } else if section == "dependencies" && !line.is_empty() && !line.starts_with('#') {
            let name = line.split('=').next().unwrap().trim();
            dependencies.push(name.to_string());
        }
    }
    dependencies.sort();
    assert_eq!(dependencies, ["lexopt", "libc", "miniserde"]);
}

/// Like git, rasen finds the project from a subdirectory: the nearest
/// parent with `.rasen/`, not looking past the top of the work tree.
#[test]
fn commands_find_the_project_from_a_subdirectory() {
    let p = Project::new("cli-subdir");
    p.rasen(&["init", "--task", "Anything"]).expect_code(0);
    p.rasen(&["run"]).expect_code(0);
    let sub = p.path("src/deep");
    std::fs::create_dir_all(&sub).unwrap();
    let in_sub = |args: &[&str]| {
        let mut cmd = p.command(env!("CARGO_BIN_EXE_rasen"));
        cmd.current_dir(&sub).args(args);
        Spawned::start(cmd, &format!("rasen {}", args.join(" "))).wait(DEFAULT_DEADLINE_SECS)
    };
    let r = in_sub(&["status"]).expect_code(3);
    assert!(r.stdout.contains("Status: completed"), "{r}");
    let r = in_sub(&["logs", "-n", "1"]).expect_code(0);
    assert!(r.stdout.contains("run ended: completed"), "{r}");
    assert!(!sub.join(".rasen").exists(), "nothing was created in the subdirectory");
    // init makes the directory it is given a project, as git init does.
    in_sub(&["init", "--task", "Nested"]).expect_code(0);
    assert!(sub.join(".rasen/task.txt").exists());
}
