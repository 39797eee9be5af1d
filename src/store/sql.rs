//! A small builder for dynamic SQL with bind parameters, run through diesel.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{LazyLock, Mutex};

use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};
use diesel::query_dsl::RunQueryDsl;
use diesel::sql_types::{BigInt, Binary, Bool, Nullable, Text, Untyped};
use diesel::{QueryResult, QueryableByName};

use super::dialect::{self, Backend, Conn};

/// A bind value.
#[derive(Debug, Clone)]
pub enum Bind {
    Text(String),
    Int(i64),
    Bool(bool),
    Bytes(Vec<u8>),
    /// A NULL text value.
    Null,
}

/// SQL text and its bind values, in order.
#[derive(Debug, Default, Clone)]
pub struct Sql {
    pub text: String,
    binds: Vec<Bind>,
    /// Where each bind's placeholder starts in `text`, in order: a kept statement
    /// is cut there at each run instead of searching its text again.
    marks: Vec<usize>,
    /// Whether connections keep the statement prepared.
    keep: Keep,
}

/// Whether connections keep a statement prepared.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum Keep {
    /// Parsed and planned at each run.
    #[default]
    Never,
    /// Prepared once per connection and kept ([`Sql::prepared`]).
    Always,
    /// Kept while the bounded set of such texts has room ([`Sql::kept_while_room`]).
    WhileRoom,
}

/// The most texts built from a request's shape that connections keep prepared
/// (see [`Sql::kept_while_room`]): each connection keeps at most these, whatever
/// callers send.
const KEPT_SHAPES: usize = 64;

/// The largest request-shaped statement kept (placeholders, bytes of text): a
/// search's limits allow thousands of values in one, which a connection would
/// otherwise hold with its plan.
const KEPT_SHAPE_BINDS: usize = 200;
const KEPT_SHAPE_BYTES: usize = 8 * 1024;

/// The texts built from a request's shape that connections keep: the first
/// [`KEPT_SHAPES`] distinct ones the process ran.
static KEPT_SHAPE_TEXTS: LazyLock<Mutex<HashSet<String>>> =
    LazyLock::new(|| Mutex::new(HashSet::new()));

/// Whether this shape's text is, or now becomes, one of the kept ones.
fn shape_is_kept(text: &str) -> bool {
    let mut kept = KEPT_SHAPE_TEXTS
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if kept.contains(text) {
        return true;
    }
    if kept.len() < KEPT_SHAPES {
        kept.insert(text.to_owned());
        return true;
    }
    false
}

impl Sql {
    pub fn new(text: &str) -> Sql {
        Sql {
            text: text.to_owned(),
            binds: Vec::new(),
            marks: Vec::new(),
            keep: Keep::Never,
        }
    }

    /// A statement of the hot paths whose text does not depend on the request (only
    /// its bound values do): each connection prepares it once and keeps it, so that
    /// it is not parsed and planned again per request. Never for text built from a
    /// request's shape (lists, search criteria, multi-row inserts): a connection keeps
    /// every distinct text it is given.
    pub fn prepared(text: &str) -> Sql {
        let mut sql = Sql::new(text);
        sql.keep = Keep::Always;
        sql
    }

    /// A statement whose text follows the request's shape (a search's criteria,
    /// its lists) but repeats across requests of one kind (a professional's search
    /// of a space: the same text for every space): kept prepared like
    /// [`Sql::prepared`] while fewer than [`KEPT_SHAPES`] distinct texts are, run
    /// unprepared after that. PostgreSQL spent four times longer planning a
    /// search page than running it; the bound keeps what callers can make the
    /// connections hold.
    pub fn kept_while_room(mut self) -> Sql {
        self.keep = Keep::WhileRoom;
        self
    }

    /// Whether the connection keeps this statement prepared.
    fn kept(&self) -> bool {
        match self.keep {
            Keep::Never => false,
            Keep::Always => true,
            Keep::WhileRoom => {
                self.binds.len() <= KEPT_SHAPE_BINDS
                    && self.text.len() <= KEPT_SHAPE_BYTES
                    && shape_is_kept(&self.text)
            }
        }
    }

    /// Appends SQL text.
    pub fn push(&mut self, text: &str) -> &mut Self {
        self.text.push_str(text);
        self
    }

