//! Storage on diesel: connection pool, migrations, resource versions, the search
//! index and search SQL. The store never sees a token: it gets a narrowed query.

pub mod access;
pub mod accounts;
pub mod audit;
pub mod audit_index;
pub mod audit_log;
pub mod dialect;
pub(crate) mod group_commit;
pub use group_commit::GroupEnd;
pub mod lifecycle;
pub mod resources;
pub mod search;
pub mod sql;
pub mod wal_sync;

use std::ops::{Deref, DerefMut};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use diesel::Connection as _;
use diesel::connection::InstrumentationEvent;

use diesel::r2d2::{CustomizeConnection, Pool};
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};

use crate::error::ApiError;

pub use dialect::Conn;
pub use resources::{Author, ResourceRow, VersionRow};
pub use search::{Narrowing, TypeFilter};

const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/sqlite");
const POSTGRES_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/postgres");

impl From<diesel::result::Error> for ApiError {
    fn from(error: diesel::result::Error) -> Self {
        tracing::error!(%error, "database error");
        ApiError::internal("database error")
    }
}

/// The database: a pool of connections, used from a blocking thread pool.
#[derive(Clone)]
pub struct Db {
    pool: Pool<Manager>,
    /// What the pool connects to, for connections of their own.
    target: dialect::Target,
    /// SQLite's writers queue here rather than in its busy handler, which sleeps and
    /// retries: a FIFO hand-over keeps the tail latency of writes low. PostgreSQL's
    /// writers run side by side, settled by row and advisory locks as between
    /// instances.
    writer: Option<Arc<Mutex<()>>>,
    /// SQLite's write group commit, when started ([`Db::start_group_commit`]).
    group: Option<group_commit::GroupCommitter>,
    /// SQLite's log syncer, for the committers' connections (see [`Db::commit_on`]).
    syncer: Option<wal_sync::WalSyncer>,
    /// SQLite in a file: the folder of the trace's logs beside it (`audit::log`).
    trace_logs: Option<std::path::PathBuf>,
}

/// How long a PostgreSQL connection whose last work ran no failed statement is
/// trusted without a check at its next checkout (HikariCP's "alive bypass window",
/// same length): a check is a round trip, a third of an audited read's.
const TRUSTED_AFTER_USE: Duration = Duration::from_millis(500);

/// A pooled connection, with when its last work ended without a failed statement.
pub struct Pooled {
    conn: Conn,
    /// SQLite in a file: held shared while the connection works
    /// ([`wal_sync::ReadPause`]).
    pause: Option<Arc<wal_sync::ReadPause>>,
    worked_at: Option<Instant>,
    /// Set by the connection's instrumentation when a statement fails, whatever
    /// the work then makes of the error (a write answers its failure as `Ok`).
    statement_failed: Arc<AtomicBool>,
}

impl Deref for Pooled {
    type Target = Conn;
    fn deref(&self) -> &Conn {
        &self.conn
    }
}

impl DerefMut for Pooled {
    fn deref_mut(&mut self) -> &mut Conn {
        &mut self.conn
    }
}

impl Pooled {
    fn new(mut conn: Conn, pause: Option<Arc<wal_sync::ReadPause>>) -> Pooled {
        let statement_failed = Arc::new(AtomicBool::new(false));
        let failed = Arc::clone(&statement_failed);
        conn.set_instrumentation(move |event: InstrumentationEvent<'_>| {
            if let InstrumentationEvent::FinishQuery { error: Some(_), .. } = event {
                failed.store(true, Ordering::Relaxed);
            }
        });
        Pooled {
            conn,
            pause,
            worked_at: None,
            statement_failed,
        }
    }

    /// Runs `work`. The connection is trusted for its next checkout only if no
    /// statement failed meanwhile (a closed connection among the causes) and the
    /// work returned: after a panic it is checked, or dropped (`has_broken`).
    fn work<T>(
        &mut self,
        work: impl FnOnce(&mut Conn) -> Result<T, ApiError>,
    ) -> Result<T, ApiError> {
        let pause = self.pause.clone();
        let _reading = pause.as_deref().map(wal_sync::ReadPause::reading);
        self.work_reading(work)
    }

    /// [`Pooled::work`] if it can start at once, without waiting for the
    /// checkpointer (see [`wal_sync::ReadPause`]); else `work` back.
    fn work_now<T, F>(&mut self, work: F) -> Result<Result<T, ApiError>, F>
    where
        F: FnOnce(&mut Conn) -> Result<T, ApiError>,
    {
        let pause = self.pause.clone();
        let reading = match pause.as_deref() {
            Some(pause) => match pause.reading_now() {
                Some(reading) => Some(reading),
                None => return Err(work),
            },
            None => None,
        };
        let result = self.work_reading(work);
        drop(reading);
        Ok(result)
    }

    /// The body of [`Pooled::work`], its read of the pause taken.
    fn work_reading<T>(
        &mut self,
        work: impl FnOnce(&mut Conn) -> Result<T, ApiError>,
    ) -> Result<T, ApiError> {
        self.worked_at = None;
        self.statement_failed.store(false, Ordering::Relaxed);
        let result = work(&mut self.conn);
        if !self.statement_failed.load(Ordering::Relaxed) {
            self.worked_at = Some(Instant::now());
        }
        result
    }
}

