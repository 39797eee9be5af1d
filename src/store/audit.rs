//! The trace's tables: AuditEvents appended to a hash chain per patient, the first
//! accesses of professionals, and the notification outbox.

use diesel::QueryableByName;
use diesel::sql_types::{BigInt, Text};

use super::dialect::{self, Conn};
use std::collections::{HashMap, HashSet};

use super::audit_index::EventIndex;
use super::resources::write_indexes;
use super::sql::{Sql, multi_row};
use crate::fhir::extract::IndexEntries;

/// An AuditEvent ready to be appended: its stored JSON and its index.
pub struct NewAuditEvent<'a> {
    pub id: &'a str,
    pub recorded: &'a str,
    pub content: &'a str,
    pub index: &'a EventIndex,
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

/// The heads of these chains (distinct), which stay this transaction's until it
/// ends: appenders to the same chain take turns across instances, a chain's first
/// link included (it has no head row to lock yet). SQLite's writers are serialised
/// already.
pub fn lock_chain_heads(
    conn: &mut Conn,
    chain_keys: &[&str],
) -> diesel::QueryResult<HashMap<String, ChainHead>> {
    let rows = match dialect::kind(conn) {
        dialect::Kind::Postgres => lock_heads_on_postgres(conn, chain_keys)?,
        // A kept statement per chain: no round trip, and no list text to parse.
        dialect::Kind::Sqlite => {
            let mut rows = Vec::new();
            for key in chain_keys {
                let mut sql = Sql::prepared(
                    "SELECT chain_key, seq, hash FROM audit_chain_head WHERE chain_key = ",
                );
                sql.text(*key);
                rows.extend(sql.load::<HeadRow>(conn)?);
            }
            rows
        }
    };
    Ok(rows.into_iter().map(HeadRow::keyed).collect())
}

/// Rows or values as one JSON parameter (read back with `json_to_recordset`,
/// `json_array_elements_text`): one statement text whatever their number.
fn json_parameter(rows: &impl serde::Serialize) -> diesel::QueryResult<String> {
    serde_json::to_string(rows)
        .map_err(|error| diesel::result::Error::SerializationError(Box::new(error)))
}

/// A row of `audit_chain_head`.
#[derive(QueryableByName)]
struct HeadRow {
    #[diesel(sql_type = Text)]
    chain_key: String,
    #[diesel(sql_type = BigInt)]
    seq: i64,
    #[diesel(sql_type = Text)]
    hash: String,
}

impl HeadRow {
    fn keyed(self) -> (String, ChainHead) {
        (
            self.chain_key,
            ChainHead {
                seq: self.seq,
                hash: self.hash,
            },
        )
    }
}

/// The name of a chain's turn, as its appenders take it (`hashtext('audit-chain/' ||
/// chain)` in [`lock_heads_on_postgres`]); a chain is a space's.
pub fn chain_turn(chain: &str) -> String {
    format!("audit-chain/{chain}")
}

/// PostgreSQL: every chain's transaction-scoped advisory lock and its head, in one
/// round trip for the whole group. The locks are taken in the order of their own
/// keys (`hashtext`, which two chains may share), the same order in every
/// transaction, so two groups never deadlock; a count over them, a lateral input of
/// the heads' read, has them all taken before any head is read. That statement's
/// snapshot predates its wait for a lock: `FOR UPDATE` returns the newest version
/// of a head another instance moved meanwhile, but a head another instance created
/// meanwhile is not in the snapshot, so the heads not found are read again, in a
/// statement of their own (after the locks, with a fresh snapshot).
fn lock_heads_on_postgres(
    conn: &mut Conn,
    chain_keys: &[&str],
) -> diesel::QueryResult<Vec<HeadRow>> {
    let keys = json_parameter(&chain_keys)?;
    let mut sql = Sql::prepared(
        "WITH locked AS MATERIALIZED (\
         SELECT pg_advisory_xact_lock(lock_key) FROM (\
         SELECT DISTINCT hashtext('audit-chain/' || value) AS lock_key \
         FROM json_array_elements_text(CAST(",
    );
    sql.text(&keys).push(
        " AS json)) ORDER BY lock_key) wanted) \
         SELECT heads.chain_key, heads.seq, heads.hash \
         FROM (SELECT COUNT(*) AS taken FROM locked) locks, LATERAL (\
         SELECT h.chain_key, h.seq, h.hash FROM audit_chain_head h \
         WHERE h.chain_key IN (SELECT value FROM json_array_elements_text(CAST(",
    );
    sql.text(&keys)
        .push(" AS json))) AND locks.taken >= 0 FOR UPDATE OF h) heads");
    let mut rows = sql.load::<HeadRow>(conn)?;
    if rows.len() < chain_keys.len() {
        let found: HashSet<&str> = rows.iter().map(|row| row.chain_key.as_str()).collect();
        let missing: Vec<&str> = chain_keys
            .iter()
            .copied()
            .filter(|key| !found.contains(key))
            .collect();
        let mut again = Sql::prepared(
            "SELECT chain_key, seq, hash FROM audit_chain_head \
             WHERE chain_key IN (SELECT value FROM json_array_elements_text(CAST(",
        );
        again
            .text(&json_parameter(&missing)?)
            .push(" AS json))) FOR UPDATE");
        rows.extend(again.load::<HeadRow>(conn)?);
    }
    Ok(rows)
}

