//! Bandwidth limits (`max_bandwidth`, per server and over all servers): a token bucket
//! per server and one global, which the bytes of a part or a single PUT go through
//! before they are read and sent ([`Limits::acquire`]).
//!
//! Each bucket is a debt model (GCRA): a reservation of `n` bytes moves the bucket's
//! *paid-up time* forward by `n / rate` and waits until that time, less the burst (one
//! chunk), has come. Reservations are taken one chunk (≤ 1 MiB) at a time, in the order
//! they are asked for, so concurrent parts and servers interleave chunk by chunk and
//! share a limit fairly. An idle bucket costs nothing and has no timer. A rate changed
//! by a reload applies to the reservations after it, and the debt already reserved is
//! rescaled to it (a removed limit frees its waiters' next chunks at once). A reader changes how bytes are
//! paced here; where they are acquired is `upload/parts.rs` and `upload/single.rs`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use tokio::time::Instant;

/// Bytes reserved at once: the unit of fair interleaving, and the burst an idle bucket
/// lets through at once.
pub const CHUNK: u64 = 1 << 20;

/// One token bucket.
#[derive(Debug, Default)]
pub struct Bucket {
    /// Bytes per second (0: unlimited) and the time by which every reservation so far
    /// is paid for (`None`: idle since it was set).
    state: Mutex<(u64, Option<Instant>)>,
    /// Moved by every change of the rate: a waiter that sees it move stops waiting
    /// for a deadline the old rate set (its chunk goes; the next is reserved anew).
    generation: std::sync::atomic::AtomicU64,
}

/// The longest a waiter sleeps before it looks whether the rate changed.
const RECHECK: Duration = Duration::from_secs(1);

impl Bucket {
    /// Sets the rate (bytes per second, 0: unlimited) for the reservations to come.
    pub fn set_rate(&self, rate: u64) {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if s.0 == rate {
            return;
        }
        // The debt already reserved is rescaled to the new rate: raising a mistaken low
        // limit frees what waits behind it at once instead of after the old debt.
        let now = Instant::now();
        let paid = match (s.0, rate, s.1) {
            (_, 0, _) | (0, _, _) => None,
            (old, new, Some(paid)) if paid > now => {
                Some(now + (paid - now).mul_f64(old as f64 / new as f64))
            }
            (_, _, paid) => paid,
        };
        *s = (rate, paid);
        self.generation
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// Whether the bucket limits anything.
    fn limited(&self) -> bool {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).0 != 0
    }

    /// Reserves `n` bytes at `now`: the moment they may go, if later than `now`.
    fn reserve(&self, n: u64, now: Instant) -> Option<Instant> {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let rate = s.0;
        if rate == 0 {
            return None;
        }
        let time = |bytes: u64| Duration::from_secs_f64(bytes as f64 / rate as f64);
        let paid = s.1.map_or(now, |t| t.max(now)) + time(n);
        s.1 = Some(paid);
        paid.checked_sub(time(CHUNK)).filter(|t| *t > now)
    }

    /// Waits for `n` bytes of this bucket.
    async fn take(&self, n: u64) {
        let generation = self.generation.load(std::sync::atomic::Ordering::Relaxed);
        let Some(t) = self.reserve(n, Instant::now()) else {
            return;
        };
        loop {
            let now = Instant::now();
            if now >= t {
                return;
            }
            tokio::time::sleep_until(t.min(now + RECHECK)).await;
            if self.generation.load(std::sync::atomic::Ordering::Relaxed) != generation {
                return;
            }
        }
    }
}

/// The global bucket and one per server.
#[derive(Debug, Default)]
pub struct Limits {
    /// Over all servers (top-level `max_bandwidth`).
    global: Bucket,
    /// By server name; a server without a limit has none.
    servers: Mutex<HashMap<String, Arc<Bucket>>>,
}

impl Limits {
    /// Sets the global rate and each server's (0: unlimited), at start and at a reload.
    /// A server's bucket lives on across reloads, so a changed rate applies to the
    /// uploads in flight from their next chunk.
    pub fn configure<'a>(&self, global: u64, servers: impl IntoIterator<Item = (&'a str, u64)>) {
        self.global.set_rate(global);
        let mut map = self.servers.lock().unwrap_or_else(|e| e.into_inner());
        let mut keep = HashMap::new();
        for (name, rate) in servers {
            if rate == 0 {
                continue;
            }
            let b = map.remove(name).unwrap_or_default();
            b.set_rate(rate);
            keep.insert(name.to_owned(), b);
        }
        // Limits removed: uploads in flight that still hold the bucket stop waiting.
        for b in map.values() {
            b.set_rate(0);
        }
        *map = keep;
    }

    /// Whether uploads to `server` are paced now (its own limit or the global one).
    pub fn paced(&self, server: &str) -> bool {
        self.global.limited()
            || self
                .servers
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .contains_key(server)
    }

    /// Waits until `bytes` may be sent to `server`: chunk by chunk through the server's
    /// bucket, then the global one. Returns at once without limits.
    pub async fn acquire(&self, server: &str, bytes: u64) {
        let bucket = self
            .servers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(server)
            .cloned();
        if bucket.is_none() && !self.global.limited() {
            return;
        }
        let mut left = bytes;
        while left > 0 {
            let n = left.min(CHUNK);
            if let Some(b) = &bucket {
                b.take(n).await;
            }
            self.global.take(n).await;
            left -= n;
        }
    }
}

static LIMITS: OnceLock<Limits> = OnceLock::new();

/// The process-wide limits (unlimited until [`Limits::configure`]d).
pub fn limits() -> &'static Limits {
    LIMITS.get_or_init(Limits::default)
}

#[cfg(test)]
#[path = "bandwidth_tests.rs"]
mod tests;
