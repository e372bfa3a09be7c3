//! Part buffers: reads of a file region into memory the request body then owns. Large
//! buffers are anonymous mappings (returned to the kernel when dropped, so freed parts
//! never linger in the heap), and one multipart upload recycles its own mappings from
//! part to part instead of faulting in and zeroing fresh pages for every part.
//!
//! Every buffer — a part, a single-PUT body, a mapping kept idle for reuse — holds its
//! bytes of one process-wide [`budget`] (`max_buffer_memory`) for as long as it exists;
//! a read waits for its bytes before it allocates, or for a mapping of its own upload to
//! come back, whichever comes first (so uploads holding idle mappings cannot starve
//! each other). The accounting itself is in `buffers/budget.rs`; a reader may change
//! how reads allocate and recycle here.

use std::os::unix::fs::FileExt;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use memmap2::MmapMut;
use tokio::sync::Notify;

mod budget;

use budget::Held;
pub(crate) use budget::Release;
pub use budget::{Budget, DEFAULT_BUDGET, budget, set_budget};

use crate::{ErrorClass, UploadError};

/// Below this, a read goes into a plain heap buffer; above it, into a mapping.
const SMALL_READ: u64 = 256 * 1024;

/// Mappings one upload keeps for reuse: at most `keep`, each of exactly `size` bytes.
/// Dropped (and unmapped) with the last buffer of the upload.
#[derive(Debug)]
pub(crate) struct BufferPool {
    /// Bytes of every mapping (the upload's part size): a mapping fits any part.
    size: usize,
    /// Idle mappings kept at most (the upload's concurrency); more are unmapped.
    keep: usize,
    /// Idle mappings, each still holding its budget bytes.
    free: Mutex<Vec<Mapping>>,
    /// Signalled when a mapping comes back.
    returned: Notify,
}

/// A mapping and the budget it holds.
#[derive(Debug)]
struct Mapping {
    /// The anonymous mapping.
    map: MmapMut,
    /// Its bytes of the budget, held while it exists (idle in a pool too).
    held: Held,
}

impl BufferPool {
    /// A pool of buffers of `size` bytes keeping at most `keep` idle ones.
    pub(crate) fn new(size: u64, keep: usize) -> Arc<BufferPool> {
        Arc::new(BufferPool {
            size: size as usize,
            keep,
            free: Mutex::new(Vec::new()),
            returned: Notify::new(),
        })
    }

    fn take(&self) -> Option<Mapping> {
        self.free.lock().ok()?.pop()
    }

    fn give(&self, map: Mapping) {
        if map.held.0.given_back() {
            // Its bytes were given back early (a cut request): not kept, unmapped.
            return;
        }
        if let Ok(mut free) = self.free.lock()
            && free.len() < self.keep
        {
            free.push(map);
            drop(free);
            self.returned.notify_one();
        }
        // Otherwise dropped: unmapped, its budget freed.
    }
}

/// A region of a mapping, owned by a request body; on drop the mapping goes back to its
/// pool (or is unmapped).
struct PartBuf {
    /// `None` only once dropped (taken back to the pool).
    map: Option<Mapping>,
    /// Bytes of the mapping this part uses (the last part is shorter).
    len: usize,
    /// Where the mapping goes back to; `None`: unmapped on drop.
    pool: Option<Arc<BufferPool>>,
}

impl AsRef<[u8]> for PartBuf {
    fn as_ref(&self) -> &[u8] {
        self.map.as_ref().map_or(&[], |m| &m.map[..self.len])
    }
}

/// A small heap buffer and the budget it holds.
struct HeapBuf {
    /// The bytes.
    buf: Vec<u8>,
    /// Their bytes of the budget, given back when the body is dropped.
    _held: Held,
}

impl AsRef<[u8]> for HeapBuf {
    fn as_ref(&self) -> &[u8] {
        &self.buf
    }
}

impl Drop for PartBuf {
    fn drop(&mut self) {
        if let (Some(map), Some(pool)) = (self.map.take(), &self.pool) {
            pool.give(map);
        }
    }
}

fn alloc(len: usize) -> Result<MmapMut, UploadError> {
    // Populated at once: one fault pass instead of one fault per page while reading.
    memmap2::MmapOptions::new()
        .len(len)
        .populate()
        .map_anon()
        .map_err(|e| {
            UploadError::new(
                ErrorClass::Transient,
                "read",
                format!("cannot allocate a part buffer: {e}"),
            )
        })
}

