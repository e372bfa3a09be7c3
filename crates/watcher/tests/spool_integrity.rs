//! The spool's own promises on a real temporary folder: `requeue` trusts no record and
//! follows no link, moves into `.failed/` never replace each other, failure records fit
//! every name length, and daemon state is owner-only.

use std::ffi::OsString;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};

use outpost_watcher::{FailRecord, Spool};

fn record(rel: &str, file: &str) -> FailRecord {
    FailRecord {
        server: "rq".into(),
        relative_path: rel.into(),
        file: file.into(),
        reason: "retries_exhausted".into(),
        bucket: "b".into(),
        key: format!("p/{rel}"),
        attempts: 3,
        first_attempt: None,
        last_attempt: None,
        last_error: "boom".into(),
        failed_at: "2026-11-29T00:00:00Z".into(),
        file_bytes: None,
        relative_path_bytes: None,
        existing_object: None,
    }
}

/// A spool with server `rq` and a file outside the spool that must stay untouched.
struct Fixture {
    _t: tempfile::TempDir,
    base: PathBuf,
    spool: PathBuf,
    outside: PathBuf,
}

impl Fixture {
    fn new() -> Fixture {
        let t = tempfile::tempdir().expect("tmp");
        let base = t.path().to_owned();
        let spool = base.join("spool");
        std::fs::create_dir_all(spool.join("rq")).expect("mkdir");
        std::fs::create_dir_all(spool.join(".failed/rq/sub")).expect("mkdir");
        let outside = base.join("outside");
        std::fs::create_dir_all(&outside).expect("mkdir");
        std::fs::write(outside.join("shadow"), b"root:secret").expect("write");
        Fixture {
            _t: t,
            base,
            spool,
            outside,
        }
    }
    /// Plants a record (as an exporter could) beside a failed file.
    fn plant(&self, dir: &str, rec_for: &str, rec: &FailRecord) {
        let d = self.spool.join(".failed/rq").join(dir);
        std::fs::write(
            d.join(format!(".{rec_for}.error.json")),
            serde_json::to_vec(rec).expect("json"),
        )
        .expect("write record");
    }
    fn requeue_all(&self) -> (Vec<String>, Vec<String>) {
        Spool::requeue(&self.spool, "rq", None, None)
    }
    /// Nothing outside the spool was read into it, moved or written.
    fn outside_untouched(&self) {
        assert_eq!(
            std::fs::read(self.outside.join("shadow")).expect("still there"),
            b"root:secret"
        );
        let entries: Vec<_> = std::fs::read_dir(&self.outside)
            .expect("ls")
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(entries, vec![OsString::from("shadow")]);
        assert!(!self.base.join("escaped.csv").exists());
        assert!(
            files(&self.spool.join("rq")).is_empty(),
            "{:?}",
            files(&self.spool.join("rq"))
        );
    }
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let md = std::fs::symlink_metadata(e.path()).expect("lstat");
            if md.is_dir() {
                out.extend(files(&e.path()));
            } else {
                out.push(e.path());
            }
        }
    }
    out
}

#[test]
fn requeue_refuses_an_absolute_file() {
    let f = Fixture::new();
    let abs = f.outside.join("shadow").display().to_string();
    f.plant("", "x.csv", &record("x.csv", &abs));
    let (done, errors) = f.requeue_all();
    assert!(done.is_empty(), "{done:?}");
    assert!(errors.iter().any(|e| e.contains("refused")), "{errors:?}");
    f.outside_untouched();
}

#[test]
fn requeue_refuses_a_climbing_file() {
    let f = Fixture::new();
    f.plant("", "x.csv", &record("x.csv", "../../../outside/shadow"));
    let (done, errors) = f.requeue_all();
    assert!(done.is_empty(), "{done:?}");
    assert!(errors.iter().any(|e| e.contains("refused")), "{errors:?}");
    f.outside_untouched();
}

