//! Every write and read of rasen's JSON state files goes through here:
//! atomic replacement (temp file in the same directory, fsync, rename over
//! the target, fsync the directory), the lock that serialises
//! read-modify-write cycles, pretty JSON in struct order, and loading with
//! an error that says what is wrong and where.
//!
//! It also owns how rasen's files are kept private: `.rasen/` is 0700 and
//! every file written through here is 0600 unless a caller asks otherwise
//! (the operator's umask can only tighten that), because agent output lands
//! in several of them; and how they are opened for reading, never through a
//! symlink and never anything but a regular file.
//!
//! It must never write or read through a symlink, never leave a partial
//! file where a reader or a `kill -9` could see one, and never modify (or
//! remove) a state file that it failed to read: a bad file is reported and
//! kept.

mod leftovers;
mod pretty;
mod shape;
mod syntax;
mod words;

use std::fs::{self, File, OpenOptions, Permissions};
use std::io::{self, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use miniserde::json::{self, Value};

use crate::error::{Error, Result};
use crate::sys;

pub use leftovers::remove_stale_temp_files;
pub use pretty::to_pretty_json;
pub use shape::{Fields, Kind};
pub(crate) use words::state_words;

/// Mode of every file rasen writes in `.rasen/`: the owner's alone. Agent
/// output lands in status.json, the attempt history and the log, and agent
/// output may hold secrets. The umask can only narrow it.
pub const STATE_FILE_MODE: u32 = 0o600;

/// Mode of `.rasen/` (and of any directory rasen creates for its files).
pub const PRIVATE_DIR_MODE: u32 = 0o700;

/// What every state-file error ends with: the way out, and the promise.
const FIX_HINT: &str = "fix or remove the file (rasen left it unchanged)";

/// A JSON state file's model.
pub trait StateFile: miniserde::Serialize + miniserde::Deserialize {
    /// Checks the parsed JSON's shape and names what is wrong (missing
    /// field, bad enum value…). Called only when miniserde has rejected a
    /// file, to say why.
    fn check_shape(value: &Value) -> std::result::Result<(), String>;

    /// The format version this file says it has, for files that have one.
    fn version(&self) -> Option<u32> {
        None
    }

    /// The newest format version this rasen understands.
    const SUPPORTED_VERSION: u32 = 1;
}

/// Why a state file's contents could not be used, with the position when
/// the problem is a syntax error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseProblem {
    /// 1-based line and column (in characters), for syntax errors.
    pub position: Option<(usize, usize)>,
    pub what: String,
}

impl ParseProblem {
    /// `label:LINE:COL: what`, or `label: what` for a shape problem.
    pub fn located(&self, label: &str) -> String {
        match self.position {
            Some((line, column)) => format!("{label}:{line}:{column}: {}", self.what),
            None => format!("{label}: {}", self.what),
        }
    }

    fn whole_file(what: impl Into<String>) -> ParseProblem {
        ParseProblem { position: None, what: what.into() }
    }
}

/// Loads a state file. `Ok(None)` when it does not exist; an `Error::state`
/// (exit 2) naming the file, the problem and what to do when it cannot be
/// used (a symlink is such a file: it is not followed). Only ever reads the
/// file.
pub fn load<T: StateFile>(path: &Path) -> Result<Option<T>> {
    let Some(bytes) = read_bytes(path)? else { return Ok(None) };
    match parse_state::<T>(&bytes) {
        Ok(value) => Ok(Some(value)),
        Err(problem) => Err(state_file_error(problem.located(&path.display().to_string()))),
    }
}

/// The error (exit 2) for a state file that cannot be used: `located` is
/// `path: what` or `path:LINE:COL: what`; this adds the way out.
pub fn state_file_error(located: impl std::fmt::Display) -> Error {
    Error::state(format!("{located}; {FIX_HINT}"))
}

