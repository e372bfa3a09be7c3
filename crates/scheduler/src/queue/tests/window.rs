//! Delivery windows under paused time, the wall clock injected and moving with tokio's
//! clock: nothing of a server starts while its window is closed (other servers go on),
//! the dispatcher wakes once at the opening, a reload to an open window applies at once,
//! and an upload in flight when the window closes runs to its end.

use super::*;
use outpost_config::Window;

/// 1970-01-01 12:00 UTC, moving with tokio's (paused) clock from the test's start.
fn clock() -> Clock {
    let start = Instant::now();
    let noon = SystemTime::UNIX_EPOCH + Duration::from_secs(12 * 3600);
    Arc::new(move || noon + start.elapsed())
}

fn configure(server: &str, window: Option<&str>) -> Command<It> {
    Command::Configure {
        server: server.into(),
        max_in_flight: 4,
        retry: policy(3),
        last: Vec::new(),
        window: window.map(|w| Window::parse(w).expect("window")),
    }
}

fn attempts(fake: &Fake, server: &str) -> usize {
    let log = fake.log.lock().expect("lock");
    log.iter().filter(|(s, _, _)| s == server).count()
}

#[tokio::test(start_paused = true)]
async fn files_wait_for_the_window_and_start_when_it_opens() {
    let fake = Arc::new(Fake {
        delay: Duration::from_millis(10),
        ..Default::default()
    });
    let s = Scheduler::new(fake.clone(), 8).with_clock(clock());
    let (stats, beat) = (s.stats(), s.heartbeat());
    let (tx, rx) = mpsc::channel(100);
    tx.send(configure("night", Some("14:00-15:00")))
        .await
        .expect("send");
    tx.send(configure("free", None)).await.expect("send");
    for i in 1..=3 {
        let add = |server: &str, seq| Command::Add {
            server: server.into(),
            item: it(&format!("f{seq}"), seq),
        };
        tx.send(add("night", i)).await.expect("send");
        tx.send(add("free", 10 + i)).await.expect("send");
    }
    let stop = CancellationToken::new();
    let h = tokio::spawn(s.run(rx, stop.clone(), Duration::from_secs(1)));
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!(
        attempts(&fake, "free"),
        3,
        "a server without a window goes on"
    );
    assert_eq!(attempts(&fake, "night"), 0, "nothing starts while closed");
    let st = stats.lock().expect("lock").clone();
    let opens = SystemTime::UNIX_EPOCH + Duration::from_secs(14 * 3600);
    assert_eq!(st["night"].window_until, Some(opens));
    assert_eq!(st["night"].queue_files, 3, "still pending, still ageing");
    assert!(st["night"].oldest_dropped.is_some());
    assert_eq!(st["free"].window_until, None);
    // Two hours less a minute of nothing to do: the dispatcher sleeps, looking at the
    // window once a minute (a step of the wall clock cannot make it miss the opening).
    let turns = beat.load(std::sync::atomic::Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs(2 * 3600 - 61)).await;
    assert_eq!(attempts(&fake, "night"), 0, "a second before the opening");
    let idle_turns = beat.load(std::sync::atomic::Ordering::Relaxed) - turns;
    assert!(idle_turns <= 2 * 60 + 1, "{idle_turns} turns in two hours");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(attempts(&fake, "night"), 3, "started at the opening");
    let st = stats.lock().expect("lock").clone();
    assert_eq!(st["night"].queue_files, 0);
    assert_eq!(st["night"].window_until, None);
    stop.cancel();
    h.await.expect("join");
}

#[tokio::test(start_paused = true)]
async fn a_reload_opens_at_once_and_a_closing_window_does_not_cut_an_upload() {
    let fake = Arc::new(Fake {
        delay: Duration::from_secs(600),
        ..Default::default()
    });
    let s = Scheduler::new(fake.clone(), 8).with_clock(clock());
    let stats = s.stats();
    let (tx, rx) = mpsc::channel(100);
    tx.send(configure("w", Some("20:00-21:00")))
        .await
        .expect("send");
    tx.send(Command::Add {
        server: "w".into(),
        item: it("a", 1),
    })
    .await
    .expect("send");
    let stop = CancellationToken::new();
    let h = tokio::spawn(s.run(rx, stop.clone(), Duration::from_secs(1)));
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(attempts(&fake, "w"), 0);
    // A window open now (12:00-12:05): applies at once; the 10-minute upload outlives it.
    tx.send(configure("w", Some("12:00-12:05")))
        .await
        .expect("send");
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(attempts(&fake, "w"), 1, "started after the reload");
    // Closed at 12:05 with `a` in flight; `b` comes after the close.
    tokio::time::sleep(Duration::from_secs(6 * 60)).await;
    assert_eq!(stats.lock().expect("lock")["w"].in_flight, 1);
    tx.send(Command::Add {
        server: "w".into(),
        item: it("b", 2),
    })
    .await
    .expect("send");
    tokio::time::sleep(Duration::from_secs(5 * 60)).await;
    // `a` ran to its end after the close; `b` waits for tomorrow's opening.
    let st = stats.lock().expect("lock").clone();
    assert_eq!(attempts(&fake, "w"), 1, "b did not start");
    assert_eq!(
        (st["w"].queue_files, st["w"].in_flight),
        (1, 0),
        "a delivered"
    );
    let tomorrow = SystemTime::UNIX_EPOCH + Duration::from_secs(36 * 3600);
    assert_eq!(st["w"].window_until, Some(tomorrow));
    stop.cancel();
    h.await.expect("join");
}
