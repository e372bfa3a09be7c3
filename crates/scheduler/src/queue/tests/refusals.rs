//! Refusals: a blocked server probes and heals, a file refused on its own fails as
//! `refused`, and the dispatcher sleeps while nothing can start.

use super::*;

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
        window: None,
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
            window: None,
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
        window: None,
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
        window: None,
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
