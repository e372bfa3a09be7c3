//! Helpers for the end-to-end tests: each test gets its own spool, config and bucket,
//! runs the real `outpost` binary, and checks what a user would see on real S3
//! servers on 127.0.0.1 (started by `make test`, see tests/servers/).

#[path = "proxy.rs"]
pub mod proxy;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use aws_sdk_s3::config::{
    Credentials, Region, RequestChecksumCalculation, ResponseChecksumValidation,
};

/// An environment variable `make test` sets; a clear failure when run without it.
pub fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: run the end-to-end tests through `make test`, which starts the S3 servers")
    })
}

/// One S3 server and an identity on it.
#[derive(Clone, Debug)]
pub struct Store {
    /// Endpoint URL on 127.0.0.1.
    pub endpoint: String,
    /// Access key.
    pub key: String,
    /// Secret key.
    pub secret: String,
}

impl Store {
    /// radosgw as the bucket owner (the customer).
    pub fn rgw_owner() -> Store {
        Store {
            endpoint: env("OUTPOST_TEST_RGW_ENDPOINT"),
            key: env("OUTPOST_TEST_RGW_OWNER_KEY"),
            secret: env("OUTPOST_TEST_RGW_OWNER_SECRET"),
        }
    }
    /// radosgw as the publisher (outpost's identity).
    pub fn rgw_publisher() -> Store {
        Store {
            endpoint: env("OUTPOST_TEST_RGW_ENDPOINT"),
            key: env("OUTPOST_TEST_RGW_PUBLISHER_KEY"),
            secret: env("OUTPOST_TEST_RGW_PUBLISHER_SECRET"),
        }
    }
    /// s3s-fs.
    pub fn s3s() -> Store {
        Store {
            endpoint: env("OUTPOST_TEST_S3S_ENDPOINT"),
            key: env("OUTPOST_TEST_S3S_KEY"),
            secret: env("OUTPOST_TEST_S3S_SECRET"),
        }
    }
    /// moto (auth not enforced: any key works).
    pub fn moto() -> Store {
        Store {
            endpoint: env("OUTPOST_TEST_MOTO_ENDPOINT"),
            key: "AKIAMOTOTEST0000000".into(),
            secret: "motosecret".into(),
        }
    }

    /// An SDK client for checking what arrived.
    pub fn client(&self) -> aws_sdk_s3::Client {
        let conf = aws_sdk_s3::Config::builder()
            .behavior_version_latest()
            .region(Region::new("us-east-1"))
            .endpoint_url(&self.endpoint)
            .force_path_style(true)
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            // Compare bytes ourselves: moto sends a malformed CRC64NVME header.
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired)
            .credentials_provider(Credentials::new(
                &self.key,
                &self.secret,
                None,
                None,
                "test",
            ))
            .build();
        aws_sdk_s3::Client::from_conf(conf)
    }
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

/// A test's own folder: spool, config, logs.
pub struct TestDir {
    /// Keeps the folder alive.
    pub dir: tempfile::TempDir,
}

impl TestDir {
    /// A new folder.
    pub fn new() -> TestDir {
        let base = std::env::var("OUTPOST_TEST_TMP")
            .unwrap_or_else(|_| std::env::temp_dir().display().to_string());
        std::fs::create_dir_all(&base).expect("tmp base");
        TestDir {
            dir: tempfile::Builder::new()
                .prefix("outpost-e2e-")
                .tempdir_in(base)
                .expect("tempdir"),
        }
    }
    /// A new folder that any user can traverse (mode 0755 under the system's temporary
    /// folder), for a daemon started as another user: the checkout and `OUTPOST_TEST_TMP`
    /// may lie inside a 0700 home folder.
    pub fn new_public() -> TestDir {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::Builder::new()
            .prefix("outpost-e2e-pub-")
            .tempdir_in(std::env::temp_dir())
            .expect("tempdir");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
            .expect("chmod");
        TestDir { dir }
    }
    /// Its path.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }
    /// The spool.
    pub fn spool(&self) -> PathBuf {
        self.path().join("spool")
    }
    /// Writes the config file.
    pub fn config(&self, yaml: &str) -> PathBuf {
        let p = self.path().join("outpost.yaml");
        std::fs::write(&p, yaml).expect("write config");
        p
    }
    /// Drops a file the way exporters must: write under a temporary name, rename.
    pub fn drop_file(&self, server: &str, rel: &str, data: &[u8]) {
        let p = self.spool().join(server).join(rel);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        let tmp = p.with_file_name(format!(".drop-{}.tmp", fastrand::u64(..)));
        std::fs::write(&tmp, data).expect("write");
        std::fs::rename(&tmp, &p).expect("rename");
    }
    /// Regular files left under `<spool>/<server>`.
    pub fn left_in_spool(&self, server: &str) -> Vec<PathBuf> {
        files_below(&self.spool().join(server))
    }
    /// Files under `.failed/`.
    pub fn failed(&self) -> Vec<PathBuf> {
        files_below(&self.spool().join(".failed"))
    }
    /// Claimed files not yet finished.
    pub fn claimed(&self) -> Vec<PathBuf> {
        files_below(&self.spool().join(".outpost"))
            .into_iter()
            .filter(|p| p.extension().is_some_and(|e| e == "data"))
            .collect()
    }
}