/// An event with its place in its chain.
pub struct Link<'a> {
    pub event: NewAuditEvent<'a>,
    pub seq: i64,
    pub prev_hash: String,
    pub hash: String,
}

/// Appends linked events, each row at the end of its table, with their search
/// index (an event the append cannot index is queued for the indexer:
/// [`unindexed_events`], [`index_events`]). Call it inside a write transaction,
/// after [`lock_chain_heads`].
pub fn append_links(conn: &mut Conn, links: &[Link<'_>]) -> diesel::QueryResult<()> {
    match dialect::kind(conn) {
        dialect::Kind::Postgres => append_links_in_one_statement(conn, links),
        dialect::Kind::Sqlite => append_links_table_by_table(conn, links),
    }
}

/// The columns of a `link` row but its content, as [`link_rows`] writes them (for
/// `json_to_recordset`); `n` is its place among the contents ([`link_input`]).
const LINK_RECORD: &str = "link (n BIGINT, res_id TEXT, recorded TEXT, chain_key TEXT, \
    chain_seq BIGINT, request_id TEXT, prev_hash TEXT, hash TEXT, queued BOOLEAN, \
    space TEXT, participant TEXT, entity_type TEXT, entity_id TEXT, concealed BOOLEAN, withheld BOOLEAN, event_type TEXT, interaction TEXT, \
    outcome TEXT, refs JSON, tokens JSON, patients JSON)";

/// Whether some of an event's generic index entries call for a write.
type CallsFor = fn(&IndexEntries) -> bool;

/// The generic index's writes of a trace append (see [`append_from_link`]), each
/// with the entries that call for it.
const GENERIC_INDEX_WRITES: [(CallsFor, &str); 3] = [
    (
        |entries| !entries.references.is_empty(),
        "referenced AS (\
         INSERT INTO search_reference (resource_pk, res_type, param, target_type, target_id) \
         SELECT indexing.pk, 'AuditEvent', x.param, x.target_type, x.target_id FROM indexing \
         CROSS JOIN LATERAL json_to_recordset(indexing.refs) AS x (param TEXT, target_type TEXT, \
         target_id TEXT) WHERE NOT indexing.queued), ",
    ),
    (
        |entries| !entries.tokens.is_empty(),
        "tokened AS (\
         INSERT INTO search_token (resource_pk, res_type, param, system, code) \
         SELECT indexing.pk, 'AuditEvent', x.param, x.system, x.code FROM indexing \
         CROSS JOIN LATERAL json_to_recordset(indexing.tokens) AS x (param TEXT, system TEXT, \
         code TEXT) WHERE NOT indexing.queued), ",
    ),
    (
        |entries| !entries.patients.is_empty(),
        "placed AS (\
         INSERT INTO resource_compartment (resource_pk, res_type, patient_id) \
         SELECT indexing.pk, 'AuditEvent', x.value FROM indexing \
         CROSS JOIN LATERAL json_array_elements_text(indexing.patients) AS x \
         WHERE NOT indexing.queued), ",
    ),
];

/// The writes of a trace append, from a `link` of rows ([`LINK_RECORD`]) defined
/// before it: the events, their index (or, for an event `queued`, its queue entry),
/// their links and the chains' heads; it answers how many events it wrote
/// (`appended`). Every write reads `link`, or `event` made from it. A table no
/// link writes to is left out of the statement: each table it names is opened
/// and locked with all its indexes at every run, rows or not, a cost of the
/// committer's every group (a read's event has no queue entry, generic reference,
/// token or compartment).
fn append_from_link(links: &[Link<'_>]) -> String {
    let queued = links
        .iter()
        .any(|link| !link.event.index.written_with_event());
    let generic = |entries: CallsFor| {
        links
            .iter()
            .any(|link| link.event.index.written_with_event() && entries(&link.event.index.generic))
    };
    let mut sql = String::from(
        "event AS (\
         INSERT INTO resources (res_type, res_id, version_id, last_updated, deleted, content) \
         SELECT 'AuditEvent', res_id, 1, recorded, FALSE, content FROM link RETURNING pk, res_id), \
         indexing AS (SELECT event.pk, link.* FROM event JOIN link ON link.res_id = event.res_id), ",
    );
    if queued {
        sql.push_str(
            "queued AS (INSERT INTO audit_unindexed (resource_pk) SELECT pk FROM indexing WHERE queued), ",
        );
    }
    sql.push_str(
        "indexed AS (\
         INSERT INTO audit_index (resource_pk, space, recorded, participant, entity_type, entity_id, \
         concealed, withheld, event_type, interaction, outcome) SELECT pk, space, recorded, \
         participant, entity_type, entity_id, concealed, withheld, event_type, interaction, outcome \
         FROM indexing WHERE NOT queued), ",
    );
    for (written, cte) in GENERIC_INDEX_WRITES {
        if generic(written) {
            sql.push_str(cte);
        }
    }
    sql.push_str(
        "chained AS (\
         INSERT INTO audit_chain (resource_pk, chain_key, chain_seq, request_id, prev_hash, hash) \
         SELECT event.pk, link.chain_key, link.chain_seq, link.request_id, link.prev_hash, link.hash \
         FROM event JOIN link ON link.res_id = event.res_id), \
         head AS (\
         INSERT INTO audit_chain_head (chain_key, seq, hash) \
         SELECT DISTINCT ON (chain_key) chain_key, chain_seq, hash FROM link \
         ORDER BY chain_key, chain_seq DESC \
         ON CONFLICT (chain_key) DO UPDATE SET seq = excluded.seq, hash = excluded.hash) \
         SELECT COUNT(*) AS appended FROM event",
    );
    sql
}

/// PostgreSQL: the events, their index, their links and the chains' heads
/// in one statement (data-modifying CTEs over the links passed as one JSON
/// parameter), whatever the group's size: each statement is a round trip on the
/// committer, whose commits every answer waits on.
fn append_links_in_one_statement(conn: &mut Conn, links: &[Link<'_>]) -> diesel::QueryResult<()> {
    let mut statement = Sql::prepared("WITH link AS (");
    link_input(&mut statement, links)?;
    statement.push("), ");
    statement.push(&append_from_link(links));
    statement.execute(conn)?;
    Ok(())
}

/// PostgreSQL, outside any transaction: the links appended in one statement, its
/// own transaction, unless one of `accesses` (patient, professional) is a first
/// one (whose notification must commit with it) or a chain's head is not the link
/// its first new link follows: then nothing is written and this returns `false`.
/// The statement first takes the chains' locks, in the order [`lock_chain_heads`]
/// takes them, then writes the rows of [`append_links_in_one_statement`], every
/// one fed from the gated `link` (a row written before the locks are all taken is
/// not possible: keep it so). Its snapshot predates its wait for the locks: a chain
/// moved after it by another transaction fails the statement on the link that
/// other transaction took first (`audit_chain`'s unique key), and nothing is
/// written. The check of the heads also refuses tips ahead of the database (a
/// restore, or a failover that lost acknowledged commits).
pub fn append_links_unless_first_access(
    conn: &mut Conn,
    links: &[Link<'_>],
    accesses: &[(&str, &str)],
) -> diesel::QueryResult<bool> {
    #[derive(serde::Serialize)]
    struct Pair<'a> {
        patient_id: &'a str,
        subject: &'a str,
    }
    #[derive(QueryableByName)]
    struct Appended {
        #[diesel(sql_type = BigInt)]
        appended: i64,
    }
    let pairs: Vec<Pair<'_>> = accesses
        .iter()
        .map(|&(patient_id, subject)| Pair {
            patient_id,
            subject,
        })
        .collect();
    let mut statement = Sql::prepared("WITH input AS MATERIALIZED (");
    link_input(&mut statement, links)?;
    statement.push("), ");
    statement.push(
        "locked AS MATERIALIZED (\
         SELECT pg_advisory_xact_lock(lock_key) FROM (\
         SELECT DISTINCT hashtext('audit-chain/' || chain_key) AS lock_key FROM input \
         ORDER BY lock_key) wanted), \
         fresh AS (SELECT 1 FROM json_to_recordset(CAST(",
    );
    // `fresh` and `moved` look each pair and chain up by its key, whatever the
    // tables' size: written as `NOT EXISTS`, the planner made them anti-joins
    // reading `first_access` and `audit_chain_head` whole (they are small on a
    // test bench, and the generic plan guesses 100 input rows), a fixed cost per
    // group that outweighed its events (BENCHMARKS.md). A scalar subquery is not
    // made a join.
    statement.text(&json_parameter(&pairs)?).push(
        " AS json)) AS pair (patient_id TEXT, subject TEXT) \
         WHERE (SELECT 1 FROM first_access f \
         WHERE f.patient_id = pair.patient_id AND f.subject = pair.subject) IS NULL), \
         moved AS (SELECT 1 FROM (\
         SELECT DISTINCT ON (chain_key) chain_key, chain_seq, prev_hash FROM input \
         ORDER BY chain_key, chain_seq) first_link \
         WHERE (SELECT h.seq = first_link.chain_seq - 1 AND h.hash = first_link.prev_hash \
         FROM audit_chain_head h WHERE h.chain_key = first_link.chain_key) IS NOT TRUE), \
         link AS MATERIALIZED (SELECT input.* FROM (SELECT COUNT(*) AS taken FROM locked) locks, input \
         WHERE locks.taken >= 0 AND NOT EXISTS (SELECT 1 FROM fresh) \
         AND NOT EXISTS (SELECT 1 FROM moved)), ",
    );
    statement.push(&append_from_link(links));
    let appended = statement.load::<Appended>(conn)?;
    Ok(appended.first().is_some_and(|row| row.appended > 0))
}

/// Separates the events' contents in [`link_input`]'s second parameter: a control
/// character, which JSON text never holds unescaped.
const CONTENT_SEPARATOR: char = '\u{1}';

/// The `link` rows of `links` as a query appended to `statement`: their columns as
/// one JSON parameter of rows (`json_to_recordset`), their contents, the bulk of
/// it, in a second one, joined by the separator and split by `string_to_array`.
/// Inside JSON each content would be a string whose every quote is escaped, which
/// PostgreSQL parses twice (the cast, then the rows) and unescapes.
fn link_input(statement: &mut Sql, links: &[Link<'_>]) -> diesel::QueryResult<()> {
    let mut contents =
        String::with_capacity(links.iter().map(|link| link.event.content.len() + 1).sum());
    for (index, link) in links.iter().enumerate() {
        if link.event.content.contains(CONTENT_SEPARATOR) {
            return Err(diesel::result::Error::SerializationError(
                "an event's JSON holds an unescaped control character".into(),
            ));
        }
        if index > 0 {
            contents.push(CONTENT_SEPARATOR);
        }
        contents.push_str(link.event.content);
    }
    statement
        .push("SELECT link.*, body.content FROM json_to_recordset(CAST(")
        .text(link_rows(links)?)
        .push(&format!(
            " AS json)) AS {LINK_RECORD} JOIN unnest(string_to_array("
        ))
        .text(contents)
        .push(", chr(1))) WITH ORDINALITY AS body (content, n) USING (n)");
    Ok(())
}

/// The links as one JSON parameter of rows (`json_to_recordset`), each numbered
/// (from 1) by its place among the contents.
fn link_rows(links: &[Link<'_>]) -> diesel::QueryResult<String> {
    #[derive(serde::Serialize)]
    struct Reference<'a> {
        param: &'a str,
        target_type: &'a str,
        target_id: &'a str,
    }
    #[derive(serde::Serialize)]
    struct Token<'a> {
        param: &'a str,
        system: Option<&'a str>,
        code: &'a str,
    }
    #[derive(serde::Serialize)]
    struct LinkRow<'a> {
        n: usize,
        res_id: &'a str,
        recorded: &'a str,
        chain_key: &'a str,
        chain_seq: i64,
        request_id: &'a str,
        prev_hash: &'a str,
        hash: &'a str,
        queued: bool,
        space: &'a str,
        participant: &'a str,
        entity_type: &'a str,
        entity_id: &'a str,
        concealed: bool,
        withheld: bool,
        event_type: &'a str,
        interaction: &'a str,
        outcome: &'a str,
        refs: Vec<Reference<'a>>,
        tokens: Vec<Token<'a>>,
        patients: &'a [String],
    }
    let rows: Vec<LinkRow<'_>> = links
        .iter()
        .enumerate()
        .map(|(place, link)| {
            let index = link.event.index;
            let columns = &index.columns;
            let generic = &index.generic;
            let queued = !index.written_with_event();
            LinkRow {
                n: place + 1,
                res_id: link.event.id,
                recorded: link.event.recorded,
                chain_key: link.event.chain_key,
                chain_seq: link.seq,
                request_id: link.event.request_id,
                prev_hash: &link.prev_hash,
                hash: &link.hash,
                queued,
                space: &columns.space,
                participant: &columns.participant,
                entity_type: &columns.entity_type,
                entity_id: &columns.entity_id,
                concealed: columns.concealed,
                withheld: columns.withheld,
                event_type: &columns.codes[0],
                interaction: &columns.codes[1],
                outcome: &columns.codes[2],
                refs: generic
                    .references
                    .iter()
                    .filter(|_| !queued)
                    .map(|entry| Reference {
                        param: entry.param,
                        target_type: &entry.target_type,
                        target_id: &entry.target_id,
                    })
                    .collect(),
                tokens: generic
                    .tokens
                    .iter()
                    .filter(|_| !queued)
                    .map(|entry| Token {
                        param: entry.param,
                        system: entry.system.as_deref(),
                        code: &entry.code,
                    })
                    .collect(),
                patients: if queued { &[] } else { &generic.patients },
            }
        })
        .collect();
    json_parameter(&rows)
}

/// SQLite (no data-modifying CTEs): a multi-row statement per table, each a call
/// into the library, not a round trip.
fn append_links_table_by_table(conn: &mut Conn, links: &[Link<'_>]) -> diesel::QueryResult<()> {
    #[derive(QueryableByName)]
    struct PkRow {
        #[diesel(sql_type = BigInt)]
        pk: i64,
        #[diesel(sql_type = Text)]
        res_id: String,
    }
    let mut pks: HashMap<String, i64> = HashMap::with_capacity(links.len());
    for insert in multi_row(
        "INSERT INTO resources (res_type, res_id, version_id, last_updated, deleted, content) VALUES ",
        links,
        " RETURNING pk, res_id",
        |sql, link| {
            sql.push("'AuditEvent', ")
                .text(link.event.id)
                .push(", 1, ")
                .text(link.event.recorded)
                .push(", ")
                .boolean(false)
                .push(", ")
                .text(link.event.content);
        },
    ) {
        pks.extend(
            insert
                .load::<PkRow>(conn)?
                .into_iter()
                .map(|row| (row.res_id, row.pk)),
        );
    }
    let linked = links
        .iter()
        .map(|link| {
            pks.get(link.event.id)
                .map(|pk| (*pk, link))
                .ok_or(diesel::result::Error::NotFound)
        })
        .collect::<Result<Vec<_>, _>>()?;
    // Searchable with the event; one the append cannot index, once the indexer has.
    let (indexed, queued): (Vec<_>, Vec<_>) = linked
        .iter()
        .partition(|(_, link)| link.event.index.written_with_event());
    let rows: Vec<_> = indexed
        .iter()
        .map(|(pk, link)| (*pk, &link.event.index.columns))
        .collect();
    super::audit_index::write(conn, &rows)?;
    let generic: Vec<_> = indexed
        .iter()
        .map(|(pk, link)| {
            (
                *pk,
                super::audit_index::AUDIT_EVENT,
                &link.event.index.generic,
            )
        })
        .collect();
    write_indexes(conn, &generic)?;
    for queue in multi_row(
        "INSERT INTO audit_unindexed (resource_pk) VALUES ",
        &queued,
        "",
        |sql, (pk, _)| {
            sql.int(*pk);
        },
    ) {
        queue.execute(conn)?;
    }
    for insert in multi_row(
        "INSERT INTO audit_chain (resource_pk, chain_key, chain_seq, request_id, prev_hash, hash) VALUES ",
        &linked,
        "",
        |sql, (pk, link)| {
            sql.int(*pk)
                .push(", ")
                .text(link.event.chain_key)
                .push(", ")
                .int(link.seq)
                .push(", ")
                .text(link.event.request_id)
                .push(", ")
                .text(link.prev_hash.as_str())
                .push(", ")
                .text(link.hash.as_str());
        },
    ) {
        insert.execute(conn)?;
    }
    // The last link of each chain becomes its head (one row per chain: a row may
    // not be upserted twice in one statement).
    let mut last: HashMap<&str, &Link<'_>> = HashMap::new();
    for link in links {
        last.insert(link.event.chain_key, link);
    }
    let heads: Vec<&Link<'_>> = last.into_values().collect();
    for upsert in multi_row(
        "INSERT INTO audit_chain_head (chain_key, seq, hash) VALUES ",
        &heads,
        " ON CONFLICT (chain_key) DO UPDATE SET seq = excluded.seq, hash = excluded.hash",
        |sql, link| {
            sql.text(link.event.chain_key)
                .push(", ")
                .int(link.seq)
                .push(", ")
                .text(link.hash.as_str());
        },
    ) {
        upsert.execute(conn)?;
    }
    Ok(())
}

/// An AuditEvent stored and chained but not yet in the search index.
#[derive(Debug, Clone, QueryableByName)]
pub struct UnindexedEvent {
    #[diesel(sql_type = BigInt)]
    pub pk: i64,
    #[diesel(sql_type = Text)]
    pub content: String,
}

/// The oldest `limit` unindexed events up to `last`. Read without a lock: the
/// indexer parses them outside its write transaction, and [`index_events`] claims
/// them (another indexer may have taken some meanwhile).
pub fn unindexed_events(
    conn: &mut Conn,
    last: i64,
    limit: i64,
) -> diesel::QueryResult<Vec<UnindexedEvent>> {
    // The queue leads (SQLite takes `CROSS JOIN` as the join order): statistics
    // taken while the queue was empty, as it mostly is, once had SQLite walk every
    // row of `resources` up to `last` for each batch, the indexer then 70 % of the
    // CPU and the search at 100,000 documents three times slower.
    let mut sql = Sql::prepared(
        "SELECT r.pk, r.content FROM audit_unindexed u CROSS JOIN resources r \
         WHERE r.pk = u.resource_pk AND u.resource_pk <= ",
    );
    sql.int(last)
        .push(" ORDER BY u.resource_pk LIMIT ")
        .int(limit);
    sql.load(conn)
}

/// The newest unindexed event, if any.
pub fn last_unindexed(conn: &mut Conn) -> diesel::QueryResult<Option<i64>> {
    queue_end(conn, "SELECT MAX(resource_pk) AS pk FROM audit_unindexed")
}

/// The oldest unindexed event, if any.
pub fn first_unindexed(conn: &mut Conn) -> diesel::QueryResult<Option<i64>> {
    queue_end(conn, "SELECT MIN(resource_pk) AS pk FROM audit_unindexed")
}

fn queue_end(conn: &mut Conn, query: &str) -> diesel::QueryResult<Option<i64>> {
    #[derive(QueryableByName)]
    struct PkRow {
        #[diesel(sql_type = diesel::sql_types::Nullable<BigInt>)]
        pk: Option<i64>,
    }
    Ok(Sql::prepared(query)
        .load::<PkRow>(conn)?
        .pop()
        .and_then(|row| row.pk))
}

/// An event's key and its index.
pub type IndexedEvent = (i64, EventIndex);

/// Takes these events off the queue and writes the search-index rows of those it
/// took; returns how many. An event another indexer took first (its row already
/// gone: PostgreSQL's `DELETE` waits for that indexer's transaction, SQLite's
/// writers take turns) is left to it. Call it inside a write transaction.
pub fn index_events(conn: &mut Conn, events: &[IndexedEvent]) -> diesel::QueryResult<usize> {
    #[derive(QueryableByName)]
    struct Claimed {
        #[diesel(sql_type = BigInt)]
        resource_pk: i64,
    }
    let mut claimed = HashSet::new();
    for chunk in events.chunks(500) {
        let mut take = Sql::new("DELETE FROM audit_unindexed WHERE resource_pk IN ");
        take.int_list(chunk.iter().map(|(pk, _)| *pk))
            .push(" RETURNING resource_pk");
        claimed.extend(
            take.load::<Claimed>(conn)?
                .into_iter()
                .map(|row| row.resource_pk),
        );
    }
    let taken: Vec<&IndexedEvent> = events
        .iter()
        .filter(|event| claimed.contains(&event.0))
        .collect();
    let rows: Vec<_> = taken
        .iter()
        .map(|(pk, index)| (*pk, &index.columns))
        .collect();
    super::audit_index::write(conn, &rows)?;
    let generic: Vec<_> = taken
        .iter()
        .map(|(pk, index)| (*pk, super::audit_index::AUDIT_EVENT, &index.generic))
        .collect();
    write_indexes(conn, &generic)?;
    Ok(rows.len())
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
    Ok(
        Sql::new("SELECT chain_key, seq, hash FROM audit_chain_head ORDER BY chain_key")
            .load::<HeadRow>(conn)?
            .into_iter()
            .map(HeadRow::keyed)
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

/// Records that these professionals accessed these spaces; returns the pairs
/// `(patient, subject)` seen for the first time.
pub fn first_accesses(
    conn: &mut Conn,
    accesses: &[(&str, &str)],
    at: &str,
) -> diesel::QueryResult<HashSet<(String, String)>> {
    #[derive(QueryableByName)]
    struct PairRow {
        #[diesel(sql_type = Text)]
        patient_id: String,
        #[diesel(sql_type = Text)]
        subject: String,
    }
    // A group's requests often repeat a pair (one professional reading on): one
    // row each, in fewer statements.
    let mut pairs = accesses.to_vec();
    pairs.sort_unstable();
    pairs.dedup();
    let mut first = HashSet::new();
    for insert in multi_row(
        "INSERT INTO first_access (patient_id, subject, accessed_at) VALUES ",
        &pairs,
        " ON CONFLICT (patient_id, subject) DO NOTHING RETURNING patient_id, subject",
        |sql, (patient, subject)| {
            sql.text(*patient)
                .push(", ")
                .text(*subject)
                .push(", ")
                .text(at);
        },
    ) {
        first.extend(
            insert
                .load::<PairRow>(conn)?
                .into_iter()
                .map(|row| (row.patient_id, row.subject)),
        );
    }
    Ok(first)
}

/// A notification to deliver, as [`enqueue_notifications`] queues it.
pub struct OutboxEntry<'a> {
    pub communication_id: &'a str,
    pub patient: &'a str,
    pub kind: &'a str,
    pub payload: &'a str,
    pub now: &'a str,
}

/// Queues the delivery of notifications, due at once.
pub fn enqueue_notifications(
    conn: &mut Conn,
    entries: &[OutboxEntry<'_>],
) -> diesel::QueryResult<()> {
    for insert in multi_row(
        "INSERT INTO notification_outbox (communication_id, patient_id, kind, payload, created_at, next_attempt_at) VALUES ",
        entries,
        "",
        |sql, entry| {
            sql.text(entry.communication_id)
                .push(", ")
                .text(entry.patient)
                .push(", ")
                .text(entry.kind)
                .push(", ")
                .text(entry.payload)
                .push(", ")
                .text(entry.now)
                .push(", ")
                .text(entry.now);
        },
    ) {
        insert.execute(conn)?;
    }
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
/// Claims the notifications due at `now` (oldest first) until `lease_until`: another
/// instance skips them meanwhile, and takes them back if this one dies before
/// recording the delivery. Call it inside a write transaction.
pub fn claim_due_notifications(
    conn: &mut Conn,
    now: &str,
    lease_until: &str,
    limit: i64,
) -> diesel::QueryResult<Vec<PendingNotification>> {
    let mut sql = Sql::new("UPDATE notification_outbox SET next_attempt_at = ");
    sql.text(lease_until).push(
        " WHERE id IN (SELECT id FROM notification_outbox WHERE delivered_at IS NULL AND next_attempt_at <= ",
    );
    sql.text(now)
        .push(" ORDER BY id LIMIT ")
        .int(limit)
        .push(dialect::skip_locked(conn))
        .push(") RETURNING id, payload, attempts");
    let mut claimed: Vec<PendingNotification> = sql.load(conn)?;
    claimed.sort_by_key(|notification| notification.id);
    Ok(claimed)
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
