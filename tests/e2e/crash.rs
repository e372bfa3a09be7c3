//! Crash loop: `kill -9` at random moments of a mixed run (small files and multipart
//! files), restarting each time; in the end every file is delivered byte-identical,
//! none lost, none in `.failed/`.

use std::time::Duration;

use outpost_e2e::*;

#[test]
fn kill9_loop_loses_nothing() {
    let kills: usize = std::env::var("OUTPOST_CRASH_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(24);
    // With listing allowed, outpost also aborts an upload a kill interrupted between its
    // creation and its journal entry.
    let Running {
        dir,
        daemon: mut d,
        bucket,
        client: oc,
        launch,
    } = acme(&Store::rgw_publisher())
        .tag("crash")
        .rgw_bucket(true)
        .extra("    checksum: md5\n    multipart: { threshold: 6MiB, part_size: 5MiB, concurrency: 2 }\n")
        .start();
    let mut files: Vec<(String, Vec<u8>)> = Vec::new();
    let mut rng = fastrand::Rng::with_seed(7);
    let mut killed = 0;
    for k in 0..kills {
        // Drop a batch: small files, and now and then a multipart file.
        for i in 0..8 {
            let rel = format!("batch{k}/f{i}.csv");
            let bytes = data(rng.usize(0..300_000), (k * 100 + i) as u64);
            dir.drop_file("acme", &rel, &bytes);
            files.push((rel, bytes));
        }
        if k % 4 == 0 {
            let rel = format!("batch{k}/large.bin");
            let bytes = data(rng.usize(11_000_000..21_000_000), k as u64 + 5000);
            dir.drop_file("acme", &rel, &bytes);
            files.push((rel, bytes));
        }
        std::thread::sleep(Duration::from_millis(rng.u64(50..1500)));
        d.kill9();
        killed += 1;
        d = launch.spawn(&dir);
        // Often kill again during start-up and recovery, before the daemon is ready:
        // right away, or while it resumes, sweeps and creates uploads for its claims.
        let again = match rng.u8(..) {
            0..40 => Some(rng.u64(0..150)),
            40..120 => Some(rng.u64(150..1500)),
            _ => None,
        };
        if let Some(ms) = again {
            std::thread::sleep(Duration::from_millis(ms));
            d.kill9();
            killed += 1;
            d = launch.spawn(&dir);
        }
        d.wait_ready();
    }
    let done = wait_until(Duration::from_secs(600), || {
        dir.left_in_spool("acme").is_empty() && dir.claimed().is_empty()
    });
    assert!(done, "spool did not drain; log:\n{}", d.log_text());
    let failures = d.metric("outpost_multipart_abort_failures_total{server=\"acme\"}");
    assert_eq!(d.stop(), Some(0));
    assert!(
        dir.failed().is_empty(),
        "files in .failed: {:?}",
        dir.failed()
    );
    assert_all_delivered(&oc, &bucket, &files);
    let (rows, again) = ledger_covers(&launch, &files);
    let open = uploads_left(&oc, &bucket);
    eprintln!(
        "crash loop: {killed} kills, {} files checked byte-identical, 0 lost, 0 failed, {open} multipart uploads left open; ledger: {rows} delivered rows, every file has one, {again} re-uploads marked already_present",
        files.len()
    );
    if open > 0 {
        // The daemons' logs, for the `Initiated` times against the journal's story.
        eprintln!("logs kept in {}", dir.dir.keep().display());
        panic!("multipart uploads left open after the final clean stop");
    }
    assert_eq!(
        failures,
        Some(0.0),
        "abort failures counted by the last run"
    );
}

/// SIGTERM during a multipart upload: exits 0 within the grace, leaves the upload
/// recorded, and the next run resumes it with ListParts and completes it.
#[test]
fn sigterm_mid_multipart_resumes_after_restart() {
    let Running {
        dir,
        daemon: mut d,
        bucket,
        client: oc,
        launch,
    } = acme(&Store::rgw_publisher())
        .tag("term")
        .rgw_bucket(false)
        .shutdown_grace("0s")
        .extra("    checksum: md5\n    multipart: { threshold: 5MiB, part_size: 5MiB, concurrency: 1 }\n")
        .start();
    let big = data(60 * 1024 * 1024, 77);
    dir.drop_file("acme", "big.bin", &big);
    // A journal holding a real upload id (the intent is journaled before the create).
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
    std::thread::sleep(Duration::from_millis(300)); // a part or two on the wire
    let t = std::time::Instant::now();
    assert_eq!(d.stop(), Some(0), "log:\n{}", d.log_text());
    assert!(
        t.elapsed() < Duration::from_secs(15),
        "stop took {:?}",
        t.elapsed()
    );
    if d.metric("outpost_files_uploaded_total{server=\"acme\"}")
        .is_none()
        && journal()
    {
        // Interrupted as intended: the upload is still recorded and open.
        assert_eq!(dir.claimed().len(), 1);
        rt().block_on(async { assert_eq!(open_uploads(&oc, &bucket).await, 1) });
    }
    let mut d = launch.start(&dir);
    assert!(
        wait_until(Duration::from_secs(120), || dir.claimed().is_empty()),
        "not delivered after restart; log:\n{}",
        d.log_text()
    );
    assert!(
        d.log_text().contains("resuming multipart upload"),
        "log:\n{}",
        d.log_text()
    );
    assert_eq!(d.stop(), Some(0));
    assert_delivered(&oc, &bucket, "pre/big.bin", &big);
    assert_eq!(rt().block_on(open_uploads(&oc, &bucket)), 0);
}

/// A file rewritten while its multipart upload runs is never completed as is: the
/// upload is aborted and the file sent again, whole, as it now is.
#[test]
fn file_changed_during_multipart_is_not_published_as_is() {
    let Running {
        dir,
        daemon: mut d,
        bucket,
        client,
        ..
    } = acme(&Store::s3s())
        .tag("changed")
        .extra("    multipart: { threshold: 5MiB, part_size: 5MiB, concurrency: 1 }\n")
        .start();
    let original = data(80 * 1024 * 1024, 1);
    dir.drop_file("acme", "grow.bin", &original);
    // Append to the claimed file while its parts are being sent.
    let claimed = || dir.claimed().into_iter().next();
    assert!(wait_until(Duration::from_secs(30), || claimed().is_some()
        && d.metric("outpost_uploads_in_flight{server=\"acme\"}")
            == Some(1.0)));
    std::thread::sleep(Duration::from_millis(200)); // its first parts are on the wire
    let path = claimed().expect("claimed");
    let extra = data(1000, 2);
    {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .expect("open claim");
        f.write_all(&extra).expect("append");
    }
    d.wait_uploaded("acme", 1.0, 120);
    let mut want = original.clone();
    want.extend_from_slice(&extra);
    rt().block_on(async {
        let got = get(&client, &bucket, "pre/grow.bin").await.expect("object");
        assert_eq!(
            got.len(),
            want.len(),
            "published a mix of old and new content"
        );
        assert!(got == want);
    });
    let log = d.log_text();
    assert_eq!(
        d.metric("outpost_upload_errors_total{class=\"transient\",server=\"acme\"}"),
        Some(1.0),
        "the change was not detected:\n{log}"
    );
    assert!(
        log.contains("changed during its upload"),
        "change not logged:\n{log}"
    );
    assert_eq!(d.stop(), Some(0));
}

/// A plain HTTP proxy in front of a store that holds some requests before forwarding
/// them: every CreateMultipartUpload for `create_delay`, every UploadPart for
/// `part_delay`. A held request is forwarded even when its client has gone (`kill -9`),
/// so the store begins the upload *after* the daemon died, as a loaded store does.
pub(crate) struct SlowProxy {
    /// `http://127.0.0.1:PORT`.
    pub endpoint: String,
    /// CreateMultipartUpload requests received so far.
    pub creates: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Drop for SlowProxy {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

impl SlowProxy {
    pub(crate) fn start(upstream: &str, create_delay: Duration, part_delay: Duration) -> SlowProxy {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let endpoint = format!("http://{}", listener.local_addr().expect("addr"));
        let upstream = upstream.trim_start_matches("http://").to_owned();
        let creates = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (c, s) = (creates.clone(), stop.clone());
        std::thread::spawn(move || {
            while !s.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((client, _)) => {
                        let (upstream, c) = (upstream.clone(), c.clone());
                        std::thread::spawn(move || {
                            let _ = slow_forward(client, &upstream, &c, create_delay, part_delay);
                        });
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(2)),
                }
            }
        });
        SlowProxy {
            endpoint,
            creates,
            stop,
        }
    }
}

/// Forwards one request (the upstream answers with `Connection: close`).
fn slow_forward(
    client: std::net::TcpStream,
    upstream: &str,
    creates: &std::sync::atomic::AtomicUsize,
    create_delay: Duration,
    part_delay: Duration,
) -> std::io::Result<()> {
    use std::io::{BufRead, Read, Write};
    client.set_nonblocking(false)?;
    let mut reader = std::io::BufReader::new(client.try_clone()?);
    let mut client = client;
    let mut head = Vec::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        if line == "\r\n" {
            break;
        }
        head.push(line);
    }
    let first = head.first().cloned().unwrap_or_default();
    let mut words = first.split_whitespace();
    let (method, target) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
    let query = target.split_once('?').map_or("", |x| x.1);
    let has = |k: &str| {
        query
            .split('&')
            .any(|p| p == k || p.starts_with(&format!("{k}=")))
    };
    let header = |name: &str| {
        head.iter().find_map(|h| {
            let (k, v) = h.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_owned())
        })
    };
    let len: usize = header("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    if header("expect").is_some_and(|v| v.eq_ignore_ascii_case("100-continue")) {
        client.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
    }
    let mut body = vec![0u8; len];
    reader.read_exact(&mut body)?;
    if method == "POST" && has("uploads") {
        creates.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        std::thread::sleep(create_delay);
    } else if method == "PUT" && has("partNumber") {
        std::thread::sleep(part_delay);
    }
    let mut up = std::net::TcpStream::connect(upstream)?;
    let mut out = String::new();
    for h in &head {
        let lower = h.to_ascii_lowercase();
        if !lower.starts_with("connection:") && !lower.starts_with("expect:") {
            out.push_str(h);
        }
    }
    out.push_str("Connection: close\r\n\r\n");
    up.write_all(out.as_bytes())?;
    up.write_all(&body)?;
    let mut resp = Vec::new();
    up.read_to_end(&mut resp)?;
    client.write_all(&resp)?;
    let _ = client.shutdown(std::net::Shutdown::Both);
    Ok(())
}

