//! The manifest loop: a batch's manifest goes up as its last object, once every file of
//! the batch is delivered (their facts are in the spool). It wakes when a delivery
//! completes a batch, and every [`EVERY`] anyway — which also takes up, after a restart,
//! batches completed before it and manifests whose upload failed. One manifest at a time;
//! a batch is forgotten by the spool only after its manifest was acknowledged.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use outpost_ledger::{Delivered, Mode, Outcome, unix_millis};
use outpost_uploader::{Destination, ErrorClass, UploadOptions, WriteOutcome};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::manifest::{FileFacts, key, render};
use crate::worker::{Worker, blocking};

/// How often complete batches are looked for without a nudge.
const EVERY: Duration = Duration::from_secs(30);

/// Runs until `stop`: uploads the manifest of every complete batch of every server
/// that has `manifest` set.
pub async fn run(worker: Arc<Worker>, nudge: Arc<Notify>, stop: CancellationToken) {
    // Batches (server, record id) whose manifest key holds another object: said once
    // each at ERROR — a later batch of the same name is said again.
    let mut conflicts = HashSet::new();
    loop {
        let servers: Vec<Destination> = worker
            .dests
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .filter(|d| d.server.manifest.is_some())
            .cloned()
            .collect();
        for dest in servers {
            // A manifest is an object like any other: it waits for its window (the
            // loop's next round after the opening sends it).
            if dest.server.window_closed(std::time::SystemTime::now()) {
                continue;
            }
            let (spool, s) = (worker.spool.clone(), dest.server.name.clone());
            for batch in blocking(move || spool.batches_complete(&s)).await {
                if stop.is_cancelled() {
                    return;
                }
                upload(&worker, &dest, &batch, &mut conflicts).await;
            }
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = nudge.notified() => {}
            _ = tokio::time::sleep(EVERY) => {}
        }
    }
}

/// Renders and uploads the manifest of the complete `batch`, records it, and lets the
/// spool forget the batch. A failure leaves the batch as it is, for the next round.
async fn upload(
    worker: &Worker,
    dest: &Destination,
    batch: &str,
    conflicts: &mut HashSet<(String, String)>,
) {
    let s = &dest.server;
    let Some(manifest) = s.manifest.as_ref() else {
        return;
    };
    let server = s.name.as_str();
    let state = {
        let (spool, sv, b) = (worker.spool.clone(), server.to_owned(), batch.to_owned());
        blocking(move || spool.batch_state(&sv, &b)).await
    };
    let state = match state {
        Ok(Some(st)) if st.complete() => st,
        Ok(_) => return,
        Err(e) => {
            tracing::error!(server, batch, error = %e, "cannot read the batch's record; its manifest waits");
            return;
        }
    };
    let mut facts = Vec::with_capacity(state.delivered.len());
    for (rel, bytes) in &state.delivered {
        match FileFacts::from_bytes(bytes) {
            Ok(f) => facts.push(f),
            Err(e) => {
                tracing::error!(server, batch, rel = %rel, error = %e, "a file's facts cannot be read; the batch's manifest waits");
                return;
            }
        }
    }
    let body = match render(
        manifest.format,
        batch,
        "outpost",
        env!("CARGO_PKG_VERSION"),
        &facts,
    ) {
        Ok(b) => b,
        Err(e) => {
            tracing::error!(server, batch, error = %e, "cannot write the batch's manifest");
            return;
        }
    };
    let name = manifest.name_for(batch);
    let rel = format!("{batch}/{name}");
    let object_key = key(&s.prefix, manifest, batch);
    let size = body.len() as u64;
    let started = Instant::now();
    // The same facts render the same bytes, hence the same token: a manifest already up
    // (a crash before the batch was forgotten, or another daemon) counts as ours when
    // its token can be read.
    let opts = UploadOptions::default();
    let up = match dest.put_bytes(&rel, body, &opts).await {
        Ok(up) => up,
        Err(e) if e.class == ErrorClass::Exists => {
            // overwrite: never and another object at the manifest's key (a batch folder
            // name used again): nothing is overwritten; said once, tried each round.
            if conflicts.insert((server.to_owned(), state.id.clone())) {
                tracing::error!(server, batch, key = %object_key, error = %e, "the batch's manifest cannot be written: another object holds its key (overwrite: never; batch folder names must not repeat). Remove that object, or the batch's record under .outpost/.batches/, to go on");
            }
            return;
        }
        Err(e) => {
            tracing::warn!(server, batch, key = %object_key, class = e.class.as_str(), error = %e, "manifest upload failed; retried in the next round");
            return;
        }
    };
    if let Some(ledger) = &worker.ledger {
        let now = SystemTime::now();
        let row = Delivered {
            server: server.to_owned(),
            bucket: s.bucket.clone(),
            key: object_key.clone(),
            size,
            checksum_algorithm: "crc64nvme".into(),
            checksum: up.crc64nvme_base64(),
            store_checksum: up.store_checksum.as_ref().map(|c| c.value.clone()),
            etag: up.etag.clone(),
            version_id: up.version_id.clone(),
            relative_path: rel.clone(),
            dropped_at: unix_millis(now),
            first_attempt: unix_millis(now),
            delivered_at: unix_millis(now),
            attempts: 1,
            duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
            mode: Mode::Single,
            outcome: match up.outcome {
                WriteOutcome::Written => Outcome::Written,
                WriteOutcome::AlreadyPresent => Outcome::AlreadyPresent,
            },
            instance: worker.instance.clone(),
            seq: 0,
            batch: Some(batch.to_owned()),
        };
        // The batch's notification goes with its manifest's row.
        let done = outpost_notify::BatchDone {
            name: batch.to_owned(),
            files: facts.len() as u64,
            bytes: facts.iter().map(|f| f.size).sum(),
        };
        let notices = outpost_notify::notices(s, &row, Some(&done));
        let notify = !notices.is_empty();
        let _ =
            tokio::time::timeout(Duration::from_secs(2), ledger.record_with(row, notices)).await;
        if notify {
            worker.notifier.nudge();
        }
    }
    let (spool, sv, b, id) = (
        worker.spool.clone(),
        server.to_owned(),
        batch.to_owned(),
        state.id.clone(),
    );
    if let Err(e) = blocking(move || spool.batch_done(&sv, &b, &id)).await {
        tracing::error!(server, batch, error = %e, "manifest uploaded, but the batch cannot be forgotten; it is uploaded again later");
    }
    tracing::info!(server, batch, key = %object_key, files = facts.len(), "batch manifest uploaded");
    worker
        .events
        .uploaded(server, &object_key, &up, started.elapsed());
}
