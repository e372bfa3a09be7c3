//! A running `outpost run` of a test: started, waited for, its log and metrics read,
//! stopped or killed (and killed when dropped).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::*;

/// A running `outpost run`.
pub struct Daemon {
    /// The process.
    pub child: Child,
    /// Its stderr log.
    pub log: PathBuf,
    /// Its metrics port.
    pub port: u16,
}

impl Daemon {
    /// Starts `outpost run -c config` with `store`'s keys in the environment.
    pub fn start(dir: &TestDir, config: &Path, port: u16, store: &Store) -> Daemon {
        Daemon::spawn(dir, config, port, store, &[], None, &[])
    }

    pub(crate) fn spawn(
        dir: &TestDir,
        config: &Path,
        port: u16,
        store: &Store,
        envs: &[(&str, &str)],
        uid: Option<u32>,
        wrapper: &[&str],
    ) -> Daemon {
        let n = std::fs::read_dir(dir.path())
            .map(|r| r.count())
            .unwrap_or(0);
        let log = dir.path().join(format!("daemon-{n}.log"));
        let f = std::fs::File::create(&log).expect("log");
        let mut bin = outpost_bin();
        if uid.is_some() {
            // Another user may not reach the build folder (a checkout in a 0700 home):
            // run a copy from the test's own folder, which it must be able to reach.
            use std::os::unix::fs::PermissionsExt;
            let copy = dir.path().join("outpost-bin");
            std::fs::copy(&bin, &copy).expect("copy the binary");
            std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o755)).expect("chmod");
            bin = copy;
        }
        let mut cmd = match wrapper.split_first() {
            Some((first, rest)) => {
                let mut c = Command::new(first);
                c.args(rest).arg(&bin);
                c
            }
            None => Command::new(&bin),
        };
        cmd.args(["run", "-c"])
            .arg(config)
            .env("AWS_ACCESS_KEY_ID", &store.key)
            .env("AWS_SECRET_ACCESS_KEY", &store.secret)
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env_remove("AWS_PROFILE")
            .env(
                "RUST_LOG",
                std::env::var("OUTPOST_TEST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(f);
        for (k, v) in envs {
            cmd.env(k, v);
        }
        if let Some(id) = uid {
            use std::os::unix::process::CommandExt;
            cmd.uid(id).gid(id).env("HOME", "/nonexistent");
        }
        let child = cmd.spawn().expect("spawn outpost");
        Daemon { child, log, port }
    }

    /// Waits for `/readyz`.
    pub fn wait_ready(&mut self) {
        let port = self.port;
        let ok = wait_until(Duration::from_secs(60), || {
            http_get(port, "/readyz").is_some_and(|(s, _)| s == 200)
        });
        if !ok {
            panic!("daemon not ready; log:\n{}", self.log_text());
        }
    }

    /// Waits up to `secs` seconds for `outpost_files_uploaded_total` of `server` to be
    /// `n`; panics with the log if it is not.
    pub fn wait_uploaded(&self, server: &str, n: f64, secs: u64) {
        let series = format!("outpost_files_uploaded_total{{server=\"{server}\"}}");
        let ok = wait_until(Duration::from_secs(secs), || {
            self.metric(&series) == Some(n)
        });
        assert!(
            ok,
            "{series} is {:?}, not {n}; log:\n{}",
            self.metric(&series),
            self.log_text()
        );
    }

    /// The log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `kill -9`.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then the exit code.
    pub fn stop(&mut self) -> Option<i32> {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(120) {
            if let Ok(Some(st)) = self.child.try_wait() {
                return st.code();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("daemon did not stop on SIGTERM; log:\n{}", self.log_text());
    }

    /// Current value of a metric series (`name{labels}` as printed), if present.
    pub fn metric(&self, series: &str) -> Option<f64> {
        let (_, body) = http_get(self.port, "/metrics")?;
        body.lines()
            .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
