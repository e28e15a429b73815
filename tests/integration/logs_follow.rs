//! `rasen logs` as a user runs it beside a live daemon: `-n N` prints the
//! last N lines, and `--follow` behaves like `tail -F`: it keeps printing
//! across truncation (logrotate's copytruncate), rotation (rename, then a
//! new file), and a log that does not exist yet; it never prints half a
//! line; and it ends quietly when its reader goes away (`| head`).
//!
//! No daemon is needed: the tests write the log themselves, the way rasen
//! does (one O_APPEND handle kept open), in a project with a `.rasen/`.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::time::{Duration, Instant};

use crate::harness::*;

const DEADLINE_SECS: u64 = 20;
const LOG: &str = ".rasen/rasen.log";

/// A writer like rasen's logger: the log opened once with O_APPEND (and
/// created if missing), written a whole line at a time.
struct LogWriter(File);

impl LogWriter {
    fn open(p: &Project) -> LogWriter {
        std::fs::create_dir_all(p.path(".rasen")).unwrap();
        LogWriter(OpenOptions::new().create(true).append(true).open(p.path(LOG)).unwrap())
    }

    fn write(&mut self, text: &str) -> &mut LogWriter {
        self.0.write_all(text.as_bytes()).unwrap();
        self
    }
}

fn numbered(from: usize, to: usize) -> String {
    (from..=to).map(|i| format!("line {i}\n")).collect()
}

/// `rasen logs --follow` started in the project.
fn follow(p: &Project) -> Spawned {
    p.spawn(&["logs", "--follow"])
}

