//! Retry timing: an exponential schedule from `backon`, with *full* jitter applied here.
//!
//! backon's own `with_jitter` adds a random amount in `[0, min_delay)` on top of the
//! exponential delay, which barely spreads retries once delays grow; full jitter
//! (a uniform draw in `[0, delay]`) is what spreads a thundering herd, so we take
//! backon's un-jittered schedule and draw ourselves.

use std::time::Duration;

use backon::BackoffBuilder;

/// The per-server retry limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// First delay.
    pub initial: Duration,
    /// Cap.
    pub max: Duration,
    /// Attempts before giving up.
    pub max_attempts: u32,
}

impl RetryPolicy {
    /// The un-jittered delay after the `failures`-th failure (1-based).
    pub fn base_delay(&self, failures: u32) -> Duration {
        let n = failures.saturating_sub(1) as usize;
        backon::ExponentialBuilder::default()
            .with_min_delay(self.initial)
            .with_max_delay(self.max)
            .with_factor(2.0)
            .without_max_times()
            .build()
            .nth(n)
            .map(|d| Duration::from_micros((d.as_secs_f64() * 1e6).round() as u64))
            .unwrap_or(self.max)
            .min(self.max)
    }

    /// The jittered delay after the `failures`-th failure.
    pub fn delay(&self, failures: u32) -> Duration {
        full_jitter(self.base_delay(failures))
    }
}

/// A uniform draw in `[0, d]`.
pub fn full_jitter(d: Duration) -> Duration {
    let nanos = d.as_nanos().min(u64::MAX as u128) as u64;
    Duration::from_nanos(fastrand::u64(0..=nanos))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_doubles_then_caps() {
        let p = RetryPolicy {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(300),
            max_attempts: 20,
        };
        let want = [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300, 300];
        for (i, w) in want.iter().enumerate() {
            assert_eq!(
                p.base_delay(i as u32 + 1),
                Duration::from_secs(*w),
                "failure {}",
                i + 1
            );
        }
        assert_eq!(p.base_delay(200), Duration::from_secs(300));
    }

    #[test]
    fn full_jitter_spans_zero_to_delay() {
        let p = RetryPolicy {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(10),
            max_attempts: 5,
        };
        let base = p.base_delay(4);
        assert_eq!(base, Duration::from_millis(800));
        let draws: Vec<Duration> = (0..2000).map(|_| p.delay(4)).collect();
        assert!(draws.iter().all(|d| *d <= base));
        // Full jitter reaches both ends of the range, unlike additive jitter.
        assert!(draws.iter().any(|d| *d < base / 10));
        assert!(draws.iter().any(|d| *d > base * 9 / 10));
    }
}
