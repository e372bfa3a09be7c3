//! What a notification says: a record in the shape of an S3 Event Notification
//! (`Records[0]` with `eventName`, `s3.bucket`, `s3.object` — key URL-encoded as S3
//! writes it, size, ETag without quotes, version id, sequencer) plus outpost's own
//! fields under `outpost` (server, relative path, checksum, batch, event id). The body
//! is built once, when the delivery is recorded, and sent as it is to every target.

use outpost_ledger::{Delivered, Mode, format_rfc3339};
use serde_json::{Value, json};

/// A completed batch, for its notification (sent with its manifest's delivery).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchDone {
    /// The batch folder's name.
    pub name: String,
    /// Files the manifest lists.
    pub files: u64,
    /// Their bytes.
    pub bytes: u64,
}

/// The body of the notification of `d` in `region`; `batch` when `d` is the manifest
/// that completes a batch.
pub fn body(d: &Delivered, region: &str, batch: Option<&BatchDone>) -> String {
    let event_name = match d.mode {
        Mode::Multipart => "ObjectCreated:CompleteMultipartUpload",
        Mode::Single | Mode::Fallback => "ObjectCreated:Put",
    };
    let event_id = event_id(d, batch.is_some());
    let mut outpost = json!({
        "event": if batch.is_some() { "batch" } else { "file" },
        "eventId": event_id,
        "server": d.server,
        "key": d.key,
        "relativePath": d.relative_path,
        "checksum": { "algorithm": d.checksum_algorithm, "value": d.checksum },
        "outcome": d.outcome.as_str(),
        "instance": d.instance,
    });
    if let Some(name) = batch.map(|b| &b.name).or(d.batch.as_ref()) {
        outpost["batch"] = json!({ "name": name });
    }
    if let Some(b) = batch {
        outpost["batch"]["files"] = json!(b.files);
        outpost["batch"]["bytes"] = json!(b.bytes);
    }
    let mut object = json!({
        "key": url_encode(&d.key),
        "size": d.size,
        "sequencer": format!("{:012X}{:016X}", d.delivered_at.max(0), d.seq),
    });
    if let Some(e) = &d.etag {
        object["eTag"] = Value::from(e.trim_matches('"'));
    }
    if let Some(v) = &d.version_id {
        object["versionId"] = Value::from(v.as_str());
    }
    json!({
        "Records": [{
            "eventVersion": "2.1",
            "eventSource": "outpost",
            "awsRegion": region,
            "eventTime": format_rfc3339(d.delivered_at),
            "eventName": event_name,
            "s3": {
                "s3SchemaVersion": "1.0",
                "bucket": { "name": d.bucket, "arn": format!("arn:aws:s3:::{}", d.bucket) },
                "object": object,
            },
            "outpost": outpost,
        }]
    })
    .to_string()
}

