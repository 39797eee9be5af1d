//! Group commit of writes on SQLite. SQLite has one writer at a time and, with
//! `synchronous=FULL`, one fsync per commit: committed one by one, concurrent writes
//! queue on the disk. The committer thread takes the writes waiting in its queue, runs
//! each in a savepoint of one transaction (each write's own transactions become
//! nested savepoints: a write that fails rolls back alone), commits once, and only
//! then answers each write — so every answer still follows its durable commit
//! (R-AUD-2), and a failed commit fails every write of the group. The fsync runs
//! after the writer's turn (`wal_sync`): the next group commits meanwhile.
//!
//! What every write of a group leaves for the group's end ([`GroupEnd`], their
//! traces) is stored there, still inside the transaction, with a few statements for
//! the whole group where each write alone would take as many.

use std::any::Any;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::mpsc;
use std::thread;

use diesel::Connection;
use tokio::sync::oneshot;

use super::dialect::{self, Conn};
use super::{CommitterConnection, Db};
use crate::error::ApiError;

/// Writes committed together at most.
const MAX_GROUP: usize = 64;

type Work = Box<dyn FnOnce(&mut Conn, &mut GroupEnd) -> Box<dyn Any + Send> + Send>;

/// Stores, inside a write transaction, what writes deferred to their group's end.
pub type Finish = fn(&mut Conn, Vec<Box<dyn Any + Send>>) -> Result<(), ApiError>;

/// What the writes of a group leave for its end: stored by one call of their
/// [`Finish`] after the last write ran, inside the group's transaction (so that a
/// failure there fails the whole group). Without group commit (PostgreSQL, whose
/// writers run side by side) each item is stored at once, where the write defers it.
pub struct GroupEnd {
    pending: Vec<Box<dyn Any + Send>>,
    finish: Option<Finish>,
    grouped: bool,
}

impl GroupEnd {
    /// Items stored where they are deferred.
    pub(super) fn at_once() -> GroupEnd {
        GroupEnd {
            pending: Vec::new(),
            finish: None,
            grouped: false,
        }
    }

    fn grouped() -> GroupEnd {
        GroupEnd {
            grouped: true,
            ..GroupEnd::at_once()
        }
    }

    /// Leaves `item` for the group's end, to be stored by `finish` (one function
    /// for every item of a group: their one kind, a request's trace).
    pub fn defer(
        &mut self,
        conn: &mut Conn,
        item: Box<dyn Any + Send>,
        finish: Finish,
    ) -> Result<(), ApiError> {
        if !self.grouped {
            return finish(conn, vec![item]);
        }
        self.finish = Some(finish);
        self.pending.push(item);
        Ok(())
    }

    /// Where the items deferred so far end: what a write that then rolls back
    /// deferred is forgotten with [`GroupEnd::forget_since`].
    pub fn mark(&self) -> usize {
        self.pending.len()
    }

    pub fn forget_since(&mut self, mark: usize) {
        self.pending.truncate(mark);
    }

    fn store(self, conn: &mut Conn) -> Result<(), ApiError> {
        match self.finish {
            Some(finish) if !self.pending.is_empty() => finish(conn, self.pending),
            _ => Ok(()),
        }
    }
}

/// One write waiting for its group.
pub(super) struct WriteJob {
    work: Work,
    done: oneshot::Sender<Result<Box<dyn Any + Send>, ApiError>>,
}

/// The committer's queue.
#[derive(Clone)]
pub(super) struct GroupCommitter {
    jobs: mpsc::Sender<WriteJob>,
}

impl GroupCommitter {
    /// Starts the committer thread on `db` (whose own writes bypass it).
    pub(super) fn start(db: Db) -> GroupCommitter {
        let (jobs, queue) = mpsc::channel::<WriteJob>();
        thread::Builder::new()
            .name("write-commit".into())
            .spawn(move || commit_loop(&db, &queue))
            .expect("the write committer thread starts");
        GroupCommitter { jobs }
    }

