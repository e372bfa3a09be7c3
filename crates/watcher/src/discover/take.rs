//! Taking what the completion rules found complete: claims in batches (one set of
//! fsyncs per batch), a file whose name can never be a key failed at once, and refused
//! entries reported once per run. Touch this to change what happens to a complete file
//! before the scheduler gets its claim.

use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use super::FailedFiles;
use super::event_loop::State;
use crate::rules::{MAX_KEY_BYTES, key_problem};
use crate::spool::{FailRecord, SpoolError, rfc3339};
use crate::{FailReason, RejectReason};

/// Most files claimed in one batch (one set of fsyncs).
const CLAIM_BATCH: usize = 256;

/// A relative path to claim and its marker, if any.
type ToClaim = (PathBuf, Option<PathBuf>);

impl State {
    /// Claims a complete file of `rule`'s server, or fails it at once if its name can
    /// never be a key.
    pub(super) fn take(&mut self, rule: &super::ServerRule, rel: &Path, marker: Option<&Path>) {
        let server = rule.name.as_str();
        if let Some(reason) = key_problem(&rule.prefix, rel.as_os_str().as_bytes()) {
            self.fail_unpublishable(rule, rel, reason);
            if let Some(m) = marker {
                let _ = self.d.spool.remove_marker(server, m, None);
            }
            return;
        }
        // Once per batch: a marker-rule file is found both for itself and for its
        // marker; a second entry would claim a new drop of the name with the old marker.
        if self
            .to_claim
            .iter()
            .any(|(s, r, _)| s == server && r == rel)
        {
            return;
        }
        self.to_claim.push((
            server.to_owned(),
            rel.to_owned(),
            marker.map(Path::to_owned),
        ));
        if self.to_claim.len() >= CLAIM_BATCH {
            self.flush();
        }
    }

    /// Moves a file whose name can never be a key straight to `.failed/`.
    fn fail_unpublishable(&mut self, rule: &super::ServerRule, rel: &Path, reason: FailReason) {
        let server = rule.name.as_str();
        let rel_lossy = rel.to_string_lossy().into_owned();
        let record = FailRecord {
            server: server.to_owned(),
            relative_path: rel_lossy.clone(),
            file: String::new(),
            reason: reason.as_str().into(),
            bucket: rule.bucket.clone(),
            key: format!("{}{}", rule.prefix, rel_lossy),
            attempts: 0,
            first_attempt: None,
            last_attempt: None,
            last_error: match reason {
                FailReason::NameNotUtf8 => {
                    "the file name is not valid UTF-8; S3 keys are UTF-8".into()
                }
                _ => format!("the key would be longer than S3's {MAX_KEY_BYTES} bytes"),
            },
            failed_at: rfc3339(SystemTime::now()),
            file_bytes: None,
            relative_path_bytes: None,
            existing_object: None,
        };
        match self.d.spool.fail_in_place(server, rel, record) {
            Ok(dest) => {
                self.d.events.failed_at_discovery(server, reason, &dest);
                (self.d.on_failed)(FailedFiles::One {
                    server: server.to_owned(),
                    rel: rel_lossy,
                });
            }
            Err(e) => {
                tracing::error!(server, path = %self.full(server, rel).display(), error = %e, "cannot move an unpublishable file to .failed")
            }
        }
    }

    /// Claims what [`State::take`] collected: one batch per server, so the fsyncs are
    /// paid once per batch, not once per file.
    pub(super) fn flush(&mut self) {
        self.claim_collected();
        // After the claims (their record was durable before them, so a marker gone
        // with claims missing still leaves the batch complete).
        for (server, m, seen) in std::mem::take(&mut self.batch_markers) {
            if let Err(e) = self.d.spool.remove_marker(&server, &m, Some(seen)) {
                tracing::warn!(server, marker = %m.display(), error = %e, "cannot remove a batch marker");
            }
        }
    }

    fn claim_collected(&mut self) {
        if self.to_claim.is_empty() {
            return;
        }
        let items = std::mem::take(&mut self.to_claim);
        let mut by_server: Vec<(String, Vec<ToClaim>)> = Vec::new();
        for (server, rel, marker) in items {
            match by_server.iter_mut().find(|(s, _)| *s == server) {
                Some((_, v)) => v.push((rel, marker)),
                None => by_server.push((server, vec![(rel, marker)])),
            }
        }
        for (server, batch) in by_server {
            for (rel, result) in self.d.spool.claim_batch(&server, &batch) {
                let server = server.as_str();
                let rel = rel.as_path();
                match result {
                    Ok(Some(c)) => {
                        tracing::debug!(server, rel = %c.rel, seq = c.seq, bytes = c.size, "claimed");
                        if !(self.d.sink)(c) {
                            tracing::debug!("claim receiver gone");
                        }
                    }
                    Ok(None) => {}
                    Err(SpoolError::NotRegular { .. }) => {
                        self.reject(server, rel, RejectReason::Special)
                    }
                    Err(e) if e.is_link() => self.reject(server, rel, RejectReason::Symlink),
                    Err(e) => {
                        let key = (server.to_owned(), rel.to_owned());
                        if self.reported.insert(key) {
                            tracing::error!(server, path = %self.full(server, rel).display(), error = %e, "cannot claim file; it stays in the spool");
                        }
                    }
                }
            }
        }
    }

    /// An entry that could not be opened: a link on the way, or unreadable (reported
    /// once); one that went away is no news.
    pub(super) fn open_error(&mut self, server: &str, rel: &Path, e: &std::io::Error) {
        if e.kind() == std::io::ErrorKind::NotFound {
            return;
        }
        let loop_ = e.raw_os_error() == Some(rustix::io::Errno::LOOP.raw_os_error())
            || e.raw_os_error() == Some(rustix::io::Errno::XDEV.raw_os_error())
            || e.raw_os_error() == Some(rustix::io::Errno::NOTDIR.raw_os_error());
        let reason = if loop_ {
            RejectReason::Symlink
        } else {
            RejectReason::Unreadable
        };
        self.reject(server, rel, reason);
    }

    /// Reports a refused entry, once per run.
    pub(super) fn reject(&mut self, server: &str, rel: &Path, reason: RejectReason) {
        self.reject_at(server, rel, reason, &self.full(server, rel));
    }

    /// [`State::reject`], shown at `full`.
    pub(super) fn reject_at(
        &mut self,
        server: &str,
        rel: &Path,
        reason: RejectReason,
        full: &Path,
    ) {
        if self.reported.insert((server.to_owned(), rel.to_owned())) {
            self.d.events.rejected(server, reason, full);
        }
    }

    /// Where an entry is, for people.
    pub(super) fn full(&self, server: &str, rel: &Path) -> PathBuf {
        self.d.spool.root().join(server).join(rel)
    }
}
