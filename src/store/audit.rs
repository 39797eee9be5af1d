//! The trace's tables: AuditEvents appended to a hash chain per patient, the first
//! accesses of professionals, and the notification outbox.

use diesel::QueryableByName;
use diesel::sql_types::{BigInt, Nullable, Text};

use super::dialect::{self, Conn};
use super::resources::write_index;
use super::sql::Sql;
use crate::fhir::extract::IndexEntries;

/// An AuditEvent ready to be appended: its stored JSON and what indexes it.
pub struct NewAuditEvent<'a> {
    pub id: &'a str,
    pub recorded: &'a str,
    pub content: &'a str,
    pub index: &'a IndexEntries,
    /// The patient whose chain holds it ('' for none).
    pub chain_key: &'a str,
    pub request_id: &'a str,
}

/// The last link of a chain.
#[derive(Debug, Clone, QueryableByName)]
pub struct ChainHead {
    #[diesel(sql_type = BigInt)]
    pub seq: i64,
    #[diesel(sql_type = Text)]
    pub hash: String,
}

/// The head of `chain_key`, locked until the transaction ends where the backend can.
pub fn chain_head(conn: &mut Conn, chain_key: &str) -> diesel::QueryResult<Option<ChainHead>> {
    let mut sql = Sql::new("SELECT seq, hash FROM audit_chain_head WHERE chain_key = ");
    sql.text(chain_key).push(dialect::FOR_UPDATE);
    Ok(sql.load(conn)?.pop())
}

/// Appends an event after `prev` with the link hash `hash`. Call it inside a write
/// transaction, after [`chain_head`].
pub fn append(
    conn: &mut Conn,
    event: &NewAuditEvent<'_>,
    seq: i64,
    prev_hash: &str,
    hash: &str,
) -> diesel::QueryResult<()> {
    #[derive(QueryableByName)]
    struct PkRow {
        #[diesel(sql_type = BigInt)]
        pk: i64,
    }
    let mut insert = Sql::new(
        "INSERT INTO resources (res_type, res_id, version_id, last_updated, deleted, content) VALUES ('AuditEvent', ",
    );
    insert
        .text(event.id)
        .push(", 1, ")
        .text(event.recorded)
        .push(&format!(", {}, ", dialect::bool_literal(false)))
        .text(event.content)
        .push(") RETURNING pk");
    let pk = insert
        .load::<PkRow>(conn)?
        .pop()
        .ok_or(diesel::result::Error::NotFound)?
        .pk;
    write_index(conn, pk, event.index)?;
    let mut link = Sql::new(
        "INSERT INTO audit_chain (resource_pk, chain_key, chain_seq, request_id, prev_hash, hash) VALUES (",
    );
    link.int(pk)
        .push(", ")
        .text(event.chain_key)
        .push(", ")
        .int(seq)
        .push(", ")
        .text(event.request_id)
        .push(", ")
        .text(prev_hash)
        .push(", ")
        .text(hash)
        .push(")");
    link.execute(conn)?;
    let mut head = Sql::new("INSERT INTO audit_chain_head (chain_key, seq, hash) VALUES (");
    head.text(event.chain_key)
        .push(", ")
        .int(seq)
        .push(", ")
        .text(hash)
        .push(") ON CONFLICT (chain_key) DO UPDATE SET seq = excluded.seq, hash = excluded.hash");
    head.execute(conn)?;
    Ok(())
}

/// One link as stored, with its event's JSON.
#[derive(Debug, Clone, QueryableByName)]
pub struct StoredLink {
    #[diesel(sql_type = Text)]
    pub chain_key: String,
    #[diesel(sql_type = BigInt)]
    pub chain_seq: i64,
    #[diesel(sql_type = Text)]
    pub prev_hash: String,
    #[diesel(sql_type = Text)]
    pub hash: String,
    #[diesel(sql_type = Text)]
    pub res_id: String,
    #[diesel(sql_type = Text)]
    pub content: String,
}

/// Links after `(chain_key, seq)` in chain order, `limit` at a time (keyset paging,
/// so a check of millions of events runs in bounded memory).
pub fn links_after(
    conn: &mut Conn,
    after: Option<(&str, i64)>,
    limit: i64,
) -> diesel::QueryResult<Vec<StoredLink>> {
    let mut sql = Sql::new(
        "SELECT c.chain_key, c.chain_seq, c.prev_hash, c.hash, r.res_id, r.content \
         FROM audit_chain c JOIN resources r ON r.pk = c.resource_pk",
    );
    if let Some((key, seq)) = after {
        sql.push(" WHERE c.chain_key > ")
            .text(key)
            .push(" OR (c.chain_key = ")
            .text(key)
            .push(" AND c.chain_seq > ")
            .int(seq)
            .push(")");
    }
    sql.push(" ORDER BY c.chain_key, c.chain_seq LIMIT ")
        .int(limit);
    sql.load(conn)
}

