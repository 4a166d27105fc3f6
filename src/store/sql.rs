//! The one dialect every store query is written in, over the two drivers (rusqlite, tokio-postgres).
//!
//! A query is written once, with SQLite's numbered placeholders (`?1`, `?2`, …; the PostgreSQL
//! side rewrites them to `$1`, `$2`, …) in the SQL both databases accept: `ON CONFLICT … DO UPDATE`,
//! `RETURNING`, `CASE` rather than SQLite's two-argument `MIN` or summed booleans. Parameters and
//! rows are [`Value`]s (integers, texts, byte strings and NULL: what the schema stores), so a method
//! reads a row the same way whichever database returned it. What differs stays in the driver's
//! module: how a transaction begins, the schema's DDL (`schema.rs`), the lease (PostgreSQL only).

use rusqlite::types::{ToSqlOutput, ValueRef};

use super::{Result, StoreError};

/// Which database a [`Db`] talks to: for the few statements that cannot be written once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dialect {
    /// The embedded file (the default).
    Sqlite,
    /// A shared server (`[store] url`).
    Postgres,
}

/// A parameter or a column: the four kinds of value the schema holds. Times are Unix milliseconds
/// (`Int`), incidents and lists JSON (`Text`), messages and secrets bytes (`Blob`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Value {
    Null,
    Int(i64),
    Text(String),
    Blob(Vec<u8>),
}

impl From<i64> for Value {
    fn from(v: i64) -> Self {
        Self::Int(v)
    }
}

impl From<u32> for Value {
    fn from(v: u32) -> Self {
        Self::Int(i64::from(v))
    }
}

impl From<&str> for Value {
    fn from(v: &str) -> Self {
        Self::Text(v.to_owned())
    }
}

impl From<String> for Value {
    fn from(v: String) -> Self {
        Self::Text(v)
    }
}

impl From<&String> for Value {
    fn from(v: &String) -> Self {
        Self::Text(v.clone())
    }
}

impl From<&[u8]> for Value {
    fn from(v: &[u8]) -> Self {
        Self::Blob(v.to_vec())
    }
}

impl From<&Vec<u8>> for Value {
    fn from(v: &Vec<u8>) -> Self {
        Self::Blob(v.clone())
    }
}

impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(v: Option<T>) -> Self {
        v.map_or(Self::Null, Into::into)
    }
}

/// The parameters of one statement, in placeholder order: `vals![key, now.as_unix_millis()]`.
macro_rules! vals {
    ($($v:expr),* $(,)?) => {
        &[$($crate::store::sql::Value::from($v)),*][..]
    };
}
pub(crate) use vals;

/// A Rust type a column decodes into; a column of another kind is a value this build never
/// writes: [`StoreError::Corrupt`].
pub(crate) trait FromValue: Sized {
    fn from_value(v: Value) -> Result<Self>;
}

/// The error of a column that holds another kind of value than the code reads.
fn unexpected(want: &str, got: &Value) -> StoreError {
    StoreError::Corrupt(format!("expected {want}, found {got:?}"))
}

impl FromValue for i64 {
    fn from_value(v: Value) -> Result<Self> {
        match v {
            Value::Int(i) => Ok(i),
            other => Err(unexpected("an integer", &other)),
        }
    }
}

impl FromValue for u32 {
    fn from_value(v: Value) -> Result<Self> {
        let i = i64::from_value(v)?;
        u32::try_from(i).map_err(|_| StoreError::Corrupt(format!("{i} is out of range")))
    }
}

impl FromValue for String {
    fn from_value(v: Value) -> Result<Self> {
        match v {
            Value::Text(s) => Ok(s),
            other => Err(unexpected("a text", &other)),
        }
    }
}

impl FromValue for Vec<u8> {
    fn from_value(v: Value) -> Result<Self> {
        match v {
            Value::Blob(b) => Ok(b),
            // SQLite keeps what was bound: a text bound into a BLOB column reads back as text.
            Value::Text(s) => Ok(s.into_bytes()),
            other => Err(unexpected("bytes", &other)),
        }
    }
}

impl<T: FromValue> FromValue for Option<T> {
    fn from_value(v: Value) -> Result<Self> {
        match v {
            Value::Null => Ok(None),
            v => T::from_value(v).map(Some),
        }
    }
}

/// One row, copied out of the driver: its columns are taken by position.
#[derive(Debug)]
pub(crate) struct Row(pub(crate) Vec<Value>);

impl Row {
    /// Column `i` (0-based), decoded; each column can be taken once.
    pub(crate) fn take<T: FromValue>(&mut self, i: usize) -> Result<T> {
        let v = self
            .0
            .get_mut(i)
            .map(|v| std::mem::replace(v, Value::Null))
            .ok_or_else(|| StoreError::Corrupt(format!("a row has no column {i}")))?;
        T::from_value(v)
    }
}

