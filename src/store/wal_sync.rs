//! Durability after the writer's turn (SQLite). The committers (the trace's and the
//! requests' writes) used to commit with `synchronous = FULL`: SQLite fsyncs the
//! write-ahead log inside the commit, while it holds the database's only write
//! lock, so that the next group and the trace's indexer waited on the disk (about
//! 0.4 ms of a 0.8 ms commit, the lock held 95 % of the time at 6,000 audited reads
//! a second; BENCHMARKS.md). They now commit with `synchronous = NORMAL`, which
//! writes the log without waiting for the disk, and hand their answers to this
//! thread: it fsyncs the log once for every commit made before the fsync started,
//! then lets them answer. Meanwhile the next group writes.
//!
//! Why an answer still follows the durable commit of what it reports (R-AUD-2):
//! - the log is written in order and recovered in order (each frame's checksum
//!   chains to the previous one): an fsync that starts after a commit returned
//!   makes that commit, and every one before it, survive a power cut;
//! - frames are only overwritten after a checkpoint copied them into the database
//!   and synced it (SQLite's `NORMAL` keeps those syncs, and the sync of the log's
//!   header when it starts again), so a commit already copied is durable there;
//! - the log may be a new file (deleted when its last connection closed, made
//!   again): its folder is synced once per new file, so that the file itself
//!   survives. Its name is the one SQLite gives it (`dialect::write_ahead_log`:
//!   beside the database file a symbolic link leads to, or a `file:` URI names).
//!
//! A failed sync stops the process (see [`WalSyncer::start`]): nobody is told that
//! data is durable when it may not be. PostgreSQL commits durably on its own (its
//! log flush already groups concurrent commits): answers go at once.
//!
//! What a commit holds is visible to other connections before its sync returns. It
//! is safe because nothing leaves the server on the strength of a commit alone:
//! every answer waits for the sync of its own trace, written to the log after what
//! it read (one sync covers both), and the notifications are claimed by a
//! transaction on a pooled connection, which syncs the log as it commits. A new
//! reader that answers without a trace, or a sender that claims on a committer's
//! connection, must wait for [`Db::when_durable`](super::Db::when_durable) too.

use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use super::dialect::{self, Conn, Target};
use super::group_commit::next_group;
use crate::error::ApiError;

/// What a committer does once its commit is on the disk (or could not be put there).
pub type Answer = Box<dyn FnOnce(Result<(), ApiError>) + Send>;

/// The most commits one fsync answers at once (a bound on one pass's list; more
/// wait for the next pass, which starts at once).
const MAX_ANSWERS: usize = 4096;

/// Handle on the syncing and checkpointing threads; they stop when the last handle
/// is dropped.
#[derive(Clone)]
pub struct WalSyncer {
    answers: mpsc::Sender<Answer>,
    commits: Arc<Commits>,
    /// Dropped with the last handle, which stops the checkpointer.
    _checkpointer: mpsc::Sender<()>,
}

/// The committers' commits that requests may read before they are durable (see
/// [`WalSyncer::ticket`]), counted under the writer's lock.
#[derive(Default)]
struct Commits {
    begun: AtomicU64,
    finished: AtomicU64,
    /// How many of them the last sync made durable.
    synced: AtomicU64,
}

/// How often the checkpointer copies the log into the database.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(10);

