//! The trace's log (SQLite): the events of a group of requests that wrote nothing
//! are made durable by one append and one `fdatasync` of a file of this server
//! instance's own, and answered; the applier ([`super::applier`]) moves them into
//! the database's chains and searchable trace afterwards, many groups a commit.
//! The database's commit and its log's sync (about 0.3 + 0.4 ms per group, the
//! writer's lock held meanwhile) leave the answer's path; the append's sync takes
//! about 0.15 ms (BENCHMARKS.md).
//!
//! The log is two files used in turn, `a.log` and `b.log`, in a folder of the
//! instance's own beside the database (`<database>-trace/<uuid>/`), locked while
//! the instance runs. A group is one frame:
//!
//! ```text
//! "DMPT" | generation: u64 LE | start: u64 LE | length: u32 LE | CRC-32 of (generation ‖ start ‖ length ‖ payload) | payload
//! ```
//!
//! A file is written from its start; once past [`SWITCH_AT`] bytes, the appender
//! goes on in the other file, from its start, with the next generation, as soon
//! as every frame of that other file is applied and durable in the database.
//! `start` is the bytes appended before the frame, across both files. Reading a
//! file back takes the frames from its start while they hold and carry the first
//! frame's generation: what lies after (a torn frame, an older turn's frames,
//! zeros) was never answered or is already applied. What is not that is damage,
//! told (see [`orphaned_logs`]): a frame that does not hold before frames of its
//! turn that do, a file missing, or a turn that does not start where the one
//! before it (in the other file) ends.
//!
//! Recovery ([`orphaned_logs`]): at start, the folders no running instance locks
//! are read back and their frames applied, each request's events unless the
//! database holds its first event already (a frame is applied whole or not at all).

