//! Step 4 of the loop, as pure functions: what a session amounts to, from
//! what it said (events), how it ended, what its agent reported, the
//! commits made for the subtask and the verify commands' results. Nothing
//! here runs, reads or writes anything, so every branch is unit-tested
//! below; `coding` gathers the facts and applies the verdict.

use crate::agent::SessionEnd;
use crate::error::Error;
use crate::events::Event;
use crate::history::Outcome;
use crate::text::{last_lines, one_line};
use crate::usage_limit::UsageLimit;

/// What is known of a finished session.
#[derive(Debug, Clone)]
pub struct Facts<'a> {
    pub end: SessionEnd,
    /// In order of appearance.
    pub events: &'a [Event],
    /// The agent itself reported the session as failed (Claude's
    /// `error_max_turns`, …): what it said.
    pub agent_error: Option<String>,
    pub usage_limit: Option<&'a UsageLimit>,
    /// Claude refused to run as root with bypassPermissions.
    pub root_refusal: bool,
    /// The end of the session's output.
    pub tail: &'a str,
    /// Commits made by this session.
    pub commits: u64,
    /// Commits recorded for the subtask by its earlier attempts.
    pub earlier_commits: u64,
}

/// What a done claim must carry, and the idle timeout for messages.
#[derive(Debug, Clone, Copy)]
pub struct Rules {
    pub require_tests: bool,
    pub require_lint: bool,
    pub idle_timeout_seconds: u64,
}

/// What a coder session amounted to.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Done with evidence: the summary from the claim.
    Completed(String),
    /// A done claim without the evidence: why.
    Refused(String),
    /// The agent said it cannot go on: why.
    Blocked(String),
    Failed(String),
    Timeout(String),
    /// A shutdown signal cut the session short.
    Interrupted,
    /// The agent's usage limit was reached: not the approach's fault.
    UsageLimit(UsageLimit),
}

impl Verdict {
    /// The attempt's outcome in attempt_history.json, and its reason.
    pub fn outcome(&self) -> (Outcome, Option<String>) {
        match self {
            Verdict::Completed(_) => (Outcome::Success, None),
            Verdict::Refused(why) => (Outcome::Refused, Some(why.clone())),
            Verdict::Blocked(why) => (Outcome::Blocked, Some(why.clone())),
            Verdict::Failed(why) => (Outcome::Failure, Some(why.clone())),
            Verdict::Timeout(why) => (Outcome::Timeout, Some(why.clone())),
            Verdict::Interrupted => {
                (Outcome::Interrupted, Some("stopped by a shutdown signal".to_string()))
            }
            Verdict::UsageLimit(limit) => (Outcome::UsageLimit, Some(one_line(&limit.message))),
        }
    }
}

/// A claim that has its evidence so far; the verify commands come next.
#[derive(Debug, Clone, PartialEq)]
pub enum Judgement {
    Final(Verdict),
    /// Run the verify commands; when they all pass, the subtask is
    /// completed with this summary.
    VerifyThenComplete(String),
}

/// The ways a session can end before anything it said counts, in the order
/// they are checked: a shutdown, a usage limit, a timeout. `None` when the
/// session ran its course. Claude's refusal to run as root, checked after
/// the usage limit, is no verdict but an error that ends the run with
/// what to do, instead of burning iterations on it.
pub fn cut_short(facts: &Facts, rules: &Rules) -> Result<Option<Verdict>, Error> {
    if facts.end == SessionEnd::Shutdown {
        return Ok(Some(Verdict::Interrupted));
    }
    if let Some(limit) = facts.usage_limit {
        return Ok(Some(Verdict::UsageLimit(limit.clone())));
    }
    if facts.root_refusal {
        return Err(root_refusal_error());
    }
    Ok(match facts.end {
        SessionEnd::IdleTimeout => Some(Verdict::Timeout(with_tail(
            format!("no output for {}s: the session was ended as hung", rules.idle_timeout_seconds),
            facts.tail,
        ))),
        SessionEnd::SessionTimeout => Some(Verdict::Timeout(with_tail(
            "the session ran out of time and was ended".to_string(),
            facts.tail,
        ))),
        _ => None,
    })
}

/// A coder session's verdict, short of the verify commands; an error for
/// Claude's root refusal (see `cut_short`).
pub fn judge(facts: &Facts, rules: &Rules) -> Result<Judgement, Error> {
    if let Some(verdict) = cut_short(facts, rules)? {
        return Ok(Judgement::Final(verdict));
    }
    Ok(judge_words(facts, rules))
}

