//! Delivery notifications against real receivers: a local HTTP server that checks
//! every signature and counts events (through kill -9s, and while it is down), and
//! moto's SQS and SNS. The property: every delivered file is notified at least once,
//! nothing that was not delivered is, and a target that is down never holds up a file.

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hmac::{Hmac, KeyInit, Mac};
use outpost_e2e::*;
use serde_json::Value;

const SECRET: &str = "correct horse battery staple";

/// A webhook receiver on 127.0.0.1: checks `X-Outpost-Signature-256` against
/// [`SECRET`] and keeps each event it accepted; answers 503 while `down`.
struct Receiver {
    port: u16,
    events: Arc<Mutex<Vec<Value>>>,
    bad_signatures: Arc<AtomicUsize>,
    refused: Arc<AtomicUsize>,
    down: Arc<AtomicBool>,
}

impl Receiver {
    fn start() -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let r = Receiver {
            port,
            events: Arc::default(),
            bad_signatures: Arc::default(),
            refused: Arc::default(),
            down: Arc::default(),
        };
        let (events, bad, refused, down) = (
            r.events.clone(),
            r.bad_signatures.clone(),
            r.refused.clone(),
            r.down.clone(),
        );
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let (events, bad, refused, down) =
                    (events.clone(), bad.clone(), refused.clone(), down.clone());
                std::thread::spawn(move || serve(conn, &events, &bad, &refused, &down));
            }
        });
        r
    }

    fn url(&self) -> String {
        format!(
            "http://127.0.0.1:{}/hooks/outpost?token=t0ps3cret",
            self.port
        )
    }

    /// The object keys of the events received (URL-decoded `outpost.key`).
    fn keys(&self) -> HashMap<String, usize> {
        let mut out = HashMap::new();
        for e in self.events.lock().expect("lock").iter() {
            let k = e["Records"][0]["outpost"]["key"]
                .as_str()
                .unwrap_or_default();
            *out.entry(k.to_owned()).or_default() += 1;
        }
        out
    }
}

/// Serves one keep-alive connection.
fn serve(
    conn: TcpStream,
    events: &Mutex<Vec<Value>>,
    bad: &AtomicUsize,
    refused: &AtomicUsize,
    down: &AtomicBool,
) {
    let mut out = conn.try_clone().expect("clone");
    let mut r = BufReader::new(conn);
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let mut headers = HashMap::new();
        loop {
            let mut h = String::new();
            if r.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_owned());
            }
        }
        let len: usize = headers
            .get("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let mut body = vec![0; len];
        if r.read_exact(&mut body).is_err() {
            return;
        }
        let status = if down.load(Ordering::SeqCst) {
            refused.fetch_add(1, Ordering::SeqCst);
            "503 Service Unavailable"
        } else {
            let mut mac = Hmac::<sha2::Sha256>::new_from_slice(SECRET.as_bytes()).expect("key");
            mac.update(&body);
            let want: String = mac
                .finalize()
                .into_bytes()
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            let got = headers
                .get("x-outpost-signature-256")
                .cloned()
                .unwrap_or_default();
            if got != format!("sha256={want}")
                || line.split(' ').nth(1) != Some("/hooks/outpost?token=t0ps3cret")
            {
                bad.fetch_add(1, Ordering::SeqCst);
                "401 Unauthorized"
            } else {
                let v: Value = serde_json::from_slice(&body).expect("json body");
                assert_eq!(
                    headers.get("x-outpost-event-id").map(String::as_str),
                    v["Records"][0]["outpost"]["eventId"].as_str()
                );
                events.lock().expect("lock").push(v);
                "200 OK"
            }
        };
        let resp = format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\n\r\n");
        if out.write_all(resp.as_bytes()).is_err() {
            return;
        }
    }
}

/// The secret file, mode 0600, in the test's folder.
fn secret_file(dir: &TestDir) -> String {
    let p = dir.path().join("hook.secret");
    std::fs::write(&p, format!("{SECRET}\n")).expect("write secret");
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    p.display().to_string()
}

fn webhook(url: &str, secret: &str) -> String {
    format!("    notify:\n      - webhook: {{ url: \"{url}\", secret_file: {secret} }}\n")
}