/// Parses a state file's bytes into `T`, or says what is wrong: invalid
/// UTF-8 or JSON (with its position), the wrong shape, a newer version.
pub fn parse_state<T: StateFile>(bytes: &[u8]) -> std::result::Result<T, ParseProblem> {
    let text = std::str::from_utf8(bytes).map_err(|e| {
        let position = syntax::line_and_column(bytes, e.valid_up_to());
        ParseProblem { position: Some(position), what: "invalid UTF-8 (not a text file?)".into() }
    })?;
    if let Ok(value) = json::from_str::<T>(text) {
        return check_version(value);
    }
    // miniserde says only "error": find out what it was.
    if let Err(e) = syntax::check(text) {
        return Err(ParseProblem { position: Some((e.line, e.column)), what: e.what });
    }
    let tree: Value =
        json::from_str(text).map_err(|_| ParseProblem::whole_file("cannot be read as JSON"))?;
    T::check_shape(&tree).map_err(ParseProblem::whole_file)?;
    if let Some(e) = syntax::first_duplicate_field(text) {
        return Err(ParseProblem { position: Some((e.line, e.column)), what: e.what });
    }
    Err(ParseProblem::whole_file("a value does not have the type rasen expects"))
}

fn check_version<T: StateFile>(value: T) -> std::result::Result<T, ParseProblem> {
    match value.version() {
        Some(version) if version > T::SUPPORTED_VERSION => Err(ParseProblem::whole_file(format!(
            "format version {version} was written by a newer rasen; this one reads version {} \
             at most",
            T::SUPPORTED_VERSION
        ))),
        _ => Ok(value),
    }
}

/// Opens `path` for reading the way every read of a file of rasen's must:
/// never through a symlink (O_NOFOLLOW), never blocking on a FIFO, and only
/// a regular file. `Ok(None)` when nothing is there. A link or anything
/// else is an `Error::state` (exit 2) naming the file; what it points to is
/// never opened, let alone quoted.
pub fn open_to_read(path: &Path) -> Result<Option<File>> {
    let opened = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path);
    let file = match opened {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => return Err(symlink_refused(path)),
        Err(e) => return Err(Error::io(path, "cannot open", e)),
    };
    let meta = file.metadata().map_err(|e| Error::io(path, "cannot inspect", e))?;
    if !meta.is_file() {
        return Err(Error::failed(format!(
            "{}: is not a regular file; rasen reads only plain files there (remove it)",
            path.display()
        )));
    }
    Ok(Some(file))
}

/// The whole content of `path`, opened as `open_to_read` does; `Ok(None)`
/// when it does not exist.
pub fn read_bytes(path: &Path) -> Result<Option<Vec<u8>>> {
    let Some(mut file) = open_to_read(path)? else { return Ok(None) };
    let mut bytes = Vec::new();
    io::Read::read_to_end(&mut file, &mut bytes).map_err(|e| Error::io(path, "cannot read", e))?;
    Ok(Some(bytes))
}

/// The refusal for a symlink where rasen expects its own file.
pub fn symlink_refused(path: &Path) -> Error {
    Error::state(format!(
        "{}: is a symbolic link; rasen never reads or writes through links there \
         (replace the link with the file itself)",
        path.display()
    ))
}

/// Writes `value` to `path` as pretty JSON, atomically, mode 0600.
pub fn save<T: StateFile>(path: &Path, value: &T) -> Result<()> {
    write_atomically(path, to_pretty_json(value).as_bytes(), STATE_FILE_MODE)
}

/// Counts temp files made by this process, so that names never collide
/// between threads.
static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Creates directory `dir` (and its missing parents) with mode 0700,
/// narrowed by the umask: whoever may read in it may read agent output,
/// and whoever may write in it may replace the state files.
pub fn create_dir(dir: &Path) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(PRIVATE_DIR_MODE)
        .create(dir)
        .map_err(|e| Error::io(dir, "cannot create the directory", e))
}

/// Opens rasen's own directory `dir` (`.rasen/`), creating it if missing,
/// and makes it private: group and world bits are taken away from one
/// that has them (an older rasen made it 0755). A symlink there is
/// refused, never followed: the files in it would be written elsewhere.
/// The open directory is returned for the run lock.
pub fn open_private_dir(dir: &Path) -> Result<File> {
    refuse_symlinked_dir(dir)?;
    create_dir(dir)?;
    let opened = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(dir);
    let file = match opened {
        Ok(file) => file,
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => return Err(symlinked_dir_error(dir)),
        Err(e) => return Err(Error::io(dir, "cannot open", e)),
    };
    make_private(&file, dir)?;
    Ok(file)
}

