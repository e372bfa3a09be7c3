//! Table-driven tests: each bad configuration names the line, the column and the reason.

use std::path::Path;
use std::time::Duration;

use crate::*;

const GOOD: &str = r#"
spool_dir: /var/spool/outpost
listen: 127.0.0.1:9464
max_concurrent_uploads: 8
defaults:
  region: eu-west-1
  multipart: { threshold: 32MiB, concurrency: 2 }
  retry: { max_attempts: 5 }
  credentials:
    mode: assume_role
    role_arn: arn:aws:iam::111122223333:role/writer
    external_id: acme-7f3a
servers:
  acme:
    bucket: acme-data
    prefix: "out/"
    multipart:
      part_size: 8MiB
    credentials: { mode: internal }
  beta:
    bucket: beta-data
    completion: marker
    sse: { mode: "aws:kms", kms_key_id: "arn:aws:kms:eu-west-1:111122223333:key/abc" }
"#;

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse(Path::new("/etc/outpost/outpost.yaml"), text)
}

#[test]
fn good_config_merges_defaults() {
    let c = parse(GOOD).expect("valid");
    assert_eq!(c.max_concurrent_uploads, 8);
    assert_eq!(c.shutdown_grace, Duration::from_secs(30));
    assert_eq!(c.state_dir, Path::new("/var/lib/outpost"));
    assert_eq!(c.ledger_retention, Duration::from_secs(30 * 86_400));
    let acme = &c.servers["acme"];
    assert_eq!(acme.region, "eu-west-1");
    assert_eq!(
        acme.multipart,
        Multipart {
            threshold: 32 << 20,
            part_size: 8 << 20,
            concurrency: 2
        }
    );
    assert_eq!(acme.retry.max_attempts, 5);
    assert_eq!(acme.retry.initial_backoff, Duration::from_secs(1));
    // credentials replaced whole: mode internal never inherits role_arn
    assert_eq!(acme.credentials, Credentials::Internal);
    assert_eq!(acme.key_for("a/b.csv"), "out/a/b.csv");
    let beta = &c.servers["beta"];
    assert!(matches!(beta.credentials, Credentials::AssumeRole { .. }));
    assert_eq!(
        beta.completion,
        Completion::Marker {
            suffix: ".ready".into()
        }
    );
    assert!(matches!(beta.sse, Some(Sse::Kms { .. })));
    assert_eq!(beta.checksum, Checksum::Crc32c);
}

