//! Batches of `manifest` servers on a real temporary folder: a folder is recorded with
//! exactly its files before any of them is claimed (rename and marker rules), facts are
//! kept and read back across a restart, a batch held by a failed file says so until the
//! file is requeued, and a crafted record is refused.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use outpost_config::Completion;
use outpost_watcher::{
    BatchWaiting, Claim, Discovery, FailReason, FailRecord, RejectReason, ServerRule, Spool,
    SpoolEvents, run_discovery,
};

struct Quiet;

impl SpoolEvents for Quiet {
    fn rejected(&self, _: &str, _: RejectReason, _: &Path) {}
    fn failed_at_discovery(&self, _: &str, _: FailReason, _: &Path) {}
}

fn marker() -> Completion {
    Completion::Marker {
        suffix: ".ready".into(),
    }
}

/// A claim as the sink saw it, with the files its batch record listed at that moment.
type Seen = (Claim, Option<Vec<String>>);

/// Discovery over servers `r` (rename) and `m` (marker), both with batches.
struct Harness {
    root: PathBuf,
    spool: Arc<Spool>,
    claims: Arc<Mutex<Vec<Seen>>>,
    stop: outpost_watcher::DiscoveryHandle,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// The files listed by the record of the batch `rel` is in, read from disk.
fn recorded_files(root: &Path, server: &str, rel: &str) -> Option<Vec<String>> {
    let batch = rel.split_once('/')?.0;
    let p = root
        .join(".outpost/.batches")
        .join(server)
        .join(format!("{batch}.json"));
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(p).ok()?).ok()?;
    let files = v["files"].as_array()?;
    Some(
        files
            .iter()
            .filter_map(|f| Some(f.as_str()?.to_owned()))
            .collect(),
    )
}

