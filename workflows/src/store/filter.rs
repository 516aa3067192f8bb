//! A WHERE clause built from fixed fragments, with every value bound as a `$n` parameter.

use crate::error::StoreResult;
use crate::text::{Page, PageRequest};
use sqlx::any::{AnyArguments, AnyRow};
use sqlx::{AnyPool, Arguments, FromRow};

/// A bound value.
#[derive(Debug, Clone)]
enum Value {
    Text(String),
    Int(i64),
}

/// Conditions joined by AND. Fragments are written by the store, values are always bound.
#[derive(Debug, Default, Clone)]
pub struct Filter {
    clauses: Vec<String>,
    values: Vec<Value>,
}

impl Filter {
    pub fn new() -> Self {
        Filter::default()
    }

    fn next_placeholder(&self) -> String {
        format!("${}", self.values.len() + 1)
    }

    /// Adds `column <op> $n` bound to `value`. `column` and `op` are store-written, never user input.
    pub fn text(&mut self, column: &'static str, op: &'static str, value: impl Into<String>) -> &mut Self {
        let p = self.next_placeholder();
        self.clauses.push(format!("{column} {op} {p}"));
        self.values.push(Value::Text(value.into()));
        self
    }

    pub fn int(&mut self, column: &'static str, op: &'static str, value: i64) -> &mut Self {
        let p = self.next_placeholder();
        self.clauses.push(format!("{column} {op} {p}"));
        self.values.push(Value::Int(value));
        self
    }

    /// A store-written condition with one text value, whose place `{}` marks (e.g. a subquery).
    pub fn bound(&mut self, template: &'static str, value: impl Into<String>) -> &mut Self {
        let p = self.next_placeholder();
        self.clauses.push(template.replace("{}", &p));
        self.values.push(Value::Text(value.into()));
        self
    }

    /// A condition with no value, written by the store (e.g. `resolved_at IS NULL`).
    pub fn raw(&mut self, clause: &'static str) -> &mut Self {
        self.clauses.push(clause.to_owned());
        self
    }

    /// `(a = $n OR b = $n)`: the value at either of two columns.
    pub fn either(&mut self, a: &'static str, b: &'static str, value: impl Into<String>) -> &mut Self {
        let p = self.next_placeholder();
        self.clauses.push(format!("({a} = {p} OR {b} = {p})"));
        self.values.push(Value::Text(value.into()));
        self
    }

    /// Case-insensitive substring match on `column`; `%`, `_` and `\` in `needle` match themselves.
    /// SQLite's `lower()` folds ASCII letters only, so the needle as typed is tried too: without it a
    /// name with a capital like `Ü` could not be found on SQLite at all, not even by its exact spelling.
    pub fn contains(&mut self, column: &'static str, needle: &str) -> &mut Self {
        let folded = self.next_placeholder();
        self.values.push(Value::Text(like_pattern(&needle.to_lowercase())));
        let as_typed = self.next_placeholder();
        self.values.push(Value::Text(like_pattern(needle)));
        self.clauses
            .push(format!("(lower({column}) LIKE {folded} ESCAPE '\\' OR {column} LIKE {as_typed} ESCAPE '\\')"));
        self
    }

    /// `WHERE …`, or nothing when there are no conditions.
    pub fn where_sql(&self) -> String {
        if self.clauses.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", self.clauses.join(" AND "))
        }
    }

    /// One page of `SELECT {columns} FROM {from}` under this filter, in `order_by` order, with the total
    /// count of matches. `columns`, `from` and `order_by` are store-written SQL; every value is bound.
    pub async fn page<R>(
        &self,
        pool: &AnyPool,
        columns: &str,
        from: &str,
        order_by: &str,
        page: PageRequest,
    ) -> StoreResult<Page<R>>
    where
        R: for<'r> FromRow<'r, AnyRow> + Send + Unpin,
    {
        let where_sql = self.where_sql();
        let (total,): (i64,) =
            sqlx::query_as_with(&format!("SELECT COUNT(*) FROM {from}{where_sql}"), self.arguments_with(&[]))
                .fetch_one(pool)
                .await?;
        let n = self.values.len();
        let sql =
            format!("SELECT {columns} FROM {from}{where_sql} ORDER BY {order_by} LIMIT ${} OFFSET ${}", n + 1, n + 2);
        let items: Vec<R> = sqlx::query_as_with(&sql, self.arguments_with(&[page.limit_i64(), page.offset_i64()]))
            .fetch_all(pool)
            .await?;
        Ok(Page { items, total, limit: page.limit, offset: page.offset })
    }

    /// The bound values, followed by `tail` (for LIMIT and OFFSET).
    fn arguments_with(&self, tail: &[i64]) -> AnyArguments<'static> {
        let mut args = AnyArguments::default();
        for v in &self.values {
            // Adding a plain integer or string to AnyArguments cannot fail.
            let _ = match v {
                Value::Text(s) => args.add(s.clone()),
                Value::Int(i) => args.add(*i),
            };
        }
        for i in tail {
            let _ = args.add(*i);
        }
        args
    }
}

/// `%needle%` with LIKE's wildcards and escape character escaped.
fn like_pattern(needle: &str) -> String {
    let mut pattern = String::from("%");
    for c in needle.chars() {
        if matches!(c, '%' | '_' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
}

/// The placeholder of the `n`th value (from 1) bound to a statement: `$n` on PostgreSQL, `?` on SQLite. SQLite
/// looks each numbered placeholder up in a list as long as the statement's, so binding many numbered values
/// costs the square of their number, and an unnumbered one costs nothing. A statement uses one kind only: on
/// SQLite its values are bound in the order their placeholders appear.
pub fn placeholder(engine: super::Engine, n: usize) -> String {
    match engine {
        super::Engine::Postgres => format!("${n}"),
        super::Engine::Sqlite => "?".to_owned(),
    }
}

/// The placeholders of `count` values bound one after another from the `first`th, joined by commas.
pub fn placeholders(engine: super::Engine, first: usize, count: usize) -> String {
    (first..first + count).map(|n| placeholder(engine, n)).collect::<Vec<_>>().join(", ")
}

/// Rows per multi-row `INSERT`, well under either engine's limit on bound values.
pub const ROWS_PER_INSERT: usize = 500;

/// Binds each of `values` after what `args` already holds and returns their placeholders, `$a, $b, …`, for
/// an `IN (…)` list. The values are always bound; only the placeholders enter the SQL text.
pub fn bind_list<I, S>(args: &mut AnyArguments<'static>, values: I) -> String
where
    I: IntoIterator<Item = S>,
    S: sqlx::Encode<'static, sqlx::Any> + sqlx::Type<sqlx::Any> + 'static,
{
    let mut placeholders = Vec::new();
    for v in values {
        // Adding a string or a number to AnyArguments cannot fail.
        let _ = args.add(v);
        placeholders.push(format!("${}", args.len()));
    }
    placeholders.join(", ")
}
