//! Scheduler tests with a fake worker under paused time.

use super::*;
use crate::RetryPolicy;
use std::collections::BTreeSet;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::SystemTime;

#[derive(Debug, Clone)]
struct It {
    key: String,
    seq: u64,
}

impl Item for It {
    fn order_key(&self) -> &str {
        &self.key
    }
    fn seq(&self) -> u64 {
        self.seq
    }
    fn size(&self) -> u64 {
        10
    }
    fn dropped_at(&self) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(self.seq)
    }
    fn group(&self) -> &str {
        self.key.rsplit_once('/').map_or("", |x| x.0)
    }
    fn name(&self) -> &str {
        self.key.rsplit_once('/').map_or(self.key.as_str(), |x| x.1)
    }
}

/// Records the start order; fails the first `fail_first` attempts of every item.
#[derive(Default)]
struct Fake {
    log: Mutex<Vec<(String, u64, u32)>>,
    fail_first: u32,
    delay: Duration,
    running: AtomicUsize,
    peak: AtomicUsize,
    gave_up: Mutex<Vec<u64>>,
    /// Server whose attempts never finish.
    stuck: Option<String>,
}

impl Work<It> for Fake {
    async fn attempt(
        &self,
        server: &str,
        item: &It,
        attempt: u32,
        stop: CancellationToken,
    ) -> Outcome {
        self.log
            .lock()
            .expect("lock")
            .push((server.to_owned(), item.seq, attempt));
        let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
        self.peak.fetch_max(now, Ordering::SeqCst);
        if self.stuck.as_deref() == Some(server) {
            stop.cancelled().await;
            self.running.fetch_sub(1, Ordering::SeqCst);
            return Outcome::Interrupted;
        }
        tokio::time::sleep(self.delay).await;
        self.running.fetch_sub(1, Ordering::SeqCst);
        if attempt <= self.fail_first {
            Outcome::Retry("boom".into())
        } else {
            Outcome::Done
        }
    }
    async fn give_up(&self, _server: &str, item: It, _h: History) {
        self.gave_up.lock().expect("lock").push(item.seq);
    }
}

fn policy(max_attempts: u32) -> RetryPolicy {
    RetryPolicy {
        initial: Duration::from_millis(100),
        max: Duration::from_secs(1),
        max_attempts,
    }
}

async fn run_with(
    fake: Arc<Fake>,
    global: usize,
    servers: &[(&str, usize)],
    items: Vec<(&str, It)>,
    for_: Duration,
) -> Stats {
    let s = Scheduler::new(fake, global);
    let stats = s.stats();
    let (tx, rx) = mpsc::channel(100_000);
    for (name, max) in servers {
        tx.send(Command::Configure {
            server: (*name).into(),
            max_in_flight: *max,
            retry: policy(3),
            last: vec!["*.info".into()],
        })
        .await
        .expect("send");
    }
    for (server, item) in items {
        tx.send(Command::Add {
            server: server.into(),
            item,
        })
        .await
        .expect("send");
    }
    let stop = CancellationToken::new();
    let h = tokio::spawn(s.run(rx, stop.clone(), Duration::from_secs(1)));
    tokio::time::sleep(for_).await;
    stop.cancel();
    h.await.expect("join");
    stats
}

fn it(key: &str, seq: u64) -> It {
    It {
        key: key.into(),
        seq,
    }
}

#[tokio::test(start_paused = true)]
async fn same_key_runs_in_order_one_at_a_time() {
    let fake = Arc::new(Fake {
        delay: Duration::from_millis(10),
        ..Default::default()
    });
    let items = vec![
        ("a", it("x", 1)),
        ("a", it("y", 2)),
        ("a", it("x", 3)),
        ("a", it("x", 4)),
    ];
    run_with(fake.clone(), 8, &[("a", 8)], items, Duration::from_secs(5)).await;
    let log = fake.log.lock().expect("lock").clone();
    let xs: Vec<u64> = log
        .iter()
        .filter(|(_, s, _)| *s != 2)
        .map(|(_, s, _)| *s)
        .collect();
    assert_eq!(xs, vec![1, 3, 4]);
    // y did not wait behind x.
    assert_eq!(log[1].1, 2);
}

