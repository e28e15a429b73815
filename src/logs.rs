//! `rasen logs`: the last lines of the log, and a polling follower that
//! behaves like `tail -F` (survives truncation, rotation, and a log that
//! does not exist yet). This module only reads the log: it never writes,
//! truncates, renames or locks it, so it can run beside a live orchestrator
//! at any time. A closed output pipe (`rasen logs | head`) is a normal end,
//! not an error. What it prints has its control characters made visible
//! (`text::LogEscaper`): a log written by an older rasen, or edited, may
//! hold raw escape sequences, and they must not reach the terminal.
//!
//! It never reads through a symlink (nor anything but a regular file): a
//! link at the log's path is refused at the start, and one that appears
//! later is skipped with a warning, the follower staying on the file it
//! has (where rasen's logger, which refuses links too, goes on writing).
//!
//! The follower polls (one `stat` of the path and one `fstat` of the open
//! file every 200 ms) instead of using inotify: it is portable, works on any
//! file system, and an idle follower costs nothing measurable.

use std::fs::{File, Metadata};
use std::io::{self, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::{Error, Result};
use crate::text::{escape_controls, LogEscaper};
use crate::{signals, store, sys};

/// How much of the log is read at a time, backwards or forwards.
const BLOCK_SIZE: usize = 64 * 1024;
/// How often the follower looks for new data.
const POLL_INTERVAL: Duration = Duration::from_millis(200);
/// A line longer than this is printed in pieces instead of being held back
/// whole, so memory stays bounded whatever the agent printed.
const MAX_HELD_BACK: usize = 1024 * 1024;

/// Prints the last `n` lines of the log at `path` (the whole log when it has
/// fewer). Reads backwards from the end in blocks, so a huge log costs only
/// the lines printed.
pub fn print_last_lines(path: &Path, n: usize, out: &mut dyn Write) -> Result<()> {
    let file = open_log(path)?;
    if n == 0 {
        return Ok(());
    }
    let mut out = Escaped::new(out);
    finish_output(path, copy_last_lines(&file, n, BLOCK_SIZE, &mut out).and_then(|()| out.finish()))
}

/// Prints the last `n` lines of the log (if it exists), then keeps printing
/// new lines as they are written, until Ctrl-C or until the reader of `out`
/// goes away (both end it quietly with `Ok`).
pub fn follow(path: &Path, n: usize, out: &mut dyn Write) -> Result<()> {
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if meta.file_type().is_symlink() {
            return Err(store::symlink_refused(path));
        }
    }
    let mut follower = Follower::new(path);
    finish_output(path, follow_until_stopped(&mut follower, n, &mut Escaped::new(out)))
}

fn follow_until_stopped(follower: &mut Follower, n: usize, out: &mut dyn Write) -> io::Result<()> {
    follower.start(n, out)?;
    if !follower.is_open() {
        // On stderr, so that `out` holds nothing but log lines.
        let _ = writeln!(
            io::stderr(),
            "rasen: {} does not exist yet; waiting for a run to write it (Ctrl-C to stop)",
            escape_controls(&follower.path.to_string_lossy())
        );
    }
    // Without rasen's signal handlers Ctrl-C simply ends the process; with
    // them, the sleep returns early and we stop here.
    while !signals::sleep_unless_shutdown(POLL_INTERVAL) {
        if sys::reader_gone(io::stdout().as_fd()) {
            return Ok(());
        }
        follower.poll_once(out)?;
        if follower.take_skip_warning() {
            let _ = writeln!(
                io::stderr(),
                "rasen: {} is a symbolic link or not a regular file; not reading it \
                 (waiting for a real log)",
                follower.path.display()
            );
        }
    }
    Ok(())
}

/// The output of `rasen logs`: the log's bytes with their control
/// characters (but newline and tab) and any byte that is not UTF-8 shown
/// as visible escapes.
struct Escaped<'a> {
    out: &'a mut dyn Write,
    escaper: LogEscaper,
}

