//! The ledger's one error type: every variant that concerns a file names it, and a row
//! that was not stored says why (queue full, writer gone, database error). Callers
//! decide by [`LedgerError::is_lost_row`], never by the message.

use std::path::PathBuf;
use std::sync::Arc;

use rusqlite::ErrorCode;

/// What went wrong with the ledger.
#[derive(Debug, Clone, thiserror::Error)]
pub enum LedgerError {
    /// The state folder could not be created, or the file could not be created in it.
    #[error("cannot create the delivery ledger {path}: {source}")]
    Create {
        /// The folder or file that could not be made.
        path: PathBuf,
        /// The system's reason.
        #[source]
        source: Arc<std::io::Error>,
    },
    /// SQLite refused to open or set up the file (permissions, locks, a full disk).
    #[error("cannot open the delivery ledger {path}: {source}")]
    Open {
        /// The ledger file.
        path: PathBuf,
        /// SQLite's reason.
        #[source]
        source: Arc<rusqlite::Error>,
    },
    /// The file opened but cannot be set up as the ledger needs (WAL refused).
    #[error("cannot set up the delivery ledger {path}: {reason}")]
    Setup {
        /// The ledger file.
        path: PathBuf,
        /// What was refused.
        reason: String,
    },
    /// The file is not a SQLite database, or its pages are damaged.
    #[error(
        "the delivery ledger {path} is damaged or not a SQLite database ({reason}); move it \
         aside and a new one is created at the next start"
    )]
    Corrupt {
        /// The ledger file.
        path: PathBuf,
        /// SQLite's words.
        reason: String,
    },
    /// The file was written by a newer outpost whose schema this one does not know.
    #[error(
        "the delivery ledger {path} has schema version {found}, newer than this outpost \
         knows ({known}); run the newer outpost or move the file aside"
    )]
    NewerSchema {
        /// The ledger file.
        path: PathBuf,
        /// `PRAGMA user_version` found in the file.
        found: i64,
        /// The newest version this build knows.
        known: i64,
    },
    /// `outpost deliveries` found no ledger file (the daemon never ran with this
    /// `state_dir`).
    #[error("there is no delivery ledger at {path} (has the daemon run with this state_dir?)")]
    Missing {
        /// Where the ledger was looked for.
        path: PathBuf,
    },
    /// A read failed.
    #[error("cannot read the delivery ledger {path}: {source}")]
    Query {
        /// The ledger file.
        path: PathBuf,
        /// SQLite's reason.
        #[source]
        source: Arc<rusqlite::Error>,
    },
    /// The row was not queued: the writer's queue was full (a slow or stuck disk).
    #[error("the delivery ledger's queue is full: row not recorded")]
    QueueFull,
    /// The row was not queued: the writer thread has stopped.
    #[error("the delivery ledger's writer has stopped: row not recorded")]
    WriterGone,
    /// The transaction holding the row failed; the row is lost.
    #[error("the delivery ledger could not store the row: {0}")]
    Write(#[source] Arc<rusqlite::Error>),
}

impl LedgerError {
    /// Whether this error means a recorded row is not in the ledger (as opposed to the
    /// ledger not being usable at all).
    pub fn is_lost_row(&self) -> bool {
        matches!(
            self,
            LedgerError::QueueFull | LedgerError::WriterGone | LedgerError::Write(_)
        )
    }

    /// An error of SQLite while opening or setting up `path`: damaged files get their
    /// own variant, so that the operator reads what to do.
    pub(crate) fn open(path: &std::path::Path, e: rusqlite::Error) -> LedgerError {
        match e.sqlite_error_code() {
            Some(ErrorCode::NotADatabase | ErrorCode::DatabaseCorrupt) => LedgerError::Corrupt {
                path: path.to_owned(),
                reason: e.to_string(),
            },
            _ => LedgerError::Open {
                path: path.to_owned(),
                source: Arc::new(e),
            },
        }
    }

    /// An error of SQLite while reading `path`.
    pub(crate) fn query(path: &std::path::Path, e: rusqlite::Error) -> LedgerError {
        match e.sqlite_error_code() {
            Some(ErrorCode::NotADatabase | ErrorCode::DatabaseCorrupt) => {
                LedgerError::open(path, e)
            }
            _ => LedgerError::Query {
                path: path.to_owned(),
                source: Arc::new(e),
            },
        }
    }
}
