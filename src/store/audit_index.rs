//! The trace's own index (SPEC §8): one `audit_index` row per indexed AuditEvent
//! holds what the trace's readers narrow by, where the generic index tables took
//! nine rows (three B-trees each) per event, written for every answered request.
//!
//! - `space`: the space the event concerns (R-PAT-4), its compartment, which is
//!   also its `patient` and `entity` Patient reference;
//! - `participant`: its professional agent's IdNat_PS (R-ACC-11);
//! - `entity_type` / `entity_id`: the resource it names beside its space (the
//!   document read, the List searched…), its `entity` reference when it has one;
//! - `concealed`: a refusal answered "not known" (the space is not told to its
//!   professional);
//! - `withheld`: an event its professional does not read (a request's other event
//!   in a space the answer did not tell them of, see `audit::event::build`);
//! - `recorded`: its `date`, which is also the `last_updated` of its row (the
//!   committer writes both from one value), so that searches compare that column;
//! - the codes of its `type`, its REST `subtype` and its `outcome`
//!   ([`TOKEN_COLUMNS`]), compared row by row on the events other criteria found.
//!
//! A value that does not fit a column (two spaces, two professionals) stays in the
//! generic tables: every search arm here reads the column beside them.

use super::dialect::Conn;
use super::sql::{Sql, multi_row};
use crate::fhir::definitions::{CONCEALED, PARTICIPANT, WITHHELD};
use crate::fhir::extract::IndexEntries;
use crate::fhir::search::{SystemMatch, TokenValue};

/// The trace's AuditEvent type.
pub const AUDIT_EVENT: &str = "AuditEvent";

/// A token parameter of the trace held in a column: the one code of its value in
/// `system` (`None`: a code without system).
pub struct TokenColumn {
    pub param: &'static str,
    pub system: Option<&'static str>,
    pub column: &'static str,
}

/// The trace's token columns, in [`TraceColumns::codes`] order.
pub const TOKEN_COLUMNS: [TokenColumn; 3] = [
    TokenColumn {
        param: "type",
        system: Some("http://terminology.hl7.org/CodeSystem/audit-event-type"),
        column: "event_type",
    },
    // The REST interaction; an IHE transaction beside it (R-MHD-8) stays generic.
    TokenColumn {
        param: "subtype",
        system: Some("http://hl7.org/fhir/restful-interaction"),
        column: "interaction",
    },
    TokenColumn {
        param: "outcome",
        system: None,
        column: "outcome",
    },
];

/// One event's row.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TraceColumns {
    /// '' when the event names no single space.
    pub space: String,
    pub recorded: String,
    /// '' when the event has no single professional agent.
    pub participant: String,
    /// Its one other `entity` reference (type and id), '' when none (or several:
    /// then in search_reference).
    pub entity_type: String,
    pub entity_id: String,
    pub concealed: bool,
    pub withheld: bool,
    /// The codes of [`TOKEN_COLUMNS`], '' when none (or several: then generic).
    pub codes: [String; 3],
}

/// An event's whole index: its row, and its entries in the generic tables.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventIndex {
    pub columns: TraceColumns,
    pub generic: IndexEntries,
}

impl EventIndex {
    /// The index of an event's stored JSON (the server wrote it; JSON that does not
    /// parse is indexed as nothing: it is still stored and chained, and the chain
    /// check reads it).
    pub fn of(content: &str) -> EventIndex {
        EventIndex::of_parts(&serde_json::from_str(content).unwrap_or_default())
    }

    /// The index of an event, from its JSON or from the part of it that AuditEvent's
    /// search parameters read.
    pub fn of_parts(value: &serde_json::Value) -> EventIndex {
        let def = crate::fhir::definitions::resource(AUDIT_EVENT).expect("AuditEvent is served");
        let (columns, generic) = split(crate::fhir::extract::index(def, value));
        EventIndex { columns, generic }
    }

    /// Whether the trace's append writes it with the event: its generic entries are
    /// references, tokens and compartments only (AuditEvent has no string parameter,
    /// and its one date is a column); else the event is queued for the indexer.
    pub fn written_with_event(&self) -> bool {
        self.generic.strings.is_empty() && self.generic.dates.is_empty()
    }
}

