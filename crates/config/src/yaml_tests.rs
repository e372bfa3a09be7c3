//! Errors speak YAML and point where the parser saw the offending key or value — also in
//! flow maps (`{ a: 1 }`) and through anchors and aliases.

use std::path::Path;
use std::time::Duration;

use crate::*;

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse(Path::new("/etc/outpost/outpost.yaml"), text)
}

/// 1-based (line, column) of the `nth` (0-based) occurrence of `needle` in `text`.
fn at(text: &str, needle: &str, nth: usize) -> (usize, usize) {
    let off = text
        .match_indices(needle)
        .nth(nth)
        .unwrap_or_else(|| panic!("{needle:?} #{nth} not in {text:?}"))
        .0;
    let line = text[..off].matches('\n').count() + 1;
    let column = off - text[..off].rfind('\n').map_or(0, |i| i + 1) + 1;
    (line, column)
}

/// Parses `yaml`, which must fail at the `nth` `needle` with a reason containing `words`
/// and no Rust type name.
fn fails_at(yaml: &str, needle: &str, nth: usize, words: &str) {
    let e = parse(yaml).expect_err(yaml);
    assert!(
        e.reason.contains(words),
        "{yaml:?}: reason {:?} lacks {words:?}",
        e.reason
    );
    for rust in ["Raw", "struct ", "enum ", "there are no fields", "Option<"] {
        assert!(!e.reason.contains(rust), "{yaml:?}: Rust in {:?}", e.reason);
    }
    assert!(!e.reason.contains('\n'), "one-line reason: {e}");
    let (line, column) = at(yaml, needle, nth);
    assert_eq!(
        (e.line, e.column),
        (Some(line), Some(column)),
        "{yaml:?}: {e}"
    );
}

#[test]
fn a_duplicate_key_is_reported_at_the_duplicate() {
    let y = "servers:\n  a:\n    bucket: bkt\n  a:\n    bucket: ccc\n";
    fails_at(y, "a:", 1, "duplicate server `a`");
    let y = "servers:\n  a:\n    bucket: bkt\n    bucket: ccc\n";
    fails_at(y, "bucket", 1, "duplicate key `bucket`");
    let y = "listen: 127.0.0.1:1\nlisten: 127.0.0.1:2\nservers: { a: { bucket: bkt } }\n";
    fails_at(y, "listen", 1, "duplicate key `listen`");
    let y = "servers: { a: { bucket: bkt, retry: { max_attempts: 1, max_attempts: 2 } } }\n";
    fails_at(y, "max_attempts", 1, "duplicate key `max_attempts`");
}

#[test]
fn no_rust_type_names_in_messages() {
    let y = "servers:\n  a:\n    bucket: bkt\n    credentials: internal\n";
    fails_at(
        y,
        "internal",
        0,
        "`credentials` must be a mapping with `mode: ...`",
    );
    fails_at(
        "- a\n- b\n",
        "-",
        0,
        "the file must be a mapping of top-level keys",
    );
    let y = "servers:\n  a:\n    bucket: bkt\n    credentials: { mode: internal, role_arn: x }\n";
    fails_at(
        y,
        "role_arn",
        0,
        "`role_arn` is not a key of credentials mode `internal`",
    );
    let y = "servers:\n  a:\n    bucket: bkt\n    retry: 3\n";
    fails_at(y, "3", 0, "`retry` must be a mapping");
    let y = "servers:\n  a:\n    bucket: bkt\n    bukket: c\n";
    fails_at(y, "bukket", 0, "unknown key `bukket`");
    let y = "servers:\n  a:\n    bucket: bkt\n    credentials: { mode: sso }\n";
    fails_at(y, "sso", 0, "unknown credentials mode `sso`");
}

#[test]
fn a_syntax_error_is_a_syntax_error() {
    let e = parse("a: [\n").expect_err("unclosed flow sequence");
    assert!(e.reason.contains("YAML syntax error"), "{e}");
    assert!(!e.reason.contains("unknown"), "{e}");
    assert!(e.line.is_some() && e.column.is_some(), "{e}");
}

#[test]
fn merge_keys_are_refused_with_a_pointer_to_defaults() {
    let y = "servers:\n  a: &a\n    bucket: bkt\n  b:\n    <<: *a\n    bucket: bkt2\n";
    fails_at(
        y,
        "<<",
        0,
        "merge keys (<<) are not supported; use `defaults:`",
    );
}

#[test]
fn flow_maps_are_located_by_the_parser() {
    let y = "servers: { acme: { bucket: \"x\", bogus: 1 } }\n";
    fails_at(y, "bogus", 0, "unknown key `bogus`");
    let y = "servers: { acme: { bucket: \"x\" } }\n";
    fails_at(y, "bucket", 0, "invalid bucket name");
    let y = "servers: { a: { bucket: bkt, multipart: { part_size: 1MiB } } }\n";
    fails_at(y, "part_size", 0, "between 5MiB and 5GiB");
    let y = "defaults: { retry: { max_attempts: 0 } }\nservers: { a: { bucket: bkt } }\n";
    fails_at(y, "max_attempts", 0, "max_attempts must be between 1 and");
    let y = "servers:\n  a:\n    bucket: bkt\n    retry: { initial_backoff: 10 parsecs }\n";
    fails_at(y, "10 parsecs", 0, "unknown unit");
}

