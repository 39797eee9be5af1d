//! Compiles a parsed search and the access narrowing into one SQL query, so that
//! pages are full and totals exact for what the caller may see.

use super::audit_index;
use super::dialect::Conn;
use super::resources::{HEAD_COLUMNS, RowHead};
use super::sql::{CountRow, Sql};
use crate::fhir::date::DateRange;
use crate::fhir::search::{
    Criterion, Include, Prefix, SearchRequest, SortKey, StringMode, SystemMatch,
};
use diesel::QueryableByName;

/// Which document types a search may return (R-ACC-6).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TypeFilter {
    /// Any type but `excluded` `(system, code)`, of the code systems `systems` only.
    Excluding {
        excluded: Vec<(String, String)>,
        systems: Vec<String>,
    },
    /// Only these.
    Only(Vec<(String, String)>),
}

/// Row predicates the access pipeline adds to every query: they come from the rules,
/// never from the client.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Narrowing {
    /// When set, only resources in these patients' compartments.
    pub compartment: Option<Vec<String>>,
    /// DocumentReference types the caller may read (R-ACC-6).
    pub document_types: Option<TypeFilter>,
    /// Rows carrying one of these security-label codes are hidden (R-ACC-7, R-PAT-5)…
    pub hidden_labels: Vec<String>,
    /// …except those this professional deposited (R-ACC-7).
    pub hidden_labels_author: Option<String>,
    /// INVISIBLE_PATIENT rows deposited after this instant are hidden (R-PAT-1).
    pub invisible_patient_since: Option<String>,
    /// Only messages whose sender or a recipient has this IdNat_PS (R-MSG-5), or
    /// AuditEvents whose agent has it (R-ACC-11).
    pub participant: Option<String>,
    /// Only resources this actor deposited (a system's conditional create, R-ACC-9).
    pub deposited_by: Option<Depositor>,
    /// AuditEvents of refusals answered "not known" are left out (a professional's
    /// own actions searched by space: they concern no space the caller was told of).
    pub without_concealed: bool,
    /// Lists (R-MHD-5): one naming DocumentReferences is kept only when one of them
    /// is live and passes this narrowing (the caller's own for documents), so that a
    /// SubmissionSet of hidden documents does not tell of them by its metadata.
    pub list_documents: Option<Box<Narrowing>>,
}

/// ` OR (<system> = ? AND <code> = ?)` for each type.
fn or_types(sql: &mut Sql, system: &str, code: &str, types: &[(String, String)]) {
    for (type_system, type_code) in types {
        sql.push(&format!(" OR ({system} = "))
            .text(type_system.as_str())
            .push(&format!(" AND {code} = "))
            .text(type_code.as_str())
            .push(")");
    }
}

/// R-ACC-6 on a document's one typed coding, from its compartment row `member`.
fn sole_type_passes(sql: &mut Sql, member: &str, filter: &TypeFilter) {
    let (system, code) = (format!("{member}.doc_system"), format!("{member}.doc_code"));
    match filter {
        TypeFilter::Excluding { excluded, systems } => {
            sql.push(&format!("{system} IN "));
            sql.text_list(systems.iter().map(String::as_str));
            sql.push(" AND NOT (1 = 0");
            or_types(sql, &system, &code, excluded);
            sql.push(")");
        }
        TypeFilter::Only(types) => {
            sql.push("(1 = 0");
            or_types(sql, &system, &code, types);
            sql.push(")");
        }
    }
}

/// R-ACC-6 on every type coding of the document whose row key is `pk`, probed in
/// `search_token`.
fn type_probes(sql: &mut Sql, pk: &str, filter: &TypeFilter) {
    match filter {
        TypeFilter::Excluding { excluded, systems } => {
            // A type the matrix can read (a coding with system and code)…
            sql.push(&format!(
                "EXISTS (SELECT 1 FROM search_token t WHERE t.resource_pk = {pk} AND t.param = 'type' AND t.system IS NOT NULL)"
            ));
            // …and none of a system it does not read (a type it cannot decide), nor
            // one it excludes: one probe.
            sql.push(&format!(
                " AND NOT EXISTS (SELECT 1 FROM search_token t WHERE t.resource_pk = {pk} AND t.param = 'type' AND ((t.system IS NOT NULL AND t.system NOT IN "
            ));
            sql.text_list(systems.iter().map(String::as_str)).push(")");
            or_types(sql, "t.system", "t.code", excluded);
            sql.push("))");
        }
        TypeFilter::Only(types) => {
            sql.push(&format!(
                "EXISTS (SELECT 1 FROM search_token t WHERE t.resource_pk = {pk} AND t.param = 'type' AND (1 = 0"
            ));
            or_types(sql, "t.system", "t.code", types);
            sql.push("))");
        }
    }
}