/// Takes group and world bits away from the open directory or file `file`,
/// after making sure it belongs to the user rasen runs as: one that
/// belongs to someone else stays theirs to read and change, whatever its
/// mode, so rasen refuses to keep agent output there.
pub fn make_private(file: &File, dir: &Path) -> Result<()> {
    let meta = file.metadata().map_err(|e| Error::io(dir, "cannot inspect", e))?;
    let me = sys::effective_uid();
    if meta.uid() != me {
        return Err(Error::config(format!(
            "{}: belongs to uid {}, not to the user rasen runs as (uid {me}); rasen keeps \
             agent output there: chown it to that user, or remove it",
            dir.display(),
            meta.uid()
        )));
    }
    let mode = meta.permissions();
    if mode.mode() & 0o077 == 0 {
        return Ok(());
    }
    let private = if meta.is_dir() { PRIVATE_DIR_MODE } else { STATE_FILE_MODE };
    file.set_permissions(Permissions::from_mode(mode.mode() & private)).map_err(|e| {
        Error::failed(format!(
            "{}: cannot make it private (chmod 700): {e}; rasen keeps agent output there \
             (run as its owner, or chmod it yourself)",
            dir.display()
        ))
    })
}

/// Fails (exit 2) when `dir` is a symbolic link.
pub fn refuse_symlinked_dir(dir: &Path) -> Result<()> {
    match fs::symlink_metadata(dir) {
        Ok(meta) if meta.file_type().is_symlink() => Err(symlinked_dir_error(dir)),
        _ => Ok(()),
    }
}

fn symlinked_dir_error(dir: &Path) -> Error {
    Error::state(format!(
        "{}: is a symbolic link; rasen keeps its files only in a real directory \
         (replace the link with the directory it points to)",
        dir.display()
    ))
}

/// Replaces `path` with `bytes` so that every reader, and every instant of
/// a crash, sees either the old or the new content: a new temp file in the
/// same directory, written and fsynced, renamed over `path`, then the
/// directory fsynced so the rename itself survives a power loss.
///
/// The file gets `mode` minus group/world write and special bits, narrowed
/// by the umask (which can only make it more private). A symlink at `path`
/// is refused (nothing is written). The temp file is removed on any
/// failure.
pub fn write_atomically(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    let mode = mode & 0o755;
    refuse_symlink(path)?;
    let (temp_path, file) = create_temp_beside(path, mode)?;
    let written = fill_temp(file, bytes)
        .and_then(|()| fs::rename(&temp_path, path))
        .map_err(|e| Error::io(path, "cannot replace the file", e));
    if written.is_err() {
        let _ = fs::remove_file(&temp_path);
    }
    written?;
    sync_directory(&directory_of(path))
}

/// Fails when `path` is a symlink. (The rename would replace the link
/// itself, not follow it, so a link appearing after this check is harmless;
/// refusing up front just makes the planted link visible.)
fn refuse_symlink(path: &Path) -> Result<()> {
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_symlink() => Err(symlink_refused(path)),
        Ok(_) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io(path, "cannot inspect the file", e)),
    }
}

/// Creates `.NAME.tmp.PID.N` beside `path`, exclusively (a leftover from a
/// killed process with the same PID is skipped, never reused).
fn create_temp_beside(path: &Path, mode: u32) -> Result<(PathBuf, File)> {
    let name = path.file_name().ok_or_else(|| {
        Error::failed(format!("{}: not a file name, cannot write it", path.display()))
    })?;
    let dir = directory_of(path);
    let pid = sys::getpid();
    let mut tries = 0;
    loop {
        tries += 1;
        let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
        let temp_path = dir.join(leftovers::temp_name(&name.to_string_lossy(), pid, n));
        let opened = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&temp_path);
        match opened {
            Ok(file) => return Ok((temp_path, file)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && tries < 100 => continue,
            Err(e) => return Err(Error::io(&temp_path, "cannot create a temporary file", e)),
        }
    }
}

/// Writes the content and fsyncs, so the rename publishes a complete file.
/// Its mode is the one it was created with, narrowed by the umask.
fn fill_temp(mut file: File, bytes: &[u8]) -> io::Result<()> {
    file.write_all(bytes)?;
    file.sync_all()
}

