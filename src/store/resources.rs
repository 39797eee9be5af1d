//! Resource versions and their search index.

use diesel::QueryableByName;
use diesel::sql_types::{BigInt, Bool, Text};

use super::dialect::{Conn, bool_literal};
use super::sql::{Sql, multi_row};
use crate::fhir::extract::IndexEntries;

/// The current version of a resource.
#[derive(Debug, Clone, QueryableByName)]
pub struct ResourceRow {
    #[diesel(sql_type = BigInt)]
    pub pk: i64,
    #[diesel(sql_type = Text)]
    pub res_type: String,
    #[diesel(sql_type = Text)]
    pub res_id: String,
    #[diesel(sql_type = BigInt)]
    pub version_id: i64,
    #[diesel(sql_type = Text)]
    pub last_updated: String,
    #[diesel(sql_type = Bool)]
    pub deleted: bool,
    #[diesel(sql_type = Text)]
    pub content: String,
}

/// The columns of [`ResourceRow`], for queries aliasing `resources` as `r`.
pub const RESOURCE_COLUMNS: &str =
    "r.pk, r.res_type, r.res_id, r.version_id, r.last_updated, r.deleted, r.content";

/// A current row without its content: what a query returns when its rows may be
/// many or large (a search page, included rows). [`complete`] loads one's content
/// when the gate is to decide it, so that memory holds one body at a time, and the
/// gate, which takes a [`Stored`], never sees a row without its content.
#[derive(Debug, Clone, QueryableByName)]
pub struct RowHead {
    #[diesel(sql_type = BigInt)]
    pub pk: i64,
    #[diesel(sql_type = Text)]
    pub res_type: String,
    #[diesel(sql_type = Text)]
    pub res_id: String,
    #[diesel(sql_type = BigInt)]
    pub version_id: i64,
    #[diesel(sql_type = Text)]
    pub last_updated: String,
    #[diesel(sql_type = Bool)]
    pub deleted: bool,
}

impl RowHead {
    /// The row, with its content.
    pub fn with_content(self, content: String) -> ResourceRow {
        ResourceRow {
            pk: self.pk,
            res_type: self.res_type,
            res_id: self.res_id,
            version_id: self.version_id,
            last_updated: self.last_updated,
            deleted: self.deleted,
            content,
        }
    }
}

/// The columns of [`RowHead`], for queries aliasing `resources` as `r`.
pub const HEAD_COLUMNS: &str =
    "r.pk, r.res_type, r.res_id, r.version_id, r.last_updated, r.deleted";

#[derive(QueryableByName)]
struct ContentRow {
    #[diesel(sql_type = Text)]
    content: String,
}

/// The content of one version, from the history (which holds every version of the
/// resources written through the API).
fn version_content(
    conn: &mut Conn,
    res_type: &str,
    res_id: &str,
    version_id: i64,
) -> diesel::QueryResult<Option<String>> {
    let mut sql = Sql::prepared("SELECT h.content FROM resource_versions h WHERE h.res_type = ");
    sql.text(res_type)
        .push(" AND h.res_id = ")
        .text(res_id)
        .push(" AND h.version_id = ")
        .int(version_id);
    Ok(sql.load::<ContentRow>(conn)?.pop().map(|row| row.content))
}

/// The row of `head` with its content; `None` when that version is gone (purged or
/// deleted by its holder since the query).
pub fn complete(conn: &mut Conn, head: RowHead) -> diesel::QueryResult<Option<ResourceRow>> {
    let mut current = Sql::prepared("SELECT r.content FROM resources r WHERE r.pk = ");
    current
        .int(head.pk)
        .push(" AND r.version_id = ")
        .int(head.version_id);
    let content = match current.load::<ContentRow>(conn)?.pop() {
        Some(row) => row.content,
        // Changed since the query: that version, from the history (the trace, which
        // never changes, has none).
        None => match version_content(conn, &head.res_type, &head.res_id, head.version_id)? {
            Some(content) => content,
            None => return Ok(None),
        },
    };
    Ok(Some(head.with_content(content)))
}