/// Where a committer thread (the trace's, the requests' writes') commits: on SQLite
/// a connection of its own, outside the pool, whose commits do not wait for the
/// disk; on PostgreSQL a connection of its own too, checked before each use as a
/// pooled one is (see [`Db::commit_on_postgres`]).
pub struct CommitterConnection {
    own: Option<Conn>,
    /// PostgreSQL: the committer's own connection.
    own_postgres: Option<Pooled>,
    /// See [`dialect::temporaries_in_memory`]: for committers that run fixed
    /// statements only.
    temporaries_in_memory: bool,
    /// Requests may read its commits before they are durable: they are counted
    /// (see [`Db::commit_ticket`]).
    read_before_durable: bool,
    /// See [`dialect::leave_checkpoints_to_checkpointer`].
    leaves_checkpoints: bool,
}

impl Default for CommitterConnection {
    fn default() -> CommitterConnection {
        CommitterConnection {
            own: None,
            own_postgres: None,
            temporaries_in_memory: false,
            read_before_durable: true,
            leaves_checkpoints: false,
        }
    }
}

impl CommitterConnection {
    /// For a committer whose temporary structures are bounded (the trace's fixed
    /// statements, the requests' writes: see `group_commit`).
    pub fn with_temporaries_in_memory() -> CommitterConnection {
        CommitterConnection {
            temporaries_in_memory: true,
            ..CommitterConnection::default()
        }
    }

    /// For the requests' writes (`group_commit`): its temporaries in memory, the
    /// log's copies left to the checkpointer.
    pub fn for_writes() -> CommitterConnection {
        CommitterConnection {
            leaves_checkpoints: true,
            ..CommitterConnection::with_temporaries_in_memory()
        }
    }

    /// For the trace log's applier: its commits are read only once durable (the
    /// trace's readers wait for the applier's durable position,
    /// `audit::applier`), so they need not be counted.
    pub fn for_trace_log() -> CommitterConnection {
        CommitterConnection {
            read_before_durable: false,
            ..CommitterConnection::with_temporaries_in_memory()
        }
    }
}

/// Opens connections of the backend the URL names, with the driver's own errors.
#[derive(Debug)]
struct Manager(dialect::Target, Option<Arc<wal_sync::ReadPause>>);

impl diesel::r2d2::ManageConnection for Manager {
    type Connection = Pooled;
    type Error = diesel::r2d2::Error;

    fn connect(&self) -> Result<Pooled, Self::Error> {
        let conn = dialect::connect(&self.0).map_err(|message| {
            diesel::r2d2::Error::ConnectionError(diesel::ConnectionError::BadConnection(message))
        })?;
        Ok(Pooled::new(conn, self.1.clone()))
    }

    /// Checks a connection at checkout, unless it served work without error a
    /// moment ago: the server may have closed it since, but under load every
    /// connection is that recent, and a failure then has it checked next time.
    fn is_valid(&self, pooled: &mut Pooled) -> Result<(), Self::Error> {
        use diesel::connection::SimpleConnection;
        if pooled
            .worked_at
            .is_some_and(|at| at.elapsed() < TRUSTED_AFTER_USE)
        {
            return Ok(());
        }
        pooled
            .conn
            .batch_execute("SELECT 1")
            .map_err(diesel::r2d2::Error::QueryError)?;
        pooled.worked_at = Some(Instant::now());
        Ok(())
    }