/// Splits an event's index entries into its `audit_index` row and the entries
/// that stay in the generic tables.
pub fn split(mut entries: IndexEntries) -> (TraceColumns, IndexEntries) {
    let mut columns = TraceColumns::default();
    if let [space] = entries.patients.as_slice() {
        columns.space = space.clone();
        entries.patients.clear();
        entries.references.retain(|entry| {
            !(matches!(entry.param, "patient" | "entity")
                && entry.target_type == "Patient"
                && entry.target_id == columns.space)
        });
    }
    let entities: Vec<_> = entries
        .references
        .iter()
        .filter(|entry| entry.param == "entity")
        .collect();
    if let [only] = entities.as_slice() {
        columns.entity_type = only.target_type.clone();
        columns.entity_id = only.target_id.clone();
        entries.references.retain(|entry| entry.param != "entity");
    }
    // `recorded` is 1..1: its one value.
    if let Some(date) = entries.dates.iter().find(|entry| entry.param == "date") {
        columns.recorded = date.range.low.clone();
    }
    entries.dates.retain(|entry| entry.param != "date");
    let participants: Vec<_> = entries
        .tokens
        .iter()
        .filter(|entry| entry.param == PARTICIPANT)
        .collect();
    if let [only] = participants.as_slice()
        && only.system.as_deref() == Some(crate::fhir::IDNAT_PS_SYSTEM)
    {
        columns.participant = only.code.clone();
        entries.tokens.retain(|entry| entry.param != PARTICIPANT);
    }
    for (held, spec) in columns.codes.iter_mut().zip(&TOKEN_COLUMNS) {
        let in_column = |entry: &crate::fhir::extract::TokenEntry| {
            entry.param == spec.param && entry.system.as_deref() == spec.system
        };
        let found: Vec<_> = entries.tokens.iter().filter(|e| in_column(e)).collect();
        if let [only] = found.as_slice() {
            *held = only.code.clone();
            entries.tokens.retain(|entry| !in_column(entry));
        }
    }
    columns.concealed = entries
        .tokens
        .iter()
        .any(|entry| entry.param == CONCEALED && entry.code == "true");
    columns.withheld = entries
        .tokens
        .iter()
        .any(|entry| entry.param == WITHHELD && entry.code == "true");
    entries
        .tokens
        .retain(|entry| entry.param != CONCEALED && entry.param != WITHHELD);
    (columns, entries)
}

/// The statements that take every stored event's index back and queue the events,
/// as an earlier version of the server left the events it had not indexed yet (for
/// the tests of the indexer, which indexes them before any reader of the trace is
/// answered).
#[doc(hidden)]
pub const UNINDEX_EVERY_EVENT: [&str; 5] = [
    "DELETE FROM audit_index",
    "DELETE FROM search_token WHERE res_type = 'AuditEvent'",
    "DELETE FROM search_reference WHERE res_type = 'AuditEvent'",
    "DELETE FROM resource_compartment WHERE res_type = 'AuditEvent'",
    "INSERT INTO audit_unindexed (resource_pk) SELECT pk FROM resources WHERE res_type = 'AuditEvent'",
];

/// Writes the rows of these events.
pub fn write(conn: &mut Conn, rows: &[(i64, &TraceColumns)]) -> diesel::QueryResult<()> {
    for insert in multi_row(
        "INSERT INTO audit_index (resource_pk, space, recorded, participant, entity_type, \
         entity_id, concealed, withheld, event_type, interaction, outcome) VALUES ",
        rows,
        "",
        |sql, (pk, columns)| {
            sql.int(*pk)
                .push(", ")
                .text(columns.space.as_str())
                .push(", ")
                .text(columns.recorded.as_str())
                .push(", ")
                .text(columns.participant.as_str())
                .push(", ")
                .text(columns.entity_type.as_str())
                .push(", ")
                .text(columns.entity_id.as_str())
                .push(", ")
                .boolean(columns.concealed)
                .push(", ")
                .boolean(columns.withheld);
            for code in &columns.codes {
                sql.push(", ").text(code.as_str());
            }
        },
    ) {
        insert.execute(conn)?;
    }
    Ok(())
}

/// Whether `param` of `res_type` is a reference whose Patient targets the trace's
/// `space` column holds.
pub fn holds_space_of(res_type: &str, param: &str) -> bool {
    res_type == AUDIT_EVENT && matches!(param, "patient" | "entity")
}

