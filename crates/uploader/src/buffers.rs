//! Part buffers: reads of a file region into memory the request body then owns. Large
//! buffers are anonymous mappings (returned to the kernel when dropped, so freed parts
//! never linger in the heap), and one multipart upload recycles its own mappings from
//! part to part instead of faulting in and zeroing fresh pages for every part.

use std::os::unix::fs::FileExt;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use memmap2::MmapMut;

use crate::{ErrorClass, UploadError};

/// Below this, a read goes into a plain heap buffer; above it, into a mapping.
const SMALL_READ: u64 = 256 * 1024;

/// Mappings one upload keeps for reuse: at most `keep`, each of exactly `size` bytes.
/// Dropped (and unmapped) with the last buffer of the upload.
#[derive(Debug)]
pub(crate) struct BufferPool {
    size: usize,
    keep: usize,
    free: Mutex<Vec<MmapMut>>,
}

impl BufferPool {
    /// A pool of buffers of `size` bytes keeping at most `keep` idle ones.
    pub(crate) fn new(size: u64, keep: usize) -> Arc<BufferPool> {
        Arc::new(BufferPool {
            size: size as usize,
            keep,
            free: Mutex::new(Vec::new()),
        })
    }

    fn take(&self) -> Option<MmapMut> {
        self.free.lock().ok()?.pop()
    }

    fn give(&self, map: MmapMut) {
        if let Ok(mut free) = self.free.lock()
            && free.len() < self.keep
        {
            free.push(map);
        }
    }
}

/// A region of a mapping, owned by a request body; on drop the mapping goes back to its
/// pool (or is unmapped).
struct PartBuf {
    map: Option<MmapMut>,
    len: usize,
    pool: Option<Arc<BufferPool>>,
}

impl AsRef<[u8]> for PartBuf {
    fn as_ref(&self) -> &[u8] {
        self.map.as_ref().map_or(&[], |m| &m[..self.len])
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

/// Reads `len` bytes of `file` at `offset`. With a `pool` whose buffers are at least
/// `len` long, the read reuses one of its mappings.
pub(crate) async fn read_at(
    file: Arc<std::fs::File>,
    offset: u64,
    len: u64,
    pool: Option<Arc<BufferPool>>,
) -> Result<Bytes, UploadError> {
    if len == 0 {
        return Ok(Bytes::new());
    }
    let pool = pool.filter(|p| p.size as u64 >= len);
    // Every read runs on the blocking pool: a stalled disk or NFS server must not hold
    // a runtime thread (other uploads, the HTTP endpoint).
    tokio::task::spawn_blocking(move || {
        if len < SMALL_READ {
            let mut buf = vec![0u8; len as usize];
            file.read_exact_at(&mut buf, offset)
                .map_err(|e| UploadError::io("read", &e))?;
            return Ok(Bytes::from(buf));
        }
        let mut map = match pool.as_ref().and_then(|p| p.take()) {
            Some(m) => m,
            None => alloc(pool.as_ref().map_or(len as usize, |p| p.size))?,
        };
        let len = len as usize;
        // On a failed read the mapping still goes back to the pool (PartBuf's drop).
        let mut buf = PartBuf {
            map: None,
            len,
            pool,
        };
        let res = file.read_exact_at(&mut map[..len], offset);
        buf.map = Some(map);
        res.map_err(|e| UploadError::io("read", &e))?;
        Ok(Bytes::from_owner(buf))
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
            let b = read_at(file.clone(), n * part, part, Some(pool.clone()))
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
        let b = read_at(file.clone(), 0, part - 7, Some(pool.clone()))
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
}
