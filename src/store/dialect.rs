//! The only place that knows which SQL backend is in use: SQLite (the embedded
//! default) or PostgreSQL (production), chosen from the database URL's scheme.

use diesel::Connection;
use diesel::connection::SimpleConnection;
use diesel::pg::PgConnection;
use diesel::sqlite::SqliteConnection;

use crate::error::ApiError;

/// A connection to the backend the database URL names.
#[derive(diesel::MultiConnection)]
pub enum Conn {
    Postgresql(PgConnection),
    Sqlite(SqliteConnection),
}

/// The backend type.
pub type Backend = <Conn as diesel::Connection>::Backend;

/// The backend a database URL names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Postgres,
    Sqlite,
}

/// A parsed database URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub kind: Kind,
    /// What the backend's driver is given: the PostgreSQL URL, or the SQLite path.
    pub location: String,
    /// Whether the database answers from this host: SQLite, or a PostgreSQL URL
    /// naming a loopback address or a Unix socket (see [`on_this_host`]).
    pub on_this_host: bool,
}

/// Whether a PostgreSQL URL names a server on this host: no host (libpq's Unix
/// socket), a socket folder (a host, or a `host=` parameter, starting with `/`),
/// `localhost`, or a loopback address. Anything else, or a URL this cannot read,
/// is taken as another host.
pub fn on_this_host(url: &str) -> bool {
    let Some((_, rest)) = url.split_once("://") else {
        return false;
    };
    let (authority, query) = match rest.split_once('?') {
        Some((before, query)) => (before.split('/').next().unwrap_or(""), Some(query)),
        None => (rest.split('/').next().unwrap_or(""), None),
    };
    // A `host=` parameter overrides the URL's hosts.
    let hosts = match query
        .and_then(|query| query.split('&').find_map(|pair| pair.strip_prefix("host=")))
    {
        Some(hosts) => hosts,
        None => authority
            .rsplit_once('@')
            .map_or(authority, |(_, hosts)| hosts),
    };
    // Several hosts (a failover list): each must be on this host.
    hosts.split(',').all(|host| {
        let name = match host.strip_prefix('[') {
            Some(bracketed) => bracketed.split(']').next().unwrap_or(""),
            None if host.starts_with('/') => host,
            None => host.split(':').next().unwrap_or(""),
        };
        let name = name.to_ascii_lowercase();
        name.is_empty()
            || name.starts_with('/')
            || name.starts_with("%2f")
            || name == "localhost"
            || name == "::1"
            || name
                .parse::<std::net::Ipv4Addr>()
                .is_ok_and(|address| address.is_loopback())
    })
}

/// `postgres://…` / `postgresql://…`, or `sqlite://PATH`, `sqlite:PATH` or a plain
/// path.
pub fn target(url: &str) -> Result<Target, String> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return Ok(Target {
            kind: Kind::Postgres,
            location: url.to_owned(),
            on_this_host: on_this_host(url),
        });
    }
    let path = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .unwrap_or(url);
    if path.is_empty() {
        return Err(format!("no database path in {url:?}"));
    }
    Ok(Target {
        kind: Kind::Sqlite,
        location: path.to_owned(),
        on_this_host: true,
    })
}

/// Opens one connection of the target's backend, with the driver's own error.
pub fn connect(target: &Target) -> Result<Conn, String> {
    match target.kind {
        Kind::Postgres => PgConnection::establish(&target.location)
            .map(Conn::Postgresql)
            .map_err(|error| format!("cannot connect to PostgreSQL: {error}")),
        Kind::Sqlite => SqliteConnection::establish(&target.location)
            .map(Conn::Sqlite)
            .map_err(|error| format!("cannot open SQLite database {}: {error}", target.location)),
    }
}

/// The backend of a connection.
pub fn kind(conn: &Conn) -> Kind {
    match conn {
        Conn::Postgresql(_) => Kind::Postgres,
        Conn::Sqlite(_) => Kind::Sqlite,
    }
}