#[test]
fn requeue_refuses_climbing_absolute_and_empty_relative_paths() {
    for rel in [
        "../../outside/escaped.csv",
        "sub/../../../escaped.csv",
        "/tmp/escaped.csv",
        "sub//x.csv",
        "./x.csv",
        "",
    ] {
        let f = Fixture::new();
        std::fs::write(f.spool.join(".failed/rq/x.csv"), b"exporter data").expect("write");
        f.plant("", "x.csv", &record(rel, "x.csv"));
        let (done, errors) = f.requeue_all();
        assert!(done.is_empty(), "{rel}: {done:?}");
        assert!(
            errors.iter().any(|e| e.contains("refused")),
            "{rel}: {errors:?}"
        );
        assert!(
            f.spool.join(".failed/rq/x.csv").exists(),
            "{rel}: the failed file moved"
        );
        f.outside_untouched();
    }
}

#[test]
fn requeue_refuses_a_server_folder_replaced_by_a_link() {
    let f = Fixture::new();
    std::fs::write(f.spool.join(".failed/rq/x.csv"), b"data").expect("write");
    f.plant("", "x.csv", &record("x.csv", "x.csv"));
    std::fs::remove_dir(f.spool.join("rq")).expect("rmdir");
    symlink(&f.outside, f.spool.join("rq")).expect("link");
    let (done, errors) = f.requeue_all();
    assert!(done.is_empty(), "{done:?}");
    assert!(!errors.is_empty());
    assert!(f.spool.join(".failed/rq/x.csv").exists());
    assert_eq!(
        std::fs::read_dir(&f.outside).expect("ls").count(),
        1,
        "nothing written through the link"
    );
}

#[test]
fn requeue_refuses_a_failed_folder_replaced_by_a_link() {
    let f = Fixture::new();
    // `.failed/rq/sub` is a link to the outside: a record there is not followed.
    std::fs::remove_dir(f.spool.join(".failed/rq/sub")).expect("rmdir");
    std::fs::write(
        f.outside.join(".shadow.error.json"),
        serde_json::to_vec(&record("sub/shadow", "shadow")).expect("json"),
    )
    .expect("write");
    symlink(&f.outside, f.spool.join(".failed/rq/sub")).expect("link");
    let (done, _errors) = f.requeue_all();
    assert!(done.is_empty(), "{done:?}");
    std::fs::remove_file(f.outside.join(".shadow.error.json")).expect("rm");
    f.outside_untouched();
}

#[test]
fn requeue_moves_a_good_record_back_and_never_replaces_a_pending_file() {
    let f = Fixture::new();
    std::fs::write(f.spool.join(".failed/rq/sub/y.csv"), b"old").expect("write");
    f.plant("sub", "y.csv", &record("sub/y.csv", "y.csv"));
    std::fs::create_dir_all(f.spool.join("rq/sub")).expect("mkdir");
    std::fs::write(f.spool.join("rq/sub/y.csv"), b"newer").expect("write");
    let (done, errors) = f.requeue_all();
    assert!(done.is_empty());
    assert!(errors[0].contains("newer file"), "{errors:?}");
    assert_eq!(
        std::fs::read(f.spool.join("rq/sub/y.csv")).expect("read"),
        b"newer"
    );
    std::fs::remove_file(f.spool.join("rq/sub/y.csv")).expect("rm");
    let (done, errors) = Spool::requeue(&f.spool, "rq", None, Some(".ready"));
    assert_eq!(done, vec!["sub/y.csv".to_owned()], "{errors:?}");
    assert_eq!(
        std::fs::read(f.spool.join("rq/sub/y.csv")).expect("read"),
        b"old"
    );
    assert!(
        f.spool.join("rq/sub/y.csv.ready").exists(),
        "marker made again"
    );
    assert!(!f.spool.join(".failed/rq/sub/.y.csv.error.json").exists());
}

