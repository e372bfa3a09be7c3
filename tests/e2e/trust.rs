//! Trust: the daemon's own promises under trouble — quiet while it waits, a refusal
//! that blocks only what it must, nothing failed for the daemon's own trouble.

use std::net::TcpListener;
use std::time::Duration;

use outpost_e2e::*;

/// CPU seconds (user + system) the process has used so far, from `/proc/PID/stat`.
pub fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let rest = &stat[stat.rfind(')').expect("comm") + 2..];
    let f: Vec<&str> = rest.split(' ').collect();
    // utime and stime are fields 14 and 15 of the whole line: 12 and 13 here.
    let ticks: f64 = f[11].parse::<f64>().expect("utime") + f[12].parse::<f64>().expect("stime");
    let hz = std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse::<f64>().ok())
        .unwrap_or(100.0);
    ticks / hz
}

/// A listener that accepts connections and never answers.
fn black_hole() -> (u16, std::thread::JoinHandle<()>) {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = l.local_addr().expect("addr").port();
    let h = std::thread::spawn(move || {
        let mut held = Vec::new();
        for c in l.incoming().take(64) {
            held.push(c);
        }
        std::thread::sleep(Duration::from_secs(3600));
    });
    (port, h)
}

/// Issue 10.1: the only global slot is held by an upload to an endpoint that never
/// answers while another server's file is in retry backoff (connection refused): the
/// dispatcher sleeps instead of spinning on a due retry it cannot start.
#[test]
fn the_daemon_is_quiet_while_nothing_can_start() {
    let (hole, _h) = black_hole();
    let refused = free_port(); // nothing listens there
    let dir = TestDir::new();
    let port = free_port();
    let store = Store::s3s();
    let stuck = Store {
        endpoint: format!("http://127.0.0.1:{hole}"),
        ..store.clone()
    };
    let down = Store {
        endpoint: format!("http://127.0.0.1:{refused}"),
        ..store.clone()
    };
    let servers = format!(
        "{}{}",
        server_yaml(
            "down",
            &down,
            "b1",
            "    timeouts: { connect: 1s, read: 600s }\n"
        ),
        server_yaml(
            "stuck",
            &stuck,
            "b2",
            "    timeouts: { connect: 1s, read: 600s }\n"
        ),
    );
    let yaml = config_yaml(&dir, port, &servers).replace(
        "rescan_interval: 2s\n",
        "rescan_interval: 2s\nmax_concurrent_uploads: 1\n",
    );
    let cfg = dir.config(&yaml);
    let mut d = Daemon::start(&dir, &cfg, port, &store);
    d.wait_ready();
    dir.drop_file("down", "a.csv", b"retry me");
    assert!(
        wait_until(Duration::from_secs(30), || {
            d.metric("outpost_upload_errors_total{class=\"transient\",server=\"down\"}")
                .is_some_and(|v| v >= 1.0)
        }),
        "log:\n{}",
        d.log_text()
    );
    dir.drop_file("stuck", "b.csv", b"never answered");
    assert!(
        wait_until(Duration::from_secs(30), || {
            d.metric("outpost_uploads_in_flight{server=\"stuck\"}") == Some(1.0)
        }),
        "log:\n{}",
        d.log_text()
    );
    // Let the retry of down/a.csv fall due behind the held slot.
    std::thread::sleep(Duration::from_secs(3));
    let pid = d.child.id();
    let (c0, t0) = (cpu_seconds(pid), std::time::Instant::now());
    std::thread::sleep(Duration::from_secs(5));
    let share = (cpu_seconds(pid) - c0) / t0.elapsed().as_secs_f64();
    eprintln!(
        "daemon CPU while nothing can start: {:.1} % of a core",
        share * 100.0
    );
    assert!(
        share < 0.20,
        "the daemon used {:.0} % of a core while waiting",
        share * 100.0
    );
    assert!(dir.failed().is_empty());
    assert_eq!(d.stop(), Some(0));
}
