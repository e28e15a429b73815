//! A foreground `rasen run` with `backend: claude`, through
//! tests/agent/fake-claude on PATH as `claude`: the command line, the
//! stream-json reading (usage, cost, failed results, forged events), usage
//! limits, and Claude's refusal to run as root.

use crate::harness::*;
use crate::run_support::*;

/// A project driven by the fake claude, FAKE_CLAUDE = `scenario`.
fn claude_project(name: &str, scenario: &str) -> Project {
    let mut p = project(name);
    p.use_fake_claude().env("FAKE_CLAUDE", scenario);
    p
}

/// Each run's arguments, as fake-claude recorded them.
fn claude_argvs(p: &Project) -> Vec<Vec<String>> {
    let text = std::fs::read_to_string(p.scripted_dir().join("claude-argv")).unwrap_or_default();
    text.lines().map(|l| l.split(' ').map(str::to_string).collect()).collect()
}

#[test]
fn claude_backend_completes_with_tokens_and_cost_in_status() {
    let mut p = claude_project("claude-success", "success");
    p.set_config("agent.model", "claude-fake-model").env("SCRIPTED_SUBTASKS", "2");
    p.rasen(&["run"]).expect_code(0);

    let s = status(&p);
    assert_eq!(get_str(&s, "reason"), Some("completed"));
    assert_eq!(get_u64(&s, "completed_subtasks"), Some(2));
    // fake-claude's result line: 100 tokens in, 50 out, $0.0123; three sessions.
    assert_eq!(get_u64(&s, "input_tokens"), Some(300));
    assert_eq!(get_u64(&s, "output_tokens"), Some(150));
    assert_eq!(get_u64(&s, "tokens"), Some(450));
    let cost = get_f64(&s, "cost_usd").expect("cost_usd in status.json");
    assert!((cost - 3.0 * 0.0123).abs() < 1e-9, "cost_usd {cost}");
    for attempt in attempts(&p) {
        assert_eq!(get_u64(&attempt, "input_tokens"), Some(100));
        assert_eq!(get_u64(&attempt, "output_tokens"), Some(50));
        assert_eq!(get_f64(&attempt, "cost_usd"), Some(0.0123));
    }

    let argvs = claude_argvs(&p);
    assert_eq!(argvs.len(), 3, "{argvs:?}");
    for argv in &argvs {
        let has_pair = |a: &str, b: &str| argv.windows(2).any(|w| w[0] == a && w[1] == b);
        assert!(
            argv.iter().any(|a| a == "-p") && argv.iter().any(|a| a == "--verbose"),
            "{argv:?}"
        );
        assert!(has_pair("--output-format", "stream-json"), "{argv:?}");
        assert!(has_pair("--permission-mode", "bypassPermissions"), "{argv:?}");
        assert!(has_pair("--model", "claude-fake-model"), "{argv:?}");
        assert!(!argv.join(" ").contains("XYZZY"), "the prompt is on the command line: {argv:?}");
    }
    assert!(prompt(&p, 2).contains(TASK), "the prompt reached the agent through claude's stdin");
}

#[test]
fn claude_forged_done_events_in_tool_output_never_complete_a_subtask() {
    // The agent's own claim lacks evidence; only the forged ones (in a
    // subagent's message and a tool_result) carry "tests: pass, lint: pass".
    let mut p = claude_project("claude-forged", "success");
    p.set_config("stall_detection.max_consecutive_failures", "2")
        .env("SCRIPTED_SUBTASKS", "1")
        .env("SCRIPTED_CODER", "done-no-evidence");
    p.rasen(&["run"]).expect_code(1);

    let log = p.file(".rasen/rasen.log").unwrap();
    assert!(log.contains("lint: pass. forged"), "the forged events were not in the stream:\n{log}");
    assert_eq!(outcomes(&p), [pair("t1", "refused"), pair("t1", "refused")]);
    for attempt in attempts(&p) {
        assert_eq!(get_str(&attempt, "approach"), Some("finished t1"), "the claim judged");
    }
    assert_eq!(subtask_status(&p, "t1"), "in_progress");
    assert_eq!(good_commits(&p), []);
}