/// A depositor, as R-ACC-9 recognises one: the same actor and subject, or for a
/// system, the same organisation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Depositor {
    pub actor: String,
    pub subject: String,
    pub organization: Option<String>,
}

impl Narrowing {
    /// No narrowing (the caller's rights cover every row of the type).
    pub fn none() -> Self {
        Narrowing::default()
    }

    /// Appends the predicates. The compartment is a semi-join on its index, which
    /// also decides a document's type when its row carries it; the other
    /// predicates are correlated `EXISTS` probes on `resource_pk`, so their cost follows
    /// the candidate rows (one space's documents), not every document of a type or
    /// label in the store. Each row is decided on its own: what the search costs
    /// depends on the rows it walks, not on what the others hold.
    fn apply(&self, sql: &mut Sql, alias: &str, res_type: &str) {
        // A document's type is decided on its compartment row when the search keeps
        // to compartments (a professional's, always): its one typed coding is
        // there (`resources::sole_document_type`), read from the index the
        // semi-join walks anyway; only a document with none or several is probed.
        let types_on_compartment = self.compartment.is_some() && res_type == "DocumentReference";
        if let Some(patients) = &self.compartment {
            let member = format!("{alias}_c");
            sql.push(&format!(
                " AND {alias}.pk IN (SELECT {member}.resource_pk FROM resource_compartment {member} WHERE {member}.res_type = "
            ));
            sql.text(res_type)
                .push(&format!(" AND {member}.patient_id IN "));
            sql.text_list(patients.iter().map(String::as_str));
            if types_on_compartment && let Some(filter) = &self.document_types {
                // A CASE, not `(… AND …) OR (… AND …)`: PostgreSQL's generic plan
                // took the latter for a selective filter and probed the compartment
                // once per document, where this keeps its one index-only walk.
                sql.push(&format!(
                    " AND CASE WHEN {member}.doc_code IS NOT NULL THEN "
                ));
                sole_type_passes(sql, &member, filter);
                sql.push(" ELSE ");
                type_probes(sql, &format!("{member}.resource_pk"), filter);
                sql.push(" END");
            }
            if res_type == audit_index::AUDIT_EVENT {
                audit_index::union_events_of_spaces(sql, patients.iter().map(String::as_str));
            }
            sql.push(")");
        }
        if !types_on_compartment && let Some(filter) = &self.document_types {
            sql.push(" AND ");
            type_probes(sql, &format!("{alias}.pk"), filter);
        }
        if !self.hidden_labels.is_empty() {
            sql.push(&format!(
                " AND (NOT EXISTS (SELECT 1 FROM search_token t WHERE t.resource_pk = {alias}.pk AND t.param = 'security-label' AND t.code IN "
            ));
            sql.text_list(self.hidden_labels.iter().map(String::as_str))
                .push(")");
            if let Some(author) = &self.hidden_labels_author {
                sql.push(&format!(
                    " OR EXISTS (SELECT 1 FROM resource_author a WHERE a.resource_pk = {alias}.pk AND a.actor = 'professional' AND a.subject = "
                ));
                sql.text(author.as_str()).push(")");
            }
            sql.push(")");
        }
        if let Some(participant) = &self.participant {
            let trace = res_type == audit_index::AUDIT_EVENT;
            if trace {
                // Their own actions, but not the events kept from them.
                sql.push(&format!(
                    " AND NOT EXISTS (SELECT 1 FROM audit_index ai WHERE ai.resource_pk = {alias}.pk AND ai.withheld = {})",
                    super::dialect::bool_literal(true)
                ));
                sql.push(&format!(
                    " AND (EXISTS (SELECT 1 FROM audit_index ai WHERE ai.resource_pk = {alias}.pk AND ai.participant = "
                ));
                sql.text(participant.as_str()).push(") OR");
            } else {
                sql.push(" AND");
            }
            sql.push(&format!(
                " EXISTS (SELECT 1 FROM search_token t WHERE t.resource_pk = {alias}.pk AND t.param = 'participant' AND t.system = "
            ));
            sql.text(crate::fhir::IDNAT_PS_SYSTEM)
                .push(" AND t.code = ")
                .text(participant.as_str())
                .push(")");
            if trace {
                sql.push(")");
            }
        }
        if let Some(depositor) = &self.deposited_by {
            sql.push(&format!(
                " AND EXISTS (SELECT 1 FROM resource_author a WHERE a.resource_pk = {alias}.pk AND a.actor = "
            ));
            sql.text(depositor.actor.as_str())
                .push(" AND (a.subject = ")
                .text(depositor.subject.as_str());
            if let Some(organization) = &depositor.organization {
                sql.push(" OR a.organization = ")
                    .text(organization.as_str());
            }
            sql.push("))");
        }
        // Only events have it: it lives in their own index.
        if self.without_concealed {
            sql.push(&format!(
                " AND NOT EXISTS (SELECT 1 FROM audit_index ai WHERE ai.resource_pk = {alias}.pk AND ai.concealed = {})",
                super::dialect::bool_literal(true)
            ));
        }
        if let Some(documents) = &self.list_documents {
            let item = format!("{alias}_item");
            let document = format!("{alias}_doc");
            sql.push(&format!(
                " AND (NOT EXISTS (SELECT 1 FROM search_reference {item} WHERE {item}.resource_pk = {alias}.pk AND {item}.res_type = 'List' AND {item}.param = 'item' AND {item}.target_type = 'DocumentReference') \
                 OR EXISTS (SELECT 1 FROM search_reference {item} JOIN resources {document} ON {document}.res_type = 'DocumentReference' AND {document}.res_id = {item}.target_id \
                 WHERE {item}.resource_pk = {alias}.pk AND {item}.res_type = 'List' AND {item}.param = 'item' AND {item}.target_type = 'DocumentReference' AND {document}.deleted = {}",
                super::dialect::bool_literal(false)
            ));
            documents.apply(sql, &document, "DocumentReference");
            sql.push("))");
        }
        if let Some(since) = &self.invisible_patient_since {
            sql.push(&format!(
                " AND (NOT EXISTS (SELECT 1 FROM search_token t WHERE t.resource_pk = {alias}.pk AND t.param = 'security-label' AND t.code = 'INVISIBLE_PATIENT') \
                 OR EXISTS (SELECT 1 FROM resource_author a WHERE a.resource_pk = {alias}.pk AND a.created_at <= "
            ));
            sql.text(since.as_str()).push("))");
        }
    }
}