/// `UNION ALL SELECT resource_pk FROM audit_index WHERE space IN (…)`: the events of
/// these spaces, an arm beside a generic table's (nothing when `spaces` is empty).
pub fn union_events_of_spaces<'a>(sql: &mut Sql, spaces: impl IntoIterator<Item = &'a str>) {
    let spaces: Vec<&str> = spaces.into_iter().collect();
    if !spaces.is_empty() {
        sql.push(" UNION ALL SELECT resource_pk FROM audit_index WHERE space IN ")
            .text_list(spaces);
    }
}

/// `UNION ALL SELECT resource_pk FROM audit_index WHERE …`: the events whose one
/// other entity is one of `values` (type and id, or id of any type), an arm beside
/// `search_reference`'s for the `entity` parameter (nothing for another).
pub fn union_events_naming<'a>(
    sql: &mut Sql,
    res_type: &str,
    param: &str,
    values: impl IntoIterator<Item = (Option<&'a str>, &'a str)>,
) {
    if !holds_entity_of(res_type, param) {
        return;
    }
    let mut first = true;
    for (target_type, target_id) in values {
        sql.push(if first {
            " UNION ALL SELECT resource_pk FROM audit_index WHERE "
        } else {
            " OR "
        });
        first = false;
        sql.push("(entity_id = ").text(target_id);
        if let Some(target_type) = target_type {
            sql.push(" AND entity_type = ").text(target_type);
        }
        sql.push(")");
    }
}

/// Whether `param` of `res_type` is the trace's `entity`, whose one non-space
/// reference the `entity_type` / `entity_id` columns hold.
pub fn holds_entity_of(res_type: &str, param: &str) -> bool {
    res_type == AUDIT_EVENT && param == "entity"
}

