//! Reading the ledger for `outpost deliveries` and `outpost audit`: one read-only
//! connection of its own (WAL lets it read while the daemon writes, and it works as
//! well with no daemon), a [`Filter`], rows newest first. Each query is shaped so that
//! one index answers it (`schema.rs` names them): a key prefix is a range on
//! `delivered_key`, a server with or without `since` a range on
//! `delivered_server_time`, `since` alone a range on `delivered_time`.

use std::path::Path;
use std::time::Duration;

use rusqlite::types::Value;
use rusqlite::{Connection, Row as SqlRow};

use crate::LedgerError;
use crate::row::{Delivered, Failed, Mode, Outcome, Requeued, Row, UnixMillis, millis};

/// What `outpost deliveries` asks for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// Only this server's rows.
    pub server: Option<String>,
    /// Only rows of the last `since` (before the `now` given to [`query_at`]).
    pub since: Option<Duration>,
    /// Only rows whose key starts with this (requeued rows, which have no key, are left
    /// out then).
    pub key_prefix: Option<String>,
    /// Only failed files; otherwise deliveries, failures and requeues together.
    pub failed: bool,
    /// At most this many rows, the newest; `None`: all.
    pub limit: Option<usize>,
}

/// The rows of the ledger at `path` that `filter` selects, newest first, with `since`
/// counted back from now.
pub fn query(path: &Path, filter: &Filter) -> Result<Vec<Row>, LedgerError> {
    query_at(path, filter, crate::now_millis())
}

/// [`query`] with the present given (`since` counts back from `now`).
pub fn query_at(path: &Path, filter: &Filter, now: UnixMillis) -> Result<Vec<Row>, LedgerError> {
    let Some(conn) = crate::schema::open_reader(path)? else {
        return Ok(Vec::new());
    };
    let q = |e| LedgerError::query(path, e);
    // One read transaction: the three tables are seen at the same instant.
    conn.execute_batch("BEGIN").map_err(q)?;
    let since = filter.since.map(|d| now.saturating_sub(millis(d)));
    let mut rows = Vec::new();
    if !filter.failed {
        rows.extend(delivered(&conn, filter, since).map_err(q)?);
    }
    rows.extend(failed(&conn, filter, since).map_err(q)?);
    if !filter.failed && filter.key_prefix.is_none() {
        rows.extend(requeued(&conn, filter, since).map_err(q)?);
    }
    conn.execute_batch("COMMIT").map_err(q)?;
    // Each table came newest first; merged, the newest `limit` stay. A stable sort
    // keeps a table's own order among equal times.
    rows.sort_by_key(|r| std::cmp::Reverse(r.time()));
    if let Some(limit) = filter.limit {
        rows.truncate(limit);
    }
    Ok(rows)
}

/// A `WHERE` clause and its parameters, built condition by condition.
struct Where {
    sql: Vec<String>,
    params: Vec<Value>,
}

impl Where {
    fn new(filter: &Filter, time: &str, since: Option<UnixMillis>) -> Where {
        let mut w = Where {
            sql: Vec::new(),
            params: Vec::new(),
        };
        if let Some(server) = &filter.server {
            w.push("server = ?", Value::Text(server.clone()));
        }
        if let Some(since) = since {
            w.push(&format!("{time} >= ?"), Value::Integer(since));
        }
        if let Some(prefix) = &filter.key_prefix
            && !prefix.is_empty()
        {
            w.push("key >= ?", Value::Text(prefix.clone()));
            if let Some(end) = prefix_end(prefix) {
                w.push("key < ?", Value::Text(end));
            }
        }
        w
    }

    fn push(&mut self, sql: &str, v: Value) {
        self.sql.push(sql.to_owned());
        self.params.push(v);
    }

    /// `FROM … WHERE … ORDER BY … LIMIT …` for `table` ordered by `time`.
    fn tail(&self, table: &str, index: Option<&str>, time: &str, limit: Option<usize>) -> String {
        let mut s = format!("FROM {table}");
        if let Some(index) = index {
            s.push_str(&format!(" INDEXED BY {index}"));
        }
        if !self.sql.is_empty() {
            s.push_str(" WHERE ");
            s.push_str(&self.sql.join(" AND "));
        }
        s.push_str(&format!(" ORDER BY {time} DESC, id DESC"));
        if let Some(limit) = limit {
            s.push_str(&format!(" LIMIT {limit}"));
        }
        s
    }
}

/// The smallest string greater than every string that starts with `prefix` (UTF-8
/// order is code point order, which is SQLite's `BINARY` order); `None` when there is
/// none (a prefix of `char::MAX`s).
fn prefix_end(prefix: &str) -> Option<String> {
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(last) = chars.pop() {
        let next = (u32::from(last) + 1..=u32::from(char::MAX)).find_map(char::from_u32);
        if let Some(next) = next {
            chars.push(next);
            return Some(chars.into_iter().collect());
        }
    }
    None
}

