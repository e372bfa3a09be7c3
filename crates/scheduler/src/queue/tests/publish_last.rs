//! `publish_last`: control files wait for the earlier files of their folder, for failed
//! ones, and for the first scan.

use super::*;

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
        window: None,
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
        window: None,
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
        window: None,
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