    /// Appends a placeholder bound to `bind`.
    fn bind(&mut self, bind: Bind) -> &mut Self {
        self.binds.push(bind);
        self.marks.push(self.text.len());
        self.text.push_str(dialect::placeholder(self.binds.len()));
        self
    }

    /// Appends a placeholder bound to `value`.
    pub fn text(&mut self, value: impl Into<String>) -> &mut Self {
        self.bind(Bind::Text(value.into()))
    }

    /// Appends a placeholder bound to an integer.
    pub fn int(&mut self, value: i64) -> &mut Self {
        self.bind(Bind::Int(value))
    }

    /// Appends a placeholder bound to bytes (`BYTEA`, `BLOB`).
    pub fn bytes(&mut self, value: Vec<u8>) -> &mut Self {
        self.bind(Bind::Bytes(value))
    }

    /// Appends a placeholder bound to a boolean.
    pub fn boolean(&mut self, value: bool) -> &mut Self {
        self.bind(Bind::Bool(value))
    }

    /// Appends a placeholder bound to `value`, NULL for none (a placeholder either
    /// way, so that the statement's text does not depend on the value).
    pub fn optional_text(&mut self, value: Option<&str>) -> &mut Self {
        self.bind(value.map_or(Bind::Null, |value| Bind::Text(value.to_owned())))
    }

    /// Appends `(?, ?, …)` bound to `values`; an empty list is an empty set (`IN ()`
    /// is not SQL, though SQLite takes it).
    pub fn text_list<'a>(&mut self, values: impl IntoIterator<Item = &'a str>) -> &mut Self {
        let mut values = values.into_iter().peekable();
        if values.peek().is_none() {
            return self.push("(SELECT '' WHERE 1 = 0)");
        }
        self.push("(");
        for (index, value) in values.enumerate() {
            if index > 0 {
                self.push(", ");
            }
            self.text(value);
        }
        self.push(")")
    }

    /// Appends `(?, ?, …)` bound to integers; an empty list is an empty set.
    pub fn int_list(&mut self, values: impl IntoIterator<Item = i64>) -> &mut Self {
        let mut values = values.into_iter().peekable();
        if values.peek().is_none() {
            return self.push("(SELECT 0 WHERE 1 = 0)");
        }
        self.push("(");
        for (index, value) in values.enumerate() {
            if index > 0 {
                self.push(", ");
            }
            self.int(value);
        }
        self.push(")")
    }

    /// Appends another fragment with its binds.
    pub fn append(&mut self, other: Sql) -> &mut Self {
        // Placeholders are positional markers in SQLite; a numbered dialect would
        // renumber here.
        let shift = self.text.len();
        self.text.push_str(&other.text);
        self.binds.extend(other.binds);
        self.marks
            .extend(other.marks.into_iter().map(|mark| mark + shift));
        self
    }

    fn boxed(
        self,
        conn: &Conn,
    ) -> diesel::query_builder::BoxedSqlQuery<'static, Backend, diesel::query_builder::SqlQuery>
    {
        let text = dialect::placeholders(conn, &self.text);
        let mut query = diesel::sql_query(text).into_boxed::<Backend>();
        for bind in self.binds {
            query = match bind {
                Bind::Text(value) => query.bind::<Text, _>(value),
                Bind::Int(value) => query.bind::<BigInt, _>(value),
                Bind::Bool(value) => query.bind::<Bool, _>(value),
                Bind::Bytes(value) => query.bind::<Binary, _>(value),
                Bind::Null => query.bind::<Nullable<Text>, _>(None::<String>),
            };
        }
        query
    }

    /// Runs a query and maps its rows.
    pub fn load<T: QueryableByName<Backend> + 'static>(
        self,
        conn: &mut Conn,
    ) -> QueryResult<Vec<T>> {
        if LOG_QUERY_PLANS.load(Ordering::Relaxed) && self.text.starts_with("SELECT") {
            self.log_plan(conn);
        }
        if self.kept() {
            return KeptStatement(self).load(conn);
        }
        self.boxed(conn).load(conn)
    }

    /// Logs the plan the database chose for this query, with its text (placeholders,
    /// never the bound values: no health data in the log).
    fn log_plan(&self, conn: &mut Conn) {
        let mut explain = self.clone();
        let postgres = matches!(dialect::kind(conn), dialect::Kind::Postgres);
        explain.text = format!(
            "{}{}",
            if postgres {
                "EXPLAIN "
            } else {
                "EXPLAIN QUERY PLAN "
            },
            self.text
        );
        let lines = if postgres {
            explain
                .boxed(conn)
                .load::<PostgresPlanLine>(conn)
                .map(|lines| {
                    lines
                        .into_iter()
                        .map(|line| without_literals(&line.line))
                        .collect::<Vec<_>>()
                })
        } else {
            explain
                .boxed(conn)
                .load::<SqlitePlanLine>(conn)
                .map(|lines| lines.into_iter().map(|line| line.detail).collect())
        };
        match lines {
            Ok(plan) => {
                tracing::info!(
                    target: "dmp_fhir_server::plan",
                    statement = %self.text,
                    plan = %plan.join(" | "),
                    "query plan"
                );
            }
            Err(error) => {
                tracing::warn!(target: "dmp_fhir_server::plan", %error, "no query plan")
            }
        }
    }

    /// Runs a statement, returning the number of rows changed.
    pub fn execute(self, conn: &mut Conn) -> QueryResult<usize> {
        if self.kept() {
            return KeptStatement(self).execute(conn);
        }
        self.boxed(conn).execute(conn)
    }
}

