//! The multipart uploads outpost began (table `uploads`): a row for every upload id a
//! CreateMultipartUpload of ours returned, marked ended once the upload was completed
//! or aborted. The orphan sweep aborts only uploads this table holds as begun by
//! outpost for the server and bucket and not ended — an upload the listing shows
//! without a row here is never ours to touch. Marks are queued like rows
//! ([`Ledger::upload_begun`] never waits); a lost mark errs on the safe side (an
//! upload outpost does not know it began is left to the bucket's lifecycle rule; a
//! missing "ended" makes the sweep's abort answer NoSuchUpload). Ended rows are pruned
//! with `ledger_retention`.

use std::path::Path;

use rusqlite::{Connection, params};

use crate::writer::Msg;
use crate::{Ledger, LedgerError, UnixMillis, now_millis};

/// What happened to one multipart upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UploadMark {
    /// CreateMultipartUpload of `server` returned `upload_id` for `key` in `bucket`.
    Begun {
        server: String,
        bucket: String,
        key: String,
        upload_id: String,
        at: UnixMillis,
    },
    /// The upload was completed or aborted (or the store no longer knows it).
    Ended {
        bucket: String,
        upload_id: String,
        at: UnixMillis,
    },
}

/// An upload outpost began and has not seen end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenUpload {
    /// Its key.
    pub key: String,
    /// Its id.
    pub upload_id: String,
    /// When its CreateMultipartUpload answered (our clock).
    pub begun_at: UnixMillis,
}

impl Ledger {
    /// Records that `server`'s CreateMultipartUpload returned `upload_id`; never waits.
    pub fn upload_begun(&self, server: &str, bucket: &str, key: &str, upload_id: &str) {
        self.mark(UploadMark::Begun {
            server: server.to_owned(),
            bucket: bucket.to_owned(),
            key: key.to_owned(),
            upload_id: upload_id.to_owned(),
            at: now_millis(),
        });
    }

    /// Records that `upload_id` in `bucket` was completed or aborted; never waits.
    pub fn upload_ended(&self, bucket: &str, upload_id: &str) {
        self.mark(UploadMark::Ended {
            bucket: bucket.to_owned(),
            upload_id: upload_id.to_owned(),
            at: now_millis(),
        });
    }

    fn mark(&self, m: UploadMark) {
        if self.send(Msg::Upload(m)).is_err() {
            self.count_dropped();
        }
    }

    /// The uploads `server` began in `bucket` that have not ended, as committed now
    /// (a read-only connection of its own, kept between calls and opened again after
    /// an error: never waits for the writer).
    pub fn open_uploads(&self, server: &str, bucket: &str) -> Result<Vec<OpenUpload>, LedgerError> {
        let mut reader = self.reader.lock().unwrap_or_else(|e| e.into_inner());
        let conn = match reader.take() {
            Some(c) => c,
            None => match crate::schema::open_live_reader(&self.path)? {
                Some(c) => c,
                None => return Ok(Vec::new()), // no schema yet: nothing recorded
            },
        };
        let found =
            query_open(&conn, server, bucket).map_err(|e| LedgerError::query(&self.path, e))?;
        *reader = Some(conn);
        Ok(found)
    }
}

/// [`Ledger::open_uploads`] of the ledger at `path`.
pub fn open_uploads(
    path: &Path,
    server: &str,
    bucket: &str,
) -> Result<Vec<OpenUpload>, LedgerError> {
    let Some(conn) = crate::schema::open_reader(path)? else {
        return Ok(Vec::new());
    };
    query_open(&conn, server, bucket).map_err(|e| LedgerError::query(path, e))
}

fn query_open(conn: &Connection, server: &str, bucket: &str) -> rusqlite::Result<Vec<OpenUpload>> {
    let mut st = conn.prepare(
        "SELECT key, upload_id, begun_at FROM uploads \
         WHERE server = ?1 AND bucket = ?2 AND ended_at IS NULL",
    )?;
    st.query_map(params![server, bucket], |r| {
        Ok(OpenUpload {
            key: r.get(0)?,
            upload_id: r.get(1)?,
            begun_at: r.get(2)?,
        })
    })?
    .collect()
}

/// Stores `marks` in one transaction. A "begun" seen twice keeps the first; an "ended"
/// of an unknown upload changes nothing.
pub(crate) fn write(conn: &mut Connection, marks: &[UploadMark]) -> rusqlite::Result<()> {
    let tx = conn.transaction()?;
    {
        let mut begun = tx.prepare(
            "INSERT OR IGNORE INTO uploads (server, bucket, key, upload_id, begun_at) \
             VALUES (?1, ?2, ?3, ?4, ?5)",
        )?;
        let mut ended = tx.prepare(
            "UPDATE uploads SET ended_at = ?3 \
             WHERE bucket = ?1 AND upload_id = ?2 AND ended_at IS NULL",
        )?;
        for m in marks {
            match m {
                UploadMark::Begun {
                    server,
                    bucket,
                    key,
                    upload_id,
                    at,
                } => begun.execute(params![server, bucket, key, upload_id, at])?,
                UploadMark::Ended {
                    bucket,
                    upload_id,
                    at,
                } => ended.execute(params![bucket, upload_id, at])?,
            };
        }
    }
    tx.commit()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kept_reader_sees_new_rows_and_a_clean_close_leaves_no_wal() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("ledger.sqlite");
        let l = Ledger::open(&path).expect("open");
        l.upload_begun("a", "b", "k1", "u1");
        l.sync().wait().expect("sync");
        assert_eq!(l.open_uploads("a", "b").expect("read").len(), 1);
        l.upload_begun("a", "b", "k2", "u2");
        l.sync().wait().expect("sync");
        assert_eq!(
            l.open_uploads("a", "b").expect("read").len(),
            2,
            "kept reader"
        );
        l.close();
        let mut wal = path.clone().into_os_string();
        wal.push("-wal");
        assert!(
            !std::path::Path::new(&wal).exists(),
            "the WAL was not checkpointed at close"
        );
    }

    #[test]
    fn open_uploads_are_those_begun_for_the_server_and_bucket_and_not_ended() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("ledger.sqlite");
        let l = Ledger::open(&path).expect("open");
        l.upload_begun("a", "b", "k1", "u1");
        l.upload_begun("a", "b", "k2", "u2");
        l.upload_begun("a", "other", "k3", "u3");
        l.upload_begun("x", "b", "k4", "u4");
        l.upload_ended("b", "u2");
        l.upload_ended("b", "never-begun");
        l.sync().wait().expect("sync");
        let open = l.open_uploads("a", "b").expect("read");
        assert_eq!(open.len(), 1, "{open:?}");
        assert_eq!(
            (open[0].key.as_str(), open[0].upload_id.as_str()),
            ("k1", "u1")
        );
        // Ended rows go with the retention; open ones stay.
        l.prune(std::time::SystemTime::now() + std::time::Duration::from_secs(60))
            .wait()
            .expect("prune");
        let conn = Connection::open(&path).expect("conn");
        let left: i64 = conn
            .query_row("SELECT count(*) FROM uploads", [], |r| r.get(0))
            .expect("count");
        assert_eq!(left, 3);
        assert_eq!(l.open_uploads("a", "b").expect("read").len(), 1);
    }
}
