//! The trace's log on PostgreSQL (`audit_log`, see `audit::writer`): a row per
//! group of requests whose events are durable there before their answers, until
//! an applier moves them into the chains and deletes the row, in one transaction.

use diesel::QueryableByName;
use diesel::sql_types::{BigInt, Binary, Nullable};

use super::dialect::Conn;
use super::sql::Sql;

/// Appends a group's frame for `instance`; answers its position. Commit it
/// durably before answering the group's requests.
pub fn append(conn: &mut Conn, instance: &str, frame: Vec<u8>) -> diesel::QueryResult<i64> {
    #[derive(QueryableByName)]
    struct Appended {
        #[diesel(sql_type = BigInt)]
        pos: i64,
    }
    let mut sql = Sql::prepared("INSERT INTO audit_log (instance, frame) VALUES (");
    sql.text(instance)
        .push(", ")
        .bytes(frame)
        .push(") RETURNING pos");
    let rows = sql.load::<Appended>(conn)?;
    rows.first()
        .map(|row| row.pos)
        .ok_or(diesel::result::Error::NotFound)
}

/// Deletes the rows at `positions` that are still there, waiting for a transaction
/// that holds one of them (another applier's) to end; answers those it deleted.
/// In the transaction that applies their groups, a group is applied once: a row
/// another transaction deleted first is not answered.
pub fn take(conn: &mut Conn, positions: &[i64]) -> diesel::QueryResult<Vec<i64>> {
    #[derive(QueryableByName)]
    struct Taken {
        #[diesel(sql_type = BigInt)]
        pos: i64,
    }
    // Planned at each run, not kept: a kept plan is made once, when the table may
    // be a page or two, and then scans every page that the deleted rows leave
    // until a vacuum (tens of megabytes under load); planned now, the rows are
    // found through the key whenever the table has grown.
    let list: Vec<String> = positions.iter().map(i64::to_string).collect();
    let mut sql = Sql::new("DELETE FROM audit_log WHERE pos = ANY (CAST(");
    sql.text(format!("{{{}}}", list.join(",")))
        .push(" AS BIGINT[])) RETURNING pos");
    let taken = sql.load::<Taken>(conn)?;
    Ok(taken.into_iter().map(|row| row.pos).collect())
}

/// A row of the log taken by [`take_next_left`].
#[derive(QueryableByName)]
pub struct LeftGroup {
    #[diesel(sql_type = BigInt)]
    pub pos: i64,
    #[diesel(sql_type = Binary)]
    pub frame: Vec<u8>,
}

/// Which rows were left: those other instances than `instance` logged at least
/// `others_after_ms` ago, or this one `own_after_ms` ago (an append whose answer
/// was lost), not set aside, from position `from` through `through`.
pub struct LeftRows<'a> {
    pub instance: &'a str,
    pub others_after_ms: i64,
    pub own_after_ms: i64,
    pub from: i64,
    pub through: i64,
}

/// Deletes and answers the first row `rows` names, skipping those another
/// transaction holds (an applier at work on them). Apply it in the same
/// transaction.
pub fn take_next_left(
    conn: &mut Conn,
    rows: &LeftRows<'_>,
) -> diesel::QueryResult<Option<LeftGroup>> {
    // Planned at each run, as in [`take`].
    let mut sql = Sql::new(
        "DELETE FROM audit_log WHERE pos = (SELECT pos FROM audit_log \
         WHERE set_aside IS NULL AND pos >= ",
    );
    sql.int(rows.from)
        .push(" AND pos <= ")
        .int(rows.through)
        .push(" AND ((instance <> ")
        .text(rows.instance)
        .push(" AND logged_at <= clock_timestamp() - interval '1 millisecond' * ")
        .int(rows.others_after_ms)
        .push(") OR logged_at <= clock_timestamp() - interval '1 millisecond' * ")
        .int(rows.own_after_ms)
        .push(") ORDER BY pos LIMIT 1 FOR UPDATE SKIP LOCKED) RETURNING pos, frame");
    Ok(sql.load::<LeftGroup>(conn)?.pop())
}

