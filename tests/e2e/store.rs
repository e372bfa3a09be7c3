//! The S3 side of a test: the stores `make test` starts (radosgw, s3s-fs, moto) with an
//! identity each, buckets and policies, and what arrived (`assert_delivered`, open
//! multipart uploads).

use aws_sdk_s3::config::{
    Credentials, Region, RequestChecksumCalculation, ResponseChecksumValidation,
};

use crate::*;

/// One S3 server and an identity on it.
#[derive(Clone, Debug)]
pub struct Store {
    /// Endpoint URL on 127.0.0.1.
    pub endpoint: String,
    /// Access key.
    pub key: String,
    /// Secret key.
    pub secret: String,
}

impl Store {
    /// radosgw as the bucket owner (the customer).
    pub fn rgw_owner() -> Store {
        Store {
            endpoint: env("OUTPOST_TEST_RGW_ENDPOINT"),
            key: env("OUTPOST_TEST_RGW_OWNER_KEY"),
            secret: env("OUTPOST_TEST_RGW_OWNER_SECRET"),
        }
    }
    /// radosgw as the publisher (outpost's identity).
    pub fn rgw_publisher() -> Store {
        Store {
            endpoint: env("OUTPOST_TEST_RGW_ENDPOINT"),
            key: env("OUTPOST_TEST_RGW_PUBLISHER_KEY"),
            secret: env("OUTPOST_TEST_RGW_PUBLISHER_SECRET"),
        }
    }
    /// s3s-fs.
    pub fn s3s() -> Store {
        Store {
            endpoint: env("OUTPOST_TEST_S3S_ENDPOINT"),
            key: env("OUTPOST_TEST_S3S_KEY"),
            secret: env("OUTPOST_TEST_S3S_SECRET"),
        }
    }
    /// moto (auth not enforced: any key works).
    pub fn moto() -> Store {
        Store {
            endpoint: env("OUTPOST_TEST_MOTO_ENDPOINT"),
            key: "AKIAMOTOTEST0000000".into(),
            secret: "motosecret".into(),
        }
    }

    /// An SDK client for checking what arrived.
    pub fn client(&self) -> aws_sdk_s3::Client {
        let conf = aws_sdk_s3::Config::builder()
            .behavior_version_latest()
            .region(Region::new("us-east-1"))
            .endpoint_url(&self.endpoint)
            .force_path_style(true)
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            // Compare bytes ourselves: moto sends a malformed CRC64NVME header.
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired)
            .credentials_provider(Credentials::new(
                &self.key,
                &self.secret,
                None,
                None,
                "test",
            ))
            .build();
        aws_sdk_s3::Client::from_conf(conf)
    }
}

/// Asserts that `key` in `bucket` holds exactly `want`.
pub fn assert_delivered(client: &aws_sdk_s3::Client, bucket: &str, key: &str, want: &[u8]) {
    match rt().block_on(get(client, bucket, key)) {
        None => panic!("{key} missing in {bucket}"),
        Some(got) if got != want => {
            let at = got.iter().zip(want).take_while(|(a, b)| a == b).count();
            panic!(
                "{key} differs: {} bytes, {} expected, first difference at byte {at}",
                got.len(),
                want.len()
            )
        }
        Some(_) => {}
    }
}

/// [`assert_delivered`] for every `(relative path, bytes)` of `files`, under `pre/`.
pub fn assert_all_delivered(
    client: &aws_sdk_s3::Client,
    bucket: &str,
    files: &[(String, Vec<u8>)],
) {
    for (rel, want) in files {
        assert_delivered(client, bucket, &format!("pre/{rel}"), want);
    }
}

/// Downloads an object.
pub async fn get(client: &aws_sdk_s3::Client, bucket: &str, key: &str) -> Option<Vec<u8>> {
    let out = client
        .get_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .ok()?;
    Some(out.body.collect().await.ok()?.into_bytes().to_vec())
}

/// Creates a bucket.
pub async fn create_bucket(client: &aws_sdk_s3::Client, bucket: &str) {
    client
        .create_bucket()
        .bucket(bucket)
        .send()
        .await
        .unwrap_or_else(|e| panic!("create bucket {bucket}: {e:?}"));
}

/// Sets a bucket policy.
pub async fn put_policy(client: &aws_sdk_s3::Client, bucket: &str, policy: &serde_json::Value) {
    client
        .put_bucket_policy()
        .bucket(bucket)
        .policy(policy.to_string())
        .send()
        .await
        .unwrap_or_else(|e| panic!("put policy on {bucket}: {e:?}"));
}

/// Multipart uploads still open in `bucket`.
pub async fn open_uploads(client: &aws_sdk_s3::Client, bucket: &str) -> usize {
    client
        .list_multipart_uploads()
        .bucket(bucket)
        .send()
        .await
        .map(|o| o.uploads().len())
        .unwrap_or_else(|e| panic!("list uploads: {e:?}"))
}

/// A radosgw bucket owned by the customer ("owner") whose policy lets the publisher
/// upload, multipart included; with `listing`, also the optional
/// s3:ListBucketMultipartUploads that lets outpost abort an upload it could not record.
/// Returns the bucket and the owner's client.
pub fn rgw_bucket(tag: &str, listing: bool) -> (String, aws_sdk_s3::Client) {
    let bucket = bucket_name(tag);
    let oc = Store::rgw_owner().client();
    let mut statements = vec![serde_json::json!({
        "Effect": "Allow",
        "Principal": {"AWS": ["arn:aws:iam:::user/publisher"]},
        "Action": ["s3:PutObject", "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts"],
        "Resource": [format!("arn:aws:s3:::{bucket}/*")]
    })];
    if listing {
        statements.push(serde_json::json!({
            "Effect": "Allow",
            "Principal": {"AWS": ["arn:aws:iam:::user/publisher"]},
            "Action": ["s3:ListBucketMultipartUploads"],
            "Resource": [format!("arn:aws:s3:::{bucket}")]
        }));
    }
    rt().block_on(async {
        create_bucket(&oc, &bucket).await;
        put_policy(
            &oc,
            &bucket,
            &serde_json::json!({"Version": "2012-10-17", "Statement": statements}),
        )
        .await;
    });
    (bucket, oc)
}