#[tokio::test(start_paused = true)]
async fn retries_then_gives_up() {
    let fake = Arc::new(Fake {
        fail_first: 10,
        ..Default::default()
    });
    run_with(
        fake.clone(),
        4,
        &[("a", 4)],
        vec![("a", it("x", 1))],
        Duration::from_secs(60),
    )
    .await;
    assert_eq!(fake.log.lock().expect("lock").len(), 3);
    assert_eq!(*fake.gave_up.lock().expect("lock"), vec![1]);
}

#[tokio::test(start_paused = true)]
async fn retry_succeeds_and_same_key_waits_during_backoff() {
    let fake = Arc::new(Fake {
        fail_first: 1,
        ..Default::default()
    });
    let stats = run_with(
        fake.clone(),
        4,
        &[("a", 4)],
        vec![("a", it("x", 1)), ("a", it("x", 2))],
        Duration::from_secs(60),
    )
    .await;
    let log = fake.log.lock().expect("lock").clone();
    let order: Vec<(u64, u32)> = log.iter().map(|(_, s, a)| (*s, *a)).collect();
    assert_eq!(order, vec![(1, 1), (1, 2), (2, 1), (2, 2)]);
    assert!(fake.gave_up.lock().expect("lock").is_empty());
    assert_eq!(stats.lock().expect("lock")["a"].queue_files, 0);
}

#[tokio::test(start_paused = true)]
async fn limits_hold_and_small_server_is_not_starved() {
    let fake = Arc::new(Fake {
        delay: Duration::from_millis(100),
        ..Default::default()
    });
    let mut items: Vec<(&str, It)> = (1..=1000)
        .map(|i| ("big", it(&format!("f{i}"), i)))
        .collect();
    items.push(("small", it("only", 5000)));
    run_with(
        fake.clone(),
        3,
        &[("big", 3), ("small", 3)],
        items,
        Duration::from_secs(1),
    )
    .await;
    assert!(fake.peak.load(Ordering::SeqCst) <= 3);
    let log = fake.log.lock().expect("lock").clone();
    let pos = log
        .iter()
        .position(|(s, _, _)| s == "small")
        .expect("small ran");
    // Three big files were started before the small one arrived; it takes the very
    // first slot that frees up, ahead of 997 waiting big files.
    assert!(pos <= 3, "small server started at position {pos}");
}

#[tokio::test(start_paused = true)]
async fn stuck_server_does_not_hold_every_slot() {
    let fake = Arc::new(Fake {
        stuck: Some("stuck".into()),
        delay: Duration::from_millis(10),
        ..Default::default()
    });
    let mut items: Vec<(&str, It)> = (1..=100)
        .map(|i| ("stuck", it(&format!("s{i}"), i)))
        .collect();
    items.extend((1000..1050).map(|i| ("ok", it(&format!("o{i}"), i))));
    let stats = run_with(
        fake.clone(),
        4,
        &[("stuck", 2), ("ok", 2)],
        items,
        Duration::from_secs(10),
    )
    .await;
    let st = stats.lock().expect("lock").clone();
    assert_eq!(st["ok"].queue_files, 0, "healthy server drained");
    assert_eq!(st["stuck"].queue_files, 100);
}

/// Refuses every attempt until `open` is set.
#[derive(Default)]
struct Gate {
    open: std::sync::atomic::AtomicBool,
    attempts: AtomicUsize,
    running: AtomicUsize,
    peak_while_closed: AtomicUsize,
    gave_up: AtomicUsize,
}

impl Work<It> for Gate {
    async fn attempt(
        &self,
        _server: &str,
        _item: &It,
        _attempt: u32,
        _stop: CancellationToken,
    ) -> Outcome {
        self.attempts.fetch_add(1, Ordering::SeqCst);
        let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
        tokio::time::sleep(Duration::from_millis(10)).await;
        self.running.fetch_sub(1, Ordering::SeqCst);
        if self.open.load(Ordering::SeqCst) {
            Outcome::Done
        } else {
            self.peak_while_closed.fetch_max(now, Ordering::SeqCst);
            Outcome::Blocked("AccessDenied: fix the bucket policy".into())
        }
    }
    async fn give_up(&self, _server: &str, _item: It, _h: History) {
        self.gave_up.fetch_add(1, Ordering::SeqCst);
    }
}