/// Contents of at most this many bytes are fetched together ([`complete_chunk`]);
/// longer ones one at a time, when their turn comes.
const SMALL_CONTENT: i64 = 256 * 1024;

/// The most rows whose small contents are fetched together: by [`complete_chunk`],
/// or with a search's page ([`super::search::run_with_contents`]).
pub const COMPLETED_TOGETHER: usize = 20;

/// Appends a column of the select list: the content of the row `r` when it is
/// small ([`SMALL_CONTENT`]), else NULL, as `content`. A scalar subquery, which
/// PostgreSQL evaluates for the rows the statement returns only (after its window
/// and its limit), so a window over every match does not hold their contents.
pub fn push_small_content_column(conn: &Conn, sql: &mut Sql) {
    sql.push(&format!(
        "(SELECT CASE WHEN {} <= ",
        super::dialect::byte_length(conn, "c.content")
    ))
    .int(SMALL_CONTENT)
    .push(" THEN c.content END FROM resources c WHERE c.pk = r.pk) AS content");
}

/// A row of [`complete_chunk`]: with its content, or still to complete (a large
/// content, or a row changed since the query).
pub enum Completed {
    Ready(ResourceRow),
    Later(RowHead),
}

impl Completed {
    /// The row with its content, loading a large one now; `None` when it is gone.
    pub fn into_row(self, conn: &mut Conn) -> diesel::QueryResult<Option<ResourceRow>> {
        match self {
            Completed::Ready(row) => Ok(Some(row)),
            Completed::Later(head) => complete(conn, head),
        }
    }
}

/// The rows of `heads`, in order, with the small `contents` fetched with them (in
/// the same order; a `None` is a content left for [`complete`]).
pub fn completed_with(heads: Vec<RowHead>, contents: Vec<Option<String>>) -> Vec<Completed> {
    heads
        .into_iter()
        .zip(contents)
        .map(|(head, content)| match content {
            Some(content) => Completed::Ready(head.with_content(content)),
            None => Completed::Later(head),
        })
        .collect()
}

/// The rows of `heads`, in order, their small contents fetched in one query (a
/// search page costs one query, not one per row); large ones are left for
/// [`complete`], so that memory holds at most one large body at a time.
pub fn complete_chunk(conn: &mut Conn, heads: &[RowHead]) -> diesel::QueryResult<Vec<Completed>> {
    #[derive(QueryableByName)]
    struct SmallRow {
        #[diesel(sql_type = BigInt)]
        pk: i64,
        #[diesel(sql_type = BigInt)]
        version_id: i64,
        #[diesel(sql_type = diesel::sql_types::Nullable<Text>)]
        content: Option<String>,
    }
    if heads.is_empty() {
        return Ok(Vec::new());
    }
    let mut sql = Sql::new(&format!(
        "SELECT r.pk, r.version_id, CASE WHEN {} <= ",
        super::dialect::byte_length(conn, "r.content")
    ));
    sql.int(SMALL_CONTENT)
        .push(" THEN r.content END AS content FROM resources r WHERE r.pk IN ");
    let keys = heads.iter().map(|head| head.pk);
    // The list padded (with its last key again) to 1, 5, 20 or 64 keys: a few
    // texts, kept prepared, whatever the page's length. A longer list is neither.
    match [1, 5, 20, 64].into_iter().find(|size| *size >= heads.len()) {
        Some(padded) => {
            let last = heads[heads.len() - 1].pk;
            sql.int_list(keys.chain(std::iter::repeat(last)).take(padded));
            sql = sql.kept_while_room();
        }
        None => {
            sql.int_list(keys);
        }
    }
    let mut small: std::collections::HashMap<i64, SmallRow> = sql
        .load::<SmallRow>(conn)?
        .into_iter()
        .map(|row| (row.pk, row))
        .collect();
    Ok(heads
        .iter()
        .map(|head| match small.remove(&head.pk) {
            Some(SmallRow {
                version_id,
                content: Some(content),
                ..
            }) if version_id == head.version_id => {
                Completed::Ready(head.clone().with_content(content))
            }
            _ => Completed::Later(head.clone()),
        })
        .collect())
}

