//! The group committer: the trace of every request that did not write (reads,
//! searches, refusals, errors) is committed here before its response is sent
//! (R-AUD-2). Requests arriving while a commit runs wait for the next one, which
//! commits all of them in one transaction: one fsync for a group instead of one per
//! request. With grouping off, each request's events get their own transaction. On
//! SQLite the fsync runs after the writer's turn (`store::wal_sync`): a group is
//! answered once it is durable, while the next one commits.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, mpsc};
use std::thread;

use tokio::sync::oneshot;

use super::applier::{Applier, Progress};
use super::log::LogFiles;
use super::{LoggedRequest, Prepared, chain};
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
    /// With the trace's log: how far it is written and applied.
    log_progress: Option<Arc<Progress>>,
    /// PostgreSQL: the rows other instances logged in `audit_log`.
    others: Option<OtherInstances>,
}

/// PostgreSQL: the other instances sharing the database, whose logged groups a
/// reader of the trace waits for too (read-your-writes across instances).
#[derive(Clone)]
struct OtherInstances {
    db: Db,
    /// This instance.
    instance: Arc<str>,
    /// Keeps the thread that applies what stopped instances left running.
    _left_applier: mpsc::Sender<()>,
}

/// How soon a reader of the trace looks again whether other instances' groups
/// are applied: 2 ms, doubling up to [`OTHERS_POLL_MAX`], so that readers
/// waiting long (for a stopped instance's rows) do not hold the pool's
/// connections that the appliers need.
const OTHERS_POLL: std::time::Duration = std::time::Duration::from_millis(2);
const OTHERS_POLL_MAX: std::time::Duration = std::time::Duration::from_millis(64);

impl OtherInstances {
    /// Returns once every row other instances had logged at the call is applied
    /// (their appliers are at most milliseconds behind; a row a stopped instance
    /// left is applied by any instance within seconds, see
    /// `applier::apply_left`).
    async fn applied(&self) -> Result<(), ApiError> {
        let instance = Arc::clone(&self.instance);
        let Some(newest) = self
            .db
            .run(move |conn| Ok(crate::store::audit_log::others_newest(conn, &instance)?))
            .await?
        else {
            return Ok(());
        };
        let started = std::time::Instant::now();
        let mut pause = OTHERS_POLL;
        loop {
            let instance = Arc::clone(&self.instance);
            let left = self
                .db
                .run(move |conn| {
                    Ok(crate::store::audit_log::others_left_through(
                        conn, &instance, newest,
                    )?)
                })
                .await?;
            if !left {
                return Ok(());
            }
            if started.elapsed() > super::applier::CAUGHT_UP_WITHIN {
                return Err(not_readable_yet());
            }
            actix_web::rt::time::sleep(pause).await;
            pause = (pause * 2).min(OTHERS_POLL_MAX);
        }
    }

    /// [`OtherInstances::applied`] on the calling thread.
    fn applied_blocking(&self) -> Result<(), ApiError> {
        let Some(newest) = self.db.read_blocking(|conn| {
            Ok(crate::store::audit_log::others_newest(
                conn,
                &self.instance,
            )?)
        })?
        else {
            return Ok(());
        };
        let started = std::time::Instant::now();
        let mut pause = OTHERS_POLL;
        while self.db.read_blocking(|conn| {
            Ok(crate::store::audit_log::others_left_through(
                conn,
                &self.instance,
                newest,
            )?)
        })? {
            if started.elapsed() > super::applier::CAUGHT_UP_WITHIN {
                return Err(not_readable_yet());
            }
            thread::sleep(pause);
            pause = (pause * 2).min(OTHERS_POLL_MAX);
        }
        Ok(())
    }
}

fn not_readable_yet() -> ApiError {
    ApiError::internal("the trace is not readable yet: its latest events are not stored")
}

