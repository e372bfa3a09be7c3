//! `notify`: the delivery-notification targets of a server, resolved from the raw list
//! (exactly one kind per entry, names unique within the server, URLs and ARNs well
//! formed). The raw sections of an entry and the settings types live here too; sending
//! is the `outpost-notify` crate's.
//! A reader adds a kind of target here and in `raw.rs`.

use std::path::PathBuf;

use crate::keys::section;
use crate::server::Invalid;

section!(whole "notify target", "each `notify` entry must be a mapping with one of `webhook`, `sqs` or `sns`",
    /// One entry of `notify`: exactly one of its kinds, and an optional name.
    struct RawTarget {
        /// Its label in metrics and `status` (default: its kind).
        name: String,
        /// An HTTP(S) POST, signed.
        webhook: RawWebhook,
        /// An SQS SendMessage.
        sqs: RawQueue,
        /// An SNS Publish.
        sns: RawTopic,
    }
);

section!(whole "webhook", "`webhook` must be a mapping with `url` and `secret_file`",
    /// `webhook`.
    struct RawWebhook {
        /// `https://…` (or `http://…`).
        url: String,
        /// The HMAC key's file (mode 0600 or stricter); read by the notifier, never here.
        secret_file: PathBuf,
    }
);

section!(whole "sqs", "`sqs` must be a mapping with `queue_url`",
    /// `sqs`.
    struct RawQueue {
        /// The queue's URL.
        queue_url: String,
        /// Its region (default: from the URL, else the server's).
        region: String,
        /// Custom endpoint (tests, VPC endpoints).
        endpoint: String,
    }
);

section!(whole "sns", "`sns` must be a mapping with `topic_arn`",
    /// `sns`.
    struct RawTopic {
        /// The topic's ARN.
        topic_arn: String,
        /// Its region (default: from the ARN).
        region: String,
        /// Custom endpoint (tests, VPC endpoints).
        endpoint: String,
    }
);

crate::keys::whole!(Vec<RawTarget>);

/// One place a server's delivery notifications go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Label in metrics, logs and `status`: unique within the server.
    pub name: String,
    /// Where and how.
    pub kind: TargetKind,
}

/// The kinds of notification target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetKind {
    /// A POST of the event, signed with HMAC-SHA256 under the file's secret.
    Webhook {
        /// `https://…` or `http://…`.
        url: String,
        /// The HMAC key; read when the notifier starts and on SIGHUP, never printed.
        secret_file: PathBuf,
    },
    /// SQS SendMessage with the server's credentials.
    Sqs {
        /// The queue's URL.
        queue_url: String,
        /// The queue's region: written, from the URL, or the server's.
        region: String,
        /// Custom endpoint.
        endpoint: Option<String>,
    },
    /// SNS Publish with the server's credentials.
    Sns {
        /// The topic's ARN.
        topic_arn: String,
        /// The topic's region: written, or from the ARN.
        region: String,
        /// Custom endpoint.
        endpoint: Option<String>,
    },
}

impl TargetKind {
    /// `webhook`, `sqs` or `sns`.
    pub fn as_str(&self) -> &'static str {
        match self {
            TargetKind::Webhook { .. } => "webhook",
            TargetKind::Sqs { .. } => "sqs",
            TargetKind::Sns { .. } => "sns",
        }
    }
}

/// Refuses entry `i` of `notify` for `reason`.
fn bad<T>(i: usize, reason: impl std::fmt::Display) -> Result<T, Invalid> {
    Err((vec!["notify"], format!("notify entry {}: {reason}", i + 1)))
}