impl<'a> Escaped<'a> {
    fn new(out: &'a mut dyn Write) -> Escaped<'a> {
        Escaped { out, escaper: LogEscaper::default() }
    }

    /// The end of the log: prints a character it ended in the middle of.
    fn finish(&mut self) -> io::Result<()> {
        self.out.write_all(self.escaper.finish().as_bytes())?;
        self.out.flush()
    }
}

impl Write for Escaped<'_> {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.out.write_all(self.escaper.escape(bytes).as_bytes())?;
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

/// A closed pipe is the reader saying "enough" (`rasen logs | head`).
fn finish_output(path: &Path, result: io::Result<()>) -> Result<()> {
    match result {
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(Error::io(path, "printing the log", e)),
        Ok(()) => Ok(()),
    }
}

/// The log, never through a symlink (see `store::open_to_read`).
fn open_log(path: &Path) -> Result<File> {
    store::open_to_read(path)?.ok_or_else(|| {
        Error::failed(format!(
            "{}: no such file: no run has written a log yet (start one with `rasen run`, \
             or wait for it with `rasen logs --follow`)",
            path.display()
        ))
    })
}

/// What the follower finds at the log's path.
enum Found {
    Log(File),
    Nothing,
    /// A symlink, a FIFO, a directory: not read.
    NotALog,
}

/// Opens the log at `path` if a regular file is there, never following a
/// link or blocking on a FIFO.
fn open_if_exists(path: &Path) -> io::Result<Found> {
    let opened = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path);
    match opened {
        Ok(file) if file.metadata()?.is_file() => Ok(Found::Log(file)),
        Ok(_) => Ok(Found::NotALog),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Found::Nothing),
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => Ok(Found::NotALog),
        Err(e) => Err(e),
    }
}

fn copy_last_lines(file: &File, n: usize, block: usize, out: &mut dyn Write) -> io::Result<()> {
    let len = file.metadata()?.len();
    let start = start_of_last_lines(file, len, n, block)?;
    copy_range(file, start, len, out)?;
    out.flush()
}

/// The offset where the last `n` lines of the first `len` bytes begin. A
/// last line without its newline counts as a line, as in `tail`.
fn start_of_last_lines(file: &File, len: u64, n: usize, block: usize) -> io::Result<u64> {
    if n == 0 {
        return Ok(len);
    }
    let mut buf = vec![0u8; block];
    let mut newlines_seen = 0;
    let mut end = len;
    while end > 0 {
        let start = end.saturating_sub(block as u64);
        let chunk = &mut buf[..(end - start) as usize];
        if let Err(e) = file.read_exact_at(chunk, start) {
            // Truncated while we read: what is left is short, take it all.
            return if e.kind() == io::ErrorKind::UnexpectedEof { Ok(0) } else { Err(e) };
        }
        for (i, &byte) in chunk.iter().enumerate().rev() {
            let pos = start + i as u64;
            // The newline that ends the last line does not start a new one.
            if byte == b'\n' && pos + 1 != len {
                newlines_seen += 1;
                if newlines_seen == n {
                    return Ok(pos + 1);
                }
            }
        }
        end = start;
    }
    Ok(0)
}

fn copy_range(file: &File, start: u64, end: u64, out: &mut dyn Write) -> io::Result<()> {
    let mut buf = vec![0u8; BLOCK_SIZE];
    let mut pos = start;
    while pos < end {
        let want = (end - pos).min(BLOCK_SIZE as u64) as usize;
        let got = read_at(file, &mut buf[..want], pos)?;
        if got == 0 {
            break; // truncated meanwhile
        }
        out.write_all(&buf[..got])?;
        pos += got as u64;
    }
    Ok(())
}

fn read_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    loop {
        match file.read_at(buf, offset) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}

fn ends_with_newline(file: &File, len: u64) -> io::Result<bool> {
    if len == 0 {
        return Ok(true); // nothing to hold back
    }
    let mut last = [0u8; 1];
    Ok(read_at(file, &mut last, len - 1)? == 1 && last[0] == b'\n')
}

/// Which file a path names: it changes when the log is rotated (renamed
/// away and recreated) even though the path stays the same.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct FileIdentity {
    dev: u64,
    ino: u64,
}

impl FileIdentity {
    fn of(metadata: &Metadata) -> FileIdentity {
        FileIdentity { dev: metadata.dev(), ino: metadata.ino() }
    }
}

