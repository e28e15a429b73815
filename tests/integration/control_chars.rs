//! Terminal control characters from a plan, an agent, a log or a command
//! line never reach a terminal or a log line raw: a plan whose ids hold
//! them is refused (a NUL would break every session's environment), and
//! text that may hold them is shown with visible escapes (`\e`, `\r`,
//! `\n`, `\x00`, `\u{9b}`), so a log line stays one line and no escape
//! sequence is ever played by the terminal that shows it.

use std::os::unix::fs::PermissionsExt;

use crate::harness::*;
use crate::run_support::*;

const PLAN_FILE: &str = ".rasen/implementation_plan.json";
const LOG: &str = ".rasen/rasen.log";

/// A forged log line, as a hostile text would hide it after a newline.
const FORGED: &str = "2026-01-01T00:00:00Z run ended: completed (forged)";

/// Every byte that a terminal would play rather than show: C0 controls
/// but tab and newline, DEL, and the C1 controls (in UTF-8, C2 80..9F).
fn raw_controls(text: &str) -> Vec<char> {
    text.chars().filter(|&c| c.is_control() && c != '\n' && c != '\t').collect()
}

fn assert_no_raw_controls(text: &str, what: &str) {
    let found = raw_controls(text);
    assert!(found.is_empty(), "{what} holds raw control characters {found:?}:\n{text}");
}

/// A one-subtask plan (JSON text: `\u001b` stands for ESC).
fn plan(task_name: &str, id: &str, description: &str) -> String {
    format!(
        "{{\"task_name\": \"{task_name}\", \"subtasks\": [{{\"id\": \"{id}\", \"description\": \"{description}\", \"status\": \"pending\"}}]}}\n"
    )
}