#[tokio::test(start_paused = true)]
async fn blocked_server_probes_one_file_and_heals_by_itself() {
    let gate = Arc::new(Gate::default());
    let s = Scheduler::new(gate.clone(), 8);
    let stats = s.stats();
    let (tx, rx) = mpsc::channel(1000);
    tx.send(Command::Configure {
        server: "b".into(),
        max_in_flight: 4,
        retry: RetryPolicy {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(3600),
            max_attempts: 2,
        },
        last: Vec::new(),
    })
    .await
    .expect("send");
    for i in 1..=20 {
        tx.send(Command::Add {
            server: "b".into(),
            item: it(&format!("f{i}"), i),
        })
        .await
        .expect("send");
    }
    let stop = CancellationToken::new();
    let h = tokio::spawn(s.run(rx, stop.clone(), Duration::from_secs(1)));
    // One hour blocked: probes back off to the 5-minute cap.
    tokio::time::sleep(Duration::from_secs(3600)).await;
    let st = stats.lock().expect("lock")["b"].clone();
    assert!(
        st.blocked
            .as_deref()
            .is_some_and(|r| r.contains("AccessDenied"))
    );
    assert_eq!(st.queue_files, 20, "files stay pending while blocked");
    assert_eq!(
        gate.gave_up.load(Ordering::SeqCst),
        0,
        "blocked files never go to .failed"
    );
    let attempts = gate.attempts.load(Ordering::SeqCst);
    // 4 first attempts, then one probe at a time: 1+2+4+…+256 s, then every 150–300 s.
    assert!(
        (10..=40).contains(&attempts),
        "{attempts} attempts in an hour"
    );
    assert!(gate.peak_while_closed.load(Ordering::SeqCst) <= 4);
    // The customer fixes the policy: the next probe succeeds and everything drains.
    gate.open.store(true, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(400)).await;
    let st = stats.lock().expect("lock")["b"].clone();
    assert_eq!(st.blocked, None);
    assert_eq!(st.queue_files, 0);
    stop.cancel();
    h.await.expect("join");
}

#[tokio::test(start_paused = true)]
async fn publish_last_waits_for_earlier_files_of_its_folder_only() {
    let fake = Arc::new(Fake {
        delay: Duration::from_millis(100),
        ..Default::default()
    });
    let items = vec![
        ("a", it("d/1.csv", 1)),
        ("a", it("d/2.csv", 2)),
        ("a", it("d/3.csv", 3)),
        ("a", it("d/batch.info", 4)),
        ("a", it("e/other.info", 5)),
        ("a", it("d/late.csv", 6)),
    ];
    run_with(fake.clone(), 8, &[("a", 8)], items, Duration::from_secs(5)).await;
    let log = fake.log.lock().expect("lock").clone();
    let pos = |seq| log.iter().position(|(_, s, _)| *s == seq).expect("ran");
    // batch.info starts only after 1, 2, 3 finished; not after late.csv (it came later);
    // e/other.info has no earlier file in its folder.
    assert!(pos(4) > pos(1) && pos(4) > pos(2) && pos(4) > pos(3));
    assert!(pos(5) < pos(4));
    assert!(pos(6) < pos(4), "late.csv is not held back by the .info");
}