/// A version of the history without its content (see [`RowHead`]).
#[derive(Debug, Clone, QueryableByName)]
pub struct VersionHead {
    #[diesel(sql_type = BigInt)]
    pub pk: i64,
    #[diesel(sql_type = Text)]
    pub res_type: String,
    #[diesel(sql_type = Text)]
    pub res_id: String,
    #[diesel(sql_type = BigInt)]
    pub version_id: i64,
    #[diesel(sql_type = Text)]
    pub last_updated: String,
    #[diesel(sql_type = Bool)]
    pub deleted: bool,
    #[diesel(sql_type = Text)]
    pub method: String,
}

/// The version of `head` with its content, if it is still there.
pub fn complete_version(
    conn: &mut Conn,
    head: VersionHead,
) -> diesel::QueryResult<Option<VersionRow>> {
    let Some(content) = version_content(conn, &head.res_type, &head.res_id, head.version_id)?
    else {
        return Ok(None);
    };
    Ok(Some(VersionRow {
        pk: head.pk,
        res_type: head.res_type,
        res_id: head.res_id,
        version_id: head.version_id,
        last_updated: head.last_updated,
        deleted: head.deleted,
        method: head.method,
        content,
    }))
}

/// One version from the history.
#[derive(Debug, Clone, QueryableByName)]
pub struct VersionRow {
    /// The resource's row key (0 when the resource row is gone).
    #[diesel(sql_type = BigInt)]
    pub pk: i64,
    #[diesel(sql_type = Text)]
    pub res_type: String,
    #[diesel(sql_type = Text)]
    pub res_id: String,
    #[diesel(sql_type = BigInt)]
    pub version_id: i64,
    #[diesel(sql_type = Text)]
    pub last_updated: String,
    #[diesel(sql_type = Bool)]
    pub deleted: bool,
    #[diesel(sql_type = Text)]
    pub method: String,
    #[diesel(sql_type = Text)]
    pub content: String,
}

const VERSION_HEAD_COLUMNS: &str = "COALESCE((SELECT r.pk FROM resources r WHERE r.res_type = h.res_type AND r.res_id = h.res_id), 0) AS pk, \
     h.res_type, h.res_id, h.version_id, h.last_updated, h.deleted, h.method";
const VERSION_COLUMNS: &str = "COALESCE((SELECT r.pk FROM resources r WHERE r.res_type = h.res_type AND r.res_id = h.res_id), 0) AS pk, \
     h.res_type, h.res_id, h.version_id, h.last_updated, h.deleted, h.method, h.content";

/// One stored version as the access gate decides on it: the current row or a row of
/// the history.
#[derive(Debug, Clone, Copy)]
pub struct Stored<'a> {
    /// The resource's row key (its depositor and current compartment hang on it).
    pub pk: i64,
    pub res_type: &'a str,
    pub res_id: &'a str,
    pub version_id: i64,
    pub deleted: bool,
    pub content: &'a str,
    /// Whether this is the resource's current row (then it is its own latest
    /// version, which a history row is also judged by).
    pub current: bool,
}

impl ResourceRow {
    pub fn stored(&self) -> Stored<'_> {
        Stored {
            pk: self.pk,
            res_type: &self.res_type,
            res_id: &self.res_id,
            version_id: self.version_id,
            deleted: self.deleted,
            content: &self.content,
            current: true,
        }
    }
}

