//! Errors speak YAML and point where the parser saw the offending key or value — also in
//! flow maps (`{ a: 1 }`) and through anchors and aliases.

use std::path::Path;

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
