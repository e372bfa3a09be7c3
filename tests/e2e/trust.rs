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
    let store = Store::s3s();
    let stuck = Store {
        endpoint: format!("http://127.0.0.1:{hole}"),
        ..store.clone()
    };
    let down = Store {
        endpoint: format!("http://127.0.0.1:{refused}"),
        ..store.clone()
    };
    let timeouts = "    timeouts: { connect: 1s, read: 600s }\n";
    let Running {
        dir, daemon: mut d, ..
    } = acme(&down)
        .name("down")
        .bucket("bk1")
        .extra(timeouts)
        .server(Server::new("stuck", &stuck.endpoint, "bk2").extra(timeouts))
        .top("max_concurrent_uploads: 1\n")
        .start();
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

/// Issue 10.5, a regression guard: with systemd's default soft limit of 1,024
/// descriptors and 1,500 idle connections held to the HTTP endpoint, 30 dropped files
/// are all delivered and none is sent to `.failed/` for the daemon's own lack of
/// descriptors.
#[test]
fn idle_connections_cannot_starve_uploads_of_descriptors() {
    let Running {
        dir,
        daemon: mut d,
        bucket,
        client,
        ..
    } = acme(&Store::s3s())
        .tag("nofile")
        .wrapped(&["prlimit", "--nofile=1024:4096", "--"])
        .start();
    let port = d.port;
    // Connected from a thread: past the kernel's backlog a connect waits for the
    // daemon to free a slot. Files are dropped once 1,000 are held.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let count = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let idle = {
        let (stop, count) = (stop.clone(), count.clone());
        std::thread::spawn(move || {
            let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
            let mut held = Vec::new();
            for _ in 0..1500 {
                if stop.load(std::sync::atomic::Ordering::SeqCst) {
                    break;
                }
                if let Ok(s) = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1)) {
                    held.push(s);
                    count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                }
            }
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(50));
            }
            held.len()
        })
    };
    assert!(wait_until(Duration::from_secs(60), || count
        .load(std::sync::atomic::Ordering::SeqCst)
        >= 1000));
    for i in 0..30 {
        dir.drop_file("acme", &format!("f{i}.csv"), &data(10_000 + i, i as u64));
    }
    // Counted in the bucket (the endpoint itself is busy with the idle clients).
    let t0 = std::time::Instant::now();
    let ok = wait_until(Duration::from_secs(120), || {
        rt().block_on(async {
            client
                .list_objects_v2()
                .bucket(&bucket)
                .send()
                .await
                .map_or(0, |o| o.contents().len())
        }) == 30
    });
    assert!(ok, "log:\n{}", d.log_text());
    eprintln!(
        "30 files delivered in {:?} beside 1,500 idle connections",
        t0.elapsed()
    );
    assert!(dir.failed().is_empty(), "{:?}", dir.failed());
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let held = idle.join().expect("idle clients");
    assert!(held >= 1000, "only {held} idle connections were made");
    assert_eq!(d.stop(), Some(0));
}

