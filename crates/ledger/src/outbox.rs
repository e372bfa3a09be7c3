//! The notification outbox: a delivery's notifications (one row per target) are
//! written in the transaction of its `delivered` row, so a committed delivery always
//! has them and an undelivered file never does. The notifier reads the rows that are
//! due ([`OutboxReader`]) and answers each through the writer ([`Update`]): sent rows
//! are deleted, failed ones wait for their next attempt. Rows older than the ledger's
//! retention are pruned like every other row.

use std::path::Path;

use rusqlite::{Connection, OptionalExtension, params};

use crate::row::UnixMillis;
use crate::schema::open_reader;
use crate::{Ack, Ledger, LedgerError};

/// A notification to write with a delivery: its target and its body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    /// The target's name within the server.
    pub target: String,
    /// What is sent (JSON).
    pub body: String,
}

/// A notification not yet sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    /// Its row.
    pub id: i64,
    /// The delivery's server.
    pub server: String,
    /// The target's name within the server.
    pub target: String,
    /// What is sent.
    pub body: String,
    /// Attempts so far.
    pub attempts: u32,
    /// When the delivery was recorded.
    pub created_at: UnixMillis,
}

/// What became of one attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Update {
    /// Sent: the row goes.
    Sent(i64),
    /// Not sent: tried again at `next_at`.
    Retry {
        /// The row.
        id: i64,
        /// Its next attempt.
        next_at: UnixMillis,
        /// Why it failed (one line, no secret).
        error: String,
    },
    /// A target is down: every row of it due before `until` waits until then, its
    /// attempts and last error unchanged (one statement, however long the backlog).
    PostponeTarget {
        /// The server.
        server: String,
        /// The target's name.
        target: String,
        /// When its rows are due again.
        until: UnixMillis,
    },
}

/// The backlog of one server's target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backlog {
    /// The server.
    pub server: String,
    /// The target's name.
    pub target: String,
    /// Notifications waiting.
    pub count: u64,
    /// When the oldest of them was recorded.
    pub oldest: UnixMillis,
    /// The last error of a failed attempt among them, if any.
    pub last_error: Option<String>,
}

impl Ledger {
    /// Queues the results of sending notifications; never waits (see [`Ledger::record`]).
    pub fn outbox_update(&self, updates: Vec<Update>) -> Ack {
        let (reply, ack) = tokio::sync::oneshot::channel();
        match self.send(crate::writer::Msg::Outbox(updates, reply)) {
            Ok(()) => Ack::waiting(ack),
            Err(e) => Ack::ready(Err(e)),
        }
    }
}

/// A read-only connection for the notifier and `outpost status`.
#[derive(Debug)]
pub struct OutboxReader {
    /// `None`: the file holds no schema yet.
    conn: Option<Connection>,
    /// The file, for messages.
    path: std::path::PathBuf,
}

impl OutboxReader {
    /// Opens the ledger at `path` for reading the outbox.
    pub fn open(path: &Path) -> Result<OutboxReader, LedgerError> {
        Ok(OutboxReader {
            conn: open_reader(path)?,
            path: path.to_owned(),
        })
    }

    fn conn(&mut self) -> Result<Option<&Connection>, LedgerError> {
        if self.conn.is_none() {
            self.conn = open_reader(&self.path)?;
        }
        Ok(self.conn.as_ref())
    }

    /// Up to `limit` notifications due at `now`, the earliest due first.
    pub fn due(&mut self, now: UnixMillis, limit: usize) -> Result<Vec<Pending>, LedgerError> {
        let path = self.path.clone();
        let Some(conn) = self.conn()? else {
            return Ok(Vec::new());
        };
        let q = |e| LedgerError::query(&path, e);
        let mut st = conn
            .prepare(
                "SELECT id, server, target, body, attempts, created_at FROM outbox \
                 WHERE next_at <= ?1 ORDER BY next_at, id LIMIT ?2",
            )
            .map_err(q)?;
        let rows = st
            .query_map(params![now, limit as i64], |r| {
                Ok(Pending {
                    id: r.get(0)?,
                    server: r.get(1)?,
                    target: r.get(2)?,
                    body: r.get(3)?,
                    attempts: r.get(4)?,
                    created_at: r.get(5)?,
                })
            })
            .map_err(q)?;
        rows.collect::<Result<_, _>>().map_err(q)
    }