#[tokio::test(start_paused = true)]
async fn publish_last_waits_while_an_earlier_file_failed_and_says_why() {
    let fake = Arc::new(Fake {
        fail_first: 100,
        ..Default::default()
    });
    let s = Scheduler::new(fake.clone(), 4);
    let stats = s.stats();
    let (tx, rx) = mpsc::channel(100);
    tx.send(Command::Configure {
        server: "a".into(),
        max_in_flight: 4,
        retry: policy(2),
        last: vec!["*.info".into()],
    })
    .await
    .expect("send");
    tx.send(Command::Add {
        server: "a".into(),
        item: it("d/1.csv", 1),
    })
    .await
    .expect("send");
    tx.send(Command::Add {
        server: "a".into(),
        item: it("d/b.info", 2),
    })
    .await
    .expect("send");
    let stop = CancellationToken::new();
    let h = tokio::spawn(s.run(rx, stop.clone(), Duration::from_secs(1)));
    tokio::time::sleep(Duration::from_secs(30)).await;
    let st = stats.lock().expect("lock")["a"].clone();
    assert_eq!(*fake.gave_up.lock().expect("lock"), vec![1]);
    assert!(
        !fake
            .log
            .lock()
            .expect("lock")
            .iter()
            .any(|(_, s, _)| *s == 2),
        "the .info went out"
    );
    assert!(
        st.held
            .as_deref()
            .is_some_and(|h| h.contains("d/1.csv") && h.contains("requeue")),
        "{st:?}"
    );
    stop.cancel();
    h.await.expect("join");
}

/// Issue 10.1: with the only global slot held by an upload that never ends and another
/// server's file in backoff already due, the dispatcher must sleep, not spin.
#[tokio::test]
async fn dispatcher_sleeps_while_nothing_can_start() {
    let fake = Arc::new(Fake {
        stuck: Some("hold".into()),
        fail_first: 100,
        ..Default::default()
    });
    let s = Scheduler::new(fake.clone(), 1);
    let beat = s.heartbeat();
    let (tx, rx) = mpsc::channel(100);
    for name in ["b", "hold"] {
        tx.send(Command::Configure {
            server: name.into(),
            max_in_flight: 1,
            retry: RetryPolicy {
                initial: Duration::from_millis(20),
                max: Duration::from_millis(20),
                max_attempts: 100,
            },
            last: Vec::new(),
        })
        .await
        .expect("send");
    }
    // "b" runs first (servers are visited in name order) and fails; "hold" then takes
    // the only slot for good while b's backoff falls due.
    tx.send(Command::Add {
        server: "b".into(),
        item: it("x", 1),
    })
    .await
    .expect("send");
    tx.send(Command::Add {
        server: "hold".into(),
        item: it("h", 2),
    })
    .await
    .expect("send");
    let stop = CancellationToken::new();
    let h = tokio::spawn(s.run(rx, stop.clone(), Duration::from_millis(10)));
    tokio::time::sleep(Duration::from_millis(200)).await;
    let before = beat.load(Ordering::Relaxed);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let turns = beat.load(Ordering::Relaxed) - before;
    stop.cancel();
    h.await.expect("join");
    let log = fake.log.lock().expect("lock").clone();
    assert!(log.iter().any(|(s, _, _)| s == "hold"), "{log:?}");
    assert!(
        turns < 20,
        "the dispatcher turned {turns} times in 500 ms while nothing could start"
    );
}

/// Refuses (as `Blocked`) every attempt of the items whose key is in `refuse`.
#[derive(Default)]
struct Picky {
    refuse: Vec<String>,
    /// Refuse everything while set.
    closed: std::sync::atomic::AtomicBool,
    log: Mutex<Vec<u64>>,
    gave_up: Mutex<Vec<(u64, History)>>,
}

impl Work<It> for Picky {
    async fn attempt(&self, _s: &str, item: &It, _a: u32, _stop: CancellationToken) -> Outcome {
        self.log.lock().expect("lock").push(item.seq);
        tokio::time::sleep(Duration::from_millis(10)).await;
        if self.closed.load(Ordering::SeqCst) || self.refuse.contains(&item.key) {
            Outcome::Blocked("AccessDenied: explicit deny".into())
        } else {
            Outcome::Done
        }
    }
    async fn give_up(&self, _server: &str, item: It, h: History) {
        self.gave_up.lock().expect("lock").push((item.seq, h));
    }
}