/// The keys in `bucket`.
fn keys_in(client: &aws_sdk_s3::Client, bucket: &str) -> HashSet<String> {
    rt().block_on(async {
        let out = client
            .list_objects_v2()
            .bucket(bucket)
            .send()
            .await
            .expect("list");
        out.contents()
            .iter()
            .filter_map(|o| o.key().map(str::to_owned))
            .collect()
    })
}

#[test]
fn every_delivery_is_notified_at_least_once_through_kill9s_and_nothing_else_is() {
    let receiver = Receiver::start();
    let dir = TestDir::new();
    let secret = secret_file(&dir);
    let Running {
        dir,
        daemon: mut d,
        bucket,
        client,
        launch,
    } = acme(&Store::s3s())
        .tag("notify-kill")
        .dir(dir)
        .extra(&webhook(&receiver.url(), &secret))
        .start();
    let mut rng = fastrand::Rng::with_seed(14);
    let mut dropped = 0;
    for k in 0..6 {
        for i in 0..8 {
            let bytes = data(rng.usize(0..50_000), (k * 100 + i) as u64);
            dir.drop_file("acme", &format!("b{k}/f {i}.csv"), &bytes);
            dropped += 1;
        }
        std::thread::sleep(Duration::from_millis(rng.u64(20..600)));
        d.kill9();
        d = launch.spawn(&dir);
        d.wait_ready();
    }
    let drained = wait_until(Duration::from_secs(120), || {
        dir.left_in_spool("acme").is_empty() && dir.claimed().is_empty()
    });
    assert!(drained, "spool did not drain; log:\n{}", d.log_text());
    let stored = keys_in(&client, &bucket);
    assert_eq!(stored.len(), dropped);
    let all_notified = wait_until(Duration::from_secs(60), || {
        let got = receiver.keys();
        stored.iter().all(|k| got.contains_key(k))
    });
    let got = receiver.keys();
    assert!(
        all_notified,
        "deliveries without a notification: {:?}; log:\n{}",
        stored
            .iter()
            .filter(|k| !got.contains_key(*k))
            .collect::<Vec<_>>(),
        d.log_text()
    );
    let strays: Vec<&String> = got.keys().filter(|k| !stored.contains(*k)).collect();
    assert!(
        strays.is_empty(),
        "notified but not in the bucket: {strays:?}"
    );
    assert_eq!(receiver.bad_signatures.load(Ordering::SeqCst), 0);
    // The events say what S3 holds.
    let events = receiver.events.lock().expect("lock").clone();
    let e = events
        .iter()
        .find(|e| e["Records"][0]["outpost"]["relativePath"] == "b0/f 1.csv")
        .expect("an event of b0/f 1.csv");
    let r = &e["Records"][0];
    assert_eq!(r["eventName"], "ObjectCreated:Put");
    assert_eq!(r["s3"]["bucket"]["name"], bucket.as_str());
    let key = r["outpost"]["key"].as_str().expect("key");
    assert!(key.ends_with("b0/f 1.csv"), "{key}");
    assert_eq!(r["s3"]["object"]["key"], key.replace(' ', "+").as_str());
    let head = rt()
        .block_on(client.head_object().bucket(&bucket).key(key).send())
        .expect("head");
    assert_eq!(r["s3"]["object"]["size"].as_i64(), head.content_length());
    assert_eq!(
        r["s3"]["object"]["eTag"].as_str(),
        head.e_tag().map(|t| t.trim_matches('"'))
    );
    assert_eq!(d.stop(), Some(0));
}

