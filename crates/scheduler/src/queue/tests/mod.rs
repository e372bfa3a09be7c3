//! Scheduler tests with a fake worker under paused time: the fixtures, and order,
//! limits, fairness and retries. Refused servers and files are in `refusals.rs`,
//! `publish_last` holds in `publish_last.rs`, taken-over files in `takeover.rs`.

mod publish_last;
mod refusals;
mod takeover;
mod window;

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
            window: None,
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