/// SQL as this module's callers write it (`?` placeholders), for the connection's
/// backend: PostgreSQL numbers its placeholders (`$1`, `$2`…). The callers never put
/// a `?` anywhere else: every value is bound.
pub fn placeholders(conn: &Conn, text: &str) -> String {
    match kind(conn) {
        Kind::Sqlite => text.to_owned(),
        Kind::Postgres => {
            let mut out = String::with_capacity(text.len() + 16);
            let mut n = 0;
            for c in text.chars() {
                if c == '?' {
                    n += 1;
                    out.push('$');
                    out.push_str(&n.to_string());
                } else {
                    out.push(c);
                }
            }
            out
        }
    }
}

/// The placeholder of a bind parameter, as callers write it.
pub fn placeholder(_n: usize) -> &'static str {
    "?"
}

/// The SQL literal for a boolean (both backends read `TRUE` and `FALSE`).
pub fn bool_literal(value: bool) -> &'static str {
    if value { "TRUE" } else { "FALSE" }
}

/// The SQL for the length in bytes of the text column `column`. `LENGTH` counts
/// characters, reading all of a text to do so: on PostgreSQL a search's page spent
/// 4 % of its database's CPU there. PostgreSQL's `OCTET_LENGTH` reads the length
/// its value carries, without the text. SQLite's `LENGTH` of a text cast to a BLOB
/// gives its bytes without counting characters, but still loads the text (as
/// `LENGTH` of the text did): its `octet_length`, which does not, needs SQLite 3.43,
/// and the system's may be older.
pub fn byte_length(conn: &Conn, column: &str) -> String {
    match kind(conn) {
        Kind::Postgres => format!("OCTET_LENGTH({column})"),
        Kind::Sqlite => format!("LENGTH(CAST({column} AS BLOB))"),
    }
}

/// Row lock for a read that a write in the same transaction depends on. SQLite's
/// writers are serialised already.
pub fn for_update(conn: &Conn) -> &'static str {
    match kind(conn) {
        Kind::Postgres => " FOR UPDATE",
        Kind::Sqlite => "",
    }
}

/// Serialises, until the end of the transaction, the writers that name the same
/// `key` across every server instance: PostgreSQL takes a transaction-scoped
/// advisory lock; SQLite's writers are serialised already (one writer lock per
/// process, one writer per database file).
pub fn lock(conn: &mut Conn, key: &str) -> diesel::QueryResult<()> {
    advisory(conn, "COUNT(pg_advisory_xact_lock(hashtext($1))) >= 0", key).map(|_| ())
}

/// Takes `key`'s transaction-scoped advisory lock on PostgreSQL, `taken` being the
/// SQL that takes it (on `hashtext($1)`) and tells whether it was taken (always, but
/// for a `try`); nothing on SQLite, whose writers are serialised already.
fn advisory(conn: &mut Conn, taken: &str, key: &str) -> diesel::QueryResult<bool> {
    use diesel::RunQueryDsl;
    use diesel::sql_types::{Bool, Text};
    #[derive(diesel::QueryableByName)]
    struct Taken {
        #[diesel(sql_type = Bool)]
        taken: bool,
    }
    match conn {
        Conn::Postgresql(pg) => Ok(diesel::sql_query(format!("SELECT {taken} AS taken"))
            .bind::<Text, _>(key)
            .load::<Taken>(pg)?
            .pop()
            .is_some_and(|row| row.taken)),
        Conn::Sqlite(_) => Ok(true),
    }
}

/// [`lock`] if no other transaction holds it, without waiting: whether it was taken.
/// SQLite's writers are serialised already (always taken).
pub fn try_lock(conn: &mut Conn, key: &str) -> diesel::QueryResult<bool> {
    advisory(conn, "pg_try_advisory_xact_lock(hashtext($1))", key)
}

/// [`lock`] shared with the other writers that take it shared, and kept from the one
/// that takes it alone ([`lock`]) until the transaction ends. SQLite's writers are
/// serialised already.
pub fn lock_shared(conn: &mut Conn, key: &str) -> diesel::QueryResult<()> {
    advisory(
        conn,
        "COUNT(pg_advisory_xact_lock_shared(hashtext($1))) >= 0",
        key,
    )
    .map(|_| ())
}

