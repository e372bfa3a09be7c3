//! Tests of `client.rs`: which servers share an S3 client.

use super::*;

fn servers(yaml: &str) -> std::collections::BTreeMap<String, Arc<Server>> {
    outpost_config::Config::parse(std::path::Path::new("t.yaml"), yaml)
        .expect("config")
        .servers
        .into_iter()
        .map(|(k, v)| (k, Arc::new(v)))
        .collect()
}

#[tokio::test]
async fn servers_with_one_identity_and_endpoint_share_a_client_and_others_do_not() {
    let s = servers(
        "defaults:\n  endpoint: http://127.0.0.1:9\n  region: eu-west-1\n\
         servers:\n  a:\n    bucket: one\n    prefix: p/\n  b:\n    bucket: two\n\
         \x20 c:\n    bucket: three\n    region: us-east-1\n\
         \x20 d:\n    bucket: four\n    timeouts: { read: 7s }\n",
    );
    let d = |n: &str| Destination::new(s[n].clone());
    let (a, b, c, dd) = (d("a").await, d("b").await, d("c").await, d("d").await);
    let (a, b, c, dd) = (a.expect("a"), b.expect("b"), c.expect("c"), dd.expect("d"));
    assert!(
        Arc::ptr_eq(&a.client, &b.client),
        "same settings, one client"
    );
    assert!(!Arc::ptr_eq(&a.client, &c.client), "another region");
    assert!(!Arc::ptr_eq(&a.client, &dd.client), "other timeouts");
    // Once no destination holds it, it is freed; the next one builds afresh.
    let weak = Arc::downgrade(&a.client);
    drop((a, b));
    assert_eq!(weak.strong_count(), 0, "freed with its last destination");
    let again = d("a").await.expect("a again");
    assert!(weak.upgrade().is_none());
    let again_b = d("b").await.expect("b again");
    assert!(Arc::ptr_eq(&again.client, &again_b.client), "shared again");
}

#[tokio::test]
async fn a_changed_static_secret_gets_its_own_client() {
    let dir = tempfile::tempdir().expect("tmp");
    let secret = dir.path().join("secret");
    std::fs::write(&secret, "first-secret").expect("write");
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let s = servers(&format!(
        "defaults:\n  endpoint: http://127.0.0.1:9\n  credentials: {{ mode: static, access_key_id: AKIDEXAMPLE, secret_access_key_file: {} }}\n\
         servers:\n  a:\n    bucket: one\n  b:\n    bucket: two\n",
        secret.display()
    ));
    let a = Destination::new(s["a"].clone()).await.expect("a");
    std::fs::write(&secret, "second-secret").expect("write");
    let b = Destination::new(s["b"].clone()).await.expect("b");
    assert!(
        !Arc::ptr_eq(&a.client, &b.client),
        "b signs with the new secret"
    );
    assert!(a.secret_changed() && !b.secret_changed());
}