/// Issue 10.3: STS refuses AssumeRole (here: the publisher's identity policy lacks
/// `sts:AssumeRole`; moto with IAM enforced): the server is blocked with a cause and fix
/// naming the role, files stay pending and none goes to `.failed/` although
/// `max_attempts` is 3; once the permission is granted, delivery resumes by itself (the
/// credentials are asked for again, not cached in failure). `outpost verify` says the
/// same.
#[test]
fn a_refused_assume_role_blocks_the_server_and_heals_without_restart() {
    let iam = crate::cross_account_iam();
    let tag = fastrand::u32(..);
    let bucket = bucket_name("stsdeny");
    let role = format!("writer{tag}");
    let user = format!("pub{tag}");
    let publisher = iam.user(&user, &[]);
    let arn = iam.writer_role(&bucket, &user, &role, tag);
    let Running {
        dir,
        daemon: mut d,
        launch,
        ..
    } = acme(&publisher)
        .bucket(&bucket)
        .retry("100ms", "1s", 3)
        .extra(&format!(
            "    credentials: {{ mode: assume_role, role_arn: \"{arn}\", external_id: \"ext-{tag}\" }}\n"
        ))
        .env("AWS_ENDPOINT_URL_STS", &iam.endpoint)
        .start();
    for i in 0..3 {
        dir.drop_file("acme", &format!("f{i}.csv"), b"waits for the trust policy");
    }
    assert!(
        wait_until(Duration::from_secs(60), || d
            .metric("outpost_server_blocked{server=\"acme\"}")
            == Some(1.0)),
        "log:\n{}",
        d.log_text()
    );
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        dir.failed().is_empty(),
        "{:?}\nlog:\n{}",
        dir.failed(),
        d.log_text()
    );
    let log = d.log_text();
    assert!(
        log.contains(&arn) && log.contains("external_id") && log.contains("outpost policy acme"),
        "the ERROR line does not name the role, the setting and the fix:\n{log}"
    );
    assert!(
        !log.contains(&format!("ext-{tag}")),
        "the external id's value is logged"
    );
    // verify says the same.
    let (_, out, err) = outpost(
        &["verify", "acme", "-c", launch.cfg_str()],
        &[
            ("AWS_ACCESS_KEY_ID", publisher.key.as_str()),
            ("AWS_SECRET_ACCESS_KEY", publisher.secret.as_str()),
            ("AWS_ENDPOINT_URL_STS", iam.endpoint.as_str()),
        ],
    );
    assert!(
        format!("{out}{err}").contains(&arn),
        "verify does not name the role:\n{out}{err}"
    );
    // The customer's side is fixed: the publisher may assume roles.
    let fixed = std::time::Instant::now();
    iam.py(&format!(
        "iam.put_user_policy(UserName='{user}', PolicyName='p', PolicyDocument=json.dumps({{'Version':'2012-10-17','Statement':[{{'Effect':'Allow','Action':['sts:AssumeRole'],'Resource':'*'}}]}}))"
    ));
    d.wait_uploaded("acme", 3.0, 400);
    eprintln!("trust fixed -> all delivered in {:?}", fixed.elapsed());
    assert_eq!(
        d.metric("outpost_server_blocked{server=\"acme\"}"),
        Some(0.0)
    );
    assert!(dir.failed().is_empty());
    assert_eq!(d.stop(), Some(0));
}

/// Issue 10.6: `timeouts.read` is time without progress, not a total. Through a proxy
/// that reads request bodies at 2 MB/s, with `read: 5s`, a 40 MiB single PUT (20 s on
/// the wire) and a multipart file of 16 MiB parts (8 s each) arrive whole; a proxy that
/// stops reading half-way through a body is detected within about `read` and the file
/// is sent again.
#[test]
fn a_slow_upload_is_never_cut_and_a_stalled_one_is_detected() {
    use outpost_e2e::proxy::FaultProxy;
    let store = Store::s3s();
    let proxy = FaultProxy::start(&store.endpoint, 0.0, Duration::from_secs(60), 3);
    proxy
        .throttle
        .store(2_000_000, std::sync::atomic::Ordering::SeqCst);
    let Running {
        dir,
        daemon: mut d,
        bucket,
        client: c,
        ..
    } = acme(&store)
        .tag("slowlink")
        .via(&proxy.endpoint)
        .extra("    timeouts: { connect: 2s, read: 5s }\n    multipart: { threshold: 48MiB, part_size: 16MiB, concurrency: 4 }\n")
        .start();
    let single = data(40 << 20, 41);
    let multi = data(48 << 20, 42);
    dir.drop_file("acme", "single.bin", &single);
    dir.drop_file("acme", "multi.bin", &multi);
    d.wait_uploaded("acme", 2.0, 240);
    assert_eq!(
        d.metric("outpost_upload_errors_total{class=\"transient\",server=\"acme\"}"),
        Some(0.0),
        "a slow but moving upload was cut; log:\n{}",
        d.log_text()
    );
    assert_delivered(&c, &bucket, "pre/single.bin", &single);
    assert_delivered(&c, &bucket, "pre/multi.bin", &multi);
    // Now the link stops half-way through the next body (for 60 s).
    proxy.throttle.store(0, std::sync::atomic::Ordering::SeqCst);
    proxy
        .stall_body
        .lock()
        .expect("lock")
        .insert("PutObject".into(), 1);
    let t = std::time::Instant::now();
    let stuck = data(8 << 20, 43);
    dir.drop_file("acme", "stuck.bin", &stuck);
    d.wait_uploaded("acme", 3.0, 60);
    let took = t.elapsed();
    eprintln!("stall mid-body detected and the file sent again in {took:?} (read: 5s)");
    assert!(took < Duration::from_secs(20), "{took:?}");
    assert!(d.log_text().contains("stalled"), "log:\n{}", d.log_text());
    rt().block_on(async {
        assert!(get(&c, &bucket, "pre/stuck.bin").await.as_deref() == Some(&stuck[..]));
    });
    assert!(dir.failed().is_empty());
    assert_eq!(d.stop(), Some(0));
}