impl WalSyncer {
    /// Starts the thread that syncs the write-ahead log at `log` (as SQLite names
    /// it, see `dialect::write_ahead_log`), and the checkpointer of `target`.
    pub fn start(
        target: &Target,
        log: PathBuf,
        pause: Arc<ReadPause>,
        writer: Arc<std::sync::Mutex<()>>,
    ) -> WalSyncer {
        let (answers, queue) = mpsc::channel::<Answer>();
        let mut log = WriteAheadLog::at(log);
        let commits = Arc::new(Commits::default());
        let counted = Arc::clone(&commits);
        thread::Builder::new()
            .name("wal-sync".into())
            .spawn(move || {
                while let Some(waiting) = next_group(&queue, MAX_ANSWERS) {
                    // Every commit finished by now is in the log this sync writes.
                    let through = counted.finished.load(Ordering::SeqCst);
                    let synced = log.sync();
                    if synced.is_ok() {
                        counted.synced.fetch_max(through, Ordering::SeqCst);
                    }
                    if let Err(error) = synced {
                        // The commits waiting are in the log and visible, but may not
                        // be on the disk; after a failed fsync, Linux marks the pages
                        // it could not write clean, so no later fsync would write
                        // them, and every later commit, answered as durable, would
                        // sit behind a hole the log's recovery stops at. As
                        // PostgreSQL does, the process stops: nobody is told their
                        // data is durable, and a restart recovers what the disk holds.
                        tracing::error!(%error, "the write-ahead log could not be synced; stopping");
                        std::process::abort();
                    }
                    for answer in waiting {
                        // One answer that panics must not leave every later commit
                        // unanswered (this thread would be gone).
                        if catch_unwind(AssertUnwindSafe(|| answer(Ok(())))).is_err() {
                            tracing::error!("an answer after the log's sync panicked");
                        }
                    }
                }
            })
            .expect("the write-ahead log syncer starts");
        let (checkpointer, stop) = mpsc::channel::<()>();
        let target = target.clone();
        thread::Builder::new()
            .name("wal-checkpoint".into())
            .spawn(move || checkpoint_loop(&target, &stop, &pause, &writer))
            .expect("the write-ahead log checkpointer starts");
        WalSyncer {
            answers,
            commits,
            _checkpointer: checkpointer,
        }
    }

    /// Counts a commit that requests may read before it is durable: call it under
    /// the writer's lock, `work` being the commit.
    pub fn counted<T>(&self, work: impl FnOnce() -> T) -> T {
        self.commits.begun.fetch_add(1, Ordering::SeqCst);
        let result = work();
        self.commits.finished.fetch_add(1, Ordering::SeqCst);
        result
    }

    /// A ticket for every counted commit begun so far (and so for everything a
    /// request could have read by now): see [`WalSyncer::is_durable`].
    pub fn ticket(&self) -> u64 {
        self.commits.begun.load(Ordering::SeqCst)
    }

    /// Whether every commit of `ticket` is on the disk: an answer whose own
    /// durability does not go through this log (the trace's log) may then go
    /// without waiting for [`WalSyncer::after_sync`].
    pub fn is_durable(&self, ticket: u64) -> bool {
        self.commits.synced.load(Ordering::SeqCst) >= ticket
    }

    /// Calls `answer` once every commit that returned before this call is on the
    /// disk. Call it after the commit, outside the writer's lock.
    pub fn after_sync(&self, answer: Answer) {
        if let Err(mpsc::SendError(answer)) = self.answers.send(answer) {
            answer(Err(ApiError::internal(
                "the write-ahead log syncer has stopped",
            )));
        }
    }
}

/// Copies the log into the database every [`CHECKPOINT_EVERY`], as far as readers
/// allow (a passive checkpoint: it neither waits for nor blocks writers), on a
/// connection of its own. It keeps the log under SQLite's threshold for copying
/// after a commit (1,000 pages), which stays as a backstop: a copy after a commit
/// runs before its group is answered (several milliseconds, once every few dozen
/// commits when the indexer's passes did the copying).
/// Held shared by reads on the pool's connections while they work; taken alone by
/// the checkpointer for a moment, so that a `RESTART` checkpoint finds no reader
/// on the write-ahead log (see [`RESTART_PAST_FRAMES`]). Fair: a waiting
/// checkpointer is not passed by new reads.
#[derive(Debug, Default)]
pub struct ReadPause(parking_lot::RwLock<()>);

impl ReadPause {
    /// Held while a pooled connection works.
    pub fn reading(&self) -> parking_lot::RwLockReadGuard<'_, ()> {
        self.0.read()
    }

    /// [`Self::reading`], unless the checkpointer holds or waits for the lock.
    pub fn reading_now(&self) -> Option<parking_lot::RwLockReadGuard<'_, ()>> {
        self.0.try_read()
    }
}

/// Frames of the write-ahead log past which the checkpointer makes it start over:
/// 128 MiB at SQLite's default page size of 4 KiB, twice what the write committer
/// lets it reach before it copies the log itself
/// (`dialect::leave_checkpoints_to_checkpointer`).
///
/// A checkpoint copies the log into the database only as far as the oldest
/// snapshot a reader holds, and the log starts over from its first frame only
/// once no reader uses it. Reads that each run for tens of milliseconds, one
/// starting before the last ends, beside steady writes, kept both from happening:
/// the log grew without bound (720 MiB in 20 s; SQLite's "checkpoint
/// starvation"). Past this size the checkpointer holds new reads back
/// ([`ReadPause`]) until those under way are done, then runs a `RESTART`
/// checkpoint (which holds writes back while it copies the log), so that the next
/// commit starts the log over; [`RESTART_WAIT`] at most for each.
const RESTART_PAST_FRAMES: i64 = 32_768;