/// The event's id: the same for every notification of one delivery, and for the same
/// file delivered again after a crash or by another daemon that took its claim over
/// (server, bucket, key, checksum and the file's drop time are the same), so receivers
/// can deduplicate by it; another drop of the same bytes is another event. A manifest is
/// the same batch however often it is sent. 32 hex digits of SHA-256.
fn event_id(d: &Delivered, batch: bool) -> String {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    for part in [
        if batch { "batch" } else { "file" },
        &d.server,
        &d.bucket,
        &d.key,
        &d.checksum,
    ] {
        h.update(part.as_bytes());
        h.update([0]);
    }
    if !batch {
        h.update(d.dropped_at.to_be_bytes());
    }
    h.finalize()
        .iter()
        .take(16)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A key as S3 event notifications write it (form URL encoding: `+` for a space, `%XX`
/// for bytes other than letters, digits, `-_.~/`).
pub fn url_encode(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    for b in key.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                out.push(char::from(b));
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use outpost_ledger::Outcome;

    fn delivered() -> Delivered {
        Delivered {
            server: "acme".into(),
            bucket: "acme-data".into(),
            key: "in/day 1/a+b.csv".into(),
            size: 42,
            checksum_algorithm: "crc32c".into(),
            checksum: "AAAAAA==".into(),
            store_checksum: None,
            etag: Some("\"0123abcd\"".into()),
            version_id: Some("v1".into()),
            relative_path: "day 1/a+b.csv".into(),
            dropped_at: 1_000,
            first_attempt: 2_000,
            delivered_at: 1_764_460_800_000,
            attempts: 1,
            duration_ms: 5,
            mode: Mode::Multipart,
            outcome: Outcome::Written,
            instance: "pub-1".into(),
            seq: 7,
            batch: Some("day 1".into()),
        }
    }

    #[test]
    fn a_file_event_has_the_shape_of_an_s3_event_record() {
        let v: Value = serde_json::from_str(&body(&delivered(), "eu-west-1", None)).expect("json");
        let r = &v["Records"][0];
        assert_eq!(r["eventName"], "ObjectCreated:CompleteMultipartUpload");
        assert_eq!(r["awsRegion"], "eu-west-1");
        assert_eq!(r["eventTime"], "2025-11-30T00:00:00.000Z");
        assert_eq!(r["s3"]["bucket"]["name"], "acme-data");
        assert_eq!(r["s3"]["object"]["key"], "in/day+1/a%2Bb.csv");
        assert_eq!(r["s3"]["object"]["size"], 42);
        assert_eq!(r["s3"]["object"]["eTag"], "0123abcd");
        assert_eq!(r["s3"]["object"]["versionId"], "v1");
        assert_eq!(r["outpost"]["event"], "file");
        assert_eq!(r["outpost"]["relativePath"], "day 1/a+b.csv");
        assert_eq!(r["outpost"]["checksum"]["algorithm"], "crc32c");
        assert_eq!(r["outpost"]["batch"]["name"], "day 1");
    }

    #[test]
    fn a_batch_event_counts_its_files() {
        let b = BatchDone {
            name: "day 1".into(),
            files: 3,
            bytes: 300,
        };
        let mut d = delivered();
        d.mode = Mode::Single;
        let v: Value = serde_json::from_str(&body(&d, "us-east-1", Some(&b))).expect("json");
        let r = &v["Records"][0];
        assert_eq!(r["eventName"], "ObjectCreated:Put");
        assert_eq!(r["outpost"]["event"], "batch");
        assert_eq!(r["outpost"]["batch"]["files"], 3);
        assert_eq!(r["outpost"]["batch"]["bytes"], 300);
    }

    #[test]
    fn a_delivery_sent_again_keeps_its_event_id_and_a_new_drop_gets_another() {
        let id = |d: &Delivered| {
            let v: Value = serde_json::from_str(&body(d, "r", None)).expect("json");
            v["Records"][0]["outpost"]["eventId"]
                .as_str()
                .expect("str")
                .to_owned()
        };
        let first = delivered();
        // After a kill: delivered again later, by another daemon, as already present.
        let mut again = delivered();
        again.delivered_at += 60_000;
        again.instance = "pub-2".into();
        again.seq = 1;
        again.outcome = Outcome::AlreadyPresent;
        assert_eq!(id(&first), id(&again));
        assert_eq!(id(&first).len(), 32);
        let mut new_drop = delivered();
        new_drop.dropped_at += 1;
        assert_ne!(id(&first), id(&new_drop));
    }

    #[test]
    fn sequencers_grow_with_time_and_claim() {
        let a = delivered();
        let mut b = delivered();
        b.delivered_at += 1;
        let seq = |d: &Delivered| {
            let v: Value = serde_json::from_str(&body(d, "r", None)).expect("json");
            v["Records"][0]["s3"]["object"]["sequencer"]
                .as_str()
                .expect("str")
                .to_owned()
        };
        assert!(seq(&a) < seq(&b));
    }
}
