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
//!   survives.
//!
//! A failed fsync answers every waiting commit with an error: their data may not be
//! on the disk, and a request is never told otherwise. PostgreSQL commits durably
//! on its own (its log flush already groups concurrent commits): answers go at once.

use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

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
    /// Dropped with the last handle, which stops the checkpointer.
    _checkpointer: mpsc::Sender<()>,
}

/// How often the checkpointer copies the log into the database.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(10);

impl WalSyncer {
    /// Starts the thread that syncs the write-ahead log of the SQLite database at
    /// `database_path`.
    pub fn start(target: &Target) -> WalSyncer {
        let database_path = target.location.as_str();
        let (answers, queue) = mpsc::channel::<Answer>();
        let mut log = WriteAheadLog::of(Path::new(database_path));
        thread::Builder::new()
            .name("wal-sync".into())
            .spawn(move || {
                while let Some(waiting) = next_group(&queue, MAX_ANSWERS) {
                    let synced = log.sync().map_err(|error| {
                        tracing::error!(%error, "the write-ahead log could not be synced");
                        ApiError::internal("the commit could not reach the disk")
                    });
                    for answer in waiting {
                        answer(synced.clone());
                    }
                }
            })
            .expect("the write-ahead log syncer starts");
        let (checkpointer, stop) = mpsc::channel::<()>();
        let target = target.clone();
        thread::Builder::new()
            .name("wal-checkpoint".into())
            .spawn(move || checkpoint_loop(&target, &stop))
            .expect("the write-ahead log checkpointer starts");
        WalSyncer {
            answers,
            _checkpointer: checkpointer,
        }
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
/// connection of its own: the committers' connections leave it to this thread
/// (`dialect::checkpoints_left_to_checkpointer`), so that no answer waits for a
/// copy, which took several milliseconds after one commit in a hundred.
fn checkpoint_loop(target: &Target, stop: &mpsc::Receiver<()>) {
    let mut conn: Option<Conn> = None;
    while let Err(mpsc::RecvTimeoutError::Timeout) = stop.recv_timeout(CHECKPOINT_EVERY) {
        if conn.is_none() {
            conn = dialect::connect(target).ok().and_then(|mut conn| {
                dialect::prepare_connection(&mut conn).ok()?;
                Some(conn)
            });
        }
        if let Some(open) = conn.as_mut()
            && let Err(error) = dialect::checkpoint(open)
        {
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
    fn of(database: &Path) -> WriteAheadLog {
        let mut path = database.as_os_str().to_owned();
        path.push("-wal");
        WriteAheadLog {
            path: PathBuf::from(path),
            open: None,
        }
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

    /// A commit is answered once the log is synced; when the log cannot be synced
    /// (here: it is not there), the commit is answered with an error, never told
    /// it is durable.
    #[test]
    fn a_commit_is_answered_durable_only_when_its_log_was_synced() {
        let folder = std::env::temp_dir().join(format!(
            "dmp-wal-sync-{}-{}",
            std::process::id(),
            uuid::Uuid::new_v4()
        ));
        std::fs::create_dir_all(&folder).unwrap();
        let database = folder.join("db.sqlite");
        let syncer = WalSyncer::start(&dialect::target(database.to_str().unwrap()).unwrap());
        assert!(answered(&syncer).is_err(), "no log yet: nothing synced");
        std::fs::write(folder.join("db.sqlite-wal"), b"frames").unwrap();
        assert!(answered(&syncer).is_ok());
        // SQLite made the log again (its last connection closed, then one opened):
        // the new file is the one synced.
        let mut log = WriteAheadLog::of(&database);
        log.sync().unwrap();
        std::fs::remove_file(folder.join("db.sqlite-wal")).unwrap();
        assert!(answered(&syncer).is_err());
        std::fs::write(folder.join("db.sqlite-wal"), b"other frames").unwrap();
        assert!(answered(&syncer).is_ok());
        log.sync().unwrap();
        let (synced, _) = log.open.as_ref().unwrap();
        assert_eq!(synced.metadata().unwrap().nlink(), 1);
        assert_eq!(
            synced.metadata().unwrap().ino(),
            std::fs::metadata(folder.join("db.sqlite-wal"))
                .unwrap()
                .ino()
        );
        let _ = std::fs::remove_dir_all(folder);
    }
}