#[test]
fn claude_max_turns_is_a_failed_attempt_with_its_subtype() {
    // The agent claims done with evidence, then Claude stops it at max turns.
    let mut p = claude_project("claude-max-turns", "success,max-turns");
    p.set_config("stall_detection.max_consecutive_failures", "1").env("SCRIPTED_SUBTASKS", "1");
    p.rasen(&["run"]).expect_code(1);

    assert_eq!(get_str(&status(&p), "reason"), Some("consecutive_failures"));
    assert_eq!(outcomes(&p), [pair("t1", "failure")]);
    let attempt = &attempts(&p)[0];
    let reason = get_str(attempt, "reason").unwrap();
    assert!(reason.contains("error_max_turns"), "{reason}");
    assert!(get_u64(attempt, "output_tokens").is_some_and(|n| n > 0), "{attempt:?}");
    assert_eq!(subtask_status(&p, "t1"), "in_progress");
    assert_eq!(good_commits(&p), []);
}

#[test]
fn claude_rate_limit_ends_the_run_as_usage_limit_with_the_reset_time() {
    let mut p = claude_project("claude-rate-limit", "success,rate-limit");
    p.env("FAKE_CLAUDE_RESET_SECS", "5400");
    let before = now_epoch();
    p.rasen(&["run"]).expect_code(1);
    let after = now_epoch();

    // resetsAt of the rejected rate_limit_event, not a guess from the text.
    assert_usage_limit_resets_after(&p, 5400, before, after);
    assert_eq!(outcomes(&p), [pair("t1", "usage_limit")]);
    assert_eq!(subtask_status(&p, "t1"), "in_progress");
    assert_eq!(claude_argvs(&p).len(), 2, "no session after the limit");
}

#[test]
fn claude_refusing_root_stops_the_run_at_once_with_what_to_do() {
    let p = claude_project("claude-root", "root");
    let r = p.rasen(&["run"]).expect_code(2);

    let lines: Vec<&str> = r.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{r}");
    assert!(lines[0].starts_with("rasen: error: "), "{r}");
    assert!(lines[0].contains("root") && lines[0].contains("non-root user"), "{r}");
    assert_eq!(claude_argvs(&p).len(), 1, "claude ran more than once");
    let s = status(&p);
    assert_eq!(get_str(&s, "reason"), Some("error"));
    assert_eq!(get_u64(&s, "iteration"), Some(1));
    assert_eq!(p.file(".rasen/implementation_plan.json"), None);
}

/// Tokens and cost count for the whole task even if status.json, a
/// runtime file, is deleted between runs (`git clean -X`): the attempt
/// history, which keeps every coder session's usage, is their floor.
#[test]
fn totals_survive_a_deleted_status_file_through_the_history() {
    let mut p = claude_project("claude-totals", "success");
    p.env("SCRIPTED_SUBTASKS", "2").env("SCRIPTED_CODER_t2", "no-commit,done");
    p.set_config("stall_detection.max_no_commit_sessions", "1");
    p.rasen(&["run"]).expect_code(1); // t1 done, t2 without a commit: stalled
    std::fs::remove_file(p.path(".rasen/status.json")).unwrap();
    p.rasen(&["resume"]).expect_code(0);

    let history_cost: f64 = attempts(&p).iter().filter_map(|a| get_f64(a, "cost_usd")).sum();
    assert_eq!(attempts(&p).len(), 3, "t1, t2 (no commit), t2");
    let cost = get_f64(&status(&p), "cost_usd").expect("cost_usd");
    assert!(cost >= history_cost - 1e-9, "cost {cost} lost the history's {history_cost}");
}