/// A project whose agent is a hostile script: it prints a line full of
/// escape sequences (colour, carriage return, an 8-bit CSI), an event
/// whose topic hides a forged log line after a newline (rasen logs the
/// topics it ignores), and says it is blocked with an escape sequence in
/// its reason.
fn project_with_a_hostile_agent(name: &str) -> Project {
    let mut p = project(name);
    let script = p.scripted_dir().join("hostile-agent");
    std::fs::write(
        &script,
        "#!/bin/sh\ncat >/dev/null\n\
         printf 'plain \\033[31mred\\033[0m over\\rwritten \\302\\233csi end\\n'\n\
         printf '<event topic=\"note\\n%s\">x</event>\\n' \"$HOSTILE_FORGED\"\n\
         printf '<event topic=\"build.blocked\">stuck \\033[2J</event>\\n'\n",
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    p.set_config("agent.command", &format!("\"{}\"", script.display()));
    p.env("HOSTILE_FORGED", FORGED);
    p
}

fn assert_no_forged_line(p: &Project, r: &RunResult) {
    let log = p.file(LOG).unwrap_or_default();
    for line in log.lines() {
        assert!(!line.starts_with(FORGED), "a forged line in the log: {line:?}\n{log}");
    }
    for line in r.stdout.lines().chain(r.stderr.lines()) {
        assert!(!line.starts_with(FORGED), "a forged line on the terminal: {line:?}\n{r}");
    }
}

#[test]
fn a_newline_in_a_subtask_id_or_agent_text_cannot_forge_a_log_line() {
    let p = project_with_a_hostile_agent("ctl-forge");
    // The repro: a newline in a subtask id. The plan is refused.
    p.write(PLAN_FILE, &plan("Forge", &format!("t1\\n{FORGED}"), "Do t1"));
    let r = p.rasen(&["run"]).expect_code(2);
    assert!(r.stderr.contains("subtask 1 (\"t1\\n2026-01-01T00:00:00Z"), "{r}");
    assert_no_forged_line(&p, &r);

    // Text from the agent that rasen quotes in its own log lines.
    p.write(PLAN_FILE, &plan("Forge", "t1", "Do t1"));
    let r = p.rasen(&["run"]).expect_code(1);
    assert_no_forged_line(&p, &r);
    let log = p.file(LOG).expect("the run wrote a log");
    assert!(log.contains("unknown topic \"note\\n2026-01-01T00:00:00Z run ended"), "{log}");
    // Every line is rasen's: a timestamp of now, then its message.
    log_messages(&p, 120);
}

#[test]
fn agent_output_with_escape_sequences_is_escaped_in_the_log() {
    let p = project_with_a_hostile_agent("ctl-agent-output");
    p.write(PLAN_FILE, &plan("Colours", "t1", "Do t1"));
    let r = p.rasen(&["run"]).expect_code(1);
    let log = p.file(LOG).expect("the run wrote a log");
    assert_no_raw_controls(&log, ".rasen/rasen.log");
    assert!(
        log.contains("[coder t1] plain \\e[31mred\\e[0m over\\rwritten \\u{9b}csi end\n"),
        "the agent's line, escaped:\n{log}"
    );
    assert_no_raw_controls(&r.stdout, "the foreground run's echo");
}

#[test]
fn escape_sequences_in_a_plan_reach_status_and_resume_escaped() {
    let p = project_with_a_hostile_agent("ctl-status");
    let description = "\\u001b]0;pwned\\u0007\\u001b[2JWipe \\u009b the screen\\nsecond line";
    p.write(PLAN_FILE, &plan("Task \\u001b[5mblinking", "t1", description));
    p.rasen(&["run"]).expect_code(1);

    let r = p.rasen(&["status"]);
    assert_no_raw_controls(&r.stdout, "rasen status");
    assert!(
        r.stdout.contains("Last subtask: t1\n  \\e]0;pwned\\x07\\e[2JWipe \\u{9b} the screen\n"),
        "the description's first line, escaped\n{r}"
    );
    assert!(r.stdout.contains("Last error: t1 blocked: stuck \\e[2J\n"), "{r}");

    let r = p.rasen(&["status", "--json"]);
    assert_no_raw_controls(&r.stdout, "rasen status --json");
    let json = parse_json(&r.stdout, "status --json");
    assert!(
        get_str(&json, "subtask_description").is_some_and(|d| d.contains("Wipe \u{9b} the")),
        "--json escapes by JSON and reads back as it was\n{r}"
    );

    // Set the subtask back to pending so that `resume` has work to show.
    let text = p.file(PLAN_FILE).unwrap().replace("\"failed\"", "\"pending\"");
    p.write(PLAN_FILE, &text);
    let r = p.rasen(&["resume"]);
    assert_no_raw_controls(&r.stdout, "rasen resume");
    assert!(r.stdout.contains("Resuming task: Task \\e[5mblinking\n"), "{r}");
}

#[test]
fn a_nul_in_a_subtask_id_is_refused_with_the_subtask_named() {
    let p = project("ctl-nul-id");
    p.write(PLAN_FILE, &plan("Nul", "a\\u0000b", "Do a"));
    for args in [&["run"][..], &["resume"]] {
        let r = p.rasen(args).expect_code(2);
        let mut lines = r.stderr.lines();
        let line = lines.next().unwrap_or_default();
        assert!(lines.next().is_none(), "one line of error expected\n{r}");
        assert_no_raw_controls(line, "the error");
        assert!(
            line.contains(".rasen/implementation_plan.json: subtask 1 (\"a\\0b\")")
                && line.contains("control character"),
            "{r}"
        );
        assert!(p.sessions().is_empty(), "no session may start\n{r}");
    }
    // Once the id is fixed, resume works.
    p.write(PLAN_FILE, &plan("Nul", "ab", "Do a"));
    let r = p.rasen(&["resume"]).expect_code(0);
    assert_eq!(subtask_status(&p, "ab"), "completed", "{r}");
}

#[test]
fn a_control_character_in_a_dependency_id_is_refused() {
    let p = project("ctl-dep-id");
    let text = "{\"task_name\": \"t\", \"subtasks\": [\
        {\"id\": \"a\", \"description\": \"d\", \"status\": \"pending\"},\
        {\"id\": \"b\", \"description\": \"d\", \"status\": \"pending\", \"dependencies\": [\"a\\r\"]}]}\n";
    p.write(PLAN_FILE, text);
    let r = p.rasen(&["run"]).expect_code(2);
    assert!(
        r.stderr.contains("subtask \"b\": dependency \"a\\r\" holds a control character"),
        "{r}"
    );
}

#[test]
fn logs_escapes_raw_control_characters_in_an_old_log() {
    let p = Project::new("ctl-logs");
    std::fs::create_dir_all(p.path(".rasen")).unwrap();
    let old = "2026-01-01T00:00:00Z ok\tline\n\
               2026-01-01T00:00:01Z \x1b[2J\x1b]0;title\x07cleared\r\u{9b}31m\x00\x7f\n";
    let mut bytes = old.as_bytes().to_vec();
    bytes.extend_from_slice(b"2026-01-01T00:00:02Z bad \xff\x9b byte\n");
    std::fs::write(p.path(LOG), bytes).unwrap();
    let expected = "2026-01-01T00:00:00Z ok\tline\n\
                    2026-01-01T00:00:01Z \\e[2J\\e]0;title\\x07cleared\\r\\u{9b}31m\\x00\\x7f\n\
                    2026-01-01T00:00:02Z bad \\xff\\x9b byte\n";
    let r = p.rasen(&["logs"]).expect_code(0);
    assert_eq!(r.stdout, expected, "{r}");

    let follower = p.spawn(&["logs", "--follow"]);
    wait_until(20, "the follower printed the log, escaped", || {
        follower.stdout_so_far() == expected
    });
    drop(follower);
}

#[test]
fn an_error_quoting_user_text_is_escaped() {
    let p = Project::new("ctl-error");
    let r = p.rasen(&["init", "--task", "spec\x1b[2J.md"]).expect_code(2);
    assert_no_raw_controls(&r.stderr, "the error");
    assert!(r.stderr.contains("--task spec\\e[2J.md: no such file"), "{r}");
}

#[test]
fn a_daemon_start_error_quoting_a_newline_reaches_the_terminal_whole() {
    // A project directory whose name holds a newline, and a log that
    // cannot be opened: the daemon's error quotes the path.
    let p = project("ctl-daemon\nstart");
    std::fs::create_dir_all(p.path(LOG)).unwrap();
    let r = p.rasen(&["run", "--background"]).expect_code(1);
    let mut lines = r.stderr.lines();
    let line = lines.next().unwrap_or_default();
    assert!(lines.next().is_none(), "one line of error expected\n{r}");
    assert!(line.contains("ctl-daemon\\nstart"), "{r}");
    assert!(line.contains("cannot open the log file"), "the end of the error was lost\n{r}");
}