/// ` AND (…)`: the row's `last_updated` in any of these date ranges (`_lastUpdated`,
/// and the trace's `date`, which is its `last_updated`).
fn last_updated_condition(sql: &mut Sql, alias: &str, values: &[(Prefix, DateRange)]) {
    sql.push(" AND (");
    for (index, (prefix, range)) in values.iter().enumerate() {
        if index > 0 {
            sql.push(" OR ");
        }
        let column = format!("{alias}.last_updated");
        date_condition(sql, &column, &column, *prefix, range);
    }
    sql.push(")");
}

/// One page of results with the total when asked or known.
pub struct SearchPage {
    /// The page's rows, without their contents ([`super::resources::complete`]).
    pub rows: Vec<RowHead>,
    /// With [`run_with_contents`] and a page of at most
    /// [`super::resources::COMPLETED_TOGETHER`] rows: each row's content, fetched
    /// with the page, or `None` when it is large. Empty otherwise.
    pub contents: Vec<Option<String>>,
    pub total: Option<i64>,
    /// Whether rows beyond this page exist.
    pub has_more: bool,
    /// The access version of the space named to [`run_with_contents`], as of the
    /// page's rows; `None` when not asked, or when the page has no row to carry it.
    pub space_version: Option<i64>,
}

fn date_condition(sql: &mut Sql, low: &str, high: &str, prefix: Prefix, range: &DateRange) {
    match prefix {
        Prefix::Eq => {
            sql.push(&format!("({low} >= ")).text(range.low.as_str());
            sql.push(&format!(" AND {high} <= "))
                .text(range.high.as_str())
                .push(")");
        }
        Prefix::Ne => {
            sql.push(&format!("({low} < ")).text(range.low.as_str());
            sql.push(&format!(" OR {high} > "))
                .text(range.high.as_str())
                .push(")");
        }
        Prefix::Gt => {
            sql.push(&format!("{high} > ")).text(range.high.as_str());
        }
        Prefix::Ge => {
            sql.push(&format!("{high} >= ")).text(range.low.as_str());
        }
        Prefix::Lt => {
            sql.push(&format!("{low} < ")).text(range.low.as_str());
        }
        Prefix::Le => {
            sql.push(&format!("{low} <= ")).text(range.high.as_str());
        }
    }
}