fn claim_and_fail(spool: &Spool, root: &Path, rel: &str, body: &[u8]) -> PathBuf {
    let p = root.join("rq").join(rel);
    std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
    std::fs::write(&p, body).expect("write");
    let c = spool
        .claim("rq", Path::new(rel), None)
        .expect("claim")
        .expect("claimed");
    spool.fail(&c, record(rel, "")).expect("fail")
}

#[test]
fn failing_the_same_path_twice_keeps_both_and_their_records() {
    let t = tempfile::tempdir().expect("tmp");
    let root = t.path().join("spool");
    let spool = Spool::open(&root, "i1", &["rq".into()]).expect("open");
    let a = claim_and_fail(&spool, &root, "latest.csv", b"one");
    let b = claim_and_fail(&spool, &root, "latest.csv", b"two");
    assert_ne!(a, b);
    assert_eq!(std::fs::read(&a).expect("a"), b"one");
    assert_eq!(std::fs::read(&b).expect("b"), b"two");
    let recs = files(&root.join(".failed/rq"))
        .into_iter()
        .filter(|p| p.to_string_lossy().ends_with(".error.json"))
        .count();
    assert_eq!(recs, 2);
}

#[test]
fn failure_records_fit_every_name_length() {
    let t = tempfile::tempdir().expect("tmp");
    let root = t.path().join("spool");
    let spool = Spool::open(&root, "i1", &["rq".into()]).expect("open");
    for len in (236..=255).rev() {
        let name = "n".repeat(len - 4) + ".csv";
        let dest = claim_and_fail(&spool, &root, &name, name.as_bytes());
        assert_eq!(dest.file_name().expect("name").len(), len);
        assert_eq!(std::fs::read(&dest).expect("failed file"), name.as_bytes());
    }
    let recs = files(&root.join(".failed/rq"))
        .into_iter()
        .filter(|p| p.to_string_lossy().ends_with(".error.json"))
        .count();
    assert_eq!(recs, 20);
    assert!(
        files(&root.join(".outpost/i1/claims/rq")).is_empty(),
        "nothing left claimed"
    );
    // Each comes back with requeue.
    let (done, errors) = Spool::requeue(&root, "rq", None, None);
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(done.len(), 20);
}

#[test]
fn a_non_utf8_name_keeps_its_bytes_and_the_runbook_steps_work() {
    let t = tempfile::tempdir().expect("tmp");
    let root = t.path().join("spool");
    let spool = Spool::open(&root, "i1", &["rq".into()]).expect("open");
    let name = OsString::from_vec(b"bad\xff\xfename.csv".to_vec());
    std::fs::write(root.join("rq").join(&name), b"x").expect("write");
    let mut rec = record("bad??name.csv", "");
    rec.relative_path = String::from_utf8_lossy(name.as_bytes()).into_owned();
    spool
        .fail_in_place("rq", Path::new(&name), rec)
        .expect("fail in place");
    let failed = root.join(".failed/rq").join(&name);
    assert!(failed.exists());
    // The record keeps the exact bytes.
    let rec_path = root.join(".failed/rq").join(OsString::from_vec(
        b".bad\xff\xfename.csv.error.json".to_vec(),
    ));
    let stored: FailRecord =
        serde_json::from_slice(&std::fs::read(&rec_path).expect("record")).expect("json");
    assert_eq!(stored.file_bytes.as_deref(), Some("bad%FF%FEname.csv"));
    assert_eq!(
        stored.relative_path_bytes.as_deref(),
        Some("bad%FF%FEname.csv")
    );
    // requeue says what to do instead of moving it back to fail again.
    let (done, errors) = Spool::requeue(&root, "rq", None, None);
    assert!(done.is_empty());
    assert!(
        errors[0].contains("not UTF-8") && errors[0].contains("mv "),
        "{errors:?}"
    );
    assert!(failed.exists(), "nothing moved");
    // The runbook (docs/operations.md, OutpostFilesFailed): move it back under a UTF-8
    // name, remove its record.
    std::fs::rename(&failed, root.join("rq/good-name.csv")).expect("mv");
    std::fs::remove_file(&rec_path).expect("rm record");
    assert!(root.join("rq/good-name.csv").exists());
    let (done, errors) = Spool::requeue(&root, "rq", None, None);
    assert!(done.is_empty() && errors.is_empty(), "{done:?} {errors:?}");
}

