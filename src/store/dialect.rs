//! The only place that knows which SQL backend is in use.

use diesel::connection::SimpleConnection;
use diesel::sqlite::{Sqlite, SqliteConnection};

use crate::error::ApiError;

/// The connection type.
pub type Conn = SqliteConnection;
/// The backend type.
pub type Backend = Sqlite;

/// The placeholder of the `n`-th (1-based) bind parameter.
pub fn placeholder(_n: usize) -> &'static str {
    "?"
}

/// Row lock for a read that a write in the same transaction depends on. SQLite's
/// write transactions are exclusive already.
pub const FOR_UPDATE: &str = "";

/// The SQL literal for a boolean.
pub fn bool_literal(value: bool) -> &'static str {
    if value { "1" } else { "0" }
}

/// Turns `sqlite://path`, `sqlite:path` or a plain path into a file path.
pub fn sqlite_path(url: &str) -> Result<String, String> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return Err("PostgreSQL is not available in this build; use sqlite://PATH".into());
    }
    let path = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .unwrap_or(url);
    if path.is_empty() {
        return Err(format!("no database path in {url:?}"));
    }
    Ok(path.to_owned())
}

/// Per-connection settings. WAL lets readers run beside the single writer. FULL
/// synchronous mode fsyncs the WAL at every commit, so that a committed trace survives
/// a power cut as well as a killed process (R-AUD-2); the trace's group commit pays
/// that fsync once for many requests. Writers wait for each other.
pub fn prepare_connection(conn: &mut Conn) -> Result<(), diesel::result::Error> {
    conn.batch_execute(
        "PRAGMA busy_timeout = 15000; PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;",
    )
}

/// A write transaction. SQLite's IMMEDIATE takes the write lock at the start, so two
/// writers never deadlock upgrading a read lock.
pub fn write_transaction<T, F>(conn: &mut Conn, work: F) -> Result<T, ApiError>
where
    F: FnOnce(&mut Conn) -> Result<T, ApiError>,
{
    conn.immediate_transaction(work)
}
