//! A small mutation fuzzer, std only, compiled into the unit tests: it
//! takes real inputs (the shipped rasen.yml, state files from a real run,
//! captured Claude output), mutates them with a seeded PRNG, and hands
//! each case to a target (`targets`) that says what its reader must never
//! do: panic, hang, or reject an input without saying clearly why.
//!
//! It owns the PRNG, the mutations, and the case loop: how many cases
//! (`RASEN_FUZZ_CASES`, per target), which seed (`RASEN_FUZZ_SEED`, else one
//! drawn from the clock and printed), the watchdog that reports a case that
//! never ends, and the shrinking of a failing input to a small one for a
//! regression test. It never touches the disk, a process or the network:
//! the readers it drives are pure.
//!
//! Every case's PRNG derives from the seed and the case's number, and the
//! pool of accepted inputs that later cases mutate grows the same way from
//! the same seed, so `RASEN_FUZZ_SEED=S RASEN_FUZZ_CASES=N` replays a run
//! exactly.

mod targets;

use std::cell::{Cell, RefCell};
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex, Once};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Cases per target in `cargo test` (`make test`): the whole fuzz run stays
/// within a few seconds on a busy machine. `make fuzz` asks for many more.
const DEFAULT_CASES: u64 = 2000;

/// A case that runs this long has hung: a normal one takes well under a
/// millisecond. Only a real hang (an endless loop) ever gets near it, so the
/// test never fails because the machine is slow.
const HANG_SECS: u64 = 60;

/// Mutations stacked on one case, at most.
const MAX_STACKED: usize = 8;

/// Accepted inputs kept for later cases to mutate further.
const POOL_SIZE: usize = 64;

/// Candidates tried while shrinking a failing input, at most.
const SHRINK_TRIES: usize = 4000;

/// splitmix64: tiny, fast, and good enough to pick mutations; the same
/// seed always gives the same sequence.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next_u64() % n as u64) as usize
        }
    }

    /// True one time in `n`.
    pub fn one_in(&mut self, n: usize) -> bool {
        self.below(n) == 0
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// What a target made of one case, when it behaved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Accepted,
    Rejected,
}

/// A reader to fuzz and what it must do with any input.
pub struct Target {
    /// Names the target in messages: `yaml`, `plan`…
    pub name: &'static str,
    /// Real inputs that cases start from.
    pub seeds: Vec<Vec<u8>>,
    /// Fragments the format is made of, spliced in by the mutations.
    pub tokens: &'static [&'static str],
    /// Inputs are cut to this many bytes: it bounds the work per case.
    pub max_len: usize,
    /// Runs the reader on one input. `Err` says which property failed; a
    /// panic fails too. The PRNG is for choices the target makes itself
    /// (how to chunk the input), derived from the case so a replay repeats them.
    pub check: fn(&[u8], &mut Rng) -> Result<Verdict, String>,
}

/// How a run went, for the line printed at its end.
struct Tally {
    accepted: u64,
    rejected: u64,
}

/// A case that broke a property: where, why, and the input shrunk.
struct Failure {
    case: u64,
    why: String,
    input: Vec<u8>,
}

/// Runs `RASEN_FUZZ_CASES` cases (default [`DEFAULT_CASES`]) on `target`
/// and prints `fuzz NAME: N cases (A accepted, R rejected), seed S`; panics
/// with the seed, the reason and the shrunk input when a case fails.
pub fn run(target: Target) {
    let cases = env_number("RASEN_FUZZ_CASES").unwrap_or(DEFAULT_CASES);
    let seed = env_number("RASEN_FUZZ_SEED").unwrap_or_else(seed_from_clock);
    let name = target.name;
    match run_watched(target, seed, cases) {
        Ok(tally) => println!(
            "fuzz {name}: {cases} cases ({} accepted, {} rejected), seed {seed}",
            tally.accepted, tally.rejected
        ),
        Err(failure) => panic!(
            "fuzz {name}: case {} of seed {seed} failed: {}\nshrunk input ({} bytes): {:?}\n\
             replay: RASEN_FUZZ_SEED={seed} RASEN_FUZZ_CASES={} cargo test --bin rasen fuzz::",
            failure.case,
            failure.why,
            failure.input.len(),
            String::from_utf8_lossy(&failure.input),
            failure.case + 1,
        ),
    }
}