impl AuditWriter {
    /// Starts the committer thread. It stops when the last handle is dropped.
    /// With `use_log`, on SQLite in a file, it makes the groups it can durable in
    /// a log of this instance's own (see [`super::log`]); with
    /// `use_log_postgres`, on PostgreSQL, as rows of `audit_log` (see
    /// [`LogSink::Table`]). Recover the logs of earlier instances first
    /// ([`super::applier::recover`]). On SQLite in a file, this process must be
    /// the database's one server ([`super::log::serving_lock`]): an error says
    /// another serves it.
    pub fn start(
        db: Db,
        group_commit: bool,
        wakeup: Wakeup,
        use_log: bool,
        use_log_postgres: bool,
    ) -> Result<AuditWriter, String> {
        let serving = match db.trace_logs_folder() {
            Some(folder) => Some(Arc::new(super::log::serving_lock(folder).map_err(
                |error| {
                    format!(
                        "cannot serve the database beside {}: {error}",
                        folder.display()
                    )
                },
            )?)),
            None => None,
        };
        // This instance, among those sharing a PostgreSQL database.
        let instance: Arc<str> = uuid::Uuid::new_v4().to_string().into();
        let log = match (db.trace_logs_folder(), &serving) {
            (Some(folder), Some(serving)) if use_log => {
                match LogFiles::create(folder, Arc::clone(serving)) {
                    Ok(files) => {
                        let applier =
                            Applier::start(db.clone(), wakeup.clone(), Some(files.hold()));
                        Some(TraceLog {
                            sink: LogSink::Files(files),
                            applier,
                            failed: false,
                        })
                    }
                    Err(error) => {
                        tracing::error!(%error, folder = %folder.display(), "no trace log: the trace commits each group");
                        None
                    }
                }
            }
            _ if use_log_postgres && db.is_postgres() => Some(TraceLog {
                sink: LogSink::Table {
                    instance: Arc::clone(&instance),
                    end: 0,
                },
                applier: Applier::start(db.clone(), wakeup.clone(), None),
                failed: false,
            }),
            _ => None,
        };
        let (jobs, queue) = mpsc::channel::<Job>();
        let log_progress = log.as_ref().map(|log| Arc::clone(log.applier.progress()));
        let others = db.is_postgres().then(|| OtherInstances {
            db: db.clone(),
            instance: Arc::clone(&instance),
            _left_applier: super::applier::start_left_applier(
                db.clone(),
                wakeup.clone(),
                Arc::clone(&instance),
            ),
        });
        thread::Builder::new()
            .name("audit-commit".into())
            .spawn(move || {
                // The database stays this process's while the trace is written.
                let _serving = serving;
                commit_loop(&db, &queue, group_commit, &wakeup, log);
            })
            .expect("the audit committer thread starts");
        Ok(AuditWriter {
            jobs,
            log_progress,
            others,
        })
    }

    /// Returns once every request answered before this call has its events (and
    /// the notifications they cause) in the database: this instance's, and on
    /// PostgreSQL every other instance's too.
    pub async fn stored(&self) -> Result<(), ApiError> {
        if let Some(progress) = &self.log_progress {
            progress.caught_up().await?;
        }
        match &self.others {
            Some(others) => others.applied().await,
            None => Ok(()),
        }
    }

