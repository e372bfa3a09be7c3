//! Batch manifests on real servers: a folder renamed in whole is a batch, its manifest
//! goes up after every file of it (order seen at a proxy) and says what arrived (sizes,
//! checksums, ETags; Adobe's `.info` totals and line counts); a failed file holds the
//! manifest until it is requeued and delivered.

use std::collections::BTreeMap;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use md5::Digest;
use outpost_e2e::proxy::FaultProxy;
use outpost_e2e::*;

/// Builds `files` in a folder outside the spool and renames it into `server`'s folder
/// as `batch`: the batch arrives whole.
fn drop_batch(dir: &TestDir, server: &str, batch: &str, files: &[(&str, Vec<u8>)]) {
    let stage = dir.path().join("stage").join(batch);
    for (rel, data) in files {
        let p = stage.join(rel);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(&p, data).expect("write");
    }
    let into = dir.spool().join(server).join(batch);
    std::fs::create_dir_all(into.parent().expect("parent")).expect("server folder");
    std::fs::rename(&stage, &into).expect("rename the batch in");
}

/// `n` lines of text, the i-th file's own.
fn lines(i: usize, n: usize) -> Vec<u8> {
    (0..n)
        .map(|l| format!("{i},{l},segment-{}\n", l * 7 % 13))
        .collect::<String>()
        .into_bytes()
}

#[test]
fn a_batch_manifest_goes_last_and_says_what_arrived() {
    let store = Store::s3s();
    let proxy = FaultProxy::start(&store.endpoint, 0.0, Duration::from_secs(1), 1);
    let Running {
        dir,
        daemon: mut d,
        bucket,
        client,
        ..
    } = acme(&store)
        .tag("manifest")
        .via(&proxy.endpoint)
        .extra("    manifest: json\n    max_concurrent_uploads: 8\n")
        .start();
    let mut files: Vec<(String, Vec<u8>)> = (0..20)
        .map(|i| (format!("part-{i:02}.csv"), data(20_000 + i * 977, i as u64)))
        .collect();
    files.push(("sub/z.csv".into(), data(5, 99)));
    let refs: Vec<(&str, Vec<u8>)> = files.iter().map(|(n, b)| (n.as_str(), b.clone())).collect();
    drop_batch(&dir, "acme", "b1", &refs);
    // 21 files and the manifest.
    d.wait_uploaded("acme", 22.0, 120);
    assert_eq!(d.stop(), Some(0));
    let arrivals = proxy.arrivals.lock().expect("lock").clone();
    let manifest_at = arrivals
        .iter()
        .rposition(|(_, p)| p.ends_with("/pre/b1/_manifest.json"))
        .expect("the manifest arrived");
    for (name, _) in &files {
        let at = arrivals
            .iter()
            .rposition(|(_, p)| p.ends_with(&format!("/pre/b1/{name}")))
            .unwrap_or_else(|| panic!("{name} never arrived"));
        assert!(at < manifest_at, "{name} arrived after the manifest");
    }
    let body = rt()
        .block_on(get(&client, &bucket, "pre/b1/_manifest.json"))
        .expect("manifest object");
    let m: serde_json::Value = serde_json::from_slice(&body).expect("manifest json");
    assert_eq!(m["batch"], "b1");
    assert_eq!(m["totals"]["files"], 21);
    let bytes: usize = files.iter().map(|(_, b)| b.len()).sum();
    assert_eq!(m["totals"]["bytes"], bytes as u64);
    let listed = m["files"].as_array().expect("files");
    assert_eq!(listed.len(), 21);
    let by_key: BTreeMap<&str, &serde_json::Value> = listed
        .iter()
        .map(|f| (f["key"].as_str().expect("key"), f))
        .collect();
    for (name, want) in &files {
        let key = format!("pre/b1/{name}");
        assert_delivered(&client, &bucket, &key, want);
        let f = by_key
            .get(key.as_str())
            .unwrap_or_else(|| panic!("{key} not listed"));
        assert_eq!(f["size"], want.len() as u64, "{key}");
        let crc = crc_fast::checksum(crc_fast::CrcAlgorithm::Crc64Nvme, want);
        let b64 = B64.encode(crc.to_be_bytes());
        assert_eq!(f["crc64nvme"], b64, "{key}: CRC64NVME of the whole file");
        let head = rt()
            .block_on(client.head_object().bucket(&bucket).key(&key).send())
            .expect("head");
        assert_eq!(f["etag"].as_str(), head.e_tag(), "{key}: ETag");
    }
}