    /// When the next notification is due, if any waits.
    pub fn next_due(&mut self) -> Result<Option<UnixMillis>, LedgerError> {
        let path = self.path.clone();
        let Some(conn) = self.conn()? else {
            return Ok(None);
        };
        conn.query_row("SELECT min(next_at) FROM outbox", [], |r| {
            r.get::<_, Option<i64>>(0)
        })
        .optional()
        .map(Option::flatten)
        .map_err(|e| LedgerError::query(&path, e))
    }

    /// The notifications waiting, per server and target.
    pub fn backlog(&mut self) -> Result<Vec<Backlog>, LedgerError> {
        let path = self.path.clone();
        let Some(conn) = self.conn()? else {
            return Ok(Vec::new());
        };
        let q = |e| LedgerError::query(&path, e);
        let mut st = conn
            .prepare(
                "SELECT server, target, count(*), min(created_at), \
                 (SELECT last_error FROM outbox o WHERE o.server = outbox.server \
                  AND o.target = outbox.target AND last_error IS NOT NULL LIMIT 1) \
                 FROM outbox GROUP BY server, target ORDER BY server, target",
            )
            .map_err(q)?;
        let rows = st
            .query_map([], |r| {
                Ok(Backlog {
                    server: r.get(0)?,
                    target: r.get(1)?,
                    count: r.get::<_, i64>(2)?.max(0) as u64,
                    oldest: r.get(3)?,
                    last_error: r.get(4)?,
                })
            })
            .map_err(q)?;
        rows.collect::<Result<_, _>>().map_err(q)
    }
}

/// The writer's statements for the outbox, within its transaction.
pub(crate) struct OutboxStatements<'c> {
    insert: rusqlite::Statement<'c>,
    delete: rusqlite::Statement<'c>,
    retry: rusqlite::Statement<'c>,
    postpone: rusqlite::Statement<'c>,
}

impl<'c> OutboxStatements<'c> {
    pub(crate) fn prepare(conn: &'c Connection) -> rusqlite::Result<Self> {
        Ok(OutboxStatements {
            insert: conn.prepare(
                "INSERT INTO outbox (server, target, body, created_at, attempts, next_at) \
                 VALUES (?1, ?2, ?3, ?4, 0, ?4)",
            )?,
            delete: conn.prepare("DELETE FROM outbox WHERE id = ?1")?,
            retry: conn.prepare(
                "UPDATE outbox SET attempts = attempts + 1, next_at = ?2, last_error = ?3 \
                 WHERE id = ?1",
            )?,
            postpone: conn.prepare(
                "UPDATE outbox SET next_at = ?3 WHERE server = ?1 AND target = ?2 AND next_at < ?3",
            )?,
        })
    }

    /// The notifications of a delivery of `server` recorded `at`.
    pub(crate) fn insert(
        &mut self,
        server: &str,
        at: UnixMillis,
        notices: &[Notice],
    ) -> rusqlite::Result<()> {
        for n in notices {
            self.insert.execute(params![server, n.target, n.body, at])?;
        }
        Ok(())
    }

    /// One attempt's result (a row already gone is no error: pruned meanwhile).
    pub(crate) fn update(&mut self, u: &Update) -> rusqlite::Result<()> {
        match u {
            Update::Sent(id) => self.delete.execute(params![id])?,
            Update::Retry { id, next_at, error } => {
                self.retry.execute(params![id, next_at, error])?
            }
            Update::PostponeTarget {
                server,
                target,
                until,
            } => self.postpone.execute(params![server, target, until])?,
        };
        Ok(())
    }
}
