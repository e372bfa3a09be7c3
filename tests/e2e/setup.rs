//! The set-up builder: `acme(&store).via(..).retry(..).extra(..).start()` writes the
//! spool, a configuration from typed settings (`Server`, `Retry`), the bucket and the
//! daemon; `Launch` starts it again after a stop or a kill.

use std::path::PathBuf;

use crate::*;

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
    // Each test's ledger in its own folder (unless the test names one).
    let state = if top.contains("state_dir:") {
        String::new()
    } else {
        format!("state_dir: {}\n", dir.path().join("state").display())
    };
    // No background verification (its probe object would appear in the tests' buckets
    // at a random time) unless a test asks for it.
    let defaults = if top.contains("defaults:") {
        ""
    } else {
        "defaults:\n  verify_interval: 0\n"
    };
    format!(
        "spool_dir: {}\nlisten: 127.0.0.1:{port}\nshutdown_grace: {grace}\nrescan_interval: 2s\n{state}{top}{defaults}servers:\n{servers}",
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