/// What the agent said (its last word, its own failure), and the evidence.
fn judge_words(facts: &Facts, rules: &Rules) -> Judgement {
    // An agent may say blocked and then find a way, or claim done and
    // then take it back: its last word on the subtask counts.
    let last_word =
        facts.events.iter().rev().find(|e| e.topic == "build.blocked" || e.topic == "build.done");
    if let Some(event) = last_word.filter(|e| e.topic == "build.blocked") {
        return Judgement::Final(Verdict::Blocked(one_line(&event.payload)));
    }
    // A session that the agent itself reports as failed (error_max_turns,
    // error_during_execution) was cut short: a "done" said before the end
    // is not evidence that the work was finished. Nor is one from an agent
    // whose process then failed (below).
    if facts.agent_error.is_some() {
        return Judgement::Final(Verdict::Failed(failure_reason(facts)));
    }
    match last_word {
        Some(claim) => match unclean_exit(facts.end) {
            // The agent's process says it failed, whatever its words said
            // before: a crash after "done" is not a finished piece of work.
            Some(how) => Judgement::Final(Verdict::Refused(with_tail(
                format!("claimed done, but {how}: a session that fails is no evidence"),
                facts.tail,
            ))),
            None => judge_done_claim(&claim.payload, facts, rules),
        },
        None => Judgement::Final(Verdict::Failed(failure_reason(facts))),
    }
}

/// How the agent's process failed, when it did: a non-zero exit, or a
/// signal rasen did not send (its own kills are timeouts and shutdowns,
/// judged before).
fn unclean_exit(end: SessionEnd) -> Option<String> {
    match end {
        SessionEnd::Exited(0) => None,
        SessionEnd::Exited(code) => Some(format!("the agent exited with code {code}")),
        SessionEnd::Signaled(signal) => Some(format!("the agent was killed by signal {signal}")),
        SessionEnd::IdleTimeout | SessionEnd::SessionTimeout | SessionEnd::Shutdown => None,
    }
}

/// A "done" claim completes the subtask only with evidence.
fn judge_done_claim(claim: &str, facts: &Facts, rules: &Rules) -> Judgement {
    let claim_lower = claim.to_lowercase();
    let mut missing = Vec::new();
    if rules.require_tests && !claim_lower.contains("tests: pass") {
        missing.push("\"tests: pass\"");
    }
    if rules.require_lint && !claim_lower.contains("lint: pass") {
        missing.push("\"lint: pass\"");
    }
    if !missing.is_empty() {
        return Judgement::Final(Verdict::Refused(format!(
            "claimed done without evidence: the build.done event must carry {}",
            missing.join(" and ")
        )));
    }
    if facts.commits == 0 && facts.earlier_commits == 0 {
        return Judgement::Final(Verdict::Refused(
            "claimed done but no commit was made for this subtask: commit the work with git"
                .to_string(),
        ));
    }
    Judgement::VerifyThenComplete(one_line(claim))
}

/// A verify command's verdict: `None` when it passed (exit 0), else the
/// refusal, or the interruption when a shutdown cut it short.
pub fn judge_verify(command: &str, end: SessionEnd, tail: &str) -> Option<Verdict> {
    match end {
        SessionEnd::Exited(0) => None,
        SessionEnd::Shutdown => Some(Verdict::Interrupted),
        _ => Some(Verdict::Refused(format!(
            "claimed done, but the verify command `{command}` failed ({}); the end of its output:\n{}",
            verify_failure(end),
            tail.trim_end()
        ))),
    }
}

/// How a verify command failed, in a few words.
pub fn verify_failure(end: SessionEnd) -> String {
    match end {
        SessionEnd::Exited(code) => format!("exit {code}"),
        SessionEnd::Signaled(signal) => format!("killed by signal {signal}"),
        SessionEnd::IdleTimeout | SessionEnd::SessionTimeout => "timed out".to_string(),
        SessionEnd::Shutdown => "stopped".to_string(),
    }
}

/// The last done claim's text, the attempt's "approach" when it is refused.
pub fn claim_of(events: &[Event]) -> Option<String> {
    events.iter().rev().find(|e| e.topic == "build.done").map(|e| one_line(&e.payload))
}

/// The error that ends a run on Claude's root refusal, with what to do.
fn root_refusal_error() -> Error {
    Error::config(
        "claude refuses --permission-mode bypassPermissions when run as root: run rasen as an ordinary user (or in a container as a non-root user)",
    )
}

/// How a session ended, in a few words for the log.
pub fn describe_end(end: &SessionEnd) -> String {
    match end {
        SessionEnd::Exited(code) => format!("exit {code}"),
        SessionEnd::Signaled(signal) => format!("signal {signal}"),
        SessionEnd::IdleTimeout => "idle timeout".to_string(),
        SessionEnd::SessionTimeout => "session timeout".to_string(),
        SessionEnd::Shutdown => "shutdown".to_string(),
    }
}

