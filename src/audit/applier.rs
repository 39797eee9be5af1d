//! The trace log's applier: moves the groups the committer made durable in the
//! trace's log ([`super::log`]) into the database, many groups a commit, with their
//! chain links, search index and first-access notifications ([`super::persist_logged`]).
//!
//! Read-your-writes (R-PAT-4, R-ACC-11, R-AUD-4): a request that may read the
//! trace or the notifications first calls [`Progress::caught_up`], which returns
//! once every group logged before the call is applied and durable in the database.
//! The applied position only moves after the database's log sync, so that what a
//! trace reader is shown is never lost by a crash (its commits are not counted
//! among those requests may read before they are durable, see
//! `store::CommitterConnection::for_trace_log`).
//!
//! A commit that fails is tried again (one group at a time, then after a pause,
//! for as long as it fails): the events stay in the log meanwhile, the trace's
//! readers get 500s after `CAUGHT_UP_WITHIN` (the trace is never shown
//! incomplete), and once the log is [`MAX_BEHIND`] ahead the committer commits
//! new groups itself.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use tokio::sync::watch;

use super::LoggedRequest;
use super::log::LogHold;
use crate::error::ApiError;
use crate::notify::Wakeup;
use crate::store::{CommitterConnection, Db, dialect};

/// The most logged groups one commit applies.
const MAX_GROUPS: usize = 64;

/// How far (bytes of log) the log may run ahead of the applier before the
/// committer commits groups itself (a bound on the log's size and on the groups
/// held for the applier).
pub const MAX_BEHIND: u64 = 64 << 20;

/// How long a trace reader waits for the applier before a 500.
pub(super) const CAUGHT_UP_WITHIN: Duration = Duration::from_secs(10);

/// The longest pause between two tries of a failing commit.
const MAX_PAUSE: Duration = Duration::from_secs(1);

/// A group as the committer logged it, and the log's position after it.
pub struct LoggedGroup {
    pub requests: Vec<LoggedRequest>,
    pub end: u64,
    /// PostgreSQL: its row in `audit_log`, deleted as it is applied.
    pub row: Option<i64>,
}

/// How far the log is written and applied.
pub struct Progress {
    /// Bytes of log durable (and answered).
    logged: AtomicU64,
    /// Bytes of log applied and durable in the database.
    applied: watch::Sender<u64>,
}

impl Progress {
    fn new() -> Progress {
        Progress {
            logged: AtomicU64::new(0),
            applied: watch::Sender::new(0),
        }
    }

    /// The log is durable up to `end`.
    pub fn logged_through(&self, end: u64) {
        self.logged.fetch_max(end, Ordering::SeqCst);
    }

    /// How far the log is applied and durable in the database.
    pub fn applied(&self) -> u64 {
        *self.applied.borrow()
    }

    fn applied_through(&self, end: u64) {
        self.applied.send_if_modified(|applied| {
            let moved = end > *applied;
            *applied = (*applied).max(end);
            moved
        });
    }

    /// Returns once every group logged before this call is applied and durable.
    pub async fn caught_up(&self) -> Result<(), ApiError> {
        let target = self.logged.load(Ordering::SeqCst);
        let mut applied = self.applied.subscribe();
        if *applied.borrow() >= target {
            return Ok(());
        }
        match actix_web::rt::time::timeout(
            CAUGHT_UP_WITHIN,
            applied.wait_for(|applied| *applied >= target),
        )
        .await
        {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(_)) => Err(ApiError::internal("the trace's applier has stopped")),
            Err(_) => Err(ApiError::internal(
                "the trace is not readable yet: its latest events are not stored",
            )),
        }
    }
}

impl Progress {
    /// [`Progress::caught_up`] for callers outside the async runtime (commands,
    /// tests).
    pub fn caught_up_blocking(&self) -> Result<(), ApiError> {
        let target = self.logged.load(Ordering::SeqCst);
        let started = std::time::Instant::now();
        while self.applied() < target {
            if started.elapsed() > CAUGHT_UP_WITHIN {
                return Err(ApiError::internal(
                    "the trace is not readable yet: its latest events are not stored",
                ));
            }
            thread::sleep(Duration::from_millis(1));
        }
        Ok(())
    }
}

/// Handle on the applier thread; it stops (having applied what it was given) when
/// the last handle is dropped.
#[derive(Clone)]
pub struct Applier {
    groups: mpsc::Sender<LoggedGroup>,
    progress: Arc<Progress>,
}