/// The newest position of a row not set aside, if any.
pub fn newest(conn: &mut Conn) -> diesel::QueryResult<Option<i64>> {
    position(
        conn,
        Sql::new("SELECT MAX(pos) AS pos FROM audit_log WHERE set_aside IS NULL"),
    )
}

/// A failed try at the row at `pos`, which stays; past `max_attempts` tries, or
/// at once with `for_good` (a frame that does not read), it is set aside with
/// `reason`. Answers whether it was set aside.
pub fn failed_once(
    conn: &mut Conn,
    pos: i64,
    reason: &str,
    for_good: bool,
    max_attempts: i64,
) -> diesel::QueryResult<bool> {
    #[derive(QueryableByName)]
    struct Outcome {
        #[diesel(sql_type = diesel::sql_types::Bool)]
        set_aside: bool,
    }
    let mut sql = Sql::new("UPDATE audit_log SET attempts = attempts + 1, set_aside = CASE WHEN ");
    sql.boolean(for_good)
        .push(" OR attempts + 1 >= ")
        .int(max_attempts)
        .push(" THEN ")
        .text(reason)
        .push(" END WHERE pos = ")
        .int(pos)
        .push(" AND set_aside IS NULL RETURNING set_aside IS NOT NULL AS set_aside");
    Ok(sql
        .load::<Outcome>(conn)?
        .first()
        .is_some_and(|row| row.set_aside))
}

/// The rows set aside: position, the instance that logged them, why.
pub fn set_aside(conn: &mut Conn) -> diesel::QueryResult<Vec<(i64, String, String)>> {
    #[derive(QueryableByName)]
    struct Aside {
        #[diesel(sql_type = BigInt)]
        pos: i64,
        #[diesel(sql_type = diesel::sql_types::Text)]
        instance: String,
        #[diesel(sql_type = diesel::sql_types::Text)]
        set_aside: String,
    }
    // A bounded report: past a hundred rows, the first hundred say enough.
    Ok(Sql::new(
        "SELECT pos, instance, set_aside FROM audit_log WHERE set_aside IS NOT NULL \
         ORDER BY pos LIMIT 100",
    )
    .load::<Aside>(conn)?
    .into_iter()
    .map(|row| (row.pos, row.instance, row.set_aside))
    .collect())
}

/// The newest position other instances than `instance` logged, if any row of
/// theirs is left (not set aside).
pub fn others_newest(conn: &mut Conn, instance: &str) -> diesel::QueryResult<Option<i64>> {
    let mut sql =
        Sql::new("SELECT MAX(pos) AS pos FROM audit_log WHERE set_aside IS NULL AND instance <> ");
    sql.text(instance);
    position(conn, sql)
}

/// Whether a row of another instance than `instance`, at `through` or before, is
/// left (not set aside).
pub fn others_left_through(
    conn: &mut Conn,
    instance: &str,
    through: i64,
) -> diesel::QueryResult<bool> {
    let mut sql =
        Sql::new("SELECT MIN(pos) AS pos FROM audit_log WHERE set_aside IS NULL AND instance <> ");
    sql.text(instance).push(" AND pos <= ").int(through);
    Ok(position(conn, sql)?.is_some())
}

/// The position `sql` answers. Such statements run unkept (`Sql::new`): planned
/// at each run, as in [`take`], so that a table grown since is read through its
/// key.
fn position(conn: &mut Conn, sql: Sql) -> diesel::QueryResult<Option<i64>> {
    #[derive(QueryableByName)]
    struct Position {
        #[diesel(sql_type = Nullable<BigInt>)]
        pos: Option<i64>,
    }
    Ok(sql.load::<Position>(conn)?.first().and_then(|row| row.pos))
}