#[test]
fn a_receiver_that_is_down_holds_up_no_file_and_gets_its_backlog_later() {
    let receiver = Receiver::start();
    receiver.down.store(true, Ordering::SeqCst);
    let dir = TestDir::new();
    let secret = secret_file(&dir);
    let Running {
        dir,
        daemon: d,
        bucket,
        client,
        launch,
    } = acme(&Store::s3s())
        .tag("notify-down")
        .dir(dir)
        .extra(&webhook(&receiver.url(), &secret))
        .start();
    for i in 0..40 {
        dir.drop_file("acme", &format!("f{i}.csv"), &data(1000 + i, i as u64));
    }
    d.wait_uploaded("acme", 40.0, 60);
    assert_eq!(keys_in(&client, &bucket).len(), 40);
    // The backlog shows, with why.
    let failing = wait_until(Duration::from_secs(60), || {
        d.metric("outpost_notification_failures_total{server=\"acme\",target=\"webhook\"}")
            .is_some_and(|v| v >= 1.0)
    });
    assert!(failing, "no failed attempt counted; log:\n{}", d.log_text());
    let cfg = launch.cfg_str().to_owned();
    let shows = wait_until(Duration::from_secs(30), || {
        let (_, out, _) = outpost(&["status", "-c", &cfg], &[]);
        out.contains("notifications acme/webhook: 40 waiting") && out.contains("HTTP 503")
    });
    let (_, out, _) = outpost(&["status", "-c", &cfg], &[]);
    assert!(shows, "status: {out}");
    assert!(
        !out.contains("t0ps3cret"),
        "the hook URL's token shows: {out}"
    );
    assert!(
        !d.log_text().contains("t0ps3cret"),
        "the hook URL's token is logged"
    );
    let (_, json, _) = outpost(&["status", "--json", "-c", &cfg], &[]);
    let v: Value = serde_json::from_str(&json).expect("json");
    assert_eq!(v[0]["notifications_waiting"][0]["pending"], 40);
    // A target that is down is tried a few rows per backoff period, not hammered with
    // every row of its backlog again and again (generous bound: a row per second).
    std::thread::sleep(Duration::from_secs(3));
    let refused = receiver.refused.load(Ordering::SeqCst);
    assert!(refused <= 40, "{refused} refused POSTs in a few seconds");
    // Up again: everything arrives (backoff ≤ 5 min; the first retries come sooner).
    receiver.down.store(false, Ordering::SeqCst);
    let all = wait_until(Duration::from_secs(120), || receiver.keys().len() == 40);
    assert!(all, "got {:?}; log:\n{}", receiver.keys(), d.log_text());
    let drained = wait_until(Duration::from_secs(30), || {
        d.metric("outpost_notifications_pending{server=\"acme\",target=\"webhook\"}") == Some(0.0)
    });
    assert!(drained, "the pending gauge did not come back to 0");
    assert!(receiver.refused.load(Ordering::SeqCst) >= 1);
    drop(dir);
}