impl Applier {
    /// Starts the applier of the log `hold` keeps (SQLite's files; once its last
    /// handle is dropped and every group applied and durable, it removes them), or
    /// of `audit_log`'s rows on PostgreSQL (`hold` none).
    pub fn start(db: Db, wakeup: Wakeup, hold: Option<LogHold>) -> Applier {
        let (groups, queue) = mpsc::channel::<LoggedGroup>();
        let progress = Arc::new(Progress::new());
        let shared = Arc::clone(&progress);
        thread::Builder::new()
            .name("audit-apply".into())
            .spawn(move || {
                apply_loop(&db, &queue, &shared, &wakeup);
                let Some(hold) = hold else {
                    return;
                };
                let (durable, synced) = mpsc::channel();
                db.when_durable(Box::new(move |result| {
                    let _ = durable.send(result.is_ok());
                }));
                if synced.recv() == Ok(true)
                    && shared.applied() >= shared.logged.load(Ordering::SeqCst)
                    && let Err(error) = hold.remove()
                {
                    tracing::warn!(%error, "the trace's applied log could not be removed");
                }
            })
            .expect("the trace applier thread starts");
        Applier { groups, progress }
    }

    pub fn progress(&self) -> &Arc<Progress> {
        &self.progress
    }

    /// Hands a logged group over; false if the applier has stopped.
    pub fn apply(&self, group: LoggedGroup) -> bool {
        self.groups.send(group).is_ok()
    }
}

fn apply_loop(
    db: &Db,
    queue: &mpsc::Receiver<LoggedGroup>,
    progress: &Arc<Progress>,
    wakeup: &Wakeup,
) {
    let mut conn = CommitterConnection::for_trace_log();
    while let Some(groups) = crate::store::group_commit::next_group(queue, MAX_GROUPS) {
        let end = groups.last().map_or(0, |group| group.end);
        let groups: Vec<&LoggedGroup> = groups.iter().collect();
        let notifications = apply_until_stored(db, &mut conn, &groups);
        let (progress, wakeup) = (Arc::clone(progress), wakeup.clone());
        db.when_durable(Box::new(move |synced| {
            if synced.is_ok() {
                progress.applied_through(end);
            }
            if notifications > 0 {
                wakeup.wake();
            }
        }));
    }
}

/// Applies the groups, trying again for as long as it fails; returns the number
/// of notifications queued.
fn apply_until_stored(db: &Db, conn: &mut CommitterConnection, groups: &[&LoggedGroup]) -> usize {
    match apply_guarded(db, conn, groups) {
        Ok(notifications) => notifications,
        // One request that cannot be stored must not hold its neighbours.
        Err(_) if groups.len() > 1 => groups
            .iter()
            .map(|group| apply_until_stored(db, conn, std::slice::from_ref(group)))
            .sum(),
        Err(_) if groups[0].requests.len() > 1 => apply_one_by_one(db, conn, groups[0]),
        Err(_) => {
            let request_id = groups[0]
                .requests
                .first()
                .map_or("", |request| request.request_id.as_str());
            until_stored(request_id, || apply_guarded(db, conn, groups))
        }
    }
}

/// A group whose requests do not all store: each request in a transaction of its
/// own (unless stored already: a request applied before a failure, or the group
/// applied by another instance meanwhile), then its row deleted.
fn apply_one_by_one(db: &Db, conn: &mut CommitterConnection, group: &LoggedGroup) -> usize {
    let mut notifications = 0;
    for request in &group.requests {
        notifications += until_stored(request.request_id.as_str(), || {
            in_transaction(db, conn, |conn| {
                if stored(conn, request)? {
                    Ok(0)
                } else {
                    super::persist_logged(conn, &[request])
                }
            })
        });
    }
    if let Some(row) = group.row {
        until_stored("", || {
            in_transaction(db, conn, |conn| {
                crate::store::audit_log::take(conn, &[row])?;
                Ok(0)
            })
        });
    }
    notifications
}

/// Runs `apply` until it succeeds, pausing longer after each failure.
fn until_stored(request_id: &str, mut apply: impl FnMut() -> Result<usize, ApiError>) -> usize {
    let mut pause = Duration::from_millis(10);
    loop {
        match apply() {
            Ok(notifications) => return notifications,
            Err(error) => {
                tracing::error!(request_id, %error, "the trace log's events could not be stored; trying again");
                thread::sleep(pause);
                pause = (pause * 2).min(MAX_PAUSE);
            }
        }
    }
}