/// Why a session that made no claim failed, with the tail of its output.
fn failure_reason(facts: &Facts) -> String {
    let what = match (&facts.agent_error, facts.end) {
        (Some(error), _) => error.clone(),
        (None, SessionEnd::Exited(0)) => {
            "the session ended without a build.done or build.blocked event".to_string()
        }
        (None, SessionEnd::Exited(code)) => format!("the agent exited with code {code}"),
        (None, SessionEnd::Signaled(signal)) => format!("the agent was killed by signal {signal}"),
        _ => "the session ended".to_string(),
    };
    with_tail(what, facts.tail)
}

/// `what`, followed by the last lines of the session's output if it had any.
fn with_tail(what: String, tail: &str) -> String {
    let tail = last_lines(tail, 10);
    if tail.is_empty() {
        what
    } else {
        format!("{what}; the end of its output:\n{tail}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RULES: Rules =
        Rules { require_tests: true, require_lint: false, idle_timeout_seconds: 300 };

    fn event(topic: &str, payload: &str) -> Event {
        Event { topic: topic.to_string(), payload: payload.to_string() }
    }

    fn facts<'a>(end: SessionEnd, events: &'a [Event], commits: u64) -> Facts<'a> {
        Facts {
            end,
            events,
            agent_error: None,
            usage_limit: None,
            root_refusal: false,
            tail: "",
            commits,
            earlier_commits: 0,
        }
    }

    fn verdict_of(facts: &Facts, rules: &Rules) -> Verdict {
        match judge(facts, rules) {
            Ok(Judgement::Final(verdict)) => verdict,
            other => panic!("expected a final verdict, got {other:?}"),
        }
    }

    const DONE: &str = "tests: pass. added the login form";

    #[test]
    fn a_done_claim_with_evidence_and_a_commit_goes_on_to_the_verify_commands() {
        let events = [event("build.done", DONE)];
        assert_eq!(
            judge(&facts(SessionEnd::Exited(0), &events, 1), &RULES),
            Ok(Judgement::VerifyThenComplete(DONE.to_string()))
        );
    }

    #[test]
    fn a_commit_from_an_earlier_attempt_is_enough() {
        let events = [event("build.done", DONE)];
        let mut f = facts(SessionEnd::Exited(0), &events, 0);
        f.earlier_commits = 2;
        assert!(matches!(judge(&f, &RULES), Ok(Judgement::VerifyThenComplete(_))));
    }

    #[test]
    fn a_done_claim_without_a_commit_is_refused() {
        let events = [event("build.done", DONE)];
        let verdict = verdict_of(&facts(SessionEnd::Exited(0), &events, 0), &RULES);
        assert!(
            matches!(&verdict, Verdict::Refused(why) if why.contains("no commit")),
            "{verdict:?}"
        );
    }

    #[test]
    fn a_done_claim_without_the_required_words_is_refused_naming_them() {
        let events = [event("build.done", "all good")];
        let rules = Rules { require_lint: true, ..RULES };
        let verdict = verdict_of(&facts(SessionEnd::Exited(0), &events, 1), &rules);
        let Verdict::Refused(why) = verdict else { panic!("{verdict:?}") };
        assert!(why.contains("\"tests: pass\" and \"lint: pass\""), "{why}");
        let free = Rules { require_tests: false, ..RULES };
        assert!(matches!(
            judge(&facts(SessionEnd::Exited(0), &events, 1), &free),
            Ok(Judgement::VerifyThenComplete(_))
        ));
    }

    #[test]
    fn the_last_word_counts_between_done_and_blocked() {
        let blocked_last = [event("build.done", DONE), event("build.blocked", "no database\nmore")];
        assert_eq!(
            verdict_of(&facts(SessionEnd::Exited(0), &blocked_last, 1), &RULES),
            Verdict::Blocked("no database".to_string())
        );
        let done_last = [event("build.blocked", "no database"), event("build.done", DONE)];
        assert!(matches!(
            judge(&facts(SessionEnd::Exited(0), &done_last, 1), &RULES),
            Ok(Judgement::VerifyThenComplete(_))
        ));
    }

    #[test]
    fn a_session_the_agent_reports_as_failed_is_a_failure_despite_a_done_claim() {
        let events = [event("build.done", DONE)];
        let mut f = facts(SessionEnd::Exited(0), &events, 1);
        f.agent_error = Some("the agent reported an error (error_max_turns): out of turns".into());
        f.tail = "last words";
        let verdict = verdict_of(&f, &RULES);
        assert_eq!(
            verdict,
            Verdict::Failed(
                "the agent reported an error (error_max_turns): out of turns; the end of its output:\nlast words"
                    .to_string()
            )
        );
    }

    #[test]
    fn a_done_claim_from_an_agent_that_exited_non_zero_is_refused_with_the_exit() {
        let events = [event("build.done", DONE)];
        for (end, how) in [
            (SessionEnd::Exited(3), "the agent exited with code 3"),
            (SessionEnd::Signaled(9), "the agent was killed by signal 9"),
        ] {
            let mut f = facts(end, &events, 1);
            f.tail = "Traceback: boom";
            let verdict = verdict_of(&f, &RULES);
            assert_eq!(
                verdict,
                Verdict::Refused(format!(
                    "claimed done, but {how}: a session that fails is no evidence; the end of its output:\nTraceback: boom"
                ))
            );
        }
        // Blocked is the agent's own word that it cannot go on, exit or not.
        let blocked = [event("build.blocked", "no database")];
        assert_eq!(
            verdict_of(&facts(SessionEnd::Exited(1), &blocked, 0), &RULES),
            Verdict::Blocked("no database".to_string())
        );
    }

    #[test]
    fn a_session_without_a_claim_fails_saying_how_it_ended() {
        for (end, what) in [
            (
                SessionEnd::Exited(0),
                "the session ended without a build.done or build.blocked event",
            ),
            (SessionEnd::Exited(3), "the agent exited with code 3"),
            (SessionEnd::Signaled(9), "the agent was killed by signal 9"),
        ] {
            assert_eq!(verdict_of(&facts(end, &[], 0), &RULES), Verdict::Failed(what.to_string()));
        }
    }

    #[test]
    fn timeouts_say_which_with_the_end_of_the_output() {
        let mut idle = facts(SessionEnd::IdleTimeout, &[], 0);
        idle.tail = "a\nb\n";
        assert_eq!(
            verdict_of(&idle, &RULES),
            Verdict::Timeout(
                "no output for 300s: the session was ended as hung; the end of its output:\na\nb"
                    .to_string()
            )
        );
        let whole = facts(SessionEnd::SessionTimeout, &[], 0);
        assert_eq!(
            verdict_of(&whole, &RULES),
            Verdict::Timeout("the session ran out of time and was ended".to_string())
        );
    }

    #[test]
    fn a_shutdown_a_usage_limit_and_a_root_refusal_come_first_in_that_order() {
        let events = [event("build.done", DONE)];
        let limit = UsageLimit { message: "limit reached|1753441200".into(), resets_at: None };
        let mut f = facts(SessionEnd::Shutdown, &events, 1);
        f.usage_limit = Some(&limit);
        f.root_refusal = true;
        assert_eq!(verdict_of(&f, &RULES), Verdict::Interrupted);
        f.end = SessionEnd::IdleTimeout;
        assert_eq!(verdict_of(&f, &RULES), Verdict::UsageLimit(limit.clone()));
        f.usage_limit = None;
        let refusal = judge(&f, &RULES).unwrap_err();
        assert!(refusal.message.contains("run rasen as an ordinary user"), "{refusal}");
        f.root_refusal = false;
        assert!(matches!(verdict_of(&f, &RULES), Verdict::Timeout(_)));
        f.end = SessionEnd::Exited(0);
        assert_eq!(cut_short(&f, &RULES), Ok(None));
    }

    #[test]
    fn verify_commands_pass_on_exit_0_only() {
        assert_eq!(judge_verify("make test", SessionEnd::Exited(0), ""), None);
        assert_eq!(judge_verify("make test", SessionEnd::Shutdown, ""), Some(Verdict::Interrupted));
        for (end, how) in [
            (SessionEnd::Exited(2), "exit 2"),
            (SessionEnd::Signaled(15), "killed by signal 15"),
            (SessionEnd::SessionTimeout, "timed out"),
        ] {
            assert_eq!(
                judge_verify("make test", end, "FAIL: t1\n"),
                Some(Verdict::Refused(format!(
                    "claimed done, but the verify command `make test` failed ({how}); the end of its output:\nFAIL: t1"
                )))
            );
        }
    }

    #[test]
    fn each_verdict_has_its_outcome_in_the_history() {
        for (verdict, outcome) in [
            (Verdict::Completed("s".into()), Outcome::Success),
            (Verdict::Refused("r".into()), Outcome::Refused),
            (Verdict::Blocked("b".into()), Outcome::Blocked),
            (Verdict::Failed("f".into()), Outcome::Failure),
            (Verdict::Timeout("t".into()), Outcome::Timeout),
            (Verdict::Interrupted, Outcome::Interrupted),
            (
                Verdict::UsageLimit(UsageLimit { message: "m".into(), resets_at: None }),
                Outcome::UsageLimit,
            ),
        ] {
            assert_eq!(verdict.outcome().0, outcome, "{verdict:?}");
        }
        assert_eq!(claim_of(&[event("build.done", "one\ntwo")]), Some("one".to_string()));
    }
}