/// Every chain head.
pub fn heads(conn: &mut Conn) -> diesel::QueryResult<Vec<(String, ChainHead)>> {
    #[derive(QueryableByName)]
    struct HeadRow {
        #[diesel(sql_type = Text)]
        chain_key: String,
        #[diesel(sql_type = BigInt)]
        seq: i64,
        #[diesel(sql_type = Text)]
        hash: String,
    }
    Ok(
        Sql::new("SELECT chain_key, seq, hash FROM audit_chain_head ORDER BY chain_key")
            .load::<HeadRow>(conn)?
            .into_iter()
            .map(|row| {
                (
                    row.chain_key,
                    ChainHead {
                        seq: row.seq,
                        hash: row.hash,
                    },
                )
            })
            .collect(),
    )
}

/// AuditEvents stored without a chain link (inserted behind the server's back).
pub fn unlinked_events(conn: &mut Conn) -> diesel::QueryResult<Vec<String>> {
    #[derive(QueryableByName)]
    struct IdRow {
        #[diesel(sql_type = Text)]
        res_id: String,
    }
    Ok(Sql::new(
        "SELECT r.res_id FROM resources r WHERE r.res_type = 'AuditEvent' \
         AND NOT EXISTS (SELECT 1 FROM audit_chain c WHERE c.resource_pk = r.pk) LIMIT 100",
    )
    .load::<IdRow>(conn)?
    .into_iter()
    .map(|row| row.res_id)
    .collect())
}

/// Records that `subject` accessed `patient`'s space; `true` the first time.
pub fn first_access(
    conn: &mut Conn,
    patient: &str,
    subject: &str,
    at: &str,
) -> diesel::QueryResult<bool> {
    let mut sql = Sql::new("INSERT INTO first_access (patient_id, subject, accessed_at) VALUES (");
    sql.text(patient)
        .push(", ")
        .text(subject)
        .push(", ")
        .text(at)
        .push(") ON CONFLICT (patient_id, subject) DO NOTHING");
    Ok(sql.execute(conn)? == 1)
}

/// Queues a notification for delivery.
pub fn enqueue_notification(
    conn: &mut Conn,
    communication_id: &str,
    patient: &str,
    kind: &str,
    payload: &str,
    now: &str,
) -> diesel::QueryResult<()> {
    let mut sql = Sql::new(
        "INSERT INTO notification_outbox (communication_id, patient_id, kind, payload, created_at, next_attempt_at) VALUES (",
    );
    sql.text(communication_id)
        .push(", ")
        .text(patient)
        .push(", ")
        .text(kind)
        .push(", ")
        .text(payload)
        .push(", ")
        .text(now)
        .push(", ")
        .text(now)
        .push(")");
    sql.execute(conn)?;
    Ok(())
}

/// A notification waiting for delivery.
#[derive(Debug, Clone, QueryableByName)]
pub struct PendingNotification {
    #[diesel(sql_type = BigInt)]
    pub id: i64,
    #[diesel(sql_type = Text)]
    pub payload: String,
    #[diesel(sql_type = BigInt)]
    pub attempts: i64,
}

/// Notifications due at `now`, oldest first.
pub fn due_notifications(
    conn: &mut Conn,
    now: &str,
    limit: i64,
) -> diesel::QueryResult<Vec<PendingNotification>> {
    let mut sql = Sql::new(
        "SELECT id, payload, attempts FROM notification_outbox WHERE delivered_at IS NULL AND next_attempt_at <= ",
    );
    sql.text(now).push(" ORDER BY id LIMIT ").int(limit);
    sql.load(conn)
}

/// Marks a delivery done, or failed with the time of the next attempt.
pub fn delivery_result(
    conn: &mut Conn,
    id: i64,
    now: &str,
    failure: Option<(&str, &str)>,
) -> diesel::QueryResult<()> {
    let mut sql = Sql::new("UPDATE notification_outbox SET attempts = attempts + 1, ");
    match failure {
        None => {
            sql.push("delivered_at = ").text(now);
        }
        Some((error, next_attempt_at)) => {
            sql.push("last_error = ")
                .text(error)
                .push(", next_attempt_at = ")
                .text(next_attempt_at);
        }
    }
    sql.push(" WHERE id = ").int(id);
    sql.execute(conn)?;
    Ok(())
}

/// Delivery state of the outbox, for operators and tests.
#[derive(Debug, Clone, QueryableByName)]
pub struct OutboxRow {
    #[diesel(sql_type = BigInt)]
    pub id: i64,
    #[diesel(sql_type = Text)]
    pub kind: String,
    #[diesel(sql_type = BigInt)]
    pub attempts: i64,
    #[diesel(sql_type = Nullable<Text>)]
    pub delivered_at: Option<String>,
}