/// The groups' requests stored in one transaction, with their log rows deleted: a
/// group whose row another transaction deleted first (it applied it) is left out.
fn apply_guarded(
    db: &Db,
    conn: &mut CommitterConnection,
    groups: &[&LoggedGroup],
) -> Result<usize, ApiError> {
    in_transaction(db, conn, |conn| {
        let rows: Vec<i64> = groups.iter().filter_map(|group| group.row).collect();
        let taken = if rows.is_empty() {
            Vec::new()
        } else {
            crate::store::audit_log::take(conn, &rows)?
        };
        let requests: Vec<&LoggedRequest> = groups
            .iter()
            .filter(|group| group.row.is_none_or(|row| taken.contains(&row)))
            .flat_map(|group| &group.requests)
            .collect();
        super::persist_logged(conn, &requests)
    })
}

/// `work` in a write transaction on the applier's connection; a panic fails it
/// and the connection is made again.
fn in_transaction(
    db: &Db,
    conn: &mut CommitterConnection,
    work: impl FnOnce(&mut crate::store::Conn) -> Result<usize, ApiError>,
) -> Result<usize, ApiError> {
    catch_unwind(AssertUnwindSafe(|| {
        db.commit_on(conn, |conn| dialect::write_transaction(conn, work))
    }))
    .unwrap_or_else(|_| {
        tracing::error!("applying the trace log panicked");
        *conn = CommitterConnection::for_trace_log();
        Err(ApiError::internal("the trace could not be written"))
    })
}

/// PostgreSQL: starts the thread that applies, every [`LEFT_EVERY`], the rows of
/// `audit_log` that instances that stopped left ([`apply_left`]; `instance` is
/// this one), whether this instance logs or not (the trace's readers wait for
/// them); it stops when `running`'s other end is dropped.
pub fn start_left_applier(db: Db, wakeup: Wakeup, instance: Arc<str>) -> mpsc::Sender<()> {
    let (running, stopped) = mpsc::channel::<()>();
    thread::Builder::new()
        .name("audit-left".into())
        .spawn(move || {
            while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(LEFT_EVERY) {
                match apply_left(&db, &instance, LEFT_AFTER) {
                    Ok(applied) if applied.notifications > 0 => wakeup.wake(),
                    Ok(_) => {}
                    Err(error) => {
                        tracing::error!(%error, "the trace's log an instance left could not be applied; trying again")
                    }
                }
            }
        })
        .expect("the trace's left-log applier thread starts");
    running
}

/// How often an instance looks for the rows of `audit_log` that instances that
/// stopped left (PostgreSQL).
const LEFT_EVERY: Duration = Duration::from_secs(1);

/// How old another instance's row must be to be taken as left: its own applier
/// takes it within milliseconds (taking it earlier would still apply it once).
const LEFT_AFTER: Duration = Duration::from_secs(2);

/// How old a row of this instance's own must be to be taken as left: one whose
/// append failed after it committed (its group was answered 500, never handed to
/// the applier). Well past how far the applier may run behind (`MAX_BEHIND`).
const OWN_LEFT_AFTER: Duration = Duration::from_secs(60);

/// Tries at a left row whose events fail to store before it is set aside.
const LEFT_ATTEMPTS: i64 = 5;

/// What [`apply_left`] did.
#[derive(Debug, Default)]
pub struct AppliedLeft {
    pub requests: usize,
    pub notifications: usize,
    /// Rows that failed this time (set aside, or to be tried again).
    pub failed: usize,
}