/// fsyncs a directory so a rename in it is durable. File systems that
/// cannot fsync a directory (EINVAL) offer nothing better; that is not an
/// error.
fn sync_directory(dir: &Path) -> Result<()> {
    let synced = File::open(dir).and_then(|d| d.sync_all());
    match synced {
        Err(e) if e.kind() != io::ErrorKind::InvalidInput => {
            Err(Error::io(dir, "cannot sync the directory", e))
        }
        _ => Ok(()),
    }
}

/// The directory a path's file lives in (`.` for a bare file name).
fn directory_of(path: &Path) -> PathBuf {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// An exclusive `flock` on a lock file that is never renamed or replaced
/// (a lock on a file that a rename replaces protects nothing). Held until
/// dropped: closing the descriptor releases it.
#[derive(Debug)]
pub struct FileLock {
    /// Holding the open file is holding the lock.
    _file: File,
}

impl FileLock {
    /// Opens (creating, mode 0600) the lock file, never through a symlink,
    /// close-on-exec so no agent inherits it, and waits for the lock.
    pub fn acquire(path: &Path) -> Result<FileLock> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(STATE_FILE_MODE)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(path)
            .map_err(|e| lock_open_error(path, e))?;
        sys::lock_exclusive(file.as_fd()).map_err(|e| Error::io(path, "cannot lock", e))?;
        Ok(FileLock { _file: file })
    }
}

fn lock_open_error(path: &Path, e: io::Error) -> Error {
    if e.raw_os_error() == Some(libc::ELOOP) {
        return Error::failed(format!(
            "{}: is a symbolic link; rasen does not lock through links (remove the link)",
            path.display()
        ));
    }
    Error::io(path, "cannot open the lock file", e)
}

#[cfg(test)]
pub mod testing {
    //! A scratch directory per test, removed when dropped.

    use std::path::{Path, PathBuf};
    use std::sync::atomic::{AtomicU64, Ordering};

    static NEXT: AtomicU64 = AtomicU64::new(0);

    pub struct TempDir(PathBuf);

