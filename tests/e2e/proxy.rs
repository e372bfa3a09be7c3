//! A fault-injecting HTTP proxy between outpost and a real S3 server on loopback. Per
//! S3 operation it injects, at a given rate: 503 SlowDown, 500 InternalError, a reset
//! before or after the request body (after: the server *did* get the request), a stall
//! longer than the client's timeout, a truncated response, and — on
//! CompleteMultipartUpload — a 200 whose body is an error, as real S3 sends.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The faults.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Fault {
    /// 503 SlowDown.
    SlowDown,
    /// 500 InternalError.
    Internal,
    /// Connection closed after the request head, before its body.
    ResetBeforeBody,
    /// Request forwarded, then the connection closed without an answer.
    ResetAfterBody,
    /// No answer for longer than the client's read timeout.
    Stall,
    /// Half the server's answer, then the connection closed.
    Truncated,
    /// 200 OK with an error document (CompleteMultipartUpload only).
    Ok200Error,
}

/// Header names (lower case) of each request, with its operation.
pub type Heads = Arc<Mutex<Vec<(String, Vec<String>)>>>;

/// Counts by (operation, fault or "ok").
pub type Counts = Arc<Mutex<BTreeMap<(String, String), u64>>>;

/// A running proxy.
pub struct FaultProxy {
    /// Its endpoint (`http://127.0.0.1:PORT`).
    pub endpoint: String,
    /// What it did.
    pub counts: Counts,
    /// Order in which object writes reached the server: (operation, path).
    pub arrivals: Arc<Mutex<Vec<(String, String)>>>,
    /// Per operation, how many of its next requests get one byte of their body flipped
    /// on the way (the store must refuse them).
    pub flip: Arc<Mutex<BTreeMap<String, u32>>>,
    /// The header names (lower case) of every request, with its operation.
    pub heads: Heads,
    /// Request bodies are read from the client at most this fast (bytes per second;
    /// 0: as fast as they come).
    pub throttle: Arc<AtomicU64>,
    /// Per operation, how many of its next requests stop being read half-way through
    /// their body (for `stall`, then the connection is closed).
    pub stall_body: Arc<Mutex<BTreeMap<String, u32>>>,
    stop: Arc<AtomicBool>,
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// The S3 operation of a request.
fn operation(method: &str, target: &str) -> &'static str {
    let q = target.split_once('?').map(|x| x.1).unwrap_or("");
    let has = |k: &str| {
        q.split('&')
            .any(|p| p == k || p.starts_with(&format!("{k}=")))
    };
    match method {
        "PUT" if has("partNumber") => "UploadPart",
        "PUT" => "PutObject",
        "POST" if has("uploads") => "CreateMultipartUpload",
        "POST" if has("uploadId") => "CompleteMultipartUpload",
        "DELETE" if has("uploadId") => "AbortMultipartUpload",
        "GET" if has("uploadId") => "ListParts",
        "POST" => "STS",
        _ => "Other",
    }
}

impl FaultProxy {
    /// Starts a proxy to `upstream` (`http://127.0.0.1:PORT`) injecting faults into
    /// `rate` of the requests of every operation; `stall` is how long a stall lasts.
    pub fn start(upstream: &str, rate: f64, stall: Duration, seed: u64) -> FaultProxy {
        FaultProxy::start_with(upstream, rate, &[], stall, seed)
    }

