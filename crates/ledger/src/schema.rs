//! The file and its schema: creating the folder (0750) and the file (0640), the
//! connection settings of the writer and of readers, and the migrations that bring a
//! file to [`VERSION`] (`PRAGMA user_version`). To change the schema, append a
//! migration to [`MIGRATIONS`]; never edit one that has shipped.
//!
//! Durability: WAL with `synchronous=NORMAL`. A commit is written to the WAL file
//! before the writer acknowledges it, so a crash of the process (or `kill -9`) loses
//! nothing acknowledged. The WAL is fsynced only at checkpoints (every ~1000 pages,
//! ~4 MB, some thousands of rows): a power cut or kernel crash can lose the rows
//! committed since the last one — deliveries whose spool files may already be gone —
//! but never the file's consistency. `synchronous=FULL` would fsync every group commit
//! instead.

use std::fs::{DirBuilder, OpenOptions};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

use crate::LedgerError;

/// The newest schema version this build writes and reads.
pub const VERSION: i64 = MIGRATIONS.len() as i64;

/// Migration `i` brings a file from version `i` to `i + 1`, in one transaction.
const MIGRATIONS: &[&str] = &[
    // 1: the three outcome tables. Times are Unix milliseconds (UTC); every query
    // orders newest first by time, with the row id breaking ties.
    "
    CREATE TABLE delivered (
        id INTEGER PRIMARY KEY,
        server TEXT NOT NULL,
        bucket TEXT NOT NULL,
        key TEXT NOT NULL,
        size INTEGER NOT NULL,
        checksum_algorithm TEXT NOT NULL,
        checksum TEXT NOT NULL,
        store_checksum TEXT,
        etag TEXT,
        version_id TEXT,
        relative_path TEXT NOT NULL,
        dropped_at INTEGER NOT NULL,
        first_attempt INTEGER NOT NULL,
        delivered_at INTEGER NOT NULL,
        attempts INTEGER NOT NULL,
        duration_ms INTEGER NOT NULL,
        mode TEXT NOT NULL,
        outcome TEXT NOT NULL,
        instance TEXT NOT NULL,
        seq INTEGER NOT NULL,
        batch TEXT
    );
    -- `--since` without a server, and pruning.
    CREATE INDEX delivered_time ON delivered (delivered_at);
    -- A server's rows newest first (`outpost deliveries SERVER`, `audit SERVER`).
    CREATE INDEX delivered_server_time ON delivered (server, delivered_at);
    -- `--key PREFIX` (a range on the key) and the duplicate check (key and checksum
    -- equal: a key rewritten every minute still finds its duplicates at once).
    CREATE INDEX delivered_key ON delivered (key, checksum);
    CREATE TABLE failed (
        id INTEGER PRIMARY KEY,
        server TEXT NOT NULL,
        bucket TEXT NOT NULL,
        key TEXT NOT NULL,
        relative_path TEXT NOT NULL,
        reason TEXT NOT NULL,
        record_path TEXT NOT NULL,
        at INTEGER NOT NULL,
        attempts INTEGER NOT NULL,
        instance TEXT NOT NULL
    );
    CREATE INDEX failed_time ON failed (at);
    CREATE TABLE requeued (
        id INTEGER PRIMARY KEY,
        server TEXT NOT NULL,
        relative_path TEXT NOT NULL,
        at INTEGER NOT NULL
    );
    CREATE INDEX requeued_time ON requeued (at);
    ",
    // 2: the notification outbox (`outbox.rs`): one row per delivery and target until
    // it is sent. `next_at` is when it is due; `created_at` the delivery's time.
    "
    CREATE TABLE outbox (
        id INTEGER PRIMARY KEY,
        server TEXT NOT NULL,
        target TEXT NOT NULL,
        body TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        attempts INTEGER NOT NULL,
        next_at INTEGER NOT NULL,
        last_error TEXT
    );
    CREATE INDEX outbox_due ON outbox (next_at);
    CREATE INDEX outbox_created ON outbox (created_at);
    -- The backlog per target (count, oldest) from the index alone, and a target's rows
    -- postponed at once.
    CREATE INDEX outbox_target ON outbox (server, target, created_at);
    ",
    // 3: the multipart uploads outpost began (`uploads.rs`), for the orphan sweep.
    "
    CREATE TABLE uploads (
        id INTEGER PRIMARY KEY,
        server TEXT NOT NULL,
        bucket TEXT NOT NULL,
        key TEXT NOT NULL,
        upload_id TEXT NOT NULL,
        begun_at INTEGER NOT NULL,
        ended_at INTEGER,
        UNIQUE (bucket, upload_id)
    );
    -- The sweep's question: a server's open uploads in a bucket.
    CREATE INDEX uploads_open ON uploads (server, bucket) WHERE ended_at IS NULL;
    -- Pruning of ended uploads.
    CREATE INDEX uploads_ended ON uploads (ended_at);
    ",
];

/// How long a statement waits for another connection's lock before failing (a reader's
/// checkpoint, an operator's `sqlite3` shell): short for the writer, whose callers
/// wait for its acknowledgements.
const WRITER_BUSY: Duration = Duration::from_millis(1000);
const READER_BUSY: Duration = Duration::from_secs(5);

