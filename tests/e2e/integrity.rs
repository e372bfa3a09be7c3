//! Spool integrity: only regular files under the spool are published and nothing is
//! followed — by the watcher, by `requeue`, by the moves into `.failed/`.

use std::os::unix::fs::symlink;
use std::time::Duration;

use outpost_e2e::*;

/// inotify watches the process holds, from `/proc/PID/fdinfo`.
fn inotify_watches(pid: u32) -> usize {
    let mut n = 0;
    if let Ok(rd) = std::fs::read_dir(format!("/proc/{pid}/fdinfo")) {
        for e in rd.flatten() {
            if let Ok(text) = std::fs::read_to_string(e.path()) {
                n += text
                    .lines()
                    .filter(|l| l.starts_with("inotify wd:"))
                    .count();
            }
        }
    }
    n
}

/// Issue 11.2: a folder renamed in with links to `/` and `/usr` inside: its data file
/// is published, the watcher does not walk the links (few watches), nothing under them
/// is published.
#[test]
fn the_watcher_does_not_follow_links() {
    let Running {
        dir,
        daemon: mut d,
        bucket,
        client: c,
        ..
    } = acme(&Store::s3s()).tag("nofollow").start();
    let pid = d.child.id();
    let before = inotify_watches(pid);
    let staging = dir.path().join("batch.tmp-out");
    std::fs::create_dir_all(staging.join("sub")).expect("mkdir");
    std::fs::write(staging.join("data.csv"), b"the data").expect("write");
    symlink("/", staging.join("root")).expect("link");
    symlink("/usr", staging.join("sub/usr")).expect("link");
    std::fs::rename(&staging, dir.spool().join("acme/batch")).expect("rename in");
    let ok = wait_until(Duration::from_secs(30), || {
        rt().block_on(get(&c, &bucket, "pre/batch/data.csv"))
            .is_some()
    });
    assert!(ok, "log:\n{}", d.log_text());
    std::thread::sleep(Duration::from_secs(2));
    let after = inotify_watches(pid);
    assert!(
        after <= before + 10,
        "inotify watches grew from {before} to {after}"
    );
    let listed = rt().block_on(async {
        c.list_objects_v2()
            .bucket(&bucket)
            .send()
            .await
            .expect("list")
            .contents()
            .iter()
            .filter_map(|o| o.key().map(str::to_owned))
            .collect::<Vec<_>>()
    });
    assert_eq!(listed, vec!["pre/batch/data.csv".to_owned()]);
    assert_eq!(d.stop(), Some(0));
}

/// Issue 11.3: a server folder removed and made again is watched again: a file dropped
/// into the new folder is published.
#[test]
fn a_server_folder_removed_and_made_again_is_watched_again() {
    let Running {
        dir,
        daemon: mut d,
        bucket,
        client: c,
        ..
    } = acme(&Store::s3s()).tag("remade").start();
    let has = |key: &str| rt().block_on(get(&c, &bucket, key)).is_some();
    dir.drop_file("acme", "before.csv", b"before");
    assert!(wait_until(Duration::from_secs(30), || has(
        "pre/before.csv"
    )));
    let folder = dir.spool().join("acme");
    std::fs::remove_dir_all(&folder).expect("rm -rf");
    std::fs::create_dir(&folder).expect("mkdir");
    dir.drop_file("acme", "after.csv", b"after");
    assert!(
        wait_until(Duration::from_secs(30), || has("pre/after.csv")),
        "a file in the re-made folder was not published; log:\n{}",
        d.log_text()
    );
    // Removed and not made again: the daemon makes it, and drops there are published.
    std::fs::remove_dir_all(&folder).expect("rm -rf");
    assert!(wait_until(Duration::from_secs(30), || folder.is_dir()));
    dir.drop_file("acme", "third.csv", b"third");
    assert!(
        wait_until(Duration::from_secs(30), || has("pre/third.csv")),
        "log:\n{}",
        d.log_text()
    );
    assert_eq!(d.stop(), Some(0));
}

/// Issue 11.12: `outpost status` counts exactly what the daemon would publish — not a
/// file in an in-progress folder, an orphan marker or a file still waiting for its
/// marker (shown apart) — and agrees with `outpost_queue_files` on the same spool.
#[test]
fn status_counts_what_the_daemon_publishes_and_agrees_with_the_metrics() {
    // A bucket that does not exist: the server is blocked and its files stay pending.
    let Running {
        dir,
        daemon: mut d,
        launch,
        ..
    } = acme(&Store::moto())
        .bucket(&bucket_name("nosuchbucket"))
        .extra("    completion: marker\n")
        .start();
    let port = launch.port;
    let inprog = dir.spool().join("acme/inprog.tmp");
    std::fs::create_dir_all(&inprog).expect("mkdir");
    std::fs::write(inprog.join("x.csv"), b"still being written").expect("write");
    dir.drop_file("acme", "ghost.csv.ready", b"");
    dir.drop_file("acme", "wait.csv", b"waits for its marker");
    for name in ["a.csv", "b.csv"] {
        dir.drop_file("acme", name, b"complete");
        dir.drop_file("acme", &format!("{name}.ready"), b"");
    }
    assert!(
        wait_until(Duration::from_secs(30), || d
            .metric("outpost_server_blocked{server=\"acme\"}")
            == Some(1.0)),
        "log:\n{}\nmetrics:\n{}",
        d.log_text(),
        http_get(port, "/metrics").map(|x| x.1).unwrap_or_default()
    );
    std::thread::sleep(Duration::from_secs(3));
    let queued = d.metric("outpost_queue_files{server=\"acme\"}");
    let cfgs = launch.cfg_str();
    let (code, out, err) = outpost(&["status", "--json", "-c", cfgs], &[]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).expect("json");
    let row = &v[0];
    assert_eq!(queued, Some(2.0));
    assert_eq!(row["pending_files"].as_f64(), queued, "{out}");
    assert_eq!(row["waiting_for_marker"], 1, "{out}");
    let (_, text, _) = outpost(&["status", "-c", cfgs], &[]);
    assert!(text.contains("1 waiting for marker"), "{text}");
    assert_eq!(d.stop(), Some(0));
}
