//! The token buckets under tokio's paused clock: the rate is achieved (less one chunk of
//! burst), two acquirers share it fairly, the server's and the global limit both apply,
//! no limit costs nothing, and a new rate applies to what comes after it.

use std::time::Duration;

use tokio::time::Instant;

use super::{CHUNK, Limits};

const MIB: u64 = 1 << 20;

/// Seconds `bytes` to `server` take.
async fn timed(l: &Limits, server: &str, bytes: u64) -> f64 {
    let t = Instant::now();
    l.acquire(server, bytes).await;
    t.elapsed().as_secs_f64()
}

fn close(got: f64, want: f64) -> bool {
    (got - want).abs() < 0.01
}

#[tokio::test(start_paused = true)]
async fn the_rate_is_achieved_after_one_chunk_of_burst() {
    let l = Limits::default();
    l.configure(0, [("a", MIB)]);
    let s = timed(&l, "a", 10 * MIB).await;
    assert!(close(s, 9.0), "10 MiB at 1 MiB/s took {s} s");
    // Right after, no burst is left: the next MiB takes a second.
    let s = timed(&l, "a", MIB).await;
    assert!(close(s, 1.0), "{s}");
    // Idle for a while: one chunk goes at once again, and no more.
    tokio::time::sleep(Duration::from_secs(60)).await;
    let s = timed(&l, "a", CHUNK).await;
    assert!(close(s, 0.0), "{s}");
}

#[tokio::test(start_paused = true)]
async fn two_acquirers_share_the_rate_fairly() {
    let l: &'static Limits = Box::leak(Box::default());
    l.configure(0, [("a", MIB)]);
    let one = tokio::spawn(timed(l, "a", 10 * MIB));
    let two = tokio::spawn(timed(l, "a", 10 * MIB));
    let (one, two) = (one.await.expect("join"), two.await.expect("join"));
    // Together 20 MiB at 1 MiB/s: both end near 19 s (within two chunks of each
    // other), not one at 9 s and the other at 19 s.
    assert!(one > 16.0 && two > 16.0, "{one} {two}");
    assert!((one - two).abs() <= 2.0 + 1e-6, "{one} {two}");
}

#[tokio::test(start_paused = true)]
async fn the_server_and_the_global_limit_both_apply() {
    let l: &'static Limits = Box::leak(Box::default());
    // The global limit is the tighter one.
    l.configure(2 * MIB, [("a", 4 * MIB)]);
    let s = timed(l, "a", 10 * MIB).await;
    assert!(close(s, 4.5), "{s}");
    // The server's is.
    tokio::time::sleep(Duration::from_secs(60)).await;
    l.configure(10 * MIB, [("a", MIB)]);
    let s = timed(l, "a", 10 * MIB).await;
    assert!(close(s, 9.0), "{s}");
    // Two servers without a limit of their own share the global one.
    tokio::time::sleep(Duration::from_secs(60)).await;
    l.configure(2 * MIB, []);
    let a = tokio::spawn(timed(l, "a", 10 * MIB));
    let b = tokio::spawn(timed(l, "b", 10 * MIB));
    let (a, b) = (a.await.expect("join"), b.await.expect("join"));
    assert!(a > 8.0 && b > 8.0 && (a - b).abs() <= 1.0 + 1e-6, "{a} {b}");
}

#[tokio::test(start_paused = true)]
async fn no_limit_costs_no_time_and_a_new_rate_applies_to_what_follows() {
    let l = Limits::default();
    assert!(close(timed(&l, "a", 100 * MIB).await, 0.0));
    l.configure(0, [("a", MIB), ("b", 0)]);
    assert!(
        close(timed(&l, "b", 100 * MIB).await, 0.0),
        "b is unlimited"
    );
    assert!(close(timed(&l, "a", 3 * MIB).await, 2.0));
    // A reload to 2 MiB/s: the next 4 MiB take 2 s (the debt of the last MiB is paid
    // at the new rate's pace too).
    l.configure(0, [("a", 2 * MIB)]);
    let s = timed(&l, "a", 4 * MIB).await;
    assert!((1.5..=2.5).contains(&s), "{s}");
    // Removed: unlimited.
    l.configure(0, []);
    assert!(close(timed(&l, "a", 100 * MIB).await, 0.0));
}

/// A mistaken low limit with much reserved behind it: raising it frees the waiters'
/// next chunks at once (the debt is rescaled), and removing a limit stops the pacing of
/// an upload that already holds the bucket.
#[tokio::test(start_paused = true)]
async fn a_raised_or_removed_limit_does_not_keep_the_old_debt() {
    let l = std::sync::Arc::new(Limits::default());
    l.configure(0, [("a", 10 << 10)]);
    // 10 MiB reserved at 10 KiB/s: about 17 minutes of debt.
    let waiter = {
        let l = l.clone();
        tokio::spawn(async move { l.acquire("a", 10 * MIB).await })
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    l.configure(0, [("a", 100 * MIB)]);
    let s = timed(&l, "a", MIB).await;
    assert!(s < 1.0, "a MiB after raising the limit took {s} s");
    // Removed while the waiter still paces through the bucket: it finishes at once.
    l.configure(0, []);
    let t = Instant::now();
    waiter.await.expect("join");
    assert!(t.elapsed() < Duration::from_secs(60), "{:?}", t.elapsed());
}
