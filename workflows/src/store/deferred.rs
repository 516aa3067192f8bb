//! Writes a transaction sends at commit, together: nothing later in the transaction reads them (its audit
//! records, the notifications it raises, a record's final state), so on PostgreSQL they go as one
//! statement (data-modifying `WITH` clauses) instead of one round trip each.

use super::Engine;
use crate::error::StoreResult;
use sqlx::any::AnyArguments;
use sqlx::{AnyConnection, Arguments};

/// A value bound to a deferred statement.
#[derive(Debug, Clone)]
pub(crate) enum Param {
    Int(Option<i64>),
    Text(Option<String>),
}

impl From<i64> for Param {
    fn from(v: i64) -> Self {
        Param::Int(Some(v))
    }
}

impl From<&str> for Param {
    fn from(v: &str) -> Self {
        Param::Text(Some(v.to_owned()))
    }
}

impl From<String> for Param {
    fn from(v: String) -> Self {
        Param::Text(Some(v))
    }
}

impl From<Option<String>> for Param {
    fn from(v: Option<String>) -> Self {
        Param::Text(v)
    }
}

impl From<Option<&str>> for Param {
    fn from(v: Option<&str>) -> Self {
        Param::Text(v.map(str::to_owned))
    }
}

/// One deferred statement: SQL with `$1…$n` placeholders and the values they stand for.
#[derive(Debug)]
pub(crate) struct Deferred {
    /// `INSERT INTO t (columns)` for an insert, `UPDATE … WHERE …` for an update, or a whole statement.
    head: String,
    shape: Shape,
    pub params: Vec<Param>,
}

#[derive(Debug)]
enum Shape {
    /// The rows, `($1, $2), ($3, $4)`, and what follows them (`ON CONFLICT …`).
    Insert { rows: String, tail: String },
    /// `head` ends in its `WHERE` clause.
    Update,
}

impl Deferred {
    pub(crate) fn insert(head: impl Into<String>, rows: String, tail: &str, params: Vec<Param>) -> Self {
        Deferred { head: head.into(), shape: Shape::Insert { rows, tail: tail.to_owned() }, params }
    }

    /// `head` (`INSERT INTO t (columns)`) of `rows`: each row's own values, then the `shared` values every
    /// row ends with, bound once.
    pub(crate) fn insert_rows(head: &str, shared: Vec<Param>, rows: impl IntoIterator<Item = Vec<Param>>) -> Self {
        let tail: String = (1..=shared.len()).map(|n| format!(", ${n}")).collect();
        let mut params = shared;
        let mut values = Vec::new();
        for row in rows {
            let first = params.len() + 1;
            let own: Vec<String> = (first..first + row.len()).map(|n| format!("${n}")).collect();
            values.push(format!("({}{tail})", own.join(", ")));
            params.extend(row);
        }
        Deferred::insert(head, values.join(", "), "", params)
    }

    /// An `UPDATE … WHERE …` or `DELETE … WHERE …` (no `RETURNING`): it can be a condition, or depend on one.
    pub(crate) fn update(sql: impl Into<String>, params: Vec<Param>) -> Self {
        Deferred { head: sql.into(), shape: Shape::Update, params }
    }

    fn sql(&self) -> String {
        match &self.shape {
            Shape::Insert { rows, tail } => format!("{} VALUES {rows}{tail}", self.head),
            Shape::Update => self.head.clone(),
        }
    }

    /// The statement as a condition: it says whether it matched.
    fn condition_sql(&self) -> String {
        match &self.shape {
            Shape::Update => format!("{} RETURNING 1", self.head),
            Shape::Insert { .. } => format!("{} RETURNING 1", self.sql()),
        }
    }

    /// The write, made to change nothing unless the common table expression `cte` returned a row.
    fn sql_if(&self, cte: &str) -> String {
        match &self.shape {
            Shape::Insert { rows, tail } => {
                format!("{} SELECT * FROM (VALUES {rows}) AS v WHERE EXISTS (SELECT 1 FROM {cte}){tail}", self.head)
            }
            Shape::Update => format!("{} AND EXISTS (SELECT 1 FROM {cte})", self.head),
        }
    }
}

/// Bound values per combined statement, well under PostgreSQL's limit of 65,535.
const MAX_PARAMS: usize = 20_000;

/// Runs `writes` in order: one statement each on SQLite, as few combined statements as the bound-value
/// limit allows on PostgreSQL. The statements must touch different rows: PostgreSQL runs the parts of one
/// statement against the same snapshot, in no particular order.
pub(crate) async fn flush(conn: &mut AnyConnection, engine: Engine, writes: Vec<Deferred>) -> StoreResult<()> {
    if engine == Engine::Sqlite {
        for w in writes {
            sqlx::query_with(&w.sql(), bind(w.params)).execute(&mut *conn).await?;
        }
        return Ok(());
    }
    let mut batch: Vec<Deferred> = Vec::new();
    let mut bound = 0;
    for w in writes {
        if !batch.is_empty() && bound + w.params.len() > MAX_PARAMS {
            run_combined(conn, std::mem::take(&mut batch)).await?;
            bound = 0;
        }
        bound += w.params.len();
        batch.push(w);
    }
    if !batch.is_empty() {
        run_combined(conn, batch).await?;
    }
    Ok(())
}

async fn run_combined(conn: &mut AnyConnection, mut batch: Vec<Deferred>) -> StoreResult<()> {
    if batch.len() == 1 {
        let w = batch.remove(0);
        sqlx::query_with(&w.sql(), bind(w.params)).execute(&mut *conn).await?;
        return Ok(());
    }
    let (sql, params) = combine(batch);
    sqlx::query_with(&sql, bind(params)).execute(&mut *conn).await?;
    Ok(())
}

