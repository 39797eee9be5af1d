//! The trace's indexer. A request's events are durable before its answer with their
//! chain links and their search index (`store::audit_index`), all in one commit; this
//! thread indexes the events that were queued instead (`audit_unindexed`): those an
//! earlier version of the server left unindexed, which it wrote the index of later,
//! many at a time, and any the append cannot index.
//!
//! Read-your-writes (R-PAT-4, R-ACC-11): a request that may read the trace first
//! calls [`TraceIndexer::caught_up`], which returns once every event committed
//! before the call is searchable. Any instance's indexer indexes any instance's
//! events (PostgreSQL locks the queue rows it takes), so this holds across
//! instances. If indexing keeps failing, the trace's readers get 500s (the trace is
//! never shown incomplete) while the events stay durable in the queue.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use tokio::sync::oneshot;

use crate::error::ApiError;
use crate::store::audit as stored;
use crate::store::audit_index::EventIndex;
use crate::store::{Conn, Db, dialect};

/// The most events one indexing transaction indexes: bounds how long it holds
/// SQLite's writer (a few milliseconds; the trace's committer waits meanwhile).
const BATCH: i64 = 32;

/// The batch when the queue runs far behind (see [`FAR_BEHIND`]): a transaction
/// of 128 events costs less per event, so that indexing keeps up with a sustained
/// load (about 6,000 audited reads a second at 64 connections on a 2-core machine,
/// against 4,800 with batches of 32, whose queue grew by 1,500 events a second;
/// BENCHMARKS.md), at the price of a longer wait for the committer meanwhile.
const CATCH_UP_BATCH: i64 = 128;

/// How far behind (in store keys, which events share with other resources) the
/// queue must be for the indexer to take [`CATCH_UP_BATCH`]es.
const FAR_BEHIND: i64 = 1024;

/// How long the indexer sleeps when nobody waits for it.
const IDLE: Duration = Duration::from_millis(50);

/// Handle on the indexer thread.
#[derive(Clone)]
pub struct TraceIndexer {
    waiters: mpsc::Sender<oneshot::Sender<Result<(), ApiError>>>,
}

impl TraceIndexer {
    /// Starts the indexer thread; it stops when the last handle is dropped.
    pub fn start(db: Db) -> TraceIndexer {
        let (waiters, queue) = mpsc::channel();
        thread::Builder::new()
            .name("audit-index".into())
            .spawn(move || index_loop(&db, &queue))
            .expect("the trace indexer thread starts");
        TraceIndexer { waiters }
    }

    /// Returns once every event committed before this call is searchable.
    pub async fn caught_up(&self) -> Result<(), ApiError> {
        let (done, indexed) = oneshot::channel();
        self.waiters
            .send(done)
            .map_err(|_| ApiError::internal("the trace indexer has stopped"))?;
        indexed
            .await
            .map_err(|_| ApiError::internal("the trace indexer has stopped"))?
    }
}

fn index_loop(db: &Db, queue: &mpsc::Receiver<oneshot::Sender<Result<(), ApiError>>>) {
    let mut conn: Option<Conn> = None;
    loop {
        let mut waiting = Vec::new();
        match queue.recv_timeout(IDLE) {
            Ok(waiter) => waiting.push(waiter),
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => return,
        }
        // Everyone who asked before this pass starts is answered by it.
        waiting.extend(queue.try_iter());
        if conn.is_none() {
            conn = db.rebuildable_writes_connection().ok();
        }
        let result = match conn.as_mut() {
            // A panic fails this pass's waiters, not every later one's (this thread
            // would be gone): the events stay queued for the next pass.
            Some(open) => catch_unwind(AssertUnwindSafe(|| index_all(db, open).map(|_| ())))
                .unwrap_or_else(|_| Err(ApiError::internal("indexing the trace panicked"))),
            None => Err(ApiError::internal("database unavailable")),
        };
        if let Err(error) = &result {
            tracing::error!(%error, "the trace could not be indexed; it stays queued");
            // A fresh connection next time.
            conn = None;
        }
        for waiter in waiting {
            let _ = waiter.send(result.clone());
        }
    }
}

/// Indexes every event stored before the call, a batch per transaction, on the
/// indexer's own connection; returns how many. Events stored meanwhile wait for the
/// next pass, so that a steady stream of requests never keeps a reader waiting.
fn index_all(db: &Db, conn: &mut Conn) -> Result<usize, ApiError> {
    let Some(last) = stored::last_unindexed(conn)? else {
        return Ok(0);
    };
    let mut moved = 0;
    // Where the last batch ended; the first batch is a short one.
    let mut reached = last;
    loop {
        let size = if last - reached > FAR_BEHIND {
            CATCH_UP_BATCH
        } else {
            BATCH
        };
        let (batch, indexed_to) = index_batch(db, conn, last, size)?;
        reached = indexed_to;
        moved += batch;
        // A short batch may only mean that another instance's indexer took the
        // rows this one waited for: done once none up to `last` is left.
        if batch < size as usize
            && stored::first_unindexed(conn)?.is_none_or(|oldest| oldest > last)
        {
            return Ok(moved);
        }
        // The trace's committer, which answers wait on, takes SQLite's writer
        // between two batches (the lock does not queue its waiters in order).
        thread::sleep(Duration::from_micros(500));
    }
}