/// A [`Sql::prepared`] statement as diesel runs it: unlike `sql_query`, it lets the
/// connection's statement cache keep it (keyed by its text), and the backend writes
/// its own placeholders (`?`, `$n`) for the binds.
struct KeptStatement(Sql);

impl QueryFragment<Backend> for KeptStatement {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Backend>) -> QueryResult<()> {
        let Sql {
            text, binds, marks, ..
        } = &self.0;
        let mut written = 0;
        for (index, (bind, &mark)) in binds.iter().zip(marks).enumerate() {
            out.push_sql(&text[written..mark]);
            match bind {
                Bind::Text(value) => out.push_bind_param::<Text, String>(value)?,
                Bind::Int(value) => out.push_bind_param::<BigInt, i64>(value)?,
                Bind::Bool(value) => out.push_bind_param::<Bool, bool>(value)?,
                Bind::Bytes(value) => out.push_bind_param::<Binary, Vec<u8>>(value)?,
                Bind::Null => out.push_bind_param::<Nullable<Text>, Option<String>>(&None)?,
            }
            // Past the placeholder `Sql` wrote there: the backend writes its own.
            written = mark + dialect::placeholder(index + 1).len();
        }
        out.push_sql(&text[written..]);
        Ok(())
    }
}

impl QueryId for KeptStatement {
    type QueryId = ();
    // Cached by its text, not by a type.
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl Query for KeptStatement {
    type SqlType = Untyped;
}

impl RunQueryDsl<Conn> for KeptStatement {}

/// The row counts of multi-row statements, largest first: a list of rows is cut
/// into statements of these sizes, so that each connection keeps a few prepared
/// texts per statement (a text per count would be one per list length, a statement
/// parsed and planned for every write).
const ROWS_PER_STATEMENT: [usize; 4] = [64, 16, 4, 1];

/// Multi-row statements: `head (…), (…) tail` over `items`, kept prepared
/// ([`Sql::prepared`]); `row` appends one item's values, comma-separated, inside
/// the parentheses, as placeholders only (the same text for every item: NULLs and
/// booleans bound, see [`Sql::optional_text`], [`Sql::boolean`]).
pub fn multi_row<T>(
    head: &str,
    items: &[T],
    tail: &str,
    mut row: impl FnMut(&mut Sql, &T),
) -> Vec<Sql> {
    let mut statements = Vec::new();
    let mut rest = items;
    while !rest.is_empty() {
        let size = ROWS_PER_STATEMENT
            .into_iter()
            .find(|size| *size <= rest.len())
            .unwrap_or(1);
        let (chunk, after) = rest.split_at(size);
        rest = after;
        let mut sql = Sql::prepared(head);
        let mut row_text: Option<String> = None;
        for (index, item) in chunk.iter().enumerate() {
            sql.push(if index == 0 { "(" } else { ", (" });
            let start = sql.text.len();
            row(&mut sql, item);
            // Every row the same text, or the kept statements would grow with the
            // values written.
            let text = &sql.text[start..];
            debug_assert!(
                row_text.get_or_insert_with(|| text.to_owned()) == text,
                "a multi-row statement's rows differ in text: {head}"
            );
            sql.push(")");
        }
        sql.push(tail);
        statements.push(sql);
    }
    statements
}

/// Whether [`Sql::load`] logs the plan of each query (`--log-query-plans`).
static LOG_QUERY_PLANS: AtomicBool = AtomicBool::new(false);

/// Turns query-plan logging on or off for the process.
pub fn log_query_plans(on: bool) {
    LOG_QUERY_PLANS.store(on, Ordering::Relaxed);
}

/// A PostgreSQL plan line with its string literals masked: a custom plan shows the
/// bound values (patient ids, INS numbers), which stay out of the log.
fn without_literals(line: &str) -> String {
    let mut masked = String::with_capacity(line.len());
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\'' {
            masked.push(c);
            continue;
        }
        // Skip to the closing quote; a doubled quote is an escaped one.
        while let Some(inner) = chars.next() {
            if inner == '\'' {
                if chars.peek() == Some(&'\'') {
                    chars.next();
                } else {
                    break;
                }
            }
        }
        masked.push_str("'…'");
    }
    masked
}