/// The state of `tail -F` on one path, advanced one step at a time by
/// `poll_once`, so tests can drive it without sleeping.
///
/// Only complete lines are printed: a last line still being written is held
/// back until its newline arrives, or until its file is finished (rotated
/// away or truncated), when it is printed with a newline added.
pub struct Follower {
    path: PathBuf,
    /// The file being followed; `None` while the path does not exist.
    file: Option<File>,
    /// Bytes of `file` already read.
    offset: u64,
    /// The identity of `file`, compared with what the path names now.
    identity: Option<FileIdentity>,
    /// The start of a line whose newline has not been read yet.
    partial: Vec<u8>,
    /// Whether the path holds something that is not a log (a symlink), and
    /// whether that has been said.
    skipping: bool,
    skip_said: bool,
}

impl Follower {
    /// A follower that has not opened anything yet.
    pub fn new(path: &Path) -> Follower {
        Follower {
            path: path.to_path_buf(),
            file: None,
            offset: 0,
            identity: None,
            partial: Vec::new(),
            skipping: false,
            skip_said: false,
        }
    }

    /// True once each time the follower starts skipping what is at the
    /// path (a symlink): the caller warns then.
    pub fn take_skip_warning(&mut self) -> bool {
        let warn = self.skipping && !self.skip_said;
        self.skip_said = self.skipping;
        warn
    }

    /// True while a file is open (the log existed at some point).
    pub fn is_open(&self) -> bool {
        self.file.is_some()
    }

    /// Opens the log if it exists and prints its last `n` complete lines,
    /// holding back an unfinished last line. When it does not exist, the
    /// first `poll_once` that finds it prints it from its start.
    pub fn start(&mut self, n: usize, out: &mut dyn Write) -> io::Result<()> {
        let Some(file) = self.open_log()? else {
            return Ok(());
        };
        let len = file.metadata()?.len();
        // An unfinished last line is held back, not counted among the n.
        let lines = if ends_with_newline(&file, len)? { n } else { n.saturating_add(1) };
        let start = start_of_last_lines(&file, len, lines, BLOCK_SIZE)?;
        self.attach(file, start)?;
        self.read_new_data(out)?;
        out.flush()
    }

    /// One step of following: print what was appended since the last step,
    /// start again from the beginning of a truncated log, and switch to the
    /// new file after a rotation (after printing what is left of the old
    /// one). Flushes `out` at the end.
    pub fn poll_once(&mut self, out: &mut dyn Write) -> io::Result<()> {
        if self.file.is_some() {
            // Look at the path before draining, so nothing written to the
            // old file before the rotation is skipped.
            let rotated = self.path_names_another_file();
            self.read_new_data(out)?;
            if rotated {
                self.finish_partial_line(out)?;
                self.detach();
            }
        }
        if self.file.is_none() {
            if let Some(file) = self.open_log()? {
                self.attach(file, 0)?;
                self.read_new_data(out)?;
            }
        }
        out.flush()
    }

    /// The log at the path, if a regular file is there; notes a link.
    fn open_log(&mut self) -> io::Result<Option<File>> {
        let found = open_if_exists(&self.path)?;
        self.skipping = matches!(found, Found::NotALog);
        Ok(match found {
            Found::Log(file) => Some(file),
            Found::Nothing | Found::NotALog => None,
        })
    }

    fn attach(&mut self, file: File, offset: u64) -> io::Result<()> {
        self.identity = Some(FileIdentity::of(&file.metadata()?));
        self.file = Some(file);
        self.offset = offset;
        self.partial.clear();
        Ok(())
    }

    fn detach(&mut self) {
        self.file = None;
        self.identity = None;
        self.offset = 0;
    }

    /// True when the path now names a different file than the one open.
    /// A path that vanished is not a rotation yet: the writer may still
    /// append to the open file, and the new file has not appeared. Nor is
    /// a symlink one: it is never read, and rasen's logger does not write
    /// through it either.
    fn path_names_another_file(&mut self) -> bool {
        match std::fs::symlink_metadata(&self.path) {
            Ok(metadata) if metadata.is_file() => {
                self.skipping = false;
                Some(FileIdentity::of(&metadata)) != self.identity
            }
            Ok(_) => {
                self.skipping = true;
                false
            }
            Err(_) => false,
        }
    }