/// An AuditEvent's `date` (its `recorded`) is its row's `last_updated`: the
/// committer writes both from one value, and the trace keeps no date rows.
fn recorded_is_last_updated(res_type: &str, param: &str) -> bool {
    res_type == audit_index::AUDIT_EVENT && param == "date"
}

fn like_escape(text: &str) -> String {
    text.replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_")
}

/// Appends ` AND <criterion>` for rows of alias `alias`, of type `res_type`.
fn criterion(sql: &mut Sql, alias: &str, res_type: &str, criterion: &Criterion) {
    match criterion {
        Criterion::Id(ids) => {
            sql.push(&format!(" AND {alias}.res_id IN "));
            sql.text_list(ids.iter().map(String::as_str));
        }
        Criterion::LastUpdated(values) => {
            last_updated_condition(sql, alias, values);
        }
        Criterion::Token {
            param,
            values,
            negated,
        } => {
            sql.push(&format!(
                " AND {}({alias}.pk IN (SELECT resource_pk FROM search_token WHERE res_type = ",
                if *negated { "NOT " } else { "" }
            ));
            sql.text(res_type).push(" AND param = ");
            sql.text(*param).push(" AND (");
            for (index, value) in values.iter().enumerate() {
                if index > 0 {
                    sql.push(" OR ");
                }
                sql.push("(1 = 1");
                if let Some(code) = &value.code {
                    sql.push(" AND code = ").text(code.as_str());
                }
                match &value.system {
                    SystemMatch::Any => {}
                    SystemMatch::Absent => {
                        sql.push(" AND system IS NULL");
                    }
                    SystemMatch::Is(system) => {
                        sql.push(" AND system = ").text(system.as_str());
                    }
                }
                sql.push(")");
            }
            sql.push("))");
            audit_index::or_token_column(sql, alias, res_type, param, values);
            sql.push(")");
        }
        Criterion::String {
            param,
            mode,
            values,
        } => {
            sql.push(&format!(
                " AND {alias}.pk IN (SELECT resource_pk FROM search_string WHERE res_type = "
            ));
            sql.text(res_type).push(" AND param = ");
            sql.text(*param).push(" AND (");
            for (index, value) in values.iter().enumerate() {
                if index > 0 {
                    sql.push(" OR ");
                }
                match mode {
                    StringMode::Exact => {
                        sql.push("exact = ").text(value.as_str());
                    }
                    StringMode::StartsWith => {
                        let pattern =
                            format!("{}%", like_escape(&crate::fhir::extract::normalize(value)));
                        sql.push("normalized LIKE ")
                            .text(pattern)
                            .push(" ESCAPE '\\'");
                    }
                    StringMode::Contains => {
                        let pattern =
                            format!("%{}%", like_escape(&crate::fhir::extract::normalize(value)));
                        sql.push("normalized LIKE ")
                            .text(pattern)
                            .push(" ESCAPE '\\'");
                    }
                }
            }
            sql.push("))");
        }
        Criterion::Date { param, values } if recorded_is_last_updated(res_type, param) => {
            last_updated_condition(sql, alias, values);
        }
        Criterion::Date { param, values } => {
            sql.push(&format!(
                " AND {alias}.pk IN (SELECT resource_pk FROM search_date WHERE res_type = "
            ));
            sql.text(res_type).push(" AND param = ");
            sql.text(*param).push(" AND (");
            for (index, (prefix, range)) in values.iter().enumerate() {
                if index > 0 {
                    sql.push(" OR ");
                }
                date_condition(sql, "low", "high", *prefix, range);
            }
            sql.push("))");
        }
        Criterion::Reference { param, values } => {
            sql.push(&format!(
                " AND {alias}.pk IN (SELECT resource_pk FROM search_reference WHERE res_type = "
            ));
            sql.text(res_type).push(" AND param = ");
            sql.text(*param).push(" AND (");
            for (index, (target_type, target_id)) in values.iter().enumerate() {
                if index > 0 {
                    sql.push(" OR ");
                }
                sql.push("(target_id = ").text(target_id.as_str());
                if let Some(target_type) = target_type {
                    sql.push(" AND target_type = ").text(target_type.as_str());
                }
                sql.push(")");
            }
            sql.push(")");
            if audit_index::holds_space_of(res_type, param) {
                audit_index::union_events_of_spaces(
                    sql,
                    values
                        .iter()
                        .filter(|(target_type, _)| {
                            target_type.as_deref().is_none_or(|t| t == "Patient")
                        })
                        .map(|(_, target_id)| target_id.as_str()),
                );
            }
            audit_index::union_events_naming(
                sql,
                res_type,
                param,
                values
                    .iter()
                    .map(|(target_type, target_id)| (target_type.as_deref(), target_id.as_str())),
            );
            sql.push(")");
        }
        Criterion::Chain {
            param,
            target,
            inner,
        } => {
            let target_alias = format!("{alias}c");
            let live = super::dialect::bool_literal(false);
            sql.push(&format!(
                " AND {alias}.pk IN (SELECT sr.resource_pk FROM search_reference sr \
                 JOIN resources {target_alias} ON {target_alias}.res_type = sr.target_type \
                 AND {target_alias}.res_id = sr.target_id AND {target_alias}.deleted = {live} \
                 WHERE sr.res_type = "
            ));
            sql.text(res_type)
                .push(" AND sr.param = ")
                .text(*param)
                .push(" AND sr.target_type = ")
                .text(*target);
            self::criterion(sql, &target_alias, target, inner);
            // The trace's spaces, in its own index: the same inner criteria on them.
            if audit_index::holds_space_of(res_type, param) && *target == "Patient" {
                sql.push(&format!(
                    " UNION ALL SELECT ai.resource_pk FROM audit_index ai \
                     JOIN resources {target_alias} ON {target_alias}.res_type = 'Patient' \
                     AND {target_alias}.res_id = ai.space AND {target_alias}.deleted = {live} \
                     WHERE ai.space <> ''"
                ));
                self::criterion(sql, &target_alias, target, inner);
            }
            // No arm for the trace's other entity (`audit_index.entity_*`): the gate
            // refuses chains through `entity` (`Gate::entities_searchable`); opened,
            // they would need one, as the spaces have above.
            sql.push(")");
        }
    }
}

