//! The multipart journal of one file as an explicit state: nothing, requests whose
//! upload may be unrecorded (suspect since T), or a recorded upload (maybe with such
//! requests before it). [`MpuRecord`] is the JSON on disk and must not change shape
//! (the spool keeps journals across upgrades; the tests pin it); the upload code reads
//! and writes [`Entry`] and matches on [`State`]. A reader may add a state transition
//! here; what a state makes the upload *do* is decided in `start.rs`, `complete.rs`
//! and `cleanup.rs`.

use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

use crate::{Journal, UploadError};

/// The journal of a multipart upload in progress, as saved on disk.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct MpuRecord {
    /// Upload id from CreateMultipartUpload (empty: none recorded; always written,
    /// tests and operators look for `"upload_id":""`).
    pub upload_id: String,
    /// Bucket it was created in.
    pub bucket: String,
    /// Key it was created for.
    pub key: String,
    /// File size it was created for.
    pub size: u64,
    /// File mtime it was created for.
    pub mtime_ns: i128,
    /// Part size used.
    pub part_size: u64,
    /// Set while a CreateMultipartUpload of this file may have begun an upload nobody
    /// recorded (a kill, or a lost answer, between the request and its journal entry):
    /// the earliest such request's time, minus [`CLOCK_SLACK`]. Kept, beside a recorded
    /// `upload_id` too, until a listing made once the store must have answered showed
    /// every upload those requests could have begun (see `cleanup::orphans`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suspect_since_unix: Option<i64>,
    /// The latest such request's time (journals of earlier versions lack it:
    /// `suspect_since_unix` + [`CLOCK_SLACK`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suspect_last_unix: Option<i64>,
    /// Random; tells this journal apart from every other one on the spool (other claims,
    /// other daemons), whose recorded uploads and intents are never taken for ours.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub token: String,
    /// The checksum header its parts are sent with (`crc32c`, `crc64nvme`, `md5`,
    /// `none`): an upload is resumed only with the same (empty: a journal of an earlier
    /// version, resumed as it was).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub parts_check: String,
}

/// Seconds of difference allowed between our clock and the store's `Initiated` times.
pub(crate) const CLOCK_SLACK: i64 = 2;

impl MpuRecord {
    /// The `Initiated` times (Unix seconds, inclusive) of the uploads an unrecorded
    /// CreateMultipartUpload of this journal may have begun: from the first such request
    /// to `answer_within` seconds after the last (the store begins an upload before it
    /// answers, and we wait `answer_within` for an answer).
    pub fn suspect_window(&self, answer_within: i64) -> Option<(i64, i64)> {
        Entry::from(self.clone())
            .state
            .suspect()
            .map(|s| s.window(answer_within))
    }
}

/// When CreateMultipartUpload requests whose upload nobody recorded were sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Suspect {
    /// The earliest such request's time, minus [`CLOCK_SLACK`].
    pub since: i64,
    /// The latest such request's time; `None` in journals of earlier versions, read as
    /// `since` + [`CLOCK_SLACK`] (kept `None` so such a journal is written back as read).
    pub last: Option<i64>,
}

impl Suspect {
    fn last(&self) -> i64 {
        self.last.unwrap_or(self.since.saturating_add(CLOCK_SLACK))
    }

    /// See [`MpuRecord::suspect_window`].
    pub fn window(&self, answer_within: i64) -> (i64, i64) {
        let to = self.last().saturating_add(answer_within);
        (self.since, to.saturating_add(CLOCK_SLACK))
    }

    /// From when a listing shows every upload in [`Suspect::window`].
    pub fn settled_at(&self, answer_within: i64) -> i64 {
        self.last().saturating_add(answer_within).saturating_add(1)
    }

    /// `earlier` widened by a request about to be sent at `now`.
    fn add(earlier: Option<Suspect>, now: i64) -> Suspect {
        let since = now - CLOCK_SLACK;
        Suspect {
            since: earlier.map_or(since, |e| e.since.min(since)),
            last: Some(earlier.and_then(|e| e.last).unwrap_or(i64::MIN).max(now)),
        }
    }
}

/// What a file's multipart journal remembers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum State {
    /// Nothing: no journal on disk.
    None,
    /// Requests whose upload may be unrecorded; no recorded upload.
    Suspect(Suspect),
    /// A recorded upload, and maybe earlier requests whose upload may be unrecorded.
    Recorded {
        /// Its id.
        upload_id: String,
        /// Earlier requests still to sweep for.
        suspect: Option<Suspect>,
    },
}

impl State {
    fn of(upload_id: String, suspect: Option<Suspect>) -> State {
        match (upload_id.is_empty(), suspect) {
            (false, suspect) => State::Recorded { upload_id, suspect },
            (true, Some(s)) => State::Suspect(s),
            (true, None) => State::None,
        }
    }

    /// The recorded upload's id.
    pub fn upload_id(&self) -> Option<&str> {
        match self {
            State::Recorded { upload_id, .. } => Some(upload_id),
            State::None | State::Suspect(_) => None,
        }
    }