    /// [`AuditWriter::stored`] for callers outside the async runtime (commands,
    /// tests).
    pub fn wait_stored(&self) -> Result<(), ApiError> {
        if let Some(progress) = &self.log_progress {
            progress.caught_up_blocking()?;
        }
        match &self.others {
            Some(others) => others.applied_blocking(),
            None => Ok(()),
        }
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

/// Where the trace's log is written.
enum LogSink {
    /// SQLite: the instance's own files beside the database.
    Files(LogFiles),
    /// PostgreSQL: a row of `audit_log` per group, committed durably.
    Table {
        instance: Arc<str>,
        /// Bytes ever appended (the applier's progress counts them).
        end: u64,
    },
}

impl LogSink {
    /// Bytes appended the applier has not applied yet.
    fn behind(&self, applied: u64) -> u64 {
        match self {
            LogSink::Files(files) => files.behind(applied),
            LogSink::Table { end, .. } => end.saturating_sub(applied),
        }
    }

    /// Makes a group's frame durable; answers the position after it and, on
    /// PostgreSQL, its row.
    fn append(
        &mut self,
        db: &Db,
        payload: Vec<u8>,
        applied: u64,
    ) -> Result<(u64, Option<i64>), String> {
        match self {
            LogSink::Files(files) => files
                .append(&payload, applied)
                .map(|end| (end, None))
                .map_err(|error| error.to_string()),
            LogSink::Table { instance, end } => {
                let length = payload.len() as u64;
                let row = db
                    .write_blocking(|conn| {
                        Ok(crate::store::audit_log::append(conn, instance, payload)?)
                    })
                    .map_err(|error| error.message)?;
                *end += length;
                Ok((*end, Some(row)))
            }
        }
    }

    /// Whether a failed append leaves the log unusable: after a failed sync of a
    /// file nothing more is trusted to it; a failed insert is one statement.
    fn fails_for_good(&self) -> bool {
        matches!(self, LogSink::Files(_))
    }
}

/// The trace's log, the committer's side.
struct TraceLog {
    sink: LogSink,
    applier: Applier,
    /// An append failed: the log is no longer written (what it holds stays for
    /// the applier and the recovery), every group is committed.
    failed: bool,
}

impl TraceLog {
    /// Makes the requests of `group` that may go through the log durable there and
    /// answers them (once what they read is durable too); returns the others.
    fn append(&mut self, db: &Db, group: Vec<Job>) -> Vec<Job> {
        // Everything the group's requests read was committed before this ticket.
        let ticket = db.commit_ticket();
        let progress = Arc::clone(self.applier.progress());
        let applied = progress.applied();
        if self.failed || self.sink.behind(applied) > super::applier::MAX_BEHIND {
            return group;
        }
        let (mut logged, mut committed) = (Vec::new(), Vec::new());
        let mut requests = Vec::new();
        for job in group {
            if LoggedRequest::may_log(&job.prepared) {
                requests.push(LoggedRequest::of(job.prepared));
                logged.push(job.done);
            } else {
                committed.push(job);
            }
        }
        if logged.is_empty() {
            return committed;
        }
        let appended = LoggedRequest::encode_group(&requests)
            .map_err(|error| error.to_string())
            .and_then(|payload| self.sink.append(db, payload, applied));
        let (end, row) = match appended {
            Ok(appended) => appended,
            Err(error) => {
                // What the log holds before stays readable. This group's requests
                // are not answered (their events may or may not be in the log).
                if self.sink.fails_for_good() {
                    tracing::error!(%error, "the trace log could not be written; the trace commits each group from now on");
                    self.failed = true;
                } else {
                    tracing::error!(%error, "the trace log could not be written");
                }
                for done in logged {
                    let _ = done.send(Err(ApiError::internal("the trace could not be written")));
                }
                return committed;
            }
        };
        progress.logged_through(end);
        if !self
            .applier
            .apply(super::applier::LoggedGroup { requests, end, row })
        {
            tracing::error!("the trace's applier has stopped; the log keeps the events");
        }
        let answer = move |synced: Result<(), ApiError>| {
            for done in logged {
                let _ = done.send(synced.clone());
            }
        };
        if db.is_durable(ticket) {
            answer(Ok(()));
        } else {
            db.when_durable(Box::new(answer));
        }
        committed
    }
}

fn commit_loop(
    db: &Db,
    queue: &mpsc::Receiver<Job>,
    group_commit: bool,
    wakeup: &Wakeup,
    mut log: Option<TraceLog>,
) {
    let max = if group_commit { MAX_GROUP } else { 1 };
    let mut conn = CommitterConnection::with_temporaries_in_memory();
    let mut known = KnownTips::default();
    while let Some(group) = crate::store::group_commit::next_group(queue, max) {
        let group = match &mut log {
            Some(log) => log.append(db, group),
            None => group,
        };
        if group.is_empty() {
            continue;
        }
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
        match db.commit_on(conn, |conn| {
            super::persist_after_known_tips(conn, &prepared, &known.0)
        }) {
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