/// `FROM … WHERE …` for the main results.
fn from_where(request: &SearchRequest, narrowing: &Narrowing, sort_join: Option<&str>) -> Sql {
    let mut sql = Sql::new(" FROM resources r");
    if let Some(param) = sort_join {
        sql.push(" LEFT JOIN search_date sd ON sd.resource_pk = r.pk AND sd.param = ")
            .text(param);
    }
    sql.push(" WHERE r.res_type = ").text(request.resource.name);
    sql.push(&format!(
        " AND r.deleted = {}",
        super::dialect::bool_literal(false)
    ));
    for item in &request.criteria {
        criterion(&mut sql, "r", request.resource.name, item);
    }
    narrowing.apply(&mut sql, "r", request.resource.name);
    sql
}

/// Runs the search: one page, and the total when `_total=accurate`, `_summary=count`,
/// or when the page shows that nothing is left beyond it.
pub fn run(
    conn: &mut Conn,
    request: &SearchRequest,
    narrowing: &Narrowing,
) -> diesel::QueryResult<SearchPage> {
    page(conn, request, narrowing, false, None)
}

/// [`run`], and, when the page has at most [`super::resources::COMPLETED_TOGETHER`]
/// rows, their small contents in the same statement ([`SearchPage::contents`]):
/// one round trip fewer for a page whose bodies are all to be released. With
/// `space`, the page's rows also carry that space's access version
/// ([`SearchPage::space_version`]), read in the same statement, so as of the same
/// snapshot as the rows.
pub fn run_with_contents(
    conn: &mut Conn,
    request: &SearchRequest,
    narrowing: &Narrowing,
    space: Option<&str>,
) -> diesel::QueryResult<SearchPage> {
    page(conn, request, narrowing, true, space)
}

