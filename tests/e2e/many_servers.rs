//! Thousands of servers on one daemon: it starts, gets ready and delivers. Before the
//! fix a start with more than 2,048 servers hung (the dispatcher's queue filled before
//! the dispatcher ran) and loading a configuration of many servers with static keys was
//! quadratic.

use std::time::{Duration, Instant};

use outpost_e2e::*;

#[test]
fn a_daemon_with_2500_servers_starts_and_delivers_to_each_it_is_given() {
    let store = Store::s3s();
    let bucket = bucket_name("many");
    rt().block_on(create_bucket(&store.client(), &bucket));
    let mut extra = String::new();
    for i in 0..2500 {
        extra.push_str(&format!(
            "  m{i:04}: {{ bucket: {bucket}, prefix: \"m{i:04}/\", endpoint: \"{}\", path_style: true }}\n",
            store.endpoint
        ));
    }
    let started = Instant::now();
    let Running {
        dir,
        daemon: d,
        client,
        ..
    } = acme(&store).bucket(&bucket).server_text(&extra).start();
    eprintln!("2,500 servers: ready after {:?}", started.elapsed());
    for i in [0, 1247, 2499] {
        dir.drop_file(&format!("m{i:04}"), "f.csv", b"hello");
    }
    let all = wait_until(Duration::from_secs(120), || {
        [0, 1247, 2499].iter().all(|i| {
            rt().block_on(get(&client, &bucket, &format!("m{i:04}/f.csv")))
                .is_some_and(|b| b == b"hello")
        })
    });
    assert!(all, "not delivered; log:\n{}", d.log_text());
    drop(dir);
}