/// [`lock`] for every key, by level, then in the order of the locks' own keys
/// (`hashtext`, which two names may share), in one round trip: two writers taking
/// the same locks this way never each hold one the other waits for, and a lock a
/// writer takes later, as it runs, is of a level after those it holds.
pub fn lock_all(conn: &mut Conn, keys: &[(u8, String)]) -> diesel::QueryResult<()> {
    if keys.is_empty() || matches!(conn, Conn::Sqlite(_)) {
        return Ok(());
    }
    let names = serde_json::to_string(keys)
        .map_err(|error| diesel::result::Error::SerializationError(Box::new(error)))?;
    let mut sql = super::sql::Sql::prepared(
        "SELECT COUNT(pg_advisory_xact_lock(lock_key)) AS taken FROM (\
         SELECT DISTINCT CAST(value->>0 AS integer) AS level, hashtext(value->>1) AS lock_key \
         FROM json_array_elements(CAST(",
    );
    sql.text(&names)
        .push(" AS json)) ORDER BY level, lock_key) wanted");
    sql.execute(conn)?;
    Ok(())
}

/// Whether the connection is PostgreSQL's (writers side by side) rather than
/// SQLite's (one writer at a time).
pub fn is_postgres(conn: &Conn) -> bool {
    matches!(kind(conn), Kind::Postgres)
}

/// `FOR UPDATE SKIP LOCKED` where the backend has it: instances share out rows
/// (outbox deliveries, due lifecycle changes) instead of doing them twice.
pub fn skip_locked(conn: &Conn) -> &'static str {
    match kind(conn) {
        Kind::Postgres => " FOR UPDATE SKIP LOCKED",
        Kind::Sqlite => "",
    }
}

/// Keeps the planner's statistics current. Without them SQLite walks every row of a
/// type (its `res_type` index looks selective) instead of starting from a space's
/// compartment: 40 ms instead of 0.3 ms for a patient's page at 100,000 documents.
/// `thorough` (after a bulk load) analyses every table; otherwise SQLite analyses
/// the tables whose size has changed much. PostgreSQL's autovacuum analyses by
/// itself; a bulk load asks for it at once.
pub fn refresh_statistics(conn: &mut Conn, thorough: bool) -> diesel::QueryResult<()> {
    match (conn, thorough) {
        (Conn::Sqlite(sqlite), false) => sqlite.batch_execute("PRAGMA optimize=0x10002;"),
        (conn, true) => conn.batch_execute("ANALYZE;"),
        (Conn::Postgresql(_), false) => Ok(()),
    }
}

/// SQLite's process-wide settings, before the process opens its first connection:
/// connections without their own mutex (a pooled connection is used by one thread
/// at a time), and no global count of the library's allocations (a mutex every
/// allocation takes, in every thread that uses SQLite). Returns false when SQLite
/// was already in use (the settings then stay as they were, which is only slower).
pub fn configure_sqlite_process() -> bool {
    // SAFETY: sqlite3_config is called before sqlite3_initialize (no connection is
    // open yet) with options that take no argument or an int, as its contract asks;
    // once initialised, SQLite refuses it with SQLITE_MISUSE and changes nothing.
    unsafe {
        libsqlite3_sys::sqlite3_config(libsqlite3_sys::SQLITE_CONFIG_MULTITHREAD)
            == libsqlite3_sys::SQLITE_OK
            && libsqlite3_sys::sqlite3_config(
                libsqlite3_sys::SQLITE_CONFIG_MEMSTATUS,
                0 as std::ffi::c_int,
            ) == libsqlite3_sys::SQLITE_OK
    }
}

/// How long a SQLite statement waits for a lock another connection holds.
const BUSY_TIMEOUT_MS: u64 = 15_000;

/// Per-connection settings. SQLite: WAL lets readers run beside the single writer;
/// FULL synchronous mode fsyncs the WAL at every commit, so that a committed trace
/// survives a power cut as well as a killed process (R-AUD-2); the committers'
/// connections then defer it past the commit (`Db::commit_on`, `wal_sync`), one
/// fsync for many requests. PostgreSQL's defaults already
/// commit durably (`synchronous_commit = on`).
pub fn prepare_connection(conn: &mut Conn) -> Result<(), diesel::result::Error> {
    match conn {
        Conn::Sqlite(sqlite) => sqlite.batch_execute(
            // The write-ahead log is copied into the database by the log syncer's
            // checkpointer (`wal_sync`), every 10 ms; a commit that finds it past
            // SQLite's threshold (1,000 pages) still does.
            // A log that grew past its usual size (see `wal_sync`, the
            // checkpointer) is cut back to 128 MiB when it starts over.
            &format!(
                "PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}; PRAGMA journal_mode = WAL; \
                 PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON; \
                 PRAGMA journal_size_limit = 134217728;"
            ),
        ),
        Conn::Postgresql(_) => Ok(()),
    }
}