#[test]
fn daemon_state_files_are_owner_only() {
    let t = tempfile::tempdir().expect("tmp");
    let root = t.path().join("spool");
    let spool = Spool::open(&root, "i1", &["rq".into()]).expect("open");
    spool.write_state("live.json", b"{}").expect("live");
    for name in ["lock", "lease", "live.json"] {
        let p = root.join(".outpost/i1").join(name);
        let mode = std::fs::metadata(&p).expect("stat").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{name}: {mode:o}");
    }
}

/// Issue 11.7: a dead daemon's claims are renumbered in its claim order, not in readdir
/// order: its versions of one path keep their order under their new numbers.
#[test]
fn take_over_keeps_the_dead_daemons_order_of_versions() {
    use std::io::Read;
    let t = tempfile::tempdir().expect("tmp");
    let root = t.path().join("spool");
    {
        let dead = Spool::open(&root, "dead", &["rq".into()]).expect("open");
        for v in 0..12 {
            std::fs::write(root.join("rq/latest.csv"), format!("v{v:02}")).expect("write");
            dead.claim("rq", Path::new("latest.csv"), None)
                .expect("claim")
                .expect("claimed");
            std::fs::write(root.join(format!("rq/other{v}.csv")), b"x").expect("write");
            dead.claim("rq", Path::new(&format!("other{v}.csv")), None)
                .expect("claim")
                .expect("claimed");
        }
    }
    // Its lock is free (dropped) and its lease old.
    let lease = std::fs::File::options()
        .write(true)
        .open(root.join(".outpost/dead/lease"))
        .expect("lease");
    lease
        .set_modified(std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000))
        .expect("age the lease");
    let taker = Spool::open(&root, "taker", &["rq".into()]).expect("open");
    let mut taken = taker.take_over_expired(std::time::Duration::from_secs(60));
    assert_eq!(taken.len(), 24);
    assert!(taken.iter().all(|c| c.taken));
    taken.sort_by_key(|c| c.seq);
    let versions: Vec<String> = taken
        .iter()
        .filter(|c| c.rel == "latest.csv")
        .map(|c| {
            let mut s = String::new();
            taker
                .open_claimed(c)
                .expect("open")
                .read_to_string(&mut s)
                .expect("read");
            s
        })
        .collect();
    let want: Vec<String> = (0..12).map(|v| format!("v{v:02}")).collect();
    assert_eq!(versions, want);
}