/// `WITH w0 AS (first), w1 AS (second), … last`, each statement's placeholders moved past the ones before.
fn combine(batch: Vec<Deferred>) -> (String, Vec<Param>) {
    let last = batch.len() - 1;
    let mut sql = String::from("WITH ");
    let mut params = Vec::new();
    for (i, w) in batch.into_iter().enumerate() {
        let shifted = shift_placeholders(&w.sql(), params.len());
        if i < last {
            if i > 0 {
                sql.push_str(", ");
            }
            sql.push_str(&format!("w{i} AS ({shifted})"));
        } else {
            sql.push(' ');
            sql.push_str(&shifted);
        }
        params.extend(w.params);
    }
    (sql, params)
}

/// On PostgreSQL, outside a transaction: runs `condition` (an update that matches only if the record is
/// still as it was read) and `writes` as one statement, the writes made only if the condition matched.
/// Returns whether it did: one statement is atomic by itself.
pub(crate) async fn run_if(conn: &mut AnyConnection, condition: Deferred, writes: Vec<Deferred>) -> StoreResult<bool> {
    let mut sql = format!("WITH c AS ({})", condition.condition_sql());
    let mut params = condition.params;
    for (i, w) in writes.into_iter().enumerate() {
        sql.push_str(&format!(", w{i} AS ({})", shift_placeholders(&w.sql_if("c"), params.len())));
        params.extend(w.params);
    }
    sql.push_str(" SELECT COUNT(*) FROM c");
    let (matched,): (i64,) = sqlx::query_as_with(&sql, bind(params)).fetch_one(&mut *conn).await?;
    Ok(matched > 0)
}

/// On PostgreSQL, outside a transaction: runs `writes` as one statement, however many values they bind
/// (up to PostgreSQL's limit, beyond which the statement fails whole): all of them or none.
pub(crate) async fn run_all(conn: &mut AnyConnection, writes: Vec<Deferred>) -> StoreResult<()> {
    if !writes.is_empty() {
        run_combined(conn, writes).await?;
    }
    Ok(())
}

/// `$n` becomes `$(n + by)`. The statements are the store's own, with no `$` but in placeholders.
fn shift_placeholders(sql: &str, by: usize) -> String {
    let mut out = String::with_capacity(sql.len() + 8);
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '$' {
            out.push(c);
            continue;
        }
        let mut digits = String::new();
        while let Some(d) = chars.peek().filter(|d| d.is_ascii_digit()) {
            digits.push(*d);
            chars.next();
        }
        match digits.parse::<usize>() {
            Ok(n) => out.push_str(&format!("${}", n + by)),
            Err(_) => out.push('$'),
        }
    }
    out
}

fn bind(params: Vec<Param>) -> AnyArguments<'static> {
    let mut args = AnyArguments::default();
    for p in params {
        // Adding integers and strings to AnyArguments cannot fail.
        let _ = match p {
            Param::Int(v) => args.add(v),
            Param::Text(v) => args.add(v),
        };
    }
    args
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_move_past_the_statements_before() {
        assert_eq!(
            shift_placeholders("UPDATE t SET a = $1, b = $12 WHERE id = $2", 10),
            "UPDATE t SET a = $11, b = $22 WHERE id = $12"
        );
        assert_eq!(shift_placeholders("SELECT 1", 3), "SELECT 1");
    }

    #[test]
    fn statements_combine_into_one_with_clause_in_order() {
        let a = Deferred::update("UPDATE t SET a = $1 WHERE id = $2", vec![1.into(), "x".into()]);
        let b = Deferred::insert("INSERT INTO u (v)", "($1)".into(), "", vec!["y".into()]);
        let c = Deferred::insert("INSERT INTO w (v)", "($1)".into(), "", vec!["z".into()]);
        let (sql, params) = combine(vec![a, b, c]);
        assert_eq!(
            sql,
            "WITH w0 AS (UPDATE t SET a = $1 WHERE id = $2), w1 AS (INSERT INTO u (v) VALUES ($3)) \
             INSERT INTO w (v) VALUES ($4)"
        );
        assert_eq!(params.len(), 4);
    }

    #[test]
    fn rows_bind_their_own_values_and_end_with_the_shared_ones() {
        let insert = Deferred::insert_rows(
            "INSERT INTO t (a, b, s)",
            vec!["s".into()],
            [vec![1.into(), 2.into()], vec![3.into(), 4.into()]],
        );
        assert_eq!(insert.sql(), "INSERT INTO t (a, b, s) VALUES ($2, $3, $1), ($4, $5, $1)");
        assert_eq!(insert.params.len(), 5);
        let plain = Deferred::insert_rows("INSERT INTO t (a)", vec![], [vec![1.into()], vec![2.into()]]);
        assert_eq!(plain.sql(), "INSERT INTO t (a) VALUES ($1), ($2)");
    }

    #[test]
    fn an_insert_made_conditional_selects_its_rows_only_if_the_condition_matched() {
        let upsert = Deferred::insert("INSERT INTO r (k, v)", "($1, $2)".into(), " ON CONFLICT (k) DO NOTHING", vec![]);
        assert_eq!(
            upsert.sql_if("c"),
            "INSERT INTO r (k, v) SELECT * FROM (VALUES ($1, $2)) AS v WHERE EXISTS (SELECT 1 FROM c) \
             ON CONFLICT (k) DO NOTHING"
        );
        let update = Deferred::update("UPDATE r SET v = $1 WHERE k = $2", vec![]);
        assert_eq!(update.sql_if("c"), "UPDATE r SET v = $1 WHERE k = $2 AND EXISTS (SELECT 1 FROM c)");
        assert_eq!(update.condition_sql(), "UPDATE r SET v = $1 WHERE k = $2 RETURNING 1");
    }
}
