//! One transaction of the writer: the rows of a batch of messages (deliveries with
//! their notifications, failures, requeues, outbox answers), each with its own result.
//! The duplicate rule — a claim delivered again after a crash is `already_present` and
//! brings no second notifications — lives here.

use std::sync::Arc;

use rusqlite::{Connection, Statement, TransactionBehavior, params};

use crate::outbox::{Notice, OutboxStatements, Update};
use crate::row::{Delivered, Failed, Outcome, Requeued, Row};
use crate::writer::Reply;

/// Stores `rows` in one transaction: the outer error fails them all (the transaction
/// could not begin or commit), else each row's own result.
pub(crate) fn write(
    conn: &mut Connection,
    rows: &[(Message, Reply)],
) -> rusqlite::Result<Vec<Result<(), Arc<rusqlite::Error>>>> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let mut results = Vec::with_capacity(rows.len());
    {
        let mut st = Statements::prepare(&tx)?;
        let mut outbox = OutboxStatements::prepare(&tx)?;
        for (m, _) in rows {
            // Each message whole or not at all: a delivery is never stored without its
            // notifications (a statement that fails leaves the others of its message
            // standing unless rolled back to the savepoint).
            tx.execute_batch("SAVEPOINT message")?;
            let r = match m {
                Message::Row(row) => match &**row {
                    (Row::Delivered(d), notices) => st.delivered(d, notices, &mut outbox),
                    (Row::Failed(f), _) => st.failed(f),
                    (Row::Requeued(r), _) => st.requeued(r),
                },
                Message::Outbox(updates) => updates.iter().try_for_each(|u| outbox.update(u)),
            };
            if tx.is_autocommit() {
                // SQLite rolled the whole transaction back (a full disk, an I/O error):
                // nothing of this batch is stored.
                return Err(r.err().unwrap_or(rusqlite::Error::InvalidQuery));
            }
            match &r {
                Ok(()) => tx.execute_batch("RELEASE message")?,
                Err(_) => tx.execute_batch("ROLLBACK TO message; RELEASE message")?,
            }
            results.push(r.map_err(Arc::new));
        }
    }
    tx.commit()?;
    Ok(results)
}

/// What one transaction stores for one message.
pub(crate) enum Message {
    /// A row and its notifications.
    Row(Box<(Row, Vec<Notice>)>),
    /// Results of sending notifications.
    Outbox(Vec<Update>),
}

/// The statements of one transaction (prepared once per batch).
struct Statements<'c> {
    duplicate: Statement<'c>,
    delivered: Statement<'c>,
    failed: Statement<'c>,
    requeued: Statement<'c>,
}

impl<'c> Statements<'c> {
    fn prepare(conn: &'c Connection) -> rusqlite::Result<Self> {
        Ok(Statements {
            // The same claim delivered again (instance and seq): a re-upload after a
            // crash between the store's acknowledgement and the spool's finish. A
            // claimed file does not change, so the same claim has the same checksum too,
            // and the search is a seek on (key, checksum) — unless the checksum
            // algorithm was changed between the two uploads, when the second row counts
            // as written. Another claim of the same bytes (dropped again, or taken over
            // by another daemon) is a write of its own, never guessed to be a duplicate.
            duplicate: conn.prepare(
                "SELECT 1 FROM delivered WHERE key = ?1 AND checksum = ?5 AND server = ?2 \
                 AND instance = ?3 AND seq = ?4 LIMIT 1",
            )?,
            delivered: conn.prepare(
                "INSERT INTO delivered (server, bucket, key, size, checksum_algorithm, checksum, \
                 store_checksum, etag, version_id, relative_path, dropped_at, first_attempt, \
                 delivered_at, attempts, duration_ms, mode, outcome, instance, seq, batch) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, \
                 ?17, ?18, ?19, ?20)",
            )?,
            failed: conn.prepare(
                "INSERT INTO failed (server, bucket, key, relative_path, reason, record_path, at, \
                 attempts, instance) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            )?,
            requeued: conn
                .prepare("INSERT INTO requeued (server, relative_path, at) VALUES (?1, ?2, ?3)")?,
        })
    }

    /// A delivery and its notifications; a re-upload of a claim already recorded
    /// (`already_present`) adds none: the first row's are there.
    fn delivered(
        &mut self,
        d: &Delivered,
        notices: &[Notice],
        outbox: &mut OutboxStatements<'_>,
    ) -> rusqlite::Result<()> {
        let size = i64::try_from(d.size).unwrap_or(i64::MAX);
        let seq = i64::try_from(d.seq).unwrap_or(i64::MAX);
        let outcome = if d.outcome == Outcome::Written
            && self
                .duplicate
                .exists(params![d.key, d.server, d.instance, seq, d.checksum])?
        {
            Outcome::AlreadyPresent
        } else {
            d.outcome
        };
        self.delivered.execute(params![
            d.server,
            d.bucket,
            d.key,
            size,
            d.checksum_algorithm,
            d.checksum,
            d.store_checksum,
            d.etag,
            d.version_id,
            d.relative_path,
            d.dropped_at,
            d.first_attempt,
            d.delivered_at,
            d.attempts,
            i64::try_from(d.duration_ms).unwrap_or(i64::MAX),
            d.mode.as_str(),
            outcome.as_str(),
            d.instance,
            seq,
            d.batch,
        ])?;
        if !(d.outcome == Outcome::Written && outcome == Outcome::AlreadyPresent) {
            outbox.insert(&d.server, d.delivered_at, notices)?;
        }
        Ok(())
    }

    fn failed(&mut self, f: &Failed) -> rusqlite::Result<()> {
        self.failed.execute(params![
            f.server,
            f.bucket,
            f.key,
            f.relative_path,
            f.reason,
            f.record_path,
            f.at,
            f.attempts,
            f.instance,
        ])?;
        Ok(())
    }

    fn requeued(&mut self, r: &Requeued) -> rusqlite::Result<()> {
        self.requeued
            .execute(params![r.server, r.relative_path, r.at])?;
        Ok(())
    }
}
