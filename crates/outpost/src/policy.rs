//! `outpost policy SERVER`: the statements a customer (and the publisher) must grant,
//! as JSON with a title per part. Shape and reasons: docs/cross-account-setup.md.

use outpost_config::{Credentials, Server, Sse};
use serde_json::{Value, json};

/// The S3 actions uploads need, and nothing else.
pub const UPLOAD_ACTIONS: [&str; 3] = [
    "s3:PutObject",
    "s3:AbortMultipartUpload",
    "s3:ListMultipartUploadParts",
];

/// Every part for `server`, with the publisher's account `account`.
pub fn parts(server: &Server, account: &str) -> Value {
    let resource = format!("arn:aws:s3:::{}/{}*", server.bucket, server.prefix);
    let publisher = format!("arn:aws:iam::{account}:root");
    let kms_key = match &server.sse {
        Some(Sse::Kms { kms_key_id }) => Some(kms_key_id.clone()),
        _ => None,
    };
    let kms_statement = |sid: &str| {
        kms_key.as_ref().map(|k| {
            json!({
                "Sid": sid,
                "Effect": "Allow",
                "Action": ["kms:GenerateDataKey", "kms:Decrypt"],
                "Resource": k,
            })
        })
    };
    // The statement the customer adds to the key policy, for `principal`.
    let key_policy_part = |sid: &str, principal: &str| {
        kms_key.as_ref().map(|k| {
            json!({
                "title": "KMS key policy statement — the customer adds it to the key policy",
                "apply_to": k,
                "document": {
                    "Sid": sid,
                    "Effect": "Allow",
                    "Principal": {"AWS": principal},
                    "Action": ["kms:GenerateDataKey", "kms:Decrypt"],
                    "Resource": "*",
                },
            })
        })
    };
    // The upload permission with the key's, under `sid`s.
    let write_statements = |sid: &str, kms_sid: &str| -> Vec<Value> {
        let mut stmts = vec![json!({
            "Sid": sid,
            "Effect": "Allow",
            "Action": UPLOAD_ACTIONS,
            "Resource": resource,
        })];
        stmts.extend(kms_statement(kms_sid));
        stmts
    };
    // The part the publisher attaches to the identity outpost runs as.
    let publisher_part = |stmts: Vec<Value>| {
        json!({
            "title": format!("IAM policy for the publisher's own identity (account {account}) — the publisher attaches it"),
            "apply_to": format!("the IAM user or role outpost runs as, in account {account}"),
            "document": {"Version": "2012-10-17", "Statement": stmts},
        })
    };
    let mut out = Vec::new();
    match &server.credentials {
        Credentials::Internal | Credentials::Static { .. } => {
            out.push(json!({
                "title": format!("Bucket policy of {} — the customer adds these statements", server.bucket),
                "apply_to": format!("s3://{} (bucket policy)", server.bucket),
                "document": {
                    "Version": "2012-10-17",
                    "Statement": [
                        {
                            "Sid": "OutpostPublisherWrite",
                            "Effect": "Allow",
                            "Principal": {"AWS": publisher},
                            "Action": UPLOAD_ACTIONS,
                            "Resource": resource,
                        },
                        {
                            "Sid": "OutpostPublisherOnlyBucketOwnerFullControl",
                            "Effect": "Deny",
                            "Principal": {"AWS": publisher},
                            "Action": "s3:PutObject",
                            "Resource": resource,
                            "Condition": {
                                "StringNotEquals": {"s3:x-amz-acl": "bucket-owner-full-control"},
                                "Null": {"s3:x-amz-acl": "false"},
                            },
                        },
                    ],
                },
            }));
            out.push(publisher_part(write_statements(
                "OutpostWriteToCustomerBucket",
                "OutpostUseCustomerKey",
            )));
            out.extend(key_policy_part("OutpostPublisherUseKey", &publisher));
        }
        Credentials::AssumeRole {
            role_arn,
            external_id,
        } => {
            let mut trust = json!({
                "Sid": "OutpostPublisherAssumeRole",
                "Effect": "Allow",
                "Principal": {"AWS": publisher},
                "Action": "sts:AssumeRole",
            });
            if let Some(id) = external_id {
                trust["Condition"] = json!({"StringEquals": {"sts:ExternalId": id}});
            }
            out.push(json!({
                "title": format!("Trust policy of role {role_arn} — the customer sets it on the role"),
                "apply_to": role_arn,
                "document": {"Version": "2012-10-17", "Statement": [trust]},
            }));
            out.push(json!({
                "title": format!("Permission policy of role {role_arn} — the customer attaches it to the role"),
                "apply_to": role_arn,
                "document": {"Version": "2012-10-17", "Statement": write_statements("OutpostWrite", "OutpostUseKey")},
            }));
            out.push(publisher_part(vec![json!({
                "Sid": "OutpostAssumeCustomerRole",
                "Effect": "Allow",
                "Action": "sts:AssumeRole",
                "Resource": role_arn,
            })]));
            out.extend(key_policy_part("OutpostRoleUseKey", role_arn));
        }
    }
    out.extend(audit_parts(server, account, &publisher));
    json!({"server": server.name, "bucket": server.bucket, "prefix": server.prefix, "publisher_account": account, "parts": out})
}