async fn run_picky(picky: Arc<Picky>, n: u64, in_flight: usize, for_: Duration) -> ServerStats {
    let s = Scheduler::new(picky, 8);
    let stats = s.stats();
    let (tx, rx) = mpsc::channel(1000);
    tx.send(Command::Configure {
        server: "a".into(),
        max_in_flight: in_flight,
        retry: RetryPolicy {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(60),
            max_attempts: 3,
        },
        last: Vec::new(),
    })
    .await
    .expect("send");
    for i in 1..=n {
        tx.send(Command::Add {
            server: "a".into(),
            item: it(&format!("f{i}"), i),
        })
        .await
        .expect("send");
    }
    let stop = CancellationToken::new();
    let h = tokio::spawn(s.run(rx, stop.clone(), Duration::from_secs(1)));
    tokio::time::sleep(for_).await;
    let st = stats.lock().expect("lock")["a"].clone();
    stop.cancel();
    h.await.expect("join");
    st
}

/// Issue 10.2: the lowest file refused on its own does not wedge the server: probes
/// rotate, the others are delivered, and the refused one fails as `refused`.
#[tokio::test(start_paused = true)]
async fn a_file_refused_on_its_own_does_not_wedge_its_server() {
    for in_flight in [1, 4] {
        let picky = Arc::new(Picky {
            refuse: vec!["f1".into()],
            ..Default::default()
        });
        let st = run_picky(picky.clone(), 10, in_flight, Duration::from_secs(600)).await;
        assert_eq!(st.queue_files, 0, "in_flight {in_flight}: {st:?}");
        assert_eq!(st.blocked, None);
        let gave_up = picky.gave_up.lock().expect("lock");
        assert_eq!(gave_up.len(), 1);
        assert_eq!(gave_up[0].0, 1);
        assert!(gave_up[0].1.refused);
        assert_eq!(gave_up[0].1.attempts, 3);
        assert!(gave_up[0].1.last_error.contains("explicit deny"));
    }
}

/// A server whose every file is refused stays blocked, fails nothing, and its probes
/// visit more than one file; it heals when the destination accepts again.
#[tokio::test(start_paused = true)]
async fn a_server_refusing_everything_rotates_its_probes_and_fails_nothing() {
    let picky = Arc::new(Picky::default());
    picky.closed.store(true, Ordering::SeqCst);
    let st = run_picky(picky.clone(), 5, 1, Duration::from_secs(3600)).await;
    assert!(st.blocked.is_some());
    assert_eq!(st.queue_files, 5);
    assert!(picky.gave_up.lock().expect("lock").is_empty());
    let probed: BTreeSet<u64> = picky.log.lock().expect("lock").iter().copied().collect();
    assert_eq!(probed.len(), 5, "probes rotate through every pending file");
}

/// Issue 11.4: files known to be in `.failed/` (reported, or found by a scan) hold
/// their folder's `publish_last` items; a scan without them releases; a requeued file
/// holds them although it arrives later.
#[tokio::test(start_paused = true)]
async fn publish_last_waits_for_failed_files_reported_or_scanned_and_requeued_ones() {
    let fake = Arc::new(Fake {
        delay: Duration::from_millis(10),
        ..Default::default()
    });
    let s = Scheduler::new(fake.clone(), 4);
    let stats = s.stats();
    let (tx, rx) = mpsc::channel(100);
    let send = |c| {
        let tx = tx.clone();
        async move { tx.send(c).await.expect("send") }
    };
    send(Command::Configure {
        server: "a".into(),
        max_in_flight: 4,
        retry: policy(3),
        last: vec!["*.info".into()],
    })
    .await;
    send(Command::FailedScan {
        server: "a".into(),
        keys: vec!["d/bad.csv".into(), "d/x.info".into()],
        after_scan: true,
    })
    .await;
    send(Command::Add {
        server: "a".into(),
        item: it("d/b.info", 1),
    })
    .await;
    send(Command::Add {
        server: "a".into(),
        item: it("e/c.info", 2),
    })
    .await;
    let stop = CancellationToken::new();
    let h = tokio::spawn(s.run(rx, stop.clone(), Duration::from_secs(1)));
    tokio::time::sleep(Duration::from_secs(5)).await;
    let started = |seq| {
        fake.log
            .lock()
            .expect("lock")
            .iter()
            .any(|(_, s, _)| *s == seq)
    };
    assert!(!started(1), "held by d/bad.csv in .failed/");
    assert!(started(2), "another folder is not held");
    let st = stats.lock().expect("lock")["a"].clone();
    assert!(
        st.held.as_deref().is_some_and(|h| h.contains("d/bad.csv")),
        "{st:?}"
    );
    // The failed file is requeued: it arrives after the .info and still goes first.
    send(Command::Add {
        server: "a".into(),
        item: it("d/bad.csv", 3),
    })
    .await;
    send(Command::FailedScan {
        server: "a".into(),
        keys: vec![],
        after_scan: true,
    })
    .await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let log = fake.log.lock().expect("lock").clone();
    let pos = |seq| log.iter().position(|(_, s, _)| *s == seq).expect("ran");
    assert!(
        pos(3) < pos(1),
        "the requeued file went after the .info: {log:?}"
    );
    // A failure reported one by one holds again.
    send(Command::Failed {
        server: "a".into(),
        key: "d/late.csv".into(),
    })
    .await;
    send(Command::Add {
        server: "a".into(),
        item: it("d/again.info", 4),
    })
    .await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(!started(4));
    stop.cancel();
    h.await.expect("join");
}