fn page(
    conn: &mut Conn,
    request: &SearchRequest,
    narrowing: &Narrowing,
    contents_wanted: bool,
    space: Option<&str>,
) -> diesel::QueryResult<SearchPage> {
    let count_total = |conn: &mut Conn| -> diesel::QueryResult<i64> {
        let mut count = Sql::new("SELECT COUNT(*) AS n");
        count.append(from_where(request, narrowing, None));
        Ok(count
            .kept_while_room()
            .load::<CountRow>(conn)?
            .pop()
            .map_or(0, |row| row.n))
    };
    if request.summary_count || request.count == 0 {
        return Ok(SearchPage {
            rows: Vec::new(),
            contents: Vec::new(),
            total: Some(count_total(conn)?),
            has_more: false,
            space_version: None,
        });
    }
    let res_type = request.resource.name;
    let sort_param = request.sort.iter().find_map(|sort| match sort.key {
        SortKey::Date(param) if !recorded_is_last_updated(res_type, param) => Some(param),
        _ => None,
    });
    // An exact total comes with the page, counted by the same statement over the
    // same criteria (a window over every match, before the limit): one statement
    // and one round trip instead of two. Not when a sort joins its dates, whose
    // rows may repeat a resource.
    let total_with_page = request.total_accurate && sort_param.is_none();
    // The page's row beyond `count` tells whether more follow; its content is
    // fetched too, and dropped. PostgreSQL only: there the page's bodies cost a
    // round trip of their own, and its plan runs the content's subquery for the
    // page's rows only; SQLite's plan runs it for every match, before its sort.
    let with_contents = contents_wanted
        && request.count <= super::resources::COMPLETED_TOGETHER
        && matches!(super::dialect::kind(conn), super::dialect::Kind::Postgres);
    let mut page = Sql::new(&format!(
        "SELECT {HEAD_COLUMNS}, {} AS total, ",
        if total_with_page {
            "COUNT(*) OVER ()"
        } else {
            "CAST(NULL AS BIGINT)"
        }
    ));
    if with_contents {
        super::resources::push_small_content_column(conn, &mut page);
    } else {
        page.push("CAST(NULL AS TEXT) AS content");
    }
    // A subquery of no row of the page's: evaluated once per statement.
    match space {
        Some(space) => {
            page.push(", COALESCE((SELECT version FROM space_access WHERE patient_id = ")
                .text(space)
                .push("), 0) AS space_version");
        }
        None => {
            page.push(", CAST(NULL AS BIGINT) AS space_version");
        }
    }
    page.append(from_where(request, narrowing, sort_param));
    page.push(" ORDER BY ");
    for sort in &request.sort {
        let column = match sort.key {
            SortKey::LastUpdated => "r.last_updated",
            SortKey::Id => "r.res_id",
            SortKey::Date(param) if recorded_is_last_updated(res_type, param) => "r.last_updated",
            SortKey::Date(_) => "sd.low",
        };
        page.push(&format!(
            "{column} {}, ",
            if sort.descending { "DESC" } else { "ASC" }
        ));
    }
    // Ties keep insertion order in the direction of the first sort key.
    let newest_first = request.sort.first().is_some_and(|sort| sort.descending);
    page.push(if newest_first {
        "r.pk DESC LIMIT "
    } else {
        "r.pk ASC LIMIT "
    })
    .int(request.count as i64 + 1)
    .push(" OFFSET ")
    .int(request.offset as i64);
    let loaded: Vec<PageRow> = page.kept_while_room().load(conn)?;
    let counted = loaded.first().and_then(|row| row.total);
    let space_version = loaded.first().and_then(|row| row.space_version);
    let (mut rows, mut contents): (Vec<RowHead>, Vec<Option<String>>) = loaded
        .into_iter()
        .map(|row| (row.head, row.content))
        .unzip();
    let has_more = rows.len() > request.count;
    rows.truncate(request.count);
    if with_contents {
        contents.truncate(request.count);
    } else {
        contents.clear();
    }
    let total = if request.total_accurate {
        // A page past the last match has no row to carry the count.
        Some(match counted {
            Some(total) => total,
            None => count_total(conn)?,
        })
    } else if !has_more && (request.offset == 0 || !rows.is_empty()) {
        Some((request.offset + rows.len()) as i64)
    } else {
        None
    };
    Ok(SearchPage {
        rows,
        contents,
        total,
        has_more,
        space_version,
    })
}