impl VersionRow {
    pub fn stored(&self) -> Stored<'_> {
        Stored {
            pk: self.pk,
            res_type: &self.res_type,
            res_id: &self.res_id,
            version_id: self.version_id,
            deleted: self.deleted,
            content: &self.content,
            current: false,
        }
    }
}

/// The latest version of `res_type/res_id` that is not a deletion, below
/// `below` when given: what a deletion (or the resource as a whole) is judged by.
pub fn latest_live(
    conn: &mut Conn,
    res_type: &str,
    res_id: &str,
    below: Option<i64>,
) -> diesel::QueryResult<Option<VersionRow>> {
    let mut sql = Sql::prepared(&format!(
        "SELECT {VERSION_COLUMNS} FROM resource_versions h WHERE h.res_type = "
    ));
    sql.text(res_type)
        .push(" AND h.res_id = ")
        .text(res_id)
        .push(&format!(" AND h.deleted = {}", bool_literal(false)));
    if let Some(below) = below {
        sql.push(" AND h.version_id < ").int(below);
    }
    sql.push(" ORDER BY h.version_id DESC LIMIT 1");
    Ok(sql.load(conn)?.pop())
}

/// The current version of `res_type/res_id`, deleted or not.
pub fn current(
    conn: &mut Conn,
    res_type: &str,
    res_id: &str,
) -> diesel::QueryResult<Option<ResourceRow>> {
    let mut sql = Sql::prepared(&format!(
        "SELECT {RESOURCE_COLUMNS} FROM resources r WHERE r.res_type = "
    ));
    sql.text(res_type).push(" AND r.res_id = ").text(res_id);
    Ok(sql.load(conn)?.pop())
}

/// The access version of each space whose compartment holds a row.
pub type SpaceVersions = Vec<(String, i64)>;

/// [`current`] with the access version (see [`super::access::space_version`]) of
/// each space whose compartment holds it, read in the same statement: a read by id
/// then needs no second round trip before the rules decide it.
pub fn current_with_space_versions(
    conn: &mut Conn,
    res_type: &str,
    res_id: &str,
) -> diesel::QueryResult<Option<(ResourceRow, SpaceVersions)>> {
    #[derive(QueryableByName)]
    struct RowInSpace {
        #[diesel(embed)]
        resource: ResourceRow,
        #[diesel(sql_type = diesel::sql_types::Nullable<Text>)]
        space: Option<String>,
        #[diesel(sql_type = BigInt)]
        space_version: i64,
    }
    // The trace's events keep their space in their own index (`store::audit_index`).
    let (compartment, space) = if res_type == super::audit_index::AUDIT_EVENT {
        (
            "audit_index c ON c.resource_pk = r.pk AND c.space <> ''",
            "c.space",
        )
    } else {
        (
            "resource_compartment c ON c.resource_pk = r.pk",
            "c.patient_id",
        )
    };
    let mut sql = Sql::prepared(&format!(
        "SELECT {RESOURCE_COLUMNS}, {space} AS space, COALESCE(s.version, 0) AS space_version \
         FROM resources r LEFT JOIN {compartment} \
         LEFT JOIN space_access s ON s.patient_id = {space} WHERE r.res_type = "
    ));
    sql.text(res_type).push(" AND r.res_id = ").text(res_id);
    let mut found: Option<(ResourceRow, SpaceVersions)> = None;
    for in_space in sql.load::<RowInSpace>(conn)? {
        let (_, versions) = found.get_or_insert_with(|| (in_space.resource, Vec::new()));
        if let Some(space) = in_space.space {
            versions.push((space, in_space.space_version));
        }
    }
    Ok(found)
}

/// A space named by a compartment row.
#[derive(QueryableByName)]
struct PatientRow {
    #[diesel(sql_type = Text)]
    patient_id: String,
}