/// Opens (creating when missing) the ledger at `path` for writing, set up and migrated.
pub(crate) fn open_writer(path: &Path) -> Result<Connection, LedgerError> {
    let created = |p: &Path, e: std::io::Error| LedgerError::Create {
        path: p.to_owned(),
        source: Arc::new(e),
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        DirBuilder::new()
            .recursive(true)
            .mode(0o750)
            .create(dir)
            .map_err(|e| created(dir, e))?;
    }
    // Made here with its mode, so SQLite opens an existing file; SQLite gives the
    // `-wal` and `-shm` files the same mode.
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o640)
        .open(path)
        .map_err(|e| created(path, e))?;
    let conn = Connection::open(path).map_err(|e| LedgerError::open(path, e))?;
    let setup = || -> rusqlite::Result<String> {
        conn.busy_timeout(WRITER_BUSY)?;
        let mode: String =
            conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        // The WAL file shrinks back to this after a checkpoint.
        conn.pragma_update(None, "journal_size_limit", 64i64 << 20)?;
        Ok(mode)
    };
    let mode = setup().map_err(|e| LedgerError::open(path, e))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(LedgerError::Setup {
            path: path.to_owned(),
            reason: format!(
                "journal_mode is {mode}: WAL could not be set (a file system without shared memory?)"
            ),
        });
    }
    migrate(&conn, path)?;
    Ok(conn)
}

/// Brings the file to [`VERSION`], one transaction per step.
fn migrate(conn: &Connection, path: &Path) -> Result<(), LedgerError> {
    let found = user_version(conn).map_err(|e| LedgerError::open(path, e))?;
    if found > VERSION {
        return Err(LedgerError::NewerSchema {
            path: path.to_owned(),
            found,
            known: VERSION,
        });
    }
    for (from, sql) in MIGRATIONS
        .iter()
        .enumerate()
        .skip(usize::try_from(found).unwrap_or(0))
    {
        let step = || -> rusqlite::Result<()> {
            let tx = conn.unchecked_transaction()?;
            tx.execute_batch(sql)?;
            tx.pragma_update(None, "user_version", from as i64 + 1)?;
            tx.commit()
        };
        step().map_err(|e| LedgerError::open(path, e))?;
    }
    Ok(())
}

fn user_version(conn: &Connection) -> rusqlite::Result<i64> {
    conn.pragma_query_value(None, "user_version", |r| r.get(0))
}

/// Opens the ledger at `path` read-only, for queries while a daemon writes or when none
/// runs. `None`: the file exists but holds no schema yet (nothing recorded).
///
/// A WAL database needs its `-shm` file to be read: a reader that may not create it (a
/// stopped daemon removed it, and the reader is in the group but not the owner) opens
/// the file as immutable instead, which is right as long as no daemon writes.
pub(crate) fn open_reader(path: &Path) -> Result<Option<Connection>, LedgerError> {
    if !path.exists() {
        return Err(LedgerError::Missing {
            path: path.to_owned(),
        });
    }
    let conn = match Connection::open_with_flags(path, READER).and_then(ready) {
        Ok(c) => c,
        Err(e) if !wal_file(path).exists() && cannot_open(&e) => {
            Connection::open_with_flags(immutable_uri(path), READER)
                .and_then(ready)
                .map_err(|e| LedgerError::query(path, e))?
        }
        Err(e) => return Err(LedgerError::query(path, e)),
    };
    with_schema(path, conn)
}

/// A reader's flags.
const READER: OpenFlags = OpenFlags::SQLITE_OPEN_READ_ONLY
    .union(OpenFlags::SQLITE_OPEN_NO_MUTEX)
    .union(OpenFlags::SQLITE_OPEN_URI);

/// [`open_reader`] for the running daemon's own reads, kept between them: never the
/// immutable fallback (a connection that would not see new rows for good).
pub(crate) fn open_live_reader(path: &Path) -> Result<Option<Connection>, LedgerError> {
    let conn = Connection::open_with_flags(path, READER)
        .and_then(ready)
        .map_err(|e| LedgerError::query(path, e))?;
    with_schema(path, conn)
}

/// `conn` if its schema is one this build reads; `None` when it has none yet.
fn with_schema(path: &Path, conn: Connection) -> Result<Option<Connection>, LedgerError> {
    let found = user_version(&conn).map_err(|e| LedgerError::query(path, e))?;
    if found > VERSION {
        return Err(LedgerError::NewerSchema {
            path: path.to_owned(),
            found,
            known: VERSION,
        });
    }
    Ok((found > 0).then_some(conn))
}

/// A reader's settings, and a first read that fails now if the file cannot be read.
fn ready(conn: Connection) -> rusqlite::Result<Connection> {
    conn.busy_timeout(READER_BUSY)?;
    conn.query_row("SELECT count(*) FROM sqlite_schema", [], |_| Ok(()))?;
    Ok(conn)
}

fn cannot_open(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(rusqlite::ErrorCode::CannotOpen | rusqlite::ErrorCode::ReadOnly)
    )
}

fn wal_file(path: &Path) -> std::path::PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push("-wal");
    p.into()
}

/// `file:<path>?immutable=1`, with the characters URIs reserve escaped.
fn immutable_uri(path: &Path) -> String {
    let mut uri = String::from("file:");
    for b in path.as_os_str().as_encoded_bytes() {
        match b {
            b'?' | b'#' | b'%' | 0..0x20 | 0x7f.. => uri.push_str(&format!("%{b:02X}")),
            _ => uri.push(char::from(*b)),
        }
    }
    uri.push_str("?immutable=1");
    uri
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fallback for readers that may not create `-shm` opens odd names too.
    #[test]
    fn immutable_uri_opens_names_with_reserved_characters() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("odd ?#%é").join("ledger.sqlite");
        open_writer(&path).expect("created");
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_URI;
        let conn = Connection::open_with_flags(immutable_uri(&path), flags).expect("opened");
        assert_eq!(user_version(&conn).expect("read"), VERSION);
    }
}