#[test]
fn anchors_and_aliases_are_located_where_written() {
    // `a` sorts first and is checked first; its bucket was written under `z`.
    let y = "servers:\n  z: &z\n    bucket: Bad_Bucket\n  a: *z\n";
    fails_at(y, "bucket", 0, "invalid bucket name");
    let y = "servers:\n  z:\n    bucket: bkt\n    timeouts: &t { read: 0s }\n  a:\n    bucket: bkt\n    timeouts: *t\n";
    fails_at(y, "read", 0, "timeouts.read must be between 100ms and 1h");
}

#[test]
fn a_secret_file_error_points_at_the_key_that_names_the_file() {
    let y = "defaults:\n  credentials:\n    mode: static\n    access_key_id: AK\n    secret_access_key_file: /etc/outpost/a.key\nservers:\n  a: { bucket: bkt }\n  b:\n    bucket: bkt\n    credentials: { mode: static, access_key_id: B, secret_access_key_file: /b.key }\n  c: { bucket: bkt, credentials: { mode: internal } }\n";
    let c = parse(y).expect("valid");
    let e = c.secret_file_error("a", "secret_access_key_file /etc/outpost/a.key is empty");
    assert_eq!(
        (e.line, e.column),
        (Some(5), Some(5)),
        "inherited from defaults: {e}"
    );
    assert_eq!(
        e.to_string(),
        "/etc/outpost/outpost.yaml:5:5: server a: secret_access_key_file /etc/outpost/a.key is empty"
    );
    let e = c.secret_file_error("b", "x");
    let (line, column) = at(y, "secret_access_key_file", 1);
    assert_eq!((e.line, e.column), (Some(line), Some(column)), "{e}");
    // Where keys were written is not configuration.
    let moved = y.replace("servers:\n", "listen: 127.0.0.1:9464\nservers:\n");
    assert_eq!(parse(&moved).expect("valid"), c);
}

#[test]
fn settings_print_as_the_yaml_a_user_writes() {
    let y = "servers:\n  a:\n    bucket: bkt\n    completion: quiet\n    quiet_period: 90s\n    after_upload: archive\n    overwrite: never\n    checksum: crc64nvme\n    sse: { mode: \"aws:kms\", kms_key_id: \"arn:aws:kms:eu-west-1:111122223333:key/abc\" }\n    credentials: { mode: assume_role, role_arn: \"arn:aws:iam::111122223333:role/w\", external_id: x-1 }\n  b:\n    bucket: bkt\n    completion: marker\n    credentials: { mode: static, access_key_id: AK, secret_access_key_file: /k }\n  c: { bucket: bkt }\n";
    let c = parse(y).expect("valid");
    let (a, b, s) = (&c.servers["a"], &c.servers["b"], &c.servers["c"]);
    assert_eq!(
        a.completion.to_string(),
        "completion: quiet, quiet_period: 90s"
    );
    assert_eq!(
        b.completion.to_string(),
        "completion: marker, marker_suffix: .ready"
    );
    assert_eq!(s.completion.to_string(), "completion: rename");
    assert_eq!(a.after_upload.to_string(), "after_upload: archive");
    assert_eq!(s.after_upload.to_string(), "after_upload: delete");
    assert_eq!(a.overwrite.to_string(), "overwrite: never");
    assert_eq!(s.overwrite, crate::Overwrite::Always);
    assert_eq!(s.overwrite.to_string(), "overwrite: always");
    assert_eq!(a.checksum.to_string(), "checksum: crc64nvme");
    assert_eq!(
        a.sse.as_ref().map(ToString::to_string).as_deref(),
        Some(
            "sse: { mode: \"aws:kms\", kms_key_id: \"arn:aws:kms:eu-west-1:111122223333:key/abc\" }"
        )
    );
    assert_eq!(
        a.credentials.to_string(),
        "credentials: { mode: assume_role, role_arn: \"arn:aws:iam::111122223333:role/w\", external_id: (set) }"
    );
    assert_eq!(
        b.credentials.to_string(),
        "credentials: { mode: static, access_key_id: AK, secret_access_key_file: /k }"
    );
    assert_eq!(s.credentials.to_string(), "credentials: { mode: internal }");
    assert_eq!(
        s.multipart.to_string(),
        "multipart: { threshold: 64MiB, part_size: 16MiB, concurrency: 4 }"
    );
    assert_eq!(
        s.retry.to_string(),
        "retry: { initial_backoff: 1s, max_backoff: 5m, max_attempts: 20 }"
    );
    assert_eq!(
        s.timeouts.to_string(),
        "timeouts: { connect: 5s, read: 1m }"
    );
    // What is printed reads back as the same setting.
    for (yaml, server) in [(a, "a"), (b, "b"), (s, "c")].map(|(s, n)| {
        let keys = [
            s.completion.to_string(),
            s.credentials.to_string(),
            s.after_upload.to_string(),
            s.overwrite.to_string(),
            s.checksum.to_string(),
            s.multipart.to_string(),
            s.retry.to_string(),
            s.timeouts.to_string(),
        ];
        let keys = keys.join(", ");
        (
            format!("servers: {{ {n}: {{ bucket: bkt, {keys} }} }}\n"),
            s,
        )
    }) {
        let again = parse(&yaml).expect(&yaml);
        let again = &again.servers[&server.name];
        // The external id is never printed: what reads back is the same role.
        let credentials = match (&again.credentials, &server.credentials) {
            (
                Credentials::AssumeRole { role_arn: r, .. },
                Credentials::AssumeRole {
                    role_arn,
                    external_id: Some(_),
                },
            ) if r == role_arn => &server.credentials,
            _ => &again.credentials,
        };
        assert_eq!(
            (&again.completion, credentials, again.multipart, again.retry),
            (
                &server.completion,
                &server.credentials,
                server.multipart,
                server.retry
            ),
            "{yaml}"
        );
    }
    assert_eq!(format_duration(Duration::from_millis(1500)), "1500ms");
    assert_eq!(format_duration(Duration::from_secs(86_400)), "1d");
    assert_eq!(format_size(5 << 30), "5GiB");
    assert_eq!(format_size(64_000_000), "64MB");
    assert_eq!(format_size(17), "17");
}