    /// A connection whose work panicked, or that comes back inside a transaction
    /// (or with its transaction state broken), is not reused.
    fn has_broken(&self, pooled: &mut Pooled) -> bool {
        use diesel::connection::{Connection, TransactionManager};
        std::thread::panicking()
            || !matches!(
                <Conn as Connection>::TransactionManager::transaction_manager_status_mut(
                    &mut pooled.conn
                )
                .transaction_depth(),
                Ok(None)
            )
    }
}

#[derive(Debug)]
struct ConnectionSetup;

impl CustomizeConnection<Pooled, diesel::r2d2::Error> for ConnectionSetup {
    fn on_acquire(&self, pooled: &mut Pooled) -> Result<(), diesel::r2d2::Error> {
        dialect::prepare_connection(&mut pooled.conn).map_err(diesel::r2d2::Error::QueryError)
    }
}

impl Db {
    /// Opens (creating a SQLite file and its folder if needed) and migrates the
    /// database. A PostgreSQL URL that does not connect fails with libpq's error.
    pub fn open(database_url: &str) -> Result<Db, String> {
        let target = dialect::target(database_url)?;
        match target.kind {
            dialect::Kind::Sqlite => {
                let path = &target.location;
                if path != ":memory:"
                    && let Some(folder) = Path::new(path).parent()
                    && !folder.as_os_str().is_empty()
                {
                    std::fs::create_dir_all(folder)
                        .map_err(|error| format!("cannot create {}: {error}", folder.display()))?;
                }
            }
            // Fail with the driver's message, before the pool retries in silence.
            dialect::Kind::Postgres => drop(dialect::connect(&target)?),
        }
        let pause = Arc::new(wal_sync::ReadPause::default());
        let pool = Pool::builder()
            .max_size(8)
            // Connections open as load needs them (PostgreSQL counts them).
            .min_idle(Some(1))
            // A SQLite connection is a file handle in this process: nothing can
            // break it between two uses, and checking it (a statement parsed and
            // run) cost a tenth of a read. A PostgreSQL connection may have been
            // closed by the server meanwhile: it is checked before use, unless it
            // has just served (see `Manager::is_valid`).
            .test_on_check_out(target.kind == dialect::Kind::Postgres)
            .connection_customizer(Box::new(ConnectionSetup))
            .build(Manager(
                target.clone(),
                (target.kind == dialect::Kind::Sqlite).then(|| Arc::clone(&pause)),
            ))
            .map_err(|error| format!("cannot open database {}: {error}", redacted(database_url)))?;
        let db = Db {
            pool,
            target: target.clone(),
            writer: match target.kind {
                dialect::Kind::Sqlite => Some(Arc::new(Mutex::new(()))),
                dialect::Kind::Postgres => None,
            },
            group: None,
            syncer: None,
            trace_logs: None,
        };
        db.migrate()?;
        let log = db
            .read_blocking(|conn| Ok(dialect::write_ahead_log(conn)?))
            .map_err(|error| format!("cannot read the database's journal mode: {error}"))?;
        // The file as SQLite opened it (a `file:` URI, a symbolic link resolved).
        if let Some(database) = log
            .as_deref()
            .and_then(|log| log.to_str()?.strip_suffix("-wal"))
        {
            refuse_several_names(Path::new(database))?;
            keep_to_owner(Path::new(database));
        }
        let db = Db {
            trace_logs: log.as_deref().and_then(|log| {
                let database = log.to_str()?.strip_suffix("-wal")?;
                Some(crate::audit::log::logs_folder(Path::new(database)))
            }),
            syncer: log.and_then(|log| {
                let writer = Arc::clone(db.writer.as_ref()?);
                Some(wal_sync::WalSyncer::start(&target, log, pause, writer))
            }),
            ..db
        };
        db.refresh_statistics(false)
            .map_err(|error| format!("cannot analyse the database: {error}"))?;
        Ok(db)
    }

    /// SQLite in a file (in WAL mode): the folder of the trace's logs beside it.
    pub fn trace_logs_folder(&self) -> Option<&Path> {
        self.trace_logs.as_deref()
    }

    /// A ticket for every commit through [`Db::commit_on`] that a request could
    /// have read by now (see [`Db::is_durable`]); 0 where commits are durable as
    /// they return.
    pub fn commit_ticket(&self) -> u64 {
        self.syncer.as_ref().map_or(0, wal_sync::WalSyncer::ticket)
    }