/// moto's SQS and SNS: a queue that gets SendMessage, and a topic whose subscription
/// (another queue) gets Publish.
#[test]
fn sqs_and_sns_targets_get_one_message_per_delivery() {
    let store = Store::moto();
    let creds = aws_sdk_sqs::config::Credentials::new(&store.key, &store.secret, None, None, "t");
    let sqs = aws_sdk_sqs::Client::from_conf(
        aws_sdk_sqs::Config::builder()
            .behavior_version_latest()
            .region(aws_sdk_sqs::config::Region::new("us-east-1"))
            .endpoint_url(&store.endpoint)
            .credentials_provider(creds.clone())
            .build(),
    );
    let sns = aws_sdk_sns::Client::from_conf(
        aws_sdk_sns::Config::builder()
            .behavior_version_latest()
            .region(aws_sdk_sns::config::Region::new("us-east-1"))
            .endpoint_url(&store.endpoint)
            .credentials_provider(creds)
            .build(),
    );
    let tag = bucket_name("n");
    let (queue_url, topic_arn, sub_url) = rt().block_on(async {
        let q = sqs
            .create_queue()
            .queue_name(format!("{tag}-direct"))
            .send()
            .await
            .expect("create queue");
        let sub = sqs
            .create_queue()
            .queue_name(format!("{tag}-topic"))
            .send()
            .await
            .expect("create queue");
        let sub_url = sub.queue_url().expect("url").to_owned();
        let attrs = sqs
            .get_queue_attributes()
            .queue_url(&sub_url)
            .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
            .send()
            .await
            .expect("attributes");
        let sub_arn = attrs
            .attributes()
            .and_then(|a| a.get(&aws_sdk_sqs::types::QueueAttributeName::QueueArn))
            .expect("arn")
            .clone();
        let t = sns
            .create_topic()
            .name(format!("{tag}-topic"))
            .send()
            .await
            .expect("create topic");
        let topic_arn = t.topic_arn().expect("arn").to_owned();
        sns.subscribe()
            .topic_arn(&topic_arn)
            .protocol("sqs")
            .endpoint(sub_arn)
            .send()
            .await
            .expect("subscribe");
        (q.queue_url().expect("url").to_owned(), topic_arn, sub_url)
    });
    let targets = format!(
        "    notify:\n      - sqs: {{ queue_url: \"{queue_url}\", endpoint: \"{ep}\" }}\n      - sns: {{ topic_arn: \"{topic_arn}\", endpoint: \"{ep}\" }}\n",
        ep = store.endpoint
    );
    let Running {
        dir,
        daemon: d,
        bucket,
        client,
        ..
    } = acme(&store).tag("notify-aws").extra(&targets).start();
    for i in 0..3 {
        dir.drop_file("acme", &format!("day/f{i}.csv"), &data(500 + i, i as u64));
    }
    d.wait_uploaded("acme", 3.0, 60);
    let stored = keys_in(&client, &bucket);
    assert_eq!(stored.len(), 3);
    // Every message of a queue, parsed with `unwrap` (SNS wraps ours in `Message`).
    let drain = |url: &str, unwrap: bool| -> Vec<Value> {
        let mut out = Vec::new();
        wait_until(Duration::from_secs(60), || {
            let got = rt().block_on(
                sqs.receive_message()
                    .queue_url(url)
                    .max_number_of_messages(10)
                    .send(),
            );
            for m in got.ok().map(|g| g.messages().to_vec()).unwrap_or_default() {
                let mut v: Value =
                    serde_json::from_str(m.body().unwrap_or_default()).expect("json");
                if unwrap {
                    v = serde_json::from_str(v["Message"].as_str().expect("an SNS envelope"))
                        .expect("our json");
                }
                out.push(v);
            }
            out.len() >= 3
        });
        out
    };
    for (url, unwrap) in [(&queue_url, false), (&sub_url, true)] {
        let got = drain(url, unwrap);
        let keys: HashSet<String> = got
            .iter()
            .map(|v| {
                v["Records"][0]["outpost"]["key"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned()
            })
            .collect();
        assert_eq!(keys, stored, "messages of {url}; log:\n{}", d.log_text());
        assert!(
            got.iter()
                .all(|v| v["Records"][0]["s3"]["bucket"]["name"] == bucket.as_str())
        );
    }
    for t in ["sqs", "sns"] {
        let sent = wait_until(Duration::from_secs(20), || {
            d.metric(&format!(
                "outpost_notifications_sent_total{{server=\"acme\",target=\"{t}\"}}"
            )) == Some(3.0)
        });
        assert!(sent, "{t}: sent_total is not 3");
    }
    drop(dir);
}

/// A webhook's HMAC key in a file others can read is refused like a credential's
/// secret: by `check` and at start (exit 78), naming the target, never the key.
#[test]
fn a_loose_webhook_secret_is_refused_by_check_and_run() {
    let dir = TestDir::new();
    let secret = secret_file(&dir);
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let Staged { dir, launch, .. } = acme(&Store::s3s())
        .tag("notify-loose")
        .dir(dir)
        .extra(&webhook("https://hooks.example/x?token=t0ps3cret", &secret))
        .stage();
    let cfg = launch.cfg_str().to_owned();
    for cmd in ["check", "run"] {
        let (code, out, err) = outpost(&[cmd, "-c", &cfg], &[]);
        assert_eq!(code, 78, "{cmd}: {out}{err}");
        let said = format!("{out}{err}");
        assert!(
            said.contains("notify target webhook") && said.contains("readable by group"),
            "{cmd}: {said}"
        );
        assert!(
            !said.contains(SECRET) && !said.contains("t0ps3cret"),
            "{cmd}: {said}"
        );
    }
    drop(dir);
}