/// Multipart uploads open in `bucket`, printed (key, id, initiated) when there are any.
pub(crate) fn uploads_left(oc: &aws_sdk_s3::Client, bucket: &str) -> usize {
    rt().block_on(async {
        let out = oc
            .list_multipart_uploads()
            .bucket(bucket)
            .send()
            .await
            .unwrap_or_else(|e| panic!("list uploads: {e:?}"));
        for u in out.uploads() {
            eprintln!(
                "left open: {} {} initiated {:?}",
                u.key().unwrap_or(""),
                u.upload_id().unwrap_or(""),
                u.initiated()
            );
        }
        out.uploads().len()
    })
}

/// Issue 11.5: a daemon killed while its CreateMultipartUpload is still on its way to
/// the store. The restarted daemon lists the key's uploads at once — before the store
/// has begun the upload — so one listing cannot prove that nothing is left: the intent
/// must stay recorded until a listing made after the store must have answered.
#[test]
fn kill9_while_a_create_is_in_flight_leaves_no_upload_open() {
    let publisher = Store::rgw_publisher();
    let proxy = SlowProxy::start(
        &publisher.endpoint,
        Duration::from_millis(1500),
        Duration::ZERO,
    );
    let Running {
        dir,
        daemon: mut d,
        bucket,
        client: oc,
        launch,
    } = acme(&publisher)
        .tag("slowcreate")
        .rgw_bucket(true)
        .via(&proxy.endpoint)
        .extra("    checksum: md5\n    multipart: { threshold: 8MiB, part_size: 5MiB, concurrency: 4 }\n    timeouts: { read: 5s }\n")
        .start();
    let failures = "outpost_multipart_abort_failures_total{server=\"acme\"}";
    assert_eq!(d.metric(failures), Some(0.0), "series missing at start-up");
    let big = data(12 << 20, 4242);
    dir.drop_file("acme", "m/big.bin", &big);
    // The create is held by the proxy: kill now, restart at once.
    assert!(wait_until(Duration::from_secs(30), || proxy
        .creates
        .load(std::sync::atomic::Ordering::SeqCst)
        >= 1));
    d.kill9();
    let mut d = launch.start(&dir);
    assert!(
        wait_until(Duration::from_secs(120), || dir.claimed().is_empty()),
        "not delivered; log:\n{}",
        d.log_text()
    );
    let log = d.log_text();
    assert_eq!(d.metric(failures), Some(0.0), "log:\n{log}");
    assert!(
        log.contains("aborted multipart upload"),
        "the late upload was not found and aborted; log:\n{log}"
    );
    assert_eq!(d.stop(), Some(0));
    assert_delivered(&oc, &bucket, "pre/m/big.bin", &big);
    assert_eq!(
        uploads_left(&oc, &bucket),
        0,
        "the upload the killed daemon's create began was left open; log:\n{log}"
    );
}