#[test]
fn errors_name_line_column_and_reason() {
    // (yaml, line, column, words the reason must contain)
    let cases: &[(&str, usize, usize, &str)] = &[
        (
            "servers:\n  a:\n    bucket: bkt\n    bukket: c\n",
            4,
            5,
            "unknown key `bukket`",
        ),
        (
            "servers:\n  a:\n    bucket: bkt\n    max_concurrent_uploads: many\n",
            4,
            29,
            "invalid type",
        ),
        (
            "servers:\n  a:\n    bucket: bkt\n    retry: { initial_backoff: 10 parsecs }\n",
            4,
            31,
            "unknown unit",
        ),
        (
            "servers:\n  a:\n    bucket: bkt\n    multipart: { part_size: 1MiB }\n",
            4,
            18,
            "between 5MiB and 5GiB",
        ),
        (
            "servers:\n  \"bad name\":\n    bucket: bkt\n",
            2,
            3,
            "invalid server name",
        ),
        (
            "servers:\n  a:\n    prefix: x/\n",
            2,
            3,
            "missing required key `bucket`",
        ),
        (
            "servers:\n  a:\n    bucket: bkt\n    checksum: sha1\n",
            4,
            15,
            "unknown checksum `sha1`",
        ),
        (
            "servers:\n  a:\n    bucket: bkt\n    overwrite: sometimes\n",
            4,
            16,
            "unknown overwrite `sometimes`",
        ),
        (
            "servers:\n  a:\n    bucket: bkt\n    credentials: { mode: static, access_key_id: AK }\n",
            4,
            5,
            "secret_access_key_file",
        ),
        (
            "servers:\n  a:\n    bucket: bkt\n    sse: { mode: \"aws:kms\", kms_key_id: alias/mine }\n",
            4,
            29,
            "full key ARN",
        ),
        (
            "listen: nowhere\nservers:\n  a:\n    bucket: bkt\n",
            1,
            9,
            "invalid socket address",
        ),
        (
            "defaults:\n  retry:\n    max_attempts: 0\nservers:\n  a:\n    bucket: bkt\n",
            3,
            5,
            "max_attempts must be between 1 and",
        ),
        (
            "spool_dir: relative/spool\nservers:\n  a:\n    bucket: bkt\n",
            1,
            1,
            "absolute path",
        ),
        (
            "servers:\n  a:\n    bucket: bkt\n  a:\n    bucket: ccc\n",
            4,
            3,
            "duplicate",
        ),
        ("servers: {}\n", 1, 1, "no servers"),
        (
            "servers:\n  a:\n    bucket: bkt\n    storage_class: STANDARD_IAA\n",
            4,
            5,
            "not an S3 storage class; valid: STANDARD, REDUCED_REDUNDANCY, STANDARD_IA",
        ),
        (
            "rescan_interval: 0s\nservers:\n  a:\n    bucket: bkt\n",
            1,
            1,
            "rescan_interval must be between 1s and 1d",
        ),
        (
            "shutdown_grace: 99999999999d\nservers:\n  a:\n    bucket: bkt\n",
            1,
            1,
            "shutdown_grace must be between 0s and 1h",
        ),
        (
            "lease_ttl: 99999999999d\nservers:\n  a:\n    bucket: bkt\n",
            1,
            1,
            "lease_ttl must be between",
        ),
        (
            "state_dir: var/lib/outpost\nservers:\n  a:\n    bucket: bkt\n",
            1,
            1,
            "state_dir \"var/lib/outpost\" must be an absolute path",
        ),
        (
            "ledger_retention: 59m\nservers:\n  a:\n    bucket: bkt\n",
            1,
            1,
            "ledger_retention must be between 1h and 3650d",
        ),
        (
            "servers:\n  a:\n    bucket: bkt\nledger_retention: 3651d\n",
            4,
            1,
            "ledger_retention must be between 1h and 3650d",
        ),
        (
            "max_concurrent_uploads: 100000\nservers:\n  a:\n    bucket: bkt\n",
            1,
            1,
            "between 1 and 1024",
        ),
        (
            "servers:\n  a:\n    bucket: Bad_Bucket\n",
            3,
            5,
            "invalid bucket name",
        ),
        (
            "servers:\n  a:\n    bucket: \"x y\"\n",
            3,
            5,
            "invalid bucket name",
        ),
        (
            "servers:\n  a:\n    bucket: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\n",
            3,
            5,
            "3 to 63 characters",
        ),
        (
            "servers:\n  a:\n    bucket: 192.168.1.1\n",
            3,
            5,
            "IP address",
        ),
        (
            "servers:\n  a:\n    bucket: bkt\n    retry:\n      max_backoff: 99999999999d\n",
            5,
            7,
            "retry.max_backoff must be between 1ms and 1d",
        ),
        (
            "servers:\n  a:\n    bucket: bkt\n    completion: quiet\n    quiet_period: 0s\n",
            5,
            5,
            "quiet_period must be between 100ms and 1d",
        ),
        (
            "servers:\n  a:\n    bucket: bkt\n    timeouts:\n      read: 0s\n",
            5,
            7,
            "timeouts.read must be between 100ms and 1h",
        ),
        (
            "servers:\n  a:\n    bucket: bkt\n    credentials:\n      mode: assume_role\n      role_arn: arn:aws:iam::111122223333:role/w\n",
            4,
            5,
            "assume_role needs `external_id`",
        ),
        (
            "servers:\n  a:\n    bucket: bkt\n    credentials: { mode: internal, role_arn: x }\n",
            4,
            36,
            "`role_arn` is not a key of credentials mode `internal`",
        ),
    ];
    let mut bad = Vec::new();
    for (yaml, line, column, words) in cases {
        let e = parse(yaml).expect_err(yaml);
        assert!(
            e.reason.contains(words),
            "{yaml:?}: reason {:?} lacks {words:?}",
            e.reason
        );
        if (e.line, e.column) != (Some(*line), Some(*column)) {
            bad.push(format!("{yaml:?}: {e}"));
        }
        assert!(!e.reason.contains('\n'), "one-line reason: {e}");
    }
    assert!(bad.is_empty(), "wrong locations:\n{}", bad.join("\n"));
}