/// A page's row, with the number of every match when the page counts them
/// (`COUNT(*) OVER ()`) and its small content when it is fetched with the page.
#[derive(QueryableByName)]
struct PageRow {
    #[diesel(embed)]
    head: RowHead,
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::BigInt>)]
    total: Option<i64>,
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Text>)]
    content: Option<String>,
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::BigInt>)]
    space_version: Option<i64>,
}

/// Resources that `include.param` of the given rows points at (`_include`).
pub fn included(
    conn: &mut Conn,
    pks: &[i64],
    include: &Include,
    limit: usize,
) -> diesel::QueryResult<Vec<RowHead>> {
    if pks.is_empty() {
        return Ok(Vec::new());
    }
    let mut sql = Sql::new(&format!(
        "SELECT DISTINCT {HEAD_COLUMNS} FROM (SELECT target_type, target_id FROM search_reference \
         WHERE param = "
    ));
    sql.text(include.param.name);
    if let Some(target) = &include.target_type {
        sql.push(" AND target_type = ").text(target.as_str());
    }
    sql.push(" AND resource_pk IN ")
        .int_list(pks.iter().copied());
    // The trace's spaces, in its own index.
    if audit_index::holds_space_of(include.source.name, include.param.name)
        && include
            .target_type
            .as_deref()
            .is_none_or(|target| target == "Patient")
    {
        sql.push(
            " UNION ALL SELECT 'Patient' AS target_type, space AS target_id FROM audit_index \
             WHERE space <> '' AND resource_pk IN ",
        )
        .int_list(pks.iter().copied());
    }
    if audit_index::holds_entity_of(include.source.name, include.param.name) {
        sql.push(
            " UNION ALL SELECT entity_type AS target_type, entity_id AS target_id FROM audit_index \
             WHERE entity_id <> ''",
        );
        if let Some(target) = &include.target_type {
            sql.push(" AND entity_type = ").text(target.as_str());
        }
        sql.push(" AND resource_pk IN ")
            .int_list(pks.iter().copied());
    }
    sql.push(&format!(
        ") sr JOIN resources r ON r.res_type = sr.target_type AND r.res_id = sr.target_id \
         AND r.deleted = {} ORDER BY r.pk LIMIT ",
        super::dialect::bool_literal(false)
    ))
    .int(limit as i64);
    sql.load(conn)
}

/// Resources of `include.source` whose `include.param` points at one of `targets`
/// (`_revinclude`); the caller checks each row.
pub fn rev_included(
    conn: &mut Conn,
    target_type: &str,
    target_ids: &[&str],
    include: &Include,
    limit: usize,
) -> diesel::QueryResult<Vec<RowHead>> {
    if target_ids.is_empty() {
        return Ok(Vec::new());
    }
    let mut sql = Sql::new(&format!(
        "SELECT {HEAD_COLUMNS} FROM resources r WHERE r.res_type = "
    ));
    sql.text(include.source.name);
    sql.push(&format!(
        " AND r.deleted = {}",
        super::dialect::bool_literal(false)
    ));
    sql.push(" AND r.pk IN (SELECT resource_pk FROM search_reference WHERE res_type = ")
        .text(include.source.name)
        .push(" AND param = ")
        .text(include.param.name)
        .push(" AND target_type = ")
        .text(target_type)
        .push(" AND target_id IN ")
        .text_list(target_ids.iter().copied());
    if audit_index::holds_space_of(include.source.name, include.param.name)
        && target_type == "Patient"
    {
        audit_index::union_events_of_spaces(&mut sql, target_ids.iter().copied());
    }
    if audit_index::holds_entity_of(include.source.name, include.param.name) {
        sql.push(" UNION ALL SELECT resource_pk FROM audit_index WHERE entity_type = ")
            .text(target_type)
            .push(" AND entity_id IN ")
            .text_list(target_ids.iter().copied());
    }
    sql.push(")");
    sql.push(" ORDER BY r.pk LIMIT ").int(limit as i64);
    sql.load(conn)
}