const DELIVERED_COLUMNS: &str = "server, bucket, key, size, checksum_algorithm, checksum, \
    store_checksum, etag, version_id, relative_path, dropped_at, first_attempt, delivered_at, \
    attempts, duration_ms, mode, outcome, instance, seq, batch";

/// The rows of one table that `filter` selects, newest first: the one query every kind
/// of row goes through (`columns` of `table`, timed by `time`, `index` when one must be
/// named), each turned into a [`Row`] by `map`.
#[allow(clippy::too_many_arguments)] // reason: one query shape, said once; each argument is a part of it
fn select(
    conn: &Connection,
    filter: &Filter,
    since: Option<UnixMillis>,
    table: &str,
    columns: &str,
    time: &str,
    index: Option<&str>,
    map: impl FnMut(&SqlRow<'_>) -> rusqlite::Result<Row>,
) -> rusqlite::Result<Vec<Row>> {
    let w = Where::new(filter, time, since);
    let sql = format!(
        "SELECT {columns} {}",
        w.tail(table, index, time, filter.limit)
    );
    let mut st = conn.prepare(&sql)?;
    let rows = st.query_map(rusqlite::params_from_iter(&w.params), map)?;
    rows.collect()
}

fn delivered(
    conn: &Connection,
    filter: &Filter,
    since: Option<UnixMillis>,
) -> rusqlite::Result<Vec<Row>> {
    // A key prefix is usually narrow (one customer's folder): its range decides, and
    // the few rows are sorted. Otherwise SQLite picks the time index that fits.
    let index = filter
        .key_prefix
        .as_ref()
        .filter(|p| !p.is_empty())
        .map(|_| "delivered_key");
    select(
        conn,
        filter,
        since,
        "delivered",
        DELIVERED_COLUMNS,
        "delivered_at",
        index,
        |r| delivered_row(r).map(Row::Delivered),
    )
}

fn delivered_row(r: &SqlRow<'_>) -> rusqlite::Result<Delivered> {
    let word = |i: usize, v: String| {
        rusqlite::Error::FromSqlConversionFailure(
            i,
            rusqlite::types::Type::Text,
            format!("unknown value {v:?}").into(),
        )
    };
    let mode: String = r.get(15)?;
    let outcome: String = r.get(16)?;
    Ok(Delivered {
        server: r.get(0)?,
        bucket: r.get(1)?,
        key: r.get(2)?,
        size: r.get::<_, i64>(3)?.max(0).cast_unsigned(),
        checksum_algorithm: r.get(4)?,
        checksum: r.get(5)?,
        store_checksum: r.get(6)?,
        etag: r.get(7)?,
        version_id: r.get(8)?,
        relative_path: r.get(9)?,
        dropped_at: r.get(10)?,
        first_attempt: r.get(11)?,
        delivered_at: r.get(12)?,
        attempts: r.get(13)?,
        duration_ms: r.get::<_, i64>(14)?.max(0).cast_unsigned(),
        mode: Mode::parse(&mode).ok_or_else(|| word(15, mode.clone()))?,
        outcome: Outcome::parse(&outcome).ok_or_else(|| word(16, outcome.clone()))?,
        instance: r.get(17)?,
        seq: r.get::<_, i64>(18)?.max(0).cast_unsigned(),
        batch: r.get(19)?,
    })
}

fn failed(
    conn: &Connection,
    filter: &Filter,
    since: Option<UnixMillis>,
) -> rusqlite::Result<Vec<Row>> {
    let columns = "server, bucket, key, relative_path, reason, record_path, at, attempts, instance";
    select(conn, filter, since, "failed", columns, "at", None, |r| {
        Ok(Row::Failed(Failed {
            server: r.get(0)?,
            bucket: r.get(1)?,
            key: r.get(2)?,
            relative_path: r.get(3)?,
            reason: r.get(4)?,
            record_path: r.get(5)?,
            at: r.get(6)?,
            attempts: r.get(7)?,
            instance: r.get(8)?,
        }))
    })
}

fn requeued(
    conn: &Connection,
    filter: &Filter,
    since: Option<UnixMillis>,
) -> rusqlite::Result<Vec<Row>> {
    let columns = "server, relative_path, at";
    select(conn, filter, since, "requeued", columns, "at", None, |r| {
        Ok(Row::Requeued(Requeued {
            server: r.get(0)?,
            relative_path: r.get(1)?,
            at: r.get(2)?,
        }))
    })
}

#[cfg(test)]
mod tests {
    use super::prefix_end;

    #[test]
    fn prefix_ends() {
        let cases: &[(&str, Option<&str>)] = &[
            ("a", Some("b")),
            ("out/2026/", Some("out/20260")),
            ("é", Some("ê")),
            ("a\u{10FFFF}", Some("b")),
            ("\u{D7FF}", Some("\u{E000}")),
            ("\u{10FFFF}", None),
        ];
        for (prefix, end) in cases {
            assert_eq!(prefix_end(prefix).as_deref(), *end, "{prefix:?}");
        }
    }
}
