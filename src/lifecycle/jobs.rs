//! The lifecycle job, run on a schedule by the server and once by the `lifecycle`
//! command: it records the opening of pending spaces 42 days after their notification
//! and sends their welcome message (R-LIFE-1, R-MSG-2), and purges closed spaces 10
//! years after their closure (R-LIFE-3), AuditEvents excepted (R-AUD-3), and the
//! holders' accounts' codes, failure counters, sessions, authorisation codes and
//! refresh tokens a day after they expired.

use std::sync::{Arc, mpsc};
use std::time::Duration;

use chrono::{DateTime, Months, Utc};

use super::{ACTIVATION_DELAY, RETENTION_YEARS, State};
use crate::audit::writer::AuditWriter;
use crate::clock::Clock;
use crate::error::ApiError;
use crate::fhir::date::fhir_instant;
use crate::notify::Wakeup;
use crate::store::{Db, dialect, lifecycle as stored};

/// What one run did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Report {
    pub opened: usize,
    pub purged: usize,
    pub resources_removed: usize,
    /// Expired rows of the accounts' tables removed.
    pub account_rows_removed: usize,
}

/// How long after it expired an account's code, counter, session, authorisation
/// code or refresh token is removed.
const EXPIRED_KEPT: chrono::TimeDelta = chrono::TimeDelta::days(1);

/// Spaces opened per transaction.
const BATCH: i64 = 200;

/// Spaces purged per transaction (see the purge's loop).
const PURGES_PER_TRANSACTION: i64 = 1;

/// Runs the job once at `now`.
pub fn run_once(db: &Db, now: DateTime<Utc>) -> Result<Report, ApiError> {
    let mut report = Report::default();
    let stamp = fhir_instant(now);
    let notified_before = fhir_instant(now - ACTIVATION_DELAY);
    loop {
        let opened = db.write_blocking(|conn| {
            dialect::write_transaction(conn, |conn| {
                let due = stored::due_activations(conn, &notified_before, BATCH)?;
                let mut opened = 0;
                for patient in &due {
                    // A space whose turn is taken (a write deciding on it, a
                    // change of its lifecycle) waits for the next run: the job
                    // holding many never waits on one.
                    if !dialect::try_lock(conn, &crate::service::locks::space(patient))? {
                        continue;
                    }
                    let Some(mut row) = stored::get(conn, patient)? else {
                        continue;
                    };
                    row.state = State::Active.code().to_owned();
                    row.changed_at = stamp.clone();
                    if row.welcomed_at.is_none() {
                        crate::notify::welcome(conn, patient, &stamp)?;
                        row.welcomed_at = Some(stamp.clone());
                    }
                    stored::put(conn, &row)?;
                    opened += 1;
                }
                Ok(opened)
            })
        })?;
        report.opened += opened;
        if opened < BATCH as usize {
            break;
        }
    }
    let closed_before = now
        .checked_sub_months(Months::new(12 * RETENTION_YEARS))
        .map(fhir_instant)
        .unwrap_or_default();
    loop {
        let (purged, removed) = db.write_blocking(|conn| {
            dialect::write_transaction(conn, |conn| {
                // One space per transaction: a purge takes its space's trace chain's
                // turn, and holding several (in no order) would cross the trace's
                // committer, which takes them in order.
                let due = stored::due_purges(conn, &closed_before, PURGES_PER_TRANSACTION)?;
                let (mut purged, mut removed) = (0, 0);
                for patient in &due {
                    if !dialect::try_lock(conn, &crate::service::locks::space(patient))? {
                        continue;
                    }
                    let Some(mut row) = stored::get(conn, patient)? else {
                        continue;
                    };
                    removed += stored::purge_space(conn, patient)?;
                    row.purged_at = Some(stamp.clone());
                    stored::put(conn, &row)?;
                    purged += 1;
                }
                Ok((purged, removed))
            })
        })?;
        report.purged += purged;
        report.resources_removed += removed;
        if purged < PURGES_PER_TRANSACTION as usize {
            break;
        }
    }
    let expired_before = fhir_instant(now - EXPIRED_KEPT);
    loop {
        let removed = db.write_blocking(|conn| {
            dialect::write_transaction(conn, |conn| {
                Ok(crate::store::accounts::purge_expired(
                    conn,
                    &expired_before,
                    EXPIRED_BATCH,
                )?)
            })
        })?;
        report.account_rows_removed += removed;
        if removed == 0 {
            break;
        }
    }
    Ok(report)
}

/// Expired rows of each account table removed per transaction.
const EXPIRED_BATCH: i64 = 1_000;

/// Handle on the lifecycle thread: it stops when the handle is dropped (with the
/// server's state), and with it its hold on the database and the notifications.
pub struct LifecycleJob {
    _stop: mpsc::Sender<()>,
}

/// Runs the job every `interval` on a thread of its own.
pub fn start(
    db: Db,
    clock: Arc<dyn Clock>,
    interval: Duration,
    wakeup: Wakeup,
    trace: AuditWriter,
) -> LifecycleJob {
    let (stop, stopped) = mpsc::channel::<()>();
    std::thread::Builder::new()
        .name("lifecycle".into())
        .spawn(move || {
            loop {
                // A purge removes a space's first accesses: the trace of the
                // requests answered before it is stored first (its log applied), so
                // that none comes back after it.
                let stored = trace.wait_stored();
                match stored.and_then(|()| run_once(&db, clock.now())) {
                    Ok(report) => {
                        if report.opened > 0 {
                            wakeup.wake();
                        }
                        if report != Report::default() {
                            tracing::info!(
                                opened = report.opened,
                                purged = report.purged,
                                removed = report.resources_removed,
                                account_rows_removed = report.account_rows_removed,
                                "lifecycle job"
                            );
                        }
                    }
                    Err(error) => tracing::warn!(%error, "lifecycle job failed; next run retries"),
                }
                if let Err(error) = db.refresh_statistics(false) {
                    tracing::warn!(%error, "cannot refresh the planner's statistics");
                }
                if let Err(mpsc::RecvTimeoutError::Disconnected) = stopped.recv_timeout(interval) {
                    return;
                }
            }
        })
        .expect("the lifecycle thread starts");
    LifecycleJob { _stop: stop }
}
