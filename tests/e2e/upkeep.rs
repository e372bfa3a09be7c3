//! The daemon's upkeep of its destinations (issue 14 §3): the background `verify` probe
//! (a refusing bucket shows in the metrics and `status` before any file is refused) and
//! the orphan multipart sweep (an upload outpost began and lost is aborted; another
//! client's upload under the same prefix is never touched).

use std::time::Duration;

use outpost_e2e::*;

/// acme to a radosgw bucket that lets the publisher in, and `bare` to one that refuses
/// it (no bucket policy), both verified every second, with no file dropped.
#[test]
fn background_verification_shows_a_refusing_bucket_before_any_file_and_a_healthy_one_as_ok() {
    let publisher = Store::rgw_publisher();
    let bare = bucket_name("vbare");
    rt().block_on(create_bucket(&Store::rgw_owner().client(), &bare));
    let every = "    checksum: md5\n    verify_interval: 1s\n";
    let Running {
        dir,
        daemon: mut d,
        launch,
        ..
    } = acme(&publisher)
        .tag("vok")
        .rgw_bucket(true)
        .extra(every)
        .server(Server::new("bare", &publisher.endpoint, &bare).extra(every))
        .start();
    let ok = |s: &str| d.metric(&format!("outpost_destination_ok{{server=\"{s}\"}}"));
    let at = |s: &str| {
        d.metric(&format!(
            "outpost_destination_verified_timestamp_seconds{{server=\"{s}\"}}"
        ))
    };
    assert!(
        wait_until(Duration::from_secs(60), || ok("bare") == Some(0.0)
            && ok("acme") == Some(1.0)),
        "verdicts {:?} {:?}; log:\n{}",
        ok("bare"),
        ok("acme"),
        d.log_text()
    );
    let first = at("bare").unwrap_or(0.0);
    assert!(first > 1.0e9 && at("acme").unwrap_or(0.0) > 1.0e9);
    // A few more verifications of the refusing bucket: its ERROR is logged once.
    assert!(
        wait_until(Duration::from_secs(60), || at("bare")
            .is_some_and(|t| t >= first + 2.0)),
        "not verified again; log:\n{}",
        d.log_text()
    );
    let log = d.log_text();
    let errors: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("destination verification failed"))
        .collect();
    assert_eq!(errors.len(), 1, "logged once per change:\n{log}");
    assert!(
        errors[0].contains("bare") && errors[0].contains("AccessDenied"),
        "{}",
        errors[0]
    );
    assert!(
        errors[0].contains("outpost policy bare"),
        "no fix: {}",
        errors[0]
    );
    // `status` shows the failing verification with its cause; the healthy one is ok.
    let cfg = launch.cfg.to_str().expect("utf8");
    let (code, out, err) = outpost(&["status", "-c", cfg, "--json"], &[]);
    assert_eq!(code, 0, "{err}");
    let st: serde_json::Value = serde_json::from_str(&out).expect("json");
    let row = |name: &str| {
        st.as_array()
            .and_then(|a| a.iter().find(|r| r["server"] == name))
            .cloned()
            .unwrap_or_else(|| panic!("{name} not in {st}"))
    };
    let why = row("bare")["verify_failed_reason"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        why.contains("PutObject") && why.contains("AccessDenied"),
        "{st}"
    );
    assert!(row("acme")["verify_failed_reason"].is_null(), "{st}");
    let (_, text, _) = outpost(&["status", "-c", cfg], &[]);
    assert!(text.contains("VERIFY FAILED"), "{text}");
    // Nothing was dropped, nothing refused: the verdict came before any file.
    assert!(dir.claimed().is_empty() && dir.failed().is_empty());
    assert_eq!(
        d.metric("outpost_upload_errors_total{class=\"refused\",server=\"bare\"}"),
        Some(0.0)
    );
    assert_eq!(d.stop(), Some(0));
}