    /// Like [`FaultProxy::start`], with a different rate for some operations.
    pub fn start_with(
        upstream: &str,
        rate: f64,
        per_op: &[(&'static str, f64)],
        stall: Duration,
        seed: u64,
    ) -> FaultProxy {
        let per_op: Arc<Vec<(&'static str, f64)>> = Arc::new(per_op.to_vec());
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        listener.set_nonblocking(true).expect("nonblocking");
        let endpoint = format!("http://{}", listener.local_addr().expect("addr"));
        let upstream = upstream.trim_start_matches("http://").to_owned();
        let counts: Counts = Arc::default();
        let arrivals: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let rng = Arc::new(Mutex::new(fastrand::Rng::with_seed(seed)));
        let flip: Arc<Mutex<BTreeMap<String, u32>>> = Arc::default();
        let heads: Heads = Arc::default();
        let throttle: Arc<AtomicU64> = Arc::default();
        let stall_body: Arc<Mutex<BTreeMap<String, u32>>> = Arc::default();
        {
            let (counts, arrivals, stop) = (counts.clone(), arrivals.clone(), stop.clone());
            let (flip, heads) = (flip.clone(), heads.clone());
            let (throttle, stall_body) = (throttle.clone(), stall_body.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    match listener.accept() {
                        Ok((client, _)) => {
                            let (upstream, counts, arrivals, rng, per_op) = (
                                upstream.clone(),
                                counts.clone(),
                                arrivals.clone(),
                                rng.clone(),
                                per_op.clone(),
                            );
                            let (flip, heads) = (flip.clone(), heads.clone());
                            let (throttle, stall_body) = (throttle.clone(), stall_body.clone());
                            std::thread::spawn(move || {
                                let rate_of = |op: &str| {
                                    per_op
                                        .iter()
                                        .find(|(o, _)| *o == op)
                                        .map_or(rate, |(_, r)| *r)
                                };
                                let _ = serve(
                                    client,
                                    &upstream,
                                    &rate_of,
                                    stall,
                                    &Shared {
                                        counts: &counts,
                                        arrivals: &arrivals,
                                        rng: &rng,
                                        flip: &flip,
                                        heads: &heads,
                                        throttle: &throttle,
                                        stall_body: &stall_body,
                                    },
                                );
                            });
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(5)),
                    }
                }
            });
        }
        FaultProxy {
            endpoint,
            counts,
            arrivals,
            flip,
            heads,
            throttle,
            stall_body,
            stop,
        }
    }

    /// Requests counted under an (operation, outcome) that `which` accepts.
    pub fn total(&self, which: impl Fn(&str, &str) -> bool) -> u64 {
        let counts = self.counts.lock().expect("lock");
        counts
            .iter()
            .filter(|((op, what), _)| which(op, what))
            .map(|(_, n)| *n)
            .sum()
    }

    /// Faults injected per operation (excluding clean forwards).
    pub fn faults(&self) -> BTreeMap<String, u64> {
        let mut out = BTreeMap::new();
        for ((op, what), n) in self.counts.lock().expect("lock").iter() {
            if what != "ok" {
                *out.entry(op.clone()).or_insert(0) += n;
            }
        }
        out
    }
}

fn error_body(code: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>{code}</Code><Message>injected by the test proxy</Message><RequestId>proxy</RequestId></Error>"
    )
}