/// Copies what the write-ahead log holds into the SQLite database, as far as readers
/// allow, without waiting for or blocking writers (a passive checkpoint), so that
/// commits on the answer's path do not; nothing on PostgreSQL. Answers how many
/// frames the log holds since it last started over (0 on PostgreSQL).
pub fn checkpoint(conn: &mut Conn) -> Result<i64, diesel::result::Error> {
    match conn {
        Conn::Sqlite(sqlite) => Ok(wal_checkpoint(sqlite, "PASSIVE")?.log),
        Conn::Postgresql(_) => Ok(0),
    }
}

/// A checkpoint after which the next commit starts the SQLite write-ahead log over
/// (a `RESTART` checkpoint): it holds new writes back while it waits, `wait` at
/// most, for the readers of older snapshots, copies the whole log into the
/// database, and waits for the readers still on the log. Answers whether it
/// could; nothing on PostgreSQL.
pub fn checkpoint_to_restart(
    conn: &mut Conn,
    wait: std::time::Duration,
) -> Result<bool, diesel::result::Error> {
    match conn {
        Conn::Sqlite(sqlite) => {
            sqlite.batch_execute(&format!("PRAGMA busy_timeout = {};", wait.as_millis()))?;
            let done = wal_checkpoint(sqlite, "RESTART");
            sqlite.batch_execute(&format!("PRAGMA busy_timeout = {BUSY_TIMEOUT_MS};"))?;
            let done = done?;
            Ok(done.busy == 0 && done.checkpointed == done.log)
        }
        Conn::Postgresql(_) => Ok(true),
    }
}

/// What SQLite's `wal_checkpoint` answers: whether it was kept from finishing,
/// the frames the log holds since it last started over, and those copied.
#[derive(diesel::QueryableByName)]
struct WalCheckpoint {
    #[diesel(sql_type = diesel::sql_types::Integer)]
    busy: i32,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    log: i64,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    checkpointed: i64,
}

fn wal_checkpoint(
    sqlite: &mut SqliteConnection,
    mode: &str,
) -> Result<WalCheckpoint, diesel::result::Error> {
    use diesel::RunQueryDsl;
    diesel::sql_query(format!("PRAGMA wal_checkpoint({mode})")).get_result(sqlite)
}

/// Commits on this connection no longer wait for the disk: SQLite's
/// `synchronous = NORMAL`, PostgreSQL's `synchronous_commit = off` (see
/// `Db::rebuildable_writes_connection`, `Db::commit_on`).
pub fn without_fsync_per_commit(conn: &mut Conn) -> Result<(), diesel::result::Error> {
    match conn {
        Conn::Sqlite(sqlite) => sqlite.batch_execute("PRAGMA synchronous = NORMAL;"),
        Conn::Postgresql(postgres) => postgres.batch_execute("SET synchronous_commit = off;"),
    }
}

/// SQLite: the write-ahead log's file as SQLite names it (beside the database
/// file a symbolic link leads to, or the one a `file:` URI names), when the
/// database is a file in WAL mode; `None` otherwise (in memory, or the mode did not
/// take), and the committers then commit with an fsync each.
pub fn write_ahead_log(conn: &mut Conn) -> diesel::QueryResult<Option<std::path::PathBuf>> {
    #[derive(diesel::QueryableByName)]
    struct Mode {
        #[diesel(sql_type = diesel::sql_types::Text)]
        journal_mode: String,
    }
    #[derive(diesel::QueryableByName)]
    struct Database {
        #[diesel(sql_type = diesel::sql_types::Text)]
        name: String,
        #[diesel(sql_type = diesel::sql_types::Text)]
        file: String,
    }
    use diesel::RunQueryDsl;
    let Conn::Sqlite(sqlite) = conn else {
        return Ok(None);
    };
    let mode: Vec<Mode> = diesel::sql_query("PRAGMA journal_mode").load(sqlite)?;
    if !mode
        .iter()
        .any(|mode| mode.journal_mode.eq_ignore_ascii_case("wal"))
    {
        return Ok(None);
    }
    let databases: Vec<Database> = diesel::sql_query("PRAGMA database_list").load(sqlite)?;
    Ok(databases
        .into_iter()
        .find(|database| database.name == "main" && !database.file.is_empty())
        .map(|database| std::path::PathBuf::from(format!("{}-wal", database.file))))
}