/// The daemon is killed in the middle of a multipart upload and the claimed file is
/// removed before the restart (its journal goes with it at recovery): the upload is
/// outpost's and nothing accounts for it. Another client's upload under the same prefix
/// is not outpost's. With a tiny `orphan_age`, the sweep aborts the first and only it.
#[test]
fn the_orphan_sweep_aborts_only_outposts_lost_upload_and_counts_it() {
    let Running {
        dir,
        daemon: mut d,
        bucket,
        client: oc,
        launch,
    } = acme(&Store::rgw_publisher())
        .tag("orphan")
        .rgw_bucket(true)
        .extra("    checksum: md5\n    multipart: { threshold: 5MiB, part_size: 5MiB, concurrency: 1 }\n    orphan_age: 1s\n")
        .start();
    let aborted = "outpost_orphan_uploads_aborted_total{server=\"acme\"}";
    assert_eq!(d.metric(aborted), Some(0.0), "series missing at start-up");
    let foreign = rt().block_on(async {
        oc.create_multipart_upload()
            .bucket(&bucket)
            .key("pre/foreign.bin")
            .send()
            .await
            .expect("foreign upload")
            .upload_id()
            .expect("id")
            .to_owned()
    });
    dir.drop_file("acme", "big.bin", &data(60 * 1024 * 1024, 5));
    // A journal with a real upload id: the upload is under way (and, while it is, the
    // sweep — every second — leaves it alone: the journal accounts for it).
    let journal = || {
        files_below(&dir.spool().join(".outpost"))
            .into_iter()
            .filter(|p| p.extension().is_some_and(|e| e == "upload"))
            .any(|p| std::fs::read_to_string(p).is_ok_and(|t| !t.contains("\"upload_id\":\"\"")))
    };
    assert!(
        wait_until(Duration::from_secs(60), journal),
        "no multipart journal; log:\n{}",
        d.log_text()
    );
    d.kill9();
    let ours: Vec<String> = uploads(&oc, &bucket)
        .into_iter()
        .filter(|(k, _)| k == "pre/big.bin")
        .map(|(_, id)| id)
        .collect();
    assert_eq!(ours.len(), 1, "the killed upload is not open");
    for f in dir.claimed() {
        std::fs::remove_file(&f).expect("remove the claimed file");
    }
    let mut d = launch.start(&dir);
    assert!(
        wait_until(Duration::from_secs(60), || d.metric(aborted) == Some(1.0)),
        "orphan not aborted; log:\n{}",
        d.log_text()
    );
    std::thread::sleep(Duration::from_secs(3)); // a few more sweeps
    assert_eq!(
        uploads(&oc, &bucket),
        vec![("pre/foreign.bin".to_owned(), foreign)],
        "log:\n{}",
        d.log_text()
    );
    assert_eq!(d.metric(aborted), Some(1.0));
    assert!(d.log_text().contains(&ours[0]), "the abort is not logged");
    assert_eq!(d.stop(), Some(0));
}

/// (key, upload id) of every open multipart upload in `bucket`.
fn uploads(oc: &aws_sdk_s3::Client, bucket: &str) -> Vec<(String, String)> {
    rt().block_on(async {
        oc.list_multipart_uploads()
            .bucket(bucket)
            .send()
            .await
            .expect("list uploads")
            .uploads()
            .iter()
            .map(|u| {
                (
                    u.key().unwrap_or_default().to_owned(),
                    u.upload_id().unwrap_or_default().to_owned(),
                )
            })
            .collect()
    })
}

/// SIGHUP applies `verify_interval`: off at start (no verdict series), on after a
/// reload (a verdict comes), off again (the series go).
#[test]
fn sighup_switches_background_verification_on_and_off() {
    let Running {
        dir: _dir,
        daemon: mut d,
        launch,
        ..
    } = acme(&Store::rgw_publisher())
        .tag("vhup")
        .rgw_bucket(false)
        .extra("    checksum: md5\n")
        .start();
    let ok = "outpost_destination_ok{server=\"acme\"}";
    assert_eq!(d.metric(ok), None, "verified while off");
    let text = std::fs::read_to_string(&launch.cfg).expect("config");
    let hup = |text: &str| {
        std::fs::write(&launch.cfg, text).expect("write config");
        let _ = std::process::Command::new("kill")
            .args(["-HUP", &d.child.id().to_string()])
            .status();
    };
    hup(&text.replace(
        "checksum: md5\n",
        "checksum: md5\n    verify_interval: 1s\n",
    ));
    assert!(
        wait_until(Duration::from_secs(60), || d.metric(ok) == Some(1.0)),
        "no verdict after the reload; log:\n{}",
        d.log_text()
    );
    hup(&text);
    assert!(
        wait_until(Duration::from_secs(60), || d.metric(ok).is_none()),
        "verdict kept while off; log:\n{}",
        d.log_text()
    );
    assert_eq!(d.stop(), Some(0));
}