use std::fs::{File, OpenOptions};
use std::os::unix::fs::{DirBuilderExt, FileExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A frame's mark.
const MAGIC: &[u8; 4] = b"DMPT";

/// A frame's header: mark, generation, length, checksum.
const HEADER: usize = 4 + 8 + 8 + 4 + 4;

/// Past this many bytes in one file, the appender goes on in the other file as
/// soon as the other one is wholly applied. After the first turn, appends
/// overwrite allocated blocks: an `fdatasync` without a change of the file's size
/// (about 0.13 ms here against 0.19 ms for an append growing it).
pub const SWITCH_AT: u64 = 8 << 20;

/// The largest payload a frame may announce when read back (a group's events:
/// [`super::writer`] caps a group at 512 requests).
const MAX_PAYLOAD: u32 = 256 << 20;

/// The two files of one instance's log, the appender's side.
pub struct LogFiles {
    folder: PathBuf,
    files: [File; 2],
    /// The locks of the log's folder and of the database's one server process,
    /// kept while the log may hold unapplied groups.
    locks: Arc<(File, Arc<File>)>,
    /// The file appended to, its generation and where the next frame goes.
    current: usize,
    generations: [u64; 2],
    offset: u64,
    /// The position (bytes ever appended, across files) after each file's last
    /// frame: a file may be written again once the applier is durably past it.
    last_end: [u64; 2],
    /// Bytes ever appended.
    end: u64,
}

/// The folder of the instances' logs beside a SQLite database file.
pub fn logs_folder(database: &Path) -> PathBuf {
    let mut name = database.as_os_str().to_owned();
    name.push("-trace");
    PathBuf::from(name)
}

impl LogFiles {
    /// Makes a new instance's log in `logs` (created if needed), locked, for the
    /// process that holds `serving` ([`serving_lock`]).
    pub fn create(logs: &Path, serving: Arc<File>) -> std::io::Result<LogFiles> {
        std::fs::create_dir_all(logs)?;
        let name = uuid::Uuid::new_v4().to_string();
        // Made whole under a name the recovery does not read, then renamed: a log
        // folder without both files is one someone removed a file from.
        let making = logs.join(format!(".{name}"));
        let folder = logs.join(&name);
        // Who read whose space: for the server's account only.
        std::fs::DirBuilder::new().mode(0o700).create(&making)?;
        let make = |name: &str| -> std::io::Result<()> {
            OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(making.join(name))
                .map(drop)
        };
        make("a.log")?;
        make("b.log")?;
        File::open(&making)?.sync_all()?;
        // The folder itself is locked (not a file in it, which could be removed).
        let lock = File::open(&making)?;
        lock.try_lock().map_err(std::io::Error::other)?;
        std::fs::rename(&making, &folder)?;
        let open = |name: &str| {
            OpenOptions::new()
                .read(true)
                .write(true)
                .open(folder.join(name))
        };
        let files = [open("a.log")?, open("b.log")?];
        // The folder's new name reaches the disk before any answer relies on it.
        File::open(logs)?.sync_all()?;
        Ok(LogFiles {
            folder,
            files,
            locks: Arc::new((lock, serving)),
            current: 0,
            generations: [1, 0],
            offset: 0,
            last_end: [0, 0],
            end: 0,
        })
    }

    /// The folder of this log.
    pub fn folder(&self) -> &Path {
        &self.folder
    }

    /// What keeps this log from being taken for an orphan, for the applier to
    /// hold until it has applied everything.
    pub fn hold(&self) -> LogHold {
        LogHold {
            folder: self.folder.clone(),
            _locks: Arc::clone(&self.locks),
        }
    }

    /// Bytes ever appended.
    pub fn end(&self) -> u64 {
        self.end
    }

    /// Bytes appended that the applier may not have made durable in the database,
    /// given that it is durably past `applied`.
    pub fn behind(&self, applied: u64) -> u64 {
        self.end.saturating_sub(applied)
    }

    /// Appends one frame and syncs it; returns the position after it. `applied`
    /// is how far the applier is durably (a file is written again only past it).
    pub fn append(&mut self, payload: &[u8], applied: u64) -> std::io::Result<u64> {
        let other = 1 - self.current;
        if self.offset >= SWITCH_AT && applied >= self.last_end[other] {
            self.current = other;
            self.generations[other] = self.generations[1 - other] + 1;
            self.offset = 0;
        }
        let frame = frame(self.generations[self.current], self.end, payload)?;
        let file = &self.files[self.current];
        file.write_all_at(&frame, self.offset)?;
        file.sync_data()?;
        self.offset += frame.len() as u64;
        self.end += frame.len() as u64;
        self.last_end[self.current] = self.end;
        Ok(self.end)
    }
}

/// Keeps an instance's log locked while held.
pub struct LogHold {
    folder: PathBuf,
    _locks: Arc<(File, Arc<File>)>,
}

/// How long a starting server waits for the one before it (stopping: its applier
/// finishing) to release the database.
const SERVING_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// The lock that makes this process the one server of a SQLite database (on the
/// folder `<database>-trace` itself): the trace's readers wait for this process's
/// applier only, so a second server on the same file would show its readers a trace
/// without the other's latest events, and never apply a stopped one's log. Several
/// instances share a PostgreSQL database instead. Waits `SERVING_WAIT` for a
/// server that is stopping. See also `store::Db::open`, which refuses a database
/// file with several names (hard links: another name, another folder).
pub fn serving_lock(logs: &Path) -> std::io::Result<File> {
    std::fs::create_dir_all(logs)?;
    let lock = File::open(logs)?;
    let started = std::time::Instant::now();
    loop {
        match lock.try_lock() {
            Ok(()) => return Ok(lock),
            Err(std::fs::TryLockError::WouldBlock) if started.elapsed() < SERVING_WAIT => {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(std::io::Error::other(
                    "another server process serves this SQLite database (one process \
                     serves a SQLite database; several instances share a PostgreSQL one)",
                ));
            }
            Err(std::fs::TryLockError::Error(error)) => return Err(error),
        }
    }
}

impl LogHold {
    /// Removes the log (every group in it applied and durable, nothing appended
    /// any more).
    pub fn remove(self) -> std::io::Result<()> {
        remove_applied(&self.folder, remove_files)
    }
}

/// The prefix of a log folder being removed, every frame of it applied and durable
/// (see [`remove_applied`]): never read as a log, removed by whoever finds it
/// unlocked.
const APPLIED: &str = ".applied-";

/// How old a folder being made (`.<uuid>`, see [`LogFiles::create`]) must be for
/// the recovery to take it for one whose making a crash cut short: it is unlocked
/// between its creation and its lock, and made in milliseconds.
const MAKING_LEFT_AFTER: std::time::Duration = std::time::Duration::from_secs(60);

/// Removes a log folder whose every frame is applied and durable: renamed first
/// (see [`APPLIED`]), the rename synced, then `remove` removes it. A process that
/// exits or is killed while the files go one by one (a server stopped while its
/// applier removes its log) then leaves a folder the next start or `audit-verify`
/// removes, not a log with a file missing, which reads as damage.
fn remove_applied(
    folder: &Path,
    remove: impl FnOnce(&Path) -> std::io::Result<()>,
) -> std::io::Result<()> {
    let mut name = std::ffi::OsString::from(APPLIED);
    name.push(folder.file_name().unwrap_or_default());
    let hidden = folder.with_file_name(name);
    std::fs::rename(folder, &hidden)?;
    if let Some(logs) = hidden.parent() {
        File::open(logs)?.sync_all()?;
    }
    remove(&hidden)
}

fn remove_files(folder: &Path) -> std::io::Result<()> {
    std::fs::remove_dir_all(folder)
}

/// One frame around `payload`, which starts at `start` (bytes appended before it,
/// across files).
fn frame(generation: u64, start: u64, payload: &[u8]) -> std::io::Result<Vec<u8>> {
    let length = u32::try_from(payload.len())
        .ok()
        .filter(|length| *length <= MAX_PAYLOAD)
        .ok_or_else(|| std::io::Error::other("a trace group too large for one frame"))?;
    let mut frame = Vec::with_capacity(HEADER + payload.len());
    frame.extend_from_slice(MAGIC);
    frame.extend_from_slice(&generation.to_le_bytes());
    frame.extend_from_slice(&start.to_le_bytes());
    frame.extend_from_slice(&length.to_le_bytes());
    frame.extend_from_slice(&checksum(generation, start, length, payload).to_le_bytes());
    frame.extend_from_slice(payload);
    Ok(frame)
}

fn checksum(generation: u64, start: u64, length: u32, payload: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&generation.to_le_bytes());
    hasher.update(&start.to_le_bytes());
    hasher.update(&length.to_le_bytes());
    hasher.update(payload);
    hasher.finalize()
}