/// Patients in whose compartment the current version of a resource lies.
pub fn compartment_of(conn: &mut Conn, pk: i64) -> diesel::QueryResult<Vec<String>> {
    let mut sql = Sql::prepared("SELECT patient_id FROM resource_compartment WHERE resource_pk = ");
    sql.int(pk);
    Ok(sql
        .load::<PatientRow>(conn)?
        .into_iter()
        .map(|row| row.patient_id)
        .collect())
}

/// Patients in whose compartment the current version of `res_type/res_id` lies.
pub fn compartment_of_current(
    conn: &mut Conn,
    res_type: &str,
    res_id: &str,
) -> diesel::QueryResult<Vec<String>> {
    let mut sql = Sql::prepared(
        "SELECT c.patient_id FROM resources r \
         JOIN resource_compartment c ON c.resource_pk = r.pk WHERE r.res_type = ",
    );
    sql.text(res_type).push(" AND r.res_id = ").text(res_id);
    Ok(sql
        .load::<PatientRow>(conn)?
        .into_iter()
        .map(|row| row.patient_id)
        .collect())
}

/// One version of `res_type/res_id`.
pub fn version(
    conn: &mut Conn,
    res_type: &str,
    res_id: &str,
    version_id: i64,
) -> diesel::QueryResult<Option<VersionRow>> {
    let mut sql = Sql::prepared(&format!(
        "SELECT {VERSION_COLUMNS} FROM resource_versions h WHERE h.res_type = "
    ));
    sql.text(res_type)
        .push(" AND h.res_id = ")
        .text(res_id)
        .push(" AND h.version_id = ")
        .int(version_id);
    Ok(sql.load(conn)?.pop())
}

/// A new version to write.
pub struct NewVersion<'a> {
    pub res_type: &'a str,
    pub res_id: &'a str,
    pub version_id: i64,
    pub last_updated: &'a str,
    pub deleted: bool,
    /// POST, PUT, PATCH or DELETE.
    pub method: &'a str,
    pub content: &'a str,
    pub index: &'a IndexEntries,
    /// Who deposits it: recorded with the first version only.
    pub author: Option<&'a Author>,
}

/// The authenticated depositor of a resource.
#[derive(Debug, Clone, PartialEq, Eq, QueryableByName)]
pub struct Author {
    #[diesel(sql_type = Text)]
    pub actor: String,
    #[diesel(sql_type = Text)]
    pub subject: String,
    #[diesel(sql_type = diesel::sql_types::Nullable<Text>)]
    pub organization: Option<String>,
    #[diesel(sql_type = Text)]
    pub created_at: String,
}

/// The depositor of a resource, if recorded.
pub fn author_of(conn: &mut Conn, pk: i64) -> diesel::QueryResult<Option<Author>> {
    let mut sql = Sql::prepared(
        "SELECT actor, subject, organization, created_at FROM resource_author WHERE resource_pk = ",
    );
    sql.int(pk);
    Ok(sql.load(conn)?.pop())
}

/// Who put a document's current MASQUE_PS on (R-ACC-7, R-MHD-7), if recorded.
pub fn masked_by(conn: &mut Conn, pk: i64) -> diesel::QueryResult<Option<(String, String)>> {
    #[derive(diesel::QueryableByName)]
    struct Masker {
        #[diesel(sql_type = Text)]
        actor: String,
        #[diesel(sql_type = Text)]
        subject: String,
    }
    let mut sql = Sql::prepared("SELECT actor, subject FROM document_masking WHERE resource_pk = ");
    sql.int(pk);
    Ok(sql
        .load::<Masker>(conn)?
        .pop()
        .map(|masker| (masker.actor, masker.subject)))
}

/// Records who masked a document (`Some`), or that it is no longer masked (`None`).
pub fn record_masking(
    conn: &mut Conn,
    pk: i64,
    masker: Option<(&str, &str)>,
) -> diesel::QueryResult<()> {
    let mut clear = Sql::new("DELETE FROM document_masking WHERE resource_pk = ");
    clear.int(pk);
    clear.execute(conn)?;
    if let Some((actor, subject)) = masker {
        let mut insert =
            Sql::new("INSERT INTO document_masking (resource_pk, actor, subject) VALUES (");
        insert
            .int(pk)
            .push(", ")
            .text(actor)
            .push(", ")
            .text(subject)
            .push(")");
        insert.execute(conn)?;
    }
    Ok(())
}