#[test]
fn verify_interval_and_orphan_age_default_merge_and_switch_off_with_zero() {
    let hours = |h: u64| Some(Duration::from_secs(h * 3600));
    let c = parse("servers: { a: { bucket: bkt } }\n").expect("parse");
    assert_eq!(c.servers["a"].verify_interval, hours(6));
    assert_eq!(c.servers["a"].orphan_age, hours(24));
    let y = "defaults: { verify_interval: 0, orphan_age: 2h }\nservers:\n  a: { bucket: bkt }\n  b: { bucket: bkt, verify_interval: 1m, orphan_age: \"0s\" }\n";
    let c = parse(y).expect("parse");
    assert_eq!(c.servers["a"].verify_interval, None);
    assert_eq!(c.servers["a"].orphan_age, hours(2));
    assert_eq!(
        c.servers["b"].verify_interval,
        Some(Duration::from_secs(60))
    );
    assert_eq!(c.servers["b"].orphan_age, None);
    let y = "servers:\n  a:\n    bucket: bkt\n    verify_interval: 500ms\n";
    fails_at(
        y,
        "verify_interval",
        0,
        "verify_interval must be between 1s and 30d",
    );
    let y = "servers:\n  a:\n    bucket: bkt\n    orphan_age: soon\n";
    fails_at(y, "soon", 0, "invalid duration");
}

#[test]
fn windows_and_rates_are_read_and_refused_at_the_value() {
    let y = "max_bandwidth: 200MiB/s\ndefaults: { window: \"22:00-06:00\" }\nservers:\n  a:\n    bucket: bkt\n    max_bandwidth: 50MiB/s\n  b:\n    bucket: bkt\n    window: \"22:00-02:00, 04:00-06:00 Europe/Berlin\"\n    max_bandwidth: 0\n";
    let cfg = parse(y).expect("valid");
    assert_eq!(cfg.max_bandwidth, 200 << 20);
    assert_eq!(cfg.servers["a"].max_bandwidth, 50 << 20);
    assert_eq!(cfg.servers["b"].max_bandwidth, 0);
    let wa = cfg.servers["a"].window.as_ref().expect("inherited");
    assert_eq!(wa.to_string(), "22:00-06:00 UTC");
    let wb = cfg.servers["b"].window.as_ref().expect("own");
    assert_eq!(wb.to_string(), "22:00-02:00, 04:00-06:00 Europe/Berlin");
    let y = "servers:\n  a:\n    bucket: bkt\n    window: \"22:00-22:00\"\n";
    fails_at(y, "\"22:00-22:00\"", 0, "is empty");
    let y = "servers:\n  a:\n    bucket: bkt\n    window: \"22:00-06:00 Nowhere/Town\"\n";
    fails_at(y, "\"22:00", 0, "unknown time zone");
    let y = "servers:\n  a:\n    bucket: bkt\n    window: \"7-9\"\n";
    fails_at(y, "\"7-9\"", 0, "HH:MM");
    let y = "max_bandwidth: 50MiB\nservers:\n  a:\n    bucket: bkt\n";
    fails_at(y, "50MiB", 0, "like 50MiB/s");
    let y = "servers:\n  a:\n    bucket: bkt\n    max_bandwidth: 10B/s\n";
    fails_at(y, "10B/s", 0, "at least 1KiB/s");
}