/// One step of SQLite's `EXPLAIN QUERY PLAN`.
#[derive(QueryableByName)]
struct SqlitePlanLine {
    #[diesel(sql_type = Text)]
    detail: String,
}

/// One line of PostgreSQL's `EXPLAIN`.
#[derive(QueryableByName)]
struct PostgresPlanLine {
    #[diesel(sql_type = Text, column_name = "QUERY PLAN")]
    line: String,
}

/// A single `COUNT(*) AS n` result.
#[derive(QueryableByName)]
pub struct CountRow {
    #[diesel(sql_type = BigInt)]
    pub n: i64,
}

#[cfg(test)]
mod tests {
    use super::{KEPT_SHAPE_TEXTS, KEPT_SHAPES, Sql, shape_is_kept, without_literals};

    /// However many shapes callers send, connections keep at most `KEPT_SHAPES` of
    /// them; a shape kept stays kept, one refused stays refused.
    #[test]
    fn request_shaped_statements_kept_are_bounded() {
        let run = uuid::Uuid::new_v4();
        let mut kept = Vec::new();
        let mut refused = Vec::new();
        for n in 0..=KEPT_SHAPES {
            let text = format!("SELECT {n} AS n /* {run} */");
            if shape_is_kept(&text) {
                kept.push(text);
            } else {
                refused.push(text);
            }
        }
        assert!(
            !refused.is_empty(),
            "more shapes than the bound were all kept"
        );
        assert_eq!(KEPT_SHAPE_TEXTS.lock().unwrap().len(), KEPT_SHAPES);
        assert!(kept.iter().all(|text| shape_is_kept(text)));
        assert!(refused.iter().all(|text| !shape_is_kept(text)));
    }

    /// A kept statement is cut where its binds' placeholders are, not wherever a
    /// `?` is: a literal one, in appended fragments too, takes no value.
    #[test]
    fn kept_statements_bind_at_their_placeholders() {
        use super::super::dialect;
        #[derive(diesel::QueryableByName)]
        struct Row {
            #[diesel(sql_type = diesel::sql_types::Text)]
            mark: String,
            #[diesel(sql_type = diesel::sql_types::Text)]
            first: String,
            #[diesel(sql_type = diesel::sql_types::BigInt)]
            second: i64,
            #[diesel(sql_type = diesel::sql_types::Text)]
            again: String,
        }
        let mut conn = dialect::connect(&dialect::target(":memory:").unwrap()).unwrap();
        let mut sql = Sql::prepared("SELECT '?' AS mark, ");
        sql.text("one").push(" AS first, ");
        let mut rest = Sql::new("");
        rest.push("CAST(")
            .int(2)
            .push(" AS BIGINT) AS second, '?' || ");
        rest.text("three").push(" AS again");
        sql.append(rest);
        let row = sql.load::<Row>(&mut conn).unwrap().pop().unwrap();
        assert_eq!(
            (
                row.mark.as_str(),
                row.first.as_str(),
                row.second,
                row.again.as_str()
            ),
            ("?", "one", 2, "?three")
        );
    }

    #[test]
    fn plan_lines_lose_their_values() {
        assert_eq!(
            without_literals(
                "Index Cond: ((patient_id = 'gen-1-4'::text) AND (code = 'l''x'::text))"
            ),
            "Index Cond: ((patient_id = '…'::text) AND (code = '…'::text))"
        );
        assert_eq!(
            without_literals("Seq Scan on resources r"),
            "Seq Scan on resources r"
        );
    }
}
