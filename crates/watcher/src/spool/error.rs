//! [`SpoolError`]: what failed, on which path, with the OS error as its source. Touch
//! this to add a kind of spool failure the binary must tell apart.

use std::path::PathBuf;

/// A spool operation that failed, naming what and where.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    /// An I/O error on a named path.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// Where.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// Another daemon holds this instance's lock.
    #[error("another outpost is already running on {path} as instance {instance:?} (lock held)")]
    Locked {
        /// Instance folder.
        path: PathBuf,
        /// Instance name.
        instance: String,
    },
    /// The entry is not a regular file.
    #[error("{path}: not a regular file")]
    NotRegular {
        /// The entry.
        path: PathBuf,
    },
    /// Unknown server.
    #[error("server {0:?} is not configured")]
    UnknownServer(String),
}

impl SpoolError {
    /// The OS error behind it, if any.
    pub fn io_kind(&self) -> Option<std::io::ErrorKind> {
        match self {
            SpoolError::Io { source, .. } => Some(source.kind()),
            _ => None,
        }
    }
    /// The OS error behind it, if any.
    pub fn io_error(&self) -> Option<&std::io::Error> {
        match self {
            SpoolError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
    /// Whether the entry was reached through a symbolic link.
    pub fn is_link(&self) -> bool {
        let link = [rustix::io::Errno::LOOP, rustix::io::Errno::XDEV].map(|e| e.raw_os_error());
        matches!(self, SpoolError::Io { source, .. } if source.raw_os_error().is_some_and(|n| link.contains(&n)))
    }
}

pub(super) fn io(
    op: &'static str,
    path: impl Into<PathBuf>,
) -> impl FnOnce(std::io::Error) -> SpoolError {
    let path = path.into();
    move |source| SpoolError::Io { op, path, source }
}