/// An item taken over from a dead daemon.
#[derive(Debug, Clone)]
struct Taken {
    key: String,
    seq: u64,
    dropped: u64,
    taken: bool,
}

impl Item for Taken {
    fn order_key(&self) -> &str {
        &self.key
    }
    fn seq(&self) -> u64 {
        self.seq
    }
    fn size(&self) -> u64 {
        1
    }
    fn dropped_at(&self) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(self.dropped)
    }
    fn taken_over(&self) -> bool {
        self.taken
    }
}

#[derive(Default)]
struct Order(Mutex<Vec<u64>>);

impl Work<Taken> for Order {
    async fn attempt(&self, _s: &str, item: &Taken, _a: u32, _stop: CancellationToken) -> Outcome {
        self.0.lock().expect("lock").push(item.seq);
        tokio::time::sleep(Duration::from_millis(10)).await;
        Outcome::Done
    }
    async fn give_up(&self, _server: &str, _item: Taken, _h: History) {}
}

/// Issue 11.7: a dead daemon's versions of a path, taken over (new, higher numbers),
/// go before the taker's own later-dropped version of the same path, in their drop
/// order; a taken item dropped after the taker's own goes after it.
#[tokio::test(start_paused = true)]
async fn taken_over_versions_are_placed_by_drop_time() {
    let order = Arc::new(Order::default());
    let s = Scheduler::new(order.clone(), 8);
    let (tx, rx) = mpsc::channel(100);
    tx.send(Command::Configure {
        server: "a".into(),
        max_in_flight: 1,
        retry: policy(3),
        last: Vec::new(),
    })
    .await
    .expect("send");
    let item = |seq, dropped, taken| Taken {
        key: "latest.csv".into(),
        seq,
        dropped,
        taken,
    };
    // The taker's own version (claim 10, dropped at 300), then the dead daemon's two
    // versions (dropped at 100 and 200) taken as claims 11 and 12, and one it claimed
    // after the taker's (dropped at 400) taken as 13.
    // An unrelated file holds the only slot while the others arrive.
    let first = Taken {
        key: "other.csv".into(),
        seq: 1,
        dropped: 1,
        taken: false,
    };
    for it in [
        first,
        item(10, 300, false),
        item(11, 100, true),
        item(12, 200, true),
        item(13, 400, true),
    ] {
        tx.send(Command::Add {
            server: "a".into(),
            item: it,
        })
        .await
        .expect("send");
    }
    let stop = CancellationToken::new();
    let h = tokio::spawn(s.run(rx, stop.clone(), Duration::from_secs(1)));
    tokio::time::sleep(Duration::from_secs(5)).await;
    stop.cancel();
    h.await.expect("join");
    assert_eq!(*order.0.lock().expect("lock"), vec![1, 11, 12, 10, 13]);
}