    /// Whether every commit of `ticket` is durable.
    pub fn is_durable(&self, ticket: u64) -> bool {
        self.syncer
            .as_ref()
            .is_none_or(|syncer| syncer.is_durable(ticket))
    }

    /// Whether this is a PostgreSQL database (where each statement is a round trip).
    pub fn is_postgres(&self) -> bool {
        self.target.kind == dialect::Kind::Postgres
    }

    /// Applies pending migrations.
    pub fn migrate(&self) -> Result<(), String> {
        let mut conn = self
            .pool
            .get()
            .map_err(|error| format!("cannot connect to the database: {error}"))?;
        let migrations = match dialect::kind(&conn) {
            dialect::Kind::Sqlite => SQLITE_MIGRATIONS,
            dialect::Kind::Postgres => POSTGRES_MIGRATIONS,
        };
        conn.run_pending_migrations(migrations)
            .map(|_| ())
            .map_err(|error| format!("migration failed: {error}"))
    }

    /// Refreshes the planner's statistics (see [`dialect::refresh_statistics`]).
    pub fn refresh_statistics(&self, thorough: bool) -> Result<(), ApiError> {
        self.write_blocking(|conn| Ok(dialect::refresh_statistics(conn, thorough)?))
    }

    /// Runs `work` with a connection on the blocking pool.
    pub async fn run<T, F>(&self, work: F) -> Result<T, ApiError>
    where
        F: FnOnce(&mut Conn) -> Result<T, ApiError> + Send + 'static,
        T: Send + 'static,
    {
        let pool = self.pool.clone();
        actix_web::rt::task::spawn_blocking(move || {
            let mut conn = pool.get().map_err(|error| {
                tracing::error!(%error, "no database connection");
                ApiError::internal("database unavailable")
            })?;
            let result = conn.work(work);
            drop(conn);
            // Large bodies loaded or answered here: given back now, the
            // connection already returned (crate::memory).
            crate::memory::settle();
            result
        })
        .await
        .map_err(|_| ApiError::internal("database task failed"))?
    }

    /// Runs a short read (one resource by id) on the calling thread when the
    /// database answers from this host (SQLite, or PostgreSQL on a loopback address
    /// or a Unix socket) and has a connection free at once: a point read then costs
    /// less than handing it to the blocking pool and back (on PostgreSQL here,
    /// the server's CPU per audited GET 163 → 114 µs, BENCHMARKS.md). Otherwise,
    /// and for a PostgreSQL of another host (whose round trip would hold the
    /// calling thread's other connections), as [`Db::run`]: the calling thread
    /// never waits for a connection.
    pub async fn run_point_read<T, F>(&self, work: F) -> Result<T, ApiError>
    where
        F: FnOnce(&mut Conn) -> Result<T, ApiError> + Send + 'static,
        T: Send + 'static,
    {
        if self.target.on_this_host
            && let Some(mut conn) = self.pool.try_get()
        {
            // Never parked on this thread by the checkpointer's pause: the
            // blocking pool waits for it instead.
            match conn.work_now(work) {
                Ok(result) => return result,
                Err(work) => {
                    drop(conn);
                    return self.run(work).await;
                }
            }
        }
        self.run(work).await
    }

    /// Runs `work` in one write transaction: all of it is stored, or nothing.
    pub async fn transaction<T, F>(&self, work: F) -> Result<T, ApiError>
    where
        F: FnOnce(&mut Conn) -> Result<T, ApiError> + Send + 'static,
        T: Send + 'static,
    {
        self.write(move |conn| dialect::write_transaction(conn, work))
            .await
    }

    /// Commits concurrent writes together on SQLite (one fsync for a group; see
    /// `group_commit`). PostgreSQL's writers already run side by side.
    pub fn start_group_commit(&mut self) {
        if self.writer.is_some() && self.group.is_none() {
            self.group = Some(group_commit::GroupCommitter::start(self.clone()));
        }
    }

    /// Runs `work`, which opens its own write transactions (a batch opens one per
    /// entry), as the only writer of this process on SQLite; with group commit, in a
    /// savepoint of a transaction shared with the writes that came at the same time.
    pub async fn write<T, F>(&self, work: F) -> Result<T, ApiError>
    where
        F: FnOnce(&mut Conn) -> Result<T, ApiError> + Send + 'static,
        T: Send + 'static,
    {
        self.write_deferring(move |conn, _| work(conn)).await
    }