    /// Prints every complete line appended to the open file since the last
    /// read, and keeps an unfinished last line for later.
    fn read_new_data(&mut self, out: &mut dyn Write) -> io::Result<()> {
        let Some(file) = self.file.as_ref() else {
            return Ok(());
        };
        let len = file.metadata()?.len();
        if len < self.offset {
            // Truncated in place (`: > rasen.log`, logrotate copytruncate).
            self.finish_partial_line(out)?;
            self.offset = 0;
        }
        let mut buf = vec![0u8; BLOCK_SIZE];
        // Up to the length seen now: a writer faster than us cannot keep
        // this step from ending and flushing.
        while self.offset < len {
            let Some(file) = self.file.as_ref() else { break };
            let want = (len - self.offset).min(BLOCK_SIZE as u64) as usize;
            let got = read_at(file, &mut buf[..want], self.offset)?;
            if got == 0 {
                break;
            }
            self.offset += got as u64;
            self.print_complete_lines(&buf[..got], out)?;
        }
        Ok(())
    }

    fn print_complete_lines(&mut self, data: &[u8], out: &mut dyn Write) -> io::Result<()> {
        match data.iter().rposition(|&byte| byte == b'\n') {
            Some(last_newline) => {
                out.write_all(&self.partial)?;
                self.partial.clear();
                out.write_all(&data[..=last_newline])?;
                self.partial.extend_from_slice(&data[last_newline + 1..]);
            }
            None => self.partial.extend_from_slice(data),
        }
        if self.partial.len() > MAX_HELD_BACK {
            out.write_all(&self.partial)?;
            self.partial.clear();
        }
        Ok(())
    }