/// Answers Blocked, then Retry (the probe meets a transient error), then Done.
#[derive(Default)]
struct BlockThenRetry(AtomicUsize);

impl Work<It> for BlockThenRetry {
    async fn attempt(&self, _s: &str, _item: &It, _a: u32, _stop: CancellationToken) -> Outcome {
        match self.0.fetch_add(1, Ordering::SeqCst) {
            0 => Outcome::Blocked("AccessDenied".into()),
            1 => Outcome::Retry("503".into()),
            _ => Outcome::Done,
        }
    }
    async fn give_up(&self, _server: &str, _item: It, _h: History) {}
}

/// A blocked server whose probe meets a transient error wakes at that file's backoff
/// by itself (no other event needed).
#[tokio::test(start_paused = true)]
async fn a_blocked_servers_probe_retried_after_a_transient_error_is_not_forgotten() {
    let work = Arc::new(BlockThenRetry::default());
    let s = Scheduler::new(work.clone(), 4);
    let stats = s.stats();
    let (tx, rx) = mpsc::channel(10);
    tx.send(Command::Configure {
        server: "a".into(),
        max_in_flight: 1,
        retry: policy(5),
        last: Vec::new(),
    })
    .await
    .expect("send");
    tx.send(Command::Add {
        server: "a".into(),
        item: it("x", 1),
    })
    .await
    .expect("send");
    let stop = CancellationToken::new();
    let h = tokio::spawn(s.run(rx, stop.clone(), Duration::from_secs(1)));
    tokio::time::sleep(Duration::from_secs(600)).await;
    let st = stats.lock().expect("lock")["a"].clone();
    stop.cancel();
    h.await.expect("join");
    assert_eq!(work.0.load(Ordering::SeqCst), 3, "{st:?}");
    assert_eq!(st.queue_files, 0);
}

/// A sibling requeued while the daemon was down: the control file recovered from the
/// last run (lower claim number) waits for discovery's first scan, which finds the
/// requeued file (higher number, earlier drop time) — and then goes after it.
#[tokio::test(start_paused = true)]
async fn publish_last_waits_for_the_first_scan_and_a_file_dropped_earlier() {
    let fake = Arc::new(Fake {
        delay: Duration::from_millis(10),
        ..Default::default()
    });
    let s = Scheduler::new(fake.clone(), 4);
    let (tx, rx) = mpsc::channel(100);
    tx.send(Command::Configure {
        server: "a".into(),
        max_in_flight: 4,
        retry: policy(3),
        last: vec!["*.info".into()],
    })
    .await
    .expect("send");
    // Start-up: nothing in `.failed/` any more (requeued while down), then the claims of
    // the last run: the control file, dropped at t=50.
    tx.send(Command::FailedScan {
        server: "a".into(),
        keys: vec![],
        after_scan: false,
    })
    .await
    .expect("send");
    tx.send(Command::Add {
        server: "a".into(),
        item: It {
            key: "d/b.info".into(),
            seq: 50,
        },
    })
    .await
    .expect("send");
    let stop = CancellationToken::new();
    let h = tokio::spawn(s.run(rx, stop.clone(), Duration::from_secs(1)));
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(
        fake.log.lock().expect("lock").is_empty(),
        "went before the scan"
    );
    // Discovery's scan claims the requeued file and reports. (`It` is dropped at its
    // number: 40 stands for a file dropped before the control file.)
    tx.send(Command::Add {
        server: "a".into(),
        item: It {
            key: "d/a.csv".into(),
            seq: 40,
        },
    })
    .await
    .expect("send");
    tx.send(Command::FailedScan {
        server: "a".into(),
        keys: vec![],
        after_scan: true,
    })
    .await
    .expect("send");
    tokio::time::sleep(Duration::from_secs(5)).await;
    stop.cancel();
    h.await.expect("join");
    let order: Vec<u64> = fake.log.lock().expect("lock").iter().map(|x| x.1).collect();
    assert_eq!(order, vec![40, 50]);
}