/// ` OR EXISTS (…)`: the events among `alias`'s rows whose column holds one of
/// `values` of token `param` (nothing when `param` has no column, or no value can be
/// in it), an arm beside the generic table's.
pub fn or_token_column(
    sql: &mut Sql,
    alias: &str,
    res_type: &str,
    param: &str,
    values: &[TokenValue],
) {
    if res_type != AUDIT_EVENT {
        return;
    }
    let Some(spec) = TOKEN_COLUMNS.iter().find(|spec| spec.param == param) else {
        return;
    };
    let in_column: Vec<&TokenValue> = values
        .iter()
        .filter(|value| match &value.system {
            SystemMatch::Any => true,
            SystemMatch::Absent => spec.system.is_none(),
            SystemMatch::Is(system) => spec.system == Some(system.as_str()),
        })
        .collect();
    if in_column.is_empty() {
        return;
    }
    let column = spec.column;
    sql.push(&format!(
        " OR EXISTS (SELECT 1 FROM audit_index ai WHERE ai.resource_pk = {alias}.pk AND ("
    ));
    for (index, value) in in_column.iter().enumerate() {
        if index > 0 {
            sql.push(" OR ");
        }
        match &value.code {
            Some(code) => sql.push(&format!("ai.{column} = ")).text(code.as_str()),
            // `system|`: any code in it.
            None => sql.push(&format!("ai.{column} <> ''")),
        };
    }
    sql.push("))");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fhir::date::DateRange;
    use crate::fhir::extract::{DateEntry, ReferenceEntry, TokenEntry};

    fn reference(param: &'static str, target_type: &str, target_id: &str) -> ReferenceEntry {
        ReferenceEntry {
            param,
            target_type: target_type.into(),
            target_id: target_id.into(),
        }
    }

    fn token(param: &'static str, system: Option<&str>, code: &str) -> TokenEntry {
        TokenEntry {
            param,
            system: system.map(Into::into),
            code: code.into(),
        }
    }

    fn event_entries() -> IndexEntries {
        IndexEntries {
            tokens: vec![
                token(
                    "subtype",
                    Some("http://hl7.org/fhir/restful-interaction"),
                    "read",
                ),
                token(
                    PARTICIPANT,
                    Some(crate::fhir::IDNAT_PS_SYSTEM),
                    "810000000001",
                ),
            ],
            strings: Vec::new(),
            dates: vec![DateEntry {
                param: "date",
                range: DateRange {
                    low: "2026-12-05T04:23:05.073024Z".into(),
                    high: "2026-12-05T04:23:05.073024Z".into(),
                },
            }],
            references: vec![
                reference("entity", "Patient", "p1"),
                reference("entity", "DocumentReference", "d1"),
                reference("patient", "Patient", "p1"),
            ],
            patients: vec!["p1".into()],
        }
    }

    /// A professional's read of one space: the space, the professional, the
    /// document read, the date and the REST subtype move to the row; nothing is
    /// left for the generic tables.
    #[test]
    fn a_read_leaves_nothing_in_the_generic_tables() {
        let (columns, rest) = split(event_entries());
        assert_eq!(
            columns,
            TraceColumns {
                space: "p1".into(),
                recorded: "2026-12-05T04:23:05.073024Z".into(),
                participant: "810000000001".into(),
                entity_type: "DocumentReference".into(),
                entity_id: "d1".into(),
                concealed: false,
                withheld: false,
                codes: ["".into(), "read".into(), "".into()],
            }
        );
        assert!(rest.references.is_empty(), "{:?}", rest.references);
        assert!(rest.tokens.is_empty(), "{:?}", rest.tokens);
        assert!(rest.dates.is_empty() && rest.patients.is_empty());
    }

    /// Two spaces or two professionals do not fit a column: they stay generic,
    /// every one of them.
    #[test]
    fn values_that_do_not_fit_a_column_stay_generic() {
        let mut entries = event_entries();
        entries.patients.push("p2".into());
        entries
            .references
            .push(reference("patient", "Patient", "p2"));
        entries.tokens.push(token(
            PARTICIPANT,
            Some(crate::fhir::IDNAT_PS_SYSTEM),
            "810000000002",
        ));
        let (columns, rest) = split(entries);
        assert_eq!(
            (
                columns.space.as_str(),
                columns.participant.as_str(),
                columns.entity_id.as_str()
            ),
            ("", "", ""),
            "two spaces make two Patient entities beside the document"
        );
        assert_eq!(rest.patients, vec!["p1".to_owned(), "p2".to_owned()]);
        assert_eq!(rest.references.len(), 4);
        assert_eq!(
            rest.tokens
                .iter()
                .filter(|t| t.param == PARTICIPANT)
                .count(),
            2
        );
    }

    /// An event naming two resources beside its space (a transaction's writes)
    /// keeps both generic, neither in the row.
    #[test]
    fn two_other_entities_stay_generic() {
        let mut entries = event_entries();
        entries.references.push(reference("entity", "Binary", "b1"));
        let (columns, rest) = split(entries);
        assert_eq!(
            (columns.entity_type.as_str(), columns.entity_id.as_str()),
            ("", "")
        );
        assert_eq!(
            rest.references,
            vec![
                reference("entity", "DocumentReference", "d1"),
                reference("entity", "Binary", "b1"),
            ]
        );
        assert_eq!(columns.space, "p1");
    }

    /// A refusal answered "not known" is marked; its token is not kept.
    #[test]
    fn a_concealed_refusal_is_marked_in_its_row() {
        let mut entries = event_entries();
        entries.tokens.push(token(CONCEALED, None, "true"));
        let (columns, rest) = split(entries);
        assert!(columns.concealed);
        assert!(rest.tokens.iter().all(|t| t.param != CONCEALED));
        assert!(!columns.withheld);
    }

    /// An IHE transaction beside the REST interaction (R-MHD-8) stays generic; a
    /// code of another system than the column's is never put in it.
    #[test]
    fn only_the_codes_of_a_columns_system_go_in_it() {
        let mut entries = event_entries();
        entries
            .tokens
            .push(token("subtype", Some("urn:ihe:event-type-code"), "ITI-67"));
        entries
            .tokens
            .push(token("outcome", Some("elsewhere"), "0"));
        let (columns, rest) = split(entries);
        assert_eq!(columns.codes, ["".to_owned(), "read".into(), "".into()]);
        assert_eq!(
            rest.tokens,
            vec![
                token("subtype", Some("urn:ihe:event-type-code"), "ITI-67"),
                token("outcome", Some("elsewhere"), "0"),
            ]
        );
    }
}