/// How long the checkpointer waits for the reads under way (new ones waiting),
/// then for the write under way (new ones waiting), at most.
const RESTART_WAIT: Duration = Duration::from_millis(250);

/// After a checkpoint that could not restart the log (a read longer than
/// [`RESTART_WAIT`]), the wait before the next try, doubled at each failure up to
/// [`RESTART_RETRY_MAX`]: reads and writes are not held back more than a fraction
/// of the time.
const RESTART_RETRY: Duration = Duration::from_secs(1);
const RESTART_RETRY_MAX: Duration = Duration::from_secs(60);

/// The writers' turn (`Db::write_on`), waited for `wait` at most; a writer that
/// panicked left it as good.
fn writer_turn(
    writer: &std::sync::Mutex<()>,
    wait: Duration,
) -> Option<std::sync::MutexGuard<'_, ()>> {
    let until = Instant::now() + wait;
    loop {
        match writer.try_lock() {
            Ok(turn) => return Some(turn),
            Err(std::sync::TryLockError::Poisoned(poisoned)) => return Some(poisoned.into_inner()),
            Err(std::sync::TryLockError::WouldBlock) if Instant::now() < until => {
                thread::sleep(Duration::from_micros(200));
            }
            Err(std::sync::TryLockError::WouldBlock) => return None,
        }
    }
}

fn checkpoint_loop(
    target: &Target,
    stop: &mpsc::Receiver<()>,
    pause: &ReadPause,
    writer: &std::sync::Mutex<()>,
) {
    let mut conn: Option<Conn> = None;
    let mut next_restart = Instant::now();
    let mut retry = RESTART_RETRY;
    while let Err(mpsc::RecvTimeoutError::Timeout) = stop.recv_timeout(CHECKPOINT_EVERY) {
        if conn.is_none() {
            conn = match dialect::connect(target) {
                Ok(mut conn) => dialect::prepare_connection(&mut conn).ok().map(|_| conn),
                Err(message) => {
                    tracing::warn!(%message, "no connection for the checkpointer; commits copy the log meanwhile");
                    None
                }
            };
        }
        let Some(open) = conn.as_mut() else {
            continue;
        };
        let checkpointed = dialect::checkpoint(open).and_then(|frames| {
            if frames <= RESTART_PAST_FRAMES || Instant::now() < next_restart {
                return Ok(());
            }
            // The reads first: a pooled read may wait for the writer's turn, never
            // a writer for a pooled read.
            let restarted = match pause.0.try_write_for(RESTART_WAIT) {
                Some(_paused) => {
                    // This process's writers queue here rather than race the
                    // checkpoint for SQLite's lock (its waits are sleeps, which a
                    // writer that commits group after group always wins). Bounded:
                    // a writer might be waiting for a pooled read.
                    match writer_turn(writer, RESTART_WAIT) {
                        Some(_turn) => dialect::checkpoint_to_restart(open, RESTART_WAIT)?,
                        None => false,
                    }
                }
                None => false,
            };
            if restarted {
                // The log's count of frames drops at the next commit only: until
                // then it still reads past the bound.
                next_restart = Instant::now() + RESTART_RETRY;
                retry = RESTART_RETRY;
            } else {
                tracing::warn!(
                    frames,
                    retry_ms = retry.as_millis() as u64,
                    "the write-ahead log could not start over: a read or a write outlasted the wait"
                );
                next_restart = Instant::now() + retry;
                retry = (retry * 2).min(RESTART_RETRY_MAX);
            }
            Ok(())
        });
        if let Err(error) = checkpointed {
            tracing::warn!(%error, "checkpoint failed; the next one starts again");
            conn = None;
        }
    }
}

/// The `-wal` file beside a database, opened once per file SQLite makes.
struct WriteAheadLog {
    path: PathBuf,
    /// The open file and its inode.
    open: Option<(File, u64)>,
}

impl WriteAheadLog {
    fn at(path: PathBuf) -> WriteAheadLog {
        WriteAheadLog { path, open: None }
    }

