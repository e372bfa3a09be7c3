//! The audit's comparisons against made-up ledger rows and HeadObject answers.

use super::compare::{algorithm_of, diffs};
use super::*;
use outpost_ledger::{Mode, Outcome};

fn delivered(key: &str, at: i64) -> Delivered {
    Delivered {
        server: "acme".into(),
        bucket: "b".into(),
        key: key.into(),
        size: 10,
        checksum_algorithm: "crc32c".into(),
        checksum: "AAAAAA==".into(),
        store_checksum: None,
        etag: Some("\"e1\"".into()),
        version_id: None,
        relative_path: key.into(),
        dropped_at: at,
        first_attempt: at,
        delivered_at: at,
        attempts: 1,
        duration_ms: 1,
        mode: Mode::Single,
        outcome: Outcome::Written,
        instance: "i".into(),
        seq: 1,
        batch: None,
    }
}

fn object(size: u64, etag: Option<&str>, checksums: &[(&'static str, &str)]) -> ObjectInfo {
    ObjectInfo {
        size,
        etag: etag.map(str::to_owned),
        last_modified: None,
        version_id: None,
        checksums: checksums
            .iter()
            .map(|(a, v)| StoredChecksum {
                algorithm: a,
                value: (*v).to_owned(),
                checksum_type: None,
            })
            .collect(),
        token: None,
    }
}

fn whats(d: &Delivered, o: &ObjectInfo) -> Vec<String> {
    diffs(d, o).into_iter().map(|x| x.what).collect()
}

#[test]
fn only_the_newest_delivery_of_a_key_counts() {
    let rows = vec![
        Row::Delivered(delivered("a", 30)),
        Row::Requeued(outpost_ledger::Requeued {
            server: "acme".into(),
            relative_path: "a".into(),
            at: 25,
        }),
        Row::Delivered(delivered("b", 20)),
        Row::Delivered(delivered("a", 10)),
    ];
    let got: Vec<(String, i64)> = newest_deliveries(rows)
        .into_iter()
        .map(|d| (d.key, d.delivered_at))
        .collect();
    assert_eq!(got, [("a".to_owned(), 30), ("b".to_owned(), 20)]);
}

#[test]
fn size_etag_and_checksums_are_compared() {
    let d = delivered("k", 1);
    // Identical, quotes and case of the ETag aside; unknown ETag not compared.
    assert!(whats(&d, &object(10, Some("\"E1\""), &[])).is_empty());
    assert!(whats(&d, &object(10, None, &[])).is_empty());
    assert!(whats(&d, &object(10, Some("e1"), &[("CRC32C", "AAAAAA==")])).is_empty());
    // Each difference named.
    assert_eq!(whats(&d, &object(11, Some("\"e1\""), &[])), ["size"]);
    assert_eq!(whats(&d, &object(10, Some("\"e2\""), &[])), ["ETag"]);
    assert_eq!(
        whats(&d, &object(10, Some("\"e1\""), &[("CRC32C", "AQAAAA==")])),
        ["checksum CRC32C"]
    );
    // The store's CRC64NVME of an object sent with CRC32C: nothing to compare with.
    assert!(
        whats(
            &d,
            &object(10, Some("\"e1\""), &[("CRC64NVME", "AAAAAAAAAAA=")])
        )
        .is_empty()
    );
    // ... unless the store returned one at delivery.
    let mut with_store = d.clone();
    with_store.store_checksum = Some("AAAAAAAAAAA=".into());
    assert!(
        whats(
            &with_store,
            &object(10, None, &[("CRC64NVME", "AAAAAAAAAAA=")])
        )
        .is_empty()
    );
    assert_eq!(
        whats(
            &with_store,
            &object(10, None, &[("CRC64NVME", "AQAAAAAAAAA=")])
        ),
        ["checksum CRC64NVME"]
    );
    // A composite multipart checksum is compared with the store's composite answer
    // only, never with the whole-file value.
    assert!(whats(&d, &object(10, None, &[("CRC32C", "AQAAAA==-3")])).is_empty());
    let mut mpu = d.clone();
    mpu.store_checksum = Some("AAAAAA==-3".into());
    assert!(whats(&mpu, &object(10, None, &[("CRC32C", "AAAAAA==-3")])).is_empty());
    assert_eq!(
        whats(&mpu, &object(10, None, &[("CRC32C", "AQAAAA==-3")])),
        ["checksum CRC32C"]
    );
}

#[test]
fn verdicts() {
    let d = delivered("k", 1);
    assert_eq!(
        judge(&d, Ok(Head::Present(object(10, Some("\"e1\""), &[])))),
        Verdict::Identical
    );
    assert_eq!(judge(&d, Ok(Head::Missing)), Verdict::Missing);
    let v = judge(
        &d,
        Ok(Head::NotReadable {
            code: Some("AccessDenied".into()),
        }),
    );
    assert_eq!(v, Verdict::NotReadable(Some("AccessDenied".into())));
    let line = describe(&d, &v).unwrap_or_default();
    assert!(line.contains("403 AccessDenied"), "{line}");
    let v = judge(&d, Ok(Head::Present(object(12, Some("\"e2\""), &[]))));
    let line = describe(&d, &v).unwrap_or_default();
    assert!(
        line.contains("size 10 → 12") && line.contains("ETag \"e1\" → \"e2\""),
        "{line}"
    );
    assert_eq!(describe(&d, &Verdict::Identical), None);
}

#[test]
fn algorithms_by_length() {
    assert_eq!(algorithm_of("AAAAAA=="), Some("CRC32C"));
    assert_eq!(algorithm_of("AAAAAA==-12"), Some("CRC32C"));
    assert_eq!(algorithm_of("AAAAAAAAAAA="), Some("CRC64NVME"));
    assert_eq!(algorithm_of("2jmj7l5rSw0yVb/vlWAYkK/YBwk="), Some("SHA1"));
    assert_eq!(
        algorithm_of("47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="),
        Some("SHA256")
    );
    assert_eq!(algorithm_of("1B2M2Y8AsgTpgAmY7PhCfg=="), None);
}
