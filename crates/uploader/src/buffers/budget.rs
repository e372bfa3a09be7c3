//! The process-wide buffer budget (`max_buffer_memory`): every buffer holds its bytes
//! of it for as long as it exists ([`Held`]), and a request cut because it stalled
//! gives them back early ([`Release`]). A reader may change the accounting here; how
//! buffers are read and recycled is in `buffers.rs`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use tokio::sync::Semaphore;

/// Default `max_buffer_memory`.
pub const DEFAULT_BUDGET: u64 = 256 << 20;

/// Budget accounting unit.
const UNIT: u64 = 1024;

/// The bytes all part and body buffers of the process may hold at once.
#[derive(Debug)]
pub struct Budget {
    /// The whole budget in [`UNIT`]s (a buffer larger than it waits for all of it).
    total_units: u32,
    /// The units no buffer holds now.
    sem: Arc<Semaphore>,
}

impl Budget {
    pub(super) fn new(bytes: u64) -> Budget {
        let units = (bytes / UNIT).clamp(1, u64::from(u32::MAX)) as u32;
        Budget {
            total_units: units,
            sem: Arc::new(Semaphore::new(units as usize)),
        }
    }

    /// The budget in bytes.
    pub fn bytes(&self) -> u64 {
        u64::from(self.total_units) * UNIT
    }

    /// Bytes not held by any buffer now.
    pub fn available(&self) -> u64 {
        self.sem.available_permits() as u64 * UNIT
    }

    /// Waits until `bytes` (at most the whole budget: a buffer larger than the budget
    /// waits for all of it and goes alone) are free, and holds them.
    pub(super) async fn acquire(&self, bytes: u64) -> Held {
        let units = bytes.div_ceil(UNIT).clamp(1, u64::from(self.total_units)) as u32;
        match self.sem.clone().acquire_many_owned(units).await {
            Ok(p) => p.forget(),
            // The semaphore is never closed.
            Err(_) => unreachable!("buffer budget closed"),
        }
        Held(Release {
            sem: self.sem.clone(),
            units,
            given_back: Arc::default(),
        })
    }
}

/// Budget bytes held by one buffer: given back when the buffer goes, or earlier through
/// its [`Release`].
#[derive(Debug)]
pub(super) struct Held(pub(super) Release);

impl Drop for Held {
    fn drop(&mut self) {
        self.0.now();
    }
}

/// Gives a buffer's budget bytes back before the buffer goes: for a request cut because
/// it stalled, whose body the HTTP connection may hold until the socket dies. The bytes
/// are then no longer counted (a stalled connection costs memory, never the budget).
#[derive(Debug, Clone)]
pub(crate) struct Release {
    /// The budget the units go back to.
    sem: Arc<Semaphore>,
    /// Units held.
    units: u32,
    /// Shared by the buffer's [`Held`] and every clone: the units go back once.
    given_back: Arc<AtomicBool>,
}

impl Default for Release {
    /// Holds nothing.
    fn default() -> Self {
        Release {
            sem: Arc::new(Semaphore::new(0)),
            units: 0,
            given_back: Arc::default(),
        }
    }
}

impl Release {
    /// Gives the bytes back (once).
    pub(crate) fn now(&self) {
        if !self.given_back.swap(true, Ordering::SeqCst) && self.units > 0 {
            self.sem.add_permits(self.units as usize);
        }
    }

    pub(super) fn given_back(&self) -> bool {
        self.given_back.load(Ordering::SeqCst)
    }
}

static BUDGET: OnceLock<Budget> = OnceLock::new();

/// Sets `max_buffer_memory` (once, at start-up, before any upload; later calls are
/// ignored and return false).
pub fn set_budget(bytes: u64) -> bool {
    BUDGET.set(Budget::new(bytes)).is_ok()
}

/// The process-wide buffer budget ([`DEFAULT_BUDGET`] unless set at start-up).
pub fn budget() -> &'static Budget {
    BUDGET.get_or_init(|| Budget::new(DEFAULT_BUDGET))
}
