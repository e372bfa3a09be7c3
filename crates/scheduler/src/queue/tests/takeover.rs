//! Files taken over from a dead daemon are placed among the taker's by drop time.

use super::*;

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
        window: None,
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