/// SQLite: the trace's writers' temporary structures stay in memory
/// (`temp_store = MEMORY`): the statement journals of their multi-row inserts (the
/// undo of one statement inside a transaction), which past 64 KiB went to a
/// temporary file (half of the indexer's writes), and their `RETURNING` lists.
/// Measured: about a fifth more audited reads a second. Only for the committers'
/// connections, whose temporaries are bounded (the trace's fixed statements, the
/// requests' writes): a search's sorts would stay in memory too.
pub fn temporaries_in_memory(conn: &mut Conn) -> Result<(), diesel::result::Error> {
    match conn {
        Conn::Sqlite(sqlite) => sqlite.batch_execute("PRAGMA temp_store = MEMORY;"),
        Conn::Postgresql(_) => Ok(()),
    }
}

/// Commits on this connection leave the copy of the write-ahead log into the
/// database to the checkpointer thread (`wal_sync`, every 10 ms) instead of doing it
/// when they find the log past 1,000 pages: for the write committer, whose thread
/// every write waits for, that copy was a tenth of its time at 64 connections
/// (POST@64 +12 %, BENCHMARKS.md). Past 16,000 pages (64 MiB at 4 KiB) a commit
/// still copies it, should the checkpointer fall behind. The trace's committers
/// keep SQLite's threshold: their copies at commit cost the audited reads less
/// than the checkpointer's (GET@16 -7 % when they left them too).
pub fn leave_checkpoints_to_checkpointer(conn: &mut Conn) -> Result<(), diesel::result::Error> {
    match conn {
        Conn::Sqlite(sqlite) => sqlite.batch_execute("PRAGMA wal_autocheckpoint = 16000;"),
        Conn::Postgresql(_) => Ok(()),
    }
}

/// A write transaction. Writers of one server queue on the store's writer lock
/// before they get here; an outermost SQLite transaction also takes the database's
/// write lock at its start (`BEGIN IMMEDIATE`, waiting under `busy_timeout`), so that
/// it never has to upgrade a read snapshot that another process's writer (a second
/// server on the file, its trace indexer, a command) has moved past, which SQLite
/// refuses at once. Nested calls are savepoints. PostgreSQL runs read-committed with
/// row locks (`for_update`) where a write depends on a read.
pub fn write_transaction<T, F>(conn: &mut Conn, work: F) -> Result<T, ApiError>
where
    F: FnOnce(&mut Conn) -> Result<T, ApiError>,
{
    use diesel::connection::{AnsiTransactionManager, TransactionManager};
    let Conn::Sqlite(sqlite) = conn else {
        return conn.transaction(work);
    };
    if AnsiTransactionManager::transaction_manager_status_mut(sqlite)
        .transaction_depth()?
        .is_some()
    {
        return conn.transaction(work);
    }
    AnsiTransactionManager::begin_transaction_sql(sqlite, "BEGIN IMMEDIATE")?;
    let result = work(conn);
    let Conn::Sqlite(sqlite) = conn else {
        unreachable!("the connection is the SQLite one it was");
    };
    match result {
        Ok(value) => {
            AnsiTransactionManager::commit_transaction(sqlite)?;
            Ok(value)
        }
        Err(error) => {
            AnsiTransactionManager::rollback_transaction(sqlite)?;
            Err(error)
        }
    }
}

