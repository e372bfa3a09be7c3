//! Discovery and the spool on a real temporary folder: completion rules, refusals,
//! immediate failures, same-path re-drops and recovery of claims.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use outpost_config::Completion;
use outpost_watcher::{
    Claim, Discovery, FailReason, RejectReason, ServerRule, Spool, SpoolEvents, run_discovery,
};

#[derive(Default)]
struct Seen {
    rejected: Mutex<Vec<(String, RejectReason)>>,
    failed: Mutex<Vec<(String, FailReason)>>,
}

impl SpoolEvents for Seen {
    fn rejected(&self, server: &str, reason: RejectReason, _path: &Path) {
        self.rejected
            .lock()
            .expect("lock")
            .push((server.into(), reason));
    }
    fn failed_at_discovery(&self, server: &str, reason: FailReason, _path: &Path) {
        self.failed
            .lock()
            .expect("lock")
            .push((server.into(), reason));
    }
}

fn rule(name: &str, completion: Completion) -> ServerRule {
    ServerRule {
        name: name.into(),
        prefix: "p/".into(),
        bucket: "b".into(),
        completion,
        archive_retention: None,
        publish_last: Vec::new(),
        batches: false,
    }
}

struct Harness {
    dir: Option<tempfile::TempDir>,
    root: std::path::PathBuf,
    claims: Arc<Mutex<Vec<Claim>>>,
    seen: Arc<Seen>,
    stop: outpost_watcher::DiscoveryHandle,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Harness {
    fn new() -> Harness {
        let dir = tempfile::tempdir().expect("tempdir");
        let names = ["r".to_owned(), "m".to_owned(), "q".to_owned()];
        let spool = Arc::new(Spool::open(dir.path(), "test", &names).expect("open"));
        let claims = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::new(Seen::default());
        let sink_claims = claims.clone();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (stop, thread) = run_discovery(Discovery {
            spool: spool.clone(),
            servers: vec![
                rule("r", Completion::Rename),
                rule(
                    "m",
                    Completion::Marker {
                        suffix: ".ready".into(),
                    },
                ),
                rule(
                    "q",
                    Completion::Quiet {
                        period: Duration::from_millis(600),
                    },
                ),
            ],
            rescan_interval: Duration::from_secs(1),
            events: seen.clone(),
            sink: Box::new(move |c| {
                sink_claims.lock().expect("lock").push(c);
                true
            }),
            on_ready: Box::new(move || {
                let _ = ready_tx.send(());
            }),
            on_failed: Box::new(|_| {}),
        })
        .expect("start");
        ready_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("ready");
        Harness {
            root: dir.path().to_owned(),
            dir: Some(dir),
            claims,
            seen,
            stop,
            thread: Some(thread),
        }
    }
    fn p(&self, rel: &str) -> std::path::PathBuf {
        self.root.join(rel)
    }
    fn claimed(&self) -> Vec<(String, String)> {
        self.claims
            .lock()
            .expect("lock")
            .iter()
            .map(|c| (c.server.clone(), c.rel.clone()))
            .collect()
    }
    fn wait_claimed(&self, n: usize) -> Vec<(String, String)> {
        let start = Instant::now();
        while self.claims.lock().expect("lock").len() < n
            && start.elapsed() < Duration::from_secs(10)
        {
            std::thread::sleep(Duration::from_millis(20));
        }
        self.claimed()
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.stop.stop();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[test]
fn rename_rule_claims_renamed_files_and_whole_folders() {
    let h = Harness::new();
    std::fs::write(h.p("r/a.csv.tmp"), "x").expect("write");
    std::thread::sleep(Duration::from_millis(300));
    assert!(h.claimed().is_empty(), "in-progress name claimed");
    std::fs::rename(h.p("r/a.csv.tmp"), h.p("r/a.csv")).expect("rename");
    std::fs::create_dir_all(h.p("r/.incoming/x/y")).expect("mkdir");
    std::fs::write(h.p("r/.incoming/x/y/deep.csv"), "deep").expect("write");
    std::fs::write(h.p("r/.incoming/x/top.csv"), "top").expect("write");
    std::fs::rename(h.p("r/.incoming/x"), h.p("r/x")).expect("rename dir");
    let mut got = h.wait_claimed(3);
    got.sort();
    assert_eq!(
        got,
        vec![
            ("r".into(), "a.csv".into()),
            ("r".into(), "x/top.csv".into()),
            ("r".into(), "x/y/deep.csv".into())
        ]
    );
    assert!(!h.p("r/a.csv").exists(), "claimed file left in place");
}

#[test]
fn marker_rule_waits_for_the_marker_and_removes_it() {
    let h = Harness::new();
    std::fs::write(h.p("m/data.csv"), "payload").expect("write");
    std::thread::sleep(Duration::from_millis(1500)); // past a rescan
    assert!(h.claimed().is_empty(), "claimed without marker");
    std::fs::write(h.p("m/data.csv.ready"), "").expect("marker");
    assert_eq!(h.wait_claimed(1), vec![("m".into(), "data.csv".into())]);
    assert!(!h.p("m/data.csv.ready").exists(), "marker not removed");
}

#[test]
fn quiet_rule_waits_for_stillness() {
    let h = Harness::new();
    let start = Instant::now();
    std::fs::write(h.p("q/grow.csv"), "1").expect("write");
    for i in 0..4 {
        std::thread::sleep(Duration::from_millis(250));
        std::fs::write(h.p("q/grow.csv"), "1".repeat(i + 2)).expect("rewrite");
        assert!(h.claimed().is_empty(), "claimed while changing");
    }
    let got = h.wait_claimed(1);
    assert_eq!(got, vec![("q".into(), "grow.csv".into())]);
    assert!(start.elapsed() >= Duration::from_millis(1600));
    assert_eq!(h.claims.lock().expect("lock")[0].size, 5);
}

#[test]
fn links_special_files_and_bad_names() {
    let h = Harness::new();
    std::os::unix::fs::symlink("/etc/hostname", h.p("r/link.csv")).expect("symlink");
    assert!(
        std::process::Command::new("mkfifo")
            .arg(h.p("r/fifo.csv"))
            .status()
            .expect("mkfifo")
            .success()
    );
    let bad = h.p("r").join(OsStr::from_bytes(b"bad-\xff.csv"));
    std::fs::write(&bad, "x").expect("write");
    let long_dir = "d".repeat(250);
    let long = format!(
        "r/{long_dir}/{long_dir}/{long_dir}/{long_dir}/{}",
        "f".repeat(40)
    );
    std::fs::create_dir_all(h.p(&long).parent().expect("parent")).expect("mkdir");
    std::fs::write(h.p(&long), "x").expect("write");
    std::fs::write(h.p("r/ok.csv"), "ok").expect("write");
    h.wait_claimed(1);
    std::thread::sleep(Duration::from_millis(2500)); // two rescans: reported once only
    assert_eq!(h.claimed(), vec![("r".into(), "ok.csv".into())]);
    let mut rejected = h.seen.rejected.lock().expect("lock").clone();
    rejected.sort_by_key(|r| r.1.as_str());
    assert_eq!(
        rejected,
        vec![
            ("r".into(), RejectReason::Special),
            ("r".into(), RejectReason::Symlink)
        ]
    );
    let mut failed = h.seen.failed.lock().expect("lock").clone();
    failed.sort_by_key(|f| f.1.as_str());
    assert_eq!(
        failed,
        vec![
            ("r".into(), FailReason::KeyTooLong),
            ("r".into(), FailReason::NameNotUtf8)
        ]
    );
    let moved = h
        .root
        .join(".failed/r")
        .join(OsStr::from_bytes(b"bad-\xff.csv"));
    assert!(moved.exists(), "non-UTF-8 file not in .failed");
    assert!(
        h.root
            .join(".failed/r")
            .join(OsStr::from_bytes(b".bad-\xff.csv.error.json"))
            .exists()
    );
    assert!(
        std::fs::symlink_metadata(h.p("r/link.csv")).is_ok(),
        "link touched"
    );
}

#[test]
fn same_path_dropped_again_gets_a_later_claim_and_claims_survive_restart() {
    let mut h = Harness::new();
    std::fs::write(h.p("r/same.csv"), "first").expect("write");
    h.wait_claimed(1);
    std::fs::write(h.p("r/same.csv.tmp"), "second").expect("write");
    std::fs::rename(h.p("r/same.csv.tmp"), h.p("r/same.csv")).expect("rename");
    let got = h.wait_claimed(2);
    assert_eq!(
        got,
        vec![
            ("r".into(), "same.csv".into()),
            ("r".into(), "same.csv".into())
        ]
    );
    let seqs: Vec<u64> = h
        .claims
        .lock()
        .expect("lock")
        .iter()
        .map(|c| c.seq)
        .collect();
    assert!(seqs[0] < seqs[1]);
    let root = h.root.clone();
    let dir = h.dir.take();
    drop(h); // stops discovery and releases the instance lock
    // A new daemon on the same spool finds both claims, in order, with their content.
    let reopened = Spool::open(&root, "test", &["r".to_owned()]).expect("reopen");
    let recovered = reopened.recover().expect("recover");
    assert_eq!(recovered.iter().map(|c| c.seq).collect::<Vec<_>>(), seqs);
    let mut first = String::new();
    use std::io::Read;
    reopened
        .open_claimed(&recovered[0])
        .expect("open")
        .read_to_string(&mut first)
        .expect("read");
    assert_eq!(first, "first");
    drop(dir);
}
