//! Helpers for the end-to-end tests: each test gets its own spool, config and bucket,
//! runs the real `outpost` binary, and checks what a user would see on real S3
//! servers on 127.0.0.1 (started by `make test`, see tests/servers/). This file holds
//! the small shared helpers; `setup.rs` the builder (`acme(..)…start()`), `store.rs`
//! the S3 side (stores, buckets, `assert_delivered`), `testdir.rs` a test's folder,
//! `daemon.rs` a running daemon, `proxy.rs` the fault-injecting proxy.

#[path = "daemon.rs"]
mod daemon;
#[path = "proxy.rs"]
pub mod proxy;
#[path = "setup.rs"]
mod setup;
#[path = "store.rs"]
mod store;
#[path = "testdir.rs"]
mod testdir;

pub use daemon::Daemon;
pub use setup::*;
pub use store::*;
pub use testdir::*;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// An environment variable `make test` sets; a clear failure when run without it.
pub fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: run the end-to-end tests through `make test`, which starts the S3 servers")
    })
}

/// A unique bucket name.
pub fn bucket_name(tag: &str) -> String {
    format!("t-{tag}-{}-{}", std::process::id(), fastrand::u32(..)).to_lowercase()
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// The `outpost` binary next to the test binary's target folder.
pub fn outpost_bin() -> PathBuf {
    if let Ok(p) = std::env::var("OUTPOST_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("current exe");
    let dir = exe.parent().and_then(Path::parent).expect("target dir");
    let bin = dir.join("outpost");
    assert!(
        bin.exists(),
        "{} missing: build it first (`cargo build -p outpost`)",
        bin.display()
    );
    bin
}

/// Polls `f` until true or `timeout`.
pub fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    f()
}

/// A plain HTTP GET on 127.0.0.1: status and body.
pub fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).ok()?;
    let status = buf.split_whitespace().nth(1)?.parse().ok()?;
    let body = buf
        .split_once("\r\n\r\n")
        .map(|x| x.1.to_owned())
        .unwrap_or_default();
    Some((status, body))
}

/// Runs `outpost` with arguments; returns (exit code, stdout, stderr).
pub fn outpost(args: &[&str], envs: &[(&str, &str)]) -> (i32, String, String) {
    let mut cmd = Command::new(outpost_bin());
    cmd.args(args).env("AWS_EC2_METADATA_DISABLED", "true");
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run outpost");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Deterministic pseudo-random bytes.
pub fn data(len: usize, seed: u64) -> Vec<u8> {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut v = vec![0u8; len];
    rng.fill(&mut v);
    v
}

/// A tokio runtime for the SDK calls of a test.
pub fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}