/// Reads `len` bytes of `file` at `offset`, within the [`budget`]. With a `pool` whose
/// buffers are at least `len` long, the read reuses one of its mappings.
/// Returns the bytes and the [`Release`] of the budget they hold.
pub(crate) async fn read_at(
    file: Arc<std::fs::File>,
    offset: u64,
    len: u64,
    pool: Option<Arc<BufferPool>>,
) -> Result<(Bytes, Release), UploadError> {
    read_within(budget(), file, offset, len, pool).await
}

async fn read_within(
    budget: &Budget,
    file: Arc<std::fs::File>,
    offset: u64,
    len: u64,
    pool: Option<Arc<BufferPool>>,
) -> Result<(Bytes, Release), UploadError> {
    if len == 0 {
        return Ok((Bytes::new(), Release::default()));
    }
    if len < SMALL_READ {
        let held = budget.acquire(len).await;
        let release = held.0.clone();
        // Every read runs on the blocking pool: a stalled disk or NFS server must not
        // hold a runtime thread (other uploads, the HTTP endpoint).
        return tokio::task::spawn_blocking(move || {
            let mut buf = vec![0u8; len as usize];
            file.read_exact_at(&mut buf, offset)
                .map_err(|e| UploadError::io("read", &e))?;
            Ok((Bytes::from_owner(HeapBuf { buf, _held: held }), release))
        })
        .await
        .map_err(|e| UploadError::new(ErrorClass::Transient, "read", e.to_string()))?;
    }
    let pool = pool.filter(|p| p.size as u64 >= len);
    let size = pool.as_ref().map_or(len as usize, |p| p.size);
    // A mapping of this upload's own pool, or the budget for a new one, whichever
    // comes first.
    let (reused, held) = loop {
        let Some(p) = pool.as_ref() else {
            break (None, Some(budget.acquire(size as u64).await));
        };
        let returned = p.returned.notified();
        if let Some(m) = p.take() {
            break (Some(m), None);
        }
        tokio::select! {
            held = budget.acquire(size as u64) => break (None, Some(held)),
            _ = returned => continue,
        }
    };
    tokio::task::spawn_blocking(move || {
        let mapping = match (reused, held) {
            (Some(m), _) => m,
            (None, Some(held)) => Mapping {
                map: alloc(size)?,
                held,
            },
            (None, None) => unreachable!("a mapping or its budget"),
        };
        let len = len as usize;
        // On a failed read the mapping still goes back to the pool (PartBuf's drop).
        let release = mapping.held.0.clone();
        let mut buf = PartBuf {
            map: Some(mapping),
            len,
            pool,
        };
        let res = match buf.map.as_mut() {
            Some(m) => file.read_exact_at(&mut m.map[..len], offset),
            None => unreachable!("just set"),
        };
        res.map_err(|e| UploadError::io("read", &e))?;
        Ok((Bytes::from_owner(buf), release))
    })
    .await
    .map_err(|e| UploadError::new(ErrorClass::Transient, "read", e.to_string()))?
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[tokio::test]
    async fn reads_reuse_one_mapping_and_return_the_right_bytes() {
        let mut f = tempfile::tempfile().expect("temp file");
        let data: Vec<u8> = (0..3 * 300 * 1024).map(|i| (i % 251) as u8).collect();
        f.write_all(&data).expect("write");
        let file = Arc::new(f);
        let part = 300 * 1024;
        let pool = BufferPool::new(part, 2);
        let mut seen = Vec::new();
        for n in 0..3u64 {
            let (b, _) = read_at(file.clone(), n * part, part, Some(pool.clone()))
                .await
                .expect("read");
            assert_eq!(
                &b[..],
                &data[(n * part) as usize..((n + 1) * part) as usize]
            );
            seen.push(b.as_ptr() as usize);
            drop(b);
            assert_eq!(pool.free.lock().expect("lock").len(), 1);
        }
        assert!(seen.windows(2).all(|w| w[0] == w[1]), "one mapping reused");
        // A shorter last part fits a pooled mapping.
        let (b, _) = read_at(file.clone(), 0, part - 7, Some(pool.clone()))
            .await
            .expect("read");
        assert_eq!(b.len() as u64, part - 7);
        assert_eq!(&b[..], &data[..(part - 7) as usize]);
        // Past the end: an error, and the mapping is not lost.
        drop(b);
        assert!(
            read_at(file, 3 * part - 10, part, Some(pool.clone()))
                .await
                .is_err()
        );
        assert_eq!(pool.free.lock().expect("lock").len(), 1);
    }

    fn file_of(len: usize) -> Arc<std::fs::File> {
        let mut f = tempfile::tempfile().expect("temp file");
        f.write_all(&vec![7u8; len]).expect("write");
        Arc::new(f)
    }

    /// Buffers never hold more than the budget: a read waits for a buffer to go.
    #[tokio::test]
    async fn reads_wait_for_the_budget() {
        let budget = Budget::new(1 << 20);
        let file = file_of(2 << 20);
        let (a, _) = read_within(&budget, file.clone(), 0, 600 << 10, None)
            .await
            .expect("read");
        assert!(budget.available() < 500 << 10);
        let waiting = read_within(&budget, file.clone(), 0, 600 << 10, None);
        tokio::pin!(waiting);
        assert!(
            tokio::time::timeout(std::time::Duration::from_millis(100), &mut waiting)
                .await
                .is_err(),
            "a second 600 KiB buffer fit in a 1 MiB budget"
        );
        drop(a);
        let (b, _) = waiting.await.expect("read after the first buffer went");
        assert_eq!(b.len(), 600 << 10);
        drop(b);
        assert_eq!(budget.available(), budget.bytes());
        // Larger than the whole budget: waits for all of it, then goes alone.
        let (big, _) = read_within(&budget, file, 0, 2 << 20, None)
            .await
            .expect("read");
        assert_eq!(big.len(), 2 << 20);
        assert_eq!(budget.available(), 0);
    }

    /// Two uploads whose idle mappings hold the whole budget each get their own mapping
    /// back instead of waiting for each other forever.
    #[tokio::test]
    async fn uploads_holding_idle_mappings_do_not_starve_each_other() {
        let part: u64 = 512 << 10;
        let budget = Budget::new(2 * part);
        let file = file_of(4 * part as usize);
        let (p1, p2) = (BufferPool::new(part, 2), BufferPool::new(part, 2));
        let a = read_within(&budget, file.clone(), 0, part, Some(p1.clone()))
            .await
            .expect("a");
        let b = read_within(&budget, file.clone(), 0, part, Some(p2.clone()))
            .await
            .expect("b");
        assert_eq!(budget.available(), 0);
        // Each wants a second part while its first is in flight; the first ones finish.
        let (file1, file2) = (file.clone(), file.clone());
        let (q1, q2) = (p1.clone(), p2.clone());
        let budget: &'static Budget = Box::leak(Box::new(budget));
        let next1 =
            tokio::spawn(async move { read_within(budget, file1, part, part, Some(q1)).await });
        let next2 =
            tokio::spawn(async move { read_within(budget, file2, part, part, Some(q2)).await });
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        drop(a);
        drop(b);
        let r = tokio::time::timeout(std::time::Duration::from_secs(5), async {
            (next1.await, next2.await)
        })
        .await
        .expect("no deadlock");
        assert!(r.0.expect("join").is_ok() && r.1.expect("join").is_ok());
    }

    /// A request cut for stalling gives its buffer's budget back at once, although the
    /// HTTP connection may still hold the buffer; the buffer going later gives nothing
    /// back twice, and its mapping is not kept for reuse.
    #[tokio::test]
    async fn a_cut_request_gives_its_budget_back_once() {
        let part: u64 = 512 << 10;
        let budget = Budget::new(part);
        let file = file_of(2 * part as usize);
        let pool = BufferPool::new(part, 2);
        let (stuck, release) = read_within(&budget, file.clone(), 0, part, Some(pool.clone()))
            .await
            .expect("read");
        assert_eq!(budget.available(), 0);
        release.now();
        assert_eq!(budget.available(), budget.bytes());
        // Another read goes while the stuck buffer lives on.
        let (next, _) = read_within(&budget, file, part, part, Some(pool.clone()))
            .await
            .expect("read");
        drop(stuck);
        assert_eq!(
            pool.free.lock().expect("lock").len(),
            0,
            "a given-back mapping is not pooled"
        );
        drop(next);
        // The second mapping is kept for reuse, holding its bytes until the upload ends.
        assert_eq!(pool.free.lock().expect("lock").len(), 1);
        assert_eq!(budget.available(), 0);
        drop(pool);
        assert_eq!(budget.available(), budget.bytes());
    }
}