fn env_number(name: &str) -> Option<u64> {
    let value = std::env::var(name).ok()?;
    match value.trim().parse() {
        Ok(n) => Some(n),
        Err(_) => panic!("{name}={value:?}: expected a whole number"),
    }
}

fn seed_from_clock() -> u64 {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    Rng::new(now.as_nanos() as u64 ^ u64::from(std::process::id())).next_u64() >> 16
}

/// What the worker shows the watchdog: the case it is on and its input.
#[derive(Default)]
struct Progress {
    case: AtomicU64,
    input: Mutex<Vec<u8>>,
}

/// Runs the cases on a worker thread while this one watches that each
/// case ends within [`HANG_SECS`].
fn run_watched(target: Target, seed: u64, cases: u64) -> Result<Tally, Failure> {
    let progress = Arc::new(Progress::default());
    let (done, result) = mpsc::channel();
    let shared = Arc::clone(&progress);
    let worker = std::thread::Builder::new()
        .name(format!("fuzz-{}", target.name))
        .spawn(move || {
            let _ = done.send(run_cases(&target, seed, cases, &shared));
        })
        .expect("a thread for the fuzzer");
    let mut last_case = u64::MAX;
    loop {
        match result.recv_timeout(Duration::from_secs(HANG_SECS)) {
            Ok(outcome) => {
                let _ = worker.join();
                return outcome;
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                let case = progress.case.load(Ordering::SeqCst);
                if case == last_case {
                    let input = progress.input.lock().map(|i| i.clone()).unwrap_or_default();
                    let why = format!("still running after {HANG_SECS} s: a hang");
                    return Err(Failure { case, why, input });
                }
                last_case = case;
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                let input = progress.input.lock().map(|i| i.clone()).unwrap_or_default();
                let why = "the fuzzer itself failed".to_string();
                return Err(Failure { case: progress.case.load(Ordering::SeqCst), why, input });
            }
        }
    }
}

fn run_cases(
    target: &Target,
    seed: u64,
    cases: u64,
    progress: &Progress,
) -> Result<Tally, Failure> {
    quiet_panics_in_this_thread();
    let mut pool: Vec<Vec<u8>> = Vec::new();
    let mut tally = Tally { accepted: 0, rejected: 0 };
    for case in 0..cases {
        let mut rng = case_rng(seed, case);
        let input = make_input(target, &pool, &mut rng);
        if let Ok(mut shown) = progress.input.lock() {
            shown.clone_from(&input);
        }
        progress.case.store(case, Ordering::SeqCst);
        let check_seed = rng.next_u64();
        match run_case(target, &input, check_seed) {
            Ok(Verdict::Accepted) => {
                tally.accepted += 1;
                keep_in_pool(&mut pool, input, &mut rng);
            }
            Ok(Verdict::Rejected) => tally.rejected += 1,
            Err(why) => {
                let input = shrink(target, input, check_seed);
                return Err(Failure { case, why, input });
            }
        }
    }
    Ok(tally)
}

/// The PRNG of case `case`: independent of every other case's.
fn case_rng(seed: u64, case: u64) -> Rng {
    let mut mix = Rng::new(seed ^ case.wrapping_mul(0xd6e8_feb8_6659_fd93));
    Rng::new(mix.next_u64())
}

fn keep_in_pool(pool: &mut Vec<Vec<u8>>, input: Vec<u8>, rng: &mut Rng) {
    if pool.len() < POOL_SIZE {
        pool.push(input);
    } else if rng.one_in(4) {
        let at = rng.below(pool.len());
        pool[at] = input;
    }
}

/// Runs the target once; a panic becomes an `Err` naming where it happened.
fn run_case(target: &Target, input: &[u8], check_seed: u64) -> Result<Verdict, String> {
    let mut rng = Rng::new(check_seed);
    match panic::catch_unwind(AssertUnwindSafe(|| (target.check)(input, &mut rng))) {
        Ok(verdict) => verdict,
        Err(payload) => {
            let message = payload
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            let place = LAST_PANIC_PLACE.with(|p| p.borrow_mut().take()).unwrap_or_default();
            Err(format!("panicked at {place}: {message}"))
        }
    }
}