/// Writes a version: the current row, its search index and the history row. Call it
/// inside a write transaction.
pub fn write(conn: &mut Conn, version: &NewVersion<'_>) -> diesel::QueryResult<i64> {
    let pks = write_all(conn, std::slice::from_ref(version))?;
    pks.first().copied().ok_or(diesel::result::Error::NotFound)
}

/// Writes several versions of distinct resources with a few multi-row statements per
/// table (a bulk load, a transaction Bundle's entries), returning their row keys in
/// order. Call it inside a write transaction.
pub fn write_all(conn: &mut Conn, versions: &[NewVersion<'_>]) -> diesel::QueryResult<Vec<i64>> {
    #[derive(QueryableByName)]
    struct PkRow {
        #[diesel(sql_type = BigInt)]
        pk: i64,
        #[diesel(sql_type = Text)]
        res_type: String,
        #[diesel(sql_type = Text)]
        res_id: String,
    }
    // One statement cannot upsert the same row twice (PostgreSQL refuses it): the
    // versions of one resource go one by one, in order.
    let mut keys = std::collections::HashSet::new();
    if !versions.iter().all(|v| keys.insert((v.res_type, v.res_id))) {
        return versions
            .iter()
            .map(|version| write(conn, version))
            .collect();
    }
    let stored = |version: &NewVersion<'_>| -> String {
        if version.deleted {
            String::new()
        } else {
            version.content.to_owned()
        }
    };
    let mut pk_of = std::collections::HashMap::new();
    for upsert in multi_row(
        "INSERT INTO resources (res_type, res_id, version_id, last_updated, deleted, content) VALUES ",
        versions,
        " ON CONFLICT (res_type, res_id) DO UPDATE SET version_id = excluded.version_id, \
         last_updated = excluded.last_updated, deleted = excluded.deleted, content = excluded.content \
         RETURNING pk, res_type, res_id",
        |sql, version| {
            version_columns(sql, version);
            sql.text(stored(version));
        },
    ) {
        for row in upsert.load::<PkRow>(conn)? {
            pk_of.insert((row.res_type, row.res_id), row.pk);
        }
    }
    let pks = versions
        .iter()
        .map(|version| {
            pk_of
                .get(&(version.res_type.to_owned(), version.res_id.to_owned()))
                .copied()
                .ok_or(diesel::result::Error::NotFound)
        })
        .collect::<diesel::QueryResult<Vec<i64>>>()?;
    // A first version is written only where no row was (a purge cascades to the
    // index): only later versions have index rows to replace.
    let replaced: Vec<i64> = versions
        .iter()
        .zip(&pks)
        .filter(|(version, _)| version.version_id > 1)
        .map(|(_, pk)| *pk)
        .collect();
    if !replaced.is_empty() {
        for table in [
            "search_token",
            "search_string",
            "search_date",
            "search_reference",
            "resource_compartment",
        ] {
            for chunk in replaced.chunks(500) {
                let mut clear = Sql::new(&format!("DELETE FROM {table} WHERE resource_pk IN "));
                clear.int_list(chunk.iter().copied());
                clear.execute(conn)?;
            }
        }
    }
    let authors: Vec<(i64, &Author)> = versions
        .iter()
        .zip(&pks)
        .filter_map(|(version, pk)| version.author.map(|author| (*pk, author)))
        .collect();
    for record in multi_row(
        "INSERT INTO resource_author (resource_pk, actor, subject, organization, created_at) VALUES ",
        &authors,
        " ON CONFLICT (resource_pk) DO NOTHING",
        |sql, (pk, author)| {
            sql.int(*pk)
                .push(", ")
                .text(author.actor.as_str())
                .push(", ")
                .text(author.subject.as_str())
                .push(", ")
                .optional_text(author.organization.as_deref())
                .push(", ")
                .text(author.created_at.as_str());
        },
    ) {
        record.execute(conn)?;
    }
    let mut spaces_changed: Vec<&String> = versions
        .iter()
        .filter(|version| matches!(version.res_type, "Patient" | "Consent"))
        .flat_map(|version| &version.index.patients)
        .collect();
    spaces_changed.sort();
    spaces_changed.dedup();
    for patient in spaces_changed {
        super::access::bump_space_version(conn, patient)?;
    }
    // A deletion keeps its compartment (so its owner is told 410, not 404) and
    // nothing else: the service passes compartment-only entries.
    let indexed: Vec<(i64, &str, &IndexEntries)> = versions
        .iter()
        .zip(&pks)
        .map(|(version, pk)| (*pk, version.res_type, version.index))
        .collect();
    write_indexes(conn, &indexed)?;
    for history in multi_row(
        "INSERT INTO resource_versions (res_type, res_id, version_id, last_updated, deleted, method, content) VALUES ",
        versions,
        "",
        |sql, version| {
            version_columns(sql, version);
            sql.text(version.method).push(", ").text(stored(version));
        },
    ) {
        history.execute(conn)?;
    }
    Ok(pks)
}