    /// The held-back line's file is finished: print it as a whole line.
    fn finish_partial_line(&mut self, out: &mut dyn Write) -> io::Result<()> {
        if !self.partial.is_empty() {
            out.write_all(&self.partial)?;
            out.write_all(b"\n")?;
            self.partial.clear();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::{self, OpenOptions};
    use std::sync::atomic::{AtomicU32, Ordering};

    /// A fresh, empty directory for one test, removed when dropped.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(name: &str) -> TempDir {
            static COUNTER: AtomicU32 = AtomicU32::new(0);
            let unique = COUNTER.fetch_add(1, Ordering::SeqCst);
            let dir = std::env::temp_dir()
                .join(format!("rasen-logs-{}-{unique}-{name}", std::process::id()));
            let _ = fs::remove_dir_all(&dir);
            fs::create_dir_all(&dir).unwrap();
            TempDir(dir)
        }

        fn log(&self) -> PathBuf {
            self.0.join("rasen.log")
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn append(path: &Path, text: &str) {
        let mut file = OpenOptions::new().create(true).append(true).open(path).unwrap();
        file.write_all(text.as_bytes()).unwrap();
    }

    fn numbered_lines(count: usize) -> String {
        (1..=count).map(|i| format!("line {i}\n")).collect()
    }

    fn last_lines(path: &Path, n: usize) -> String {
        let mut out = Vec::new();
        print_last_lines(path, n, &mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    fn last_lines_with_block(path: &Path, n: usize, block: usize) -> String {
        let mut out = Vec::new();
        copy_last_lines(&File::open(path).unwrap(), n, block, &mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    /// One follower step; returns what it printed.
    fn poll(follower: &mut Follower) -> String {
        let mut out = Vec::new();
        follower.poll_once(&mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    fn started(path: &Path, n: usize) -> (Follower, String) {
        let mut follower = Follower::new(path);
        let mut out = Vec::new();
        follower.start(n, &mut out).unwrap();
        (follower, String::from_utf8(out).unwrap())
    }

    #[test]
    fn last_lines_of_a_short_log() {
        let dir = TempDir::new("short");
        append(&dir.log(), "a\nb\nc\n");
        assert_eq!(last_lines(&dir.log(), 2), "b\nc\n");
        assert_eq!(last_lines(&dir.log(), 3), "a\nb\nc\n");
    }

    #[test]
    fn asking_for_more_lines_than_the_log_has_prints_it_all() {
        let dir = TempDir::new("more");
        append(&dir.log(), "a\nb\n");
        assert_eq!(last_lines(&dir.log(), 50), "a\nb\n");
        assert_eq!(last_lines_with_block(&dir.log(), 50, 1), "a\nb\n");
    }

    #[test]
    fn a_last_line_without_newline_counts_as_a_line() {
        let dir = TempDir::new("nonl");
        append(&dir.log(), "a\nb\nc");
        assert_eq!(last_lines(&dir.log(), 1), "c");
        assert_eq!(last_lines(&dir.log(), 2), "b\nc");
        assert_eq!(last_lines_with_block(&dir.log(), 2, 2), "b\nc");
    }

    #[test]
    fn zero_lines_prints_nothing() {
        let dir = TempDir::new("zero");
        append(&dir.log(), "a\nb\n");
        assert_eq!(last_lines(&dir.log(), 0), "");
    }

    #[test]
    fn an_empty_log_prints_nothing() {
        let dir = TempDir::new("empty");
        append(&dir.log(), "");
        assert_eq!(last_lines(&dir.log(), 10), "");
    }

    #[test]
    fn last_lines_span_several_blocks() {
        let dir = TempDir::new("blocks");
        append(&dir.log(), &numbered_lines(100));
        let expected: String = (91..=100).map(|i| format!("line {i}\n")).collect();
        for block in [1, 3, 7, 64, 4096] {
            assert_eq!(last_lines_with_block(&dir.log(), 10, block), expected, "block {block}");
        }
    }

    #[test]
    fn last_lines_of_a_log_larger_than_the_block_size() {
        let dir = TempDir::new("large");
        append(&dir.log(), &numbered_lines(50_000)); // about 540 KB
        assert!(fs::metadata(dir.log()).unwrap().len() > 4 * BLOCK_SIZE as u64);
        assert_eq!(last_lines(&dir.log(), 2), "line 49999\nline 50000\n");
        let tail = last_lines(&dir.log(), 20_000);
        assert_eq!(tail.lines().count(), 20_000);
        assert!(tail.starts_with("line 30001\n"));
    }

    #[test]
    fn only_the_end_of_a_large_log_is_read() {
        let dir = TempDir::new("sparse");
        // A sparse file: a huge hole of NUL bytes, then two lines.
        let file = File::create(dir.log()).unwrap();
        file.set_len(1 << 30).unwrap();
        drop(file);
        append(&dir.log(), "x\ny\n");
        assert_eq!(last_lines(&dir.log(), 1), "y\n");
    }

    #[test]
    fn printed_lines_show_control_characters_escaped() {
        let dir = TempDir::new("escape");
        append(&dir.log(), "ok\tline\n\x1b[2Jwiped\r\u{9b}\n");
        let mut out = Vec::new();
        print_last_lines(&dir.log(), 10, &mut out).unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), "ok\tline\n\\e[2Jwiped\\r\\u{9b}\n");
    }

    #[test]
    fn a_missing_log_says_no_run_wrote_one() {
        let dir = TempDir::new("missing");
        let err = print_last_lines(&dir.log(), 10, &mut Vec::new()).unwrap_err();
        assert_eq!(err.code, crate::error::EXIT_FAILED);
        assert!(err.message.contains(&dir.log().display().to_string()), "{}", err.message);
        assert!(err.message.contains("no run has written a log yet"), "{}", err.message);
    }

    /// A reader that has gone away, like `head` after its lines.
    struct ClosedPipe;

    impl Write for ClosedPipe {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            Err(io::Error::from(io::ErrorKind::BrokenPipe))
        }
        fn flush(&mut self) -> io::Result<()> {
            Err(io::Error::from(io::ErrorKind::BrokenPipe))
        }
    }

    #[test]
    fn a_closed_pipe_ends_printing_quietly() {
        let dir = TempDir::new("pipe");
        append(&dir.log(), "a\nb\n");
        assert_eq!(print_last_lines(&dir.log(), 10, &mut ClosedPipe), Ok(()));
    }

    #[test]
    fn a_closed_pipe_ends_following_quietly() {
        let dir = TempDir::new("followpipe");
        append(&dir.log(), "a\nb\n");
        assert_eq!(follow(&dir.log(), 10, &mut ClosedPipe), Ok(()));
    }

    #[test]
    fn follow_starts_with_the_last_lines() {
        let dir = TempDir::new("fstart");
        append(&dir.log(), "a\nb\nc\n");
        let (mut follower, printed) = started(&dir.log(), 2);
        assert_eq!(printed, "b\nc\n");
        assert_eq!(poll(&mut follower), "");
        append(&dir.log(), "d\n");
        assert_eq!(poll(&mut follower), "d\n");
    }

    #[test]
    fn follow_with_zero_lines_prints_only_new_ones() {
        let dir = TempDir::new("fzero");
        append(&dir.log(), "a\nb\n");
        let (mut follower, printed) = started(&dir.log(), 0);
        assert_eq!(printed, "");
        append(&dir.log(), "c\n");
        assert_eq!(poll(&mut follower), "c\n");
    }

    #[test]
    fn follow_holds_back_an_unfinished_last_line_at_start() {
        let dir = TempDir::new("fpartialstart");
        append(&dir.log(), "a\nb\nhal");
        let (mut follower, printed) = started(&dir.log(), 1);
        assert_eq!(printed, "b\n");
        append(&dir.log(), "f done\n");
        assert_eq!(poll(&mut follower), "half done\n");
    }

    #[test]
    fn follow_waits_for_a_log_created_later() {
        let dir = TempDir::new("late");
        let (mut follower, printed) = started(&dir.log(), 10);
        assert_eq!(printed, "");
        assert!(!follower.is_open());
        assert_eq!(poll(&mut follower), "");
        append(&dir.log(), "first\nsecond\n");
        assert_eq!(poll(&mut follower), "first\nsecond\n");
        append(&dir.log(), "third\n");
        assert_eq!(poll(&mut follower), "third\n");
    }

    #[test]
    fn follow_prints_appended_lines_once() {
        let dir = TempDir::new("append");
        append(&dir.log(), "a\n");
        let (mut follower, _) = started(&dir.log(), 10);
        append(&dir.log(), "b\nc\n");
        assert_eq!(poll(&mut follower), "b\nc\n");
        assert_eq!(poll(&mut follower), "");
    }

    #[test]
    fn follow_holds_back_a_partial_line_until_its_newline() {
        let dir = TempDir::new("partial");
        append(&dir.log(), "");
        let (mut follower, _) = started(&dir.log(), 10);
        append(&dir.log(), "done\nwork");
        assert_eq!(poll(&mut follower), "done\n");
        append(&dir.log(), "ing on");
        assert_eq!(poll(&mut follower), "");
        append(&dir.log(), " it\nnext\n");
        assert_eq!(poll(&mut follower), "working on it\nnext\n");
    }

    #[test]
    fn follow_starts_again_after_truncation() {
        let dir = TempDir::new("truncate");
        append(&dir.log(), "old 1\nold 2\n");
        let (mut follower, _) = started(&dir.log(), 10);
        OpenOptions::new().write(true).truncate(true).open(dir.log()).unwrap();
        assert_eq!(poll(&mut follower), "");
        append(&dir.log(), "new\n");
        assert_eq!(poll(&mut follower), "new\n");
    }

    #[test]
    fn follow_notices_truncation_followed_by_shorter_content() {
        let dir = TempDir::new("truncshort");
        append(&dir.log(), "a long first line\n");
        let (mut follower, _) = started(&dir.log(), 10);
        fs::write(dir.log(), "short\n").unwrap();
        assert_eq!(poll(&mut follower), "short\n");
    }

    #[test]
    fn follow_drains_the_old_file_then_reads_the_rotated_one() {
        let dir = TempDir::new("rotate");
        let rotated = dir.0.join("rasen.log.1");
        append(&dir.log(), "before\n");
        let (mut follower, printed) = started(&dir.log(), 10);
        assert_eq!(printed, "before\n");
        fs::rename(dir.log(), &rotated).unwrap();
        // The writer still has the old file open and writes one more line.
        append(&rotated, "last in old\n");
        assert_eq!(poll(&mut follower), "last in old\n");
        append(&rotated, "still old\n");
        append(&dir.log(), "first in new\n");
        assert_eq!(poll(&mut follower), "still old\nfirst in new\n");
        // Once switched, the old file is no longer read.
        append(&rotated, "written too late\n");
        append(&dir.log(), "second in new\n");
        assert_eq!(poll(&mut follower), "second in new\n");
    }

    #[test]
    fn rotation_in_one_step_prints_old_then_new() {
        let dir = TempDir::new("rotate1");
        append(&dir.log(), "before\n");
        let (mut follower, _) = started(&dir.log(), 10);
        fs::rename(dir.log(), dir.0.join("rasen.log.1")).unwrap();
        append(&dir.0.join("rasen.log.1"), "old tail\nunfinished");
        append(&dir.log(), "new 1\nnew 2\n");
        assert_eq!(poll(&mut follower), "old tail\nunfinished\nnew 1\nnew 2\n");
    }

    #[test]
    fn follow_survives_deletion_and_recreation() {
        let dir = TempDir::new("recreate");
        append(&dir.log(), "one\n");
        let (mut follower, _) = started(&dir.log(), 10);
        fs::remove_file(dir.log()).unwrap();
        assert_eq!(poll(&mut follower), "");
        assert_eq!(poll(&mut follower), "");
        append(&dir.log(), "two\n");
        assert_eq!(poll(&mut follower), "two\n");
        append(&dir.log(), "three\n");
        assert_eq!(poll(&mut follower), "three\n");
    }

    #[test]
    fn a_very_long_unfinished_line_is_printed_in_pieces() {
        let dir = TempDir::new("longline");
        append(&dir.log(), "");
        let (mut follower, _) = started(&dir.log(), 10);
        let long = "x".repeat(MAX_HELD_BACK + 10);
        append(&dir.log(), &long);
        assert_eq!(poll(&mut follower).len(), long.len());
        append(&dir.log(), "y\n");
        assert_eq!(poll(&mut follower), "y\n");
    }

    #[test]
    fn a_symlinked_log_is_refused_not_printed() {
        let dir = TempDir::new("link");
        let secret = dir.0.join("secret");
        fs::write(&secret, "secret line\n").unwrap();
        std::os::unix::fs::symlink(&secret, dir.log()).unwrap();
        let mut out = Vec::new();
        let err = print_last_lines(&dir.log(), 10, &mut out).unwrap_err();
        assert_eq!(err.code, crate::error::EXIT_USAGE);
        assert!(err.message.contains("is a symbolic link"), "{}", err.message);
        let err = follow(&dir.log(), 10, &mut out).unwrap_err();
        assert!(err.message.contains("is a symbolic link"), "{}", err.message);
        assert!(out.is_empty());
    }

    #[test]
    fn follow_skips_a_link_at_the_path_and_stays_on_its_file() {
        let dir = TempDir::new("followlink");
        let (old, secret) = (dir.0.join("rasen.log.1"), dir.0.join("secret"));
        fs::write(&secret, "secret line\n").unwrap();
        append(&dir.log(), "one\n");
        let (mut follower, printed) = started(&dir.log(), 10);
        assert_eq!(printed, "one\n");
        fs::rename(dir.log(), &old).unwrap();
        std::os::unix::fs::symlink(&secret, dir.log()).unwrap();
        append(&old, "two\n");
        assert_eq!(poll(&mut follower), "two\n");
        assert!(follower.take_skip_warning());
        assert!(!follower.take_skip_warning(), "said once");
        fs::remove_file(dir.log()).unwrap();
        append(&dir.log(), "three\n");
        assert_eq!(poll(&mut follower), "three\n");

        // A link where no log was yet is skipped too, until a log is there.
        fs::remove_file(dir.log()).unwrap();
        std::os::unix::fs::symlink(&secret, dir.log()).unwrap();
        let mut late = Follower::new(&dir.log());
        assert_eq!(poll(&mut late), "");
        assert!(late.take_skip_warning());
        fs::remove_file(dir.log()).unwrap();
        append(&dir.log(), "four\n");
        assert_eq!(poll(&mut late), "four\n");
    }
}
