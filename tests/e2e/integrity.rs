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
    let store = Store::s3s();
    let (bucket, dir, mut d) = acme_on(&store, None, "nofollow", "");
    let pid = d.child.id();
    let before = inotify_watches(pid);
    let staging = dir.path().join("batch.tmp-out");
    std::fs::create_dir_all(staging.join("sub")).expect("mkdir");
    std::fs::write(staging.join("data.csv"), b"the data").expect("write");
    symlink("/", staging.join("root")).expect("link");
    symlink("/usr", staging.join("sub/usr")).expect("link");
    std::fs::rename(&staging, dir.spool().join("acme/batch")).expect("rename in");
    let c = store.client();
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
    let store = Store::s3s();
    let (bucket, dir, mut d) = acme_on(&store, None, "remade", "");
    let c = store.client();
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
