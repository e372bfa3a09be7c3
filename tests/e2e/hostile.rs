//! Hostile and odd spool entries: each gets a clear log line, is counted, loses
//! nothing, and the daemon keeps running.

use std::time::Duration;

use outpost_e2e::*;

#[test]
fn odd_names_hard_links_swapped_folders_and_unknown_servers() {
    // radosgw: a real store (s3s-fs keeps objects as files and cannot hold 255-byte names).
    let Staged {
        dir,
        bucket,
        client,
        launch,
    } = acme(&Store::rgw_publisher())
        .tag("hostile")
        .rgw_bucket(false)
        .extra("    checksum: md5\n")
        .stage();
    // A folder for a server nobody configured, present at start.
    std::fs::create_dir_all(dir.spool().join("stranger")).expect("mkdir");
    std::fs::write(dir.spool().join("stranger/keep.csv"), "not ours").expect("write");
    let mut d = launch.start(&dir);
    let srv = dir.spool().join("acme");

    // A 255-byte name, and names whose keys must round-trip exactly.
    let long = format!("{}.csv", "n".repeat(251));
    let names = [
        long.as_str(),
        "sp ace.csv",
        "per%25cent.csv",
        "plus+sign.csv",
        "ünï-cødé €.csv",
        "q?mark&amp=1.csv",
    ];
    for (i, n) in names.iter().enumerate() {
        dir.drop_file("acme", n, format!("content {i}").as_bytes());
    }
    // A hard link to a file outside the spool is a regular file: published.
    let outside = dir.path().join("outside.csv");
    std::fs::write(&outside, "linked content").expect("write");
    std::fs::hard_link(&outside, srv.join("hard.csv")).expect("hard link");
    // A folder swapped for a link to outside the spool is never entered.
    let secret_dir = dir.path().join("secret");
    std::fs::create_dir_all(&secret_dir).expect("mkdir");
    std::fs::write(secret_dir.join("private.csv"), "private").expect("write");
    std::fs::create_dir_all(dir.path().join("staging/swap")).expect("mkdir");
    std::os::unix::fs::symlink(&secret_dir, dir.path().join("staging/swap-link")).expect("symlink");
    std::fs::rename(dir.path().join("staging/swap-link"), srv.join("swap")).expect("swap in");

    let want = names.len() as f64 + 1.0;
    assert!(
        wait_until(Duration::from_secs(60), || d
            .metric("outpost_files_uploaded_total{server=\"acme\"}")
            == Some(want)),
        "log:\n{}",
        d.log_text()
    );
    assert!(wait_until(Duration::from_secs(30), || d.metric(
        "outpost_files_rejected_total{reason=\"symlink\",server=\"acme\"}"
    ) == Some(1.0)));
    rt().block_on(async {
        for (i, n) in names.iter().enumerate() {
            let got = get(&client, &bucket, &format!("pre/{n}")).await;
            assert_eq!(
                got.as_deref(),
                Some(format!("content {i}").as_bytes()),
                "key pre/{n} did not round-trip"
            );
        }
        assert_eq!(
            get(&client, &bucket, "pre/hard.csv").await.as_deref(),
            Some(&b"linked content"[..])
        );
        assert!(
            get(&client, &bucket, "pre/swap/private.csv")
                .await
                .is_none(),
            "followed a link out of the spool"
        );
    });
    assert!(
        outside.exists(),
        "the other link of a hard-linked file was touched"
    );
    assert!(secret_dir.join("private.csv").exists());

    let log = d.log_text();
    // The unknown server's folder: logged once, untouched.
    assert!(
        log.contains("not configured") && log.contains("stranger"),
        "{log}"
    );
    assert!(dir.spool().join("stranger/keep.csv").exists());
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        d.log_text().matches("stranger").count(),
        1,
        "unknown folder logged more than once"
    );
    assert_eq!(d.stop(), Some(0));
}

#[test]
fn a_file_the_daemon_may_not_read_goes_to_failed_whole() {
    // The daemon runs unprivileged (uid 65534) so that a mode-000 file owned by another
    // user is really unreadable to it; a readable neighbour is still published.
    use std::os::unix::fs::{PermissionsExt, chown};
    // In a folder the unprivileged daemon can reach whatever the checkout's place.
    let dir = TestDir::new_public();
    let nobody = 65534;
    let mode = |p: &std::path::Path, m: u32| {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).expect("chmod")
    };
    mode(dir.path(), 0o755);
    std::fs::create_dir_all(dir.spool().join("acme")).expect("mkdir");
    for p in [dir.spool(), dir.spool().join("acme")] {
        chown(&p, Some(nobody), Some(nobody)).expect("chown");
    }
    let Running {
        dir, daemon: mut d, ..
    } = acme(&Store::s3s())
        .tag("mode000")
        .dir(dir)
        .as_user(nobody)
        .start();
    let secret = data(4321, 77);
    // Written as root, made unreadable to anyone else, then renamed into place (a
    // readable copy dropped first could be published before it is replaced).
    let staged = dir.path().join("locked.tmp");
    std::fs::write(&staged, &secret).expect("write");
    mode(&staged, 0o000);
    std::fs::rename(&staged, dir.spool().join("acme/locked.csv")).expect("rename");
    dir.drop_file("acme", "open.csv", b"readable");
    let settled = wait_until(Duration::from_secs(60), || {
        d.metric("outpost_files_uploaded_total{server=\"acme\"}") == Some(1.0)
            && d.metric("outpost_files_failed_total{reason=\"unreadable\",server=\"acme\"}")
                == Some(1.0)
    });
    assert!(settled, "log:\n{}", d.log_text());
    let failed = dir.failed();
    let kept: Vec<_> = failed
        .iter()
        .filter(|p| p.file_name().is_some_and(|n| n == "locked.csv"))
        .collect();
    assert_eq!(kept.len(), 1, "{failed:?}");
    assert_eq!(std::fs::read(kept[0]).expect("read as root"), secret);
    assert!(d.log_text().contains("locked.csv"), "{}", d.log_text());
    assert_eq!(d.stop(), Some(0));
}