/// `res_type, res_id, version_id, last_updated, deleted, ` of a version, as both
/// `resources` and `resource_versions` start their rows.
fn version_columns(sql: &mut Sql, version: &NewVersion<'_>) {
    sql.text(version.res_type)
        .push(", ")
        .text(version.res_id)
        .push(", ")
        .int(version.version_id)
        .push(", ")
        .text(version.last_updated)
        .push(", ")
        .boolean(version.deleted)
        .push(", ");
}

/// One index row: the resource's key and type, then the table's own values.
type IndexRow<'a> = (i64, &'a str, Vec<Option<String>>);

/// Inserts index rows (`columns` names the table and its columns).
fn insert_rows(conn: &mut Conn, columns: &str, rows: &[IndexRow<'_>]) -> diesel::QueryResult<()> {
    for insert in multi_row(
        &format!("INSERT INTO {columns} VALUES "),
        rows,
        "",
        |sql, (pk, res_type, values)| {
            sql.int(*pk).push(", ").text(*res_type);
            for value in values {
                sql.push(", ").optional_text(value.as_deref());
            }
        },
    ) {
        insert.execute(conn)?;
    }
    Ok(())
}

/// Writes the index of several resources with one statement per table.
pub(super) fn write_indexes(
    conn: &mut Conn,
    resources: &[(i64, &str, &IndexEntries)],
) -> diesel::QueryResult<()> {
    let mut tokens = Vec::new();
    let mut strings = Vec::new();
    let mut dates = Vec::new();
    let mut references = Vec::new();
    let mut patients = Vec::new();
    for &(pk, res_type, index) in resources {
        tokens.extend(index.tokens.iter().map(|entry| {
            (
                pk,
                res_type,
                vec![
                    Some(entry.param.to_owned()),
                    entry.system.clone(),
                    Some(entry.code.clone()),
                ],
            )
        }));
        strings.extend(index.strings.iter().map(|entry| {
            (
                pk,
                res_type,
                vec![
                    Some(entry.param.to_owned()),
                    Some(entry.normalized.clone()),
                    Some(entry.exact.clone()),
                ],
            )
        }));
        dates.extend(index.dates.iter().map(|entry| {
            (
                pk,
                res_type,
                vec![
                    Some(entry.param.to_owned()),
                    Some(entry.range.low.clone()),
                    Some(entry.range.high.clone()),
                ],
            )
        }));
        references.extend(index.references.iter().map(|entry| {
            (
                pk,
                res_type,
                vec![
                    Some(entry.param.to_owned()),
                    Some(entry.target_type.clone()),
                    Some(entry.target_id.clone()),
                ],
            )
        }));
        let (doc_system, doc_code) = sole_document_type(res_type, index).unzip();
        patients.extend(index.patients.iter().map(|patient| {
            (
                pk,
                res_type,
                vec![Some(patient.clone()), doc_system.clone(), doc_code.clone()],
            )
        }));
    }
    insert_rows(
        conn,
        "search_token (resource_pk, res_type, param, system, code)",
        &tokens,
    )?;
    insert_rows(
        conn,
        "search_string (resource_pk, res_type, param, normalized, exact)",
        &strings,
    )?;
    insert_rows(
        conn,
        "search_date (resource_pk, res_type, param, low, high)",
        &dates,
    )?;
    insert_rows(
        conn,
        "search_reference (resource_pk, res_type, param, target_type, target_id)",
        &references,
    )?;
    insert_rows(
        conn,
        "resource_compartment (resource_pk, res_type, patient_id, doc_system, doc_code)",
        &patients,
    )?;
    Ok(())
}

/// A DocumentReference's one type coding with a system, when it has exactly one
/// (`(system, code)`; codings without a system do not count): what R-ACC-6 decides
/// it by, kept on its compartment rows so that a search of the space decides it
/// there (`Narrowing::apply`). `None` for every other resource, and for a document
/// with none or several, which the search probes in `search_token`.
fn sole_document_type(res_type: &str, index: &IndexEntries) -> Option<(String, String)> {
    if res_type != "DocumentReference" {
        return None;
    }
    let mut typed = index
        .tokens
        .iter()
        .filter(|entry| entry.param == "type")
        .filter_map(|entry| Some((entry.system.as_deref()?, entry.code.as_str())));
    let first = typed.next()?;
    if typed.any(|other| other != first) {
        return None;
    }
    Some((first.0.to_owned(), first.1.to_owned()))
}

/// Which versions a history request covers.
pub struct HistoryQuery<'a> {
    pub res_type: &'a str,
    /// `Some` for instance history.
    pub res_id: Option<&'a str>,
    /// `_since`, in the index format.
    pub since: Option<String>,
    pub count: usize,
    pub offset: usize,
    /// Only resources whose current version lies in these patients' compartments.
    pub compartment: Option<&'a [String]>,
}