    /// [`Db::write`] for a write that leaves work for its group's end
    /// ([`GroupEnd`]: its trace); without group commit, that work is done where the
    /// write defers it.
    pub async fn write_deferring<T, F>(&self, work: F) -> Result<T, ApiError>
    where
        F: FnOnce(&mut Conn, &mut GroupEnd) -> Result<T, ApiError> + Send + 'static,
        T: Send + 'static,
    {
        if let Some(group) = &self.group {
            return group.write(work).await;
        }
        let db = self.clone();
        actix_web::rt::task::spawn_blocking(move || {
            db.write_blocking(|conn| work(conn, &mut GroupEnd::at_once()))
        })
        .await
        .map_err(|_| ApiError::internal("database task failed"))?
    }

    /// [`Db::write`] on the calling thread (background workers).
    pub fn write_blocking<T, F>(&self, work: F) -> Result<T, ApiError>
    where
        F: FnOnce(&mut Conn) -> Result<T, ApiError>,
    {
        let mut conn = self.connection()?;
        let result = conn.work(|conn| self.write_on(conn, work));
        drop(conn);
        crate::memory::settle();
        result
    }

    /// A connection of its own, outside the pool, for a background worker whose
    /// writes can be made again from what is durable (the trace's search index,
    /// rebuilt from its queue): on SQLite its commits do not wait for an fsync
    /// (`synchronous = NORMAL`); they reach the disk with the next durable commit
    /// (the write-ahead log is written in order) or a checkpoint, and a crash before
    /// loses them, never the queue they came from.
    pub fn rebuildable_writes_connection(&self) -> Result<Conn, ApiError> {
        // Its one user, the trace's indexer, runs fixed statements only.
        self.connection_without_fsync_per_commit(true)
    }

    /// A connection of its own whose commits write the log without waiting for the
    /// disk (see [`dialect::without_fsync_per_commit`]), with its temporaries in
    /// memory or not (see [`dialect::temporaries_in_memory`]).
    fn connection_without_fsync_per_commit(
        &self,
        temporaries_in_memory: bool,
    ) -> Result<Conn, ApiError> {
        let mut conn = dialect::connect(&self.target).map_err(|message| {
            tracing::error!(%message, "no database connection");
            ApiError::internal("database unavailable")
        })?;
        dialect::prepare_connection(&mut conn)?;
        dialect::without_fsync_per_commit(&mut conn)?;
        if temporaries_in_memory {
            dialect::temporaries_in_memory(&mut conn)?;
        }
        Ok(conn)
    }

    /// Runs `work` for a committer thread (see [`CommitterConnection`]) as the only
    /// writer of this process on SQLite; its answers wait for [`Db::when_durable`].
    /// On PostgreSQL, on the committer's own connection (see
    /// [`Db::commit_on_postgres`]).
    pub fn commit_on<T, F>(
        &self,
        committer: &mut CommitterConnection,
        work: F,
    ) -> Result<T, ApiError>
    where
        F: FnOnce(&mut Conn) -> Result<T, ApiError>,
    {
        if self.syncer.is_none() {
            if !self.is_postgres() {
                return self.write_blocking(work);
            }
            return self.commit_on_postgres(committer, work);
        }
        let conn = match &mut committer.own {
            Some(conn) => conn,
            // The writer's lock is then not held during the fsync (see [`wal_sync`]).
            own => {
                let mut conn =
                    self.connection_without_fsync_per_commit(committer.temporaries_in_memory)?;
                if committer.leaves_checkpoints {
                    dialect::leave_checkpoints_to_checkpointer(&mut conn)?;
                }
                own.insert(conn)
            }
        };
        let syncer = self.syncer.as_ref().expect("checked above");
        let result = if committer.read_before_durable {
            self.write_on(conn, |conn| syncer.counted(|| work(conn)))
        } else {
            self.write_on(conn, work)
        };
        if result.is_err() {
            // Made again for the next commit, whatever broke.
            committer.own = None;
        }
        result
    }