    /// Runs `work` in the next group; returns its result once the group is durable.
    pub(super) async fn write<T, F>(&self, work: F) -> Result<T, ApiError>
    where
        F: FnOnce(&mut Conn, &mut GroupEnd) -> Result<T, ApiError> + Send + 'static,
        T: Send + 'static,
    {
        let (done, committed) = oneshot::channel();
        let work: Work = Box::new(move |conn, end| Box::new(work(conn, end)));
        self.jobs
            .send(WriteJob { work, done })
            .map_err(|_| ApiError::internal("the write committer has stopped"))?;
        let result = committed
            .await
            .map_err(|_| ApiError::internal("the write committer has stopped"))??;
        *result
            .downcast::<Result<T, ApiError>>()
            .map_err(|_| ApiError::internal("write result of another type"))?
    }
}

/// The next group of a committer's queue: waits for one job, then takes those already
/// waiting, `max` at most. `None` once every sender has gone.
pub(crate) fn next_group<T>(queue: &mpsc::Receiver<T>, max: usize) -> Option<Vec<T>> {
    let mut group = vec![queue.recv().ok()?];
    while group.len() < max {
        match queue.try_recv() {
            Ok(job) => group.push(job),
            Err(_) => break,
        }
    }
    Some(group)
}

fn commit_loop(db: &Db, queue: &mpsc::Receiver<WriteJob>) {
    // Its temporaries in memory: the `RETURNING` lists of the multi-row inserts and
    // the statement journal of each request's savepoint (the first change of a page
    // in a savepoint copies it there), which went through the kernel as temporary
    // files (18 % of this thread at 64 connections; POST@64 +15 %, BENCHMARKS.md).
    // What they hold is bounded by a group's bodies (`--max-body-bytes`,
    // `--max-bundle-entries`) and its lookups by the search bounds.
    // The log's copies into the database left to the checkpointer
    // (`dialect::leave_checkpoints_to_checkpointer`).
    let mut conn = CommitterConnection::for_writes();
    while let Some(group) = next_group(queue, MAX_GROUP) {
        let (works, dones): (Vec<Work>, Vec<_>) =
            group.into_iter().map(|job| (job.work, job.done)).unzip();
        let committed = commit_group(db, &mut conn, works);
        // Answered once durable, while the next group commits.
        db.when_durable(Box::new(move |synced| match synced.and(committed) {
            Ok(results) => {
                for (done, result) in dones.into_iter().zip(results) {
                    let _ = done.send(Ok(result));
                }
            }
            Err(error) => {
                for done in dones {
                    let _ = done.send(Err(error.clone()));
                }
            }
        }));
        // Large bodies written: given back now, the group's answers already on
        // their way (crate::memory).
        crate::memory::settle();
    }
}

/// One transaction, a savepoint per write; the results in order once committed.
fn commit_group(
    db: &Db,
    conn: &mut CommitterConnection,
    works: Vec<Work>,
) -> Result<Vec<Box<dyn Any + Send>>, ApiError> {
    db.commit_on(conn, |conn| {
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            // `BEGIN IMMEDIATE` on SQLite: the group's first write must not have to
            // upgrade the snapshot its reads took, which SQLite refuses at once,
            // without waiting, when another connection (a command, the
            // checkpointer) holds the write lock.
            dialect::write_transaction(conn, |conn| {
                let mut results = Vec::with_capacity(works.len());
                let mut end = GroupEnd::grouped();
                for work in works {
                    // The write's result, success or failure, is a value: its
                    // savepoint is released either way, its own failed
                    // transactions having rolled back their savepoints already.
                    results.push(conn.transaction::<_, diesel::result::Error, _>(|conn| {
                        Ok(work(conn, &mut end))
                    })?);
                }
                end.store(conn)?;
                Ok(results)
            })
        }));
        match outcome {
            Ok(Ok(results)) => Ok(results),
            Ok(Err(error)) => {
                tracing::error!(?error, "a group of writes could not commit");
                Err(error)
            }
            Err(_) => {
                tracing::error!("a write panicked; its group was rolled back");
                Err(ApiError::internal("write failed"))
            }
        }
    })
}