fn history_where(query: &HistoryQuery<'_>) -> Sql {
    let mut sql = Sql::new(" WHERE h.res_type = ");
    sql.text(query.res_type);
    if let Some(id) = query.res_id {
        sql.push(" AND h.res_id = ").text(id);
    }
    if let Some(since) = &query.since {
        sql.push(" AND h.last_updated >= ").text(since.as_str());
    }
    if let Some(patients) = query.compartment {
        sql.push(
            " AND EXISTS (SELECT 1 FROM resources r JOIN resource_compartment c ON c.resource_pk = r.pk \
             WHERE r.res_type = h.res_type AND r.res_id = h.res_id AND c.patient_id IN ",
        );
        sql.text_list(patients.iter().map(String::as_str)).push(")");
    }
    sql
}

/// A page of history candidates, newest first, without their contents (the access
/// gate decides each one on its [`complete_version`]).
pub fn history(conn: &mut Conn, query: &HistoryQuery<'_>) -> diesel::QueryResult<Vec<VersionHead>> {
    let mut page = Sql::new(&format!(
        "SELECT {VERSION_HEAD_COLUMNS} FROM resource_versions h"
    ));
    page.append(history_where(query))
        .push(" ORDER BY h.last_updated DESC, h.version_id DESC, h.res_id DESC LIMIT ")
        .int(query.count as i64)
        .push(" OFFSET ")
        .int(query.offset as i64);
    page.load(conn)
}