    /// PostgreSQL: `work` on the committer's own connection, one server process
    /// kept warm for its statements rather than a pooled one the requests' reads
    /// share (BENCHMARKS.md, tenth section). It is made, set up, checked before
    /// use and dropped when broken by the pool's own [`Manager`] (after a failed
    /// statement or a pause, a closed connection is found and replaced before the
    /// work). If no new connection can be made, the work goes to a pooled one.
    fn commit_on_postgres<T, F>(
        &self,
        committer: &mut CommitterConnection,
        work: F,
    ) -> Result<T, ApiError>
    where
        F: FnOnce(&mut Conn) -> Result<T, ApiError>,
    {
        use diesel::r2d2::ManageConnection;
        let manager = Manager(self.target.clone(), None);
        if let Some(own) = &mut committer.own_postgres
            && (manager.has_broken(own) || manager.is_valid(own).is_err())
        {
            committer.own_postgres = None;
        }
        let own = match &mut committer.own_postgres {
            Some(own) => own,
            slot => {
                let made = manager
                    .connect()
                    .and_then(|mut own| ConnectionSetup.on_acquire(&mut own).map(|()| own));
                match made {
                    Ok(own) => slot.insert(own),
                    Err(error) => {
                        tracing::warn!(%error, "the committer's own connection could not be made; a pooled one is used");
                        return self.write_blocking(work);
                    }
                }
            }
        };
        own.work_reading(work)
    }

    /// Calls `answer` once every commit made through [`Db::commit_on`] before this
    /// call is durable: after the next fsync of SQLite's log, at once on PostgreSQL
    /// (whose commits are durable as they return).
    pub fn when_durable(&self, answer: wal_sync::Answer) {
        match &self.syncer {
            Some(syncer) => syncer.after_sync(answer),
            None => answer(Ok(())),
        }
    }

    /// Runs `work` on `conn` (a pooled one, or see
    /// [`Db::rebuildable_writes_connection`]) as the only writer of this process on
    /// SQLite.
    pub fn write_on<T, F>(&self, conn: &mut Conn, work: F) -> Result<T, ApiError>
    where
        F: FnOnce(&mut Conn) -> Result<T, ApiError>,
    {
        // A poisoned lock only means another writer panicked; the database itself
        // rolled that transaction back.
        let _turn = self.writer.as_ref().map(|writer| {
            writer
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
        });
        work(conn)
    }

    /// A read on the calling thread (background workers, commands).
    pub fn read_blocking<T, F>(&self, work: F) -> Result<T, ApiError>
    where
        F: FnOnce(&mut Conn) -> Result<T, ApiError>,
    {
        let mut conn = self.connection()?;
        conn.work(work)
    }

    fn connection(&self) -> Result<diesel::r2d2::PooledConnection<Manager>, ApiError> {
        self.pool.get().map_err(|error| {
            tracing::error!(%error, "no database connection");
            ApiError::internal("database unavailable")
        })
    }
}

/// A SQLite database file with several names (hard links) is refused: SQLite
/// keeps its write-ahead log and lock files beside the name it opened, so two
/// names are two logs over one file (corruption), and the trace's one-server lock
/// (`audit::log::serving_lock`) beside each name would not meet.
fn refuse_several_names(path: &Path) -> Result<(), String> {
    use std::os::unix::fs::MetadataExt;
    match std::fs::metadata(path) {
        Ok(metadata) if metadata.nlink() > 1 => Err(format!(
            "{} has {} names (hard links): SQLite cannot lock one file under several names; \
             open it by one name (a symbolic link is fine)",
            path.display(),
            metadata.nlink()
        )),
        _ => Ok(()),
    }
}

/// The SQLite file and its journal readable by their owner only (0600): they hold
/// every space, the trace, and the server's signing keys and pepper (SPEC §11).
/// SQLite makes a later `-wal` / `-shm` with the database file's permissions.
fn keep_to_owner(database: &Path) {
    use std::os::unix::fs::PermissionsExt;
    for suffix in ["", "-wal", "-shm"] {
        let mut name = database.as_os_str().to_owned();
        name.push(suffix);
        let path = std::path::PathBuf::from(name);
        let Ok(metadata) = std::fs::metadata(&path) else {
            continue;
        };
        if metadata.permissions().mode() & 0o077 != 0
            && let Err(error) =
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
        {
            tracing::warn!(path = %path.display(), %error, "cannot make the database file readable by its owner only");
        }
    }
}

/// A database URL without its password, for messages and logs.
pub fn redacted(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let credentials = &url[scheme + 3..at];
            match credentials.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}