#[test]
fn state_dir_and_ledger_retention_as_written() {
    let c =
        parse("state_dir: /srv/outpost\nledger_retention: 1h\nservers:\n  a:\n    bucket: bkt\n")
            .expect("valid");
    assert_eq!(c.state_dir, Path::new("/srv/outpost"));
    assert_eq!(c.ledger_retention, Duration::from_secs(3600));
    let c = parse("ledger_retention: 3650d\nservers:\n  a:\n    bucket: bkt\n").expect("valid");
    assert_eq!(c.ledger_retention, Duration::from_secs(3650 * 86_400));
}

#[test]
fn sizes_and_durations() {
    assert_eq!(parse_size("8MiB"), Ok(8 << 20));
    assert_eq!(parse_size("64MB"), Ok(64_000_000));
    assert_eq!(parse_size("17"), Ok(17));
    assert!(parse_size("8 parsecs").is_err());
    assert!(parse_size("-1MiB").is_err());
    assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
    assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
    assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
    assert!(parse_duration("30").is_err());
}

#[test]
fn bucket_names_follow_s3_rules() {
    for ok in [
        "abc",
        "my-bucket.data",
        "t-x-123-456",
        "bucket--usw2-az1--x-s3",
    ] {
        assert_eq!(bucket_name_problem(ok), Ok(()), "{ok}");
    }
    for bad in [
        "ab",
        "Bad_Bucket",
        "x y",
        "-abc",
        "abc-",
        "a..b",
        "10.0.0.1",
        "xn--abc",
        "abc.mrap",
        "UPPER",
    ] {
        assert!(bucket_name_problem(bad).is_err(), "{bad}");
    }
}

#[test]
fn server_names() {
    for ok in ["acme", "a_b", "A.b-c", "_x", "0"] {
        assert!(valid_server_name(ok), "{ok}");
    }
    for bad in ["", ".hidden", "-x", "a/b", "a b", "é"] {
        assert!(!valid_server_name(bad), "{bad}");
    }
}

#[test]
fn globs() {
    assert!(glob_match("*.info", "batch.info"));
    assert!(!glob_match("*.info", "batch.info.csv"));
    assert!(glob_match("manifest-??.json", "manifest-01.json"));
    assert!(!glob_match("manifest-??.json", "manifest-1.json"));
    assert!(glob_match("*", ""));
}

#[test]
fn manifests() {
    let srv = |keys: &str| format!("servers:\n  a:\n    bucket: bkt\n{keys}");
    // Off by default, and `off` is the word off (not YAML 1.1's false).
    for keys in [
        "",
        "    manifest: off\n",
        "    manifest: off\n    manifest_name: x\n",
    ] {
        assert_eq!(
            parse(&srv(keys)).expect("valid").servers["a"].manifest,
            None
        );
    }
    let cases = [
        (
            "    manifest: json\n",
            ManifestFormat::Json,
            "_manifest.json",
        ),
        (
            "    manifest: aam-info\n    completion: marker\n",
            ManifestFormat::AamInfo,
            "{batch}.info",
        ),
        (
            "    manifest: json\n    manifest_name: \"{batch}-done.json\"\n",
            ManifestFormat::Json,
            "{batch}-done.json",
        ),
    ];
    for (keys, format, name) in cases {
        let c = parse(&srv(keys)).expect(keys);
        let m = c.servers["a"].manifest.clone().expect("on");
        assert_eq!((m.format, m.name.as_str()), (format, name), "{keys}");
    }
    let m = Manifest {
        format: ManifestFormat::AamInfo,
        name: "{batch}.info".into(),
    };
    assert_eq!(m.name_for("20240229"), "20240229.info");
    assert_eq!(
        m.to_string(),
        "manifest: aam-info, manifest_name: \"{batch}.info\""
    );
    // Refused, each at its key.
    let bad = [
        ("    manifest: xml\n", "unknown manifest `xml`"),
        (
            "    completion: quiet\n    manifest: json\n",
            "manifest needs `completion: rename` or `completion: marker`",
        ),
        (
            "    manifest: json\n    manifest_name: a/b.json\n",
            "must be a plain file name",
        ),
        (
            "    manifest: json\n    manifest_name: \"..\"\n",
            "must be a plain file name",
        ),
        (
            "    manifest: json\n    manifest_name: .hidden\n",
            "must be a plain file name",
        ),
    ];
    for (keys, words) in bad {
        let e = parse(&srv(keys)).expect_err(keys);
        assert!(e.reason.contains(words), "{keys}: {e}");
        assert!(e.line.is_some(), "{keys}: located: {e}");
    }
}
