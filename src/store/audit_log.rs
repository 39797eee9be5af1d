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

/// A row of the log taken by [`take_left`].
#[derive(QueryableByName)]
pub struct LeftGroup {
    #[diesel(sql_type = BigInt)]
    pub pos: i64,
    #[diesel(sql_type = Binary)]
    pub frame: Vec<u8>,
}

/// Deletes and answers, oldest first, at most `limit` rows other instances than
/// `instance` logged at least `others_after_ms` ago, or this one
/// `own_after_ms` ago, skipping those another transaction holds (an applier at
/// work on them): the groups an instance that stopped left, or an append whose
/// answer was lost. Apply them in the same transaction.
pub fn take_left(
    conn: &mut Conn,
    instance: &str,
    others_after_ms: i64,
    own_after_ms: i64,
    limit: i64,
) -> diesel::QueryResult<Vec<LeftGroup>> {
    // Planned at each run, as in [`take`].
    let mut sql = Sql::new(
        "DELETE FROM audit_log WHERE pos IN (SELECT pos FROM audit_log \
         WHERE (instance <> ",
    );
    sql.text(instance)
        .push(" AND logged_at <= clock_timestamp() - interval '1 millisecond' * ")
        .int(others_after_ms)
        .push(") OR logged_at <= clock_timestamp() - interval '1 millisecond' * ")
        .int(own_after_ms)
        .push(" ORDER BY pos LIMIT ")
        .int(limit)
        .push(" FOR UPDATE SKIP LOCKED) RETURNING pos, frame");
    let mut rows = sql.load::<LeftGroup>(conn)?;
    rows.sort_by_key(|row| row.pos);
    Ok(rows)
}

/// The newest position other instances than `instance` logged, if any row of
/// theirs is left.
pub fn others_newest(conn: &mut Conn, instance: &str) -> diesel::QueryResult<Option<i64>> {
    position(
        conn,
        "SELECT MAX(pos) AS pos FROM audit_log WHERE instance <> ",
        instance,
        None,
    )
}

/// Whether a row of another instance than `instance`, at `through` or before, is
/// left.
pub fn others_left_through(
    conn: &mut Conn,
    instance: &str,
    through: i64,
) -> diesel::QueryResult<bool> {
    Ok(position(
        conn,
        "SELECT MIN(pos) AS pos FROM audit_log WHERE instance <> ",
        instance,
        Some(through),
    )?
    .is_some())
}

fn position(
    conn: &mut Conn,
    head: &str,
    instance: &str,
    through: Option<i64>,
) -> diesel::QueryResult<Option<i64>> {
    #[derive(QueryableByName)]
    struct Position {
        #[diesel(sql_type = Nullable<BigInt>)]
        pos: Option<i64>,
    }
    let mut sql = Sql::prepared(head);
    sql.text(instance);
    if let Some(through) = through {
        sql.push(" AND pos <= ").int(through);
    }
    Ok(sql.load::<Position>(conn)?.first().and_then(|row| row.pos))
}
