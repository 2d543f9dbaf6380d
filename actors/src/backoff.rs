//! Exponential backoff, shared by every actor that retries something.
//!
//! Retry loops run on `backon` ([`Backoff::forever`], [`Backoff::retries`]);
//! actors that schedule their own next try (the watcher's poll, the pool's
//! cooldown) read [`Backoff::delay`]. Both follow the same schedule.

use std::time::Duration;

use backon::ExponentialBuilder;

/// Delay schedule for retries: `base * 2^(n-1)`, capped at `max`.
///
/// Exists so the watcher (RPC errors), the pool (failed jobs, dying workers)
/// and the edges all back off the same, predictable way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// Delay after the first failure.
    pub base: Duration,
    /// Upper bound for any delay.
    pub max: Duration,
}

impl Backoff {
    /// A schedule starting at `base` and never exceeding `max`.
    pub const fn new(base: Duration, max: Duration) -> Self {
        Self { base, max }
    }

    /// The delay after `failures` consecutive failures (0 means no delay).
    pub fn delay(&self, failures: u32) -> Duration {
        if failures == 0 {
            return Duration::ZERO;
        }
        let factor = 1u32.checked_shl(failures - 1).unwrap_or(u32::MAX);
        self.base.saturating_mul(factor).min(self.max)
    }

    /// This schedule for `backon`'s `Retryable`, retrying without end.
    pub fn forever(&self) -> ExponentialBuilder {
        self.builder().without_max_times()
    }

    /// This schedule for `backon`'s `Retryable`, giving up after `times`
    /// retries (`times + 1` tries in all).
    pub fn retries(&self, times: usize) -> ExponentialBuilder {
        self.builder().with_max_times(times)
    }

    fn builder(&self) -> ExponentialBuilder {
        ExponentialBuilder::new()
            .with_min_delay(self.base)
            .with_max_delay(self.max)
            .with_factor(2.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_then_caps() {
        let b = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
        let delays: Vec<_> = (0..7).map(|n| b.delay(n).as_millis()).collect();
        assert_eq!(delays, [0, 100, 200, 400, 800, 1000, 1000]);
        assert_eq!(b.delay(200), Duration::from_secs(1));
    }

    #[test]
    fn backon_follows_the_same_schedule() {
        use backon::BackoffBuilder;
        let b = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
        let delays: Vec<_> = b.retries(6).build().map(|d| d.as_millis()).collect();
        assert_eq!(delays, [100, 200, 400, 800, 1000, 1000]);
        let endless = b.forever().build().take(50).count();
        assert_eq!(endless, 50);
    }
}
