//! The notification outbox: written with its delivery, read when due, deleted when
//! sent, postponed when not, and never written twice for the same claim.

mod common;

use common::{delivered, open, state};
use outpost_ledger::{Notice, OutboxReader, Update, now_millis};

fn notice(target: &str) -> Notice {
    Notice {
        target: target.into(),
        body: format!("{{\"to\":\"{target}\"}}"),
    }
}

#[test]
fn a_delivery_and_its_notifications_are_one_write_and_leave_when_sent() {
    let (_dir, path) = state();
    let ledger = open(&path);
    let now = now_millis();
    ledger
        .record_with(
            delivered("acme", "a/1.csv", 1, now),
            vec![notice("webhook"), notice("sqs")],
        )
        .wait()
        .expect("recorded");
    let mut reader = OutboxReader::open(&path).expect("reader");
    let due = reader.due(now, 10).expect("due");
    assert_eq!(due.len(), 2);
    assert_eq!(due[0].server, "acme");
    assert_eq!(due[0].created_at, now);
    let backlog = reader.backlog().expect("backlog");
    assert_eq!(backlog.len(), 2);
    assert!(backlog.iter().all(|b| b.count == 1 && b.oldest == now));

    ledger
        .outbox_update(vec![
            Update::Sent(due[0].id),
            Update::Retry {
                id: due[1].id,
                next_at: now + 60_000,
                error: "HTTP 503".into(),
            },
        ])
        .wait()
        .expect("updated");
    assert!(reader.due(now, 10).expect("due").is_empty());
    assert_eq!(reader.next_due().expect("next"), Some(now + 60_000));
    let later = reader.due(now + 60_000, 10).expect("due later");
    assert_eq!(later.len(), 1);
    assert_eq!(later[0].attempts, 1);
    let backlog = reader.backlog().expect("backlog");
    assert_eq!(backlog.len(), 1);
    assert_eq!(backlog[0].last_error.as_deref(), Some("HTTP 503"));
}

#[test]
fn a_claim_delivered_again_after_a_crash_is_not_notified_twice() {
    let (_dir, path) = state();
    let ledger = open(&path);
    let now = now_millis();
    for at in [now, now + 1] {
        ledger
            .record_with(delivered("acme", "a/1.csv", 7, at), vec![notice("webhook")])
            .wait()
            .expect("recorded");
    }
    // Another claim of the same key is a delivery of its own.
    ledger
        .record_with(
            delivered("acme", "a/1.csv", 8, now + 2),
            vec![notice("webhook")],
        )
        .wait()
        .expect("recorded");
    let mut reader = OutboxReader::open(&path).expect("reader");
    assert_eq!(reader.due(now + 10, 10).expect("due").len(), 2);
}

#[test]
fn notifications_older_than_the_retention_are_pruned() {
    let (_dir, path) = state();
    let ledger = open(&path);
    let now = now_millis();
    ledger
        .record_with(
            delivered("acme", "a/1.csv", 1, now - 10_000),
            vec![notice("webhook")],
        )
        .wait()
        .expect("recorded");
    ledger
        .record_with(
            delivered("acme", "a/2.csv", 2, now),
            vec![notice("webhook")],
        )
        .wait()
        .expect("recorded");
    ledger
        .prune(std::time::UNIX_EPOCH + std::time::Duration::from_millis((now - 5_000) as u64))
        .wait()
        .expect("pruned");
    let mut reader = OutboxReader::open(&path).expect("reader");
    assert_eq!(reader.due(now + 10, 10).expect("due").len(), 1);
}