/// A file of a log, read back.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct FileFrames {
    /// The payloads of its frames that check out, in order.
    pub frames: Vec<Vec<u8>>,
    /// Where a frame that does not check out is followed by frames of the same turn
    /// that do: not the end of an append that never returned (nothing is written
    /// after one), but damage, and what it held is lost.
    pub damaged_at: Option<u64>,
    /// The generation of its frames.
    pub generation: Option<u64>,
    /// Where its first frame read starts and its last one ends (bytes appended
    /// across files): the turns of the two files follow each other.
    pub span: Option<(u64, u64)>,
}

/// A frame read: its generation, where it starts, its payload, its length.
struct Frame<'a> {
    generation: u64,
    start: u64,
    payload: &'a [u8],
    length: usize,
}

/// The frame at `at`, if it checks out and is of `generation` (any, if `None`).
fn frame_at(bytes: &[u8], at: usize, generation: Option<u64>) -> Option<Frame<'_>> {
    let header = bytes.get(at..at + HEADER)?;
    if &header[..4] != MAGIC {
        return None;
    }
    let found = u64::from_le_bytes(header[4..12].try_into().ok()?);
    let start = u64::from_le_bytes(header[12..20].try_into().ok()?);
    let length = u32::from_le_bytes(header[20..24].try_into().ok()?);
    let sum = u32::from_le_bytes(header[24..28].try_into().ok()?);
    if length > MAX_PAYLOAD || generation.is_some_and(|generation| generation != found) {
        return None;
    }
    let payload = bytes.get(at + HEADER..at + HEADER + length as usize)?;
    (checksum(found, start, length, payload) == sum).then_some(Frame {
        generation: found,
        start,
        payload,
        length: HEADER + length as usize,
    })
}