/// The targets of `raw` (a server's, over `defaults`), checked; `region` is the server's.
pub(crate) fn targets(raw: Vec<RawTarget>, region: &str) -> Result<Vec<Target>, Invalid> {
    let mut out: Vec<Target> = Vec::with_capacity(raw.len());
    for (i, t) in raw.into_iter().enumerate() {
        let kind = match (t.webhook, t.sqs, t.sns) {
            (Some(w), None, None) => {
                let Some(url) = w.url else {
                    return bad(i, "`webhook` needs `url`");
                };
                // The URL is never repeated in a message: hook URLs often carry a token.
                let Some((_, rest)) = url
                    .split_once("://")
                    .filter(|(scheme, _)| matches!(*scheme, "https" | "http"))
                else {
                    return bad(i, "webhook url must start with https:// (or http://)");
                };
                let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
                if authority.is_empty() || authority.contains('@') {
                    return bad(
                        i,
                        "webhook url needs a host and no user:password@ (the POST is authenticated by its signature)",
                    );
                }
                if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
                    return bad(i, "webhook url has a space or control character");
                }
                let Some(secret_file) = w.secret_file else {
                    return bad(
                        i,
                        "`webhook` needs `secret_file` (a file, mode 0600, holding the HMAC key the receiver checks signatures with)",
                    );
                };
                if !secret_file.is_absolute() {
                    return bad(i, "webhook secret_file must be an absolute path");
                }
                TargetKind::Webhook { url, secret_file }
            }
            (None, Some(q), None) => {
                let Some(queue_url) = q.queue_url else {
                    return bad(i, "`sqs` needs `queue_url`");
                };
                if !(queue_url.starts_with("https://") || queue_url.starts_with("http://")) {
                    return bad(
                        i,
                        format!(
                            "sqs queue_url {queue_url:?} must be the queue's URL (https://sqs.REGION.amazonaws.com/ACCOUNT/NAME)"
                        ),
                    );
                }
                if queue_url.trim_end_matches('/').ends_with(".fifo") {
                    return bad(
                        i,
                        "sqs FIFO queues are not supported (they need a message group); use a standard queue",
                    );
                }
                let region = q
                    .region
                    .or_else(|| region_of_queue(&queue_url))
                    .unwrap_or_else(|| region.to_owned());
                TargetKind::Sqs {
                    queue_url,
                    region,
                    endpoint: q.endpoint,
                }
            }
            (None, None, Some(s)) => {
                let Some(topic_arn) = s.topic_arn else {
                    return bad(i, "`sns` needs `topic_arn`");
                };
                let parts: Vec<&str> = topic_arn.split(':').collect();
                if parts.len() != 6 || parts[0] != "arn" || parts[2] != "sns" || parts[5].is_empty()
                {
                    return bad(
                        i,
                        format!(
                            "sns topic_arn {topic_arn:?} must be a topic ARN (arn:aws:sns:REGION:ACCOUNT:NAME)"
                        ),
                    );
                }
                if parts[5].ends_with(".fifo") {
                    return bad(
                        i,
                        "sns FIFO topics are not supported (they need a message group); use a standard topic",
                    );
                }
                let Some(region) = s
                    .region
                    .or_else(|| Some(parts[3].to_owned()).filter(|r| !r.is_empty()))
                else {
                    return bad(i, "sns topic_arn names no region; write `region`");
                };
                TargetKind::Sns {
                    topic_arn,
                    region,
                    endpoint: s.endpoint,
                }
            }
            (None, None, None) => return bad(i, "needs one of `webhook`, `sqs` or `sns`"),
            _ => {
                return bad(
                    i,
                    "has more than one of `webhook`, `sqs` and `sns`; write one entry per target",
                );
            }
        };
        let name = t.name.unwrap_or_else(|| kind.as_str().to_owned());
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
        {
            return bad(
                i,
                format!("name {name:?} must be letters, digits, '_', '.' or '-'"),
            );
        }
        if out.iter().any(|o| o.name == name) {
            return bad(
                i,
                format!("a second target named {name:?}: give each target of one kind a `name`"),
            );
        }
        out.push(Target { name, kind });
    }
    Ok(out)
}