/// Removes ever smaller pieces of a failing input as long as it still
/// fails (any failure), so that the regression test shows what matters.
fn shrink(target: &Target, mut input: Vec<u8>, check_seed: u64) -> Vec<u8> {
    let mut tries = 0;
    let mut piece = input.len() / 2;
    while piece > 0 && tries < SHRINK_TRIES {
        let mut at = 0;
        let mut shrunk = false;
        while at < input.len() && tries < SHRINK_TRIES {
            tries += 1;
            let end = (at + piece).min(input.len());
            let candidate = [&input[..at], &input[end..]].concat();
            if run_case(target, &candidate, check_seed).is_err() {
                input = candidate;
                shrunk = true;
            } else {
                at += piece;
            }
        }
        if !shrunk {
            piece /= 2;
        }
    }
    input
}

thread_local! {
    /// Set on fuzz threads: a panic there is a finding, reported once with
    /// its input, not printed for every case and every shrinking step.
    static QUIET: Cell<bool> = const { Cell::new(false) };
    /// `file:line:column` of the last quiet panic.
    static LAST_PANIC_PLACE: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Installs (once per process) a panic hook that stays silent on threads
/// that asked for it and remembers where the panic was; every other
/// thread's panics go to the hook that was there before.
fn quiet_panics_in_this_thread() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        let previous = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            if QUIET.with(Cell::get) {
                let place = info.location().map(|l| l.to_string());
                LAST_PANIC_PLACE.with(|p| *p.borrow_mut() = place);
            } else {
                previous(info);
            }
        }));
    });
    QUIET.with(|q| q.set(true));
}

// --- mutations --------------------------------------------------------------

/// One case's input: a seed, or now and then an accepted input from the
/// pool, with a few mutations stacked on it, cut to the target's length.
fn make_input(target: &Target, pool: &[Vec<u8>], rng: &mut Rng) -> Vec<u8> {
    let mut input = if !pool.is_empty() && rng.one_in(3) {
        rng.pick(pool).clone()
    } else {
        rng.pick(&target.seeds).clone()
    };
    for _ in 0..1 + rng.below(MAX_STACKED) {
        mutate(&mut input, target, rng);
    }
    input.truncate(target.max_len);
    input
}

/// Bytes that mean something to one of the formats, or to UTF-8.
const INTERESTING_BYTES: &[u8] = b"\0\t\n\r \"#'(),-./0:;<>?[\\]`{|}~\x7f\x80\xbf\xc3\xe2\xf0\xff";

/// Characters that stress code that counts bytes or columns.
const INTERESTING_CHARS: &[&str] =
    &["é", "世", "😀", "\u{feff}", "\u{2028}", "\u{85}", "\u{0}", "\u{1b}[31m", "\r\n"];

/// Numbers at the edges of the types the readers use.
const INTERESTING_NUMBERS: &[&str] = &[
    "0",
    "-0",
    "-1",
    "1.5",
    "4294967295",
    "4294967296",
    "2147483648",
    "-2147483649",
    "9223372036854775808",
    "-9223372036854775809",
    "18446744073709551615",
    "18446744073709551616",
    "1e308",
    "1e999",
    "-1e999",
    "1e-400",
    "0.1e1",
    "00",
    "1E+2",
    "123456789012345678901234567890",
];

fn mutate(input: &mut Vec<u8>, target: &Target, rng: &mut Rng) {
    let len = input.len();
    match rng.below(12) {
        0 if len > 0 => {
            let at = rng.below(len);
            input[at] ^= 1 << rng.below(8);
        }
        1 if len > 0 => {
            let at = rng.below(len);
            input[at] = *rng.pick(INTERESTING_BYTES);
        }
        2 => {
            let at = rng.below(len + 1);
            input.insert(at, *rng.pick(INTERESTING_BYTES));
        }
        3 if len > 0 => {
            let (start, end) = some_range(len, rng);
            input.drain(start..end);
        }
        4 if len > 0 => repeat_range(input, rng),
        5 => insert_at_random(input, rng.pick(target.tokens).as_bytes(), rng),
        6 if len > 0 => {
            let (start, end) = some_range(len, rng);
            input.splice(start..end, rng.pick(target.tokens).bytes());
        }
        7 => splice_from_seed(input, target, rng),
        8 => input.truncate(rng.below(len + 1)),
        9 => swap_lines(input, rng),
        10 => insert_at_random(input, rng.pick(INTERESTING_CHARS).as_bytes(), rng),
        _ => replace_a_number(input, rng),
    }
}

/// A range of up to a quarter of `len` (at least one byte).
fn some_range(len: usize, rng: &mut Rng) -> (usize, usize) {
    let start = rng.below(len);
    let end = start + 1 + rng.below((len - start).min(len / 4 + 1));
    (start, end.min(len))
}