/// PostgreSQL: applies the rows of `audit_log` left by instances other than
/// `instance` at least `after` ago (or by this one [`OWN_LEFT_AFTER`] ago), those
/// there when it starts, one row per transaction, each deleted as it is applied,
/// each of its requests unless the database holds its events already; rows
/// another transaction holds are skipped (an applier at work on them). A row that
/// fails does not hold back those after it: it stays for the next pass, and is set
/// aside, with the reason, once it failed [`LEFT_ATTEMPTS`] times or if its frame
/// does not read (see [`set_aside_report`]).
pub fn apply_left(db: &Db, instance: &str, after: Duration) -> Result<AppliedLeft, ApiError> {
    use crate::store::audit_log;
    let mut applied = AppliedLeft::default();
    let millis = |duration: Duration| i64::try_from(duration.as_millis()).unwrap_or(i64::MAX);
    // Rows logged from now on are for a later pass: the loop ends.
    let Some(through) = db.read_blocking(|conn| Ok(audit_log::newest(conn)?))? else {
        return Ok(applied);
    };
    let mut from = 0;
    loop {
        let rows = audit_log::LeftRows {
            instance,
            others_after_ms: millis(after),
            own_after_ms: millis(OWN_LEFT_AFTER),
            from,
            through,
        };
        // The row taken, kept if its transaction fails.
        let taken = std::cell::Cell::new(None::<(i64, bool)>);
        let outcome = db.write_blocking(|conn| {
            dialect::write_transaction(conn, |conn| {
                let Some(row) = audit_log::take_next_left(conn, &rows)? else {
                    return Ok(None);
                };
                taken.set(Some((row.pos, true)));
                let requests = LoggedRequest::decode_group(&row.frame).map_err(|error| {
                    ApiError::internal(format!("its frame does not read: {error}"))
                })?;
                taken.set(Some((row.pos, false)));
                let missing = missing_once(conn, &requests)?;
                let notifications = super::persist_logged(conn, &missing)?;
                Ok(Some((row.pos, missing.len(), notifications)))
            })
        });
        match (outcome, taken.get()) {
            (Ok(None), _) => return Ok(applied),
            (Ok(Some((pos, requests, notifications))), _) => {
                applied.requests += requests;
                applied.notifications += notifications;
                from = pos + 1;
            }
            (Err(error), Some((pos, unreadable))) => {
                applied.failed += 1;
                let set_aside = db.write_blocking(|conn| {
                    Ok(audit_log::failed_once(
                        conn,
                        pos,
                        &error.message,
                        unreadable,
                        LEFT_ATTEMPTS,
                    )?)
                })?;
                if set_aside {
                    tracing::error!(pos, error = %error.message, "a row of the trace's log cannot be applied: set aside (its events are not in the trace; audit-verify reports it)");
                } else {
                    tracing::warn!(pos, error = %error.message, "a row of the trace's log could not be applied; tried again later");
                }
                from = pos + 1;
            }
            // Nothing taken: the database itself failed.
            (Err(error), None) => return Err(error),
        }
    }
}

/// PostgreSQL: one line per row of `audit_log` set aside (at most a hundred), as
/// `audit-verify` and the start report them.
pub fn set_aside_report(db: &Db) -> Result<Vec<String>, ApiError> {
    if !db.is_postgres() {
        return Ok(Vec::new());
    }
    Ok(db
        .read_blocking(|conn| Ok(crate::store::audit_log::set_aside(conn)?))?
        .into_iter()
        .map(|(pos, instance, reason)| {
            format!(
                "audit_log row {pos} (instance {instance}): set aside, its events are not in the trace: {reason}"
            )
        })
        .collect())
}

/// The requests whose events the database does not hold, each once (a group
/// logged again after a failed append holds it twice).
fn missing_once<'a>(
    conn: &mut crate::store::Conn,
    requests: &'a [LoggedRequest],
) -> Result<Vec<&'a LoggedRequest>, ApiError> {
    let mut seen = std::collections::HashSet::new();
    let mut missing = Vec::new();
    for request in requests {
        let Some(first) = request.events.first() else {
            continue;
        };
        if seen.insert(first.id.as_str()) && !stored(conn, request)? {
            missing.push(request);
        }
    }
    Ok(missing)
}

/// Requests recovered from a log, applied a chunk per transaction.
const RECOVERY_CHUNK: usize = 256;

/// What [`recover`] did.
#[derive(Debug, Default)]
pub struct Recovered {
    /// Requests whose events it applied.
    pub applied: usize,
    /// The logs set aside as damaged (this time or before): what they held past
    /// their damage is lost; each line says where.
    pub damaged: Vec<String>,
}