    /// The requests whose upload may be unrecorded.
    pub fn suspect(&self) -> Option<Suspect> {
        match self {
            State::Suspect(s)
            | State::Recorded {
                suspect: Some(s), ..
            } => Some(*s),
            State::None | State::Recorded { suspect: None, .. } => None,
        }
    }

    /// The recorded upload is gone (aborted, completed or unknown to the store).
    pub fn forget_upload(self) -> State {
        State::of(String::new(), self.suspect())
    }

    /// A listing showed every upload the unrecorded requests may have begun.
    pub fn settled(self) -> State {
        match self {
            State::Recorded { upload_id, .. } => State::of(upload_id, None),
            State::None | State::Suspect(_) => State::None,
        }
    }

    /// A CreateMultipartUpload is about to be sent at `now`.
    pub fn creating(self, now: i64) -> State {
        let suspect = Suspect::add(self.suspect(), now);
        State::of(
            self.upload_id().unwrap_or_default().to_owned(),
            Some(suspect),
        )
    }

    /// Its answer named `upload_id`: `self` is the state before the request (whose own
    /// suspicion the answer lifts).
    pub fn created(self, upload_id: String) -> State {
        State::of(upload_id, self.suspect())
    }
}

/// A file's multipart journal: what its upload was created for, and its [`State`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    /// Bucket the upload is created in.
    pub bucket: String,
    /// Key it is created for.
    pub key: String,
    /// File size it is created for: a recorded upload is resumed only for the same.
    pub size: u64,
    /// File mtime it is created for, likewise.
    pub mtime_ns: i128,
    /// Part size used, likewise.
    pub part_size: u64,
    /// See [`MpuRecord::parts_check`].
    pub parts_check: String,
    /// See [`MpuRecord::token`].
    pub token: String,
    /// What the journal remembers.
    pub state: State,
}

impl From<MpuRecord> for Entry {
    fn from(r: MpuRecord) -> Entry {
        let suspect = r.suspect_since_unix.map(|since| Suspect {
            since,
            last: r.suspect_last_unix,
        });
        Entry {
            state: State::of(r.upload_id, suspect),
            bucket: r.bucket,
            key: r.key,
            size: r.size,
            mtime_ns: r.mtime_ns,
            part_size: r.part_size,
            parts_check: r.parts_check,
            token: r.token,
        }
    }
}

impl From<&Entry> for MpuRecord {
    fn from(e: &Entry) -> MpuRecord {
        let suspect = e.state.suspect();
        MpuRecord {
            upload_id: e.state.upload_id().unwrap_or_default().to_owned(),
            bucket: e.bucket.clone(),
            key: e.key.clone(),
            size: e.size,
            mtime_ns: e.mtime_ns,
            part_size: e.part_size,
            suspect_since_unix: suspect.map(|s| s.since),
            suspect_last_unix: suspect.and_then(|s| s.last),
            token: e.token.clone(),
            parts_check: e.parts_check.clone(),
        }
    }
}

impl Entry {
    /// Parses a saved journal (`None` if damaged).
    pub fn parse(bytes: &[u8]) -> Option<Entry> {
        serde_json::from_slice::<MpuRecord>(bytes)
            .ok()
            .map(Entry::from)
    }

    /// The journal saved for this file.
    pub fn load(journal: &dyn Journal) -> Option<Entry> {
        journal.load().and_then(|b| Entry::parse(&b))
    }

    /// Saves it, or forgets the journal when nothing is left to remember.
    pub fn persist(&self, journal: &dyn Journal) -> Result<(), UploadError> {
        if self.state == State::None {
            journal.clear();
            return Ok(());
        }
        let bytes = serde_json::to_vec(&MpuRecord::from(self)).unwrap_or_default();
        journal
            .save(&bytes)
            .map_err(|e| UploadError::io("journal", &e))
    }

    /// Names a journal of an earlier version (no token) so sweeps tell it apart.
    pub fn ensure_token(&mut self) -> bool {
        let unnamed = self.token.is_empty();
        if unnamed {
            self.token = new_token();
        }
        unnamed
    }
}