/// Issue 11.6: two daemons on one spool failing (and archiving) the same relative path
/// at the same moment — a recurring `latest.csv` after an outage — keep every file and
/// every record: a move never replaces what the other one just put there.
#[test]
fn two_daemons_failing_and_archiving_one_path_at_once_lose_nothing() {
    use std::sync::{Arc, Barrier};
    let t = tempfile::tempdir().expect("tmp");
    let root = t.path().join("spool");
    let a = Arc::new(Spool::open(&root, "a", &["rq".into()]).expect("open a"));
    let b = Arc::new(Spool::open(&root, "b", &["rq".into()]).expect("open b"));
    let rounds = 100;
    for (spools, archive) in [((a.clone(), b.clone()), false), ((a, b), true)] {
        let mut claims = (Vec::new(), Vec::new());
        for i in 0..rounds {
            for (n, spool) in [(0, &spools.0), (1, &spools.1)] {
                std::fs::write(root.join("rq/latest.csv"), format!("{archive}-{i}-{n}"))
                    .expect("write");
                let c = spool
                    .claim("rq", Path::new("latest.csv"), None)
                    .expect("claim")
                    .expect("claimed");
                if n == 0 {
                    claims.0.push(c);
                } else {
                    claims.1.push(c);
                }
            }
        }
        let barrier = Arc::new(Barrier::new(2));
        let run = |spool: Arc<Spool>, cs: Vec<outpost_watcher::Claim>, barrier: Arc<Barrier>| {
            std::thread::spawn(move || {
                for c in cs {
                    barrier.wait();
                    if archive {
                        spool.finish(&c, true).expect("archive");
                    } else {
                        spool.fail(&c, record("latest.csv", "")).expect("fail");
                    }
                }
            })
        };
        let h0 = run(spools.0.clone(), claims.0, barrier.clone());
        let h1 = run(spools.1.clone(), claims.1, barrier);
        h0.join().expect("a");
        h1.join().expect("b");
        let dir = root.join(if archive { ".archive/rq" } else { ".failed/rq" });
        let all = files(&dir);
        let data: Vec<_> = all
            .iter()
            .filter(|p| !p.file_name().expect("name").as_bytes().starts_with(b"."))
            .collect();
        assert_eq!(data.len(), 2 * rounds, "archive {archive}: files lost");
        if !archive {
            assert_eq!(all.len() - data.len(), 2 * rounds, "records lost");
        }
    }
}

/// Things planted in `.outpost/` — a FIFO for a dead instance's lock or live state, a
/// claims folder that is a link to elsewhere — neither hang the daemon nor lead it
/// outside the spool.
#[test]
fn take_over_and_live_state_follow_no_link_and_wait_on_no_fifo() {
    let t = tempfile::tempdir().expect("tmp");
    let root = t.path().join("spool");
    let outside = t.path().join("outside");
    std::fs::create_dir_all(outside.join("rq")).expect("mkdir");
    std::fs::write(
        outside.join("rq/00000000000000000001~x.csv.data"),
        b"not ours",
    )
    .expect("write");
    let spool = Spool::open(&root, "me", &["rq".into()]).expect("open");
    let fifo = |p: &Path| {
        let ok = std::process::Command::new("mkfifo")
            .arg(p)
            .status()
            .expect("mkfifo");
        assert!(ok.success());
    };
    // A "dead" instance whose lock and live state are FIFOs.
    let ghost = root.join(".outpost/ghost");
    std::fs::create_dir_all(ghost.join("claims")).expect("mkdir");
    fifo(&ghost.join("lock"));
    fifo(&ghost.join("live.json"));
    // Another whose claims folder is a link to the outside.
    let evil = root.join(".outpost/evil");
    std::fs::create_dir_all(&evil).expect("mkdir");
    symlink(&outside, evil.join("claims")).expect("link");
    for dir in [&ghost, &evil] {
        let old = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000);
        std::fs::File::open(dir)
            .expect("dir")
            .set_modified(old)
            .expect("age");
    }
    let (tx, rx) = std::sync::mpsc::channel();
    let spool = std::sync::Arc::new(spool);
    let s2 = spool.clone();
    let r2 = root.clone();
    std::thread::spawn(move || {
        let taken = s2.take_over_expired(std::time::Duration::from_secs(1));
        let live = Spool::live_states(&r2);
        let journals = s2.journals_on_spool().map(|j| j.len());
        let _ = tx.send((taken.len(), live.len(), journals.ok()));
    });
    let (taken, live, journals) = rx
        .recv_timeout(std::time::Duration::from_secs(10))
        .expect("hung on a FIFO");
    assert_eq!(taken, 0, "took claims through a link");
    assert_eq!(live, 0);
    assert_eq!(journals, Some(0));
    assert!(outside.join("rq/00000000000000000001~x.csv.data").exists());
}
