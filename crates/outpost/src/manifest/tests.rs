//! The manifest documents against golden examples: totals, names, and what aam-info
//! refuses.

use super::*;

fn facts(rel: &str, size: u64, lines: u64, md5: &str) -> FileFacts {
    FileFacts {
        key: format!("out/{rel}"),
        relative_path: rel.into(),
        size,
        crc64nvme: "AAAAAAAAAAA=".into(),
        checksum_algorithm: "CRC32C".into(),
        checksum: "yZRlqg==".into(),
        etag: "\"9b2cf535f27731c974343645a3985328\"".into(),
        version_id: None,
        delivered_at: "2024-02-29T23:59:59Z".into(),
        seq: 7,
        md5_hex: Some(md5.into()),
        lines: Some(lines),
    }
}

fn batch() -> Vec<FileFacts> {
    // Out of order on purpose: listed by relative path.
    vec![
        facts("b1/sub/c.csv", 5, 1, "00000000000000000000000000000003"),
        facts("b1/a.csv", 10, 2, "00000000000000000000000000000001"),
    ]
}

fn parsed(format: ManifestFormat, files: &[FileFacts]) -> serde_json::Value {
    let bytes = render(format, "b1", "outpost", "1.2.3", files).expect("render");
    assert_eq!(bytes.last(), Some(&b'\n'));
    serde_json::from_slice(&bytes).expect("JSON")
}

#[test]
fn facts_round_trip_through_their_bytes() {
    let f = facts("b1/a.csv", 1, 1, "x");
    assert_eq!(FileFacts::from_bytes(&f.to_bytes()).expect("read"), f);
    let bare = FileFacts {
        md5_hex: None,
        lines: None,
        version_id: Some("v1".into()),
        ..f
    };
    assert_eq!(FileFacts::from_bytes(&bare.to_bytes()).expect("read"), bare);
}

#[test]
fn totals_match_the_files_and_names_are_within_the_batch() {
    for format in [ManifestFormat::Json, ManifestFormat::AamInfo] {
        let v = parsed(format, &batch());
        let (files, totals) = match format {
            ManifestFormat::Json => (&v["files"], &v["totals"]),
            ManifestFormat::AamInfo => (&v["Files"], &v["Totals"]),
        };
        let files = files.as_array().expect("files");
        assert_eq!(files.len(), 2);
        let field = |json: &str, aam: &str| match format {
            ManifestFormat::Json => json.to_owned(),
            ManifestFormat::AamInfo => aam.to_owned(),
        };
        let size = field("size", "FileByteSize");
        let sum: u64 = files.iter().filter_map(|f| f[&size].as_u64()).sum();
        assert_eq!(sum, 15);
        assert_eq!(totals[field("bytes", "TotalByteSize")], 15);
        assert_eq!(totals[field("files", "TotalNumberFiles")], 2);
        let name = field("name", "FileName");
        let seq = field("sequence", "FileSequenceNumber");
        assert_eq!(files[0][&name], "a.csv");
        assert_eq!(files[1][&name], "sub/c.csv");
        assert_eq!((&files[0][&seq], &files[1][&seq]), (&1.into(), &2.into()));
    }
    let v = parsed(ManifestFormat::AamInfo, &batch());
    assert_eq!(v["Totals"]["TotalNumberLines"], 3);
    // An empty batch still renders, with zero totals.
    let v = parsed(ManifestFormat::AamInfo, &[]);
    assert_eq!(v["Totals"]["TotalNumberFiles"], 0);
}

#[test]
fn aam_info_refuses_facts_without_md5_or_lines() {
    let mut files = batch();
    files[0].lines = None;
    let e = render(ManifestFormat::AamInfo, "b1", "outpost", "1", &files).expect_err("lines");
    assert!(e.to_string().contains("b1/sub/c.csv"), "{e}");
    // The JSON manifest does without them.
    assert!(render(ManifestFormat::Json, "b1", "outpost", "1", &files).is_ok());
}

#[test]
fn keys_and_what_the_worker_counts() {
    let m = Manifest {
        format: ManifestFormat::AamInfo,
        name: "{batch}.info".into(),
    };
    assert_eq!(key("out/", &m, "b1"), "out/b1/b1.info");
    assert!(needs_md5_and_lines(ManifestFormat::AamInfo));
    assert!(!needs_md5_and_lines(ManifestFormat::Json));
}

#[test]
fn golden_json() {
    let bytes = render(ManifestFormat::Json, "b1", "outpost", "1.2.3", &batch()).expect("ok");
    let want = r#"{
  "batch": "b1",
  "producer": "outpost",
  "version": "1.2.3",
  "files": [
    {
      "sequence": 1,
      "key": "out/b1/a.csv",
      "name": "a.csv",
      "size": 10,
      "crc64nvme": "AAAAAAAAAAA=",
      "checksum_algorithm": "CRC32C",
      "checksum": "yZRlqg==",
      "etag": "\"9b2cf535f27731c974343645a3985328\"",
      "version_id": null,
      "delivered_at": "2024-02-29T23:59:59Z",
      "md5": "00000000000000000000000000000001",
      "lines": 2
    },
    {
      "sequence": 2,
      "key": "out/b1/sub/c.csv",
      "name": "sub/c.csv",
      "size": 5,
      "crc64nvme": "AAAAAAAAAAA=",
      "checksum_algorithm": "CRC32C",
      "checksum": "yZRlqg==",
      "etag": "\"9b2cf535f27731c974343645a3985328\"",
      "version_id": null,
      "delivered_at": "2024-02-29T23:59:59Z",
      "md5": "00000000000000000000000000000003",
      "lines": 1
    }
  ],
  "totals": {
    "files": 2,
    "bytes": 15
  }
}
"#;
    assert_eq!(String::from_utf8_lossy(&bytes), want);
}

#[test]
fn golden_aam_info() {
    let bytes = render(ManifestFormat::AamInfo, "b1", "outpost", "1", &batch()).expect("ok");
    let want = r#"{
  "Files": [
    {
      "FileByteSize": 10,
      "FileLineCount": 2,
      "FileName": "a.csv",
      "FileSequenceNumber": 1,
      "md5": "00000000000000000000000000000001"
    },
    {
      "FileByteSize": 5,
      "FileLineCount": 1,
      "FileName": "sub/c.csv",
      "FileSequenceNumber": 2,
      "md5": "00000000000000000000000000000003"
    }
  ],
  "Totals": {
    "FileName": "b1",
    "TotalByteSize": 15,
    "TotalNumberFiles": 2,
    "TotalNumberLines": 3
  }
}
"#;
    assert_eq!(String::from_utf8_lossy(&bytes), want);
}
