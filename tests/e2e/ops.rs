//! Operations: systemd's notify protocol, the HTTP endpoint's answers to bad requests,
//! the metric set (checked by promtool), and a real Prometheus scraping the daemon.

use std::io::{Read, Write};
use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

use outpost_e2e::*;

#[test]
fn sd_notify_ready_watchdog_status_reload_stopping() {
    let dir = TestDir::new();
    let sock_path = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).expect("bind notify socket");
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    let sock_s = sock_path.to_str().expect("utf8");
    let Staged { dir, launch, .. } = acme(&Store::s3s())
        .tag("notify")
        .dir(dir)
        .env("NOTIFY_SOCKET", sock_s)
        .env("WATCHDOG_USEC", "1000000")
        .stage();
    let mut d = launch.spawn(&dir);
    let mut msgs: Vec<String> = Vec::new();
    let recv_for = |dur: Duration, msgs: &mut Vec<String>| {
        let start = Instant::now();
        let mut buf = [0u8; 4096];
        while start.elapsed() < dur {
            if let Ok(n) = sock.recv(&mut buf) {
                msgs.push(String::from_utf8_lossy(&buf[..n]).into_owned());
            }
        }
    };
    recv_for(Duration::from_secs(3), &mut msgs);
    assert!(msgs.iter().any(|m| m == "READY=1"), "{msgs:?}");
    dir.drop_file("acme", "s.csv", b"status");
    recv_for(Duration::from_secs(3), &mut msgs);
    let pings = msgs.iter().filter(|m| *m == "WATCHDOG=1").count();
    assert!(
        pings >= 6,
        "watchdog pings every 0.5 s expected, got {pings}: {msgs:?}"
    );
    assert!(
        msgs.iter()
            .any(|m| m.starts_with("STATUS=") && m.contains("pending")),
        "{msgs:?}"
    );
    // Reload: RELOADING=1 then READY=1.
    let n = msgs.len();
    let _ = std::process::Command::new("kill")
        .args(["-HUP", &d.child.id().to_string()])
        .status();
    recv_for(Duration::from_secs(2), &mut msgs);
    let after: Vec<&String> = msgs[n..]
        .iter()
        .filter(|m| !m.starts_with("WATCHDOG") && !m.starts_with("STATUS"))
        .collect();
    assert_eq!(after, vec!["RELOADING=1", "READY=1"], "{msgs:?}");
    // Stop: STOPPING=1.
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &d.child.id().to_string()])
        .status();
    recv_for(Duration::from_secs(2), &mut msgs);
    assert!(msgs.iter().any(|m| m == "STOPPING=1"), "{msgs:?}");
    assert_eq!(d.stop(), Some(0));
    eprintln!("notify messages seen: {:?}", {
        let mut kinds: Vec<String> = msgs
            .iter()
            .map(|m| m.split('=').next().unwrap_or("").to_owned())
            .collect();
        kinds.dedup();
        kinds
    });
}

fn raw_http(port: u16, request: &str) -> String {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    s.write_all(request.as_bytes()).expect("write");
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

#[test]
fn http_endpoint_answers_bad_requests_and_survives_slow_clients() {
    let Running {
        dir: _dir,
        daemon: mut d,
        ..
    } = acme(&Store::s3s()).bucket("unused").start();
    let port = d.port;
    assert!(raw_http(port, "GET /nope HTTP/1.1\r\nHost: x\r\n\r\n").starts_with("HTTP/1.1 404"));
    let r = raw_http(
        port,
        "POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
    );
    assert!(
        r.starts_with("HTTP/1.1 405") && r.to_ascii_lowercase().contains("allow: get, head"),
        "{r}"
    );
    assert!(raw_http(port, "GET /healthz HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 200"));
    assert!(raw_http(port, "GET /readyz HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 200"));
    // Slow-loris clients that never finish their request do not block /metrics.
    let _slow: Vec<std::net::TcpStream> = (0..50)
        .map(|_| {
            let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
            s.write_all(b"GET /metrics HTTP/1.1\r\nHost: slow")
                .expect("write");
            s
        })
        .collect();
    let t = Instant::now();
    let (code, body) = http_get(port, "/metrics").expect("metrics");
    assert_eq!(code, 200);
    assert!(body.contains("outpost_build_info"));
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "metrics took {:?}",
        t.elapsed()
    );
    // Four times the connection cap held idle: the daemon's descriptors stay bounded
    // (the rest wait in the kernel's backlog), and /metrics still answers once the idle
    // ones run out of time to send their request.
    let fds = |pid: u32| std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |r| r.count());
    let pid = d.child.id();
    let base = fds(pid);
    let _idle: Vec<std::net::TcpStream> = (0..256)
        .map(|_| std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect"))
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    let held = fds(pid);
    assert!(
        held <= base + 64 + 8,
        "{held} descriptors with 256 idle clients (base {base}): the cap of 64 does not hold"
    );
    let t = Instant::now();
    let ok = wait_until(Duration::from_secs(60), || {
        http_get(port, "/metrics").is_some_and(|(c, _)| c == 200)
    });
    assert!(ok, "/metrics did not answer behind 256 idle connections");
    eprintln!(
        "descriptors: {base} before, {held} with 256 idle clients; /metrics answered after {:?}",
        t.elapsed()
    );
    assert_eq!(d.stop(), Some(0));
}