/// One batch of at most `size` of the oldest unindexed events up to `last`: how
/// many were read, and the key of the last. They are read, parsed and their entries
/// extracted before the write transaction, which only claims and writes: on SQLite
/// the trace's committer, which every answer waits on, waits for that transaction.
fn index_batch(db: &Db, conn: &mut Conn, last: i64, size: i64) -> Result<(usize, i64), ApiError> {
    let events = stored::unindexed_events(conn, last, size)?;
    let indexed: Vec<stored::IndexedEvent> = events
        .iter()
        .map(|event| (event.pk, EventIndex::of(&event.content)))
        .collect();
    if !indexed.is_empty() {
        db.write_on(conn, |conn| {
            dialect::write_transaction(conn, |conn| Ok(stored::index_events(conn, &indexed)?))
        })?;
    }
    Ok((events.len(), events.last().map_or(last, |event| event.pk)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::{Outcome, Record, Touched, Trace, persist, prepare};
    use crate::store::sql::Sql;

    /// A fresh SQLite store with `events` read events of `patient`'s space committed
    /// and queued, unindexed, as an earlier version of the server left the events it
    /// had not indexed yet (this one indexes them with their append).
    fn store_with_events(patient: &str, events: usize) -> (std::path::PathBuf, Db) {
        let (folder, db) = store_with_appended(patient, events);
        let mut conn = db.rebuildable_writes_connection().unwrap();
        for statement in crate::store::audit_index::UNINDEX_EVERY_EVENT {
            Sql::new(statement).execute(&mut conn).unwrap();
        }
        (folder, db)
    }

    /// A fresh SQLite store with `events` read events of `patient`'s space appended.
    fn store_with_appended(patient: &str, events: usize) -> (std::path::PathBuf, Db) {
        let folder = std::env::temp_dir().join(format!(
            "dmp-indexer-{}-{}",
            std::process::id(),
            uuid::Uuid::new_v4()
        ));
        let db = Db::open(folder.join("db.sqlite").to_str().unwrap()).unwrap();
        let records: Vec<_> = (0..events)
            .map(|n| {
                prepare(Record {
                    trace: Trace {
                        request_id: format!("burst-{n}"),
                        method: "GET".into(),
                        interaction: "read",
                        ..Trace::default()
                    },
                    outcome: Outcome::answered(200),
                    touched: Touched {
                        patients: [patient.to_owned()].into(),
                        ..Touched::default()
                    },
                })
            })
            .collect();
        db.write_blocking(|conn| {
            dialect::write_transaction(conn, |conn| {
                persist(conn, &records.iter().collect::<Vec<_>>())
            })
        })
        .unwrap();
        (folder, db)
    }

    /// How many events the index finds in `patient`'s trace.
    fn indexed_in_trace_of(conn: &mut Conn, patient: &str) -> i64 {
        #[derive(diesel::QueryableByName)]
        struct Count {
            #[diesel(sql_type = diesel::sql_types::BigInt)]
            n: i64,
        }
        let mut count = Sql::new("SELECT COUNT(*) AS n FROM audit_index WHERE space = ");
        count.text(patient);
        count.load::<Count>(conn).unwrap()[0].n
    }

    /// An event is indexed by its own append, in the trace's index: nothing is left
    /// for the indexer, and the space's search finds it at once (R-PAT-4).
    #[test]
    fn an_appended_event_is_searchable_without_the_indexer() {
        let (folder, db) = store_with_appended("patient-appended", 3);
        let mut conn = db.rebuildable_writes_connection().unwrap();
        assert_eq!(stored::first_unindexed(&mut conn).unwrap(), None);
        assert_eq!(indexed_in_trace_of(&mut conn, "patient-appended"), 3);
        drop(conn);
        drop(db);
        let _ = std::fs::remove_dir_all(folder);
    }

    /// A queue far behind (more than [`FAR_BEHIND`] keys) is indexed whole by one
    /// pass, through its catch-up batches: none left queued, each event's patient
    /// in the index (R-PAT-4's search finds it).
    #[test]
    fn a_queue_far_behind_is_indexed_whole_in_one_pass() {
        let events = 2 * FAR_BEHIND as usize;
        let (folder, db) = store_with_events("patient-far-behind", events);
        let mut conn = db.rebuildable_writes_connection().unwrap();
        assert_eq!(index_all(&db, &mut conn).unwrap(), events);
        assert_eq!(stored::first_unindexed(&mut conn).unwrap(), None);
        assert_eq!(
            indexed_in_trace_of(&mut conn, "patient-far-behind"),
            events as i64
        );
        drop(conn);
        drop(db);
        let _ = std::fs::remove_dir_all(folder);
    }

    /// Two indexers (two instances on one store) read the same events before either
    /// writes, as they read outside their write transactions: the second to write
    /// claims none of them and writes no index row, so each event is found once.
    #[test]
    fn events_another_indexer_took_are_not_indexed_twice() {
        let (folder, db) = store_with_events("patient-two-indexers", 10);
        let mut late = db.rebuildable_writes_connection().unwrap();
        let read_early: Vec<stored::IndexedEvent> =
            stored::unindexed_events(&mut late, i64::MAX, 64)
                .unwrap()
                .iter()
                .map(|event| (event.pk, EventIndex::of(&event.content)))
                .collect();
        assert_eq!(read_early.len(), 10);
        let mut first = db.rebuildable_writes_connection().unwrap();
        assert_eq!(index_all(&db, &mut first).unwrap(), 10);
        let written_late = dialect::write_transaction(&mut late, |conn| {
            Ok(stored::index_events(conn, &read_early)?)
        })
        .unwrap();
        assert_eq!(written_late, 0);
        assert_eq!(indexed_in_trace_of(&mut late, "patient-two-indexers"), 10);
        drop((first, late));
        drop(db);
        let _ = std::fs::remove_dir_all(folder);
    }
}
