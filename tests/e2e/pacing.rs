//! Delivery windows and bandwidth limits against a real store: a file dropped while its
//! server's window is closed waits (and `status` says until when) until a reload opens
//! the window; a limited server sends no faster than its limit while an unlimited one in
//! the same daemon is not held back. Windows are computed around now; times are only
//! lower bounds.

use std::time::{Duration, SystemTime};

use outpost_e2e::*;

use crate::reload::hup;

/// Minutes since the epoch, now.
fn now_minutes() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .expect("after the epoch")
        .as_secs()
        / 60
}

/// Minute `m` (since the epoch) as `HH:MM` of its UTC day.
fn hm(m: u64) -> String {
    format!("{:02}:{:02}", (m % 1440) / 60, m % 60)
}

/// Minute `m` (since the epoch) as RFC 3339 UTC (civil-from-days, proleptic Gregorian).
fn rfc3339_minute(m: u64) -> String {
    let days = (m / 1440) as i64;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let mo = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(mo <= 2);
    format!("{y:04}-{mo:02}-{d:02}T{}:00Z", hm(m))
}

#[test]
fn a_file_waits_for_its_window_and_a_reload_opens_it() {
    let store = Store::s3s();
    // A window that opens in two hours: closed now.
    let opens = now_minutes() + 120;
    let closed = format!("{}-{}", hm(opens), hm(opens + 60));
    let Running {
        dir,
        daemon: d,
        launch,
        bucket,
        client,
    } = acme(&store)
        .extra(&format!("    window: \"{closed}\"\n"))
        .start();
    dir.drop_file("acme", "night.csv", b"after dark");
    let waiting = format!("WAITING for its window until {}", rfc3339_minute(opens));
    let mut said = String::new();
    assert!(
        wait_until(Duration::from_secs(30), || {
            said = outpost(&["status", "-c", launch.cfg_str()], &[]).1;
            said.contains(&waiting)
        }),
        "status does not say {waiting:?}:\n{said}\nlog:\n{}",
        d.log_text()
    );
    assert!(said.contains("acme"), "{said}");
    // The gauge follows the queue: 0 once the file is claimed and waits there.
    assert!(
        wait_until(Duration::from_secs(30), || d
            .metric("outpost_server_window_open{server=\"acme\"}")
            == Some(0.0)),
        "window gauge not 0; log:\n{}",
        d.log_text()
    );
    assert_eq!(
        d.metric("outpost_files_uploaded_total{server=\"acme\"}"),
        Some(0.0),
        "uploaded while the window was closed"
    );
    assert!(d.metric("outpost_oldest_pending_age_seconds{server=\"acme\"}") > Some(0.0));
    rt().block_on(async {
        assert!(get(&client, &bucket, "pre/night.csv").await.is_none());
    });
    // A window around now: the reload opens it at once.
    let now = now_minutes();
    let open = format!("{}-{}", hm(now + 1440 - 60), hm(now + 60));
    let text = std::fs::read_to_string(&launch.cfg).expect("config");
    std::fs::write(&launch.cfg, text.replace(&closed, &open)).expect("config");
    hup(&d);
    d.wait_uploaded("acme", 1.0, 60);
    assert_delivered(&client, &bucket, "pre/night.csv", b"after dark");
    assert_eq!(
        d.metric("outpost_server_window_open{server=\"acme\"}"),
        Some(1.0)
    );
    // The spool forgets the file just after the count moves: status follows.
    let mut st = String::new();
    assert!(
        wait_until(Duration::from_secs(30), || {
            st = outpost(&["status", "-c", launch.cfg_str()], &[]).1;
            !st.contains("WAITING")
        }),
        "{st}"
    );
    drop(dir);
}

#[test]
fn a_limited_server_sends_no_faster_than_its_limit_and_others_are_not_held_back() {
    let store = Store::s3s();
    let client = store.client();
    let bucket = bucket_name("pace");
    rt().block_on(create_bucket(&client, &bucket));
    let free = Server::new("free", &store.endpoint, &bucket).prefix("free/");
    let Running { dir, daemon: d, .. } = acme(&store)
        .bucket(&bucket)
        .extra("    max_bandwidth: 1MiB/s\n    multipart: { threshold: 5MiB, part_size: 5MiB, concurrency: 2 }\n")
        .server(free)
        .start();
    let (big, other) = (data(6 << 20, 1), data(6 << 20, 2));
    let t = std::time::Instant::now();
    dir.drop_file("acme", "big.bin", &big);
    dir.drop_file("free", "other.bin", &other);
    // The unlimited server is not held back: it completes (no time bound asserted).
    d.wait_uploaded("free", 1.0, 120);
    d.wait_uploaded("acme", 1.0, 120);
    // 6 MiB at 1 MiB/s, less one chunk (1 MiB) of burst: at least 5 s.
    let took = t.elapsed();
    assert!(
        took >= Duration::from_secs(5),
        "6 MiB at 1MiB/s in {took:?}"
    );
    assert_delivered(&client, &bucket, "pre/big.bin", &big);
    assert_delivered(&client, &bucket, "free/other.bin", &other);
    drop(dir);
}