/// The ledger after a crash loop: every delivered file has a `delivered` row for its
/// key with its size (no delivery without a row), and a file's rows beyond its first
/// are re-uploads marked `already_present`. Returns (delivered rows, re-uploads).
fn ledger_covers(launch: &Launch, files: &[(String, Vec<u8>)]) -> (usize, usize) {
    let (code, out, err) = outpost(
        &[
            "deliveries",
            "-c",
            launch.cfg_str(),
            "--since",
            "all",
            "--json",
        ],
        &[],
    );
    assert_eq!(code, 0, "{err}");
    let mut by_key: std::collections::HashMap<String, Vec<serde_json::Value>> =
        std::collections::HashMap::new();
    for line in out.lines().filter(|l| !l.trim().is_empty()) {
        let row: serde_json::Value = serde_json::from_str(line).expect("a JSON line");
        if row["kind"] == "delivered" {
            let key = row["key"].as_str().expect("key").to_owned();
            by_key.entry(key).or_default().push(row);
        }
    }
    let rows = by_key.values().map(Vec::len).sum();
    let mut again = 0;
    for (rel, bytes) in files {
        let key = format!("pre/{rel}");
        let list = by_key
            .get(&key)
            .unwrap_or_else(|| panic!("{key} was delivered but has no ledger row"));
        assert!(
            list.iter().all(|r| r["size"] == bytes.len() as u64),
            "{key}: {list:?}"
        );
        let written = list.iter().filter(|r| r["outcome"] == "written").count();
        assert_eq!(
            written, 1,
            "{key}: one row written, the others already_present: {list:?}"
        );
        again += list.len() - 1;
    }
    (rows, again)
}
