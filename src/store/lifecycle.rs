//! The `space_lifecycle` table, and the physical removal of a space's data (the
//! retention purge, a deletion request) or of one resource (the patient deleting a
//! message or their own document).

use diesel::QueryableByName;
use diesel::sql_types::{Nullable, Text};

use super::dialect::{self, Conn};
use super::sql::Sql;

/// A space's lifecycle as stored.
#[derive(Debug, Clone, PartialEq, Eq, QueryableByName)]
pub struct LifecycleRow {
    #[diesel(sql_type = Text)]
    pub patient_id: String,
    /// `pending`, `active`, `opposed` or `closed`, as last set.
    #[diesel(sql_type = Text)]
    pub state: String,
    #[diesel(sql_type = Text)]
    pub notified_at: String,
    #[diesel(sql_type = Text)]
    pub changed_at: String,
    #[diesel(sql_type = Nullable<Text>)]
    pub closed_at: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    pub purged_at: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    pub welcomed_at: Option<String>,
}

const COLUMNS: &str =
    "patient_id, state, notified_at, changed_at, closed_at, purged_at, welcomed_at";

pub fn get(conn: &mut Conn, patient: &str) -> diesel::QueryResult<Option<LifecycleRow>> {
    let mut sql = Sql::new(&format!(
        "SELECT {COLUMNS} FROM space_lifecycle WHERE patient_id = "
    ));
    sql.text(patient);
    Ok(sql.load(conn)?.pop())
}

fn optional(sql: &mut Sql, value: &Option<String>) {
    match value {
        Some(value) => sql.text(value.as_str()),
        None => sql.push("NULL"),
    };
}

/// Inserts or replaces the row, and bumps the space's access version so that every
/// server re-reads what the rules know of the space.
pub fn put(conn: &mut Conn, row: &LifecycleRow) -> diesel::QueryResult<()> {
    let mut sql = Sql::new(&format!("INSERT INTO space_lifecycle ({COLUMNS}) VALUES ("));
    sql.text(row.patient_id.as_str())
        .push(", ")
        .text(row.state.as_str())
        .push(", ")
        .text(row.notified_at.as_str())
        .push(", ")
        .text(row.changed_at.as_str())
        .push(", ");
    optional(&mut sql, &row.closed_at);
    sql.push(", ");
    optional(&mut sql, &row.purged_at);
    sql.push(", ");
    optional(&mut sql, &row.welcomed_at);
    sql.push(
        ") ON CONFLICT (patient_id) DO UPDATE SET state = excluded.state, \
         notified_at = excluded.notified_at, changed_at = excluded.changed_at, \
         closed_at = excluded.closed_at, purged_at = excluded.purged_at, \
         welcomed_at = excluded.welcomed_at",
    );
    sql.execute(conn)?;
    super::access::bump_space_version(conn, &row.patient_id)
}

/// Spaces matching `condition` up to `cutoff` (an instant), shared out between
/// instances.
fn due(
    conn: &mut Conn,
    condition: &str,
    cutoff: &str,
    limit: i64,
) -> diesel::QueryResult<Vec<String>> {
    #[derive(QueryableByName)]
    struct PatientRow {
        #[diesel(sql_type = Text)]
        patient_id: String,
    }
    let mut sql = Sql::new(&format!(
        "SELECT patient_id FROM space_lifecycle WHERE {condition} <= "
    ));
    sql.text(cutoff)
        .push(" LIMIT ")
        .int(limit)
        .push(dialect::skip_locked(conn));
    Ok(sql
        .load::<PatientRow>(conn)?
        .into_iter()
        .map(|row| row.patient_id)
        .collect())
}

/// Pending spaces notified at or before `notified_before` (due to open by themselves).
pub fn due_activations(
    conn: &mut Conn,
    notified_before: &str,
    limit: i64,
) -> diesel::QueryResult<Vec<String>> {
    due(
        conn,
        "state = 'pending' AND notified_at",
        notified_before,
        limit,
    )
}

/// Closed spaces not purged yet whose closure is at or before `closed_before`.
pub fn due_purges(
    conn: &mut Conn,
    closed_before: &str,
    limit: i64,
) -> diesel::QueryResult<Vec<String>> {
    due(
        conn,
        "state = 'closed' AND purged_at IS NULL AND closed_at",
        closed_before,
        limit,
    )
}

/// Removes every resource of a space but its Patient and its AuditEvents (which
/// outlive the purge, R-AUD-3), with their versions, index and outbox rows. Returns
/// the number of resources removed.
pub fn purge_space(conn: &mut Conn, patient: &str) -> diesel::QueryResult<usize> {
    // The space's trace chain's turn first, as its appenders take it before they
    // record a first access: an appender holding it would otherwise wait for the
    // first accesses this deletes, while this waits for it to trace the deletion.
    super::dialect::lock(conn, &super::audit::chain_turn(patient))?;
    let in_space = |sql: &mut Sql| {
        sql.push(
            "SELECT c.resource_pk FROM resource_compartment c WHERE c.res_type NOT IN ('Patient', 'AuditEvent') AND c.patient_id = ",
        )
        .text(patient);
    };
    let mut versions = Sql::new(
        "DELETE FROM resource_versions WHERE EXISTS (SELECT 1 FROM resources r WHERE r.res_type = resource_versions.res_type \
         AND r.res_id = resource_versions.res_id AND r.pk IN (",
    );
    in_space(&mut versions);
    versions.push("))");
    versions.execute(conn)?;
    let mut resources = Sql::new("DELETE FROM resources WHERE pk IN (");
    in_space(&mut resources);
    resources.push(")");
    let removed = resources.execute(conn)?;
    let mut outbox = Sql::new("DELETE FROM notification_outbox WHERE patient_id = ");
    outbox.text(patient);
    outbox.execute(conn)?;
    let mut accesses = Sql::new("DELETE FROM first_access WHERE patient_id = ");
    accesses.text(patient);
    accesses.execute(conn)?;
    super::access::bump_space_version(conn, patient)?;
    Ok(removed)
}

/// Removes one resource and its history for good (R-MSG-3, R-PAT-2).
pub fn remove_resource(conn: &mut Conn, res_type: &str, res_id: &str) -> diesel::QueryResult<()> {
    let mut versions = Sql::new("DELETE FROM resource_versions WHERE res_type = ");
    versions.text(res_type).push(" AND res_id = ").text(res_id);
    versions.execute(conn)?;
    let mut resource = Sql::new("DELETE FROM resources WHERE res_type = ");
    resource.text(res_type).push(" AND res_id = ").text(res_id);
    resource.execute(conn)?;
    Ok(())
}

/// Whether the space holds a live document or medical profile entry (a space in use
/// is closed, not opposed).
pub fn holds_content(conn: &mut Conn, patient: &str) -> diesel::QueryResult<bool> {
    let types = || {
        std::iter::once("DocumentReference")
            .chain(crate::fhir::definitions::MEDICAL_PROFILE.iter().copied())
    };
    let mut sql = Sql::new("SELECT COUNT(*) AS n FROM resources r WHERE r.res_type IN ");
    sql.text_list(types())
        .push(&format!(
            " AND r.deleted = {} AND r.pk IN \
             (SELECT resource_pk FROM resource_compartment WHERE res_type IN ",
            super::dialect::bool_literal(false)
        ))
        .text_list(types())
        .push(" AND patient_id = ")
        .text(patient)
        .push(")");
    Ok(sql
        .load::<super::sql::CountRow>(conn)?
        .pop()
        .is_some_and(|row| row.n > 0))
}