    /// fsyncs the log's data: an fsync reaches every page of the file written before
    /// it, through whichever descriptor (SQLite writes through its own). The log has
    /// no POSIX lock (SQLite locks the database and `-shm` files), so this
    /// descriptor's opening and closing disturb none.
    fn sync(&mut self) -> std::io::Result<()> {
        let inode = std::fs::metadata(&self.path)?.ino();
        // A file removed since (its inode number may already be the new file's).
        let stale = match &self.open {
            Some((file, open)) => *open != inode || file.metadata()?.nlink() == 0,
            None => true,
        };
        if stale {
            let file = File::open(&self.path)?;
            let opened = file.metadata()?.ino();
            // A new file's name reaches the disk with its folder.
            if let Some(folder) = self.path.parent() {
                let folder = if folder.as_os_str().is_empty() {
                    Path::new(".")
                } else {
                    folder
                };
                File::open(folder)?.sync_all()?;
            }
            self.open = Some((file, opened));
        }
        let (file, _) = self.open.as_ref().expect("opened above");
        file.sync_data()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc::channel;

    fn answered(syncer: &WalSyncer) -> Result<(), ApiError> {
        let (sender, answer) = channel();
        syncer.after_sync(Box::new(move |synced| sender.send(synced).unwrap()));
        answer.recv_timeout(Duration::from_secs(10)).unwrap()
    }

    /// A syncer of the log at `path` (a file this test writes, not SQLite's), whose
    /// checkpointer works on a database of its own in `folder`.
    fn syncer_of(folder: &Path, path: &Path) -> WalSyncer {
        let elsewhere = folder.join("checkpointed").join("db.sqlite");
        std::fs::create_dir_all(elsewhere.parent().unwrap()).unwrap();
        WalSyncer::start(
            &dialect::target(elsewhere.to_str().unwrap()).unwrap(),
            path.to_path_buf(),
            Arc::new(ReadPause::default()),
            Arc::new(std::sync::Mutex::new(())),
        )
    }

    /// Stops a syncer of [`syncer_of`] and removes its folder.
    fn stop(syncer: WalSyncer, folder: &Path) {
        drop(syncer);
        // The checkpointer stops at its next turn.
        std::thread::sleep(2 * CHECKPOINT_EVERY);
        let _ = std::fs::remove_dir_all(folder);
    }

    /// A new folder under the system's temporary one.
    fn fresh_folder(label: &str) -> std::path::PathBuf {
        let folder = std::env::temp_dir().join(format!(
            "dmp-{label}-{}-{}",
            std::process::id(),
            uuid::Uuid::new_v4()
        ));
        std::fs::create_dir_all(&folder).unwrap();
        folder
    }

    /// Reads one after another, each begun before the last ended, keep passive
    /// checkpoints from letting the log start over, however many run; once no read
    /// holds the log, a restarting checkpoint lets the next commit start it over.
    #[test]
    fn back_to_back_reads_hold_the_log_until_a_restarting_checkpoint() {
        use diesel::connection::SimpleConnection;
        let folder = fresh_folder("wal-restart");
        let target = dialect::target(folder.join("db.sqlite").to_str().unwrap()).unwrap();
        let open = || {
            let mut conn = dialect::connect(&target).unwrap();
            dialect::prepare_connection(&mut conn).unwrap();
            conn
        };
        let (mut writer, mut checkpointer) = (open(), open());
        let mut readers = [open(), open()];
        writer
            .batch_execute("CREATE TABLE t (v BLOB); INSERT INTO t VALUES (zeroblob(100000));")
            .unwrap();
        let write = |conn: &mut Conn| {
            conn.batch_execute("INSERT INTO t VALUES (zeroblob(100000));")
                .unwrap()
        };
        let mut frames = Vec::new();
        for turn in 0..6 {
            // The next read begins, then the one before it ends.
            let [first, second] = &mut readers;
            let (next, last) = if turn % 2 == 0 {
                (first, second)
            } else {
                (second, first)
            };
            next.batch_execute("BEGIN; SELECT COUNT(*) FROM t;")
                .unwrap();
            if turn > 0 {
                last.batch_execute("COMMIT;").unwrap();
            }
            write(&mut writer);
            frames.push(dialect::checkpoint(&mut checkpointer).unwrap());
        }
        assert!(
            frames.windows(2).all(|pair| pair[1] > pair[0]),
            "the log only grows: {frames:?}"
        );
        // A read of an older snapshot than the log's end ends while the restarting
        // checkpoint waits for it.
        let [mut first, mut second] = readers;
        let _ = first.batch_execute("COMMIT;");
        let _ = second.batch_execute("COMMIT;");
        first
            .batch_execute("BEGIN; SELECT COUNT(*) FROM t;")
            .unwrap();
        write(&mut writer);
        let last_read = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            first.batch_execute("COMMIT;").unwrap();
        });
        assert!(
            dialect::checkpoint_to_restart(&mut checkpointer, Duration::from_secs(5)).unwrap(),
            "the whole log copied once the read ended"
        );
        last_read.join().unwrap();
        write(&mut writer);
        let after = dialect::checkpoint(&mut checkpointer).unwrap();
        assert!(
            after < frames[0],
            "the log started over: {after} frames, {frames:?} before"
        );
        let _ = std::fs::remove_dir_all(&folder);
    }

    /// A ticket taken after a counted commit (or during one) is durable only once
    /// a sync that started after the commit returned; a sync answered before the
    /// commit does not make it durable.
    #[test]
    fn a_ticket_is_durable_once_a_sync_after_its_commits_returned() {
        let folder = fresh_folder("wal-ticket");
        let path = folder.join("db.sqlite-wal");
        std::fs::write(&path, b"frames").unwrap();
        let syncer = syncer_of(&folder, &path);
        assert!(syncer.is_durable(syncer.ticket()), "nothing counted yet");
        let during = syncer.counted(|| syncer.ticket());
        let after = syncer.ticket();
        assert!(!syncer.is_durable(during) && !syncer.is_durable(after));
        answered(&syncer).unwrap();
        assert!(syncer.is_durable(during) && syncer.is_durable(after));
        syncer.counted(|| ());
        assert!(!syncer.is_durable(syncer.ticket()));
        stop(syncer, &folder);
    }

    /// A commit is answered once its log is synced; a log SQLite made again (its
    /// last connection closed, then one opened) is the file then synced.
    #[test]
    fn a_commit_is_answered_once_its_log_is_synced() {
        let folder = fresh_folder("wal-sync");
        let path = folder.join("db.sqlite-wal");
        let mut log = WriteAheadLog::at(path.clone());
        assert!(log.sync().is_err(), "no log: nothing synced");
        std::fs::write(&path, b"frames").unwrap();
        let syncer = syncer_of(&folder, &path);
        assert!(answered(&syncer).is_ok());
        log.sync().unwrap();
        std::fs::remove_file(&path).unwrap();
        std::fs::write(&path, b"other frames").unwrap();
        log.sync().unwrap();
        let (synced, _) = log.open.as_ref().unwrap();
        assert_eq!(synced.metadata().unwrap().nlink(), 1);
        assert_eq!(
            synced.metadata().unwrap().ino(),
            std::fs::metadata(&path).unwrap().ino()
        );
        stop(syncer, &folder);
    }

    /// An answer that panics leaves the syncer answering the commits after it.
    #[test]
    fn an_answer_that_panics_does_not_stop_the_answers_after_it() {
        let folder = fresh_folder("wal-panic");
        let path = folder.join("db.sqlite-wal");
        std::fs::write(&path, b"frames").unwrap();
        let syncer = syncer_of(&folder, &path);
        syncer.after_sync(Box::new(|_| panic!("an answer that fails")));
        assert!(answered(&syncer).is_ok());
        assert!(answered(&syncer).is_ok());
        stop(syncer, &folder);
    }

    /// The log synced is the one SQLite writes: beside the database file that a
    /// symbolic link leads to, not beside the link.
    #[test]
    fn the_log_synced_is_the_one_sqlite_writes_through_a_link() {
        let folder = fresh_folder("wal-link");
        std::fs::create_dir_all(folder.join("real")).unwrap();
        std::fs::create_dir_all(folder.join("link")).unwrap();
        let real = folder.join("real").join("db.sqlite");
        super::super::Db::open(real.to_str().unwrap()).unwrap();
        std::os::unix::fs::symlink(&real, folder.join("link").join("db.sqlite")).unwrap();
        let linked = folder.join("link").join("db.sqlite");
        let mut conn =
            dialect::connect(&dialect::target(linked.to_str().unwrap()).unwrap()).unwrap();
        dialect::prepare_connection(&mut conn).unwrap();
        let log = dialect::write_ahead_log(&mut conn).unwrap().unwrap();
        assert_eq!(
            log.canonicalize().unwrap(),
            folder
                .join("real")
                .join("db.sqlite-wal")
                .canonicalize()
                .unwrap()
        );
        drop(conn);
        let _ = std::fs::remove_dir_all(folder);
    }
}