/// A connection (or a transaction on one) that runs the store's SQL. Every method copies what it
/// returns out of the driver, so nothing borrows the connection after it returns.
pub(crate) trait Db {
    /// Which database this is.
    fn dialect(&self) -> Dialect;
    /// Runs one statement; how many rows it changed.
    fn execute(&mut self, sql: &str, params: &[Value]) -> Result<u64>;
    /// Runs one query; every row it returned.
    fn query(&mut self, sql: &str, params: &[Value]) -> Result<Vec<Row>>;
    /// Runs several statements with no parameters (a migration).
    fn batch(&mut self, sql: &str) -> Result<()>;
}

impl dyn Db + '_ {
    /// The rows of `sql`, each decoded by `f`.
    pub(crate) fn query_map<T>(
        &mut self,
        sql: &str,
        params: &[Value],
        f: impl FnMut(Row) -> Result<T>,
    ) -> Result<Vec<T>> {
        self.query(sql, params)?.into_iter().map(f).collect()
    }

    /// The first row of `sql`, decoded by `f`, if there is one.
    pub(crate) fn query_opt<T>(
        &mut self,
        sql: &str,
        params: &[Value],
        f: impl FnOnce(Row) -> Result<T>,
    ) -> Result<Option<T>> {
        self.query(sql, params)?
            .into_iter()
            .next()
            .map(f)
            .transpose()
    }

    /// The first column of the first row of `sql` (an aggregate, which always has a row).
    pub(crate) fn query_value<T: FromValue>(&mut self, sql: &str, params: &[Value]) -> Result<T> {
        self.query_opt(sql, params, |mut r| r.take(0))?
            .ok_or_else(|| StoreError::Corrupt(format!("no row for {sql:?}")))
    }

    /// Whether `sql` returns a row.
    pub(crate) fn exists(&mut self, sql: &str, params: &[Value]) -> Result<bool> {
        Ok(!self.query(sql, params)?.is_empty())
    }
}

/// A SQLite connection (or transaction: rusqlite's `Transaction` is one) as a [`Db`]. Statements
/// are prepared once per connection and cached, as the store always did.
pub(crate) struct Lite<'c>(pub(crate) &'c rusqlite::Connection);

impl Db for Lite<'_> {
    fn dialect(&self) -> Dialect {
        Dialect::Sqlite
    }

    fn execute(&mut self, sql: &str, params: &[Value]) -> Result<u64> {
        let changed = self
            .0
            .prepare_cached(sql)?
            .execute(rusqlite::params_from_iter(params))?;
        Ok(changed as u64)
    }

    fn query(&mut self, sql: &str, params: &[Value]) -> Result<Vec<Row>> {
        let mut stmt = self.0.prepare_cached(sql)?;
        let columns = stmt.column_count();
        let mut rows = stmt.query(rusqlite::params_from_iter(params))?;
        let mut out = Vec::new();
        while let Some(row) = rows.next()? {
            let values = (0..columns)
                .map(|i| from_sqlite(row.get_ref(i)?))
                .collect::<Result<_>>()?;
            out.push(Row(values));
        }
        Ok(out)
    }

    fn batch(&mut self, sql: &str) -> Result<()> {
        Ok(self.0.execute_batch(sql)?)
    }
}

/// A SQLite value as a [`Value`]; no column of the schema is `REAL`.
fn from_sqlite(v: ValueRef<'_>) -> Result<Value> {
    Ok(match v {
        ValueRef::Null => Value::Null,
        ValueRef::Integer(i) => Value::Int(i),
        ValueRef::Text(t) => Value::Text(
            std::str::from_utf8(t)
                .map_err(|e| StoreError::Corrupt(format!("a text column is not UTF-8: {e}")))?
                .to_owned(),
        ),
        ValueRef::Blob(b) => Value::Blob(b.to_vec()),
        ValueRef::Real(r) => return Err(StoreError::Corrupt(format!("unexpected real {r}"))),
    })
}

impl rusqlite::ToSql for Value {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::Borrowed(match self {
            Self::Null => ValueRef::Null,
            Self::Int(i) => ValueRef::Integer(*i),
            Self::Text(s) => ValueRef::Text(s.as_bytes()),
            Self::Blob(b) => ValueRef::Blob(b),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_row_decodes_each_kind_and_refuses_the_wrong_one() {
        let mut row = Row(vec![
            Value::Int(7),
            Value::Null,
            Value::Text("a".into()),
            Value::Blob(vec![1]),
        ]);
        assert_eq!(row.take::<i64>(0).unwrap(), 7);
        assert_eq!(row.take::<Option<String>>(1).unwrap(), None);
        assert_eq!(row.take::<String>(2).unwrap(), "a");
        assert_eq!(row.take::<Vec<u8>>(3).unwrap(), vec![1]);
        let mut row = Row(vec![Value::Text("x".into()), Value::Int(-1)]);
        assert!(matches!(row.take::<i64>(0), Err(StoreError::Corrupt(_))));
        assert!(matches!(row.take::<u32>(1), Err(StoreError::Corrupt(_))));
        assert!(row.take::<i64>(5).is_err(), "no such column");
    }
}