/// A random token for a new journal.
pub(crate) fn new_token() -> String {
    use std::hash::{BuildHasher, Hasher};
    static N: AtomicU64 = AtomicU64::new(0);
    // RandomState is seeded from the OS once per thread and differs per instance.
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(N.fetch_add(1, Ordering::Relaxed));
    h.write_u32(std::process::id());
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    format!("{:016x}", h.finish())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn sus(since: i64, last: Option<i64>) -> Suspect {
        Suspect { since, last }
    }

    /// A journal entry for `key` in bucket `b`.
    pub(crate) fn entry(
        key: &str,
        upload_id: &str,
        suspect: Option<(i64, i64)>,
        token: &str,
    ) -> Entry {
        let suspect = suspect.map(|(since, last)| sus(since, Some(last)));
        Entry {
            bucket: "b".into(),
            key: key.into(),
            size: 1,
            mtime_ns: 2,
            part_size: 3,
            parts_check: String::new(),
            token: token.into(),
            state: State::of(upload_id.into(), suspect),
        }
    }

    /// Journals exactly as the version before this module wrote them: a later version
    /// must read them and write them back byte for byte (the spool keeps them across
    /// upgrades).
    const JOURNALS: [&str; 4] = [
        r#"{"upload_id":"","bucket":"b","key":"k","size":1,"mtime_ns":2,"part_size":3,"suspect_since_unix":998,"suspect_last_unix":1000,"token":"00ff"}"#,
        r#"{"upload_id":"up-1","bucket":"b","key":"k","size":1,"mtime_ns":-2,"part_size":3,"token":"00ff"}"#,
        r#"{"upload_id":"up-1","bucket":"b","key":"k","size":1,"mtime_ns":2,"part_size":3,"suspect_since_unix":998,"suspect_last_unix":1000,"token":"00ff"}"#,
        // An earlier version's: no last time, no token.
        r#"{"upload_id":"up-1","bucket":"b","key":"k","size":1,"mtime_ns":2,"part_size":3,"suspect_since_unix":998}"#,
    ];

    #[test]
    fn journals_of_the_previous_version_read_and_write_back_unchanged() {
        for text in JOURNALS {
            let e = Entry::parse(text.as_bytes()).expect(text);
            let back = serde_json::to_string(&MpuRecord::from(&e)).expect("json");
            assert_eq!(back, text);
        }
        let states: Vec<State> = JOURNALS
            .iter()
            .filter_map(|t| Entry::parse(t.as_bytes()))
            .map(|e| e.state)
            .collect();
        let s = sus(998, Some(1000));
        let up = |suspect| State::Recorded {
            upload_id: "up-1".into(),
            suspect,
        };
        let old = sus(998, None);
        assert_eq!(
            states,
            [State::Suspect(s), up(None), up(Some(s)), up(Some(old))]
        );
        assert_eq!(Entry::parse(b"{\"upload_id\":"), None);
    }

    #[test]
    fn intents_merge_and_settle_after_the_answer_window() {
        let r = entry("k", "", None, "t");
        assert_eq!(r.state, State::None);
        assert_eq!(r.state.suspect(), None);
        let s = r.state.creating(1000);
        let w = s.suspect().expect("suspect");
        assert_eq!(w.window(60), (998, 1062));
        assert_eq!(w.settled_at(60), 1061);
        // A later request widens the window forward, an earlier one backward.
        let s = s.creating(1100);
        assert_eq!(s.suspect().map(|w| w.window(60)), Some((998, 1162)));
        let s = s.creating(900);
        assert_eq!(s.suspect().map(|w| w.window(60)), Some((898, 1162)));
        assert_eq!(s.clone().settled(), State::None);
        // A journal of the previous version: an intent without its last time or token.
        let old: MpuRecord = serde_json::from_str(
            r#"{"upload_id":"","bucket":"b","key":"k","size":1,"mtime_ns":2,"part_size":3,"suspect_since_unix":998}"#,
        )
        .expect("old journal");
        assert_eq!(old.suspect_window(60), Some((998, 1062)));
        let e = Entry::from(old);
        assert_eq!(e.state.suspect().map(|s| s.settled_at(60)), Some(1061));
        assert!(e.token.is_empty());
        // A damaged journal cannot overflow the window.
        let far = entry("k", "", Some((i64::MAX - 1, i64::MAX - 1)), "t");
        let w = far.state.suspect().expect("suspect");
        assert_eq!(w.window(60), (i64::MAX - 1, i64::MAX));
        assert_eq!(w.settled_at(60), i64::MAX);
        // The id is always written (tests and operators look for `"upload_id":""`).
        let e = entry("k", "", Some((1, 3)), "t");
        let text = serde_json::to_string(&MpuRecord::from(&e)).expect("json");
        assert!(text.contains(r#""upload_id":"""#), "{text}");
    }

    #[test]
    fn a_create_is_suspect_until_its_answer_is_recorded() {
        // (state before, after `creating(1000)`, after `created("new")` of the before)
        let s = |since, last| sus(since, Some(last));
        let rec = |suspect| State::Recorded {
            upload_id: "new".into(),
            suspect,
        };
        let cases = [
            (State::None, State::Suspect(s(998, 1000)), rec(None)),
            (
                State::Suspect(s(500, 510)),
                State::Suspect(s(500, 1000)),
                rec(Some(s(500, 510))),
            ),
        ];
        for (before, creating, created) in cases {
            assert_eq!(before.clone().creating(1000), creating, "{before:?}");
            assert_eq!(before.clone().created("new".into()), created, "{before:?}");
        }
        // Forgetting a recorded upload keeps what is still to sweep for.
        assert_eq!(rec(Some(s(1, 2))).forget_upload(), State::Suspect(s(1, 2)));
        assert_eq!(rec(None).forget_upload(), State::None);
        assert_eq!(rec(Some(s(1, 2))).settled(), rec(None));
    }
}