/// Applies the logs that no running instance holds (an instance killed, or
/// stopped before its applier finished), each request unless the database holds
/// its events already, then removes them; a damaged one (a frame that does not
/// check out before frames that do, a file removed) is applied as far as it
/// reads and set aside (`damaged-…`), and reported, at every start and by
/// `audit-verify`, until someone moves it away.
pub fn recover(db: &Db) -> Result<Recovered, String> {
    let mut recovered = Recovered::default();
    if db.is_postgres() {
        // Every row left in `audit_log`, whoever logged it: one a running instance
        // logged is applied once all the same (`apply_left`).
        recovered.applied = apply_left(db, "", Duration::ZERO)
            .map_err(|error| format!("cannot apply the trace's log: {}", error.message))?
            .requests;
        if recovered.applied > 0 {
            tracing::info!(
                requests = recovered.applied,
                "the trace's log was applied at start"
            );
        }
        recovered.damaged = set_aside_report(db)
            .map_err(|error| format!("cannot read the trace's log: {}", error.message))?;
        for line in &recovered.damaged {
            tracing::error!("{line}");
        }
        return Ok(recovered);
    }
    let Some(folder) = db.trace_logs_folder() else {
        return Ok(recovered);
    };
    let orphans = super::log::orphaned_logs(folder).map_err(|error| {
        format!(
            "cannot read the trace's logs in {}: {error}",
            folder.display()
        )
    })?;
    for orphan in orphans {
        let mut requests = Vec::new();
        for frame in &orphan.frames {
            let group = LoggedRequest::decode_group(frame).map_err(|error| {
                format!(
                    "a frame of the trace log in {} does not read: {error}",
                    orphan.folder.display()
                )
            })?;
            requests.extend(group);
        }
        // A request written twice (its group again after a failed append) once.
        let mut seen = std::collections::HashSet::new();
        requests.retain(|request| {
            request
                .events
                .first()
                .is_some_and(|event| seen.insert(event.id.clone()))
        });
        for chunk in requests.chunks(RECOVERY_CHUNK) {
            recovered.applied += db
                .write_blocking(|conn| {
                    dialect::write_transaction(conn, |conn| {
                        let missing = missing_once(conn, chunk)?;
                        super::persist_logged(conn, &missing)?;
                        Ok(missing.len())
                    })
                })
                .map_err(|error| format!("cannot apply the trace log: {}", error.message))?;
        }
        // Pooled connections commit with a sync: the chunks are durable.
        let folder = orphan.folder.clone();
        if orphan.damage.is_empty() {
            orphan
                .remove()
                .map_err(|error| format!("cannot remove {}: {error}", folder.display()))?;
        } else {
            for damage in &orphan.damage {
                tracing::error!(%damage, "a trace log is damaged: the events it held past the damage are lost");
            }
            orphan
                .set_aside()
                .map_err(|error| format!("cannot set {} aside: {error}", folder.display()))?;
        }
    }
    if recovered.applied > 0 {
        tracing::info!(
            requests = recovered.applied,
            "the trace's log was applied at start"
        );
    }
    for aside in super::log::damaged_logs(folder)
        .map_err(|error| format!("cannot read {}: {error}", folder.display()))?
    {
        let line = format!(
            "{}: a damaged trace log (its readable events are applied; the rest is lost)",
            aside.display()
        );
        tracing::error!("{line}");
        recovered.damaged.push(line);
    }
    Ok(recovered)
}