impl Harness {
    fn new(root: &Path) -> Harness {
        let names = ["r".to_owned(), "m".to_owned()];
        let spool = Arc::new(Spool::open(root, "test", &names).expect("open"));
        let claims = Arc::new(Mutex::new(Vec::new()));
        let (sink_claims, sink_root) = (claims.clone(), root.to_owned());
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let rule = |name: &str, completion| ServerRule {
            name: name.into(),
            prefix: "p/".into(),
            bucket: "b".into(),
            completion,
            archive_retention: None,
            publish_last: Vec::new(),
            batches: true,
        };
        let (stop, thread) = run_discovery(Discovery {
            spool: spool.clone(),
            servers: vec![rule("r", Completion::Rename), rule("m", marker())],
            rescan_interval: Duration::from_millis(500),
            events: Arc::new(Quiet),
            sink: Box::new(move |c: Claim| {
                let files = recorded_files(&sink_root, &c.server, &c.rel);
                sink_claims.lock().expect("lock").push((c, files));
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
            root: root.to_owned(),
            spool,
            claims,
            stop,
            thread: Some(thread),
        }
    }

    fn p(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }

    fn wait_claimed(&self, n: usize) -> Vec<Seen> {
        let start = Instant::now();
        while self.claims.lock().expect("lock").len() < n
            && start.elapsed() < Duration::from_secs(10)
        {
            std::thread::sleep(Duration::from_millis(20));
        }
        let mut v = self.claims.lock().expect("lock").clone();
        v.sort_by(|a, b| a.0.rel.cmp(&b.0.rel));
        v
    }

    /// Stops discovery and closes the spool (a daemon's stop).
    fn stop(mut self) {
        self.stop.stop();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
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

/// Drops `files` into `<server>/.incoming/<batch>` and renames the folder into place.
fn drop_batch(root: &Path, server: &str, batch: &str, files: &[&str]) {
    let tmp = root.join(server).join(".incoming").join(batch);
    for f in files {
        let p = tmp.join(f);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(&p, f.as_bytes()).expect("write");
    }
    std::fs::rename(&tmp, root.join(server).join(batch)).expect("rename folder");
}

#[test]
fn a_folder_renamed_whole_is_recorded_with_exactly_its_files_before_any_claim() {
    let tmp = tempfile::tempdir().expect("tmp");
    let h = Harness::new(tmp.path());
    std::fs::write(h.p("r/plain.csv"), "x").expect("write");
    drop_batch(tmp.path(), "r", "b1", &["a.csv", "sub/c.csv", "skip.tmp"]);
    let got = h.wait_claimed(3);
    let rels: Vec<&str> = got.iter().map(|(c, _)| c.rel.as_str()).collect();
    assert_eq!(rels, ["b1/a.csv", "b1/sub/c.csv", "plain.csv"]);
    let want = vec!["b1/a.csv".to_owned(), "b1/sub/c.csv".to_owned()];
    for (c, files) in &got[..2] {
        assert_eq!(
            files.as_ref(),
            Some(&want),
            "record at the claim of {}",
            c.rel
        );
    }
    assert_eq!(
        h.spool.batch_of("r", "b1/a.csv").expect("read").as_deref(),
        Some("b1")
    );
    assert_eq!(h.spool.batch_of("r", "b1/skip.tmp").expect("read"), None);
    assert_eq!(h.spool.batch_of("r", "plain.csv").expect("read"), None);
    let st = h
        .spool
        .batch_state("r", "b1")
        .expect("state")
        .expect("recorded");
    assert_eq!((st.files, st.missing.len()), (want, 2));
}

#[test]
fn a_folder_with_its_marker_is_recorded_and_claimed_whole_and_the_marker_removed() {
    let tmp = tempfile::tempdir().expect("tmp");
    let h = Harness::new(tmp.path());
    std::fs::create_dir_all(h.p("m/b2")).expect("mkdir");
    std::fs::write(h.p("m/b2/a.csv"), "a").expect("write");
    std::fs::write(h.p("m/b2/b.csv"), "b").expect("write");
    std::thread::sleep(Duration::from_millis(800)); // past a rescan
    assert!(
        h.claims.lock().expect("lock").is_empty(),
        "claimed without the folder marker"
    );
    std::fs::write(h.p("m/b2.ready"), "").expect("marker");
    let got = h.wait_claimed(2);
    let want = vec!["b2/a.csv".to_owned(), "b2/b.csv".to_owned()];
    assert_eq!(
        got.iter().map(|(c, _)| c.rel.clone()).collect::<Vec<_>>(),
        want
    );
    for (c, files) in &got {
        assert_eq!(
            files.as_ref(),
            Some(&want),
            "record at the claim of {}",
            c.rel
        );
        assert_eq!(c.marker, None, "batch files have no markers of their own");
    }
    let start = Instant::now();
    while h.p("m/b2.ready").exists() && start.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(!h.p("m/b2.ready").exists(), "folder marker left");
}

#[test]
fn facts_are_kept_and_a_complete_batch_is_found_after_a_restart() {
    let tmp = tempfile::tempdir().expect("tmp");
    let h = Harness::new(tmp.path());
    drop_batch(tmp.path(), "r", "b3", &["a.csv", "b.csv"]);
    let got = h.wait_claimed(2);
    let spool = h.spool.clone();
    assert!(
        !spool
            .batch_file_delivered("r", "b3", "b3/a.csv", b"{\"a\":1}")
            .expect("facts")
    );
    assert!(
        spool
            .batch_file_delivered("r", "b3", "b3/x.csv", b"{}")
            .is_err(),
        "not listed"
    );
    for (c, _) in &got {
        spool.finish(c, false).expect("finish");
    }
    assert!(spool.batches_complete("r").is_empty());
    h.stop();
    drop(spool);
    // A restart: the second file's facts, then the batch is complete.
    let spool = Spool::open(tmp.path(), "test", &["r".into()]).expect("reopen");
    assert!(
        spool
            .batch_file_delivered("r", "b3", "b3/b.csv", b"{\"b\":2}")
            .expect("facts")
    );
    drop(spool);
    let spool = Spool::open(tmp.path(), "test", &["r".into()]).expect("reopen");
    assert_eq!(spool.batches_complete("r"), ["b3"]);
    let st = spool
        .batch_state("r", "b3")
        .expect("state")
        .expect("recorded");
    assert!(st.complete());
    assert_eq!(st.delivered["b3/a.csv"], b"{\"a\":1}");
    assert_eq!(st.delivered["b3/b.csv"], b"{\"b\":2}");
    let id = spool
        .batch_state("r", "b3")
        .expect("read")
        .expect("state")
        .id;
    spool.batch_done("r", "b3", &id).expect("done");
    assert!(spool.batches_complete("r").is_empty());
    assert_eq!(spool.batch_state("r", "b3").expect("state"), None);
    let left: Vec<_> = std::fs::read_dir(tmp.path().join(".outpost/.batches/r"))
        .expect("ls")
        .collect();
    assert!(left.is_empty(), "record or facts left: {left:?}");
}

#[test]
fn a_batch_with_a_failed_file_is_held_by_it_until_it_is_requeued() {
    let tmp = tempfile::tempdir().expect("tmp");
    let h = Harness::new(tmp.path());
    drop_batch(tmp.path(), "r", "b4", &["a.csv", "b.csv"]);
    let got = h.wait_claimed(2);
    let spool = h.spool.clone();
    spool
        .batch_file_delivered("r", "b4", "b4/a.csv", b"{}")
        .expect("facts");
    spool.finish(&got[0].0, false).expect("finish");
    let record = FailRecord {
        server: "r".into(),
        relative_path: "b4/b.csv".into(),
        file: String::new(),
        reason: "rejected".into(),
        bucket: "b".into(),
        key: "p/b4/b.csv".into(),
        attempts: 1,
        first_attempt: None,
        last_attempt: None,
        last_error: "no".into(),
        failed_at: "2024-01-01T00:00:00Z".into(),
        file_bytes: None,
        relative_path_bytes: None,
        existing_object: None,
    };
    spool.fail(&got[1].0, record).expect("fail");
    let st = Spool::status(tmp.path(), "r", &Completion::Rename).expect("status");
    let held = BatchWaiting {
        batch: "b4".into(),
        files: 2,
        delivered: 1,
        held_by: Some("b4/b.csv".into()),
    };
    assert_eq!(st.batches_waiting, [held]);
    // Requeued: claimed again (its batch lists it), delivered, the batch complete.
    let (done, errors) = Spool::requeue(tmp.path(), "r", None, None);
    assert_eq!((done.len(), errors), (1, Vec::<String>::new()));
    let got = h.wait_claimed(3);
    assert_eq!(got.iter().filter(|(c, _)| c.rel == "b4/b.csv").count(), 2);
    assert!(
        spool
            .batch_file_delivered("r", "b4", "b4/b.csv", b"{}")
            .expect("facts")
    );
    assert_eq!(spool.batches_complete("r"), ["b4"]);
    let st = Spool::status(tmp.path(), "r", &Completion::Rename).expect("status");
    assert_eq!(st.batches_waiting[0].held_by, None);
}

#[test]
fn a_late_file_waits_for_the_next_batch() {
    let tmp = tempfile::tempdir().expect("tmp");
    let h = Harness::new(tmp.path());
    drop_batch(tmp.path(), "r", "b5", &["a.csv"]);
    h.wait_claimed(1);
    std::fs::write(h.p("r/b5/late.csv"), "late").expect("write");
    std::thread::sleep(Duration::from_millis(800)); // past a rescan
    assert_eq!(
        h.claims.lock().expect("lock").len(),
        1,
        "a late file joined a recorded batch"
    );
    let id = h
        .spool
        .batch_state("r", "b5")
        .expect("read")
        .expect("state")
        .id;
    assert!(h.spool.batch_done("r", "b5", "another-id").is_ok());
    assert!(
        h.spool.batch_state("r", "b5").expect("read").is_some(),
        "not another's to forget"
    );
    h.spool.batch_done("r", "b5", &id).expect("done");
    let got = h.wait_claimed(2);
    assert_eq!(got[1].0.rel, "b5/late.csv");
    assert_eq!(got[1].1, Some(vec!["b5/late.csv".to_owned()]));
}

#[test]
fn a_crafted_record_is_refused() {
    let tmp = tempfile::tempdir().expect("tmp");
    let spool = Spool::open(tmp.path(), "test", &["r".into()]).expect("open");
    let dir = tmp.path().join(".outpost/.batches/r");
    std::fs::create_dir_all(&dir).expect("mkdir");
    let rec = |batch: &str, id: &str, files: &[&str]| {
        serde_json::json!({"batch": batch, "id": id, "recorded_at": "x", "files": files})
            .to_string()
    };
    let cases = [
        ("up", rec("up", "i1", &["up/../../etc/passwd"])),
        ("abs", rec("abs", "i2", &["/abs/a.csv"])),
        ("other", rec("other", "i3", &["else/a.csv"])),
        ("badid", rec("badid", "../i4", &["badid/a.csv"])),
        ("named", rec("not-named", "i5", &["named/a.csv"])),
        ("dup", rec("dup", "i6", &["dup/a.csv", "dup/a.csv"])),
    ];
    for (batch, json) in &cases {
        std::fs::write(dir.join(format!("{batch}.json")), json).expect("write");
        assert!(spool.batch_state("r", batch).is_err(), "{batch}: accepted");
    }
    assert_eq!(
        spool.batch_of("r", "up/../../etc/passwd").ok().flatten(),
        None
    );
    assert!(
        spool
            .batch_file_delivered("r", "badid", "badid/a.csv", b"{}")
            .is_err()
    );
    assert!(!tmp.path().join(".outpost/i4").exists());
    assert!(spool.batches_complete("r").is_empty());
    let st = Spool::status(tmp.path(), "r", &Completion::Rename).expect("status");
    assert!(st.batches_waiting.is_empty(), "{:?}", st.batches_waiting);
}