    impl TempDir {
        pub fn new(name: &str) -> TempDir {
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            let dir = std::env::temp_dir().join(format!("rasen-{name}-{}-{n}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            TempDir(dir)
        }

        pub fn path(&self) -> &Path {
            &self.0
        }

        pub fn join(&self, name: &str) -> PathBuf {
            self.0.join(name)
        }

        /// Names of the entries in the directory, sorted.
        pub fn entries(&self) -> Vec<String> {
            let mut names: Vec<String> = std::fs::read_dir(&self.0)
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            names.sort();
            names
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::testing::TempDir;
    use super::*;
    use miniserde::{Deserialize, Serialize};
    use std::os::unix::fs::MetadataExt;
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};

    #[derive(Serialize, Deserialize, Debug, PartialEq)]
    struct Sample {
        version: u32,
        name: String,
        items: Vec<u64>,
        note: Option<String>,
    }

    impl StateFile for Sample {
        fn check_shape(value: &Value) -> std::result::Result<(), String> {
            let top = Fields::top(value)?;
            top.required("version", Kind::SmallCount)?;
            top.required("name", Kind::Text)?;
            for (i, item) in top.required_list("items")?.iter().enumerate() {
                if !matches!(item, Value::Number(json::Number::U64(_))) {
                    return Err(format!("items: item {} is {}", i + 1, shape::describe(item)));
                }
            }
            top.optional("note", Kind::Text)
        }

        fn version(&self) -> Option<u32> {
            Some(self.version)
        }
    }

    fn sample(n: u64) -> Sample {
        Sample { version: 1, name: format!("sample {n}"), items: (0..n).collect(), note: None }
    }

    /// The umask is the process's: tests that change it take turns.
    static UMASK_TESTS: std::sync::Mutex<()> = std::sync::Mutex::new(());

    fn mode_of(path: &Path) -> u32 {
        fs::metadata(path).unwrap().mode() & 0o7777
    }

    #[test]
    fn atomic_write_replaces_content_and_leaves_no_temp_files() {
        let dir = TempDir::new("store-write");
        let path = dir.join("state.json");
        write_atomically(&path, b"first", 0o644).unwrap();
        write_atomically(&path, b"second", 0o644).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"second");
        assert_eq!(dir.entries(), vec!["state.json"]);
    }

    #[test]
    fn atomic_write_refuses_a_symlink_target() {
        let dir = TempDir::new("store-symlink");
        let victim = dir.join("victim");
        fs::write(&victim, "precious").unwrap();
        let link = dir.join("state.json");
        std::os::unix::fs::symlink(&victim, &link).unwrap();
        let err = write_atomically(&link, b"overwritten", 0o644).unwrap_err();
        assert!(err.message.contains("symbolic link"), "{err}");
        assert_eq!(fs::read_to_string(&victim).unwrap(), "precious");
        assert!(fs::symlink_metadata(&link).unwrap().file_type().is_symlink());
        assert_eq!(dir.entries(), vec!["state.json", "victim"]);
    }

    #[test]
    fn atomic_write_sets_the_mode_whatever_the_umask() {
        let dir = TempDir::new("store-mode");
        let path = dir.join("state.json");
        let _serial = UMASK_TESTS.lock();
        let old = sys::set_umask(0);
        let results = [
            write_atomically(&path, b"a", 0o644).map(|()| mode_of(&path)),
            write_atomically(&path, b"b", 0o666).map(|()| mode_of(&path)),
            write_atomically(&path, b"c", 0o600).map(|()| mode_of(&path)),
        ];
        sys::set_umask(old);
        let modes: Vec<u32> = results.into_iter().map(|r| r.unwrap()).collect();
        assert_eq!(modes, vec![0o644, 0o644, 0o600]);
    }

    #[test]
    fn the_umask_can_only_tighten_the_mode() {
        let dir = TempDir::new("store-umask");
        let path = dir.join("state.json");
        let _serial = UMASK_TESTS.lock();
        let old = sys::set_umask(0o077);
        let shared = write_atomically(&path, b"a", 0o644).map(|()| mode_of(&path));
        let private = write_atomically(&path, b"b", STATE_FILE_MODE).map(|()| mode_of(&path));
        sys::set_umask(old);
        assert_eq!((shared.unwrap(), private.unwrap()), (0o600, 0o600));
    }

    #[test]
    fn state_files_and_directories_are_private_whatever_the_umask() {
        let dir = TempDir::new("store-private");
        let (path, sub) = (dir.join("sample.json"), dir.join("a/b"));
        let _serial = UMASK_TESTS.lock();
        let old = sys::set_umask(0);
        let saved = save(&path, &sample(1)).map(|()| mode_of(&path));
        let created = create_dir(&sub).map(|()| (mode_of(&dir.join("a")), mode_of(&sub)));
        sys::set_umask(old);
        assert_eq!(saved.unwrap(), 0o600);
        assert_eq!(created.unwrap(), (0o700, 0o700));
    }

    #[test]
    fn a_private_dir_is_created_0700_and_an_open_one_is_tightened() {
        let dir = TempDir::new("store-private-dir");
        let rasen = dir.join(".rasen");
        open_private_dir(&rasen).unwrap();
        assert_eq!(mode_of(&rasen), 0o700);
        fs::set_permissions(&rasen, Permissions::from_mode(0o755)).unwrap();
        open_private_dir(&rasen).unwrap();
        assert_eq!(mode_of(&rasen), 0o700);
        fs::set_permissions(&rasen, Permissions::from_mode(0o500)).unwrap();
        open_private_dir(&rasen).unwrap();
        assert_eq!(mode_of(&rasen), 0o500, "only tightened, never loosened");
    }

    #[test]
    fn a_symlinked_private_dir_is_refused_and_nothing_is_created_through_it() {
        let dir = TempDir::new("store-dir-link");
        let target = dir.join("elsewhere");
        fs::create_dir(&target).unwrap();
        std::os::unix::fs::symlink(&target, dir.join(".rasen")).unwrap();
        let err = open_private_dir(&dir.join(".rasen")).unwrap_err();
        assert_eq!(err.code, 2, "{err}");
        assert!(err.message.contains(".rasen: is a symbolic link"), "{err}");
        std::os::unix::fs::symlink(dir.join("nowhere"), dir.join("dangling")).unwrap();
        assert!(open_private_dir(&dir.join("dangling")).is_err());
        assert!(!dir.join("nowhere").exists());
        assert_eq!(fs::read_dir(&target).unwrap().count(), 0);
    }

    #[test]
    fn load_refuses_a_symlinked_state_file_without_reading_it() {
        let dir = TempDir::new("store-load-link");
        let target = dir.join("target.json");
        save(&target, &sample(2)).unwrap();
        let link = dir.join("sample.json");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let err = load::<Sample>(&link).unwrap_err();
        assert_eq!(err.code, 2, "{err}");
        assert!(err.message.starts_with(&format!("{}: is a symbolic link", link.display())));
        assert!(!err.message.contains("sample 2"), "{err}");
        assert!(fs::symlink_metadata(&link).unwrap().file_type().is_symlink());
    }

    #[test]
    fn load_refuses_what_is_not_a_regular_file_without_blocking() {
        let dir = TempDir::new("store-load-fifo");
        let fifo = dir.join("sample.json");
        let made = Command::new("mkfifo").arg(&fifo).status().unwrap();
        assert!(made.success());
        let err = load::<Sample>(&fifo).unwrap_err();
        assert!(err.message.contains("is not a regular file"), "{err}");
        let err = load::<Sample>(dir.path()).unwrap_err();
        assert!(err.message.contains("is not a regular file"), "{err}");
    }

    #[test]
    fn atomic_write_removes_its_temp_file_on_failure() {
        let dir = TempDir::new("store-fail");
        // The target is a non-empty directory: the rename fails.
        let path = dir.join("state.json");
        fs::create_dir(&path).unwrap();
        fs::write(path.join("inside"), "x").unwrap();
        assert!(write_atomically(&path, b"data", 0o644).is_err());
        assert_eq!(dir.entries(), vec!["state.json"]);
    }

    #[test]
    fn atomic_write_works_with_a_bare_file_name() {
        assert_eq!(directory_of(Path::new("status.json")), PathBuf::from("."));
        assert_eq!(directory_of(Path::new(".rasen/status.json")), PathBuf::from(".rasen"));
    }

    #[test]
    fn save_then_load_round_trips() {
        let dir = TempDir::new("store-roundtrip");
        let path = dir.join("sample.json");
        assert_eq!(load::<Sample>(&path).unwrap(), None);
        save(&path, &sample(3)).unwrap();
        assert_eq!(load::<Sample>(&path).unwrap(), Some(sample(3)));
        assert_eq!(mode_of(&path), 0o600);
        let text = fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("{\n  \"version\": 1,\n  \"name\": \"sample 3\",\n"), "{text}");
        assert!(text.ends_with("}\n"));
    }