/// A file's frames from its start while they check out and carry the first one's
/// generation; past one that does not, any further frame of that generation is
/// taken too, and the file marked damaged.
pub fn read_frames(path: &Path) -> std::io::Result<FileFrames> {
    let bytes = std::fs::read(path)?;
    let mut read = FileFrames::default();
    let mut at = 0usize;
    let mut generation = None;
    while at < bytes.len() {
        match frame_at(&bytes, at, generation) {
            Some(frame) => {
                generation = Some(frame.generation);
                let end = frame.start + frame.length as u64;
                read.span = Some(
                    read.span
                        .map_or((frame.start, end), |(first, _)| (first, end)),
                );
                read.frames.push(frame.payload.to_vec());
                at += frame.length;
            }
            None => {
                // The next frame of this turn after the one that does not check out
                // (of any turn, when the first frame does not: see `orphaned_logs`).
                let next = (at + 1..bytes.len().saturating_sub(HEADER - 1))
                    .filter(|&from| bytes[from..].starts_with(MAGIC))
                    .find(|&from| frame_at(&bytes, from, generation).is_some());
                match next {
                    Some(next) => {
                        read.damaged_at.get_or_insert(at as u64);
                        at = next;
                    }
                    None => break,
                }
            }
        }
    }
    read.generation = generation;
    Ok(read)
}

/// An instance's log that no running instance holds: read back at start.
pub struct OrphanedLog {
    pub folder: PathBuf,
    /// Its frames' payloads, file `a` then `b` (the applier takes each request
    /// unless the database holds it, so their order does not matter).
    pub frames: Vec<Vec<u8>>,
    /// What is wrong with it: a file damaged (frames that do not check out before
    /// frames that do) or missing.
    pub damage: Vec<String>,
    /// Held until the folder is removed, so that no other instance reads it too.
    _lock: File,
}

/// The prefix of a damaged log's folder once its readable frames are applied: kept
/// for whoever looks into it, never read again, reported by `audit-verify`.
pub const DAMAGED: &str = "damaged-";

impl OrphanedLog {
    /// Sets a damaged log aside (see [`DAMAGED`]) once its readable frames are
    /// applied; returns where it is.
    pub fn set_aside(self) -> std::io::Result<PathBuf> {
        let name = self
            .folder
            .file_name()
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_default();
        let aside = self.folder.with_file_name(format!("{DAMAGED}{name}"));
        std::fs::rename(&self.folder, &aside)?;
        Ok(aside)
    }

    /// Removes the log once its frames are applied and durable.
    pub fn remove(self) -> std::io::Result<()> {
        remove_applied(&self.folder, remove_files)
    }
}

/// Whether `path` still names the folder `opened` is open on.
fn same_folder(opened: &File, path: &Path) -> std::io::Result<bool> {
    use std::os::unix::fs::MetadataExt;
    let held = opened.metadata()?;
    match std::fs::metadata(path) {
        Ok(named) => Ok(named.dev() == held.dev() && named.ino() == held.ino()),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(error) => Err(error),
    }
}

/// The logs in `logs` set aside as damaged ([`DAMAGED`]).
pub fn damaged_logs(logs: &Path) -> std::io::Result<Vec<PathBuf>> {
    match std::fs::read_dir(logs) {
        Ok(entries) => Ok(entries
            .filter_map(Result::ok)
            .filter(|entry| entry.file_name().to_string_lossy().starts_with(DAMAGED))
            .map(|entry| entry.path())
            .collect()),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(error) => Err(error),
    }
}