/// Whether the database holds the request's events (they are stored together).
fn stored(conn: &mut crate::store::Conn, request: &LoggedRequest) -> Result<bool, ApiError> {
    match request.events.first() {
        Some(event) => super::event_stored(conn, &event.id),
        None => Ok(true),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::{Outcome, Record, Touched, Trace};

    fn logged_read(patient: &str, request_id: &str) -> LoggedRequest {
        let mut touched = Touched::default();
        touched.patients.insert(patient.to_owned());
        let prepared = crate::audit::prepare(Record {
            trace: Trace {
                request_id: request_id.to_owned(),
                method: "GET".into(),
                interaction: "read",
                resource_type: Some("DocumentReference"),
                ..Trace::default()
            },
            outcome: Outcome::answered(200),
            touched,
        });
        assert!(
            LoggedRequest::may_log(&prepared),
            "a read goes through the log"
        );
        LoggedRequest::of(prepared)
    }

    /// A damaged log (a frame that does not check out before one that does) is
    /// applied as far as it reads, set aside, and reported at every recovery.
    #[test]
    fn a_damaged_log_is_applied_as_far_as_it_reads_and_reported() {
        let dir = std::env::temp_dir().join(format!("dmp-test-applier-{}", uuid::Uuid::new_v4()));
        let db = Db::open(&format!("sqlite://{}", dir.join("db.sqlite").display())).unwrap();
        let logs = db.trace_logs_folder().unwrap().to_owned();
        let serving = std::sync::Arc::new(super::super::log::serving_lock(&logs).unwrap());
        let mut log = super::super::log::LogFiles::create(&logs, serving).unwrap();
        let requests = [
            logged_read("p1", "req-1"),
            logged_read("p1", "req-2"),
            logged_read("p1", "req-3"),
        ];
        let mut ends = Vec::new();
        for request in &requests {
            let frame = LoggedRequest::encode_group(std::slice::from_ref(request)).unwrap();
            ends.push(log.append(&frame, 0).unwrap());
        }
        let a = log.folder().join("a.log");
        drop(log);
        // A byte of the second frame's payload changed.
        let file = std::fs::OpenOptions::new().write(true).open(&a).unwrap();
        std::os::unix::fs::FileExt::write_all_at(&file, b"X", ends[0] + 40).unwrap();
        let recovered = recover(&db).unwrap();
        assert_eq!(recovered.applied, 2);
        assert_eq!(recovered.damaged.len(), 1, "{:?}", recovered.damaged);
        assert!(event_stored(&db, &requests[0]) && event_stored(&db, &requests[2]));
        assert!(!event_stored(&db, &requests[1]));
        let again = recover(&db).unwrap();
        assert_eq!((again.applied, again.damaged.len()), (0, 1), "still told");
        drop(db);
        std::fs::remove_dir_all(dir).unwrap();
    }

    /// A group reads back as it was written, each event's content whole; a frame
    /// cut short does not read.
    #[test]
    fn a_group_reads_back_as_written() {
        let group = [logged_read("p1", "req-1"), logged_read("p2", "req-2")];
        let bytes = LoggedRequest::encode_group(&group).unwrap();
        let read = LoggedRequest::decode_group(&bytes).unwrap();
        assert_eq!(read.len(), 2);
        for (read, written) in read.iter().zip(&group) {
            assert_eq!(read.request_id, written.request_id);
            assert_eq!(read.recorded, written.recorded);
            assert_eq!(read.events.len(), written.events.len());
            for (read, written) in read.events.iter().zip(&written.events) {
                assert_eq!(
                    (&read.id, &read.chain_key),
                    (&written.id, &written.chain_key)
                );
                assert_eq!(read.content, written.content);
                assert!(read.index.is_none(), "made again when applied");
            }
        }
        assert!(LoggedRequest::decode_group(&bytes[..bytes.len() - 1]).is_err());
    }

    fn event_stored(db: &Db, request: &LoggedRequest) -> bool {
        db.read_blocking(|conn| stored(conn, request)).unwrap()
    }

    /// What a stopped instance's log holds is applied at the next start, once
    /// (a request the database already holds is not applied again), chained, and
    /// the log removed.
    #[test]
    fn a_stopped_instances_log_is_applied_once_at_start() {
        let dir = std::env::temp_dir().join(format!("dmp-test-applier-{}", uuid::Uuid::new_v4()));
        let db = Db::open(&format!("sqlite://{}", dir.join("db.sqlite").display())).unwrap();
        let logs = db
            .trace_logs_folder()
            .expect("a SQLite file has a trace log")
            .to_owned();
        let (first, second) = (logged_read("p1", "req-1"), logged_read("p1", "req-2"));
        let serving = std::sync::Arc::new(super::super::log::serving_lock(&logs).unwrap());
        let mut log = super::super::log::LogFiles::create(&logs, serving).unwrap();
        let frame = |requests: &[LoggedRequest]| LoggedRequest::encode_group(requests).unwrap();
        log.append(&frame(std::slice::from_ref(&first)), 0).unwrap();
        // The second request twice: written again after a crash, say.
        log.append(&frame(&[second.clone(), second.clone()]), 0)
            .unwrap();
        let folder = log.folder().to_owned();
        assert_eq!(
            recover(&db).unwrap().applied,
            0,
            "a running instance's log is its own"
        );
        drop(log);
        assert!(!event_stored(&db, &first));
        assert_eq!(recover(&db).unwrap().applied, 2);
        assert!(event_stored(&db, &first) && event_stored(&db, &second));
        assert!(!folder.exists());
        let report = db.read_blocking(crate::audit::chain::verify).unwrap();
        assert_eq!((report.events, report.broken.len()), (2, 0));
        let again = recover(&db).unwrap();
        assert_eq!((again.applied, again.damaged.len()), (0, 0));
        drop(db);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
