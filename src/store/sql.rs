//! A small builder for dynamic SQL with bind parameters, run through diesel.

use diesel::query_dsl::RunQueryDsl;
use diesel::sql_types::{BigInt, Text};
use diesel::{QueryResult, QueryableByName};

use super::dialect::{self, Backend, Conn};

/// A bind value.
#[derive(Debug, Clone)]
pub enum Bind {
    Text(String),
    Int(i64),
}

/// SQL text and its bind values, in order.
#[derive(Debug, Default, Clone)]
pub struct Sql {
    pub text: String,
    binds: Vec<Bind>,
}

impl Sql {
    pub fn new(text: &str) -> Sql {
        Sql {
            text: text.to_owned(),
            binds: Vec::new(),
        }
    }

    /// Appends SQL text.
    pub fn push(&mut self, text: &str) -> &mut Self {
        self.text.push_str(text);
        self
    }

    /// Appends a placeholder bound to `value`.
    pub fn text(&mut self, value: impl Into<String>) -> &mut Self {
        self.binds.push(Bind::Text(value.into()));
        self.text.push_str(dialect::placeholder(self.binds.len()));
        self
    }

    /// Appends a placeholder bound to an integer.
    pub fn int(&mut self, value: i64) -> &mut Self {
        self.binds.push(Bind::Int(value));
        self.text.push_str(dialect::placeholder(self.binds.len()));
        self
    }

    /// Appends `(?, ?, …)` bound to `values`.
    pub fn text_list<'a>(&mut self, values: impl IntoIterator<Item = &'a str>) -> &mut Self {
        self.push("(");
        for (index, value) in values.into_iter().enumerate() {
            if index > 0 {
                self.push(", ");
            }
            self.text(value);
        }
        self.push(")")
    }

    /// Appends another fragment with its binds.
    pub fn append(&mut self, other: Sql) -> &mut Self {
        // Placeholders are positional markers in SQLite; a numbered dialect would
        // renumber here.
        self.text.push_str(&other.text);
        self.binds.extend(other.binds);
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
            };
        }
        query
    }

    /// Runs a query and maps its rows.
    pub fn load<T: QueryableByName<Backend> + 'static>(
        self,
        conn: &mut Conn,
    ) -> QueryResult<Vec<T>> {
        self.boxed(conn).load(conn)
    }

    /// Runs a statement, returning the number of rows changed.
    pub fn execute(self, conn: &mut Conn) -> QueryResult<usize> {
        self.boxed(conn).execute(conn)
    }
}

/// Multi-row statements: `head (…), (…) tail` over `items`, at most 200 rows each;
/// `row` appends one item's values, comma-separated, inside the parentheses.
pub fn multi_row<T>(
    head: &str,
    items: &[T],
    tail: &str,
    mut row: impl FnMut(&mut Sql, &T),
) -> Vec<Sql> {
    items
        .chunks(200)
        .map(|chunk| {
            let mut sql = Sql::new(head);
            for (index, item) in chunk.iter().enumerate() {
                sql.push(if index == 0 { "(" } else { ", (" });
                row(&mut sql, item);
                sql.push(")");
            }
            sql.push(tail);
            sql
        })
        .collect()
}

/// A single `COUNT(*) AS n` result.
#[derive(QueryableByName)]
pub struct CountRow {
    #[diesel(sql_type = BigInt)]
    pub n: i64,
}