fn respond(client: &mut TcpStream, status: &str, body: &str) -> std::io::Result<()> {
    write!(
        client,
        "HTTP/1.1 {status}\r\nContent-Type: application/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

/// What the connections of one proxy share.
struct Shared<'a> {
    counts: &'a Counts,
    arrivals: &'a Mutex<Vec<(String, String)>>,
    rng: &'a Mutex<fastrand::Rng>,
    flip: &'a Mutex<BTreeMap<String, u32>>,
    heads: &'a Mutex<Vec<(String, Vec<String>)>>,
    throttle: &'a AtomicU64,
    stall_body: &'a Mutex<BTreeMap<String, u32>>,
}

fn serve(
    client: TcpStream,
    upstream: &str,
    rate_of: &dyn Fn(&str) -> f64,
    stall: Duration,
    shared: &Shared<'_>,
) -> std::io::Result<()> {
    let Shared {
        counts,
        arrivals,
        rng,
        flip,
        heads,
        throttle,
        stall_body,
    } = *shared;
    client.set_nonblocking(false)?;
    client.set_read_timeout(Some(Duration::from_secs(60)))?;
    let mut reader = BufReader::new(client.try_clone()?);
    let mut client = client;
    // One request per connection: the upstream answers with `Connection: close`.
    {
        // Request head.
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
        let Some(first) = head.first().cloned() else {
            return Ok(());
        };
        let mut parts = first.split_whitespace();
        let (method, target) = (
            parts.next().unwrap_or("").to_owned(),
            parts.next().unwrap_or("").to_owned(),
        );
        let op = operation(&method, &target);
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
        let expect_continue =
            header("expect").is_some_and(|v| v.eq_ignore_ascii_case("100-continue"));
        let fault = {
            let mut r = rng.lock().expect("lock");
            if r.f64() < rate_of(op) {
                let mut kinds = vec![
                    Fault::SlowDown,
                    Fault::Internal,
                    Fault::ResetBeforeBody,
                    Fault::ResetAfterBody,
                    Fault::Stall,
                    Fault::Truncated,
                ];
                if op == "CompleteMultipartUpload" {
                    // The first fault of a Complete is always the 200 with an error body
                    // (the case a test of Complete exists for; random draws missed it
                    // in about one run of five), the others are drawn.
                    let seen = counts
                        .lock()
                        .expect("lock")
                        .contains_key(&(op.to_owned(), "Ok200Error".to_owned()));
                    if !seen {
                        kinds.clear();
                    }
                    kinds.push(Fault::Ok200Error);
                }
                Some(kinds[r.usize(..kinds.len())])
            } else {
                None
            }
        };
        *counts
            .lock()
            .expect("lock")
            .entry((
                op.to_owned(),
                fault.map_or("ok".into(), |f| format!("{f:?}")),
            ))
            .or_insert(0) += 1;
        if fault == Some(Fault::ResetBeforeBody) {
            let _ = client.shutdown(std::net::Shutdown::Both);
            return Ok(());
        }
        if expect_continue {
            client.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
        }
        let stall_mid = {
            let mut f = stall_body.lock().expect("lock");
            match f.get_mut(op) {
                Some(n) if *n > 0 && len > 0 => {
                    *n -= 1;
                    true
                }
                _ => false,
            }
        };
        let mut body = vec![0u8; len];
        let rate = throttle.load(Ordering::SeqCst);
        let began = std::time::Instant::now();
        let mut got = 0;
        while got < len {
            if stall_mid && got >= len / 2 {
                *counts
                    .lock()
                    .expect("lock")
                    .entry((op.to_owned(), "StalledMidBody".into()))
                    .or_insert(0) += 1;
                std::thread::sleep(stall);
                let _ = client.shutdown(std::net::Shutdown::Both);
                return Ok(());
            }
            let n = (len - got).min(64 * 1024);
            reader.read_exact(&mut body[got..got + n])?;
            got += n;
            if rate > 0 {
                let due = Duration::from_secs_f64(got as f64 / rate as f64);
                if let Some(wait) = due.checked_sub(began.elapsed()) {
                    std::thread::sleep(wait);
                }
            }
        }
        heads.lock().expect("lock").push((
            op.to_owned(),
            head.iter()
                .skip(1)
                .filter_map(|h| {
                    h.split_once(':')
                        .map(|(k, _)| k.trim().to_ascii_lowercase())
                })
                .collect(),
        ));
        let flipped = {
            let mut f = flip.lock().expect("lock");
            match f.get_mut(op) {
                Some(n) if *n > 0 && !body.is_empty() => {
                    *n -= 1;
                    true
                }
                _ => false,
            }
        };
        if flipped {
            // One bit of one byte in the middle of the payload, as a bad NIC or a broken
            // middlebox would.
            let i = body.len() / 2;
            body[i] ^= 0x01;
            *counts
                .lock()
                .expect("lock")
                .entry((op.to_owned(), "Flipped".into()))
                .or_insert(0) += 1;
        }
        match fault {
            Some(Fault::SlowDown) => {
                respond(&mut client, "503 Slow Down", &error_body("SlowDown"))?;
                return Ok(());
            }
            Some(Fault::Internal) => {
                respond(
                    &mut client,
                    "500 Internal Server Error",
                    &error_body("InternalError"),
                )?;
                return Ok(());
            }
            Some(Fault::Stall) => {
                std::thread::sleep(stall);
                return Ok(());
            }
            Some(Fault::Ok200Error) => {
                respond(&mut client, "200 OK", &error_body("InternalError"))?;
                return Ok(());
            }
            _ => {}
        }
        // Forward, one upstream connection per request.
        let mut up = TcpStream::connect(upstream)?;
        up.set_read_timeout(Some(Duration::from_secs(120)))?;
        let mut out = String::new();
        for h in &head {
            let lower = h.to_ascii_lowercase();
            if lower.starts_with("connection:") || lower.starts_with("expect:") {
                continue;
            }
            out.push_str(h);
        }
        out.push_str("Connection: close\r\n\r\n");
        up.write_all(out.as_bytes())?;
        up.write_all(&body)?;
        let mut resp = Vec::new();
        up.read_to_end(&mut resp)?;
        if matches!(op, "PutObject" | "CompleteMultipartUpload")
            && resp.starts_with(b"HTTP/1.1 200")
        {
            arrivals.lock().expect("lock").push((
                op.to_owned(),
                target.split('?').next().unwrap_or("").to_owned(),
            ));
        }
        match fault {
            Some(Fault::ResetAfterBody) => {
                let _ = client.shutdown(std::net::Shutdown::Both);
                return Ok(());
            }
            Some(Fault::Truncated) => {
                client.write_all(&resp[..resp.len() / 2])?;
                let _ = client.shutdown(std::net::Shutdown::Both);
                return Ok(());
            }
            _ => {}
        }
        client.write_all(&resp)?;
        // The upstream closed: tell the client this connection is done too.
        let _ = client.shutdown(std::net::Shutdown::Both);
        Ok(())
    }
}