fn insert_at_random(input: &mut Vec<u8>, bytes: &[u8], rng: &mut Rng) {
    let at = rng.below(input.len() + 1);
    input.splice(at..at, bytes.iter().copied());
}

/// Repeats a short range many times in place: deep nesting (`[[[[`),
/// long lines, many items.
fn repeat_range(input: &mut Vec<u8>, rng: &mut Rng) {
    let start = rng.below(input.len());
    let end = (start + 1 + rng.below(16)).min(input.len());
    let most = if rng.one_in(8) { 2000 } else { 64 };
    let times = 1 + rng.below(most);
    let piece = input[start..end].to_vec();
    let repeated: Vec<u8> = piece.iter().copied().cycle().take(piece.len() * times).collect();
    input.splice(end..end, repeated);
}

fn splice_from_seed(input: &mut Vec<u8>, target: &Target, rng: &mut Rng) {
    let other = rng.pick(&target.seeds);
    if other.is_empty() {
        return;
    }
    let (start, end) = some_range(other.len(), rng);
    let piece = other[start..end].to_vec();
    insert_at_random(input, &piece, rng);
}

fn swap_lines(input: &mut Vec<u8>, rng: &mut Rng) {
    let mut lines: Vec<&[u8]> = input.split(|&b| b == b'\n').collect();
    if lines.len() < 2 {
        return;
    }
    let (a, b) = (rng.below(lines.len()), rng.below(lines.len()));
    lines.swap(a, b);
    *input = lines.join(&b'\n');
}

/// Replaces a run of digits (or inserts at random when there is none) with
/// one of [`INTERESTING_NUMBERS`].
fn replace_a_number(input: &mut Vec<u8>, rng: &mut Rng) {
    let number = rng.pick(INTERESTING_NUMBERS).as_bytes();
    let digits: Vec<usize> = (0..input.len()).filter(|&i| input[i].is_ascii_digit()).collect();
    if digits.is_empty() {
        insert_at_random(input, number, rng);
        return;
    }
    let start = *rng.pick(&digits);
    let end = (start..input.len()).find(|&i| !input[i].is_ascii_digit()).unwrap_or(input.len());
    input.splice(start..end, number.iter().copied());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample_target(check: fn(&[u8], &mut Rng) -> Result<Verdict, String>) -> Target {
        Target {
            name: "sample",
            seeds: vec![b"key: value\nlist: [1, 2]\n".to_vec()],
            tokens: &["[", "]", ": "],
            max_len: 256,
            check,
        }
    }

    #[test]
    fn the_same_seed_makes_the_same_cases() {
        let target = sample_target(|_, _| Ok(Verdict::Rejected));
        let inputs = |seed| -> Vec<Vec<u8>> {
            (0..50).map(|case| make_input(&target, &[], &mut case_rng(seed, case))).collect()
        };
        assert_eq!(inputs(7), inputs(7));
        assert_ne!(inputs(7), inputs(8));
    }

    #[test]
    fn inputs_never_exceed_the_targets_length() {
        let target = sample_target(|_, _| Ok(Verdict::Rejected));
        for case in 0..500 {
            assert!(make_input(&target, &[], &mut case_rng(1, case)).len() <= target.max_len);
        }
    }

    #[test]
    fn a_panic_is_caught_shrunk_and_located() {
        fn panics_on_a_bracket(input: &[u8], _: &mut Rng) -> Result<Verdict, String> {
            assert!(!input.contains(&b'['), "a bracket");
            Ok(Verdict::Accepted)
        }
        let target = sample_target(panics_on_a_bracket);
        quiet_panics_in_this_thread();
        let why = run_case(&target, b"key: [x]", 0).unwrap_err();
        assert!(why.contains("a bracket") && why.contains("src/fuzz/mod.rs"), "{why}");
        assert_eq!(shrink(&target, b"key: [x]".to_vec(), 0), b"[");
    }

    #[test]
    fn a_broken_property_fails_the_run_with_the_case() {
        fn rejects_long_input(input: &[u8], _: &mut Rng) -> Result<Verdict, String> {
            match input.len() > 30 {
                true => Err("too long".to_string()),
                false => Ok(Verdict::Rejected),
            }
        }
        let target = sample_target(rejects_long_input);
        let failure = run_watched(target, 3, 10_000).err().expect("a failure");
        assert_eq!(failure.why, "too long");
        assert_eq!(failure.input.len(), 31, "shrunk to the shortest failing length");
    }
}