/// Whether `conn` is inside a transaction (a write's, or [`read_snapshot`]'s): what
/// it reads there may include writes that are not committed yet. Not known counts
/// as inside.
fn in_transaction(conn: &mut Conn) -> bool {
    use diesel::connection::{AnsiTransactionManager, TransactionManager};
    let depth = match conn {
        Conn::Sqlite(sqlite) => {
            AnsiTransactionManager::transaction_manager_status_mut(sqlite).transaction_depth()
        }
        Conn::Postgresql(postgres) => {
            AnsiTransactionManager::transaction_manager_status_mut(postgres).transaction_depth()
        }
    };
    !matches!(depth, Ok(None))
}

/// Whether everything `conn` reads now is committed: outside a transaction, or in a
/// PostgreSQL one that has written nothing yet (no transaction id assigned: a
/// write, a row lock or a savepoint's write would have assigned one). A SQLite
/// transaction is taken as having written (its group's earlier writes are visible
/// to its later ones). Not known counts as not committed.
pub fn reads_committed_only(conn: &mut Conn) -> bool {
    #[derive(diesel::QueryableByName)]
    struct Clean {
        #[diesel(sql_type = diesel::sql_types::Bool)]
        clean: bool,
    }
    if !in_transaction(conn) {
        return true;
    }
    match conn {
        Conn::Sqlite(_) => false,
        Conn::Postgresql(_) => {
            super::sql::Sql::prepared("SELECT pg_current_xact_id_if_assigned() IS NULL AS clean")
                .load::<Clean>(conn)
                .ok()
                .and_then(|mut rows| rows.pop())
                .is_some_and(|row| row.clean)
        }
    }
}

/// Runs `work`'s reads on one snapshot of the database: a read transaction
/// (SQLite's starts its snapshot at its first read; PostgreSQL's is
/// `REPEATABLE READ, READ ONLY`), so that what it reads in several statements holds
/// together while servers write (the trace's check reads the chains' heads, then
/// their links, page by page).
pub fn read_snapshot<T, F>(conn: &mut Conn, work: F) -> Result<T, ApiError>
where
    F: FnOnce(&mut Conn) -> Result<T, ApiError>,
{
    use diesel::connection::{AnsiTransactionManager, TransactionManager};
    let begin = match conn {
        Conn::Sqlite(_) => "BEGIN DEFERRED",
        Conn::Postgresql(_) => "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY",
    };
    match conn {
        Conn::Sqlite(sqlite) => AnsiTransactionManager::begin_transaction_sql(sqlite, begin)?,
        Conn::Postgresql(postgres) => {
            AnsiTransactionManager::begin_transaction_sql(postgres, begin)?
        }
    }
    let result = work(conn);
    // Nothing was written: the end of the snapshot either way.
    match conn {
        Conn::Sqlite(sqlite) => AnsiTransactionManager::rollback_transaction(sqlite)?,
        Conn::Postgresql(postgres) => AnsiTransactionManager::rollback_transaction(postgres)?,
    }
    result
}

#[cfg(test)]
mod tests {
    use super::on_this_host;

    /// A point read runs on the calling thread only for a database that answers
    /// from this host: loopback addresses, `localhost` and Unix sockets, however
    /// the URL names them; any other host, or one host of a list elsewhere, is not.
    #[test]
    fn a_postgresql_url_is_on_this_host_only_through_loopback_or_a_socket() {
        for url in [
            "postgres://postgres@127.0.0.1:50077/postgres",
            "postgres://user:secret@localhost/db",
            "postgresql://user@LOCALHOST:5433/db",
            "postgres:///db",
            "postgres://user@/db?host=/var/run/postgresql",
            "postgresql://user@%2Fvar%2Frun%2Fpostgresql/db",
            "postgres://user@[::1]:5432/db",
            "postgres://user@127.0.0.2,localhost/db",
            "postgres://user@db.example.org/db?host=localhost",
        ] {
            assert!(on_this_host(url), "{url}");
        }
        for url in [
            "postgres://user@db.example.org:5432/db",
            "postgres://user@10.0.0.5/db",
            "postgres://user@127.0.0.1,db2.example.org/db",
            "postgres://user@localhost/db?host=db.example.org",
            "postgres://user@[2001:db8::1]/db",
            "not a url",
        ] {
            assert!(!on_this_host(url), "{url}");
        }
    }
}