impl Default for TestDir {
    fn default() -> Self {
        Self::new()
    }
}

/// Every regular file below `dir`.
pub fn files_below(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in rd.flatten() {
        let p = e.path();
        match std::fs::symlink_metadata(&p) {
            Ok(md) if md.is_dir() => out.extend(files_below(&p)),
            Ok(_) => out.push(p),
            Err(_) => {}
        }
    }
    out.sort();
    out
}

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

    fn spawn(
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

/// Retry timing of one server.
#[derive(Clone, Copy, Debug)]
pub struct Retry {
    /// `initial_backoff`.
    pub initial: &'static str,
    /// `max_backoff`.
    pub max: &'static str,
    /// `max_attempts`.
    pub attempts: u32,
}

impl Default for Retry {
    /// Test-friendly timing: quick retries, many of them.
    fn default() -> Retry {
        Retry {
            initial: "100ms",
            max: "2s",
            attempts: 50,
        }
    }
}

/// One server of a config, from typed settings.
#[derive(Clone, Debug)]
pub struct Server {
    /// Its name (its folder in the spool).
    pub name: String,
    /// Bucket.
    pub bucket: String,
    /// Endpoint URL.
    pub endpoint: String,
    /// Key prefix.
    pub prefix: String,
    /// Retry timing.
    pub retry: Retry,
    /// Other keys, as YAML lines indented by four spaces.
    pub extra: String,
}

impl Server {
    /// Server `name` writing to `bucket` at `endpoint`, prefix `pre/`, [`Retry::default`].
    pub fn new(name: &str, endpoint: &str, bucket: &str) -> Server {
        Server {
            name: name.to_owned(),
            bucket: bucket.to_owned(),
            endpoint: endpoint.to_owned(),
            prefix: "pre/".into(),
            retry: Retry::default(),
            extra: String::new(),
        }
    }
    /// Another key prefix.
    pub fn prefix(mut self, prefix: &str) -> Server {
        prefix.clone_into(&mut self.prefix);
        self
    }
    /// Other retry timing.
    pub fn retry(mut self, initial: &'static str, max: &'static str, attempts: u32) -> Server {
        self.retry = Retry {
            initial,
            max,
            attempts,
        };
        self
    }
    /// More keys, as YAML lines indented by four spaces.
    pub fn extra(mut self, yaml: &str) -> Server {
        self.extra.push_str(yaml);
        self
    }
    /// Its config text.
    pub fn yaml(&self) -> String {
        let Retry {
            initial,
            max,
            attempts,
        } = self.retry;
        format!(
            "  {}:\n    bucket: {}\n    prefix: \"{}\"\n    endpoint: {}\n    path_style: true\n    retry: {{ initial_backoff: {initial}, max_backoff: {max}, max_attempts: {attempts} }}\n{}",
            self.name, self.bucket, self.prefix, self.endpoint, self.extra
        )
    }
}

/// The config text of one server, with test-friendly retry timing.
pub fn server_yaml(name: &str, store: &Store, bucket: &str, extra: &str) -> String {
    Server::new(name, &store.endpoint, bucket)
        .extra(extra)
        .yaml()
}

/// A whole config: spool, listen port, servers.
pub fn config_yaml(dir: &TestDir, port: u16, servers: &str) -> String {
    config_text(dir, port, "5s", "", servers)
}

/// A whole config with `shutdown_grace` and other top-level keys (`top`, YAML lines).
fn config_text(dir: &TestDir, port: u16, grace: &str, top: &str, servers: &str) -> String {
    format!(
        "spool_dir: {}\nlisten: 127.0.0.1:{port}\nshutdown_grace: {grace}\nrescan_interval: 2s\n{top}servers:\n{servers}",
        dir.spool().display()
    )
}

/// How a test's daemon is started: its config, port, identity and process settings.
/// Starts it again after a stop or a kill.
#[derive(Clone, Debug)]
pub struct Launch {
    /// The config file.
    pub cfg: PathBuf,
    /// The metrics port.
    pub port: u16,
    /// Keys in the environment.
    pub store: Store,
    envs: Vec<(String, String)>,
    wrapper: Vec<String>,
    uid: Option<u32>,
}

impl Launch {
    /// Starts `outpost run`, not waiting for it.
    pub fn spawn(&self, dir: &TestDir) -> Daemon {
        let envs: Vec<(&str, &str)> = self
            .envs
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let wrapper: Vec<&str> = self.wrapper.iter().map(String::as_str).collect();
        Daemon::spawn(
            dir,
            &self.cfg,
            self.port,
            &self.store,
            &envs,
            self.uid,
            &wrapper,
        )
    }
    /// Starts `outpost run` and waits until it is ready.
    pub fn start(&self, dir: &TestDir) -> Daemon {
        let mut d = self.spawn(dir);
        d.wait_ready();
        d
    }
    /// The same with one more environment variable.
    pub fn with_env(&self, key: &str, value: &str) -> Launch {
        let mut l = self.clone();
        l.envs.push((key.to_owned(), value.to_owned()));
        l
    }
    /// The config file's path as text, for `outpost … -c`.
    pub fn cfg_str(&self) -> &str {
        self.cfg.to_str().expect("utf-8 config path")
    }
}

/// A test's set-up, built step by step: server `acme` publishing to a new bucket on a
/// store, then [`Setup::start`] (or [`Setup::stage`] to drop files before the start).
pub struct Setup {
    store: Store,
    via: Option<String>,
    tag: String,
    bucket: Option<String>,
    client: Option<aws_sdk_s3::Client>,
    rgw_listing: Option<bool>,
    server: Server,
    servers: Vec<Server>,
    raw: String,
    grace: String,
    top: String,
    envs: Vec<(String, String)>,
    wrapper: Vec<String>,
    uid: Option<u32>,
    dir: Option<TestDir>,
}

/// Server `acme` on `store` (its endpoint and keys), to a new bucket made with `store`'s
/// keys and checked with them.
pub fn acme(store: &Store) -> Setup {
    Setup {
        store: store.clone(),
        via: None,
        tag: "acme".into(),
        bucket: None,
        client: None,
        rgw_listing: None,
        server: Server::new("acme", &store.endpoint, ""),
        servers: Vec::new(),
        raw: String::new(),
        grace: "5s".into(),
        top: String::new(),
        envs: Vec::new(),
        wrapper: Vec::new(),
        uid: None,
        dir: None,
    }
}

impl Setup {
    /// The tag in the new bucket's name.
    pub fn tag(mut self, tag: &str) -> Setup {
        tag.clone_into(&mut self.tag);
        self
    }
    /// Publishes to this bucket as it is (not made by the set-up; it need not exist).
    pub fn bucket(mut self, bucket: &str) -> Setup {
        self.bucket = Some(bucket.to_owned());
        self
    }
    /// A radosgw bucket owned by the customer, with the publisher allowed in by policy
    /// (see [`rgw_bucket`]); checked with the owner's keys. For [`Store::rgw_publisher`].
    pub fn rgw_bucket(mut self, listing: bool) -> Setup {
        self.rgw_listing = Some(listing);
        self
    }
    /// Objects are checked with this client.
    pub fn checked_by(mut self, client: aws_sdk_s3::Client) -> Setup {
        self.client = Some(client);
        self
    }
    /// Through a proxy: the daemon's endpoint is `endpoint` (e.g. a `FaultProxy`'s).
    pub fn via(mut self, endpoint: &str) -> Setup {
        self.via = Some(endpoint.to_owned());
        self
    }
    /// acme's retry timing (default [`Retry::default`]).
    pub fn retry(mut self, initial: &'static str, max: &'static str, attempts: u32) -> Setup {
        self.server = self.server.retry(initial, max, attempts);
        self
    }
    /// More keys of acme, as YAML lines indented by four spaces.
    pub fn extra(mut self, yaml: &str) -> Setup {
        self.server = self.server.extra(yaml);
        self
    }
    /// Another name for acme.
    pub fn name(mut self, name: &str) -> Setup {
        name.clone_into(&mut self.server.name);
        self
    }
    /// Another server beside acme.
    pub fn server(mut self, server: Server) -> Setup {
        self.servers.push(server);
        self
    }
    /// Another server beside acme, as config text (for keys [`Server`] always writes
    /// and this one must not have).
    pub fn server_text(mut self, yaml: &str) -> Setup {
        self.raw.push_str(yaml);
        self
    }
    /// `shutdown_grace` (default 5s).
    pub fn shutdown_grace(mut self, grace: &str) -> Setup {
        grace.clone_into(&mut self.grace);
        self
    }
    /// Other top-level keys, as YAML lines.
    pub fn top(mut self, yaml: &str) -> Setup {
        self.top.push_str(yaml);
        self
    }
    /// An environment variable of the daemon.
    pub fn env(mut self, key: &str, value: &str) -> Setup {
        self.envs.push((key.to_owned(), value.to_owned()));
        self
    }
    /// The daemon is started through `wrapper` (e.g. `prlimit --nofile=…`).
    pub fn wrapped(mut self, wrapper: &[&str]) -> Setup {
        self.wrapper = wrapper.iter().map(|s| (*s).to_owned()).collect();
        self
    }
    /// The daemon runs as the user and group `uid`.
    pub fn as_user(mut self, uid: u32) -> Setup {
        self.uid = Some(uid);
        self
    }
    /// In this folder instead of a new one.
    pub fn dir(mut self, dir: TestDir) -> Setup {
        self.dir = Some(dir);
        self
    }

    /// Bucket made, folder and config written; no daemon yet.
    pub fn stage(self) -> Staged {
        let Setup {
            store,
            via,
            tag,
            bucket,
            client,
            rgw_listing,
            server,
            servers,
            raw,
            grace,
            top,
            envs,
            wrapper,
            uid,
            dir,
        } = self;
        let (bucket, client) = match (bucket, rgw_listing) {
            (Some(b), _) => (b, client.unwrap_or_else(|| store.client())),
            (None, Some(listing)) => {
                let (b, oc) = rgw_bucket(&tag, listing);
                (b, client.unwrap_or(oc))
            }
            (None, None) => {
                let b = bucket_name(&tag);
                let c = store.client();
                rt().block_on(create_bucket(&c, &b));
                (b, client.unwrap_or(c))
            }
        };
        let target = Store {
            endpoint: via.unwrap_or_else(|| store.endpoint.clone()),
            ..store
        };
        let acme = Server {
            bucket: bucket.clone(),
            endpoint: target.endpoint.clone(),
            ..server
        };
        let all: String = std::iter::once(&acme)
            .chain(&servers)
            .map(Server::yaml)
            .chain(std::iter::once(raw))
            .collect();
        let dir = dir.unwrap_or_default();
        let port = free_port();
        let cfg = dir.config(&config_text(&dir, port, &grace, &top, &all));
        Staged {
            dir,
            bucket,
            client,
            launch: Launch {
                cfg,
                port,
                store: target,
                envs,
                wrapper,
                uid,
            },
        }
    }

    /// [`Setup::stage`], then the daemon started and ready.
    pub fn start(self) -> Running {
        self.stage().start()
    }
}

/// A set-up whose daemon has not started yet.
pub struct Staged {
    /// The test's folder.
    pub dir: TestDir,
    /// acme's bucket.
    pub bucket: String,
    /// A client for checking what arrived.
    pub client: aws_sdk_s3::Client,
    /// How the daemon starts.
    pub launch: Launch,
}

impl Staged {
    /// Starts the daemon and waits until it is ready.
    pub fn start(self) -> Running {
        let daemon = self.launch.start(&self.dir);
        Running {
            dir: self.dir,
            daemon,
            bucket: self.bucket,
            client: self.client,
            launch: self.launch,
        }
    }
}

/// A set-up with its daemon ready. Keep `dir` bound while the daemon runs: dropping it
/// removes the folder (spool and config).
pub struct Running {
    /// The test's folder.
    pub dir: TestDir,
    /// The daemon.
    pub daemon: Daemon,
    /// acme's bucket.
    pub bucket: String,
    /// A client for checking what arrived.
    pub client: aws_sdk_s3::Client,
    /// How the daemon starts (again).
    pub launch: Launch,
}

/// Asserts that `key` in `bucket` holds exactly `want`.
pub fn assert_delivered(client: &aws_sdk_s3::Client, bucket: &str, key: &str, want: &[u8]) {
    match rt().block_on(get(client, bucket, key)) {
        None => panic!("{key} missing in {bucket}"),
        Some(got) if got != want => {
            let at = got.iter().zip(want).take_while(|(a, b)| a == b).count();
            panic!(
                "{key} differs: {} bytes, {} expected, first difference at byte {at}",
                got.len(),
                want.len()
            )
        }
        Some(_) => {}
    }
}

/// [`assert_delivered`] for every `(relative path, bytes)` of `files`, under `pre/`.
pub fn assert_all_delivered(
    client: &aws_sdk_s3::Client,
    bucket: &str,
    files: &[(String, Vec<u8>)],
) {
    for (rel, want) in files {
        assert_delivered(client, bucket, &format!("pre/{rel}"), want);
    }
}

/// Downloads an object.
pub async fn get(client: &aws_sdk_s3::Client, bucket: &str, key: &str) -> Option<Vec<u8>> {
    let out = client
        .get_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .ok()?;
    Some(out.body.collect().await.ok()?.into_bytes().to_vec())
}

/// Creates a bucket.
pub async fn create_bucket(client: &aws_sdk_s3::Client, bucket: &str) {
    client
        .create_bucket()
        .bucket(bucket)
        .send()
        .await
        .unwrap_or_else(|e| panic!("create bucket {bucket}: {e:?}"));
}

/// Sets a bucket policy.
pub async fn put_policy(client: &aws_sdk_s3::Client, bucket: &str, policy: &serde_json::Value) {
    client
        .put_bucket_policy()
        .bucket(bucket)
        .policy(policy.to_string())
        .send()
        .await
        .unwrap_or_else(|e| panic!("put policy on {bucket}: {e:?}"));
}

/// Multipart uploads still open in `bucket`.
pub async fn open_uploads(client: &aws_sdk_s3::Client, bucket: &str) -> usize {
    client
        .list_multipart_uploads()
        .bucket(bucket)
        .send()
        .await
        .map(|o| o.uploads().len())
        .unwrap_or_else(|e| panic!("list uploads: {e:?}"))
}

/// A radosgw bucket owned by the customer ("owner") whose policy lets the publisher
/// upload, multipart included; with `listing`, also the optional
/// s3:ListBucketMultipartUploads that lets outpost abort an upload it could not record.
/// Returns the bucket and the owner's client.
pub fn rgw_bucket(tag: &str, listing: bool) -> (String, aws_sdk_s3::Client) {
    let bucket = bucket_name(tag);
    let oc = Store::rgw_owner().client();
    let mut statements = vec![serde_json::json!({
        "Effect": "Allow",
        "Principal": {"AWS": ["arn:aws:iam:::user/publisher"]},
        "Action": ["s3:PutObject", "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts"],
        "Resource": [format!("arn:aws:s3:::{bucket}/*")]
    })];
    if listing {
        statements.push(serde_json::json!({
            "Effect": "Allow",
            "Principal": {"AWS": ["arn:aws:iam:::user/publisher"]},
            "Action": ["s3:ListBucketMultipartUploads"],
            "Resource": [format!("arn:aws:s3:::{bucket}")]
        }));
    }
    rt().block_on(async {
        create_bucket(&oc, &bucket).await;
        put_policy(
            &oc,
            &bucket,
            &serde_json::json!({"Version": "2012-10-17", "Statement": statements}),
        )
        .await;
    });
    (bucket, oc)
}