/// Waits until the follower has printed exactly `expected`; a wrong
/// prefix, a duplicate or a line out of order fails at once.
fn wait_for_output(follower: &Spawned, expected: &str) {
    let deadline = Instant::now() + Duration::from_secs(DEADLINE_SECS);
    loop {
        let out = follower.stdout_so_far();
        if out == expected {
            return;
        }
        assert!(
            expected.starts_with(&out),
            "the follower printed something else\n--- expected ---\n{expected}--- printed ---\n{out}\n--- stderr ---\n{}",
            follower.stderr_so_far()
        );
        assert!(
            Instant::now() < deadline,
            "timed out after {DEADLINE_SECS} s\n--- expected ---\n{expected}--- printed ---\n{out}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn logs_n_prints_exactly_the_last_lines() {
    let p = Project::new("logs-n");
    LogWriter::open(&p).write(&numbered(1, 60));
    let r = p.rasen(&["logs", "-n", "3"]).expect_code(0);
    assert_eq!(r.stdout, "line 58\nline 59\nline 60\n", "{r}");
    assert_eq!(r.stderr, "", "{r}");
    let r = p.rasen(&["logs"]).expect_code(0);
    assert_eq!(r.stdout, numbered(11, 60), "the default is the last 50 lines\n{r}");
    let r = p.rasen(&["logs", "-n", "100"]).expect_code(0);
    assert_eq!(r.stdout, numbered(1, 60), "{r}");
}

#[test]
fn follow_prints_the_last_lines_then_each_new_line_once() {
    let p = Project::new("follow-append");
    let mut log = LogWriter::open(&p);
    log.write(&numbered(1, 60));
    let follower = follow(&p);
    wait_for_output(&follower, &numbered(11, 60));
    log.write("line 61\n");
    wait_for_output(&follower, &numbered(11, 61));
    log.write("line 62\nline 63\n");
    wait_for_output(&follower, &numbered(11, 63));
}

#[test]
fn follow_keeps_printing_after_the_log_is_truncated() {
    let p = Project::new("follow-truncate");
    let mut log = LogWriter::open(&p);
    let old = "an old line that is rather long, so the log gets shorter\n".repeat(5);
    log.write(&old);
    let follower = follow(&p);
    wait_for_output(&follower, &old);

    // logrotate's copytruncate: the file is cut to zero while the writer
    // keeps its O_APPEND handle and goes on writing.
    File::options().write(true).open(p.path(LOG)).unwrap().set_len(0).unwrap();
    log.write("after truncation 1\n");
    wait_for_output(&follower, &format!("{old}after truncation 1\n"));
    log.write("after truncation 2\n");
    wait_for_output(&follower, &format!("{old}after truncation 1\nafter truncation 2\n"));
}

#[test]
fn follow_drains_a_rotated_log_then_switches_to_the_new_one() {
    let p = Project::new("follow-rotate");
    let mut old_log = LogWriter::open(&p);
    old_log.write("before rotation\n");
    let follower = follow(&p);
    wait_for_output(&follower, "before rotation\n");

    std::fs::rename(p.path(LOG), p.path(".rasen/rasen.log.1")).unwrap();
    // The writer has not reopened yet: its line lands in the renamed file.
    old_log.write("late line in the old file\n");
    let mut expected = "before rotation\nlate line in the old file\n".to_string();
    wait_for_output(&follower, &expected);

    let mut new_log = LogWriter::open(&p);
    new_log.write("first line in the new file\n");
    expected.push_str("first line in the new file\n");
    wait_for_output(&follower, &expected);
    new_log.write("second line in the new file\n");
    expected.push_str("second line in the new file\n");
    wait_for_output(&follower, &expected);
}

#[test]
fn follow_waits_for_a_log_that_is_created_later() {
    let p = Project::new("follow-late");
    std::fs::create_dir_all(p.path(".rasen")).unwrap();
    let follower = follow(&p);
    wait_until(DEADLINE_SECS, "the follower says it waits for the log", || {
        follower.stderr_so_far().contains("does not exist yet")
    });
    assert_eq!(follower.stdout_so_far(), "");

    let mut log = LogWriter::open(&p);
    log.write("first\nsecond\n");
    wait_for_output(&follower, "first\nsecond\n");
    log.write("third\n");
    wait_for_output(&follower, "first\nsecond\nthird\n");
}

#[test]
fn follow_waits_even_before_the_rasen_directory_exists() {
    let p = Project::new("follow-no-dir");
    let follower = follow(&p);
    wait_until(DEADLINE_SECS, "the follower says it waits for the log", || {
        follower.stderr_so_far().contains("does not exist yet")
    });
    LogWriter::open(&p).write("the first run begins\n");
    wait_for_output(&follower, "the first run begins\n");
}

#[test]
fn follow_holds_back_a_partial_line_until_it_is_completed() {
    let p = Project::new("follow-partial");
    let mut log = LogWriter::open(&p);
    log.write("a whole line\n");
    let follower = follow(&p);
    wait_for_output(&follower, "a whole line\n");

    log.write("half a li");
    // The follower polls every 200 ms: give it several chances to get it
    // wrong (a bounded check that nothing happens, not a synchronisation).
    let until = Instant::now() + Duration::from_secs(1);
    while Instant::now() < until {
        assert_eq!(follower.stdout_so_far(), "a whole line\n", "half a line was printed");
        std::thread::sleep(Duration::from_millis(20));
    }
    log.write("ne, now whole\n");
    wait_for_output(&follower, "a whole line\nhalf a line, now whole\n");
}

/// `sh -c SCRIPT` in the project with $RASEN set to the binary.
fn shell(p: &Project, script: &str) -> Spawned {
    let mut cmd = p.command("sh");
    cmd.args(["-c", script]).env("RASEN", env!("CARGO_BIN_EXE_rasen"));
    Spawned::start(cmd, &format!("sh -c '{script}'"))
}

#[test]
fn follow_into_a_closed_pipe_ends_quietly() {
    let p = Project::new("follow-pipe");
    let mut log = LogWriter::open(&p);
    log.write("one\ntwo\n");
    let pipeline =
        shell(&p, "{ \"$RASEN\" logs --follow; echo \"rasen exited with $?\" >&2; } | head -n 2");
    let pid = pipeline.pid();
    // head has its two lines and is gone; rasen learns it at its next write.
    let mut n = 0;
    wait_until(DEADLINE_SECS, "the pipeline ends once rasen notices head is gone", || {
        n += 1;
        log.write(&format!("more {n}\n"));
        process_gone(pid)
    });
    let r = pipeline.wait(DEADLINE_SECS);
    assert_eq!(r.stdout, "one\ntwo\n", "{r}");
    assert_eq!(r.stderr, "rasen exited with 0\n", "{r}");
}

/// `rasen logs -f | head -1` ends when head does, without waiting for
/// another line to be written to the log.
#[test]
fn follow_ends_when_its_reader_leaves_even_if_the_log_is_quiet() {
    let p = Project::new("follow-pipe-quiet");
    LogWriter::open(&p).write("one\ntwo\n");
    let pipeline =
        shell(&p, "{ \"$RASEN\" logs --follow; echo \"rasen exited with $?\" >&2; } | head -n 1");
    let r = pipeline.wait(DEADLINE_SECS);
    assert_eq!(r.stdout, "one\n", "{r}");
    assert_eq!(r.stderr, "rasen exited with 0\n", "{r}");
}

#[test]
fn logs_into_a_closed_pipe_ends_quietly() {
    let p = Project::new("logs-pipe");
    // Far more than a pipe holds, so rasen is still writing when head leaves.
    LogWriter::open(&p).write(&numbered(1, 100_000));
    let r =
        shell(&p, "{ \"$RASEN\" logs -n 100000; echo \"rasen exited with $?\" >&2; } | head -n 1")
            .wait(DEADLINE_SECS);
    assert_eq!(r.stdout, "line 1\n", "{r}");
    assert_eq!(r.stderr, "rasen exited with 0\n", "{r}");
}

#[test]
fn follow_stops_on_ctrl_c() {
    let p = Project::new("follow-ctrl-c");
    LogWriter::open(&p).write("something\n");
    let follower = follow(&p);
    wait_for_output(&follower, "something\n");
    follower.signal(libc::SIGINT);
    let r = follower.wait(DEADLINE_SECS);
    assert!(r.code == 0 || r.code == 128 + libc::SIGINT, "{r}");
    assert!(!r.stderr.contains("panicked"), "{r}");
}
