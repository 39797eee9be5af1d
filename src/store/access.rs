//! What the access rules need to know of a patient's space: the Patient and the
//! Consents of its compartment, as stored JSON.

use diesel::QueryableByName;
use diesel::sql_types::Text;

use super::dialect::{Conn, bool_literal};
use super::sql::Sql;

#[derive(QueryableByName)]
struct ContentRow {
    #[diesel(sql_type = Text)]
    content: String,
}

/// Moves a space's access version on, in the transaction of a change to what the
/// rules read of it (its Patient, Consents or lifecycle): every server's cached facts
/// of the space become stale.
pub fn bump_space_version(conn: &mut Conn, patient_id: &str) -> diesel::QueryResult<()> {
    let mut bump = Sql::new("INSERT INTO space_access (patient_id, version) VALUES (");
    bump.text(patient_id)
        .push(", 1) ON CONFLICT (patient_id) DO UPDATE SET version = space_access.version + 1");
    bump.execute(conn)?;
    Ok(())
}

/// The access version of a space (0 before any write to its Patient or Consents).
pub fn space_version(conn: &mut Conn, patient_id: &str) -> diesel::QueryResult<i64> {
    #[derive(QueryableByName)]
    struct VersionRow {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        version: i64,
    }
    let mut sql = Sql::prepared("SELECT version FROM space_access WHERE patient_id = ");
    sql.text(patient_id);
    Ok(sql
        .load::<VersionRow>(conn)?
        .pop()
        .map_or(0, |row| row.version))
}

/// What the rules read of a space.
pub struct SpaceDocuments {
    /// The stored Patient, if live.
    pub patient: Option<String>,
    /// The live Consents of the space.
    pub consents: Vec<String>,
    pub lifecycle: Option<super::lifecycle::LifecycleRow>,
}

/// The stored Patient (if live), the live Consents and the lifecycle of a space.
pub fn space_documents(conn: &mut Conn, patient_id: &str) -> diesel::QueryResult<SpaceDocuments> {
    let mut patient = Sql::prepared(
        "SELECT r.content FROM resources r WHERE r.res_type = 'Patient' AND r.res_id = ",
    );
    patient
        .text(patient_id)
        .push(&format!(" AND r.deleted = {}", bool_literal(false)));
    let patient = patient
        .load::<ContentRow>(conn)?
        .pop()
        .map(|row| row.content);
    let mut consents = Sql::new(&format!(
        "SELECT r.content FROM resources r WHERE r.res_type = 'Consent' AND r.deleted = {} \
         AND r.pk IN (SELECT resource_pk FROM resource_compartment WHERE res_type = 'Consent' AND patient_id = ",
        bool_literal(false)
    ));
    consents.text(patient_id).push(")");
    let consents = consents
        .load::<ContentRow>(conn)?
        .into_iter()
        .map(|row| row.content)
        .collect();
    Ok(SpaceDocuments {
        patient,
        consents,
        lifecycle: super::lifecycle::get(conn, patient_id)?,
    })
}

/// The live DocumentReferences pointing at `Binary/binary_id` that may open it: put
/// in the Binary's space (`space`, when it has one) by its own depositor (the same
/// actor and subject, or a system of the same organisation: R-ACC-9's author).
/// Pointing at content does not make it one's own.
pub fn documents_pointing_at(
    conn: &mut Conn,
    binary_id: &str,
    space: &[String],
    depositor: &super::Author,
) -> diesel::QueryResult<Vec<super::resources::RowHead>> {
    // Driven by the reference to the Binary (the few documents pointing at it).
    let mut sql = Sql::new(&format!(
        "SELECT DISTINCT {} FROM search_reference s JOIN resources r ON r.pk = s.resource_pk \
         WHERE s.res_type = 'DocumentReference' AND s.param = ",
        super::resources::HEAD_COLUMNS,
    ));
    sql.text(crate::fhir::definitions::CONTENT_BINARY)
        .push(" AND s.target_type = 'Binary' AND s.target_id = ")
        .text(binary_id)
        .push(&format!(
            " AND r.res_type = 'DocumentReference' AND r.deleted = {}",
            bool_literal(false)
        ));
    // Correlated to the few documents pointing at the Binary (the reference lookup
    // drives the query): never the whole space, never all of a depositor's work.
    if !space.is_empty() {
        sql.push(
            " AND EXISTS (SELECT 1 FROM resource_compartment c WHERE c.res_type = 'DocumentReference' AND c.resource_pk = r.pk AND c.patient_id IN ",
        );
        sql.text_list(space.iter().map(String::as_str)).push(")");
    }
    sql.push(
        " AND EXISTS (SELECT 1 FROM resource_author a WHERE a.resource_pk = r.pk AND a.actor = ",
    )
    .text(depositor.actor.as_str())
    .push(" AND (a.subject = ")
    .text(depositor.subject.as_str());
    if depositor.actor == "system"
        && let Some(organization) = &depositor.organization
    {
        sql.push(" OR a.organization = ")
            .text(organization.as_str());
    }
    sql.push(")) ORDER BY r.pk LIMIT 100");
    sql.load(conn)
}

/// The live Patients other than `except` that carry the identifier `system|value`.
pub fn patients_with_identifier(
    conn: &mut Conn,
    system: &str,
    value: &str,
    except: &str,
) -> diesel::QueryResult<Vec<String>> {
    live_with_token(conn, "Patient", "identifier", system, value, except)
}

/// Up to two live resources of `res_type` other than `except` whose `param` token
/// is `system|value` (uniqueness checks: one space per INS, one document per XDS
/// uniqueId).
pub fn live_with_token(
    conn: &mut Conn,
    res_type: &str,
    param: &str,
    system: &str,
    value: &str,
    except: &str,
) -> diesel::QueryResult<Vec<String>> {
    #[derive(QueryableByName)]
    struct IdRow {
        #[diesel(sql_type = Text)]
        res_id: String,
    }
    // Driven by the token (a handful of rows), whatever the planner knows of the
    // resources table's size.
    let mut sql = Sql::new(
        "SELECT r.res_id FROM search_token t JOIN resources r ON r.pk = t.resource_pk WHERE t.res_type = ",
    );
    sql.text(res_type)
        .push(" AND t.param = ")
        .text(param)
        .push(" AND t.system = ")
        .text(system)
        .push(" AND t.code = ")
        .text(value)
        .push(&format!(
            " AND r.deleted = {} AND r.res_id <> ",
            bool_literal(false)
        ))
        .text(except)
        .push(" LIMIT 2");
    Ok(sql
        .load::<IdRow>(conn)?
        .into_iter()
        .map(|row| row.res_id)
        .collect())
}