/// Every series of SPEC §5, as it must exist from start-up for a configured server.
const SPEC_SERIES: [&str; 14] = [
    "outpost_orphan_uploads_aborted_total{server=\"acme\"}",
    "outpost_files_uploaded_total{server=\"acme\"}",
    "outpost_bytes_uploaded_total{server=\"acme\"}",
    "outpost_upload_errors_total{class=\"transient\",server=\"acme\"}",
    "outpost_files_failed_total{reason=\"retries_exhausted\",server=\"acme\"}",
    "outpost_files_rejected_total{reason=\"symlink\",server=\"acme\"}",
    "outpost_queue_files{server=\"acme\"}",
    "outpost_queue_bytes{server=\"acme\"}",
    "outpost_uploads_in_flight{server=\"acme\"}",
    "outpost_oldest_pending_age_seconds{server=\"acme\"}",
    "outpost_server_blocked{server=\"acme\"}",
    "outpost_last_success_timestamp_seconds{server=\"acme\"}",
    "outpost_upload_duration_seconds_count{server=\"acme\"}",
    "outpost_build_info{version=",
];

#[test]
fn every_spec_series_exists_at_zero_and_promtool_accepts_the_exposition() {
    let Running {
        dir: _dir,
        daemon: mut d,
        ..
    } = acme(&Store::s3s()).bucket("unused").start();
    let port = d.port;
    let (_, body) = http_get(port, "/metrics").expect("metrics");
    for s in SPEC_SERIES {
        let line = body
            .lines()
            .find(|l| l.starts_with(s))
            .unwrap_or_else(|| panic!("{s} missing:\n{body}"));
        if !s.starts_with("outpost_build_info") {
            assert!(line.ends_with(" 0"), "{line} not at 0 before any event");
        }
    }
    for p in [
        "process_resident_memory_bytes",
        "process_cpu_seconds_total",
        "process_open_fds",
    ] {
        assert!(body.lines().any(|l| l.starts_with(p)), "{p} missing");
    }
    // Label values come only from closed sets: never a file name or key.
    assert!(!body.contains(".csv"));
    let mut child = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool (Debian package prometheus)");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(body.as_bytes())
        .expect("write");
    let out = child.wait_with_output().expect("promtool");
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(d.stop(), Some(0));
}

#[test]
fn a_real_prometheus_scrapes_the_counters() {
    let Running {
        dir, daemon: mut d, ..
    } = acme(&Store::s3s()).tag("prom").start();
    let port = d.port;
    let prom_port = free_port();
    let prom_cfg = dir.path().join("prometheus.yml");
    std::fs::write(
        &prom_cfg,
        format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: outpost\n    static_configs:\n      - targets: ['127.0.0.1:{port}']\n"
        ),
    )
    .expect("write prometheus config");
    let mut prom = std::process::Command::new("prometheus")
        .arg(format!("--config.file={}", prom_cfg.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.path().join("tsdb").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{prom_port}"))
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(dir.path().join("prometheus.log")).expect("log"))
        .spawn()
        .expect("prometheus (Debian package prometheus)");
    for i in 0..3 {
        dir.drop_file("acme", &format!("p{i}.csv"), b"scraped");
    }
    let query = |q: &str| -> Option<f64> {
        let (_, body) = http_get(prom_port, &format!("/api/v1/query?query={q}"))?;
        let v: serde_json::Value = serde_json::from_str(body.split("\r\n").last()?)
            .ok()
            .or_else(|| {
                // chunked or plain body: find the JSON object
                let start = body.find('{')?;
                serde_json::from_str(&body[start..body.rfind('}')? + 1]).ok()
            })?;
        v["data"]["result"][0]["value"][1].as_str()?.parse().ok()
    };
    let ok = wait_until(Duration::from_secs(120), || {
        query("outpost_files_uploaded_total%7Bserver%3D%22acme%22%7D") == Some(3.0)
    });
    let _ = prom.kill();
    let _ = prom.wait();
    assert!(
        ok,
        "Prometheus never saw 3 uploads; its log:\n{}",
        std::fs::read_to_string(dir.path().join("prometheus.log")).unwrap_or_default()
    );
    assert_eq!(d.stop(), Some(0));
}