    fn assert_load_error(contents: &str, expected: &str) {
        let dir = TempDir::new("store-bad");
        let path = dir.join("sample.json");
        fs::write(&path, contents).unwrap();
        let err = load::<Sample>(&path).unwrap_err();
        assert_eq!(err.code, 2, "{err}");
        let label = path.display().to_string();
        assert_eq!(err.message, format!("{label}{expected}; {FIX_HINT}"));
        assert_eq!(fs::read_to_string(&path).unwrap(), contents, "the file must be kept as it was");
        assert_eq!(dir.entries(), vec!["sample.json"]);
    }

    #[test]
    fn load_reports_what_is_wrong_and_keeps_the_file() {
        assert_load_error(
            "{\n  \"version\": 1,\n  \"name\": \"x\",\n  \"items\": [1, 2,]\n}\n",
            ":4:17: trailing comma before ']'",
        );
        assert_load_error("{\"version\": 1, \"name\": \"x\"}", ": missing field \"items\"");
        assert_load_error(
            "{\"version\": 1, \"name\": 7, \"items\": []}",
            ": \"name\" must be a string, found 7",
        );
        assert_load_error("", ":1:1: the file is empty");
        assert_load_error(
            "{\"version\": 2, \"name\": \"x\", \"items\": []}",
            ": format version 2 was written by a newer rasen; this one reads version 1 at most",
        );
    }