/// The optional parts `outpost audit` needs to read delivered objects back: `s3:GetObject`
/// on the prefix (HeadObject; with `overwrite: never` it also proves that an object
/// already there is this very file), and `s3:ListBucket` on the bucket — without it S3
/// answers 403, not 404, for a missing key, so `audit` cannot tell "missing" from "not
/// readable". Marked `"optional": true`.
fn audit_parts(server: &Server, account: &str, publisher: &str) -> Vec<Value> {
    let statements = |principal: Option<&str>| {
        let mut read = json!({
            "Sid": "OutpostAuditRead",
            "Effect": "Allow",
            "Action": "s3:GetObject",
            "Resource": format!("arn:aws:s3:::{}/{}*", server.bucket, server.prefix),
        });
        // Not limited by an `s3:prefix` condition: HeadObject carries no prefix, so a
        // limited grant never applies to it and a missing key still answers 403
        // (observed on radosgw).
        let mut list = json!({
            "Sid": "OutpostAuditList",
            "Effect": "Allow",
            "Action": "s3:ListBucket",
            "Resource": format!("arn:aws:s3:::{}", server.bucket),
        });
        if let Some(p) = principal {
            read["Principal"] = json!({"AWS": p});
            list["Principal"] = json!({"AWS": p});
        }
        json!({"Version": "2012-10-17", "Statement": [read, list]})
    };
    let title =
        "Optional, for `outpost audit` (and proof of an earlier delivery with `overwrite: never`)";
    match &server.credentials {
        Credentials::Internal | Credentials::Static { .. } => vec![
            json!({
                "title": format!("{title}: bucket policy of {} — the customer adds these statements", server.bucket),
                "optional": true,
                "apply_to": format!("s3://{} (bucket policy)", server.bucket),
                "document": statements(Some(publisher)),
            }),
            json!({
                "title": format!("{title}: IAM policy for the publisher's own identity (account {account})"),
                "optional": true,
                "apply_to": format!("the IAM user or role outpost runs as, in account {account}"),
                "document": statements(None),
            }),
        ],
        Credentials::AssumeRole { role_arn, .. } => vec![json!({
            "title": format!("{title}: permission policy of role {role_arn} — the customer attaches it to the role"),
            "optional": true,
            "apply_to": role_arn,
            "document": statements(None),
        })],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(yaml: &str) -> Server {
        let c = outpost_config::Config::parse(
            std::path::Path::new("t.yaml"),
            &format!("servers:\n  acme:\n    bucket: bkt\n    prefix: p/\n{yaml}"),
        )
        .expect("config");
        c.servers["acme"].clone()
    }

    #[test]
    fn internal_gives_bucket_policy_that_admits_parts() {
        let v = parts(&server(""), "975822914085");
        let parts = v["parts"].as_array().expect("parts");
        let required: Vec<_> = parts
            .iter()
            .filter(|p| p.get("optional").is_none())
            .collect();
        assert_eq!(required.len(), 2);
        // Audit's permissions come apart, marked optional: read on the prefix, list on the
        // bucket (unconditioned: HeadObject has no prefix to match).
        let audit = parts
            .iter()
            .find(|p| p["optional"] == true)
            .expect("audit part");
        let st = &audit["document"]["Statement"];
        assert_eq!(st[0]["Action"], "s3:GetObject");
        assert_eq!(st[0]["Resource"], "arn:aws:s3:::bkt/p/*");
        assert_eq!(st[1]["Action"], "s3:ListBucket");
        assert!(st[1].get("Condition").is_none());
        let allow = &parts[0]["document"]["Statement"][0];
        assert_eq!(allow["Principal"]["AWS"], "arn:aws:iam::975822914085:root");
        assert_eq!(allow["Resource"], "arn:aws:s3:::bkt/p/*");
        // No ACL condition on the Allow: UploadPart carries no x-amz-acl.
        assert!(allow.get("Condition").is_none());
        let deny = &parts[0]["document"]["Statement"][1];
        assert_eq!(deny["Condition"]["Null"]["s3:x-amz-acl"], "false");
    }

    #[test]
    fn assume_role_gives_trust_with_external_id_and_kms() {
        let v = parts(
            &server(
                "    credentials: { mode: assume_role, role_arn: \"arn:aws:iam::111122223333:role/w\", external_id: x-1 }\n    sse: { mode: \"aws:kms\", kms_key_id: \"arn:aws:kms:eu-west-1:111122223333:key/k\" }\n",
            ),
            "975822914085",
        );
        let parts = v["parts"].as_array().expect("parts");
        let trust = &parts[0]["document"]["Statement"][0];
        assert_eq!(trust["Condition"]["StringEquals"]["sts:ExternalId"], "x-1");
        assert_eq!(
            parts[1]["document"]["Statement"][1]["Action"][0],
            "kms:GenerateDataKey"
        );
        assert!(
            parts
                .iter()
                .any(|p| p["document"]["Principal"]["AWS"] == "arn:aws:iam::111122223333:role/w")
        );
    }
}