/// The logs in `logs` that no running instance locks (an instance that stopped,
/// or was killed), with their frames.
pub fn orphaned_logs(logs: &Path) -> std::io::Result<Vec<OrphanedLog>> {
    let entries = match std::fs::read_dir(logs) {
        Ok(entries) => entries,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(error) => return Err(error),
    };
    let mut orphans = Vec::new();
    for entry in entries {
        let entry = entry?;
        let folder = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if !folder.is_dir() || name.starts_with(DAMAGED) {
            continue;
        }
        if name.starts_with('.') {
            // A log being removed, or whose removal an exit cut short: all applied.
            // A log being made (locked once its files exist, before it gets its
            // name), or one whose making a crash cut short: nothing was ever
            // written to it; left alone while it may still be being made.
            let left = name.starts_with(APPLIED)
                || std::fs::metadata(&folder)
                    .and_then(|made| made.modified())
                    .is_ok_and(|modified| {
                        modified.elapsed().is_ok_and(|age| age > MAKING_LEFT_AFTER)
                    });
            if let Ok(lock) = File::open(&folder)
                && left
                && lock.try_lock().is_ok()
            {
                let _ = std::fs::remove_dir_all(&folder);
            }
            continue;
        }
        let lock = match File::open(&folder) {
            Ok(lock) => lock,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => continue,
            Err(error) => return Err(error),
        };
        if lock.try_lock().is_err() {
            // A running instance's own.
            continue;
        }
        // Locked once another process had removed it (a stopping instance's
        // applier, another start, `audit-verify`): gone, not a log with its files
        // missing.
        if !same_folder(&lock, &folder)? {
            continue;
        }
        let (mut frames, mut damage) = (Vec::new(), Vec::new());
        let mut read = Vec::new();
        for name in ["a.log", "b.log"] {
            match read_frames(&folder.join(name)) {
                Ok(file) => read.push((name, file)),
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                    damage.push(format!("{}: missing", folder.join(name).display()))
                }
                Err(error) => return Err(error),
            }
        }
        let newest = read.iter().filter_map(|(_, file)| file.generation).max();
        // The newest turn starts where the turn before it (in the other file) ends,
        // or at 0 (the log's first turn): anything else is frames lost between them.
        let mut turns: Vec<&FileFrames> = read.iter().map(|(_, file)| file).collect();
        turns.sort_by_key(|file| file.generation);
        if let Some(last) = turns.last().and_then(|file| file.span)
            && last.0 > 0
        {
            let before = turns
                .iter()
                .rev()
                .nth(1)
                .and_then(|file| file.span)
                .map_or(0, |span| span.1);
            if before != last.0 {
                damage.push(format!(
                    "{}: the bytes {before}–{} of its log were lost",
                    folder.display(),
                    last.0
                ));
            }
        }
        for (name, file) in read {
            // A first frame that does not check out, before frames of a turn older
            // than the other file's: the first append of a new turn, torn, over
            // the older turn's frames (all applied). Otherwise, damage.
            let torn_new_turn = file.damaged_at == Some(0) && file.generation < newest;
            if let Some(at) = file.damaged_at.filter(|_| !torn_new_turn) {
                damage.push(format!(
                    "{}: frames that do not check out at byte {at}, before frames that do",
                    folder.join(name).display()
                ));
            }
            frames.extend(file.frames);
        }
        orphans.push(OrphanedLog {
            folder,
            frames,
            damage,
            _lock: lock,
        });
    }
    Ok(orphans)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Changes the byte at `at` of the file at `path`.
    fn damage_byte(path: impl AsRef<Path>, at: u64) {
        let file = OpenOptions::new().write(true).open(path).unwrap();
        file.write_all_at(b"X", at).unwrap();
    }

    fn serving(logs: &Path) -> Arc<File> {
        Arc::new(serving_lock(logs).unwrap())
    }

    fn temp(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "dmp-test-trace-log-{name}-{}",
            uuid::Uuid::new_v4()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn frames_read_back_in_order_up_to_a_torn_one() {
        let logs = temp("torn");
        let mut log = LogFiles::create(&logs, serving(&logs)).unwrap();
        let first = log.append(b"one", 0).unwrap();
        let second = log.append(b"two", 0).unwrap();
        assert_eq!(second - first, (HEADER + 3) as u64);
        let path = log.folder().join("a.log");
        assert_eq!(
            read_frames(&path).unwrap().frames,
            [b"one".to_vec(), b"two".to_vec()]
        );
        // A third frame whose last byte never reached the disk ends the reading.
        log.append(b"three", 0).unwrap();
        damage_byte(&path, second + HEADER as u64 + 4);
        let read = read_frames(&path).unwrap();
        assert_eq!(read.frames, [b"one".to_vec(), b"two".to_vec()]);
        assert_eq!(read.damaged_at, None, "the end of an append, not damage");
        // A frame after it: the one before was damaged, not the last one written.
        log.append(b"four", 0).unwrap();
        let read = read_frames(&path).unwrap();
        assert_eq!(
            read.frames,
            [b"one".to_vec(), b"two".to_vec(), b"four".to_vec()]
        );
        assert_eq!(read.damaged_at, Some(second));
        std::fs::remove_dir_all(logs).unwrap();
    }

    /// A first frame that does not check out before frames that do is damage,
    /// unless they are of a turn older than the other file's (a new turn's first
    /// append, torn); a file removed beside frames is damage too.
    #[test]
    fn damage_is_told_from_an_append_that_never_returned() {
        let logs = temp("damage");
        let mut log = LogFiles::create(&logs, serving(&logs)).unwrap();
        log.append(b"one", 0).unwrap();
        log.append(b"two", 0).unwrap();
        let folder = log.folder().to_owned();
        drop(log);
        damage_byte(folder.join("a.log"), HEADER as u64);
        let orphans = orphaned_logs(&logs).unwrap();
        assert_eq!(orphans[0].frames, [b"two".to_vec()]);
        // Told twice: a frame that does not check out, and the bytes before the
        // first one that does.
        assert_eq!(orphans[0].damage.len(), 2, "{:?}", orphans[0].damage);
        let aside = orphans.into_iter().next().unwrap().set_aside().unwrap();
        assert!(
            orphaned_logs(&logs).unwrap().is_empty(),
            "set aside, not read again"
        );
        assert_eq!(damaged_logs(&logs).unwrap(), [aside]);
        // The last frame of a full file, the next turn begun in the other one: not an
        // append that never returned (the other file's first frame follows it).
        let mut log = LogFiles::create(&logs, serving(&logs)).unwrap();
        let big = vec![7u8; (SWITCH_AT / 2) as usize];
        log.append(&big, 0).unwrap();
        let last = log.append(&big, 0).unwrap();
        log.append(b"in b", 0).unwrap();
        let folder = log.folder().to_owned();
        drop(log);
        damage_byte(folder.join("a.log"), last - 1);
        let orphans = orphaned_logs(&logs).unwrap();
        let cut = orphans
            .iter()
            .find(|orphan| orphan.folder == folder)
            .unwrap();
        assert_eq!(cut.frames.len(), 2, "the first frame of a and the one of b");
        assert_eq!(cut.damage.len(), 1, "{:?}", cut.damage);
        drop(orphans);
        std::fs::remove_dir_all(&folder).unwrap();
        // A removed file beside frames.
        let mut log = LogFiles::create(&logs, serving(&logs)).unwrap();
        log.append(b"three", 0).unwrap();
        let folder = log.folder().to_owned();
        drop(log);
        std::fs::remove_file(folder.join("b.log")).unwrap();
        let orphans = orphaned_logs(&logs).unwrap();
        assert_eq!(orphans[0].damage.len(), 1, "{:?}", orphans[0].damage);
        drop(orphans);
        std::fs::remove_dir_all(logs).unwrap();
    }

    #[test]
    fn a_running_instances_log_is_not_an_orphan_and_a_stopped_ones_is() {
        let logs = temp("orphans");
        let mut log = LogFiles::create(&logs, serving(&logs)).unwrap();
        log.append(b"kept", 0).unwrap();
        assert!(orphaned_logs(&logs).unwrap().is_empty());
        let folder = log.folder().to_owned();
        drop(log);
        let orphans = orphaned_logs(&logs).unwrap();
        assert_eq!(orphans.len(), 1);
        assert_eq!(orphans[0].frames, [b"kept".to_vec()]);
        // While one reader holds it, no other takes it.
        assert!(orphaned_logs(&logs).unwrap().is_empty());
        orphans.into_iter().next().unwrap().remove().unwrap();
        assert!(!folder.exists());
        std::fs::remove_dir_all(logs).unwrap();
    }

    /// A server that exits while its applier removes its applied log (a stop, a
    /// kill) leaves some of its files: not damage, and removed at the next start.
    #[test]
    fn a_log_whose_removal_was_cut_short_is_not_damage() {
        let logs = temp("removal");
        let mut log = LogFiles::create(&logs, serving(&logs)).unwrap();
        log.append(b"applied", 0).unwrap();
        let folder = log.folder().to_owned();
        let hold = log.hold();
        drop(log);
        // The removal the hold and the recovery run, cut short after one file of
        // two: the process ends there.
        let cut_short = remove_applied(&folder, |removing| {
            std::fs::remove_file(removing.join("b.log"))?;
            Err(std::io::Error::other("the process ends"))
        });
        assert!(cut_short.is_err());
        drop(hold);
        assert!(!folder.exists());
        assert!(
            orphaned_logs(&logs).unwrap().is_empty(),
            "no log to recover"
        );
        assert!(damaged_logs(&logs).unwrap().is_empty());
        assert_eq!(
            std::fs::read_dir(&logs).unwrap().count(),
            0,
            "removed by the next start's recovery"
        );
        // A whole removal leaves nothing, from the running instance's hold or
        // from a recovery.
        let mut log = LogFiles::create(&logs, serving(&logs)).unwrap();
        log.append(b"applied", 0).unwrap();
        log.hold().remove().unwrap();
        drop(log);
        let mut log = LogFiles::create(&logs, serving(&logs)).unwrap();
        log.append(b"left", 0).unwrap();
        drop(log);
        let orphans = orphaned_logs(&logs).unwrap();
        assert_eq!(orphans.len(), 1);
        orphans.into_iter().next().unwrap().remove().unwrap();
        assert_eq!(std::fs::read_dir(&logs).unwrap().count(), 0);
        std::fs::remove_dir_all(logs).unwrap();
    }

    /// A folder being made is unlocked until its files exist: a recovery running
    /// meanwhile (another start, `audit-verify`) leaves it alone; one a crash left
    /// long ago is removed. A log locked after another process removed it is not
    /// taken for one with its files missing.
    #[test]
    fn a_log_being_made_or_already_removed_is_left_alone() {
        let logs = temp("making");
        let making = logs.join(format!(".{}", uuid::Uuid::new_v4()));
        std::fs::create_dir(&making).unwrap();
        assert!(orphaned_logs(&logs).unwrap().is_empty());
        assert!(making.exists(), "a folder being made is not removed");
        let long_ago = std::time::SystemTime::now() - 2 * MAKING_LEFT_AFTER;
        File::open(&making).unwrap().set_modified(long_ago).unwrap();
        assert!(orphaned_logs(&logs).unwrap().is_empty());
        assert!(!making.exists(), "one a crash left is removed");
        // Opened by the recovery, then removed by another process before the
        // recovery locks it: no longer the folder its name leads to.
        let mut log = LogFiles::create(&logs, serving(&logs)).unwrap();
        log.append(b"applied", 0).unwrap();
        let folder = log.folder().to_owned();
        let opened = File::open(&folder).unwrap();
        assert!(same_folder(&opened, &folder).unwrap());
        log.hold().remove().unwrap();
        drop(log);
        assert!(!same_folder(&opened, &folder).unwrap());
        std::fs::remove_dir_all(logs).unwrap();
    }

    #[test]
    fn a_file_is_written_again_only_once_the_applier_is_past_it() {
        let logs = temp("switch");
        let mut log = LogFiles::create(&logs, serving(&logs)).unwrap();
        let big = vec![7u8; (SWITCH_AT / 2) as usize];
        log.append(&big, 0).unwrap();
        let end_a = log.append(&big, 0).unwrap();
        // `a` is full: the next frame goes to `b` (never written, nothing to wait for).
        log.append(b"in b", 0).unwrap();
        log.append(&big, 0).unwrap();
        log.append(&big, 0).unwrap();
        // `b` is full too, but `a` is not applied: `b` grows.
        let a = log.folder().join("a.log");
        let b = log.folder().join("b.log");
        log.append(b"still b", end_a - 1).unwrap();
        let frames = |path: &Path| read_frames(path).unwrap().frames;
        assert_eq!(frames(&b).len(), 4);
        // Once `a` is applied, it is written again from its start, with a newer
        // generation: the older frames after the new one are not read back.
        log.append(b"a again", end_a).unwrap();
        assert_eq!(frames(&a), [b"a again".to_vec()]);
        assert_eq!(
            read_frames(&a).unwrap().damaged_at,
            None,
            "older turns are not damage"
        );
        assert_eq!(frames(&b).len(), 4);
        // That first append of the new turn torn (it never returned): the older
        // turn's frames behind it read back, and are not taken for damage.
        let folder = log.folder().to_owned();
        drop(log);
        damage_byte(&a, HEADER as u64);
        let orphans = orphaned_logs(&logs).unwrap();
        assert_eq!(orphans[0].folder, folder);
        assert!(orphans[0].damage.is_empty(), "{:?}", orphans[0].damage);
        drop(orphans);
        std::fs::remove_dir_all(logs).unwrap();
    }
}