/// A shared object that makes every `fsync(2)` through libc take `OUTPOST_TEST_FSYNC_MS`
/// (a slow disk or a stalled NFS server), built with the system's C compiler.
fn slow_fsync_shim(dir: &std::path::Path) -> std::path::PathBuf {
    let src = dir.join("slowfsync.c");
    std::fs::write(
        &src,
        r#"#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdlib.h>
#include <time.h>
static void pause_ms(void) {
    const char *v = getenv("OUTPOST_TEST_FSYNC_MS");
    long ms = v ? atol(v) : 0;
    struct timespec t = { ms / 1000, (ms % 1000) * 1000000L };
    nanosleep(&t, 0);
}
int fsync(int fd) {
    static int (*real)(int);
    if (!real) real = (int (*)(int))dlsym(RTLD_NEXT, "fsync");
    pause_ms();
    return real(fd);
}
int fdatasync(int fd) {
    static int (*real)(int);
    if (!real) real = (int (*)(int))dlsym(RTLD_NEXT, "fdatasync");
    pause_ms();
    return real(fd);
}
"#,
    )
    .expect("write shim");
    let so = dir.join("slowfsync.so");
    let ok = std::process::Command::new("cc")
        .args(["-shared", "-fPIC", "-O1", "-o"])
        .arg(&so)
        .arg(&src)
        .arg("-ldl")
        .status()
        .expect("cc");
    assert!(ok.success(), "cannot build the fsync shim");
    so
}

/// Issue 10.8: file-system calls never run on the runtime's threads. With every fsync
/// taking 2 s (a slow disk), multipart uploads journal their upload ids (fsynced) while
/// `/metrics` keeps answering at once.
#[test]
fn a_slow_disk_does_not_stall_the_http_endpoint() {
    let dir = TestDir::new();
    let so = slow_fsync_shim(dir.path());
    let Running {
        dir, daemon: mut d, ..
    } = acme(&Store::s3s())
        .tag("slowdisk")
        .dir(dir)
        .extra("    max_concurrent_uploads: 8\n    multipart: { threshold: 5MiB, part_size: 5MiB, concurrency: 1 }\n")
        .env("LD_PRELOAD", so.to_str().expect("utf-8"))
        .env("OUTPOST_TEST_FSYNC_MS", "2000")
        .start();
    let port = d.port;
    for i in 0..8 {
        dir.drop_file("acme", &format!("m{i}.bin"), &data(6 << 20, 70 + i));
    }
    // While the uploads journal (each save waits 2 s), scrape every 100 ms.
    let mut worst = Duration::ZERO;
    let t = std::time::Instant::now();
    while t.elapsed() < Duration::from_secs(8) {
        let s = std::time::Instant::now();
        let ok = http_get(port, "/metrics").is_some_and(|(c, _)| c == 200);
        worst = worst.max(s.elapsed());
        assert!(ok, "/metrics failed");
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!("slowest /metrics answer while every fsync took 2 s: {worst:?}");
    assert!(
        worst < Duration::from_millis(1500),
        "/metrics took {worst:?}: a blocking call held the runtime"
    );
    d.wait_uploaded("acme", 8.0, 120);
    assert_eq!(d.stop(), Some(0));
}