fn repo(path: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(path)
}

fn run(cmd: &str, args: &[&str]) -> (bool, String) {
    let out = std::process::Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{cmd}: {e}"));
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn alert_rules_pass_promtool_check_and_their_unit_tests() {
    let rules = repo("deploy/prometheus/outpost.rules.yml");
    let (ok, out) = run(
        "promtool",
        &["check", "rules", rules.to_str().expect("utf8")],
    );
    assert!(ok, "{out}");
    assert!(out.contains("8 rules found"), "{out}");
    let tests = repo("deploy/prometheus/outpost.rules.test.yml");
    let (ok, out) = run(
        "promtool",
        &["test", "rules", tests.to_str().expect("utf8")],
    );
    assert!(ok && out.contains("SUCCESS"), "{out}");
    // Every alert links to its runbook section, and the section exists.
    let text = std::fs::read_to_string(&rules).expect("rules");
    let ops = std::fs::read_to_string(repo("docs/operations.md")).expect("operations.md");
    for line in text
        .lines()
        .filter(|l| l.trim_start().starts_with("- alert:"))
    {
        let name = line.split(':').nth(1).expect("name").trim();
        let anchor = format!("docs/operations.md#{}", name.to_lowercase());
        assert!(text.contains(&anchor), "{name} lacks runbook {anchor}");
        assert!(
            ops.contains(&format!("## {name}")),
            "docs/operations.md lacks a section for {name}"
        );
    }
}

#[test]
fn grafana_dashboard_is_valid_json_over_known_metrics() {
    let text = std::fs::read_to_string(repo("deploy/grafana/outpost.json")).expect("dashboard");
    let v: serde_json::Value = serde_json::from_str(&text).expect("valid JSON");
    let panels = v["panels"].as_array().expect("panels");
    assert!(panels.len() >= 5);
    let known = [
        "outpost_bytes_uploaded_total",
        "outpost_files_uploaded_total",
        "outpost_queue_files",
        "outpost_queue_bytes",
        "outpost_uploads_in_flight",
        "outpost_oldest_pending_age_seconds",
        "outpost_upload_errors_total",
        "outpost_files_failed_total",
        "outpost_files_rejected_total",
        "outpost_server_blocked",
        "outpost_upload_duration_seconds_bucket",
        "process_resident_memory_bytes",
        "process_cpu_seconds_total",
    ];
    let mut seen = std::collections::BTreeSet::new();
    for p in panels {
        for t in p["targets"].as_array().expect("targets") {
            let expr = t["expr"].as_str().expect("expr");
            let names: Vec<&str> = expr
                .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .filter(|w| w.starts_with("outpost_") || w.starts_with("process_"))
                .collect();
            assert!(!names.is_empty(), "{expr}");
            for n in names {
                assert!(known.contains(&n), "unknown metric {n} in {expr}");
                seen.insert(n);
            }
        }
    }
    for want in [
        "outpost_bytes_uploaded_total",
        "outpost_queue_files",
        "outpost_oldest_pending_age_seconds",
        "outpost_upload_errors_total",
        "outpost_server_blocked",
    ] {
        assert!(seen.contains(want), "dashboard lacks {want}");
    }
}

#[test]
fn the_example_configuration_shows_every_documented_key() {
    let doc = std::fs::read_to_string(repo("docs/configuration.md")).expect("doc");
    let example = std::fs::read_to_string(repo("deploy/outpost.example.yaml")).expect("example");
    let mut missing = Vec::new();
    for line in doc.lines() {
        // Rows of the key tables: | `key` | default | meaning |
        let Some(key) = line
            .strip_prefix("| `")
            .and_then(|r| r.split_once('`'))
            .map(|(k, _)| k)
        else {
            continue;
        };
        let leaf = key.rsplit('.').next().unwrap_or(key);
        let shown = example.lines().any(|l| {
            let l = l.trim_start().trim_start_matches("# ");
            l.starts_with(&format!("{leaf}:"))
                || l.contains(&format!("{{ {leaf}:"))
                || l.contains(&format!(", {leaf}:"))
        });
        if !shown {
            missing.push(key.to_owned());
        }
    }
    assert!(
        missing.is_empty(),
        "deploy/outpost.example.yaml says it shows every key; missing: {missing:?}"
    );
}

#[test]
fn example_config_passes_check() {
    let cfg = repo("deploy/outpost.example.yaml");
    let (code, out, err) = outpost(&["check", "-c", cfg.to_str().expect("utf8")], &[]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("server acme") && out.contains("server beta"),
        "{out}"
    );
}

/// Builds the package from the test binary into `out`, as `version` when given.
fn build_deb(out: &std::path::Path, version: Option<&str>) -> String {
    let mut cmd = std::process::Command::new(repo("deploy/deb/build.sh"));
    cmd.arg(outpost_bin()).arg(out);
    if let Some(v) = version {
        cmd.env("OUTPOST_DEB_VERSION", v);
    }
    let o = cmd.output().expect("build.sh");
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        o.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    text.lines().last().expect("deb path").trim().to_owned()
}

#[test]
fn deb_package_installs_runs_check_upgrades_and_removes() {
    let dir = TestDir::new();
    let old = build_deb(&dir.path().join("old"), Some("0.0.1"));
    let deb = build_deb(dir.path(), None);
    let (ok, depends) = run("dpkg-deb", &["-f", &deb, "Depends"]);
    assert!(
        ok && depends.contains("libc6 (>= "),
        "Depends must name the C library version the binary needs: {depends}"
    );
    let (ok, listing) = run("dpkg-deb", &["-c", &deb]);
    assert!(ok, "{listing}");
    for f in [
        "./usr/bin/outpost",
        "./lib/systemd/system/outpost.service",
        "./usr/lib/sysusers.d/outpost.conf",
        "./usr/lib/tmpfiles.d/outpost.conf",
        "./etc/outpost/outpost.yaml",
        "./usr/share/doc/outpost/operations.md",
    ] {
        assert!(listing.contains(f), "{f} not in package:\n{listing}");
    }
    let (ok, conffiles) = run("dpkg-deb", &["-I", &deb, "conffiles"]);
    assert!(
        ok && conffiles.contains("/etc/outpost/outpost.yaml"),
        "{conffiles}"
    );
    let (ok, postinst) = run("dpkg-deb", &["-I", &deb, "postinst"]);
    assert!(
        ok && postinst.contains("try-restart outpost.service"),
        "an upgrade restarts a running daemon: {postinst}"
    );
    // The older package first, with an operator's edit of the configuration; then
    // the upgrade, which must keep the edit and replace the binary.
    let (ok, out) = run("dpkg", &["-i", &old]);
    assert!(ok, "dpkg -i (needs root): {out}");
    let conf = std::path::Path::new("/etc/outpost/outpost.yaml");
    let edited = format!(
        "{}# operator's edit\n",
        std::fs::read_to_string(conf).expect("conffile")
    );
    std::fs::write(conf, &edited).expect("edit");
    let (ok, out) = run("dpkg", &["-i", &deb]);
    let result = std::panic::catch_unwind(|| {
        assert!(ok, "upgrade: {out}");
        assert_eq!(
            std::fs::read_to_string(conf).expect("conffile"),
            edited,
            "the upgrade kept the operator's configuration"
        );
        let (ok, out) = run("/usr/bin/outpost", &["--version"]);
        assert!(ok && out.contains(env!("CARGO_PKG_VERSION")), "{out}");
        let (ok, out) = run(
            "/usr/bin/outpost",
            &["check", "-c", "/etc/outpost/outpost.yaml"],
        );
        assert!(ok, "{out}");
        let (ok, out) = run(
            "systemd-analyze",
            &["verify", "/lib/systemd/system/outpost.service"],
        );
        assert!(ok && !out.contains("rror"), "systemd-analyze verify: {out}");
        let (ok, out) = run("getent", &["passwd", "outpost"]);
        assert!(ok, "user outpost not created: {out}");
        let md = std::fs::metadata("/var/spool/outpost").expect("spool created");
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            md.permissions().mode() & 0o7777,
            0o3775,
            "setgid + sticky: exporters cannot rename what they do not own"
        );
    });
    let (ok, out) = run("dpkg", &["--purge", "outpost"]);
    assert!(ok, "{out}");
    assert!(!std::path::Path::new("/usr/bin/outpost").exists());
    if let Err(e) = result {
        std::panic::resume_unwind(e);
    }
}

#[test]
fn systemd_unit_is_hardened_to_exposure_2_or_below() {
    let unit = repo("systemd/outpost.service");
    let (_, out) = run(
        "systemd-analyze",
        &["security", "--offline=yes", unit.to_str().expect("utf8")],
    );
    // A misspelt or invalid directive is only a warning ("..., ignoring") and would
    // silently lower the hardening.
    assert!(!out.contains("ignoring"), "unit has invalid lines:\n{out}");
    let exposure: f64 = out
        .lines()
        .find_map(|l| {
            let rest = l
                .split("Overall exposure level for outpost.service:")
                .nth(1)?;
            rest.split_whitespace().next()?.parse().ok()
        })
        .unwrap_or_else(|| panic!("no overall exposure level in:\n{out}"));
    assert!(
        exposure <= 2.0,
        "exposure {exposure} > 2.0; see the ✗ lines:\n{out}"
    );
}