/// The region in an AWS queue URL (`https://sqs.eu-west-1.amazonaws.com/…`).
fn region_of_queue(url: &str) -> Option<String> {
    let host = url.split("://").nth(1)?.split('/').next()?;
    let mut labels = host.split('.');
    (labels.next()? == "sqs")
        .then(|| labels.next())
        .flatten()
        .filter(|r| !r.is_empty() && host.ends_with(".amazonaws.com"))
        .map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::{TargetKind, region_of_queue};
    use crate::Config;

    fn srv(keys: &str) -> String {
        format!("defaults:\n  region: eu-central-1\nservers:\n  a:\n    bucket: bkt\n{keys}")
    }

    #[test]
    fn targets_as_written_with_their_defaults() {
        let c = Config::parse(std::path::Path::new("t.yaml"), &srv(
            "    notify:\n      - webhook: { url: \"https://h.example/x?t=1\", secret_file: /etc/s }\n      - { name: q2, sqs: { queue_url: \"https://sqs.us-west-2.amazonaws.com/1/q\" } }\n      - sqs: { queue_url: \"http://127.0.0.1:1/1/q\", endpoint: \"http://127.0.0.1:1\" }\n      - sns: { topic_arn: \"arn:aws:sns:ap-south-1:111122223333:t\" }\n",
        ))
        .expect("valid");
        let t = &c.servers["a"].notify;
        let names: Vec<&str> = t.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["webhook", "q2", "sqs", "sns"]);
        let region = |k: &TargetKind| match k {
            TargetKind::Sqs { region, .. } | TargetKind::Sns { region, .. } => region.clone(),
            TargetKind::Webhook { .. } => String::new(),
        };
        assert_eq!(region(&t[1].kind), "us-west-2");
        assert_eq!(region(&t[2].kind), "eu-central-1");
        assert_eq!(region(&t[3].kind), "ap-south-1");
        // `check` never shows a hook URL's path or query (tokens live there).
        let shown = t[0].to_string();
        assert!(
            shown.contains("https://h.example/…") && !shown.contains("t=1"),
            "{shown}"
        );
        assert!(
            Config::parse(std::path::Path::new("t.yaml"), &srv(""))
                .expect("valid")
                .servers["a"]
                .notify
                .is_empty()
        );
    }

    #[test]
    fn bad_targets_are_refused_at_notify() {
        for (keys, words) in [
            ("    notify:\n      - {}\n", "needs one of"),
            (
                "    notify:\n      - webhook: { url: \"https://h/\", secret_file: /s }\n        sqs: { queue_url: \"https://q/\" }\n",
                "more than one",
            ),
            (
                "    notify:\n      - webhook: { url: \"ftp://h/\", secret_file: /s }\n",
                "must start with https://",
            ),
            (
                "    notify:\n      - webhook: { url: \"https://h/\" }\n",
                "needs `secret_file`",
            ),
            (
                "    notify:\n      - webhook: { url: \"hooks.example/t0ken\", secret_file: /s }\n",
                "must start with https://",
            ),
            (
                "    notify:\n      - webhook: { url: \"https://u:t0ken@h/\", secret_file: /s }\n",
                "no user:password@",
            ),
            (
                "    notify:\n      - sqs: { queue_url: \"https://a/1/q.fifo\" }\n",
                "FIFO",
            ),
            (
                "    notify:\n      - sns: { topic_arn: \"arn:aws:sns::1:t\" }\n",
                "names no region",
            ),
            (
                "    notify:\n      - webhook: { url: \"https://h/\", secret_file: rel }\n",
                "absolute",
            ),
            (
                "    notify:\n      - sns: { topic_arn: \"arn:aws:sqs:r:1:t\" }\n",
                "topic ARN",
            ),
            (
                "    notify:\n      - sqs: { queue_url: \"https://a/1/q\" }\n      - sqs: { queue_url: \"https://a/1/r\" }\n",
                "second target named \"sqs\"",
            ),
            (
                "    notify:\n      - { name: \"a b\", sqs: { queue_url: \"https://a/1/q\" } }\n",
                "letters, digits",
            ),
            (
                "    notify:\n      - sqs: { queue_url: \"https://a/1/q\", qeue: x }\n",
                "unknown key `qeue`",
            ),
        ] {
            let e = Config::parse(std::path::Path::new("t.yaml"), &srv(keys))
                .expect_err(keys)
                .to_string();
            assert!(e.contains(words), "{keys}: {e}");
            assert!(!e.contains("t0ken"), "a hook URL is repeated: {e}");
            // Located at `notify` (line 6) or, for a parse error, at the value (line 7).
            assert!(
                e.contains("t.yaml:6:") || e.contains("t.yaml:7:"),
                "{keys}: {e}"
            );
        }
    }

    #[test]
    fn a_queue_url_names_its_region() {
        assert_eq!(
            region_of_queue("https://sqs.eu-west-1.amazonaws.com/123456789012/q").as_deref(),
            Some("eu-west-1")
        );
        assert_eq!(
            region_of_queue("http://127.0.0.1:4566/123456789012/q"),
            None
        );
    }
}
