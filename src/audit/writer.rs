//! The group committer: the trace of every request that did not write (reads,
//! searches, refusals, errors) is committed here before its response is sent
//! (R-AUD-2). Requests arriving while a commit runs wait for the next one, which
//! commits all of them in one transaction: one fsync for a group instead of one per
//! request. With grouping off, each request's events get their own transaction. On
//! SQLite the fsync runs after the writer's turn (`store::wal_sync`): a group is
//! answered once it is durable, while the next one commits.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::mpsc;
use std::thread;

use tokio::sync::oneshot;

use super::{Prepared, chain};
use crate::error::ApiError;
use crate::notify::Wakeup;
use crate::store::{CommitterConnection, Db, dialect};

/// The most requests one commit takes.
const MAX_GROUP: usize = 512;

struct Job {
    prepared: Prepared,
    done: oneshot::Sender<Result<(), ApiError>>,
}

/// Handle on the committer thread.
#[derive(Clone)]
pub struct AuditWriter {
    jobs: mpsc::Sender<Job>,
}

impl AuditWriter {
    /// Starts the committer thread. It stops when the last handle is dropped.
    pub fn start(db: Db, group_commit: bool, wakeup: Wakeup) -> AuditWriter {
        let (jobs, queue) = mpsc::channel::<Job>();
        thread::Builder::new()
            .name("audit-commit".into())
            .spawn(move || commit_loop(&db, &queue, group_commit, &wakeup))
            .expect("the audit committer thread starts");
        AuditWriter { jobs }
    }

    /// Commits the request's events; returns once they are durable.
    pub async fn record(&self, prepared: Prepared) -> Result<(), ApiError> {
        let (done, committed) = oneshot::channel();
        self.jobs
            .send(Job { prepared, done })
            .map_err(|_| ApiError::internal("the trace writer has stopped"))?;
        committed
            .await
            .map_err(|_| ApiError::internal("the trace writer has stopped"))?
    }
}

/// The chains' tips this committer's own commits left: on PostgreSQL they let a
/// group go in one statement ([`super::persist_after_known_tips`]). At most
/// [`KNOWN_TIPS`] chains are kept (forgotten all at once past that).
#[derive(Default)]
struct KnownTips(chain::Tips);

/// Chains whose tips a committer keeps (about 150 bytes each).
const KNOWN_TIPS: usize = 16_384;

impl KnownTips {
    fn learn(&mut self, tips: chain::Tips) {
        if self.0.len() + tips.len() > KNOWN_TIPS {
            self.0.clear();
        }
        self.0.extend(tips);
    }

    fn forget(&mut self, group: &[Job]) {
        for job in group {
            for event in &job.prepared.events {
                self.0.remove(&event.chain_key);
            }
        }
    }
}

fn commit_loop(db: &Db, queue: &mpsc::Receiver<Job>, group_commit: bool, wakeup: &Wakeup) {
    let max = if group_commit { MAX_GROUP } else { 1 };
    let mut conn = CommitterConnection::with_temporaries_in_memory();
    let mut known = KnownTips::default();
    while let Some(group) = crate::store::group_commit::next_group(queue, max) {
        let results: Vec<Result<usize, ApiError>> =
            match commit_guarded(db, &mut conn, &mut known, &group) {
                Ok(notifications) => {
                    let mut results = vec![Ok(0); group.len()];
                    results[0] = Ok(notifications);
                    results
                }
                // One bad record must not fail its neighbours: retry them one by one.
                Err(_) if group.len() > 1 => group
                    .iter()
                    .map(|job| commit_guarded(db, &mut conn, &mut known, std::slice::from_ref(job)))
                    .collect(),
                Err(error) => vec![Err(error)],
            };
        // Answered once durable: the next group commits meanwhile.
        let wakeup = wakeup.clone();
        db.when_durable(Box::new(move |synced| {
            let mut notified = false;
            for (job, result) in group.into_iter().zip(results) {
                let result = synced.clone().and(result);
                notified |= matches!(result, Ok(n) if n > 0);
                let _ = job.done.send(result.map(|_| ()));
            }
            if notified {
                wakeup.wake();
            }
        }));
    }
}

/// [`commit`], where a panic fails this group's requests (their answers are
/// withheld), not every later one's: the thread goes on, on a fresh connection and
/// knowing no chain.
fn commit_guarded(
    db: &Db,
    conn: &mut CommitterConnection,
    known: &mut KnownTips,
    group: &[Job],
) -> Result<usize, ApiError> {
    catch_unwind(AssertUnwindSafe(|| commit(db, conn, known, group))).unwrap_or_else(|_| {
        tracing::error!("committing the trace of a group panicked");
        *conn = CommitterConnection::with_temporaries_in_memory();
        *known = KnownTips::default();
        Err(ApiError::internal("the trace could not be written"))
    })
}

/// Commits a group's events; returns the number of notifications queued.
fn commit(
    db: &Db,
    conn: &mut CommitterConnection,
    known: &mut KnownTips,
    group: &[Job],
) -> Result<usize, ApiError> {
    let prepared: Vec<&Prepared> = group.iter().map(|job| &job.prepared).collect();
    if db.is_postgres() && super::fits_known_tips(&prepared, &known.0) {
        match db.write_blocking(|conn| super::persist_after_known_tips(conn, &prepared, &known.0)) {
            Ok(Some(tips)) => {
                known.learn(tips);
                return Ok(0);
            }
            // A first access, or a chain moved by another transaction: the locking
            // path reads where the chains stand.
            Ok(None) => known.forget(group),
            // Most often a chain moved while the statement waited for its lock. If
            // the connection broke instead, the statement may have committed: its
            // events say so (written all together or not at all).
            Err(_) => {
                known.0.clear();
                if db.read_blocking(|conn| super::group_stored(conn, &prepared))? {
                    return Ok(0);
                }
            }
        }
    }
    let persisted = db.commit_on(conn, |conn| {
        dialect::write_transaction(conn, |conn| super::persist(conn, &prepared))
    });
    match persisted {
        Ok(persisted) => {
            if db.is_postgres() {
                known.learn(persisted.tips);
            }
            Ok(persisted.notifications)
        }
        Err(error) => {
            known.forget(group);
            Err(error)
        }
    }
}