    /// Found by the fuzzer: miniserde rejects a field written twice when
    /// its first value has the wrong type, while the tree that the shape
    /// check reads keeps only the last one, so nothing was named.
    #[test]
    fn load_names_a_field_written_twice() {
        assert_load_error(
            "{\"version\": 1, \"name\": 7, \"name\": \"x\", \"items\": []}",
            ":1:27: field \"name\" appears twice in one object (first at line 1, column 16); keep one",
        );
    }

    #[test]
    fn load_reports_invalid_utf8_with_its_position() {
        let dir = TempDir::new("store-utf8");
        let path = dir.join("sample.json");
        fs::write(&path, b"{\n  \"name\": \"\xff\"}").unwrap();
        let err = load::<Sample>(&path).unwrap_err();
        assert!(err.message.contains("sample.json:2:12: invalid UTF-8"), "{err}");
    }

    #[test]
    fn load_names_the_path_as_given() {
        let dir = TempDir::new("store-label");
        fs::write(dir.join("sample.json"), "{").unwrap();
        let as_given = dir.path().join(".").join("sample.json");
        let err = load::<Sample>(&as_given).unwrap_err();
        let expected = format!(
            "{}:1:2: unexpected end of file inside an object (the file looks truncated); {FIX_HINT}",
            as_given.display()
        );
        assert_eq!(err.message, expected);
    }

    #[test]
    fn lock_is_exclusive_and_released_on_drop() {
        let dir = TempDir::new("store-lock");
        let path = dir.join("state.lock");
        let lock = FileLock::acquire(&path).unwrap();
        let other = File::open(&path).unwrap();
        assert!(!sys::try_lock_exclusive(other.as_fd()).unwrap());
        drop(lock);
        assert!(sys::try_lock_exclusive(other.as_fd()).unwrap());
        assert_eq!(mode_of(&path) & 0o022, 0);
    }

    #[test]
    fn lock_refuses_a_symlink() {
        let dir = TempDir::new("store-lock-link");
        let path = dir.join("state.lock");
        std::os::unix::fs::symlink(dir.join("elsewhere"), &path).unwrap();
        let err = FileLock::acquire(&path).unwrap_err();
        assert!(err.message.contains("symbolic link"), "{err}");
        assert!(!dir.join("elsewhere").exists());
    }

    const WRITER_ENV: &str = "RASEN_TEST_REWRITE_LOOP";

    /// Not a test by itself: when `WRITER_ENV` names a file, this process is
    /// the writer that `readers_never_see_a_partial_file` starts, and it
    /// rewrites that file until it is killed.
    #[test]
    fn rewrite_loop_for_reader_test() {
        let Some(path) = std::env::var_os(WRITER_ENV) else { return };
        let path = PathBuf::from(path);
        let (small, large) = (sample(2_000), sample(20_000));
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            save(&path, &small).unwrap();
            save(&path, &large).unwrap();
        }
    }

    #[test]
    fn readers_never_see_a_partial_file() {
        let dir = TempDir::new("store-readers");
        let path = dir.join("sample.json");
        save(&path, &sample(2_000)).unwrap();
        let mut writer = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "store::tests::rewrite_loop_for_reader_test", "--nocapture"])
            .env(WRITER_ENV, &path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Read until the writer has replaced the file many times over.
        let (mut reads, mut changes, mut last_len) = (0, 0, 2_000);
        let deadline = Instant::now() + Duration::from_secs(30);
        while (reads < 300 || changes < 20) && Instant::now() < deadline {
            let len = match load::<Sample>(&path) {
                Ok(Some(value)) => value.items.len(),
                other => {
                    let _ = writer.kill();
                    panic!("a reader saw a broken file: {other:?}");
                }
            };
            assert!(len == 2_000 || len == 20_000, "{len}");
            changes += usize::from(len != last_len);
            last_len = len;
            reads += 1;
        }
        // kill -9 in the middle of the loop: what is left still parses.
        writer.kill().unwrap();
        writer.wait().unwrap();
        let after = load::<Sample>(&path).unwrap().unwrap();
        assert!(after.items.len() == 2_000 || after.items.len() == 20_000);
        assert!(changes >= 20, "the writer replaced the file only {changes} times");
    }
}