#[test]
fn an_aam_info_manifest_counts_lines_and_bytes() {
    let store = Store::s3s();
    let Running {
        dir,
        daemon: mut d,
        bucket,
        client,
        ..
    } = acme(&store)
        .tag("aaminfo")
        .extra("    manifest: aam-info\n    multipart: { threshold: 5MiB, part_size: 5MiB }\n")
        .start();
    let mut files: Vec<(String, Vec<u8>)> = (0..3)
        .map(|i| (format!("seg-{i}.csv"), lines(i, 100 + i * 10)))
        .collect();
    // One file large enough to go by multipart (its MD5 and lines are counted too).
    files.push(("big.csv".into(), lines(9, 200_000)));
    let refs: Vec<(&str, Vec<u8>)> = files.iter().map(|(n, b)| (n.as_str(), b.clone())).collect();
    drop_batch(&dir, "acme", "20261130", &refs);
    d.wait_uploaded("acme", 5.0, 120);
    assert_eq!(d.stop(), Some(0));
    let body = rt()
        .block_on(get(&client, &bucket, "pre/20261130/20261130.info"))
        .expect("the .info object");
    let info: serde_json::Value = serde_json::from_slice(&body).expect(".info json");
    let rows = info["Files"].as_array().expect("Files");
    assert_eq!(rows.len(), 4, "the control file counts only the data files");
    let (mut total_bytes, mut total_lines) = (0u64, 0u64);
    for (name, want) in &files {
        let row = rows
            .iter()
            .find(|r| r["FileName"] == name.as_str())
            .unwrap_or_else(|| panic!("{name} not in the .info"));
        let n_lines = want.iter().filter(|b| **b == b'\n').count() as u64;
        assert_eq!(row["FileByteSize"], want.len() as u64, "{name}");
        assert_eq!(row["FileLineCount"], n_lines, "{name}");
        let md5 = md5::Md5::digest(want);
        let hex: String = md5.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(row["md5"], hex, "{name}");
        total_bytes += want.len() as u64;
        total_lines += n_lines;
    }
    assert_eq!(info["Totals"]["TotalNumberFiles"], 4);
    assert_eq!(info["Totals"]["TotalByteSize"], total_bytes);
    assert_eq!(info["Totals"]["TotalNumberLines"], total_lines);
}

#[test]
fn a_failed_file_holds_the_manifest_until_it_is_requeued() {
    let store = Store::moto();
    let Running {
        dir,
        daemon: mut d,
        bucket,
        client,
        launch,
    } = acme(&store)
        .tag("held")
        .extra("    manifest: json\n    overwrite: never\n")
        .start();
    // Someone else's object already at one key: with overwrite: never that file fails
    // (`exists`), and the batch's manifest waits for it.
    rt().block_on(
        client
            .put_object()
            .bucket(&bucket)
            .key("pre/b3/x.csv")
            .body(b"theirs".to_vec().into())
            .send(),
    )
    .expect("their object");
    drop_batch(
        &dir,
        "acme",
        "b3",
        &[("x.csv", b"ours".to_vec()), ("y.csv", b"why".to_vec())],
    );
    assert!(
        wait_until(Duration::from_secs(60), || !dir.failed().is_empty()),
        "x.csv never failed; log:\n{}",
        d.log_text()
    );
    d.wait_uploaded("acme", 1.0, 60);
    let cfg = launch.cfg_str().to_owned();
    let (code, out, err) = outpost(&["status", "-c", &cfg, "--json"], &[]);
    assert_eq!(code, 0, "{err}");
    let st: serde_json::Value = serde_json::from_str(&out).expect("status json");
    assert_eq!(
        st[0]["batches_waiting"][0]["held_by"], "b3/x.csv",
        "status names the failed file holding the batch: {out}"
    );
    assert!(
        rt().block_on(get(&client, &bucket, "pre/b3/_manifest.json"))
            .is_none()
    );
    // Their object goes; the file is requeued, delivered, and the manifest follows.
    rt().block_on(
        client
            .delete_object()
            .bucket(&bucket)
            .key("pre/b3/x.csv")
            .send(),
    )
    .expect("delete theirs");
    let (code, out, err) = outpost(&["requeue", "-c", &cfg, "acme", "b3/x.csv"], &[]);
    assert_eq!(code, 0, "{out}{err}");
    d.wait_uploaded("acme", 3.0, 60);
    assert_eq!(d.stop(), Some(0));
    assert_delivered(&client, &bucket, "pre/b3/x.csv", b"ours");
    let body = rt()
        .block_on(get(&client, &bucket, "pre/b3/_manifest.json"))
        .expect("manifest after the requeue");
    let m: serde_json::Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(m["totals"]["files"], 2);
}
